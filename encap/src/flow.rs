//! Flow hashing for the outer UDP source port (RFC 7348 §5: "it is recommended that the
//! UDP source port number be calculated using a hash of fields from the inner packet").
//!
//! The hash covers the inner IP 5-tuple for TCP and UDP over IPv4 and IPv6, the IP
//! addresses and protocol for other IP traffic, and the MAC addresses and EtherType for
//! everything else. It is symmetric in neither direction on purpose: each direction of a
//! flow is its own flow on the underlay, as the kernel does it. The function is fixed
//! (FNV-1a with a final avalanche), so a flow maps to the same port in every run.

use switchyard_wire::tcp::field::{DST_PORT, SRC_PORT};
use switchyard_wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet};

struct Fnv(u32);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0x811c_9dc5)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    /// FNV's low bits mix poorly; a final avalanche (from murmur3) spreads them.
    fn finish(self) -> u32 {
        let mut h = self.0;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// A hash of the flow an Ethernet frame belongs to. Never panics; short or odd frames
/// hash whatever of their header is there.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    if let Ok(eth) = EthernetFrame::new_checked(frame) {
        // The network header and everything after it, padding included: malformed
        // headers hash what they say, as far as the frame goes.
        let l3 = eth.payload();
        match eth.payload_ethertype() {
            EtherType::IPV4 => {
                if let Ok(ip) = Ipv4Packet::new_fixed_header(l3) {
                    let protocol = ip.protocol();
                    h.bytes(&[protocol.0]);
                    h.bytes(&ip.src_addr().octets());
                    h.bytes(&ip.dst_addr().octets());
                    // Ports only in the first fragment (offset 0), as the kernel does.
                    if ip.frag_offset() == 0 {
                        hash_ports(&mut h, l3.get(ip.header_len()..), protocol);
                    }
                    return h.finish();
                }
            }
            EtherType::IPV6 => {
                if let Ok(ip) = Ipv6Packet::new_fixed_header(l3) {
                    let next_header = ip.next_header();
                    h.bytes(&[next_header.0]);
                    h.bytes(&ip.src_octets());
                    h.bytes(&ip.dst_octets());
                    hash_ports(
                        &mut h,
                        l3.get(switchyard_wire::ipv6::HEADER_LEN..),
                        next_header,
                    );
                    return h.finish();
                }
            }
            _ => {}
        }
    }
    h.bytes(frame.get(..switchyard_wire::HEADER_LEN).unwrap_or(frame));
    h.finish()
}

/// Hashes the ports at the start of `l4`, the transport header, for TCP and UDP (whose
/// ports are in the same place).
fn hash_ports(h: &mut Fnv, l4: Option<&[u8]>, protocol: IpProtocol) {
    if protocol == IpProtocol::TCP || protocol == IpProtocol::UDP {
        if let Some(ports) = l4.and_then(|l4| l4.get(SRC_PORT.start..DST_PORT.end)) {
            h.bytes(ports);
        }
    }
}

/// Maps a flow hash onto `count` choices (for example a pool of sockets with distinct
/// source ports), spreading evenly without a division: the kernel's `reciprocal_scale`.
pub fn pick(hash: u32, count: usize) -> usize {
    ((u64::from(hash) * count as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn tcp4(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(src_port, dst_port, 1, 1000)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp6(src_port: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(src_port, 53)
            .write(&mut out, b"q")
            .unwrap();
        out
    }

    #[test]
    fn same_flow_same_hash_whatever_the_payload() {
        assert_eq!(
            flow_hash(&tcp4(40000, 5201, b"a")),
            flow_hash(&tcp4(40000, 5201, b"bbbb"))
        );
        assert_eq!(flow_hash(&udp6(1000)), flow_hash(&udp6(1000)));
    }

    #[test]
    fn different_ports_spread_over_choices() {
        let mut seen = std::collections::HashSet::new();
        for port in 40000..40064 {
            seen.insert(pick(flow_hash(&tcp4(port, 5201, b"")), 16));
        }
        assert!(
            seen.len() >= 12,
            "64 flows hit only {} of 16 choices",
            seen.len()
        );
        assert_ne!(flow_hash(&udp6(1000)), flow_hash(&udp6(1001)));
    }

    #[test]
    fn non_ip_frames_hash_their_addresses() {
        let arp_a = [
            &[0xffu8; 6][..],
            &[2, 0, 0, 0, 0, 1],
            &[0x08, 0x06],
            &[0; 28],
        ]
        .concat();
        let arp_b = [
            &[0xffu8; 6][..],
            &[2, 0, 0, 0, 0, 2],
            &[0x08, 0x06],
            &[0; 28],
        ]
        .concat();
        assert_ne!(flow_hash(&arp_a), flow_hash(&arp_b));
    }

    #[test]
    fn pick_stays_in_range() {
        for count in 1..40 {
            assert!(pick(u32::MAX, count) < count);
            assert_eq!(pick(0, count), 0);
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = flow_hash(&bytes);
        }
    }
}
