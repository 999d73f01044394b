//! The switch's protections in the simulator, through the same datapath switchd runs:
//! port security (a container cannot pretend to be another), storm control (a flood is
//! capped, everyone else keeps talking), and the flap guard (a MAC bouncing between two
//! ports stays put).

use std::net::Ipv4Addr;
use std::time::Duration;

use etherparse::PacketBuilder;
use switchyard::fdb::FdbConfig;
use switchyard::forward::{Decision, DropReason};
use switchyard::port::{PortSecurity, StormLimit};
use switchyard::sim::{access, frame, HostId, Network, SwitchId};
use switchyard::wire::{MacAddr, VlanId};

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 10, 0, 0, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn udp(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(5000, 6000);
    let mut out = Vec::new();
    builder.write(&mut out, b"payload").unwrap();
    out
}

/// An ARP request from (`sender_mac`, `sender_ip`), sent by `eth_src`.
fn arp(eth_src: MacAddr, sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MacAddr::BROADCAST.0);
    f.extend_from_slice(&eth_src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f.resize(60, 0);
    f
}

/// Three containers on VLAN 10, each with port security for its own MAC and address.
fn secured() -> (Network, SwitchId, Vec<HostId>) {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let hosts: Vec<HostId> = (1..=3)
        .map(|n| {
            let host = net.add_host(sw, access(10));
            let (_, port) = net.host_port(host);
            net.switch(sw)
                .set_port_policy(
                    port,
                    Some(PortSecurity {
                        mac: mac(n),
                        ipv4: vec![ip(n)],
                    }),
                    None,
                )
                .unwrap();
            host
        })
        .collect();
    (net, sw, hosts)
}

fn drops(net: &Network, sw: SwitchId, host: HostId, reason: DropReason) -> u64 {
    let (_, port) = net.host_port(host);
    let counters = net.switch(sw).counters(port).unwrap();
    counters.drops.get(&reason).copied().unwrap_or(0)
}

#[test]
fn a_container_cannot_send_as_another() {
    let (mut net, sw, h) = secured();
    // Its own MAC and address: fine.
    let d = net.send(h[0], &udp(mac(1), MacAddr::BROADCAST, ip(1), ip(2)));
    assert!(matches!(d, Decision::Flood { .. }));
    assert_eq!(net.take_inbox(h[1]).len(), 1);
    net.take_inbox(h[2]);

    // Another container's MAC: dropped, reaches nobody, counted.
    let d = net.send(h[0], &udp(mac(2), MacAddr::BROADCAST, ip(1), ip(3)));
    assert_eq!(d, Decision::Drop(DropReason::SpoofedMac));
    // Its own MAC with another's address.
    let d = net.send(h[0], &udp(mac(1), mac(3), ip(2), ip(3)));
    assert_eq!(d, Decision::Drop(DropReason::SpoofedIp));
    // ARP claiming another's address, or another's MAC inside the ARP.
    let d = net.send(h[0], &arp(mac(1), mac(1), ip(2), ip(3)));
    assert_eq!(d, Decision::Drop(DropReason::SpoofedArp));
    let d = net.send(h[0], &arp(mac(1), mac(2), ip(1), ip(3)));
    assert_eq!(d, Decision::Drop(DropReason::SpoofedArp));
    for other in &h[1..] {
        assert!(
            net.take_inbox(*other).is_empty(),
            "a spoofed frame got through"
        );
    }
    assert_eq!(drops(&net, sw, h[0], DropReason::SpoofedMac), 1);
    assert_eq!(drops(&net, sw, h[0], DropReason::SpoofedIp), 1);
    assert_eq!(drops(&net, sw, h[0], DropReason::SpoofedArp), 2);
    // The spoofed MAC was never learned on the spoofer's port.
    let fdb = net.switch(sw).fdb();
    assert_eq!(
        fdb.lookup(net.now(), VlanId::new(10).unwrap(), mac(2)),
        None
    );

    // DHCP (from 0.0.0.0), an ARP probe, and IPv6 with its own MAC are allowed.
    let d = net.send(
        h[0],
        &udp(
            mac(1),
            MacAddr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
        ),
    );
    assert!(matches!(d, Decision::Flood { .. }));
    let d = net.send(h[0], &arp(mac(1), mac(1), Ipv4Addr::UNSPECIFIED, ip(1)));
    assert!(matches!(d, Decision::Flood { .. }));
    let ipv6 = {
        let builder = PacketBuilder::ethernet2(mac(1).0, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(
                [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                1,
            )
            .udp(1, 2);
        let mut out = Vec::new();
        builder.write(&mut out, b"").unwrap();
        out
    };
    assert!(matches!(net.send(h[0], &ipv6), Decision::Flood { .. }));
}

#[test]
fn a_port_without_security_may_send_anything() {
    let (mut net, sw, h) = secured();
    let (_, port) = net.host_port(h[0]);
    net.switch(sw).set_port_policy(port, None, None).unwrap();
    let d = net.send(h[0], &frame(MacAddr::BROADCAST, mac(9), None, b""));
    assert!(matches!(d, Decision::Flood { .. }));
}

#[test]
fn a_broadcast_flood_is_capped_while_the_others_keep_talking() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let flooder = net.add_host(sw, access(10));
    let a = net.add_host(sw, access(10));
    let b = net.add_host(sw, access(10));
    for host in [flooder, a, b] {
        let (_, port) = net.host_port(host);
        net.switch(sw)
            .set_port_policy(port, None, Some(StormLimit::DEFAULT))
            .unwrap();
    }
    // a and b learn each other.
    net.send(a, &frame(MacAddr::BROADCAST, mac(1), None, b""));
    net.send(b, &frame(mac(1), mac(2), None, b""));
    for host in [flooder, a, b] {
        net.take_inbox(host);
    }
    // 10,000 broadcasts at one instant: the burst (4,000) passes, the rest is dropped.
    for _ in 0..10_000 {
        net.send(flooder, &frame(MacAddr::BROADCAST, mac(3), None, b"storm"));
    }
    assert_eq!(net.take_inbox(a).len(), 4000);
    assert_eq!(drops(&net, sw, flooder, DropReason::StormControl), 6000);
    // Unicast between the others is not flooding: untouched. Their own broadcasts have
    // their own budget.
    for _ in 0..100 {
        assert!(matches!(
            net.send(a, &frame(mac(2), mac(1), None, b"hi")),
            Decision::Output(_)
        ));
    }
    assert_eq!(net.take_inbox(b).len(), 4100);
    net.send(a, &frame(MacAddr::BROADCAST, mac(1), None, b"arp"));
    assert_eq!(net.take_inbox(b).len(), 1);
    // A second later the flooder has 2,000 more (the refill), not more.
    net.advance(Duration::from_secs(1));
    net.take_inbox(a);
    for _ in 0..5000 {
        net.send(flooder, &frame(MacAddr::BROADCAST, mac(3), None, b"storm"));
    }
    assert_eq!(net.take_inbox(a).len(), 2000);
}

#[test]
fn a_mac_bouncing_between_two_ports_stays_put() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let left = net.add_host(sw, access(10));
    let right = net.add_host(sw, access(10));
    let _watcher = net.add_host(sw, access(10));
    let (_, left_port) = net.host_port(left);
    let vlan = VlanId::new(10).unwrap();
    // The same source MAC from two ports, over and over within one second: a loop.
    for _ in 0..10 {
        net.send(left, &frame(MacAddr::BROADCAST, mac(7), None, b""));
        net.send(right, &frame(MacAddr::BROADCAST, mac(7), None, b""));
    }
    let fdb = net.switch(sw).fdb();
    let flaps = fdb.take_flaps();
    assert_eq!(flaps.len(), 1, "reported once: {flaps:?}");
    assert_eq!(fdb.lookup(net.now(), vlan, mac(7)), Some(flaps[0].port));
    assert!(fdb.counters().flap_held > 1);
    assert!([left_port, net.host_port(right).1].contains(&flaps[0].newcomer));
    // After the hold, learning follows the MAC again.
    net.advance(Duration::from_secs(11));
    let newcomer = flaps[0].newcomer;
    let mover = if newcomer == left_port { left } else { right };
    net.send(mover, &frame(MacAddr::BROADCAST, mac(7), None, b""));
    assert_eq!(
        net.switch(sw).fdb().lookup(net.now(), vlan, mac(7)),
        Some(newcomer)
    );
}
