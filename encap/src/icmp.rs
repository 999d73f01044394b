//! ICMP "fragmentation needed" (type 3, code 4; RFC 1191) for frames too big for the
//! overlay, so that the sender's path MTU discovery shrinks its packets instead of them
//! vanishing.
//!
//! The answer goes back to the sender as if from the destination it tried to reach (the
//! Linux kernel does the same for bridged traffic entering a tunnel), since the switch
//! has no address of its own on that segment.

use crate::checksum;

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_ICMP: u8 = 1;
const FLAG_DF: u8 = 0x40;

/// The Ethernet frame (untagged) to send back to the sender of `frame` — an untagged
/// IPv4 frame with Don't Fragment set — telling it that at most `mtu` bytes of IP fit.
/// `None` when no answer is due: not IPv4, DF clear, a fragment other than the first,
/// an ICMP error itself (never answer an error with an error), or a malformed header.
pub fn frag_needed(frame: &[u8], mtu: u16) -> Option<Vec<u8>> {
    if frame.get(12..14)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_HEADER..)?;
    let header_len = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header_len < IPV4_HEADER || ip.len() < header_len {
        return None;
    }
    let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ip[6] & FLAG_DF == 0 || fragment_offset != 0 {
        return None;
    }
    if ip[9] == PROTO_ICMP {
        let icmp_type = *ip.get(header_len)?;
        // Only echo request/reply and the like may be answered; errors (3, 4, 5, 11, 12) never.
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
    }
    // The original IP header and the first 8 bytes of its payload (RFC 792).
    let quoted = &ip[..(header_len + 8).min(ip.len())];
    let total = IPV4_HEADER + ICMP_HEADER + quoted.len();

    let mut out = Vec::with_capacity(ETH_HEADER + total);
    out.extend_from_slice(&frame[6..12]); // to the sender's MAC
    out.extend_from_slice(&frame[0..6]); // from the MAC it addressed
    out.extend_from_slice(&ETHERTYPE_IPV4);

    let mut reply_ip = [0u8; IPV4_HEADER];
    reply_ip[0] = 0x45;
    reply_ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    reply_ip[8] = 64; // TTL
    reply_ip[9] = PROTO_ICMP;
    reply_ip[12..16].copy_from_slice(&ip[16..20]); // from the original destination
    reply_ip[16..20].copy_from_slice(&ip[12..16]); // to the original source
    let sum = checksum::checksum(&reply_ip);
    reply_ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&reply_ip);

    let icmp_at = out.len();
    out.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&mtu.to_be_bytes());
    out.extend_from_slice(quoted);
    let sum = checksum::checksum(&out[icmp_at..]);
    out[icmp_at + 2..icmp_at + 4].copy_from_slice(&sum.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    fn tcp_frame(dont_fragment: bool) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 1, 1000)
            .write(&mut out, &[7u8; 1400])
            .unwrap();
        // etherparse sets DF; set or clear it as asked and fix the header checksum.
        if dont_fragment {
            out[ETH_HEADER + 6] |= FLAG_DF;
        } else {
            out[ETH_HEADER + 6] &= !FLAG_DF;
        }
        out[ETH_HEADER + 10..ETH_HEADER + 12].fill(0);
        let sum = checksum::checksum(&out[ETH_HEADER..ETH_HEADER + 20]);
        out[ETH_HEADER + 10..ETH_HEADER + 12].copy_from_slice(&sum.to_be_bytes());
        out
    }

    #[test]
    fn answers_a_df_packet_with_a_valid_icmp_error() {
        let original = tcp_frame(true);
        let reply = frag_needed(&original, 1450).expect("an answer is due");
        assert_eq!(&reply[0..6], &original[6..12]);
        assert_eq!(&reply[6..12], &original[0..6]);
        let parsed = SlicedPacket::from_ethernet(&reply).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = parsed.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), [10, 0, 0, 2]);
        assert_eq!(ip.header().destination(), [10, 0, 0, 1]);
        assert_eq!(
            checksum::checksum(ip.header().slice()),
            0,
            "IP header checksum"
        );
        let Some(TransportSlice::Icmpv4(icmp)) = parsed.transport else {
            panic!("not ICMP")
        };
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(_)
        ));
        assert_eq!(checksum::checksum(icmp.slice()), 0, "ICMP checksum");
        assert_eq!(&icmp.slice()[6..8], &1450u16.to_be_bytes());
        assert_eq!(&icmp.slice()[8..], &original[ETH_HEADER..ETH_HEADER + 28]);
    }

    #[test]
    fn stays_silent_when_no_answer_is_due() {
        assert_eq!(
            frag_needed(&tcp_frame(false), 1450),
            None,
            "DF clear: just drop"
        );
        let mut arp = tcp_frame(true);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(frag_needed(&arp, 1450), None);
        let mut error = tcp_frame(true);
        error[ETH_HEADER + 9] = PROTO_ICMP;
        error[ETH_HEADER + 20] = 3;
        assert_eq!(
            frag_needed(&error, 1450),
            None,
            "never an error about an error"
        );
        assert_eq!(frag_needed(&tcp_frame(true)[..20], 1450), None);
        assert_eq!(frag_needed(&[], 1450), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = frag_needed(&bytes, 1400);
        }
    }
}
