//! The controller against the in-memory world: plans, undo at every step, and a crash at
//! every step followed by a restart.

use std::path::Path;
use std::sync::Arc;

use super::fake::{Call, FakeSystem};
use super::*;
use crate::control::{AttachRequest, Attached, Detached, NetworkInfo, PortInfo, Request};
use crate::fdb::FdbConfig;
use crate::network::NetworkConfig;
use crate::wire::VlanId;
use state::SavedPortKind;
use switchyard_encap::Vni;

fn clock() -> Clock {
    Clock {
        now: Time::from_secs(10),
        unix_secs: 1_796_000_000,
    }
}

fn start(fx: &mut FakeSystem) -> Controller {
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: StormLimit::per_second(2000),
    };
    let saved = fx.saved.clone().unwrap_or_default();
    let controller = Controller::restore(dp, config, saved, fx).expect("restore");
    // What a start does (rewriting the NAT table) is not what the tests look at.
    fx.calls.clear();
    controller
}

fn attach_request(netns: &Path, network: Option<&str>) -> Request {
    Request::Attach(AttachRequest {
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        mode: PortMode::Access {
            vlan: VlanId::new(10).unwrap(),
        },
        label: None,
        network: network.map(String::from),
        ip: None,
        container_id: None,
        prefix_len: None,
        mac: None,
        addresses: Vec::new(),
        port_security: None,
        published: Vec::new(),
        name: None,
        aliases: Vec::new(),
    })
}

fn create_network(name: &str, subnet: &str, masquerade: bool) -> Request {
    Request::NetworkCreate(NetworkConfig {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        masquerade,
        ..NetworkConfig::default()
    })
}

fn call<T: serde::de::DeserializeOwned>(
    c: &mut Controller,
    fx: &mut FakeSystem,
    request: Request,
) -> Result<T, ControlError> {
    c.handle(fx, clock(), request)
        .map(|value| serde_json::from_value(value).expect("answer decodes"))
}

/// What must hold after any sequence of changes, failures and restarts: every port has
/// a TAP and forwards through it, every TAP belongs to a port, every endpoint to a port,
/// the datapath knows exactly the model's ports, and the state file agrees.
fn assert_consistent(c: &Controller, fx: &FakeSystem) {
    let model = c.model();
    for (id, port) in &model.ports {
        if port.kind == SavedPortKind::Host {
            // A host port has its socket open on its interface, or is down for a reason.
            match fx.host_open.get(id) {
                Some((netns, ifname, ifindex)) => {
                    assert_eq!((netns, ifname), (&port.netns, &port.ifname));
                    assert_eq!(*ifindex, port.ifindex, "port {id}'s ifindex");
                }
                None => assert!(c.host_closed.contains(id), "host port {id} is not open"),
            }
            assert!(port.pending.is_none());
            continue;
        }
        let tap = fx
            .attached
            .get(id)
            .unwrap_or_else(|| panic!("port {id} has no TAP"));
        assert_eq!((&tap.netns, &tap.ifname), (&port.netns, &port.ifname));
        assert_eq!(tap.ifindex, port.ifindex, "port {id}'s ifindex");
        assert!(port.pending.is_none());
    }
    for tap in &fx.taps {
        assert!(
            model
                .ports
                .values()
                .any(|p| p.netns == tap.netns && p.ifname == tap.ifname),
            "TAP {tap:?} belongs to no port"
        );
    }
    for endpoint in model.networks.endpoints() {
        assert!(model.ports.contains_key(&endpoint.port), "{endpoint:?}");
    }
    let mut switch_ports = c.datapath().switch().port_ids();
    switch_ports.retain(|id| *id != crate::datapath::ROUTER_PORT);
    let mut expected: Vec<PortId> = model
        .ports
        .keys()
        .chain(model.peers.keys())
        .copied()
        .collect();
    expected.sort();
    assert_eq!(switch_ports, expected, "the switch's ports");
    if let Some(saved) = &fx.saved {
        assert_eq!(Model::from_saved(saved).unwrap(), *model, "the state file");
    }
}

#[test]
fn an_attach_saves_its_intent_then_creates_the_tap_then_commits() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let mut c = start(&mut fx);
    let attached: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    assert!(attached.created);
    assert_eq!(attached.port.name, "red/eth0");
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::CreateTap(PortId(1)), Call::Save]
    );
    assert_consistent(&c, &fx);
    // Attaching again reports the same port and does nothing.
    fx.calls.clear();
    let again: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    assert!(!again.created);
    assert!(fx.calls.is_empty());
}

#[test]
fn a_network_routes_masquerades_and_gives_addresses() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let mut c = start(&mut fx);
    let blue: NetworkInfo =
        call(&mut c, &mut fx, create_network("blue", "10.9.0.0/24", true)).unwrap();
    assert_eq!(
        fx.calls,
        vec![
            Call::Save,
            Call::CreateUplink,
            Call::Route("10.9.0.0/24".parse().unwrap()),
            Call::ReplaceNat(1),
            Call::Save
        ]
    );
    assert_eq!(fx.nat.masquerade[0].uplink, "switchyard0");
    let attached: Attached = call(&mut c, &mut fx, attach_request(&red, Some("blue"))).unwrap();
    let endpoint = attached.endpoint.expect("an endpoint");
    assert_eq!(endpoint.address, "10.9.0.2/24".parse().unwrap());
    assert_eq!(attached.port.mode, PortMode::Access { vlan: blue.vlan });
    // The router knows the endpoint.
    assert!(c
        .datapath()
        .router()
        .neighbors()
        .iter()
        .any(|n| n.ip == "10.9.0.2".parse::<std::net::Ipv4Addr>().unwrap()));
    assert_consistent(&c, &fx);
    let in_use = c.handle(
        &mut fx,
        clock(),
        Request::NetworkRemove {
            name: "blue".into(),
        },
    );
    assert_eq!(in_use.unwrap_err().code, ErrorCode::NetworkInUse);
    let _: Detached = call(
        &mut c,
        &mut fx,
        Request::Detach {
            netns: red,
            ifname: "eth0".into(),
        },
    )
    .unwrap();
    fx.calls.clear();
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkRemove {
            name: "blue".into(),
        },
    )
    .unwrap();
    assert_eq!(
        fx.calls,
        vec![
            Call::Save,
            Call::Unroute("10.9.0.0/24".parse().unwrap()),
            Call::ReplaceNat(0),
            Call::Save
        ]
    );
    assert_consistent(&c, &fx);
}

#[test]
fn refusals_carry_stable_codes() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let mut c = start(&mut fx);
    let code = |c: &mut Controller, fx: &mut FakeSystem, r: Request| {
        c.handle(fx, clock(), r).unwrap_err().code
    };
    assert_eq!(
        code(&mut c, &mut fx, Request::PortDel { port: "9".into() }),
        ErrorCode::NoSuchPort
    );
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            attach_request(Path::new("/run/netns/nope"), None)
        ),
        ErrorCode::NamespaceUnavailable
    );
    assert_eq!(
        code(&mut c, &mut fx, attach_request(&red, Some("nope"))),
        ErrorCode::NoSuchNetwork
    );
    assert_eq!(
        code(&mut c, &mut fx, Request::VxlanShow),
        ErrorCode::NoOverlay
    );
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("blue", "10.9.0.0/24", false),
    )
    .unwrap();
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            create_network("blue", "10.8.0.0/24", false)
        ),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            create_network("green", "10.9.0.0/25", false)
        ),
        ErrorCode::Conflict
    );
    let mut bad = attach_request(&red, Some("blue"));
    if let Request::Attach(req) = &mut bad {
        req.ip = Some("10.9.0.1".parse().unwrap());
    }
    assert_eq!(code(&mut c, &mut fx, bad), ErrorCode::AddressUnavailable);
    // A name taken in the namespace by something else.
    fx.taps.insert(fake::FakeTap {
        netns: red.clone(),
        ifname: "eth0".into(),
        ifindex: 99,
    });
    assert_eq!(
        code(&mut c, &mut fx, attach_request(&red, None)),
        ErrorCode::AlreadyExists
    );
    let detached: Detached = call(
        &mut c,
        &mut fx,
        Request::Detach {
            netns: red,
            ifname: "eth0".into(),
        },
    )
    .unwrap();
    assert!(detached.port.is_none());
}

/// The requests of a day's work, each of which changes the world.
fn workload(fx: &mut FakeSystem) -> Vec<Request> {
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let green = fx.add_namespace("green");
    fx.add_link(None, "eth1", 1500, None);
    vec![
        Request::PortAdd(crate::control::PortAddRequest {
            ifname: "eth1".into(),
            mode: Some(PortMode::Trunk {
                allowed: "10,11".parse().unwrap(),
                native: None,
            }),
            ..Default::default()
        }),
        Request::PortAdd(crate::control::PortAddRequest {
            ifname: "host0".into(),
            internal: true,
            ..Default::default()
        }),
        Request::NetworkCreate(NetworkConfig {
            name: "lan".into(),
            subnet: Some("192.168.0.0/24".parse().unwrap()),
            gateway: Some("192.168.0.1".parse().unwrap()),
            parent: Some("eth1".into()),
            vlan: VlanId::new(11),
            ..NetworkConfig::default()
        }),
        attach_request(&green, Some("lan")),
        create_network("web", "10.20.0.0/24", true),
        attach_request(&red, Some("web")),
        Request::PortPublish {
            port: "red/eth0".into(),
            published: vec!["8080:80".parse().unwrap()],
            add: false,
        },
        attach_request(&blue, None),
        Request::PortSet {
            port: "blue/eth0".into(),
            mode: Some(PortMode::Access {
                vlan: VlanId::new(20).unwrap(),
            }),
            port_security: None,
            storm_limit_pps: None,
        },
        Request::Detach {
            netns: red,
            ifname: "eth0".into(),
        },
        Request::NetworkRemove { name: "web".into() },
        Request::PortDel {
            port: "blue/eth0".into(),
        },
        Request::Detach {
            netns: green,
            ifname: "eth0".into(),
        },
        Request::NetworkRemove { name: "lan".into() },
        Request::PortDel {
            port: "eth1".into(),
        },
        Request::PortDel {
            port: "host0".into(),
        },
    ]
}

#[test]
fn a_failure_at_any_step_changes_nothing() {
    let mut probe = FakeSystem::new();
    let requests = workload(&mut probe);
    for (index, request) in requests.iter().enumerate() {
        // How many effects this request makes, when nothing fails.
        let mut fx = FakeSystem::new();
        let _ = workload(&mut fx);
        let mut c = start(&mut fx);
        for earlier in &requests[..index] {
            c.handle(&mut fx, clock(), earlier.clone()).unwrap();
        }
        let before = c.model().clone();
        fx.calls.clear();
        c.handle(&mut fx, clock(), request.clone()).unwrap();
        let steps = fx.calls.clone();
        // Taking a route away is best effort (the route only leads into the uplink);
        // closing a packet socket cannot fail.
        for failing in steps.iter().filter(|s| {
            !matches!(
                s,
                Call::DestroyTap(_) | Call::Unroute(_) | Call::CloseHostPort(_)
            )
        }) {
            let mut fx = FakeSystem::new();
            let _ = workload(&mut fx);
            let mut c = start(&mut fx);
            for earlier in &requests[..index] {
                c.handle(&mut fx, clock(), earlier.clone()).unwrap();
            }
            let taps = fx.taps.clone();
            let open = fx.host_open.clone();
            let routes = fx.routes.clone();
            let nat = fx.nat.clone();
            fx.fail = Some(failing.clone());
            let destroys = steps.iter().any(|s| matches!(s, Call::DestroyTap(_)));
            let result = c.handle(&mut fx, clock(), request.clone());
            assert!(result.is_err(), "request {index} with {failing:?} failing");
            if destroys {
                // Past the point of no return: done, and the next start finishes it.
                continue;
            }
            assert_eq!(
                c.model(),
                &before,
                "request {index}, {failing:?} failed: model"
            );
            assert_eq!(fx.taps, taps, "request {index}, {failing:?} failed: TAPs");
            assert_eq!(
                fx.host_open, open,
                "request {index}, {failing:?} failed: host ports"
            );
            assert_eq!(
                fx.routes, routes,
                "request {index}, {failing:?} failed: routes"
            );
            assert_eq!(fx.nat, nat, "request {index}, {failing:?} failed: NAT");
            assert_consistent(&c, &fx);
        }
    }
}

#[test]
fn a_crash_at_any_step_is_finished_or_undone_on_the_next_start() {
    let mut probe = FakeSystem::new();
    let requests = workload(&mut probe);
    for (index, request) in requests.iter().enumerate() {
        for crash_after in 0..6 {
            let mut fx = FakeSystem::new();
            let _ = workload(&mut fx);
            let mut c = start(&mut fx);
            for earlier in &requests[..index] {
                c.handle(&mut fx, clock(), earlier.clone()).unwrap();
            }
            fx.crash_after = Some(crash_after);
            let _ = c.handle(&mut fx, clock(), request.clone());
            drop(c);
            fx.restart();
            let c = start(&mut fx);
            assert_consistent(&c, &fx);
            // Masquerading networks have their rule again, and only they.
            let masquerading = c.model().networks.iter().filter(|n| n.masquerade).count();
            assert_eq!(
                fx.nat.masquerade.len(),
                masquerading,
                "request {index}, crash after {crash_after}"
            );
        }
    }
}

#[test]
fn a_restart_reattaches_and_a_missing_tap_marks_the_port_down() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let mut c = start(&mut fx);
    let _: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_request(&blue, None)).unwrap();
    drop(c);
    fx.restart();
    // blue's interface was deleted inside the container while switchd was down.
    fx.taps.retain(|t| t.netns != blue);
    let mut c = start(&mut fx);
    let ports: Vec<PortInfo> = call(&mut c, &mut fx, Request::PortList).unwrap();
    assert_eq!(ports[0].state, "up");
    assert!(
        ports[1].state.starts_with("down: no interface with index"),
        "{}",
        ports[1].state
    );
    assert!(!c.datapath().switch().is_port_up(ports[1].id));
}

#[test]
fn a_state_file_of_the_previous_version_loads_and_saves_the_same() {
    // Written by switchd at commit b5cccb8 (before the controller): a network with an
    // endpoint, a plain port, a static entry, a VNI mapping and a peer.
    let text = include_str!("../../tests/fixtures/state-b5cccb8.json");
    let saved: SavedState = serde_json::from_str(text).unwrap();
    let model = Model::from_saved(&saved).unwrap();
    assert_eq!(model.ports.len(), 2);
    assert_eq!(model.networks.endpoints().len(), 1);
    assert_eq!(model.statics.len(), 1);
    let again = model.to_saved(&saved.boot_id, &std::collections::BTreeMap::new());
    assert_eq!(again, saved);
    let reencoded = serde_json::to_string_pretty(&again).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reencoded).unwrap(),
        serde_json::from_str::<serde_json::Value>(text).unwrap(),
        "the same file"
    );
}

fn attach_plain(netns: &Path, mode: PortMode, mac: Option<&str>, addresses: &[&str]) -> Request {
    Request::Attach(AttachRequest {
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        mode,
        mac: mac.map(|m| m.parse().unwrap()),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        ..AttachRequest::default()
    })
}

fn access(vlan: u16) -> PortMode {
    PortMode::Access {
        vlan: VlanId::new(vlan).unwrap(),
    }
}

#[test]
fn a_networks_vlan_and_vni_belong_to_it() {
    let mut fx = FakeSystem::new();
    fx.vtep = Some("192.0.2.1:4789".parse().unwrap());
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let mut c = start(&mut fx);
    let mut config = NetworkConfig {
        name: "web".into(),
        subnet: Some("10.20.0.0/24".parse().unwrap()),
        vni: Some(Vni::new(77).unwrap()),
        ..NetworkConfig::default()
    };
    config.internal = true;
    let web: NetworkInfo = call(&mut c, &mut fx, Request::NetworkCreate(config)).unwrap();
    let code = |c: &mut Controller, fx: &mut FakeSystem, r: Request| {
        c.handle(fx, clock(), r).unwrap_err().code
    };
    // A plain port on the network's VLAN: refused (the isolation bypass).
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            attach_plain(&red, PortMode::Access { vlan: web.vlan }, None, &[])
        ),
        ErrorCode::Conflict
    );
    let trunk = PortMode::Trunk {
        allowed: [web.vlan].into_iter().collect(),
        native: None,
    };
    assert_eq!(
        code(&mut c, &mut fx, attach_plain(&red, trunk, None, &[])),
        ErrorCode::Conflict
    );
    // Nor may an existing port move onto it.
    let _: Attached = call(&mut c, &mut fx, attach_plain(&blue, access(10), None, &[])).unwrap();
    let move_onto = Request::PortSet {
        port: "blue/eth0".into(),
        mode: Some(PortMode::Access { vlan: web.vlan }),
        port_security: None,
        storm_limit_pps: None,
    };
    assert_eq!(code(&mut c, &mut fx, move_onto), ErrorCode::Conflict);
    // Nor its VLAN be remapped, nor its VNI given to another VLAN.
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            Request::VxlanMap {
                vlan: web.vlan,
                vni: Vni::new(5).unwrap()
            }
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            &mut c,
            &mut fx,
            Request::VxlanMap {
                vlan: VlanId::new(10).unwrap(),
                vni: Vni::new(77).unwrap()
            }
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(&mut c, &mut fx, Request::VxlanUnmap { vlan: web.vlan }),
        ErrorCode::Conflict
    );
    // Its endpoints are fine.
    let _: Attached = call(&mut c, &mut fx, attach_request(&red, Some("web"))).unwrap();
}

#[test]
fn a_mac_is_refused_twice_on_a_vlan_and_an_address_warned_about() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let green = fx.add_namespace("green");
    let mut c = start(&mut fx);
    let _: Attached = call(
        &mut c,
        &mut fx,
        attach_plain(&red, access(10), Some("02:42:0a:00:00:02"), &["10.0.0.2"]),
    )
    .unwrap();
    let dup = c.handle(
        &mut fx,
        clock(),
        attach_plain(&blue, access(10), Some("02:42:0a:00:00:02"), &[]),
    );
    assert_eq!(dup.unwrap_err().code, ErrorCode::Conflict);
    // The same MAC on another VLAN is another segment: allowed.
    let _: Attached = call(
        &mut c,
        &mut fx,
        attach_plain(&blue, access(20), Some("02:42:0a:00:00:02"), &[]),
    )
    .unwrap();
    // The same address on a plain VLAN: allowed, with a warning.
    c.take_notes();
    let _: Attached = call(
        &mut c,
        &mut fx,
        attach_plain(&green, access(10), Some("02:42:0a:00:00:03"), &["10.0.0.2"]),
    )
    .unwrap();
    assert!(c.take_notes().iter().any(
        |n| matches!(n, Note::About { warn: true, subject: Subject::Port(port), message }
            if port == "green/eth0" && message.contains("10.0.0.2 is already used"))
    ));
}

#[test]
fn a_prefix_that_is_not_the_networks_is_refused() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let mut c = start(&mut fx);
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("blue", "10.9.0.0/24", false),
    )
    .unwrap();
    let mut request = attach_request(&red, Some("blue"));
    if let Request::Attach(req) = &mut request {
        req.ip = Some("10.9.0.50".parse().unwrap());
        req.prefix_len = Some(16);
    }
    let err = c.handle(&mut fx, clock(), request.clone()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("/24, not /16"), "{}", err.message);
    if let Request::Attach(req) = &mut request {
        req.prefix_len = Some(24);
    }
    let attached: Attached = call(&mut c, &mut fx, request).unwrap();
    assert_eq!(
        attached.endpoint.unwrap().address,
        "10.9.0.50/24".parse().unwrap()
    );
}

#[test]
fn port_security_is_on_for_known_access_ports_and_can_be_turned_off() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let green = fx.add_namespace("green");
    let mut c = start(&mut fx);
    let _: NetworkInfo =
        call(&mut c, &mut fx, create_network("net", "10.9.0.0/24", false)).unwrap();
    let on_network: Attached = call(&mut c, &mut fx, attach_request(&red, Some("net"))).unwrap();
    assert!(on_network.port.port_security);
    let (security, storm) = c
        .datapath()
        .switch()
        .port_policy(on_network.port.id)
        .unwrap();
    let security = security.expect("on");
    assert_eq!(
        security.ipv4,
        ["10.9.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(storm, StormLimit::per_second(2000));
    let trunk = PortMode::Trunk {
        allowed: "10".parse().unwrap(),
        native: None,
    };
    let on_trunk: Attached = call(
        &mut c,
        &mut fx,
        attach_plain(&blue, trunk, Some("02:00:00:00:00:05"), &[]),
    )
    .unwrap();
    assert!(!on_trunk.port.port_security, "off on a trunk by default");
    let plain: Attached = call(
        &mut c,
        &mut fx,
        attach_plain(&green, access(10), Some("02:00:00:00:00:06"), &[]),
    )
    .unwrap();
    assert!(plain.port.port_security);
    let off: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortSet {
            port: "green/eth0".into(),
            mode: None,
            port_security: Some(false),
            storm_limit_pps: Some(0),
        },
    )
    .unwrap();
    assert!(!off.port_security);
    assert_eq!(off.storm_limit_pps, None);
    assert_eq!(
        c.datapath().switch().port_policy(off.id).unwrap(),
        (None, None)
    );
    // It is kept across a restart.
    drop(c);
    fx.restart();
    let c = start(&mut fx);
    assert_eq!(
        c.datapath().switch().port_policy(off.id).unwrap(),
        (None, None)
    );
    assert!(c
        .datapath()
        .switch()
        .port_policy(on_network.port.id)
        .unwrap()
        .0
        .is_some());
}

#[test]
fn a_start_leaves_the_nat_table_alone_unless_it_has_business_there() {
    let mut fx = FakeSystem::new();
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: None,
    };
    let _ = Controller::restore(dp, config.clone(), SavedState::default(), &mut fx).unwrap();
    assert!(
        !fx.calls.iter().any(|c| matches!(c, Call::ReplaceNat(_))),
        "no masquerading network, no NAT change pending: {:?}",
        fx.calls
    );
    // A NAT change that a crash interrupted is finished (here: the table goes), and the
    // mark is cleared.
    let pending = SavedState {
        nat_pending: true,
        ..SavedState::default()
    };
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let _ = Controller::restore(dp, config, pending, &mut fx).unwrap();
    assert!(fx.calls.contains(&Call::ReplaceNat(0)), "{:?}", fx.calls);
    assert!(!fx.saved.as_ref().unwrap().nat_pending);
}

#[test]
fn a_static_entry_left_dangling_in_the_state_file_is_dropped_and_the_file_saved() {
    // Found by the state_file fuzz target: a state file whose static entry points at a
    // port that is not there (here a peer that was removed from the file by hand) was
    // repaired in memory only, so the file and the running model disagreed, and every
    // start warned again.
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let mut c = start(&mut fx);
    let _: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    let mut saved = c.saved_state();
    drop(c);
    let entry = |last, port| state::SavedFdbEntry {
        vlan: VlanId::new(20).unwrap(),
        mac: MacAddr([2, 0, 0, 0, 0, last]),
        port: PortId(port),
    };
    saved.static_fdb = vec![entry(9, 1), entry(10, 3)];
    saved.next_port_id = 4;
    fx.restart();
    fx.saved = Some(saved);
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: None,
    };
    let saved = fx.saved.clone().unwrap();
    let c = Controller::restore(dp, config, saved, &mut fx).expect("restore");
    let kept: Vec<_> = c.model().statics.values().copied().collect();
    assert_eq!(kept, vec![PortId(1)], "the dangling entry is dropped");
    assert!(
        fx.calls.contains(&Call::Save),
        "and the repaired state saved"
    );
    assert_consistent(&c, &fx);
}

#[test]
fn port_ids_run_out_with_a_refusal() {
    // The state file says which id comes next; at the last one, allocating the next
    // overflowed (a panic, or in a release build id 0: the router's port).
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    fx.vtep = Some("192.0.2.1:4789".parse().unwrap());
    fx.saved = Some(state::SavedState {
        next_port_id: u32::MAX - 1,
        ..state::SavedState::default()
    });
    let mut c = start(&mut fx);
    let last: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    assert_eq!(last.port.id, PortId(u32::MAX - 1));
    let before = c.model().clone();
    for request in [
        attach_request(&blue, None),
        Request::PeerAdd {
            addr: "192.0.2.2".into(),
        },
    ] {
        let err = call::<serde_json::Value>(&mut c, &mut fx, request).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict, "{err}");
        assert_eq!(*c.model(), before, "nothing changed");
    }
    assert_consistent(&c, &fx);
}

#[test]
fn docker_style_ids_reservations_renames_and_moves() {
    let mut fx = FakeSystem::new();
    let daemon_ns = fx.add_namespace("dockerd");
    let sandbox = fx.add_namespace("sandbox");
    let mut c = start(&mut fx);
    let id = "ab".repeat(32);
    let created: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkCreate(NetworkConfig {
            name: "docker-abababababab".into(),
            id: Some(id.clone()),
            subnet: Some("10.30.0.0/24".parse().unwrap()),
            ..NetworkConfig::default()
        }),
    )
    .unwrap();
    assert_eq!(created.id, id);
    // Found by id, and by a 12-digit prefix of it.
    let by_id: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkInspect {
            name: id[..12].into(),
        },
    )
    .unwrap();
    assert_eq!(by_id.name, "docker-abababababab");
    let dup = c.handle(
        &mut fx,
        clock(),
        Request::NetworkCreate(NetworkConfig {
            name: "other".into(),
            id: Some(id.clone()),
            subnet: Some("10.31.0.0/24".parse().unwrap()),
            ..NetworkConfig::default()
        }),
    );
    assert_eq!(dup.unwrap_err().code, ErrorCode::AlreadyExists);
    // Renamed to the name Docker knows it by.
    let renamed: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkRename {
            name: id.clone(),
            new_name: "blue".into(),
        },
    )
    .unwrap();
    assert_eq!(renamed.name, "blue");
    // An address set aside before the container's interface exists...
    let reserved: crate::control::Reserved = call(
        &mut c,
        &mut fx,
        Request::AddressReserve {
            network: id.clone(),
            ip: None,
            owner: "endpoint-1".into(),
        },
    )
    .unwrap();
    assert_eq!(reserved.address, "10.30.0.2/24".parse().unwrap());
    // ...is nobody else's: an attach asking for it is refused, the next free one goes.
    let other = fx.add_namespace("other");
    let mut taken = attach_request(&other, Some("blue"));
    if let Request::Attach(req) = &mut taken {
        req.ip = Some("10.30.0.2".parse().unwrap());
    }
    assert_eq!(
        c.handle(&mut fx, clock(), taken).unwrap_err().code,
        ErrorCode::AddressUnavailable
    );
    // Its owner takes it over.
    let mut join = attach_request(&daemon_ns, Some("blue"));
    if let Request::Attach(req) = &mut join {
        req.ip = Some("10.30.0.2".parse().unwrap());
        req.container_id = Some("endpoint-1".into());
        req.ifname = "sy0123456789".into();
    }
    let joined: Attached = call(&mut c, &mut fx, join).unwrap();
    assert_eq!(
        joined.endpoint.unwrap().address,
        "10.30.0.2/24".parse().unwrap()
    );
    assert!(
        c.model().networks.reservations().is_empty(),
        "the reservation became the endpoint"
    );
    // The runtime moves the TAP into the sandbox and renames it; switchd records it.
    fx.move_tap(joined.port.id, &sandbox, "eth0");
    let moved: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortMoved {
            port: joined.port.id.to_string(),
            netns: sandbox.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        (moved.netns.as_path(), moved.ifname.as_str()),
        (sandbox.as_path(), "eth0")
    );
    // A move to where the TAP is not is refused.
    let wrong = c.handle(
        &mut fx,
        clock(),
        Request::PortMoved {
            port: joined.port.id.to_string(),
            netns: daemon_ns.clone(),
        },
    );
    assert_eq!(wrong.unwrap_err().code, ErrorCode::Conflict);
    assert_consistent(&c, &fx);
    // It survives a restart where it now is.
    drop(c);
    fx.restart();
    let c = start(&mut fx);
    let ports: Vec<PortInfo> = {
        let mut c = c;
        call(&mut c, &mut fx, Request::PortList).unwrap()
    };
    assert_eq!(ports[0].state, "up", "{:?}", ports[0]);
    // Releasing an address nobody reserved is refused.
}

#[test]
fn a_reservation_is_released_and_the_subnet_suggested() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let suggested: crate::control::Suggested =
        call(&mut c, &mut fx, Request::SubnetSuggest { internal: false }).unwrap();
    assert_eq!(suggested.subnet, "172.20.0.0/24".parse().unwrap());
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("blue", "10.9.0.0/24", false),
    )
    .unwrap();
    let r: crate::control::Reserved = call(
        &mut c,
        &mut fx,
        Request::AddressReserve {
            network: "blue".into(),
            ip: Some("10.9.0.7".parse().unwrap()),
            owner: "x".into(),
        },
    )
    .unwrap();
    assert_eq!(r.address, "10.9.0.7/24".parse().unwrap());
    let info: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkInspect {
            name: "blue".into(),
        },
    )
    .unwrap();
    assert_eq!(info.reservations.len(), 1);
    let _: crate::control::Reserved = call(
        &mut c,
        &mut fx,
        Request::AddressRelease {
            network: "blue".into(),
            ip: "10.9.0.7".parse().unwrap(),
        },
    )
    .unwrap();
    let again = c.handle(
        &mut fx,
        clock(),
        Request::AddressRelease {
            network: "blue".into(),
            ip: "10.9.0.7".parse().unwrap(),
        },
    );
    assert_eq!(again.unwrap_err().code, ErrorCode::NoSuchEntry);
    assert_consistent(&c, &fx);
}

#[test]
fn published_ports_become_forwards_and_go_with_their_endpoint() {
    use crate::control::EndpointInfo;
    use crate::portmap::PortMapping;
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let blue = fx.add_namespace("blue");
    let mut c = start(&mut fx);
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("web", "10.20.0.0/24", false),
    )
    .unwrap();
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkCreate(NetworkConfig {
            name: "back".into(),
            subnet: Some("10.21.0.0/24".parse().unwrap()),
            internal: true,
            ..NetworkConfig::default()
        }),
    )
    .unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_request(&red, Some("web"))).unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_request(&blue, Some("back"))).unwrap();
    let mappings =
        |list: &[&str]| -> Vec<PortMapping> { list.iter().map(|m| m.parse().unwrap()).collect() };
    let publish = |port: &str, list: &[&str]| Request::PortPublish {
        port: port.into(),
        published: mappings(list),
        add: false,
    };

    let info: EndpointInfo = call(
        &mut c,
        &mut fx,
        publish("red/eth0", &["8080:80", "127.0.0.1:5353:53/udp"]),
    )
    .unwrap();
    assert_eq!(
        info.published,
        mappings(&["8080:80", "127.0.0.1:5353:53/udp"])
    );
    let forwards: Vec<String> = fx.nat.forwards.iter().map(ToString::to_string).collect();
    assert_eq!(
        forwards,
        [
            "fib daddr type local tcp dport 8080 dnat to 10.20.0.2:80",
            "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.20.0.2:53",
        ]
    );
    assert_eq!(fx.nat.uplink, "switchyard0");
    assert_consistent(&c, &fx);

    // Refusals change nothing: an internal network, a port without an endpoint, a host
    // port another endpoint has, a list that contradicts itself.
    let plain = fx.add_namespace("plain");
    let _: Attached = call(&mut c, &mut fx, attach_request(&plain, None)).unwrap();
    let before_plain = (c.model().clone(), fx.nat.clone());
    for (request, code, words) in [
        (
            publish("blue/eth0", &["9090:80"]),
            ErrorCode::Conflict,
            "internal",
        ),
        (
            publish("plain/eth0", &["9090:80"]),
            ErrorCode::Conflict,
            "no endpoint",
        ),
        (publish("nosuch", &["9090:80"]), ErrorCode::NoSuchPort, ""),
        (
            publish("red/eth0", &["9090:80", "9090:81"]),
            ErrorCode::InvalidArgument,
            "same packets",
        ),
        (
            Request::PortPublish {
                port: "red/eth0".into(),
                published: vec![PortMapping {
                    host_port: 0,
                    ..mappings(&["1:1"])[0]
                }],
                add: false,
            },
            ErrorCode::InvalidArgument,
            "port 0",
        ),
    ] {
        let err = c.handle(&mut fx, clock(), request).unwrap_err();
        assert_eq!(err.code, code, "{err}");
        assert!(err.message.contains(words), "{err}");
        assert_eq!((c.model().clone(), fx.nat.clone()), before_plain);
    }
    // A second endpoint on web cannot take 8080, on any address; it can take 8081.
    let green = fx.add_namespace("green");
    let _: Attached = call(&mut c, &mut fx, attach_request(&green, Some("web"))).unwrap();
    let err = c
        .handle(
            &mut fx,
            clock(),
            publish("green/eth0", &["10.0.0.1:8080:80"]),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("already forwards to 10.20.0.2"),
        "{err}"
    );
    let _: EndpointInfo = call(&mut c, &mut fx, publish("green/eth0", &["8081:80"])).unwrap();
    assert_eq!(fx.nat.forwards.len(), 3);

    // The same list again changes nothing in the world.
    fx.calls.clear();
    let _: EndpointInfo = call(&mut c, &mut fx, publish("green/eth0", &["8081:80"])).unwrap();
    assert!(fx.calls.is_empty(), "{:?}", fx.calls);

    // They survive a restart, and the start sets them up again.
    drop(c);
    fx.restart();
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: StormLimit::per_second(2000),
    };
    fx.nat = NatRules::default();
    let mut c = Controller::restore(dp, config, fx.saved.clone().unwrap(), &mut fx).unwrap();
    assert_eq!(fx.nat.forwards.len(), 3, "set up again at the start");

    // Detaching the endpoint takes its forwards; an empty list clears the rest.
    let _: crate::control::Detached = call(
        &mut c,
        &mut fx,
        Request::Detach {
            netns: red,
            ifname: "eth0".into(),
        },
    )
    .unwrap();
    assert_eq!(fx.nat.forwards.len(), 1);
    let _: EndpointInfo = call(&mut c, &mut fx, publish("green/eth0", &[])).unwrap();
    assert!(fx.nat.is_empty(), "{:?}", fx.nat);
    assert_consistent(&c, &fx);
}

#[test]
fn attach_publishes_with_the_endpoint_or_not_at_all_and_ports_are_added_and_removed() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let _: NetworkInfo =
        call(&mut c, &mut fx, create_network("web", "10.20.0.0/24", true)).unwrap();
    let mappings =
        |list: &[&str]| -> Vec<PortMapping> { list.iter().map(|m| m.parse().unwrap()).collect() };
    let attach = |netns: &Path, list: &[&str]| match attach_request(netns, Some("web")) {
        Request::Attach(req) => Request::Attach(AttachRequest {
            published: mappings(list),
            ..req
        }),
        _ => unreachable!(),
    };
    let red = fx.add_namespace("red");
    let attached: Attached = call(&mut c, &mut fx, attach(&red, &["8080:80"])).unwrap();
    assert_eq!(attached.endpoint.unwrap().published, mappings(&["8080:80"]));
    assert_eq!(fx.nat.forwards.len(), 1);

    // A taken host port refuses the whole attach: no port, no address, no rule.
    let blue = fx.add_namespace("blue");
    let before = (c.model().clone(), fx.nat.clone());
    let err = c
        .handle(&mut fx, clock(), attach(&blue, &["8080:81"]))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err}");
    assert_eq!((c.model().clone(), fx.nat.clone()), before);
    // Without a network, nothing to publish on.
    let err = c
        .handle(
            &mut fx,
            clock(),
            match attach_request(&blue, None) {
                Request::Attach(req) => Request::Attach(AttachRequest {
                    published: mappings(&["9090:80"]),
                    ..req
                }),
                _ => unreachable!(),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    // Attaching again: the same list is fine (a retried CNI ADD), another is refused.
    let again: Attached = call(&mut c, &mut fx, attach(&red, &["8080:80"])).unwrap();
    assert!(!again.created);
    let err = c
        .handle(&mut fx, clock(), attach(&red, &["8081:80"]))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err}");
    assert!(err.message.contains("swctl port publish"), "{err}");

    // swctl's publish adds, unpublish removes the given ones or all.
    let add = |list: &[&str]| Request::PortPublish {
        port: "red/eth0".into(),
        published: mappings(list),
        add: true,
    };
    let remove = |list: &[&str]| Request::PortUnpublish {
        port: "red/eth0".into(),
        published: mappings(list),
    };
    let info: EndpointInfo = call(&mut c, &mut fx, add(&["8080:80", "5353:53/udp"])).unwrap();
    assert_eq!(info.published, mappings(&["8080:80", "5353:53/udp"]));
    let err = c.handle(&mut fx, clock(), add(&["8080:81"])).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
    let err = c.handle(&mut fx, clock(), remove(&["7:7"])).unwrap_err();
    assert_eq!(err.code, ErrorCode::NoSuchEntry, "{err}");
    assert!(err.message.contains("5353->53/udp"), "{err}");
    let info: EndpointInfo = call(&mut c, &mut fx, remove(&["8080:80"])).unwrap();
    assert_eq!(info.published, mappings(&["5353:53/udp"]));
    assert_eq!(fx.nat.forwards.len(), 1);
    let info: EndpointInfo = call(&mut c, &mut fx, remove(&[])).unwrap();
    assert!(info.published.is_empty());
    assert!(fx.nat.forwards.is_empty());
    assert_consistent(&c, &fx);
}

#[test]
fn a_second_endpoint_leaves_the_first_ones_neighbour_static() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("blue", "10.10.0.0/24", false),
    )
    .unwrap();
    for name in ["a", "b"] {
        let netns = fx.add_namespace(name);
        let _: Attached = call(&mut c, &mut fx, attach_request(&netns, Some("blue"))).unwrap();
    }
    // The network's next address moved on twice; its interface and neighbours stayed.
    let statics: Vec<_> = c
        .datapath()
        .router()
        .neighbors()
        .into_iter()
        .filter(|n| n.is_static)
        .map(|n| n.ip)
        .collect();
    assert_eq!(statics.len(), 2, "{statics:?}");
}

fn enable(vtep: &str) -> Request {
    Request::VxlanEnable { vtep: vtep.into() }
}

fn map_10_to_42() -> Request {
    Request::VxlanMap {
        vlan: VlanId::new(10).unwrap(),
        vni: Vni::new(42).unwrap(),
    }
}

#[test]
fn vxlan_enabled_at_run_time_carries_the_overlay_and_comes_back_after_a_restart() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let refused = c.handle(&mut fx, clock(), map_10_to_42()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::NoOverlay);
    assert!(
        refused.message.contains("swctl vxlan enable --vtep"),
        "{refused}"
    );
    let local: SocketAddr = "192.0.2.1:4789".parse().unwrap();
    let info: crate::control::VxlanInfo = call(&mut c, &mut fx, enable("192.0.2.1")).unwrap();
    assert_eq!(info.local, local, "port 4789 unless given");
    // The intent (the VTEP itself) is saved before the bind, then the commit.
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::EnableVtep(local), Call::Save]
    );
    assert_eq!(fx.saved.as_ref().unwrap().vtep, Some(local));
    assert!(c
        .take_notes()
        .contains(&Note::Info("VXLAN enabled: VTEP 192.0.2.1:4789".into())));
    let _: crate::control::VxlanInfo = call(&mut c, &mut fx, map_10_to_42()).unwrap();
    let peer: crate::control::PeerInfo = call(
        &mut c,
        &mut fx,
        Request::PeerAdd {
            addr: "192.0.2.2".into(),
        },
    )
    .unwrap();
    assert_eq!(peer.addr, "192.0.2.2:4789".parse().unwrap());
    assert_consistent(&c, &fx);

    // A restart without --vtep: the daemon binds the VTEP the state remembers.
    fx.restart();
    fx.vtep = None;
    let dp = Arc::new(Datapath::new(FdbConfig::default()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: None,
    };
    let saved = fx.saved.clone().unwrap();
    let err = Controller::restore(Arc::clone(&dp), config.clone(), saved.clone(), &mut fx)
        .err()
        .expect("a remembered VTEP that is not bound is refused");
    assert_eq!(err.code, ErrorCode::NoOverlay);
    fx.vtep = saved.vtep;
    let mut c = start(&mut fx);
    let info: crate::control::VxlanInfo = call(&mut c, &mut fx, Request::VxlanShow).unwrap();
    assert_eq!(info.local, local);
    assert_eq!(info.map.len(), 1);
    assert_eq!(info.peers.len(), 1);
    assert_consistent(&c, &fx);

    // --vtep naming another address wins, with a warning, and is remembered instead.
    fx.restart();
    let other: SocketAddr = "192.0.2.9:8472".parse().unwrap();
    fx.vtep = Some(other);
    let mut c = Controller::restore(dp, config, fx.saved.clone().unwrap(), &mut fx).unwrap();
    assert!(
        c.take_notes().iter().any(
            |n| matches!(n, Note::Warn(m) if m.contains("192.0.2.1:4789") && m.contains("--vtep 192.0.2.9:8472"))
        ),
        "the flag winning is logged"
    );
    assert_eq!(fx.saved.as_ref().unwrap().vtep, Some(other));
    assert_eq!(c.model().vtep, Some(other));
}

#[test]
fn enabling_vxlan_twice_is_refused_and_changes_nothing() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let _: crate::control::VxlanInfo = call(&mut c, &mut fx, enable("192.0.2.1:8472")).unwrap();
    let saved = fx.saved.clone();
    let model = c.model().clone();
    fx.calls.clear();
    for again in ["192.0.2.1:8472", "192.0.2.3"] {
        let err = c.handle(&mut fx, clock(), enable(again)).unwrap_err();
        assert_eq!(err.code, ErrorCode::AlreadyExists);
        assert!(
            err.message.contains("already a VTEP at 192.0.2.1:8472"),
            "{err}"
        );
    }
    assert!(fx.calls.is_empty(), "{:?}", fx.calls);
    assert_eq!(fx.saved, saved);
    assert_eq!(*c.model(), model);
    assert_eq!(fx.vtep, Some("192.0.2.1:8472".parse().unwrap()));

    // A VTEP from --vtep counts too; it is not remembered (the flag is the operator's).
    let mut fx = FakeSystem::new();
    fx.vtep = Some("192.0.2.5:4789".parse().unwrap());
    let mut c = start(&mut fx);
    let err = c.handle(&mut fx, clock(), enable("192.0.2.5")).unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
    assert!(fx.calls.is_empty());
    assert_eq!(c.model().vtep, None);
}

#[test]
fn a_refused_vtep_changes_nothing() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let local: SocketAddr = "192.0.2.1:4789".parse().unwrap();
    // Addresses that can never be a VTEP are refused before anything happens.
    for bad in ["0.0.0.0", "224.0.0.1", "vtep.example", "192.0.2.1:0", ""] {
        let err = c.handle(&mut fx, clock(), enable(bad)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad:?}: {err}");
    }
    assert!(fx.calls.is_empty(), "{:?}", fx.calls);
    // The bind refused (not this host's address, the port taken, another switchd's):
    // the saved intent is taken back, and there is no VTEP.
    fx.fail = Some(Call::EnableVtep(local));
    let err = c.handle(&mut fx, clock(), enable("192.0.2.1")).unwrap_err();
    assert_eq!(err.code, ErrorCode::SystemError);
    assert!(err.message.starts_with("cannot enable VXLAN: "), "{err}");
    assert_eq!(fx.calls, vec![Call::Save, Call::Save]);
    assert_eq!(fx.vtep, None);
    assert_eq!(fx.saved.as_ref().unwrap().vtep, None);
    assert_eq!(c.model().vtep, None);
    assert_eq!(
        c.handle(&mut fx, clock(), Request::VxlanShow)
            .unwrap_err()
            .code,
        ErrorCode::NoOverlay
    );
    // The intent cannot be saved: nothing is bound.
    fx.calls.clear();
    fx.fail = Some(Call::Save);
    let err = c.handle(&mut fx, clock(), enable("192.0.2.1")).unwrap_err();
    assert_eq!(err.code, ErrorCode::StateNotSaved);
    assert_eq!(fx.vtep, None);
    assert!(fx.calls.is_empty(), "{:?}", fx.calls);
    assert_eq!(c.model().vtep, None);
    // And then it works.
    let _: crate::control::VxlanInfo = call(&mut c, &mut fx, enable("192.0.2.1")).unwrap();
    assert_eq!(fx.vtep, Some(local));
    assert_consistent(&c, &fx);
}

#[test]
fn a_crash_while_enabling_vxlan_leaves_a_vtep_or_none_and_the_state_agrees() {
    for crash_after in 0..4 {
        let mut fx = FakeSystem::new();
        let mut c = start(&mut fx);
        fx.crash_after = Some(crash_after);
        let _ = c.handle(&mut fx, clock(), enable("192.0.2.1"));
        drop(c);
        fx.restart();
        let mut c = start(&mut fx);
        assert_consistent(&c, &fx);
        let remembered = fx.saved.as_ref().and_then(|s| s.vtep);
        assert_eq!(fx.vtep, remembered, "crash after {crash_after}");
        let shown = c.handle(&mut fx, clock(), Request::VxlanShow);
        assert_eq!(
            shown.is_ok(),
            remembered.is_some(),
            "crash after {crash_after}"
        );
    }
}

// ---- host ports, internal ports, LAN networks ----

fn port_add(ifname: &str, mode: Option<PortMode>) -> Request {
    Request::PortAdd(crate::control::PortAddRequest {
        ifname: ifname.into(),
        mode,
        ..Default::default()
    })
}

fn internal_add(ifname: &str, mode: Option<PortMode>) -> Request {
    Request::PortAdd(crate::control::PortAddRequest {
        ifname: ifname.into(),
        internal: true,
        mode,
        ..Default::default()
    })
}

fn trunk(list: &str, native: Option<u16>) -> PortMode {
    PortMode::Trunk {
        allowed: list.parse().unwrap(),
        native: native.map(|v| VlanId::new(v).unwrap()),
    }
}

fn lan_network(
    name: &str,
    parent: &str,
    vlan: Option<u16>,
    subnet: &str,
    gateway: &str,
) -> NetworkConfig {
    NetworkConfig {
        name: name.into(),
        subnet: Some(subnet.parse().unwrap()),
        gateway: Some(gateway.parse().unwrap()),
        parent: Some(parent.into()),
        vlan: vlan.map(|v| VlanId::new(v).unwrap()),
        ..NetworkConfig::default()
    }
}

fn port_state(c: &mut Controller, fx: &mut FakeSystem, id: PortId) -> String {
    let ports: Vec<PortInfo> = call(c, fx, Request::PortList).unwrap();
    ports
        .into_iter()
        .find(|p| p.id == id)
        .expect("the port")
        .state
}

#[test]
fn host_and_internal_ports_are_added_listed_and_removed_leaving_the_interface() {
    let mut fx = FakeSystem::new();
    let eth1 = fx.add_link(None, "eth1", 9000, None);
    let lan = fx.add_namespace("lan");
    let veth = fx.add_link(Some(&lan), "veth0", 1500, Some("veth"));
    let mut c = start(&mut fx);

    let host: PortInfo = call(
        &mut c,
        &mut fx,
        port_add("eth1", Some(trunk("10,20", None))),
    )
    .unwrap();
    assert_eq!(
        (host.kind, host.name.as_str()),
        (SavedPortKind::Host, "eth1")
    );
    assert_eq!(host.ifindex, eth1);
    assert_eq!(host.state, "up");
    assert!(
        !host.port_security,
        "off by default: a host port carries many MACs"
    );
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::OpenHostPort(host.id), Call::Save]
    );
    assert_eq!(fx.host_open[&host.id].2, eth1);

    // The default mode is nsutil attach's: access on VLAN 1.
    fx.calls.clear();
    let internal: PortInfo = call(&mut c, &mut fx, internal_add("host0", None)).unwrap();
    assert_eq!(internal.kind, SavedPortKind::Internal);
    assert_eq!(internal.mode, access(1));
    assert_eq!(internal.netns, Path::new(OWN_NETNS));
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::CreateTap(internal.id), Call::Save]
    );
    assert!(fx.taps.iter().any(|t| t.ifname == "host0"));

    // Another namespace's interface is a host port too.
    let other: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortAdd(crate::control::PortAddRequest {
            ifname: "veth0".into(),
            netns: Some(lan.clone()),
            mode: Some(access(30)),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!((other.name.as_str(), other.ifindex), ("lan/veth0", veth));
    assert_consistent(&c, &fx);

    let ports: Vec<PortInfo> = call(&mut c, &mut fx, Request::PortList).unwrap();
    let kinds: Vec<&str> = ports.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["host", "internal", "host"]);
    let saved = fx.saved.clone().unwrap();
    let text = serde_json::to_string(&saved).unwrap();
    assert!(text.contains(r#""kind":"host""#) && text.contains(r#""kind":"internal""#));

    // Removing a host port closes its socket and never deletes the interface.
    fx.calls.clear();
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortDel {
            port: "eth1".into(),
        },
    )
    .unwrap();
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::CloseHostPort(host.id), Call::Save]
    );
    assert!(fx.link_mut(None, "eth1").is_some());
    assert!(!fx.host_open.contains_key(&host.id));
    // Removing an internal port destroys its TAP.
    fx.calls.clear();
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortDel {
            port: "host0".into(),
        },
    )
    .unwrap();
    assert_eq!(
        fx.calls,
        vec![Call::Save, Call::DestroyTap(internal.id), Call::Save]
    );
    assert!(!fx.taps.iter().any(|t| t.ifname == "host0"));
    assert_consistent(&c, &fx);
}

#[test]
fn a_failed_host_port_change_is_undone() {
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 1500, None);
    let mut c = start(&mut fx);
    // The final save fails: the socket opened is closed again.
    fx.fail = Some(Call::Save);
    fx.fail_skip = 1;
    let before = c.model().clone();
    let err = call::<PortInfo>(&mut c, &mut fx, port_add("eth1", None)).unwrap_err();
    assert_eq!(err.code, ErrorCode::StateNotSaved, "{err:?}");
    assert_eq!(
        fx.calls,
        vec![
            Call::Save,
            Call::OpenHostPort(PortId(1)),
            Call::CloseHostPort(PortId(1)),
            Call::Save
        ]
    );
    assert_eq!(*c.model(), before);
    assert!(fx.host_open.is_empty());
    let host: PortInfo = call(&mut c, &mut fx, port_add("eth1", None)).unwrap();
    // A removal whose final save fails opens the socket again.
    fx.calls.clear();
    fx.fail = Some(Call::Save);
    fx.fail_skip = 1;
    let err = call::<PortInfo>(
        &mut c,
        &mut fx,
        Request::PortDel {
            port: "eth1".into(),
        },
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::StateNotSaved);
    assert_eq!(
        fx.calls,
        vec![
            Call::Save,
            Call::CloseHostPort(host.id),
            Call::OpenHostPort(host.id),
            Call::Save
        ]
    );
    assert!(fx.host_open.contains_key(&host.id), "reopened");
    assert!(c.model().ports.contains_key(&host.id));
    assert_consistent(&c, &fx);
}

#[test]
fn a_crash_while_adding_a_host_port_never_deletes_the_interface() {
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 1500, None);
    let mut c = start(&mut fx);
    // Dies after saving the intent and opening the socket, before the commit.
    fx.crash_after = Some(2);
    assert!(call::<PortInfo>(&mut c, &mut fx, port_add("eth1", None)).is_err());
    drop(c);
    fx.restart();
    let c = start(&mut fx);
    assert!(c.model().ports.is_empty(), "the half-made port is gone");
    assert!(fx.link_mut(None, "eth1").is_some(), "the interface stays");
    assert!(!fx
        .calls
        .iter()
        .any(|call| matches!(call, Call::DiscardTap(_))));
    assert_consistent(&c, &fx);
}

#[test]
fn host_port_refusals_are_coded_and_change_nothing() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    fx.add_link(None, "eth1", 1500, None);
    fx.add_link(None, "eth2", 1500, None);
    fx.add_link(None, "bond0", 1500, Some("bond"));
    let enslaved = fx.add_link(None, "eth3", 1500, None);
    let _ = enslaved;
    if let Some(link) = fx.link_mut(None, "eth3") {
        link.facts.master = Some(99);
        link.facts.master_name = Some("br0".into());
    }
    fx.add_link(None, "switchyard0", 1500, Some("tun"));
    let mut c = start(&mut fx);
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        port_add("eth1", Some(trunk("10,20", None))),
    )
    .unwrap();
    let _: PortInfo = call(&mut c, &mut fx, internal_add("host0", None)).unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_request(&red, None)).unwrap();
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        create_network("blue", "10.10.0.0/24", false),
    )
    .unwrap();
    let blue_vlan = c.model().networks.get("blue").unwrap().vlan.get();

    let netns_add = |ifname: &str, netns: &Path| {
        Request::PortAdd(crate::control::PortAddRequest {
            ifname: ifname.into(),
            netns: Some(netns.to_path_buf()),
            ..Default::default()
        })
    };
    let cases: Vec<(Request, ErrorCode, &str)> = vec![
        (
            port_add("eth9", None),
            ErrorCode::NoSuchInterface,
            "no interface eth9",
        ),
        (
            port_add("eth1", None),
            ErrorCode::AlreadyExists,
            "already port",
        ),
        (
            port_add("host0", None),
            ErrorCode::AlreadyExists,
            "internal port",
        ),
        (
            netns_add("eth0", &red),
            ErrorCode::AlreadyExists,
            "tap port",
        ),
        (port_add("eth3", None), ErrorCode::Conflict, "br0"),
        (port_add("switchyard0", None), ErrorCode::Conflict, "uplink"),
        (port_add("lo", None), ErrorCode::InvalidArgument, "loopback"),
        (
            port_add("eth2", Some(trunk(&format!("5,{blue_vlan}"), None))),
            ErrorCode::Conflict,
            "belongs to network blue",
        ),
        (
            Request::PortAdd(crate::control::PortAddRequest {
                ifname: "host1".into(),
                internal: true,
                netns: Some(red.clone()),
                ..Default::default()
            }),
            ErrorCode::InvalidArgument,
            "--netns",
        ),
        (
            internal_add("eth2", None),
            ErrorCode::AlreadyExists,
            "already exists",
        ),
        (
            internal_add("switchyard0", None),
            ErrorCode::Conflict,
            "uplink",
        ),
        (
            port_add("bad/name", None),
            ErrorCode::InvalidArgument,
            "invalid interface name",
        ),
        (
            netns_add("eth0", Path::new("/run/netns/nowhere")),
            ErrorCode::NamespaceUnavailable,
            "nowhere",
        ),
        // Only TAPs are attached or moved.
        (
            Request::PortMoved {
                port: "eth1".into(),
                netns: red.clone(),
            },
            ErrorCode::Conflict,
            "host port",
        ),
    ];
    for (request, code, words) in cases {
        let before = c.model().clone();
        let saved = fx.saved.clone();
        let (taps, open) = (fx.taps.clone(), fx.host_open.clone());
        fx.calls.clear();
        let err = call::<PortInfo>(&mut c, &mut fx, request.clone()).unwrap_err();
        assert_eq!(err.code, code, "{request:?}: {err:?}");
        assert!(err.message.contains(words), "{request:?}: {}", err.message);
        assert_eq!(*c.model(), before, "{request:?}");
        assert_eq!(fx.saved, saved);
        assert_eq!((fx.taps.clone(), fx.host_open.clone()), (taps, open));
        assert!(fx.calls.is_empty(), "{request:?}: {:?}", fx.calls);
    }
    // An attach of a host port's (namespace, interface) is refused too.
    let lan = fx.add_namespace("lan");
    fx.add_link(Some(&lan), "veth0", 1500, None);
    let _: PortInfo = call(&mut c, &mut fx, netns_add("veth0", &lan)).unwrap();
    let mut attach = attach_request(&lan, None);
    if let Request::Attach(req) = &mut attach {
        req.ifname = "veth0".into();
    }
    let err = call::<Attached>(&mut c, &mut fx, attach).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err:?}");
    assert_consistent(&c, &fx);
}

#[test]
fn a_restart_reopens_host_ports_by_name_and_marks_a_gone_one_down_until_it_returns() {
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 1500, None);
    fx.add_link(None, "eth2", 1500, None);
    let mut c = start(&mut fx);
    let one: PortInfo = call(&mut c, &mut fx, port_add("eth1", Some(access(10)))).unwrap();
    let two: PortInfo = call(&mut c, &mut fx, port_add("eth2", Some(access(20)))).unwrap();
    let internal: PortInfo = call(&mut c, &mut fx, internal_add("host0", None)).unwrap();
    drop(c);
    fx.restart();
    // While switchd was down, eth1 was made again (a new index) and eth2 went away.
    fx.remove_link(None, "eth1");
    let eth1 = fx.add_link(None, "eth1", 1500, None);
    fx.remove_link(None, "eth2");
    let mut c = start(&mut fx);
    assert_eq!(fx.host_open[&one.id].2, eth1);
    assert_eq!(c.model().ports[&one.id].ifindex, eth1, "the new index");
    assert_eq!(
        fx.saved.as_ref().unwrap().ports[0].ifindex,
        eth1,
        "and saved"
    );
    assert_eq!(port_state(&mut c, &mut fx, one.id), "up");
    let state = port_state(&mut c, &mut fx, two.id);
    assert!(state.starts_with("down: interface eth2 is gone"), "{state}");
    assert!(!c.datapath().switch().is_port_up(two.id));
    assert_eq!(port_state(&mut c, &mut fx, internal.id), "up");
    assert!(
        fx.attached.contains_key(&internal.id),
        "the internal TAP reattached"
    );
    assert_consistent(&c, &fx);

    // eth2 comes back: the port with it.
    let eth2 = fx.add_link(None, "eth2", 1500, None);
    fx.calls.clear();
    c.link_changed(&mut fx, None, eth2, "eth2", true, false);
    assert_eq!(fx.calls, vec![Call::OpenHostPort(two.id), Call::Save]);
    assert_eq!(port_state(&mut c, &mut fx, two.id), "up");
    assert!(c.datapath().switch().is_port_up(two.id));
    assert_eq!(c.model().ports[&two.id].ifindex, eth2);
    assert_consistent(&c, &fx);
}

#[test]
fn link_down_up_gone_and_back() {
    let mut fx = FakeSystem::new();
    let eth1 = fx.add_link(None, "eth1", 1500, None);
    let mut c = start(&mut fx);
    let port: PortInfo = call(&mut c, &mut fx, port_add("eth1", Some(access(10)))).unwrap();
    let switch_up = |c: &Controller| c.datapath().switch().is_port_up(port.id);
    fx.calls.clear();

    c.link_changed(&mut fx, None, eth1, "eth1", false, false);
    assert_eq!(
        port_state(&mut c, &mut fx, port.id),
        "down: interface eth1 is down"
    );
    assert!(!switch_up(&c));
    c.link_changed(&mut fx, None, eth1, "eth1", true, false);
    assert_eq!(port_state(&mut c, &mut fx, port.id), "up");
    assert!(switch_up(&c));
    assert!(
        fx.calls.is_empty(),
        "down and up open nothing: {:?}",
        fx.calls
    );

    // Other interfaces' events, and other namespaces', are not ours.
    c.link_changed(&mut fx, None, 999, "eth9", false, true);
    c.link_changed(
        &mut fx,
        Some(Path::new("/run/netns/x")),
        eth1,
        "eth1",
        false,
        true,
    );
    assert_eq!(port_state(&mut c, &mut fx, port.id), "up");
    assert!(fx.calls.is_empty());

    // Gone: the socket closes, the port waits for an eth1.
    fx.remove_link(None, "eth1");
    c.link_changed(&mut fx, None, eth1, "eth1", false, true);
    assert_eq!(fx.calls, vec![Call::CloseHostPort(port.id)]);
    let state = port_state(&mut c, &mut fx, port.id);
    assert!(state.starts_with("down: interface eth1 is gone"), "{state}");
    assert!(!switch_up(&c));
    assert_consistent(&c, &fx);
    // A second "gone" of the old index changes nothing.
    fx.calls.clear();
    c.link_changed(&mut fx, None, eth1, "eth1", false, true);
    assert!(fx.calls.is_empty());

    // Back, with a new index, first down then up.
    let again = fx.add_link(None, "eth1", 1500, None);
    assert_ne!(again, eth1);
    c.link_changed(&mut fx, None, again, "eth1", false, false);
    assert_eq!(fx.calls, vec![Call::OpenHostPort(port.id), Call::Save]);
    assert_eq!(
        port_state(&mut c, &mut fx, port.id),
        "down: interface eth1 is down"
    );
    c.link_changed(&mut fx, None, again, "eth1", true, false);
    assert_eq!(port_state(&mut c, &mut fx, port.id), "up");
    assert!(switch_up(&c));
    assert_eq!(fx.saved.as_ref().unwrap().ports[0].ifindex, again);
    assert_consistent(&c, &fx);

    // Renamed away: down until an eth1 appears.
    fx.calls.clear();
    c.link_changed(&mut fx, None, again, "wan0", true, false);
    assert_eq!(fx.calls, vec![Call::CloseHostPort(port.id)]);
    let state = port_state(&mut c, &mut fx, port.id);
    assert!(state.contains("renamed wan0"), "{state}");
}

/// An ARP request from `mac`/`ip`: a broadcast the switch floods on the sender's VLAN.
fn arp_request(
    mac: crate::wire::MacAddr,
    ip: std::net::Ipv4Addr,
    target: std::net::Ipv4Addr,
) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

#[test]
fn a_lan_network_uses_the_lans_router_and_its_parents_vlan_and_mtu() {
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 9000, None);
    let web = fx.add_namespace("web");
    let db = fx.add_namespace("db");
    let mut c = start(&mut fx);
    let parent: PortInfo = call(
        &mut c,
        &mut fx,
        port_add("eth1", Some(trunk("10,20", None))),
    )
    .unwrap();
    let mut config = lan_network("lan", "eth1", Some(10), "192.168.0.0/24", "192.168.0.1");
    config.ip_range = Some("192.168.0.128/25".parse().unwrap());
    config.aux_addresses = vec![
        "192.168.0.128".parse().unwrap(),
        "192.168.0.129".parse().unwrap(),
    ];
    fx.calls.clear();
    let info: NetworkInfo = call(&mut c, &mut fx, Request::NetworkCreate(config)).unwrap();
    assert_eq!(info.parent.as_deref(), Some("eth1"));
    assert_eq!(info.vlan, VlanId::new(10).unwrap());
    assert_eq!(
        info.gateway,
        "192.168.0.1".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(info.mtu, 9000, "the parent interface's");
    assert_eq!(info.aux_addresses.len(), 2);
    // No uplink, route or NAT for it: the LAN's router routes it.
    assert_eq!(fx.calls, vec![Call::Save]);
    assert!(!fx.uplink && fx.routes.is_empty() && fx.nat.is_empty());

    let attached: Attached = call(&mut c, &mut fx, attach_request(&web, Some("lan"))).unwrap();
    let endpoint = attached.endpoint.unwrap();
    assert_eq!(
        endpoint.address,
        "192.168.0.130/24".parse::<Ipv4Net>().unwrap(),
        "from the range, not an auxiliary address"
    );
    assert_eq!(endpoint.gateway, info.gateway);
    assert_eq!(endpoint.mtu, 9000);
    assert!(!endpoint.dns, "no DNS of switchd's on the LAN's gateway");
    assert_eq!(attached.port.mode, access(10));
    // switchd's router has no part in it: no interface, no router port, no static
    // entry for a gateway, no neighbour.
    let dp = c.datapath().clone();
    assert_eq!(dp.router().interfaces().count(), 0);
    assert!(!dp
        .switch()
        .port_ids()
        .contains(&crate::datapath::ROUTER_PORT));
    assert!(dp.router().neighbors().is_empty());
    assert!(dp
        .switch()
        .fdb()
        .entries(clock().now)
        .iter()
        .all(|e| !e.is_static));
    // A broadcast from the container reaches the LAN through the parent, tagged 10.
    let ip = endpoint.address.addr();
    let frame = arp_request(endpoint.mac, ip, info.gateway);
    let view = dp.switch().view();
    let decision = dp
        .switch()
        .process(&view, clock().now, endpoint.port, &frame);
    let mut out = Vec::new();
    dp.switch().egresses_into(&view, decision, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].port, out[0].tag), (parent.id, VlanId::new(10)));

    // A static address: not an auxiliary one, nor the gateway; the range does not bind it.
    let mut fixed = attach_request(&db, Some("lan"));
    if let Request::Attach(req) = &mut fixed {
        req.ip = Some("192.168.0.129".parse().unwrap());
    }
    let err = call::<Attached>(&mut c, &mut fx, fixed.clone()).unwrap_err();
    assert_eq!(err.code, ErrorCode::AddressUnavailable, "{err:?}");
    if let Request::Attach(req) = &mut fixed {
        req.ip = Some("192.168.0.20".parse().unwrap());
    }
    let db_endpoint = call::<Attached>(&mut c, &mut fx, fixed)
        .unwrap()
        .endpoint
        .unwrap();
    assert_eq!(db_endpoint.address.addr().to_string(), "192.168.0.20");
    assert_consistent(&c, &fx);

    // A restart keeps it as it was.
    drop(c);
    fx.restart();
    let c = start(&mut fx);
    assert_eq!(c.datapath().router().interfaces().count(), 0);
    assert!(!fx.uplink);
    assert_consistent(&c, &fx);
}

#[test]
fn lan_network_refusals_and_the_parent_stays_while_it_is_used() {
    let mut fx = FakeSystem::new();
    let red = fx.add_namespace("red");
    let web = fx.add_namespace("web");
    let green = fx.add_namespace("green");
    fx.add_link(None, "eth1", 1500, None);
    fx.add_link(None, "eth2", 1500, None);
    let mut c = start(&mut fx);
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        port_add("eth1", Some(trunk("10,20", None))),
    )
    .unwrap();
    let _: PortInfo = call(&mut c, &mut fx, port_add("eth2", Some(access(30)))).unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_plain(&red, access(40), None, &[])).unwrap();
    let ok = lan_network("lan", "eth1", Some(10), "192.168.0.0/24", "192.168.0.1");
    let cases: Vec<(NetworkConfig, ErrorCode, &str)> = vec![
        (
            NetworkConfig {
                gateway: None,
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "--gateway",
        ),
        (
            NetworkConfig {
                subnet: None,
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "--subnet",
        ),
        (
            NetworkConfig {
                masquerade: true,
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "masquerade",
        ),
        (
            NetworkConfig {
                internal: true,
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "internal",
        ),
        (
            NetworkConfig {
                parent: Some("eth9".into()),
                ..ok.clone()
            },
            ErrorCode::NoSuchPort,
            "eth9",
        ),
        (
            NetworkConfig {
                parent: Some("red/eth0".into()),
                ..ok.clone()
            },
            ErrorCode::Conflict,
            "host port",
        ),
        (
            NetworkConfig {
                vlan: VlanId::new(30),
                ..ok.clone()
            },
            ErrorCode::Conflict,
            "does not carry VLAN 30",
        ),
        (
            NetworkConfig {
                vlan: None,
                ..ok.clone()
            },
            ErrorCode::Conflict,
            "no untagged VLAN",
        ),
        (
            NetworkConfig {
                parent: None,
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "--vlan goes with --parent",
        ),
        (
            NetworkConfig {
                aux_addresses: vec!["192.168.1.5".parse().unwrap()],
                ..ok.clone()
            },
            ErrorCode::InvalidArgument,
            "auxiliary",
        ),
    ];
    for (config, code, words) in cases {
        let before = c.model().clone();
        fx.calls.clear();
        let err = call::<NetworkInfo>(&mut c, &mut fx, Request::NetworkCreate(config.clone()))
            .unwrap_err();
        assert_eq!(err.code, code, "{config:?}: {err:?}");
        assert!(err.message.contains(words), "{config:?}: {}", err.message);
        assert_eq!(*c.model(), before);
        assert!(fx.calls.is_empty());
    }
    // The parent's untagged VLAN by default.
    let access_lan: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkCreate(lan_network(
            "lan30",
            "eth2",
            None,
            "10.30.0.0/24",
            "10.30.0.1",
        )),
    )
    .unwrap();
    assert_eq!(access_lan.vlan, VlanId::new(30).unwrap());
    let _: NetworkInfo = call(&mut c, &mut fx, Request::NetworkCreate(ok.clone())).unwrap();
    let _: Attached = call(&mut c, &mut fx, attach_request(&web, Some("lan"))).unwrap();

    // While the network uses it: the parent stays, and keeps carrying VLAN 10; the VLAN
    // is the network's (no plain port, no other host port on it); nothing publishes.
    let refused: Vec<(Request, ErrorCode)> = vec![
        (
            Request::PortDel {
                port: "eth1".into(),
            },
            ErrorCode::Conflict,
        ),
        (
            Request::PortSet {
                port: "eth1".into(),
                mode: Some(trunk("20", None)),
                port_security: None,
                storm_limit_pps: None,
            },
            ErrorCode::Conflict,
        ),
        (
            attach_plain(&green, access(10), None, &[]),
            ErrorCode::Conflict,
        ),
        (port_add("eth3", Some(access(10))), ErrorCode::Conflict),
        (
            Request::PortPublish {
                port: "web/eth0".into(),
                published: switchyard_portmap("8080:80"),
                add: false,
            },
            ErrorCode::Conflict,
        ),
        (
            Request::NetworkCreate(lan_network(
                "again",
                "eth1",
                Some(10),
                "10.99.0.0/24",
                "10.99.0.1",
            )),
            ErrorCode::Conflict,
        ),
    ];
    fx.add_link(None, "eth3", 1500, None);
    for (request, code) in refused {
        let before = c.model().clone();
        let err = c.handle(&mut fx, clock(), request.clone()).unwrap_err();
        assert_eq!(err.code, code, "{request:?}: {err:?}");
        assert_eq!(*c.model(), before, "{request:?}");
    }
    // Widening the parent's trunk is fine.
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortSet {
            port: "eth1".into(),
            mode: Some(trunk("10,20,50", None)),
            port_security: None,
            storm_limit_pps: None,
        },
    )
    .unwrap();
    // Without endpoints and network, the parent goes.
    let _: Detached = call(
        &mut c,
        &mut fx,
        Request::Detach {
            netns: web.clone(),
            ifname: "eth0".into(),
        },
    )
    .unwrap();
    let _: NetworkInfo = call(
        &mut c,
        &mut fx,
        Request::NetworkRemove { name: "lan".into() },
    )
    .unwrap();
    let _: PortInfo = call(
        &mut c,
        &mut fx,
        Request::PortDel {
            port: "eth1".into(),
        },
    )
    .unwrap();
    assert_consistent(&c, &fx);
}

fn switchyard_portmap(spec: &str) -> Vec<crate::portmap::PortMapping> {
    crate::portmap::parse_spec(spec).unwrap()
}

#[test]
fn two_lan_networks_on_different_vlans_are_isolated_by_vlan() {
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 1500, None);
    let a = fx.add_namespace("a");
    let b = fx.add_namespace("b");
    let a2 = fx.add_namespace("a2");
    let mut c = start(&mut fx);
    let parent: PortInfo = call(
        &mut c,
        &mut fx,
        port_add("eth1", Some(trunk("10,20", None))),
    )
    .unwrap();
    for (name, vlan, subnet, gateway) in [
        ("lan10", 10, "192.168.10.0/24", "192.168.10.1"),
        ("lan20", 20, "192.168.20.0/24", "192.168.20.1"),
    ] {
        let _: NetworkInfo = call(
            &mut c,
            &mut fx,
            Request::NetworkCreate(lan_network(name, "eth1", Some(vlan), subnet, gateway)),
        )
        .unwrap();
    }
    let on = |c: &mut Controller, fx: &mut FakeSystem, netns: &Path, network: &str| {
        call::<Attached>(c, fx, attach_request(netns, Some(network)))
            .unwrap()
            .endpoint
            .unwrap()
    };
    let ea = on(&mut c, &mut fx, &a, "lan10");
    let eb = on(&mut c, &mut fx, &b, "lan20");
    let ea2 = on(&mut c, &mut fx, &a2, "lan10");
    let dp = c.datapath().clone();
    let switch = dp.switch();
    assert_eq!(switch.port_mode(ea.port), Some(access(10)));
    assert_eq!(switch.port_mode(eb.port), Some(access(20)));
    let flood = |from: &crate::control::EndpointInfo| {
        let view = switch.view();
        let frame = arp_request(from.mac, from.address.addr(), from.gateway);
        let decision = switch.process(&view, clock().now, from.port, &frame);
        let mut out = Vec::new();
        switch.egresses_into(&view, decision, &mut out);
        let mut ports: Vec<(PortId, Option<VlanId>)> =
            out.iter().map(|e| (e.port, e.tag)).collect();
        ports.sort();
        ports
    };
    assert_eq!(
        flood(&ea),
        vec![(parent.id, VlanId::new(10)), (ea2.port, None)],
        "VLAN 10: its other container and the parent, tagged 10; never b"
    );
    assert_eq!(flood(&eb), vec![(parent.id, VlanId::new(20))]);
}

#[test]
fn old_state_files_load_ports_as_taps_and_port_add_has_a_stable_wire_form() {
    let port: SavedPort = serde_json::from_str(
        r#"{"id":1,"label":"red","netns":"/run/netns/red","netns_dev":4,"netns_ino":5,"ifname":"eth0","ifindex":2,"mode":{"mode":"access","vlan":10}}"#,
    )
    .unwrap();
    assert_eq!(port.kind, SavedPortKind::Tap);
    assert!(!serde_json::to_string(&port).unwrap().contains("kind"));
    let request = port_add("eth1", Some(trunk("10,20", Some(1))));
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(
        json,
        r#"{"cmd":"port_add","ifname":"eth1","mode":{"mode":"trunk","allowed":[10,20],"native":1}}"#
    );
    assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
    let minimal: Request =
        serde_json::from_str(r#"{"cmd":"port_add","ifname":"eth1","internal":true}"#).unwrap();
    assert_eq!(minimal, internal_add("eth1", None));
    // A PortInfo of a switchd before host ports is a TAP's.
    let info: PortInfo = serde_json::from_str(
        r#"{"id":1,"name":"red/eth0","netns":"/run/netns/red","ifname":"eth0","ifindex":7,"mode":"access","vlan":10,"state":"up"}"#,
    )
    .unwrap();
    assert_eq!(info.kind, SavedPortKind::Tap);
}

#[test]
fn an_internal_port_whose_tap_went_with_a_reboot_is_made_again() {
    let mut fx = FakeSystem::new();
    let mut c = start(&mut fx);
    let port: PortInfo = call(&mut c, &mut fx, internal_add("host0", Some(access(10)))).unwrap();
    drop(c);
    fx.restart();
    fx.taps.clear();
    let mut c = start(&mut fx);
    assert_eq!(port_state(&mut c, &mut fx, port.id), "up");
    let tap = &fx.attached[&port.id];
    assert_eq!(
        (tap.netns.as_path(), tap.ifname.as_str()),
        (Path::new(OWN_NETNS), "host0")
    );
    assert_eq!(fx.saved.as_ref().unwrap().ports[0].ifindex, tap.ifindex);
    assert_consistent(&c, &fx);
}

#[test]
fn an_internal_port_joins_a_lan_networks_vlan_before_or_after_the_network() {
    // The host's own interface on the LAN (what a macvlan "shim" device is for with
    // Docker): allowed on a LAN network's VLAN whichever comes first.
    for internal_first in [false, true] {
        let mut fx = FakeSystem::new();
        fx.add_link(None, "eth1", 1500, None);
        let mut c = start(&mut fx);
        call::<PortInfo>(&mut c, &mut fx, port_add("eth1", Some(trunk("10", None)))).unwrap();
        let lan = lan_network("lan", "eth1", Some(10), "192.168.0.0/24", "192.168.0.1");
        let internal = internal_add("host0", Some(access(10)));
        if internal_first {
            call::<PortInfo>(&mut c, &mut fx, internal).unwrap();
            call::<NetworkInfo>(&mut c, &mut fx, Request::NetworkCreate(lan)).unwrap();
        } else {
            call::<NetworkInfo>(&mut c, &mut fx, Request::NetworkCreate(lan)).unwrap();
            call::<PortInfo>(&mut c, &mut fx, internal).unwrap();
        }
        assert_consistent(&c, &fx);
    }
    // A container's port on the VLAN by hand is no endpoint of the network: refused.
    let mut fx = FakeSystem::new();
    fx.add_link(None, "eth1", 1500, None);
    let web = fx.add_namespace("web");
    let mut c = start(&mut fx);
    call::<PortInfo>(&mut c, &mut fx, port_add("eth1", Some(trunk("10", None)))).unwrap();
    // attach_request's port is on VLAN 10.
    call::<Attached>(&mut c, &mut fx, attach_request(&web, None)).unwrap();
    let lan = lan_network("lan", "eth1", Some(10), "192.168.0.0/24", "192.168.0.1");
    let err = call::<NetworkInfo>(&mut c, &mut fx, Request::NetworkCreate(lan)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err:?}");
    assert_consistent(&c, &fx);
}
