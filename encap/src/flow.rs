//! Flow hashing for the outer UDP source port (RFC 7348 §5: "it is recommended that the
//! UDP source port number be calculated using a hash of fields from the inner packet").
//!
//! The hash covers the inner IP 5-tuple for TCP and UDP over IPv4 and IPv6, the IP
//! addresses and protocol for other IP traffic, and the MAC addresses and EtherType for
//! everything else. It is symmetric in neither direction on purpose: each direction of a
//! flow is its own flow on the underlay, as the kernel does it. The function is fixed
//! (FNV-1a with a final avalanche), so a flow maps to the same port in every run.

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

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
    let mut ethertype_at = 12;
    let ethertype = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if ethertype(ethertype_at) == Some(ETHERTYPE_VLAN) {
        ethertype_at += 4;
    }
    let l3 = ethertype_at + 2;
    match ethertype(ethertype_at) {
        Some(ETHERTYPE_IPV4) => {
            if let Some(ip) = frame.get(l3..l3 + 20) {
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                let protocol = ip[9];
                h.bytes(&[protocol]);
                h.bytes(&ip[12..20]);
                // Ports only in the first fragment (offset 0), as the kernel does.
                let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
                if first_fragment {
                    hash_ports(&mut h, frame, l3 + header_len, protocol);
                }
                return h.finish();
            }
        }
        Some(ETHERTYPE_IPV6) => {
            if let Some(ip) = frame.get(l3..l3 + 40) {
                let next_header = ip[6];
                h.bytes(&[next_header]);
                h.bytes(&ip[8..40]);
                hash_ports(&mut h, frame, l3 + 40, next_header);
                return h.finish();
            }
        }
        _ => {}
    }
    h.bytes(frame.get(..ETH_HEADER).unwrap_or(frame));
    h.finish()
}

fn hash_ports(h: &mut Fnv, frame: &[u8], at: usize, protocol: u8) {
    if protocol == PROTO_TCP || protocol == PROTO_UDP {
        if let Some(ports) = frame.get(at..at + 4) {
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
