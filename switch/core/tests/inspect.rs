//! Packet traces and live captures against a datapath built by hand: every step a trace
//! reports, that a trace changes nothing, and what a capture copies (tags as on the
//! wire, both directions, nothing for ports nobody captures).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchyard::capture::{CaptureTap, Direction, Directions};
use switchyard::datapath::{Datapath, Transmit, Worker, ROUTER_PORT};
use switchyard::router::Interface;
use switchyard::trace::{FrameSpec, LearnChange, LookupResult, Proto, Step, Trace};
use switchyard::wire::{MacAddr, VlanId, VlanSet, VNET_HDR_LEN};
use switchyard::{DropReason, FdbConfig, PortId, PortMode, Time};
use switchyard_encap::Vni;

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn vlan(id: u16) -> VlanId {
    VlanId::new(id).unwrap()
}

fn access(id: u16) -> PortMode {
    PortMode::Access { vlan: vlan(id) }
}

const GATEWAY_MAC: MacAddr = MacAddr([2, 0x53, 0x59, 0, 0, 10]);

/// Ports 1 and 2 on VLAN 10, port 3 on VLAN 20, a trunk (port 4) of 10 and 20, the
/// router on VLAN 10 (10.1.0.0/24, gateway .1, its MAC a static entry), VLAN 10 over
/// VXLAN VNI 100 to a peer (port 9).
fn datapath() -> Arc<Datapath> {
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let switch = dp.switch();
    switch.set_port(PortId(1), access(10));
    switch.set_port(PortId(2), access(10));
    switch.set_port(PortId(3), access(20));
    switch.set_port(
        PortId(4),
        PortMode::Trunk {
            allowed: [vlan(10), vlan(20)].into_iter().collect::<VlanSet>(),
            native: None,
        },
    );
    switch.set_port(
        ROUTER_PORT,
        PortMode::Trunk {
            allowed: [vlan(10)].into_iter().collect::<VlanSet>(),
            native: None,
        },
    );
    dp.router().set_interface(Interface {
        vlan: vlan(10),
        subnet: "10.1.0.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        mac: GATEWAY_MAC,
        uplink: true,
    });
    // As the controller does for a network's gateway.
    switch
        .fdb()
        .add_static(vlan(10), GATEWAY_MAC, ROUTER_PORT)
        .unwrap();
    switch.map_vni(vlan(10), Vni::new(100).unwrap()).unwrap();
    switch
        .add_peer(PortId(9), "192.0.2.2:4789".parse::<SocketAddr>().unwrap())
        .unwrap();
    dp
}

fn frame(src: MacAddr, dst: MacAddr) -> Vec<u8> {
    FrameSpec::new(src, dst).build().unwrap()
}

/// Sends `frame` from `port` through a worker, as switchd's thread would; returns the
/// ports it went out of.
fn send(dp: &Arc<Datapath>, at: Time, port: PortId, frame: &[u8]) -> Vec<PortId> {
    let mut worker = Worker::new(Arc::clone(dp));
    let mut out = Vec::new();
    let mut io = |t: Transmit<'_>| {
        if let Transmit::Port { port, .. } = t {
            out.push(port);
        }
        Ok(())
    };
    let buf = worker.frame_buffer(&mut io);
    buf[..VNET_HDR_LEN].fill(0);
    buf[VNET_HDR_LEN..VNET_HDR_LEN + frame.len()].copy_from_slice(frame);
    worker.handle_port(at, port, VNET_HDR_LEN + frame.len(), &mut io);
    out
}

fn kinds(trace: &Trace) -> Vec<&'static str> {
    trace
        .steps
        .iter()
        .map(|s| match s {
            Step::Ingress { .. } => "ingress",
            Step::Parse { .. } => "parse",
            Step::Classify { .. } => "classify",
            Step::PortSecurity => "port_security",
            Step::Learn { .. } => "learn",
            Step::Lookup { .. } => "lookup",
            Step::Flood { .. } => "flood",
            Step::ArpSuppression { .. } => "arp_suppression",
            Step::Output { .. } => "output",
            Step::Encapsulate { .. } => "encapsulate",
            Step::Router { .. } => "router",
            Step::Drop { .. } => "drop",
        })
        .collect()
}

fn at(secs: u64) -> Time {
    Time::from_secs(secs)
}

#[test]
fn a_known_unicast_goes_to_one_port_and_changes_nothing() {
    let dp = datapath();
    send(&dp, at(1), PortId(2), &frame(mac(2), mac(1)));
    let before = dp.switch().counters(PortId(1)).unwrap();
    let fdb_before = dp.switch().fdb().entries(at(2)).len();
    let trace = dp.trace(at(2), PortId(1), &frame(mac(1), mac(2)));
    assert_eq!(
        kinds(&trace),
        ["ingress", "parse", "classify", "learn", "lookup", "output"],
        "{trace}"
    );
    assert!(trace.steps.contains(&Step::Learn {
        vlan: vlan(10),
        mac: mac(1),
        port: PortId(1),
        change: LearnChange::New
    }));
    assert!(trace.steps.contains(&Step::Lookup {
        vlan: vlan(10),
        mac: mac(2),
        result: LookupResult::Known { port: PortId(2) }
    }));
    assert!(trace.steps.contains(&Step::Output {
        port: PortId(2),
        vlan: vlan(10),
        tag: None
    }));
    assert_eq!(trace.copies, 1);
    // Nothing learned, nothing counted.
    assert_eq!(dp.switch().fdb().entries(at(2)).len(), fdb_before);
    assert!(dp.switch().fdb().get(at(2), vlan(10), mac(1)).is_none());
    assert_eq!(dp.switch().counters(PortId(1)).unwrap(), before);
    let text = trace.to_string();
    assert!(
        text.contains("learn: VLAN 10: would add 02:00:00:00:00:01 on port 1"),
        "{text}"
    );
    assert!(text.ends_with("result: forwarded: 1 copy"), "{text}");
}

#[test]
fn a_moved_address_says_where_it_was() {
    let dp = datapath();
    send(&dp, at(1), PortId(2), &frame(mac(1), mac(9)));
    let trace = dp.trace(at(2), PortId(1), &frame(mac(1), mac(9)));
    assert!(trace.steps.contains(&Step::Learn {
        vlan: vlan(10),
        mac: mac(1),
        port: PortId(1),
        change: LearnChange::Move { from: PortId(2) }
    }));
}

#[test]
fn a_broadcast_floods_tagged_to_the_trunk_encapsulated_to_the_peer_and_to_the_router() {
    let dp = datapath();
    let trace = dp.trace(at(1), PortId(1), &frame(mac(1), MacAddr::BROADCAST));
    let text = trace.to_string();
    assert!(trace.steps.contains(&Step::Flood {
        vlan: vlan(10),
        storm_limit_pps: None
    }));
    assert!(trace.steps.contains(&Step::Output {
        port: PortId(2),
        vlan: vlan(10),
        tag: None
    }));
    assert!(
        trace.steps.contains(&Step::Output {
            port: PortId(4),
            vlan: vlan(10),
            tag: Some(vlan(10))
        }),
        "the trunk gets it tagged: {text}"
    );
    let encap = trace
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Encapsulate {
                port,
                remote,
                vni,
                inner_len,
                max_inner_len,
                ..
            } => Some((*port, *remote, *vni, *inner_len, *max_inner_len)),
            _ => None,
        })
        .expect(&text);
    assert_eq!(
        encap,
        (PortId(9), "192.0.2.2:4789".parse().unwrap(), 100, 60, 1464)
    );
    let router = trace
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Router { verdict, .. } => Some(verdict.clone()),
            _ => None,
        })
        .expect(&text);
    // Not IPv4 nor ARP: the router has nothing to do with it.
    assert_eq!(router, "dropped (unsupported_protocol)", "{text}");
    assert!(!trace.steps.iter().any(|s| matches!(
        s,
        Step::Output {
            port: PortId(3),
            ..
        }
    )));
    assert_eq!(trace.copies, 3, "{text}");
    assert_eq!(
        dp.router().counters().drops.len(),
        0,
        "the router counted nothing"
    );
}

#[test]
fn a_frame_for_another_vlan_is_dropped_for_want_of_ports() {
    // mac(3) sits on port 3, in VLAN 20: from VLAN 10 it is unknown, and VLAN 10 without
    // the other ports has nobody to flood to.
    let dp = datapath();
    dp.switch().remove_port(PortId(2)).unwrap();
    dp.switch().remove_port(PortId(4)).unwrap();
    dp.switch().remove_port(ROUTER_PORT).unwrap();
    dp.switch().unmap_vlan(vlan(10));
    send(&dp, at(1), PortId(3), &frame(mac(3), mac(1)));
    let trace = dp.trace(at(2), PortId(1), &frame(mac(1), mac(3)));
    assert!(trace.steps.contains(&Step::Lookup {
        vlan: vlan(10),
        mac: mac(3),
        result: LookupResult::Unknown
    }));
    assert_eq!(
        trace.steps.last(),
        Some(&Step::Drop {
            port: Some(PortId(1)),
            reason: DropReason::NoEgress.as_str().into()
        })
    );
    assert_eq!(trace.outcome(), "dropped (no_egress)");
    let counters = dp.switch().counters(PortId(1)).unwrap();
    assert!(counters.drops.is_empty(), "a trace counts no drop");
}

#[test]
fn a_tag_on_an_access_port_and_a_vlan_the_trunk_lacks_are_refused_at_once() {
    let dp = datapath();
    let mut tagged = frame(mac(1), mac(2));
    tagged.splice(12..12, [0x81, 0x00, 0x00, 20]);
    let trace = dp.trace(at(1), PortId(1), &tagged);
    assert_eq!(kinds(&trace), ["ingress", "parse", "drop"]);
    assert_eq!(trace.outcome(), "dropped (tagged_on_access)");
    let mut other = frame(mac(5), mac(2));
    other.splice(12..12, [0x81, 0x00, 0x00, 30]);
    let trace = dp.trace(at(1), PortId(4), &other);
    assert_eq!(trace.outcome(), "dropped (vlan_not_allowed)");
}

#[test]
fn the_router_verdict_and_answers_come_from_a_copy() {
    let dp = datapath();
    let ping = FrameSpec {
        ipv4: Some((Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 1))),
        ..FrameSpec::new(mac(1), GATEWAY_MAC)
    }
    .build()
    .unwrap();
    let trace = dp.trace(at(1), PortId(1), &ping);
    let text = trace.to_string();
    let Some(Step::Router {
        verdict, answers, ..
    }) = trace
        .steps
        .iter()
        .find(|s| matches!(s, Step::Router { .. }))
    else {
        panic!("no router step: {text}");
    };
    assert_eq!(verdict, "taken by the router");
    assert_eq!(answers.len(), 1, "{text}");
    assert_eq!(trace.outcome(), "taken by the router", "{text}");
    assert!(
        answers[0].contains("ICMP echo reply 10.1.0.1 > 10.1.0.5"),
        "{text}"
    );
    assert_eq!(dp.router().counters().echo_replies_sent, 0);
    let out = FrameSpec {
        ipv4: Some((Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(198, 51, 100, 7))),
        proto: Some(Proto::Tcp),
        dport: Some(443),
        ..FrameSpec::new(mac(1), GATEWAY_MAC)
    }
    .build()
    .unwrap();
    let trace = dp.trace(at(1), PortId(1), &out);
    assert!(
        trace
            .to_string()
            .contains("router: from VLAN 10: routed up the uplink"),
        "{trace}"
    );
    assert_eq!(trace.copies, 1, "up the uplink is a copy: {trace}");

    // To another network: Docker's isolation, the router's drop.
    dp.router().set_interface(Interface {
        vlan: vlan(20),
        subnet: "10.2.0.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 2, 0, 1),
        mac: MacAddr([2, 0x53, 0x59, 0, 0, 20]),
        uplink: true,
    });
    let across = FrameSpec {
        ipv4: Some((Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 2, 0, 7))),
        ..FrameSpec::new(mac(1), GATEWAY_MAC)
    }
    .build()
    .unwrap();
    let trace = dp.trace(at(1), PortId(1), &across);
    assert_eq!(
        trace.outcome(),
        "dropped by the router (isolated)",
        "{trace}"
    );
    assert_eq!(
        dp.router().counters().drops.len(),
        0,
        "counted in the copy only"
    );
}

#[test]
fn a_frame_too_big_for_the_overlay_says_so() {
    let dp = datapath();
    dp.switch()
        .set_path_mtu("192.0.2.2".parse().unwrap(), 1400)
        .unwrap();
    let mut big = frame(mac(1), MacAddr::BROADCAST);
    big.resize(1400, 0);
    let trace = dp.trace(at(1), PortId(1), &big);
    assert!(trace.steps.contains(&Step::Drop {
        port: Some(PortId(9)),
        reason: "too_big".into()
    }));
    assert!(
        trace.to_string().contains("too big (at most 1364)"),
        "{trace}"
    );
}

#[test]
fn a_capture_copies_both_directions_with_the_tag_as_sent() {
    let dp = datapath();
    let (tap, reader) = CaptureTap::new(Directions::Both, 1 << 20);
    dp.switch()
        .add_capture(PortId(4), Arc::clone(&tap))
        .unwrap();
    // Out of the trunk, tagged 10.
    send(&dp, at(1), PortId(1), &frame(mac(1), MacAddr::BROADCAST));
    // Into the trunk, tagged 20.
    let mut tagged = frame(mac(7), MacAddr::BROADCAST);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 20]);
    send(&dp, at(2), PortId(4), &tagged);
    let out = reader.recv_timeout(Duration::from_millis(100)).unwrap();
    assert_eq!(out.direction, Direction::Out);
    assert_eq!(&out.frame[12..16], &[0x81, 0x00, 0x00, 10]);
    assert_eq!(out.at, at(1));
    let inbound = reader.recv_timeout(Duration::from_millis(100)).unwrap();
    assert_eq!(inbound.direction, Direction::In);
    assert_eq!(inbound.frame, tagged);
    assert!(reader.recv_timeout(Duration::from_millis(1)).is_none());
    assert_eq!(dp.switch().captures(PortId(4)), 1);
    dp.switch().remove_capture(PortId(4), &tap);
    assert_eq!(dp.switch().captures(PortId(4)), 0);
    send(&dp, at(3), PortId(1), &frame(mac(1), MacAddr::BROADCAST));
    assert!(reader.recv_timeout(Duration::from_millis(1)).is_none());
}

#[test]
fn a_capture_of_one_direction_sees_only_that_one() {
    let dp = datapath();
    let (tap, reader) = CaptureTap::new(Directions::In, 1 << 20);
    dp.switch().add_capture(PortId(2), tap).unwrap();
    send(&dp, at(1), PortId(1), &frame(mac(1), MacAddr::BROADCAST));
    assert!(reader.recv_timeout(Duration::from_millis(1)).is_none());
    send(&dp, at(1), PortId(2), &frame(mac(2), MacAddr::BROADCAST));
    let got = reader.recv_timeout(Duration::from_millis(100)).unwrap();
    assert_eq!(got.direction, Direction::In);
}
