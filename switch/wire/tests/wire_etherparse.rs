//! `PacketBuf`'s in-place tag edits checked against an independent parser (etherparse):
//! real TCP/IPv4 frames built by etherparse, tagged and untagged by switchyard, must parse
//! back with the right VLAN and a byte-identical IP packet.

use etherparse::{LinkExtSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use switchyard_wire::{PacketBuf, VlanId};

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, 7, 64240);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("build frame");
    out
}

fn ip_packet(frame: &[u8]) -> Vec<u8> {
    match SlicedPacket::from_ethernet(frame).expect("parses").net {
        Some(NetSlice::Ipv4(ip)) => [ip.header().slice(), ip.payload().payload].concat(),
        other => panic!("expected IPv4, got {other:?}"),
    }
}

proptest! {
    #[test]
    fn tagging_preserves_the_ip_packet(payload in proptest::collection::vec(any::<u8>(), 0..1500), vid in 1u16..=4094) {
        let original = tcp_frame(&payload);
        let mut buf = PacketBuf::from_wire(&original, false);
        buf.set_vlan_tag(VlanId::new(vid)).unwrap();

        let parsed = SlicedPacket::from_ethernet(buf.frame()).expect("tagged frame parses");
        let vlan = match parsed.link_exts.first() {
            Some(LinkExtSlice::Vlan(vlan)) => vlan.vlan_identifier().value(),
            other => panic!("expected a VLAN tag, got {other:?}"),
        };
        prop_assert_eq!(vlan, vid);
        prop_assert!(matches!(parsed.transport, Some(TransportSlice::Tcp(_))));
        drop(parsed);
        prop_assert_eq!(ip_packet(buf.frame()), ip_packet(&original));

        buf.set_vlan_tag(None).unwrap();
        prop_assert_eq!(buf.frame(), &original[..]);
    }
}
