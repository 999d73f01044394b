//! The overlay in the simulator: switches as VTEPs on an in-memory underlay, frames
//! encapsulated with the real VXLAN codec, no root and no sockets.

use std::net::IpAddr;

use switchyard::fdb::FdbConfig;
use switchyard::forward::{Decision, DropReason};
use switchyard::sim::{access, frame, tag_of, trunk, HostId, Network, SwitchId};
use switchyard::wire::{MacAddr, VlanId};
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

fn vni(id: u32) -> Vni {
    Vni::new(id).unwrap()
}

/// `n` VTEPs at 192.0.2.1.., each peering with every other, each mapping `maps`.
fn vteps(net: &mut Network, n: u8, maps: &[(u16, u32)]) -> Vec<SwitchId> {
    let switches: Vec<SwitchId> = (1..=n)
        .map(|i| {
            let sw = net.add_switch(FdbConfig::default());
            net.set_vtep(sw, ip(i));
            for (v, id) in maps {
                net.switch(sw).map_vni(vlan(*v), vni(*id)).unwrap();
            }
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

fn datagram(vni_id: u32, inner: &[u8]) -> Vec<u8> {
    let mut header = [0u8; vxlan::HEADER_LEN];
    vxlan::emit(&mut header, vni(vni_id));
    [&header[..], inner].concat()
}

#[test]
fn containers_on_two_hosts_share_a_segment() {
    let mut net = Network::new();
    let s = vteps(&mut net, 2, &[(10, 42)]);
    let red = net.add_host(s[0], access(10));
    let blue = net.add_host(s[1], access(10));

    net.send(red, &frame(MacAddr::BROADCAST, mac(1), None, b"who has"));
    let got = net.take_inbox(blue);
    assert_eq!(got.len(), 1);
    assert_eq!(tag_of(&got[0]), None);

    let d = net.send(blue, &frame(mac(1), mac(2), None, b"is at"));
    assert!(
        matches!(d, Decision::Output(_)),
        "red was learned behind VTEP 1: {d:?}"
    );
    assert_eq!(net.take_inbox(red).len(), 1);

    // Host 1 learned blue behind VTEP 2's tunnel port.
    let behind = net.switch(s[0]).fdb().lookup(net.now(), vlan(10), mac(2));
    assert_eq!(behind, net.switch(s[0]).peer_port(ip(2)));
    let d = net.send(red, &frame(mac(2), mac(1), None, b"unicast"));
    assert!(matches!(d, Decision::Output(_)));
    assert_eq!(net.take_inbox(blue).len(), 1);
}

#[test]
fn vnis_keep_vlans_apart_across_hosts() {
    let mut net = Network::new();
    let s = vteps(&mut net, 2, &[(10, 42), (20, 43)]);
    let red1 = net.add_host(s[0], access(10));
    let green1 = net.add_host(s[0], access(20));
    let red2 = net.add_host(s[1], access(10));
    let green2 = net.add_host(s[1], access(20));
    for (from, n) in [(red1, 1), (green1, 2), (red2, 3), (green2, 4)] {
        net.send(from, &frame(MacAddr::BROADCAST, mac(n), None, &[n]));
    }
    let senders = |net: &mut Network, h: HostId| -> Vec<u8> {
        net.take_inbox(h).iter().map(|f| f[14]).collect()
    };
    assert_eq!(senders(&mut net, red1), vec![3]);
    assert_eq!(senders(&mut net, red2), vec![1]);
    assert_eq!(senders(&mut net, green1), vec![4]);
    assert_eq!(senders(&mut net, green2), vec![2]);
}

#[test]
fn one_vni_may_join_different_vlan_numbers() {
    let mut net = Network::new();
    let a = net.add_switch(FdbConfig::default());
    let b = net.add_switch(FdbConfig::default());
    net.set_vtep(a, ip(1));
    net.set_vtep(b, ip(2));
    net.switch(a).map_vni(vlan(10), vni(42)).unwrap();
    net.switch(b).map_vni(vlan(30), vni(42)).unwrap();
    net.add_peer(a, ip(2));
    net.add_peer(b, ip(1));
    let left = net.add_host(a, access(10));
    let right = net.add_host(b, trunk("30", None));
    net.send(left, &frame(MacAddr::BROADCAST, mac(1), None, b""));
    let got = net.take_inbox(right);
    assert_eq!(got.len(), 1);
    assert_eq!(tag_of(&got[0]), Some(30), "tagged with the far side's VLAN");
}

#[test]
fn a_stranger_vtep_is_never_heard() {
    let mut net = Network::new();
    let s = vteps(&mut net, 2, &[(10, 42)]);
    let red = net.add_host(s[0], access(10));
    let inner = frame(MacAddr::BROADCAST, mac(66), None, b"let me in");
    let d = net.inject_vxlan(s[0], ip(99), &datagram(42, &inner));
    assert_eq!(d, Decision::Drop(DropReason::UnknownVtep));
    assert!(net.take_inbox(red).is_empty());
    assert!(
        net.switch(s[0]).fdb().is_empty(),
        "nothing learned from a stranger"
    );
    assert_eq!(
        net.switch(s[0])
            .unattributed_drops()
            .get(&DropReason::UnknownVtep),
        Some(&1)
    );

    // The same datagram from a peer is delivered.
    let d = net.inject_vxlan(s[0], ip(2), &datagram(42, &inner));
    assert!(matches!(d, Decision::Flood { .. }));
    assert_eq!(net.take_inbox(red).len(), 1);
}

#[test]
fn bad_datagrams_are_dropped_by_reason() {
    let mut net = Network::new();
    let s = vteps(&mut net, 2, &[(10, 42)]);
    let red = net.add_host(s[0], access(10));
    let inner = frame(MacAddr::BROADCAST, mac(5), None, b"");
    let cases = [
        (
            datagram(42, &inner)[..6].to_vec(),
            DropReason::BadVxlanHeader,
        ),
        ([&[0u8; 8][..], &inner].concat(), DropReason::BadVxlanHeader),
        (datagram(43, &inner), DropReason::UnmappedVni),
        (datagram(42, &inner[..13]), DropReason::TruncatedInner),
        (
            datagram(42, &frame(MacAddr::BROADCAST, mac(5), Some(10), b"")),
            DropReason::InnerTagged,
        ),
    ];
    for (packet, reason) in &cases {
        assert_eq!(
            net.inject_vxlan(s[0], ip(2), packet),
            Decision::Drop(*reason)
        );
    }
    assert!(net.take_inbox(red).is_empty());
    let port = net.switch(s[0]).peer_port(ip(2)).unwrap();
    let drops = net.switch(s[0]).counters(port).unwrap().drops;
    assert_eq!(drops.get(&DropReason::BadVxlanHeader), Some(&2));
    assert_eq!(drops.get(&DropReason::InnerTagged), Some(&1));

    // Configured to accept inner tags, the frame is forwarded (and untagged for access).
    net.switch(s[0]).set_accept_inner_tagged(true);
    let tagged = datagram(42, &frame(MacAddr::BROADCAST, mac(5), Some(10), b""));
    assert!(matches!(
        net.inject_vxlan(s[0], ip(2), &tagged),
        Decision::Flood { .. }
    ));
    assert_eq!(tag_of(&net.take_inbox(red)[0]), None);
}

#[test]
fn head_end_replication_reaches_each_peer_once() {
    let mut net = Network::new();
    let s = vteps(&mut net, 3, &[(10, 42)]);
    let hosts: Vec<HostId> = s.iter().map(|sw| net.add_host(*sw, access(10))).collect();
    net.send(
        hosts[0],
        &frame(MacAddr::BROADCAST, mac(1), None, b"hello all"),
    );
    assert_eq!(net.take_inbox(hosts[1]).len(), 1);
    assert_eq!(
        net.take_inbox(hosts[2]).len(),
        1,
        "exactly once: no re-flooding between peers"
    );
    assert!(net.take_inbox(hosts[0]).is_empty());
    let port_to_2 = net.switch(s[0]).peer_port(ip(2)).unwrap();
    assert_eq!(net.switch(s[0]).counters(port_to_2).unwrap().tx_packets, 1);
}

#[test]
fn removing_a_peer_forgets_what_sat_behind_it() {
    let mut net = Network::new();
    let s = vteps(&mut net, 2, &[(10, 42)]);
    let _red = net.add_host(s[0], access(10));
    let blue = net.add_host(s[1], access(10));
    net.send(blue, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    assert_eq!(net.switch(s[0]).fdb().len(), 1);
    net.switch(s[0]).remove_peer(ip(2)).unwrap();
    assert!(net.switch(s[0]).fdb().is_empty());
    assert!(net.switch(s[0]).remove_peer(ip(2)).is_err());
    let d = net.send(blue, &frame(MacAddr::BROADCAST, mac(2), None, b""));
    assert!(matches!(d, Decision::Flood { .. }), "sent by host 2 ...");
    assert_eq!(
        net.switch(s[0])
            .unattributed_drops()
            .get(&DropReason::UnknownVtep),
        Some(&1),
        "... refused by host 1"
    );
}

#[test]
fn a_static_remote_entry_avoids_flooding() {
    let mut net = Network::new();
    let s = vteps(&mut net, 3, &[(10, 42)]);
    let red = net.add_host(s[0], access(10));
    let blue = net.add_host(s[1], access(10));
    let green = net.add_host(s[2], access(10));
    let to_2 = net.switch(s[0]).peer_port(ip(2)).unwrap();
    net.switch(s[0])
        .fdb()
        .add_static(vlan(10), mac(2), to_2)
        .unwrap();
    let d = net.send(red, &frame(mac(2), mac(1), None, b""));
    assert!(matches!(d, Decision::Output(e) if e.port == to_2));
    assert_eq!(net.take_inbox(blue).len(), 1);
    assert!(net.take_inbox(green).is_empty());
}

#[test]
fn remapping_a_vni_is_refused_while_taken() {
    let mut net = Network::new();
    let sw = net.add_switch(FdbConfig::default());
    let core = net.switch(sw);
    core.map_vni(vlan(10), vni(42)).unwrap();
    assert!(core.map_vni(vlan(20), vni(42)).is_err());
    core.map_vni(vlan(10), vni(43)).unwrap();
    core.map_vni(vlan(20), vni(42)).unwrap();
    assert_eq!(
        core.vni_map(),
        vec![(vlan(10), vni(43)), (vlan(20), vni(42))]
    );
    assert_eq!(core.unmap_vlan(vlan(10)), Some(vni(43)));
    assert_eq!(core.vni_of(vlan(10)), None);
}
