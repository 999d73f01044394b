//! Networks in the simulator: containers on two VLANs, switchd's router on a trunk port
//! between them, the host behind its uplink. Real ARP, IPv4 and ICMP frames go through
//! the same `Switch` and `Router` cores switchd runs; no root, no sockets, a virtual clock.

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::{Icmpv4Type, PacketBuilder, SlicedPacket};
use switchyard::fdb::FdbConfig;
use switchyard::router::{Interface, RouterDrop, Verdict};
use switchyard::sim::{access, tag_of, trunk, HostId, Network, RouterId};
use switchyard::wire::{MacAddr, VlanId};

const GW_MAC_10: MacAddr = MacAddr([0x02, 0x53, 0x58, 0, 0, 10]);
const GW_MAC_20: MacAddr = MacAddr([0x02, 0x53, 0x58, 0, 0, 20]);

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

struct Site {
    net: Network,
    router: RouterId,
    /// (host, its address) — web and db on VLAN 10 (10.1.0.0/24), other on VLAN 20.
    web: (HostId, Ipv4Addr),
    db: (HostId, Ipv4Addr),
    other: (HostId, Ipv4Addr),
}

fn site() -> Site {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let web = net.add_host(sw, access(10));
    let db = net.add_host(sw, access(10));
    let other = net.add_host(sw, access(20));
    let router = net.add_router(sw, trunk("10,20", None));
    let (_, router_port) = net.router_port(router);
    for (vlan, subnet, gateway, mac) in [
        (10, "10.1.0.0/24", "10.1.0.1", GW_MAC_10),
        (20, "10.2.0.0/24", "10.2.0.1", GW_MAC_20),
    ] {
        let vlan = VlanId::new(vlan).unwrap();
        net.router_mut(router).set_interface(Interface {
            vlan,
            subnet: subnet.parse().unwrap(),
            gateway: ip(gateway),
            mac,
            uplink: true,
        });
        // As switchd does: the gateway MAC is a static entry towards the router.
        net.switch(sw)
            .fdb()
            .add_static(vlan, mac, router_port)
            .unwrap();
    }
    Site {
        net,
        router,
        web: (web, ip("10.1.0.2")),
        db: (db, ip("10.1.0.3")),
        other: (other, ip("10.2.0.2")),
    }
}

fn mac_of(addr: Ipv4Addr) -> MacAddr {
    MacAddr::from_ipv4(addr)
}

fn arp(op: u16, sender: (MacAddr, Ipv4Addr), target: (MacAddr, Ipv4Addr)) -> Vec<u8> {
    let dst = if op == 1 {
        MacAddr::BROADCAST
    } else {
        target.0
    };
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst.0);
    frame.extend_from_slice(&sender.0 .0);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender.0 .0);
    frame.extend_from_slice(&sender.1.octets());
    frame.extend_from_slice(&target.0 .0);
    frame.extend_from_slice(&target.1.octets());
    frame.resize(60, 0);
    frame
}

fn echo(dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(mac_of(src).0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), ttl)
        .icmpv4_echo_request(7, 1);
    let payload = b"switchyard";
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).unwrap();
    frame
}

/// An echo request as the host sends it into the uplink (IP only).
fn echo_ip(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).icmpv4_echo_request(9, 1);
    let mut packet = Vec::with_capacity(builder.size(4));
    builder.write(&mut packet, b"ping").unwrap();
    packet
}

/// (source, destination, TTL, is an echo reply) of the IPv4 packet in `frame`, an
/// Ethernet frame or (from the uplink) a bare IP packet.
fn ipv4_of(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, bool)> {
    let sliced = SlicedPacket::from_ethernet(frame)
        .ok()
        .filter(|p| p.net.is_some())
        .or_else(|| SlicedPacket::from_ip(frame).ok())?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
        return None;
    };
    let header = ip.header();
    let reply = matches!(
        sliced.transport,
        Some(etherparse::TransportSlice::Icmpv4(icmp)) if matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(_))
    );
    Some((
        header.source_addr(),
        header.destination_addr(),
        header.ttl(),
        reply,
    ))
}

#[test]
fn a_container_resolves_and_pings_its_gateway() {
    let mut s = site();
    let (web, web_ip) = s.web;
    s.net.send(
        web,
        &arp(
            1,
            (mac_of(web_ip), web_ip),
            (MacAddr([0; 6]), ip("10.1.0.1")),
        ),
    );
    let inbox = s.net.take_inbox(web);
    let reply = inbox
        .iter()
        .find(|f| f.get(12..14) == Some(&[0x08, 0x06]) && f.get(20..22) == Some(&[0, 2]))
        .expect("an ARP reply");
    assert_eq!(&reply[..6], &mac_of(web_ip).0, "unicast to the asker");
    assert_eq!(&reply[22..28], &GW_MAC_10.0, "the gateway's MAC");
    assert_eq!(tag_of(reply), None, "untagged on the access port");

    s.net
        .send(web, &echo(GW_MAC_10, web_ip, ip("10.1.0.1"), 64));
    let inbox = s.net.take_inbox(web);
    let answers: Vec<_> = inbox.iter().filter_map(|f| ipv4_of(f)).collect();
    assert_eq!(answers, [(ip("10.1.0.1"), web_ip, 64, true)]);
    // The other container on the VLAN saw the ARP broadcast, not the unicast echo.
    let db_inbox = s.net.take_inbox(s.db.0);
    assert!(db_inbox.iter().all(|f| ipv4_of(f).is_none()));
}

#[test]
fn networks_are_isolated_but_each_reaches_the_uplink() {
    let mut s = site();
    let (web, web_ip) = s.web;
    let (other, other_ip) = s.other;
    s.net.send(web, &echo(GW_MAC_10, web_ip, other_ip, 64));
    s.net
        .send(web, &echo(GW_MAC_10, web_ip, ip("10.2.0.1"), 64));
    assert!(s.net.take_inbox(other).is_empty(), "crossed networks");
    assert_eq!(
        s.net.take_verdicts(s.router),
        [
            Verdict::Drop(RouterDrop::Isolated),
            Verdict::Drop(RouterDrop::Isolated)
        ]
    );
    assert!(s.net.take_uplink(s.router).is_empty());

    // Outside the networks: routed up, one hop later.
    s.net
        .send(web, &echo(GW_MAC_10, web_ip, ip("192.0.2.7"), 64));
    let up = s.net.take_uplink(s.router);
    assert_eq!(up.len(), 1);
    assert_eq!(ipv4_of(&up[0]), Some((web_ip, ip("192.0.2.7"), 63, false)));
    // The same container on both networks would have used its own interface on each.
    s.net
        .send(other, &echo(GW_MAC_20, other_ip, ip("192.0.2.7"), 64));
    assert_eq!(s.net.take_uplink(s.router).len(), 1);
}

#[test]
fn the_host_reaches_a_container_after_one_arp_round() {
    let mut s = site();
    let (db, db_ip) = s.db;
    let verdict = s
        .net
        .send_uplink(s.router, &echo_ip(ip("192.0.2.7"), db_ip));
    assert_eq!(
        verdict,
        Verdict::Held,
        "the router does not know db's MAC yet"
    );
    // The ARP request reached every container on VLAN 10, and only them.
    let asked = s.net.take_inbox(db);
    assert!(asked
        .iter()
        .any(|f| f.get(12..14) == Some(&[0x08, 0x06]) && f.get(38..42) == Some(&db_ip.octets())));
    assert!(s.net.take_inbox(s.other.0).is_empty());
    // db answers; the held packet is released to it.
    s.net.send(
        db,
        &arp(2, (mac_of(db_ip), db_ip), (GW_MAC_10, ip("10.1.0.1"))),
    );
    let delivered: Vec<_> = s
        .net
        .take_inbox(db)
        .iter()
        .filter_map(|f| ipv4_of(f))
        .collect();
    assert_eq!(delivered, [(ip("192.0.2.7"), db_ip, 63, false)]);
    // From now on the neighbour is known: straight through.
    let verdict = s
        .net
        .send_uplink(s.router, &echo_ip(ip("192.0.2.7"), db_ip));
    assert!(matches!(verdict, Verdict::ToSwitch { .. }), "{verdict:?}");
    assert_eq!(s.net.take_inbox(db).len(), 1);
}

#[test]
fn an_unanswered_arp_gives_up_and_a_learned_neighbour_ages_out() {
    let mut s = site();
    let (web, web_ip) = s.web;
    let silent = ip("10.1.0.99");
    assert_eq!(
        s.net
            .send_uplink(s.router, &echo_ip(ip("192.0.2.7"), silent)),
        Verdict::Held
    );
    s.net.advance(Duration::from_secs(5));
    let counters = s.net.router_mut(s.router).counters();
    assert_eq!(counters.drops.get(&RouterDrop::Unresolved), Some(&1));

    // web announces itself by asking for the gateway; the router learns it.
    s.net.send(
        web,
        &arp(
            1,
            (mac_of(web_ip), web_ip),
            (MacAddr([0; 6]), ip("10.1.0.1")),
        ),
    );
    s.net.take_inbox(web);
    let verdict = s
        .net
        .send_uplink(s.router, &echo_ip(ip("192.0.2.7"), web_ip));
    assert!(matches!(verdict, Verdict::ToSwitch { .. }), "{verdict:?}");
    s.net.advance(Duration::from_secs(301));
    let verdict = s
        .net
        .send_uplink(s.router, &echo_ip(ip("192.0.2.7"), web_ip));
    assert_eq!(verdict, Verdict::Held, "the learned entry aged out");
}
