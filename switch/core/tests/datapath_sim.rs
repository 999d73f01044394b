//! What happens after the switch's decision, in the simulator, through the same datapath
//! code switchd's threads run: segmentation and ICMP "fragmentation needed" on the way
//! into the overlay, merging of TCP segments across receive batches on the way out,
//! split horizon between VTEPs, and delivery to the router's port.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use switchyard::datapath::ROUTER_PORT;
use switchyard::fdb::FdbConfig;
use switchyard::forward::{Decision, DropReason};
use switchyard::router::{Interface, Verdict};
use switchyard::sim::{access, frame, trunk, Network, SwitchId};
use switchyard::wire::{vnet, MacAddr, VlanId, VnetHdr, VNET_HDR_LEN};
use switchyard_encap::vxlan;
use switchyard_encap::Vni;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn vlan(id: u16) -> VlanId {
    VlanId::new(id).unwrap()
}

/// `n` VTEPs at 192.0.2.1.., each peering with every other, VLAN 10 as VNI 42.
fn vteps(net: &mut Network, n: u8) -> Vec<SwitchId> {
    let switches: Vec<SwitchId> = (1..=n)
        .map(|i| {
            let sw = net.add_switch(FdbConfig::default());
            net.set_vtep(sw, ip(i));
            net.switch(sw)
                .map_vni(vlan(10), Vni::new(42).unwrap())
                .unwrap();
            sw
        })
        .collect();
    for (i, sw) in switches.iter().enumerate() {
        for j in 1..=n {
            if usize::from(j) != i + 1 {
                net.add_peer(*sw, ip(j));
            }
        }
    }
    switches
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A TCP/IPv4 frame from `src` to `dst` with `payload`, as a container's stack builds it.
fn tcp_frame(
    src: MacAddr,
    dst: MacAddr,
    payload: &[u8],
    dont_fragment: bool,
    psh: bool,
) -> Vec<u8> {
    let mut builder = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, 1000, 64240)
        .ack(1);
    if psh {
        builder = builder.psh();
    }
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    if !dont_fragment {
        out[20] &= !0x40;
        let sum = ipv4_header_checksum(&out[14..34]);
        out[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    out
}

fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum = 0u32;
    for (i, pair) in header.chunks(2).enumerate() {
        if i != 5 {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `frame` as a TAP with TSO hands it over: a vnet header saying "segment me into
/// `mss`-byte TCP segments, and finish the checksum", and the TCP checksum field holding
/// only the pseudo-header sum.
fn tso_wire(frame: &[u8], mss: u16) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let ip = &frame[14..34];
    let tcp_len = (frame.len() - 34) as u32;
    let mut sum = 6u32 + tcp_len;
    for pair in ip[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[34 + 16..34 + 18].copy_from_slice(&(sum as u16).to_be_bytes());
    let mut wire = vec![0u8; VNET_HDR_LEN];
    {
        let mut hdr = VnetHdr::new_checked(&mut wire[..]).unwrap();
        hdr.set_flags(vnet::F_NEEDS_CSUM);
        hdr.set_gso_type(vnet::GSO_TCPV4);
        hdr.set_gso_size(mss);
        hdr.set_hdr_len(54);
        hdr.set_csum_start(34);
        hdr.set_csum_offset(16);
    }
    wire.extend_from_slice(&frame);
    wire
}

/// Two hosts on VLAN 10 behind two VTEPs, each knowing where the other is.
fn two_sites() -> (
    Network,
    Vec<SwitchId>,
    switchyard::sim::HostId,
    switchyard::sim::HostId,
) {
    let mut net = Network::new();
    let s = vteps(&mut net, 2);
    let left = net.add_host(s[0], access(10));
    let right = net.add_host(s[1], access(10));
    net.send(left, &frame(MacAddr::BROADCAST, mac(1), None, b"hello"));
    net.send(right, &frame(mac(1), mac(2), None, b"hi"));
    net.take_inbox(left);
    net.take_inbox(right);
    (net, s, left, right)
}

#[test]
fn a_super_frame_crosses_the_overlay_as_one_merged_frame() {
    let (mut net, _, left, right) = two_sites();
    // A 1450-byte MTU inside, as overlay networks have: MSS 1398.
    let payload = pattern(65_000);
    let wire = tso_wire(&tcp_frame(mac(1), mac(2), &payload, true, false), 1398);
    let decision = net.send_wire(left, &wire);
    assert!(matches!(decision, Decision::Output(_)), "{decision:?}");
    // 47 segments of 1398 bytes leave in two UDP_SEGMENT sends (at most 44 datagrams
    // of this size each), so they arrive as two receive batches: merged across them,
    // the container's TAP gets one frame.
    let got = net.take_inbox_wire(right);
    assert_eq!(got.len(), 1, "one frame, merged across the two batches");
    let hdr = VnetHdr::new_checked(&got[0][..]).unwrap();
    assert_eq!(hdr.gso_type(), vnet::GSO_TCPV4);
    assert_eq!(hdr.gso_size(), 1398);
    let frame = &got[0][VNET_HDR_LEN..];
    let parsed = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(tcp)) = parsed.transport else {
        panic!("TCP");
    };
    assert_eq!(tcp.payload(), &payload[..], "every byte, in order");
    assert_eq!(tcp.sequence_number(), 1000);
}

#[test]
fn every_merged_datagram_is_counted_and_captured_on_the_peer_port() {
    use std::time::Duration;
    use switchyard::capture::{CaptureTap, Direction, Directions};
    let (mut net, s, left, _right) = two_sites();
    let peer = net.switch(s[1]).peer_port(ip(1)).unwrap();
    let before = net.switch(s[1]).counters(peer).unwrap().rx_packets;
    let (tap, reader) = CaptureTap::new(Directions::In, 8 << 20);
    net.switch(s[1]).add_capture(peer, tap).unwrap();
    let payload = pattern(65_000);
    let wire = tso_wire(&tcp_frame(mac(1), mac(2), &payload, true, false), 1398);
    net.send_wire(left, &wire);
    // 47 datagrams of one flow, merged into one frame for the TAP: each crossed the
    // tunnel port, and each is counted and captured as it crossed.
    let after = net.switch(s[1]).counters(peer).unwrap().rx_packets;
    assert_eq!(after - before, 47);
    let mut captured = 0;
    while let Some(frame) = reader.recv_timeout(Duration::from_millis(10)) {
        assert_eq!(frame.direction, Direction::In);
        assert!(
            frame.frame.len() <= 14 + 20 + 20 + 1398,
            "{}",
            frame.frame.len()
        );
        captured += 1;
    }
    assert_eq!(captured, 47);
}

#[test]
fn a_run_that_ends_in_psh_is_sent_at_once() {
    let (mut net, _, left, right) = two_sites();
    let payload = pattern(4 * 1398);
    let wire = tso_wire(&tcp_frame(mac(1), mac(2), &payload, true, true), 1398);
    net.send_wire(left, &wire);
    let got = net.take_inbox_wire(right);
    assert_eq!(got.len(), 1);
    let frame = &got[0][VNET_HDR_LEN..];
    let parsed = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(tcp)) = parsed.transport else {
        panic!("TCP");
    };
    assert!(tcp.psh(), "PSH kept on the merged frame");
    assert_eq!(tcp.payload(), &payload[..]);
}

#[test]
fn too_big_for_the_overlay_is_answered_with_frag_needed() {
    let (mut net, s, left, right) = two_sites();
    net.set_path_mtu(s[0], ip(2), 1000);
    let big = tcp_frame(mac(1), mac(2), &pattern(1300), true, false);
    let decision = net.send(left, &big);
    assert!(matches!(decision, Decision::Output(_)));
    assert!(net.take_inbox(right).is_empty(), "not sent");
    let answers = net.take_inbox(left);
    assert_eq!(answers.len(), 1, "one ICMP answer");
    let icmp = &answers[0];
    assert_eq!(&icmp[..6], &mac(1).0, "back to the sender");
    assert_eq!(icmp[14 + 9], 1, "ICMP");
    assert_eq!(
        (icmp[34], icmp[35]),
        (3, 4),
        "destination unreachable, frag needed"
    );
    // Path MTU 1000 less outer IPv4 (20), UDP (8), VXLAN (8) and inner Ethernet (14).
    assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 950);
    assert_eq!(net.datapath(s[0]).frag_needed_sent(), 1);
    let peer = net.switch(s[0]).peer_port(ip(2)).unwrap();
    let counters = net.switch(s[0]).counters(peer).unwrap();
    assert_eq!(counters.drops.get(&DropReason::TooBig), Some(&1));

    // Without DF the sender asked for no answer: dropped, not answered.
    let no_df = tcp_frame(mac(1), mac(2), &pattern(1300), false, false);
    net.send(left, &no_df);
    assert!(net.take_inbox(left).is_empty());
    assert_eq!(net.datapath(s[0]).frag_needed_sent(), 1);

    // A frame that fits goes through.
    let small = tcp_frame(mac(1), mac(2), &pattern(900), true, false);
    net.send(left, &small);
    assert_eq!(net.take_inbox(right).len(), 1);
}

#[test]
fn a_super_frame_is_segmented_to_the_path_mtu() {
    let (mut net, s, left, right) = two_sites();
    net.set_path_mtu(s[0], ip(2), 1200);
    // The sender's MSS is larger than the path takes: segmentation cannot help.
    let wire = tso_wire(
        &tcp_frame(mac(1), mac(2), &pattern(8000), true, false),
        1400,
    );
    net.send_wire(left, &wire);
    assert!(net.take_inbox(right).is_empty());
    assert_eq!(net.take_inbox(left).len(), 1, "frag needed for the sender");
    // With an MSS that fits, the segments arrive (merged again on the far side).
    let payload = pattern(8000);
    let wire = tso_wire(&tcp_frame(mac(1), mac(2), &payload, true, false), 1100);
    net.send_wire(left, &wire);
    let got = net.take_inbox_wire(right);
    let delivered: usize = got
        .iter()
        .map(|w| {
            let parsed = SlicedPacket::from_ethernet(&w[VNET_HDR_LEN..]).unwrap();
            match parsed.transport {
                Some(TransportSlice::Tcp(tcp)) => tcp.payload().len(),
                _ => 0,
            }
        })
        .sum();
    assert_eq!(delivered, payload.len());
}

#[test]
fn split_horizon_keeps_vteps_from_relaying_for_each_other() {
    let mut net = Network::new();
    let s = vteps(&mut net, 3);
    let a = net.add_host(s[0], access(10));
    let b = net.add_host(s[1], access(10));
    let c = net.add_host(s[2], access(10));
    // b's broadcast reaches a and c once each: b replicates; a and c never relay it.
    net.send(b, &frame(MacAddr::BROADCAST, mac(2), None, b"who has"));
    assert_eq!(net.take_inbox(a).len(), 1);
    assert_eq!(net.take_inbox(c).len(), 1);
    net.send(c, &frame(MacAddr::BROADCAST, mac(3), None, b""));
    net.take_inbox(a);
    net.take_inbox(b);
    // Switch 1 learned c behind VTEP 3. A unicast for c arriving from VTEP 2 must not
    // be sent on to VTEP 3: it is dropped as split horizon, and counted.
    let mut header = [0u8; vxlan::HEADER_LEN];
    vxlan::emit(&mut header, Vni::new(42).unwrap());
    let datagram = [&header[..], &frame(mac(3), mac(2), None, b"relay me")].concat();
    let decision = net.inject_vxlan(s[0], ip(2), &datagram);
    assert_eq!(decision, Decision::Drop(DropReason::SplitHorizon));
    assert!(net.take_inbox(c).is_empty());
    let from_2 = net.switch(s[0]).peer_port(ip(2)).unwrap();
    let counters = net.switch(s[0]).counters(from_2).unwrap();
    assert_eq!(counters.drops.get(&DropReason::SplitHorizon), Some(&1));
}

#[test]
fn the_router_gets_its_own_copy_of_a_flood() {
    // No static entry for the gateway's MAC: a frame to it is unknown unicast and
    // flooded, to the other container and to the router's port. The router edits its
    // copy (TTL) and routes it up; the container's copy stays as sent.
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let web = net.add_host(sw, access(10));
    let db = net.add_host(sw, access(10));
    let router = net.add_router(sw, trunk("10", None));
    let gateway_mac = MacAddr([0x02, 0x53, 0x58, 0, 0, 10]);
    net.router_mut(router).set_interface(Interface {
        vlan: vlan(10),
        subnet: "10.1.0.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        mac: gateway_mac,
        uplink: true,
    });
    let builder = PacketBuilder::ethernet2(
        MacAddr::from_ipv4(Ipv4Addr::new(10, 1, 0, 2)).0,
        gateway_mac.0,
    )
    .ipv4([10, 1, 0, 2], [192, 0, 2, 7], 64)
    .udp(5000, 53);
    let mut out = Vec::new();
    builder.write(&mut out, b"query").unwrap();
    let decision = net.send(web, &out);
    assert!(matches!(decision, Decision::Flood { .. }), "{decision:?}");
    let at_db = net.take_inbox(db);
    assert_eq!(at_db.len(), 1);
    assert_eq!(at_db[0][14 + 8], 64, "the container's copy keeps its TTL");
    let up = net.take_uplink(router);
    assert_eq!(up.len(), 1, "routed to the host");
    assert_eq!(up[0][8], 63, "the router's copy had its TTL decremented");
    assert_eq!(net.take_verdicts(router), [Verdict::ToUplink]);
    let counters = net.switch(sw).counters(ROUTER_PORT).unwrap();
    assert_eq!(
        counters.tx_packets, 1,
        "delivery to the router's port is counted"
    );
}

#[test]
fn a_transmit_the_device_refused_later_becomes_a_drop() {
    // A driver that sends in batches (switchd's host ports) learns only after the
    // datapath counted a frame as sent that the kernel refused it.
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(10));
    let b = net.add_host(sw, access(10));
    let (_, b_port) = net.host_port(b);
    let mac = |last| MacAddr([0x02, 0, 0, 0, 0, last]);
    let sent = frame(mac(2), mac(1), None, b"hello");
    net.send(a, &sent);
    let before = net.switch(sw).counters(b_port).unwrap();
    assert_eq!((before.tx_packets, before.tx_bytes), (1, sent.len() as u64));
    net.switch(sw).record_tx_refused(b_port, sent.len());
    let after = net.switch(sw).counters(b_port).unwrap();
    assert_eq!((after.tx_packets, after.tx_bytes), (0, 0));
    assert_eq!(after.drops.get(&DropReason::TxError), Some(&1));
}
