//! `wire_views`: every view of `switchyard-wire` over arbitrary bytes, and edits of a
//! [`PacketBuf`].
//!
//! Input: a byte whose low bit says whether the buffer has a vnet header and whose next
//! four bits count the edits, three bytes per edit (kind, then a `u16` argument), then
//! the wire image. Every view is built over the whole image, over the frame after a
//! vnet header, and layer by layer (Ethernet → IPv4/IPv6 → TCP/UDP/ICMP), with both
//! constructors; every getter of every view a constructor accepts is called, and the
//! checksum setters are checked against the verifiers. The encap crate's byte-level
//! entry points (flow hash, partial checksum, TCP segment parsing, frag-needed) see
//! every frame too. Then the edits run on a [`PacketBuf`] holding the image, each
//! checked against what it promises.

use std::hint::black_box;

use switchyard_encap::{coalesce, flow, icmp, partial};
use switchyard_wire::icmpv4::{self, Icmpv4Error, Quote};
use switchyard_wire::{
    checksum, EtherType, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv6Packet,
    PacketBuf, TcpPacket, UdpPacket, VlanId, VnetHdr, VNET_HDR_LEN,
};

use crate::Input;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let head = input.byte();
    let has_vnet_hdr = head & 1 != 0;
    let edits: Vec<(u8, u16)> = (0..(head >> 1) & 0x0f)
        .map(|_| (input.byte(), input.u16()))
        .collect();
    let wire = input.rest();

    views(wire);
    if let Some(frame) = wire.get(VNET_HDR_LEN..) {
        vnet(&wire[..VNET_HDR_LEN]);
        views(frame);
    }
    edit(wire, has_vnet_hdr, &edits);
}

/// Every view over `bytes` as it is, and layer by layer when it is a frame.
fn views(bytes: &[u8]) {
    vnet(bytes);
    ipv4(bytes);
    ipv6(bytes);
    tcp(bytes, None);
    udp(bytes, None);
    icmp(bytes);
    if let Ok(eth) = EthernetFrame::new_checked(bytes) {
        black_box((eth.dst(), eth.src(), eth.ethertype(), eth.tci()));
        if let Some(tci) = eth.tci() {
            black_box((tci.priority(), tci.drop_eligible(), tci.vid(), tci.vlan()));
        }
        assert!(eth.header_len() <= bytes.len());
        let payload = eth.payload();
        assert_eq!(payload.len(), bytes.len() - eth.header_len());
        match eth.payload_ethertype() {
            EtherType::IPV4 => ipv4(payload),
            EtherType::IPV6 => ipv6(payload),
            _ => {}
        }
        encap(bytes);
    }
}

fn vnet(bytes: &[u8]) {
    if let Ok(hdr) = VnetHdr::new_checked(bytes) {
        black_box((
            hdr.flags(),
            hdr.gso_type(),
            hdr.is_gso(),
            hdr.needs_csum(),
            hdr.hdr_len(),
            hdr.gso_size(),
            hdr.csum_start(),
            hdr.csum_offset(),
        ));
        let mut copy = bytes[..VNET_HDR_LEN].to_vec();
        let mut hdr = VnetHdr::new_checked(&mut copy[..]).expect("10 bytes");
        hdr.shift_offsets(4);
        hdr.shift_offsets(-4);
        hdr.shift_offsets(i16::MIN);
        hdr.shift_offsets(i16::MAX);
    }
}

fn ipv4(bytes: &[u8]) {
    if let Ok(ip) = Ipv4Packet::new_fixed_header(bytes) {
        ipv4_getters(&ip);
        let _ = black_box(ip.check());
    }
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
        return;
    };
    ipv4_getters(&ip);
    assert!(ip.header_len() <= ip.packet().len() && ip.packet().len() <= bytes.len());
    assert_eq!(ip.packet().len() + ip.padding().len(), bytes.len());
    let l4 = ip.payload();
    let l4_len = u16::try_from(l4.len()).unwrap_or(u16::MAX);
    let pseudo = ip.pseudo_header_sum(l4_len);
    match ip.protocol() {
        IpProtocol::TCP => tcp(l4, Some(pseudo)),
        IpProtocol::UDP => udp(l4, Some(pseudo)),
        IpProtocol::ICMP => icmp(l4),
        _ => {}
    }
    let _ = black_box(icmpv4::may_answer(&ip, None));
    for error in [
        Icmpv4Error::frag_needed(ip.dst_addr(), ip.src_addr(), 1400, Quote::Minimal),
        Icmpv4Error::ttl_expired(ip.dst_addr(), ip.src_addr(), Quote::UpTo(576)),
        Icmpv4Error::ttl_expired(ip.dst_addr(), ip.src_addr(), Quote::UpTo(usize::MAX)),
    ] {
        let mut out = Vec::new();
        if let Ok(len) = error.emit(&ip, None, &mut out) {
            assert_eq!(len, out.len());
            let reply = Ipv4Packet::new_checked(&out[..]).expect("an emitted error parses");
            assert!(
                reply.verify_checksum(),
                "an emitted error has a good checksum"
            );
            let message = Icmpv4Packet::new_checked(reply.payload()).expect("an ICMP header");
            assert!(message.verify_checksum());
        }
    }

    let mut copy = bytes.to_vec();
    let mut ip = Ipv4Packet::new_checked(&mut copy[..]).expect("parsed above");
    ip.fill_checksum();
    assert!(
        ip.verify_checksum(),
        "fill_checksum makes a header that verifies"
    );
    if ip.decrement_ttl() {
        assert!(
            ip.verify_checksum(),
            "decrement_ttl keeps the checksum right"
        );
    }
    ip.set_ident(0xbeef);
    ip.set_ttl(1);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr([10, 0, 0, 1].into());
    ip.set_dst_addr([10, 0, 0, 2].into());
    ip.payload_mut().fill(0);
    ip.set_total_len(u16::MAX);
    ip.set_checksum(0);
}

fn ipv4_getters<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) {
    black_box((
        ip.version(),
        ip.header_len(),
        ip.dscp_ecn(),
        ip.total_len(),
        ip.ident(),
        ip.dont_frag(),
        ip.more_frags(),
        ip.frag_offset(),
        ip.is_fragment(),
        ip.ttl(),
        ip.protocol(),
        ip.checksum(),
        ip.src_addr(),
        ip.dst_addr(),
    ));
    black_box((
        ip.header(),
        ip.options(),
        ip.verify_checksum(),
        ip.packet(),
        ip.payload(),
        ip.padding(),
        ip.pseudo_header_sum(u16::MAX),
    ));
}

fn ipv6(bytes: &[u8]) {
    if let Ok(ip) = Ipv6Packet::new_fixed_header(bytes) {
        ipv6_getters(&ip);
        let _ = black_box(ip.check());
    }
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return;
    };
    ipv6_getters(&ip);
    assert_eq!(ip.packet().len() + ip.padding().len(), bytes.len());
    let l4 = ip.payload();
    let pseudo = ip.pseudo_header_sum(l4.len() as u32);
    match ip.next_header() {
        IpProtocol::TCP => tcp(l4, Some(pseudo)),
        IpProtocol::UDP => udp(l4, Some(pseudo)),
        _ => {}
    }
    let mut copy = bytes.to_vec();
    let mut ip = Ipv6Packet::new_checked(&mut copy[..]).expect("parsed above");
    ip.set_hop_limit(0);
    ip.set_payload_len(u16::MAX);
}

fn ipv6_getters<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) {
    black_box((
        ip.version(),
        ip.payload_len(),
        ip.next_header(),
        ip.hop_limit(),
        ip.src_octets(),
        ip.dst_octets(),
        ip.src_addr(),
        ip.dst_addr(),
        ip.packet(),
        ip.payload(),
        ip.padding(),
        ip.pseudo_header_sum(u32::MAX),
    ));
}

fn tcp(bytes: &[u8], pseudo: Option<u16>) {
    if let Ok(tcp) = TcpPacket::new_fixed_header(bytes) {
        tcp_getters(&tcp);
        let _ = black_box(tcp.check());
    }
    let Ok(tcp) = TcpPacket::new_checked(bytes) else {
        return;
    };
    tcp_getters(&tcp);
    assert_eq!(tcp.header().len() + tcp.payload().len(), bytes.len());
    let pseudo = pseudo.unwrap_or(0x1234);
    let mut copy = bytes.to_vec();
    let mut tcp = TcpPacket::new_checked(&mut copy[..]).expect("parsed above");
    tcp.set_seq_number(u32::MAX);
    tcp.set_flags(tcp.flags() | switchyard_wire::TcpFlags::PSH);
    tcp.fill_checksum(pseudo);
    assert!(
        tcp.verify_checksum(pseudo),
        "fill_checksum makes a segment that verifies"
    );
}

fn tcp_getters<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) {
    black_box((
        tcp.src_port(),
        tcp.dst_port(),
        tcp.seq_number(),
        tcp.ack_number(),
        tcp.header_len(),
        tcp.flags(),
        tcp.offset_and_flags(),
        tcp.window(),
        tcp.checksum(),
        tcp.urgent(),
        tcp.header(),
        tcp.options(),
        tcp.payload(),
        tcp.verify_checksum(0),
    ));
}

fn udp(bytes: &[u8], pseudo: Option<u16>) {
    let Ok(udp) = UdpPacket::new_checked(bytes) else {
        return;
    };
    black_box((
        udp.src_port(),
        udp.dst_port(),
        udp.len(),
        udp.is_empty(),
        udp.checksum(),
        udp.payload(),
        udp.verify_checksum(0),
    ));
    let pseudo = pseudo.unwrap_or(0x1234);
    let mut copy = bytes.to_vec();
    let mut udp = UdpPacket::new_checked(&mut copy[..]).expect("parsed above");
    udp.set_len(u16::MAX);
    udp.fill_checksum(pseudo);
    assert_ne!(udp.checksum(), 0, "a filled UDP checksum is never 0");
    assert!(
        udp.verify_checksum(pseudo),
        "fill_checksum makes a datagram that verifies"
    );
}

fn icmp(bytes: &[u8]) {
    let Ok(icmp) = Icmpv4Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        icmp.msg_type(),
        icmp.msg_type().is_error(),
        icmp.code(),
        icmp.checksum(),
        icmp.rest_of_header(),
        icmp.echo_ident(),
        icmp.echo_seq_no(),
        icmp.next_hop_mtu(),
        icmp.data(),
        icmp.verify_checksum(),
    ));
    let mut copy = bytes.to_vec();
    let mut icmp = Icmpv4Packet::new_checked(&mut copy[..]).expect("parsed above");
    icmp.set_msg_type(switchyard_wire::Icmpv4Type::ECHO_REPLY);
    icmp.set_code(0);
    icmp.set_rest_of_header([1, 2, 3, 4]);
    icmp.data_mut().reverse();
    icmp.fill_checksum();
    assert!(
        icmp.verify_checksum(),
        "fill_checksum makes a message that verifies"
    );
}

/// The encap crate's entry points that read a frame.
fn encap(frame: &[u8]) {
    black_box(flow::flow_hash(frame));
    if let Some((start, offset)) = partial::partial_checksum(frame) {
        assert!(usize::from(start) + usize::from(offset) + 2 <= frame.len());
    }
    if let Some(segment) = coalesce::TcpSegment::parse(frame) {
        assert!(segment.header_len() + segment.payload_len() <= frame.len());
        let segments = [(frame, segment)];
        let mut out = Vec::new();
        black_box(coalesce::merge(&segments, &mut out));
        assert_eq!(out.len(), coalesce::merged_len(&segments));
        black_box(coalesce::continues(
            frame,
            &segment,
            frame,
            &segment,
            segment.payload_len(),
        ));
        black_box(coalesce::open_ended(&segment, out.len()));
    }
    for mtu in [0, 68, 576, 1400, u16::MAX] {
        if let Some(answer) = icmp::frag_needed(frame, mtu) {
            let eth = EthernetFrame::new_checked(&answer[..]).expect("an Ethernet answer");
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 answer");
            assert!(ip.verify_checksum());
        }
    }
    black_box(checksum::checksum(frame));
}

/// The edits on a [`PacketBuf`]: tag pushes, pops and rewrites, link headers put on and
/// taken off, each checked against what it promises.
fn edit(wire: &[u8], has_vnet_hdr: bool, edits: &[(u8, u16)]) {
    let mut buf = PacketBuf::from_wire(wire, has_vnet_hdr);
    assert_eq!(buf.wire(), wire);
    for &(kind, arg) in edits {
        let before = buf.wire().to_vec();
        let frame_before = buf.frame().to_vec();
        match kind % 5 {
            0 => {
                let vlan = VlanId::new(arg % 4096);
                let result = buf.set_vlan_tag(vlan);
                if result.is_err() {
                    assert_eq!(
                        buf.wire(),
                        &before[..],
                        "a refused tag edit changes nothing"
                    );
                } else if let Some(vlan) = vlan {
                    let eth = EthernetFrame::new_checked(buf.frame()).expect("a tagged frame");
                    assert_eq!(eth.tci().and_then(|t| t.vlan()), Some(vlan));
                    assert_eq!(buf.frame()[..12], frame_before[..12], "addresses stay");
                    assert_eq!(
                        buf.frame()[16..],
                        frame_before[frame_before.len() + 16 - buf.frame().len()..],
                        "only the tag changes"
                    );
                }
            }
            1 => {
                let header = vec![arg as u8; usize::from(arg >> 8)];
                if buf.push_front(&header).is_ok() {
                    assert_eq!(&buf.frame()[..header.len()], &header[..]);
                    assert_eq!(&buf.frame()[header.len()..], &frame_before[..]);
                    buf.strip_front(header.len())
                        .expect("what was pushed comes off");
                    assert_eq!(buf.frame(), &frame_before[..]);
                } else {
                    assert_eq!(buf.wire(), &before[..], "a refused push changes nothing");
                }
            }
            2 => {
                let len = usize::from(arg % 128);
                if buf.strip_front(len).is_ok() {
                    assert_eq!(buf.frame(), &frame_before[len..]);
                } else {
                    assert_eq!(buf.wire(), &before[..], "a refused strip changes nothing");
                }
            }
            3 => {
                if let Some(hdr) = buf.vnet_hdr() {
                    black_box((hdr.csum_start(), hdr.hdr_len(), hdr.gso_size()));
                }
                if let Some(mut hdr) = buf.vnet_hdr_mut() {
                    hdr.set_csum_start(arg);
                }
                black_box(buf.has_vnet_hdr());
                buf.wire_mut()
                    .iter_mut()
                    .take(1)
                    .for_each(|b| *b ^= arg as u8);
                buf.frame_mut()
                    .iter_mut()
                    .take(1)
                    .for_each(|b| *b ^= arg as u8);
            }
            _ => {
                let len = usize::from(arg) % (wire.len() + 1);
                buf.load(&wire[..len]).expect("within the capacity");
                assert_eq!(buf.wire(), &wire[..len]);
                if arg & 0x8000 != 0 {
                    assert!(buf.load(&vec![0; wire.len() + 1]).is_err());
                    assert!(
                        buf.wire().is_empty(),
                        "a refused load leaves nothing behind"
                    );
                }
            }
        }
        views(buf.frame());
    }
}
