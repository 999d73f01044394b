//! The forwarding core in a simulated network of hosts and switches, on a virtual clock.

use std::time::Duration;

use switchyard::fdb::FdbConfig;
use switchyard::forward::{Decision, DropReason};
use switchyard::sim::{access, frame, tag_of, trunk, HostId, Network};
use switchyard::wire::MacAddr;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn inboxes(net: &mut Network, hosts: &[HostId]) -> Vec<usize> {
    hosts.iter().map(|h| net.take_inbox(*h).len()).collect()
}

#[test]
fn unknown_unicast_floods_then_learned_unicast_goes_to_one_port() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let hosts: Vec<HostId> = (0..4).map(|_| net.add_host(sw, access(1))).collect();

    // Host 0 -> host 1, not yet known: everyone but the sender gets it.
    let decision = net.send(hosts[0], &frame(mac(1), mac(0), None, b"hello"));
    assert!(matches!(decision, Decision::Flood { .. }));
    assert_eq!(inboxes(&mut net, &hosts), vec![0, 1, 1, 1]);

    // Host 1 answers: host 0 was learned, so only host 0 gets it.
    let decision = net.send(hosts[1], &frame(mac(0), mac(1), None, b"hi"));
    assert!(matches!(decision, Decision::Output(_)));
    assert_eq!(inboxes(&mut net, &hosts), vec![1, 0, 0, 0]);

    // And now host 1 is known too.
    net.send(hosts[0], &frame(mac(1), mac(0), None, b"again"));
    assert_eq!(inboxes(&mut net, &hosts), vec![0, 1, 0, 0]);
}

#[test]
fn broadcast_and_multicast_reach_every_other_port_of_the_vlan() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let hosts: Vec<HostId> = (0..3).map(|_| net.add_host(sw, access(5))).collect();
    net.send(hosts[1], &frame(MacAddr::BROADCAST, mac(1), None, b"arp"));
    assert_eq!(inboxes(&mut net, &hosts), vec![1, 0, 1]);
    let ipv6_all_nodes = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    net.send(hosts[2], &frame(ipv6_all_nodes, mac(2), None, b"nd"));
    assert_eq!(inboxes(&mut net, &hosts), vec![1, 1, 0]);
}

#[test]
fn vlans_are_isolated_even_for_broadcast_and_known_macs() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let red = [net.add_host(sw, access(10)), net.add_host(sw, access(10))];
    let blue = [net.add_host(sw, access(20)), net.add_host(sw, access(20))];

    net.send(red[0], &frame(MacAddr::BROADCAST, mac(1), None, b""));
    net.send(blue[0], &frame(MacAddr::BROADCAST, mac(3), None, b""));
    assert_eq!(inboxes(&mut net, &red), vec![0, 1]);
    assert_eq!(inboxes(&mut net, &blue), vec![0, 1]);

    // Blue host 1 addresses red host 0's MAC, which is known, but only in VLAN 10.
    net.send(blue[1], &frame(mac(1), mac(4), None, b""));
    assert_eq!(inboxes(&mut net, &red), vec![0, 0]);
    assert_eq!(
        inboxes(&mut net, &blue),
        vec![1, 0],
        "unknown in VLAN 20: flooded there only"
    );
}

#[test]
fn trunk_ports_tag_and_native_vlan_stays_untagged() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a10 = net.add_host(sw, access(10));
    let a20 = net.add_host(sw, access(20));
    let a30 = net.add_host(sw, access(30));
    let t = net.add_host(sw, trunk("10,20", Some(30)));

    // Access -> trunk: tag pushed.
    net.send(a10, &frame(MacAddr::BROADCAST, mac(10), None, b"x"));
    let got = net.take_inbox(t);
    assert_eq!(got.len(), 1);
    assert_eq!(tag_of(&got[0]), Some(10));
    assert_eq!(got[0].len(), 64, "60-byte frame plus the 4-byte tag");

    // Native VLAN: untagged on the trunk.
    net.send(a30, &frame(MacAddr::BROADCAST, mac(30), None, b"x"));
    assert_eq!(tag_of(&net.take_inbox(t)[0]), None);

    // Trunk -> access: tag popped, and only into the tagged VLAN.
    let tagged = frame(MacAddr::BROADCAST, mac(99), Some(20), b"x");
    net.send(t, &tagged);
    let got = net.take_inbox(a20);
    assert_eq!(got.len(), 1);
    assert_eq!(tag_of(&got[0]), None);
    assert_eq!(got[0].len(), tagged.len() - 4);
    assert!(net.take_inbox(a10).is_empty() && net.take_inbox(a30).is_empty());

    // Untagged on the trunk: native VLAN.
    net.send(t, &frame(MacAddr::BROADCAST, mac(99), None, b"x"));
    assert_eq!(net.take_inbox(a30).len(), 1);
    assert!(net.take_inbox(a10).is_empty());
}

#[test]
fn wrongly_tagged_frames_are_dropped_and_counted() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(10));
    let b = net.add_host(sw, access(10));
    let t = net.add_host(sw, trunk("10", None));

    let d = net.send(a, &frame(MacAddr::BROADCAST, mac(1), Some(10), b""));
    assert_eq!(d, Decision::Drop(DropReason::TaggedOnAccess));
    let d = net.send(t, &frame(MacAddr::BROADCAST, mac(2), Some(20), b""));
    assert_eq!(d, Decision::Drop(DropReason::VlanNotAllowed));
    let d = net.send(t, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    assert_eq!(d, Decision::Drop(DropReason::UntaggedOnTrunk));
    let d = net.send(t, &frame(MacAddr::BROADCAST, mac(2), Some(4095), b""));
    assert_eq!(d, Decision::Drop(DropReason::InvalidVlan));
    assert!(net.take_inbox(b).is_empty());

    // A priority tag (VLAN 0) on an access port is the port's VLAN; it leaves untagged.
    let d = net.send(a, &frame(MacAddr::BROADCAST, mac(1), Some(0), b""));
    assert!(matches!(d, Decision::Flood { .. }));
    assert_eq!(tag_of(&net.take_inbox(b)[0]), None);
    assert_eq!(tag_of(&net.take_inbox(t)[0]), Some(10));

    let (sw_a, port_a) = net.host_port(a);
    let counters = net.switch(sw_a).counters(port_a).unwrap();
    assert_eq!(counters.drops.get(&DropReason::TaggedOnAccess), Some(&1));
    assert_eq!(counters.rx_packets, 2);
}

#[test]
fn bad_sources_reserved_groups_and_runts_are_not_forwarded() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(1));
    let b = net.add_host(sw, access(1));
    let stp = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]);
    assert_eq!(
        net.send(a, &frame(stp, mac(1), None, b"bpdu")),
        Decision::Drop(DropReason::ReservedMulticast)
    );
    assert_eq!(
        net.send(a, &frame(mac(2), MacAddr::BROADCAST, None, b"")),
        Decision::Drop(DropReason::InvalidSource)
    );
    assert_eq!(
        net.send(a, &[0u8; 13]),
        Decision::Drop(DropReason::Malformed)
    );
    assert_eq!(
        net.send(a, &frame(MacAddr::BROADCAST, mac(1), None, b"")[..16]),
        Decision::Flood {
            vlan: switchyard::wire::VlanId::new(1).unwrap(),
            except: net.host_port(a).1
        },
        "a runt with a whole header is still a frame"
    );
    assert_eq!(net.take_inbox(b).len(), 1);
    assert_eq!(
        net.switch(sw).fdb().len(),
        1,
        "only the valid source was learned"
    );
}

#[test]
fn a_frame_for_the_ingress_segment_is_dropped() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(1));
    let b = net.add_host(sw, access(1));
    net.send(a, &frame(MacAddr::BROADCAST, mac(1), None, b""));
    net.take_inbox(b);
    // mac(1) lives on a's port; a frame from that port to mac(1) goes nowhere.
    assert_eq!(
        net.send(a, &frame(mac(1), mac(7), None, b"")),
        Decision::Drop(DropReason::SameSegment)
    );
    assert!(net.take_inbox(b).is_empty());
}

#[test]
fn entries_age_out_on_the_virtual_clock() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig {
        aging: Duration::from_secs(30),
        ..FdbConfig::default()
    });
    let hosts: Vec<HostId> = (0..3).map(|_| net.add_host(sw, access(1))).collect();
    net.send(hosts[1], &frame(MacAddr::BROADCAST, mac(1), None, b""));
    inboxes(&mut net, &hosts);

    net.advance(Duration::from_secs(29));
    net.send(hosts[0], &frame(mac(1), mac(0), None, b""));
    assert_eq!(
        inboxes(&mut net, &hosts),
        vec![0, 1, 0],
        "still known at 29 s"
    );

    net.advance(Duration::from_secs(1));
    assert_eq!(net.switch(sw).fdb().counters().aged, 1);
    net.send(hosts[2], &frame(mac(1), mac(2), None, b""));
    assert_eq!(
        inboxes(&mut net, &hosts),
        vec![1, 1, 0],
        "aged out at 30 s: flooded"
    );
}

#[test]
fn traffic_follows_a_moved_mac() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(1));
    let b = net.add_host(sw, access(1));
    let c = net.add_host(sw, access(1));
    net.send(b, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    net.move_host(b, sw, access(1));
    net.send(b, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    assert_eq!(net.switch(sw).fdb().counters().moved, 1);
    for h in [a, b, c] {
        net.take_inbox(h);
    }
    net.send(a, &frame(mac(2), mac(1), None, b""));
    assert_eq!(net.take_inbox(b).len(), 1);
    assert!(net.take_inbox(c).is_empty());
}

#[test]
fn a_mac_flood_on_one_port_does_not_push_out_other_ports() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig {
        aging: Duration::from_secs(300),
        max_entries: 64,
        max_per_port: 16,
        ..FdbConfig::default()
    });
    let honest = net.add_host(sw, access(1));
    let other = net.add_host(sw, access(1));
    let attacker = net.add_host(sw, access(1));
    net.send(honest, &frame(MacAddr::BROADCAST, mac(1), None, b""));
    net.send(other, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    for n in 0..10_000u32 {
        let [_, b, c, d] = n.to_be_bytes();
        let fake = MacAddr([0x06, 0xee, 0, b, c, d]);
        net.send(attacker, &frame(MacAddr::BROADCAST, fake, None, b""));
        net.advance(Duration::from_millis(10));
    }
    let fdb = net.switch(sw).fdb();
    assert_eq!(fdb.dynamic_len(net.host_port(attacker).1), 16);
    assert!(fdb.counters().evicted >= 10_000 - 16);
    for h in [honest, other, attacker] {
        net.take_inbox(h);
    }
    net.send(other, &frame(mac(1), mac(2), None, b""));
    assert_eq!(net.take_inbox(honest).len(), 1);
    assert!(
        net.take_inbox(attacker).is_empty(),
        "honest entry survived: no flood"
    );
}

#[test]
fn two_switches_joined_by_a_trunk_carry_both_vlans_apart() {
    let mut net = Network::new();
    let s1 = net.add_switch(FdbConfig::default());
    let s2 = net.add_switch(FdbConfig::default());
    let up1 = net.add_port(s1, trunk("10,20", None));
    let up2 = net.add_port(s2, trunk("10,20", None));
    net.link((s1, up1), (s2, up2));
    let red1 = net.add_host(s1, access(10));
    let blue1 = net.add_host(s1, access(20));
    let red2 = net.add_host(s2, access(10));
    let blue2 = net.add_host(s2, access(20));

    net.send(red1, &frame(MacAddr::BROADCAST, mac(1), None, b"who has"));
    assert_eq!(net.take_inbox(red2).len(), 1);
    assert!(net.take_inbox(blue1).is_empty() && net.take_inbox(blue2).is_empty());

    net.send(red2, &frame(mac(1), mac(2), None, b"is at"));
    let got = net.take_inbox(red1);
    assert_eq!(got.len(), 1);
    assert_eq!(tag_of(&got[0]), None, "tag popped at the far edge");
    assert_eq!(
        net.switch(s2).fdb().lookup(
            net.now(),
            switchyard::wire::VlanId::new(10).unwrap(),
            mac(1)
        ),
        Some(up2)
    );

    net.send(blue2, &frame(mac(1), mac(4), None, b"not you"));
    assert!(
        net.take_inbox(red1).is_empty(),
        "mac(1) in VLAN 20 is unknown; red never sees it"
    );
    assert!(net.take_inbox(blue1).len() == 1);
}

#[test]
fn counters_add_up() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(1));
    let b = net.add_host(sw, access(1));
    let c = net.add_host(sw, access(1));
    let f = frame(MacAddr::BROADCAST, mac(1), None, b"");
    net.send(a, &f);
    net.send(a, &f);
    let (_, pa) = net.host_port(a);
    let (_, pb) = net.host_port(b);
    let (_, pc) = net.host_port(c);
    let ca = net.switch(sw).counters(pa).unwrap();
    assert_eq!(
        (ca.rx_packets, ca.rx_bytes, ca.tx_packets),
        (2, 2 * f.len() as u64, 0)
    );
    for p in [pb, pc] {
        let cp = net.switch(sw).counters(p).unwrap();
        assert_eq!((cp.tx_packets, cp.tx_bytes), (2, 2 * f.len() as u64));
    }
}

#[test]
fn removing_a_port_forgets_what_it_learned() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let a = net.add_host(sw, access(1));
    let _b = net.add_host(sw, access(1));
    net.send(a, &frame(MacAddr::BROADCAST, mac(1), None, b""));
    let (_, pa) = net.host_port(a);
    net.switch(sw)
        .fdb()
        .add_static(switchyard::wire::VlanId::new(1).unwrap(), mac(50), pa)
        .unwrap();
    assert_eq!(net.switch(sw).fdb().len(), 2);
    net.switch(sw).remove_port(pa).unwrap();
    assert_eq!(net.switch(sw).fdb().len(), 0);
    assert!(net.switch(sw).remove_port(pa).is_err());
}

/// A frame tagged `outer` whose payload starts with another 802.1Q tag for `inner`.
fn double_tagged(src: MacAddr, outer: u16, inner: u16) -> Vec<u8> {
    let mut payload = vec![0x81, 0x00];
    payload.extend_from_slice(&inner.to_be_bytes());
    payload.extend_from_slice(&[0x88, 0xb5]);
    payload.extend_from_slice(b"hop");
    let mut f = frame(MacAddr::BROADCAST, src, Some(outer), &payload);
    // frame() wrote the inner EtherType 0x88b5 after the outer tag; make it 802.1Q.
    f[16..18].copy_from_slice(&[0x81, 0x00]);
    f[18..20].copy_from_slice(&inner.to_be_bytes());
    f[20..22].copy_from_slice(&[0x88, 0xb5]);
    f
}

#[test]
fn double_tagging_cannot_hop_vlans() {
    let mut net = Network::new();
    let s1 = net.add_switch(FdbConfig::default());
    let s2 = net.add_switch(FdbConfig::default());
    // The classic setup: the trunk's native VLAN is the attacker's access VLAN.
    let up1 = net.add_port(s1, trunk("20,30", Some(30)));
    let up2 = net.add_port(s2, trunk("20,30", Some(30)));
    net.link((s1, up1), (s2, up2));
    let attacker = net.add_host(s1, access(30));
    let trunk_attacker = net.add_host(s1, trunk("30", None));
    let victim = net.add_host(s2, access(20));

    // A priority tag wrapped around a VLAN 20 tag, from an access port of VLAN 30.
    let d = net.send(attacker, &double_tagged(mac(66), 0, 20));
    assert_eq!(d, Decision::Drop(DropReason::DoubleTagged));
    // A VLAN 30 tag (the native VLAN, popped on the way out) around a VLAN 20 tag.
    let d = net.send(trunk_attacker, &double_tagged(mac(67), 30, 20));
    assert_eq!(d, Decision::Drop(DropReason::DoubleTagged));
    assert!(net.take_inbox(victim).is_empty());
}

#[test]
fn a_flood_keeps_the_priority_on_every_trunk() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let from = net.add_host(sw, trunk("10", None));
    // The access port comes first, so the tag is popped before it is pushed again.
    let access_host = net.add_host(sw, access(10));
    let other_trunk = net.add_host(sw, trunk("10", None));
    let mut f = frame(MacAddr::BROADCAST, mac(1), Some(10), b"");
    f[14] |= 0xa0; // priority 5
    net.send(from, &f);
    assert_eq!(tag_of(&net.take_inbox(access_host)[0]), None);
    let got = net.take_inbox(other_trunk);
    assert_eq!(got[0][14] >> 5, 5, "priority lost in the flood");
    assert_eq!(tag_of(&got[0]), Some(10));
}

mod random_traffic {
    use super::*;
    use proptest::prelude::*;

    /// What a sender puts on the wire: untagged, a priority tag, its VLAN's tag, another
    /// VLAN's tag, or a VLAN tag around a second tag.
    #[derive(Clone, Copy, Debug)]
    enum Tagging {
        Untagged,
        Priority,
        Own,
        Other,
        Double,
    }

    fn tagging() -> impl Strategy<Value = Tagging> {
        prop_oneof![
            Just(Tagging::Untagged),
            Just(Tagging::Priority),
            Just(Tagging::Own),
            Just(Tagging::Other),
            Just(Tagging::Double),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever hosts send, however they tag it, a frame only ever reaches hosts of
        /// the sender's VLAN, never comes back to its sender, and arrives untagged at
        /// access ports and tagged with the right VLAN at trunk ports.
        #[test]
        fn frames_never_cross_vlans(sends in proptest::collection::vec((0usize..8, 0usize..9, tagging(), any::<bool>()), 1..80)) {
            let mut net = Network::new();
            let s1 = net.add_switch(FdbConfig::default());
            let s2 = net.add_switch(FdbConfig::default());
            let up1 = net.add_port(s1, trunk("10,20", Some(20)));
            let up2 = net.add_port(s2, trunk("10,20", Some(20)));
            net.link((s1, up1), (s2, up2));
            // Hosts 0-5 on access ports; 6 and 7 on trunk ports carrying their VLAN tagged.
            let vlans = [10u16, 20, 10, 20, 10, 20, 10, 20];
            let hosts: Vec<HostId> = vlans
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let sw = if i % 2 == 0 { s1 } else { s2 };
                    let mode = if i < 6 { access(*v) } else { trunk(&v.to_string(), None) };
                    net.add_host(sw, mode)
                })
                .collect();
            for (from, to, tagging, wait) in sends {
                let dst = if to == 8 { MacAddr::BROADCAST } else { mac(to as u8) };
                let own = vlans[from];
                let other = if own == 10 { 20 } else { 10 };
                let f = match tagging {
                    Tagging::Untagged => frame(dst, mac(from as u8), None, &[from as u8]),
                    Tagging::Priority => frame(dst, mac(from as u8), Some(0), &[from as u8]),
                    Tagging::Own => frame(dst, mac(from as u8), Some(own), &[from as u8]),
                    Tagging::Other => frame(dst, mac(from as u8), Some(other), &[from as u8]),
                    Tagging::Double => double_tagged(mac(from as u8), own, other),
                };
                net.send(hosts[from], &f);
                if wait {
                    net.advance(Duration::from_secs(100));
                }
                for (i, h) in hosts.iter().enumerate() {
                    for got in net.take_inbox(*h) {
                        let tag = tag_of(&got);
                        let sender = got[if tag.is_some() { 18 } else { 14 }] as usize;
                        prop_assert_ne!(sender, i, "a host got its own frame back");
                        prop_assert_eq!(vlans[sender], vlans[i], "frame crossed VLANs");
                        prop_assert_eq!(tag, (i >= 6).then_some(vlans[i]), "wrong tagging at host {}", i);
                    }
                }
            }
        }
    }
}
