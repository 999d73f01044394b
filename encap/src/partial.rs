//! Recognizing transport checksums that were left for an offload to finish.
//!
//! A sender with checksum offload stores only the pseudo-header sum in the TCP or UDP
//! checksum field and leaves the rest to the NIC. Between namespaces of one kernel (a
//! veth underlay, the case in tests and on single-host setups) nothing ever finishes it:
//! the packet crosses with its checksum partial, and the Linux VXLAN device's outer UDP
//! checksum is off by default on IPv4, so nothing else vouches for it either. A receiver
//! that verifies inner checksums then drops every such TCP segment.
//!
//! [`partial_checksum`] spots that form, so switchd can hand the frame to the TAP with
//! `NEEDS_CSUM` and let the receiving kernel complete the checksum, as it would have for
//! the same packet over a veth. Treating a full checksum that happens to have that value
//! as partial is harmless: the kernel then computes the correct checksum over the data.

use switchyard_wire::{tcp, udp};
use switchyard_wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet};

/// Where the checksum of an untagged Ethernet `frame` would have to be completed —
/// `(csum_start, csum_offset)` counted from the start of the frame, as in a
/// `virtio_net_hdr` — if its TCP or UDP checksum field holds just the pseudo-header sum.
/// `None` for anything else (including a UDP checksum of 0, which means "none").
pub fn partial_checksum(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.payload();
    let (l4_at, protocol, pseudo) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3).ok()?;
            if ip.is_fragment() {
                return None;
            }
            let l4_len = u16::try_from(ip.total_len() - ip.header_len()).ok()?;
            (ip.header_len(), ip.protocol(), ip.pseudo_header_sum(l4_len))
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3).ok()?;
            (
                switchyard_wire::ipv6::HEADER_LEN,
                ip.next_header(),
                ip.pseudo_header_sum(ip.payload_len() as u32),
            )
        }
        _ => return None,
    };
    let field = match protocol {
        IpProtocol::TCP => tcp::field::CHECKSUM,
        IpProtocol::UDP => udp::field::CHECKSUM,
        _ => return None,
    };
    // Read where the field is in the frame, even past the IP length: a header cut short
    // is the receiving kernel's to refuse.
    let stored = l3.get(l4_at + field.start..l4_at + field.end)?;
    let stored = u16::from_be_bytes([stored[0], stored[1]]);
    if stored == 0 && protocol == IpProtocol::UDP {
        return None;
    }
    let csum_start = eth.header_len() + l4_at;
    (stored == pseudo).then_some((csum_start as u16, field.start as u16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use etherparse::PacketBuilder;

    fn tcp4() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 1, 1000)
            .write(&mut out, b"payload")
            .unwrap();
        out
    }

    fn udp6() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1000, 53)
            .write(&mut out, b"query")
            .unwrap();
        out
    }

    /// Replaces the full checksum with the pseudo-header sum, as an offloading sender does.
    fn make_partial(frame: &mut [u8], at: usize, pseudo: u16) {
        frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    }

    #[test]
    fn a_complete_checksum_is_left_alone() {
        assert_eq!(partial_checksum(&tcp4()), None);
        assert_eq!(partial_checksum(&udp6()), None);
    }

    #[test]
    fn spots_a_partial_tcp_checksum() {
        let mut frame = tcp4();
        let len = (frame.len() - 34) as u16;
        make_partial(
            &mut frame,
            34 + 16,
            checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, len),
        );
        assert_eq!(partial_checksum(&frame), Some((34, 16)));
        // Completing it where the function says gives the checksum etherparse computed.
        crate::segment::complete_checksum(&mut frame, 34, 16).unwrap();
        assert_eq!(frame, tcp4());
    }

    #[test]
    fn spots_a_partial_udp6_checksum() {
        let mut frame = udp6();
        let len = (frame.len() - 54) as u32;
        make_partial(
            &mut frame,
            54 + 6,
            checksum::pseudo_header_v6([0xfd; 16], [0xfe; 16], 17, len),
        );
        assert_eq!(partial_checksum(&frame), Some((54, 6)));
    }

    #[test]
    fn ignores_what_is_not_tcp_or_udp_over_ip() {
        let mut arp = tcp4();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(partial_checksum(&arp), None);
        assert_eq!(partial_checksum(&tcp4()[..40]), None, "truncated");
        assert_eq!(partial_checksum(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let _ = partial_checksum(&bytes);
        }
    }
}
