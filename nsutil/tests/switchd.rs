//! The attach workflow against the real switchd (`target/<profile>/switchd`, built by
//! `cargo build --workspace --bins`): interrupted attaches are completed, conflicting
//! ones change nothing, and a failure after switchd made the port leaves no port.

mod common;

use std::process::{Command, Output};

use common::real_switchd::Switchd;
use common::{link_names, TestNs};
use nsutil::attach::{self, derived_mac, AttachError, AttachOptions};
use nsutil::netns::Netns;
use switchyard::control::{AttachRequest, Attached, Request};
use switchyard::port::PortMode;
use switchyard::wire::VlanId;

fn access(vlan: u16) -> PortMode {
    PortMode::Access {
        vlan: VlanId::new(vlan).unwrap(),
    }
}

fn options(ns: &TestNs, vlan: u16, addr: &str) -> AttachOptions {
    let mut options = AttachOptions::new(ns.reference());
    options.addr = Some(addr.parse().unwrap());
    options.gateway = Some("10.0.0.254".parse().unwrap());
    options.mode = access(vlan);
    options
}

/// Asks switchd for the port directly, as an attach does before it configures anything:
/// what an attach interrupted right after switchd's answer leaves behind.
fn switchd_only_attach(switchd: &Switchd, ns: &TestNs, ifname: &str, mode: PortMode) -> Attached {
    let attached: Attached = switchd
        .client()
        .call(&Request::Attach(AttachRequest {
            netns: ns.reference().path(),
            ifname: ifname.into(),
            mode,
            label: Some(ns.name.clone()),
            network: None,
            ip: None,
            container_id: None,
            ..AttachRequest::default()
        }))
        .expect("attach through switchd");
    assert!(attached.created);
    let link = ns.ip(&["link", "show", ifname]);
    assert!(!link.contains(",UP"), "switchd made the TAP up: {link}");
    assert!(!ns.ip(&["addr", "show", ifname]).contains("inet "));
    attached
}

/// What an attach could change in the namespace.
fn snapshot(ns: &TestNs) -> [String; 3] {
    [
        ns.ip(&["-o", "link", "show", "eth0"]),
        ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]),
        ns.ip(&["route", "show"]),
    ]
}

fn nsutil(switchd: &Switchd, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsutil"))
        .arg("--socket")
        .arg(&switchd.socket)
        .args(args)
        .output()
        .expect("run nsutil")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_interrupted_attach_is_completed_and_conflicts_change_nothing() {
    let ns = TestNs::new();
    let switchd = Switchd::start();
    let made = switchd_only_attach(&switchd, &ns, "eth0", access(10));
    let id = made.port.id;

    // Attach again with the same options: the configuration is completed.
    let done = attach::attach(&switchd.socket, &options(&ns, 10, "10.0.0.2/24")).unwrap();
    assert!(!done.created && done.completed, "{done:?}");
    assert_eq!(done.port.id, id);
    assert_eq!(
        done.to_string(),
        format!(
            "attached {}/eth0 (completed an earlier, interrupted attach): port {id}, access vlan 10, mac 02:42:0a:00:00:02, 10.0.0.2/24 via 10.0.0.254",
            ns.name
        )
    );
    let link = ns.ip(&["link", "show", "eth0"]);
    assert!(link.contains(",UP"), "{link}");
    assert!(link.contains("link/ether 02:42:0a:00:00:02"), "{link}");
    assert!(link.contains("mtu 1500"), "{link}");
    assert!(ns.ip(&["link", "show", "lo"]).contains(",UP"));
    assert!(ns
        .ip(&["addr", "show", "eth0"])
        .contains("inet 10.0.0.2/24"));
    assert!(ns
        .ip(&["route", "show", "default"])
        .contains("default via 10.0.0.254 dev eth0"));
    let before = snapshot(&ns);

    // Another VLAN: refused, nothing changed.
    let out = nsutil(
        &switchd,
        &[
            "attach",
            &ns.name,
            "--ip",
            "10.0.0.2/24",
            "--gw",
            "10.0.0.254",
            "--vlan",
            "20",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "nsutil: {0}/eth0 is already attached as access vlan 10; change it with `swctl port set {0}/eth0 --vlan 20` or `nsutil detach {0}` first\n",
            ns.name
        )
    );
    let library = attach::attach(&switchd.socket, &options(&ns, 20, "10.0.0.2/24")).unwrap_err();
    assert!(
        matches!(library, AttachError::ModeMismatch { .. }),
        "{library}"
    );
    assert_eq!(snapshot(&ns), before);
    let ports = switchd.ports();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].mode, access(10));

    // Another address: refused, nothing changed.
    let err = attach::attach(&switchd.socket, &options(&ns, 10, "10.0.0.3/24")).unwrap_err();
    assert!(matches!(err, AttachError::AddressMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{0}/eth0 is already attached with 10.0.0.2/24; detach first to change its address to 10.0.0.3/24: `nsutil detach {0}`",
            ns.name
        )
    );
    assert_eq!(snapshot(&ns), before);

    // The same options a third time: reported as it is, nothing changed.
    let out = nsutil(
        &switchd,
        &[
            "attach",
            &ns.name,
            "--ip",
            "10.0.0.2/24",
            "--gw",
            "10.0.0.254",
            "--vlan",
            "10",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}/eth0 already attached: port {id}, access vlan 10, mac 02:42:0a:00:00:02, 10.0.0.2/24 via 10.0.0.254\n",
            ns.name
        )
    );
    assert_eq!(snapshot(&ns), before);
    assert_eq!(switchd.ports().len(), 1);
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_interrupted_trunk_attach_is_completed() {
    let ns = TestNs::new();
    let switchd = Switchd::start();
    let trunk = PortMode::Trunk {
        allowed: "10,20".parse().unwrap(),
        native: VlanId::new(5),
    };
    let made = switchd_only_attach(&switchd, &ns, "trunk0", trunk.clone());
    let mut options = AttachOptions::new(ns.reference());
    options.ifname = "trunk0".into();
    options.mode = trunk;

    let done = attach::attach(&switchd.socket, &options).unwrap();
    assert!(!done.created && done.completed, "{done:?}");
    assert_eq!(done.port.id, made.port.id);
    let mac = derived_mac(Netns::open(&ns.reference()).unwrap().id(), "trunk0");
    let link = ns.ip(&["link", "show", "trunk0"]);
    assert!(link.contains(",UP"), "{link}");
    assert!(link.contains(&format!("link/ether {mac}")), "{link}");

    let again = attach::attach(&switchd.socket, &options).unwrap();
    assert!(!again.created && !again.completed, "{again:?}");
    assert_eq!(again.mac, mac);
    assert!(
        again
            .to_string()
            .starts_with(&format!("{}/trunk0 already attached: ", ns.name)),
        "{again}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_configuration_failure_leaves_no_port() {
    let ns = TestNs::new();
    let switchd = Switchd::start();
    // A TAP refuses an MTU over 65521; the port exists by then.
    let mut options = options(&ns, 10, "10.0.0.2/24");
    options.mtu = 65535;
    let err = attach::attach(&switchd.socket, &options).unwrap_err();
    assert!(matches!(err, AttachError::Configure { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "configuring {}/eth0 in its namespace failed: setting the MTU of eth0 to 65535 failed",
            ns.name
        )),
        "{err}"
    );
    assert!(
        switchd.ports().is_empty(),
        "a failed attach left a port: {:?}",
        switchd.ports()
    );
    assert_eq!(link_names(&ns), ["lo"]);

    // The same through the command.
    let out = nsutil(
        &switchd,
        &["attach", &ns.name, "--ip", "10.0.0.2/24", "--mtu", "65535"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(switchd.ports().is_empty());
    assert_eq!(link_names(&ns), ["lo"]);

    // And it attaches fine afterwards.
    options.mtu = 1500;
    assert!(attach::attach(&switchd.socket, &options).unwrap().created);
    assert_eq!(switchd.ports().len(), 1);
}

#[test]
#[ignore = "needs root; run by make test"]
fn completing_an_interrupted_attach_that_fails_keeps_the_port() {
    let ns = TestNs::new();
    let switchd = Switchd::start();
    let made = switchd_only_attach(&switchd, &ns, "eth0", access(10));
    let mut options = options(&ns, 10, "10.0.0.2/24");
    options.mtu = 65535;
    let err = attach::attach(&switchd.socket, &options).unwrap_err();
    assert!(matches!(err, AttachError::Complete { .. }), "{err}");
    assert!(
        err.to_string().ends_with(&format!(
            "{0}/eth0 was left unconfigured by an earlier, interrupted attach and stays so: remove it with `nsutil detach {0}`, or fix the cause and attach again",
            ns.name
        )),
        "{err}"
    );
    // Not this attach's port to remove.
    assert_eq!(switchd.ports(), [made.port]);
    options.mtu = 1500;
    assert!(attach::attach(&switchd.socket, &options).unwrap().completed);
}
