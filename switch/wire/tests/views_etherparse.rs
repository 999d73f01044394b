//! The IPv4, IPv6, TCP and UDP views checked against an independent parser (etherparse):
//! packets etherparse builds must read back the same through switchyard's views, with
//! checksums that verify.

use etherparse::PacketBuilder;
use proptest::prelude::*;
use switchyard_wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpFlags, TcpPacket, UdpPacket,
};

proptest! {
    #[test]
    fn tcp_over_ipv4_reads_back(
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        ttl in any::<u8>(),
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(),
        window in any::<u16>(),
        psh in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        padding in 0usize..20,
    ) {
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, ttl)
            .tcp(ports.0, ports.1, seq, window)
            .ack(9);
        if psh {
            builder = builder.psh();
        }
        let mut frame = Vec::new();
        builder.write(&mut frame, &payload).unwrap();
        frame.resize(frame.len() + padding, 0);

        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(eth.payload_ethertype(), EtherType::IPV4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        prop_assert!(ip.verify_checksum());
        prop_assert_eq!((ip.src_addr().octets(), ip.dst_addr().octets()), (src, dst));
        prop_assert_eq!((ip.ttl(), ip.protocol()), (ttl, IpProtocol::TCP));
        prop_assert_eq!(ip.total_len(), 40 + payload.len());
        prop_assert_eq!(ip.padding().len(), padding);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        prop_assert!(tcp.verify_checksum(ip.pseudo_header_sum((20 + payload.len()) as u16)));
        prop_assert_eq!((tcp.src_port(), tcp.dst_port()), ports);
        prop_assert_eq!((tcp.seq_number(), tcp.ack_number(), tcp.window()), (seq, 9, window));
        prop_assert_eq!(tcp.flags().contains(TcpFlags::PSH), psh);
        prop_assert_eq!(tcp.payload(), &payload[..]);
    }

    #[test]
    fn udp_over_ipv6_reads_back(
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        hop_limit in any::<u8>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(src, dst, hop_limit)
            .udp(ports.0, ports.1)
            .write(&mut frame, &payload)
            .unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(eth.payload_ethertype(), EtherType::IPV6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        prop_assert_eq!((ip.src_octets(), ip.dst_octets()), (src, dst));
        prop_assert_eq!((ip.hop_limit(), ip.next_header()), (hop_limit, IpProtocol::UDP));
        prop_assert_eq!(ip.payload_len(), 8 + payload.len());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        prop_assert!(udp.verify_checksum(ip.pseudo_header_sum((8 + payload.len()) as u32)));
        prop_assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (ports.0, ports.1, 8 + payload.len()));
        prop_assert_eq!(udp.payload(), &payload[..]);
    }
}
