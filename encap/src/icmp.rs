//! ICMP "fragmentation needed" (type 3, code 4; RFC 1191) for frames too big for the
//! overlay, so that the sender's path MTU discovery shrinks its packets instead of them
//! vanishing.
//!
//! The answer goes back to the sender as if from the destination it tried to reach (the
//! Linux kernel does the same for bridged traffic entering a tunnel), since the switch
//! has no address of its own on that segment. It is built by
//! [`switchyard_wire::icmpv4::Icmpv4Error`], which also decides, by RFC 1812's one rule,
//! which packets never get an ICMP error.

use switchyard_wire::icmpv4::{self, Icmpv4Error, Quote};
use switchyard_wire::{emit_header, EtherType, EthernetFrame, Ipv4Packet};

/// The Ethernet frame (untagged) to send back to the sender of `frame` — an untagged
/// IPv4 frame with Don't Fragment set — telling it that at most `mtu` bytes of IP fit.
/// The answer quotes the packet's header and the first 8 bytes of its payload.
///
/// `None` when no answer is due: not an untagged IPv4 frame, a malformed header
/// ([`Ipv4Packet::new_checked`]), DF clear, or anything RFC 1812 §4.3.2.7 forbids
/// answering ([`icmpv4::may_answer`]): an ICMP error, a fragment other than the first, a
/// broadcast or multicast destination (IPv4 or Ethernet), a source that is not a unicast
/// host.
pub fn frag_needed(frame: &[u8], mtu: u16) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.dont_frag() {
        return None;
    }
    // Checked before anything is allocated: refused frames may come in floods.
    icmpv4::may_answer(&ip, Some(eth.dst())).ok()?;
    let error = Icmpv4Error::frag_needed(ip.dst_addr(), ip.src_addr(), mtu, Quote::Minimal);

    let header_len = switchyard_wire::HEADER_LEN;
    let quoted = error.quoted(&ip).len();
    let mut out = Vec::with_capacity(
        header_len + switchyard_wire::ipv4::HEADER_LEN + icmpv4::HEADER_LEN + quoted,
    );
    out.resize(header_len, 0);
    // To the sender's MAC, from the MAC it addressed.
    emit_header(&mut out, eth.src(), eth.dst(), EtherType::IPV4);
    error.emit(&ip, Some(eth.dst()), &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

    const ETH_HEADER: usize = switchyard_wire::HEADER_LEN;
    const PROTO_ICMP: u8 = switchyard_wire::IpProtocol::ICMP.0;
    const FLAG_DF: u8 = 0x40;

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

    /// `tcp_frame(true)` with `edit` applied to its IP header and the checksum fixed.
    fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut frame = tcp_frame(true);
        edit(&mut frame);
        let ip = ETH_HEADER..ETH_HEADER + 20;
        frame[ETH_HEADER + 10..ETH_HEADER + 12].fill(0);
        let sum = checksum::checksum(&frame[ip]);
        frame[ETH_HEADER + 10..ETH_HEADER + 12].copy_from_slice(&sum.to_be_bytes());
        frame
    }

    #[test]
    fn follows_rfc_1812_on_what_never_gets_an_error() {
        // (a) ICMP errors are never answered; other ICMP is.
        for (icmp_type, answered) in [
            (3, false),
            (4, false),
            (5, false),
            (11, false),
            (12, false),
            (0, true),
            (8, true),
            (13, true),
        ] {
            let frame = edited(|f| {
                f[ETH_HEADER + 9] = PROTO_ICMP;
                f[ETH_HEADER + 20] = icmp_type;
            });
            assert_eq!(
                frag_needed(&frame, 1450).is_some(),
                answered,
                "ICMP type {icmp_type}"
            );
        }
        // (b) A fragment other than the first; the first (MF, offset 0) is answered.
        let later = edited(|f| f[ETH_HEADER + 7] = 0xb9);
        assert_eq!(frag_needed(&later, 1450), None, "later fragment");
        let first = edited(|f| f[ETH_HEADER + 6] |= 0x20);
        assert!(frag_needed(&first, 1450).is_some(), "first fragment");
        // (c) Broadcast or multicast destinations, IPv4 or Ethernet.
        for dst in [[255, 255, 255, 255], [224, 0, 0, 251], [239, 1, 2, 3]] {
            let frame = edited(|f| f[ETH_HEADER + 16..ETH_HEADER + 20].copy_from_slice(&dst));
            assert_eq!(frag_needed(&frame, 1450), None, "to {dst:?}");
        }
        for mac in [
            [0xff; 6],
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
            [0x33, 0x33, 0, 0, 0, 1],
        ] {
            let frame = edited(|f| f[..6].copy_from_slice(&mac));
            assert_eq!(frag_needed(&frame, 1450), None, "to MAC {mac:02x?}");
        }
        // (d) Sources that are not unicast hosts.
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 1],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            let frame = edited(|f| f[ETH_HEADER + 12..ETH_HEADER + 16].copy_from_slice(&src));
            assert_eq!(frag_needed(&frame, 1450), None, "from {src:?}");
        }
        assert!(frag_needed(&edited(|_| {}), 1450).is_some());
    }

    #[test]
    fn quotes_no_padding() {
        // A 28-byte packet padded to the 60-byte minimum frame: the quote stops at 28.
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 53)
            .write(&mut frame, &[])
            .unwrap();
        frame.resize(60, 0xee);
        let reply = frag_needed(&frame, 1400).expect("an answer is due");
        assert_eq!(reply.len(), 14 + 20 + 8 + 28);
        assert_eq!(&reply[14 + 28..], &frame[14..42]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = frag_needed(&bytes, 1400);
        }
    }
}
