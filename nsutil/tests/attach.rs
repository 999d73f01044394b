//! The attach workflow, as root, against a stand-in switchd (the real one is built
//! separately). Also: every way attach can fail early leaves nothing behind.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::fake_switchd::FakeSwitchd;
use common::{link_names, unique_name, TestNs};
use ipnet::IpNet;
use nsutil::attach::{self, derived_mac, AttachError, AttachOptions, OptionsError};
use nsutil::netns::{self, Netns, NetnsError, NetnsRef};
use switchyard::control::Request;
use switchyard::port::PortMode;
use switchyard::wire::VlanId;
use switchyard_os::client::ClientError;

fn access_options(ns: &TestNs) -> AttachOptions {
    let mut options = AttachOptions::new(ns.reference());
    options.addr = Some("10.0.0.1/24".parse().unwrap());
    options.gateway = Some("10.0.0.254".parse().unwrap());
    options.mode = PortMode::Access {
        vlan: VlanId::new(10).unwrap(),
    };
    options
}

#[test]
#[ignore = "needs root; run by make test"]
fn attach_configures_the_interface_and_detach_removes_it() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    let options = access_options(&ns);

    let attached = attach::attach(&switchd.path, &options).unwrap();
    assert!(attached.created);
    assert_eq!(attached.mac.to_string(), "02:42:0a:00:00:01");
    assert_eq!(attached.port.mode, options.mode);
    assert_eq!(
        attached.to_string(),
        format!(
            "attached {}/eth0: port 1, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24 via 10.0.0.254",
            ns.name
        )
    );
    match &switchd.requests()[0] {
        Request::Attach(request) => {
            assert_eq!(request.netns, Path::new("/run/netns").join(&ns.name));
            assert_eq!(request.ifname, "eth0");
            assert_eq!(request.label.as_deref(), Some(ns.name.as_str()));
        }
        other => panic!("unexpected {other:?}"),
    }

    let link = ns.ip(&["link", "show", "eth0"]);
    assert!(link.contains("02:42:0a:00:00:01"), "{link}");
    assert!(link.contains("mtu 1500"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    assert!(ns.ip(&["link", "show", "lo"]).contains(",UP"));
    assert!(ns
        .ip(&["addr", "show", "eth0"])
        .contains("inet 10.0.0.1/24"));
    assert!(ns
        .ip(&["route", "show", "default"])
        .contains("default via 10.0.0.254 dev eth0"));

    // Again: reported as it is, nothing changed, no second port.
    let again = attach::attach(&switchd.path, &options).unwrap();
    assert!(!again.created);
    assert_eq!(again.port, attached.port);
    assert_eq!(again.mac, attached.mac);
    assert_eq!(again.addresses, attached.addresses);
    assert_eq!(again.gateway, attached.gateway);
    assert!(again
        .to_string()
        .starts_with(&format!("{}/eth0 already attached: port 1", ns.name)));
    assert_eq!(switchd.ports().len(), 1);

    let detached = attach::detach(&switchd.path, &ns.reference(), "eth0").unwrap();
    assert_eq!(detached.map(|port| port.id), Some(attached.port.id));
    assert_eq!(link_names(&ns), ["lo"]);
    // Detaching what is not attached is fine.
    assert_eq!(
        attach::detach(&switchd.path, &ns.reference(), "eth0").unwrap(),
        None
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn trunk_without_address_gets_a_derived_mac() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    let mut options = AttachOptions::new(ns.reference());
    options.ifname = "trunk0".into();
    options.mtu = 9000;
    options.mode = PortMode::Trunk {
        allowed: "10,20".parse().unwrap(),
        native: VlanId::new(5),
    };
    let attached = attach::attach(&switchd.path, &options).unwrap();
    let id = Netns::open(&ns.reference()).unwrap().id();
    assert_eq!(attached.mac, derived_mac(id, "trunk0"));
    assert!(attached.addresses.is_empty());
    let link = ns.ip(&["link", "show", "trunk0"]);
    assert!(link.contains(&attached.mac.to_string()), "{link}");
    assert!(link.contains("mtu 9000"), "{link}");
    assert!(
        attached.to_string().contains("trunk 10,20 native 5"),
        "{attached}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_failed_configuration_is_rolled_back() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    // The namespace already routes elsewhere, so the default route step fails.
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v0p"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
    ns.ip(&["route", "add", "default", "via", "10.9.0.254"]);

    let err = attach::attach(&switchd.path, &access_options(&ns)).unwrap_err();
    assert!(matches!(err, AttachError::Configure { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("configuring {}/eth0 in its namespace failed: cannot add a default route via 10.0.0.254", ns.name)),
        "{text}"
    );
    assert!(text.contains("via 10.9.0.254 dev v0"), "{text}");
    // Removed by id, not by (namespace, ifname).
    assert_eq!(
        switchd.requests().last(),
        Some(&Request::PortDel { port: "1".into() })
    );
    assert!(switchd.ports().is_empty());
    assert!(!link_names(&ns).contains(&"eth0".to_string()));
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_failed_rollback_says_how_to_clean_up() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v0p"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "v0"]);
    ns.ip(&["route", "add", "default", "via", "10.9.0.254"]);
    // switchd no longer has the port under that id (say, it was removed and another
    // made): "nothing to remove" is a failure too, never a clean rollback.
    switchd.state.lock().unwrap().refuse_port_del = Some("no such port \"1\"".into());

    let err = attach::attach(&switchd.path, &access_options(&ns)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AttachError::RollbackFailed { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "configuring {}/eth0 in its namespace failed: cannot add a default route",
            ns.name
        )),
        "{text}"
    );
    assert!(
        text.contains("; removing the half-made port 1 failed too (no such port \"1\")"),
        "{text}"
    );
    assert!(
        text.ends_with("; remove it with `swctl port del 1`"),
        "{text}"
    );
    // Nothing else was tried: no detach by (namespace, ifname).
    assert!(
        !switchd
            .requests()
            .iter()
            .any(|r| matches!(r, Request::Detach { .. })),
        "{:?}",
        switchd.requests()
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_lost_attach_answer_removes_the_new_port() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    switchd.state.lock().unwrap().drop_attach_answer = true;

    let err = attach::attach(&switchd.path, &access_options(&ns)).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Switchd {
                source: ClientError::Io { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot attach {}/eth0: lost the connection",
            ns.name
        )),
        "{err}"
    );
    // The port switchd made before the answer was lost is detached again.
    assert!(matches!(
        switchd.requests().last(),
        Some(Request::Detach { .. })
    ));
    assert!(switchd.ports().is_empty());
    assert_eq!(link_names(&ns), ["lo"]);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_lost_answer_leaves_a_configured_port_alone() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();
    let options = access_options(&ns);
    let attached = attach::attach(&switchd.path, &options).unwrap();
    switchd.state.lock().unwrap().drop_attach_answer = true;

    let err = attach::attach(&switchd.path, &options).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Switchd {
                source: ClientError::Io { .. },
                ..
            }
        ),
        "{err}"
    );
    // The interface is up, so the port predates this attach: it stays.
    assert!(matches!(
        switchd.requests().last(),
        Some(Request::Attach(_))
    ));
    assert_eq!(switchd.ports(), [attached.port]);
    assert!(ns
        .ip(&["addr", "show", "eth0"])
        .contains("inet 10.0.0.1/24"));
}

/// Runs `attach` expecting an error, and checks that nothing was created: no request
/// reached switchd, and the namespace still holds only `lo`.
fn fails_cleanly(
    ns: &TestNs,
    switchd: &FakeSwitchd,
    socket: &Path,
    options: &AttachOptions,
) -> AttachError {
    let before = netns::list().unwrap();
    let err = attach::attach(socket, options).unwrap_err();
    assert!(
        switchd.requests().is_empty(),
        "{err}: switchd was asked {:?}",
        switchd.requests()
    );
    assert_eq!(link_names(ns), ["lo"], "{err}");
    assert_eq!(netns::list().unwrap(), before, "{err}");
    err
}

#[test]
#[ignore = "needs root; run by make test"]
fn early_failures_create_nothing() {
    let ns = TestNs::new();
    let switchd = FakeSwitchd::start();

    let mut missing = access_options(&ns);
    let name = unique_name();
    missing.netns = NetnsRef::Named(name.clone());
    let err = fails_cleanly(&ns, &switchd, &switchd.path, &missing);
    assert!(
        matches!(err, AttachError::Netns(NetnsError::NotFound { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains(&format!("create it with `nsutil create {name}`")));
    assert!(!Path::new("/run/netns").join(&name).exists());

    let mut network_address = access_options(&ns);
    network_address.addr = Some("10.0.0.0/24".parse::<IpNet>().unwrap());
    let err = fails_cleanly(&ns, &switchd, &switchd.path, &network_address);
    assert!(
        matches!(
            err,
            AttachError::Options(OptionsError::NotHostAddress { .. })
        ),
        "{err}"
    );

    let mut outside = access_options(&ns);
    outside.gateway = Some("10.1.0.1".parse::<IpAddr>().unwrap());
    let err = fails_cleanly(&ns, &switchd, &switchd.path, &outside);
    assert!(
        matches!(
            err,
            AttachError::Options(OptionsError::GatewayOutsideSubnet { .. })
        ),
        "{err}"
    );

    let mut no_address = access_options(&ns);
    no_address.addr = None;
    let err = fails_cleanly(&ns, &switchd, &switchd.path, &no_address);
    assert!(
        matches!(
            err,
            AttachError::Options(OptionsError::GatewayWithoutAddress { .. })
        ),
        "{err}"
    );

    // Nothing at the socket path.
    let nowhere = std::env::temp_dir().join(format!("{}.sock", unique_name()));
    let err = fails_cleanly(&ns, &switchd, &nowhere, &access_options(&ns));
    assert!(
        matches!(
            err,
            AttachError::Switchd {
                source: ClientError::NotRunning { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot attach {}/eth0: switchd is not running at {}",
            ns.name,
            nowhere.display()
        )),
        "{err}"
    );

    // A stale socket file whose listener is gone.
    let stale = std::env::temp_dir().join(format!("{}.sock", unique_name()));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = fails_cleanly(&ns, &switchd, &stale, &access_options(&ns));
    let _ = std::fs::remove_file(&stale);
    assert!(
        matches!(
            err,
            AttachError::Switchd {
                source: ClientError::NotRunning { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn detach_all_finds_ports_by_namespace_identity() {
    let ns = TestNs::new();
    let other = TestNs::new();
    let switchd = FakeSwitchd::start();
    let mut first = AttachOptions::new(ns.reference());
    first.addr = Some("10.0.0.1/24".parse().unwrap());
    attach::attach(&switchd.path, &first).unwrap();
    let mut second = first.clone();
    second.ifname = "eth1".into();
    second.addr = Some("10.0.1.1/24".parse().unwrap());
    attach::attach(&switchd.path, &second).unwrap();
    let mut elsewhere = first.clone();
    elsewhere.netns = other.reference();
    attach::attach(&switchd.path, &elsewhere).unwrap();

    let netns = Netns::open(&ns.reference()).unwrap();
    let ports = attach::ports(&switchd.path).unwrap();
    assert_eq!(
        ports
            .iter()
            .filter(|p| attach::port_is_in(p, netns.id()))
            .count(),
        2
    );
    let removed = attach::detach_all(&switchd.path, &netns).unwrap();
    let mut names: Vec<String> = removed.into_iter().map(|p| p.ifname).collect();
    names.sort();
    assert_eq!(names, ["eth0", "eth1"]);
    assert_eq!(link_names(&ns), ["lo"]);
    assert_eq!(switchd.ports().len(), 1);
    assert!(link_names(&other).contains(&"eth0".to_string()));
}
