//! Root integration tests of the data path: switchd, nsutil and swctl as a user runs them,
//! between network namespaces each test creates and removes.
//!
//! Marked `#[ignore]` so that `cargo test` without root skips them; `make test` runs them
//! with `--include-ignored`.

mod common;

use std::time::Duration;

use std::net::Ipv4Addr;

use common::vlan_host::VlanHost;
use common::{iperf3, stderr, Netns, Switchd};

fn port_names(switchd: &Switchd) -> Vec<String> {
    switchd
        .swctl_json(&["port", "ls"])
        .as_array()
        .expect("port list")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
#[ignore = "needs root; run by make test"]
fn two_namespaces_ping_and_carry_tcp_super_frames() {
    let red = Netns::new("r");
    let blue = Netns::new("b");
    let switchd = Switchd::start();
    let out = switchd.nsutil_ok(&["attach", &red.name, "--ip", "10.71.0.1/24", "--vlan", "10"]);
    assert!(
        out.contains("02:42:0a:47:00:01"),
        "Docker-style MAC reported: {out}"
    );
    switchd.nsutil_ok(&["attach", &blue.name, "--ip", "10.71.0.2/24", "--vlan", "10"]);

    assert!(
        red.ping("10.71.0.2", 5),
        "red cannot ping blue; log:\n{}",
        switchd.log()
    );
    assert!(red
        .exec_ok(&["ip", "link", "show", "eth0"])
        .contains("02:42:0a:47:00:01"));

    let bps = iperf3(&red, &blue, "10.71.0.2", 2, &[]);
    assert!(bps > 0.0);

    // Offloads: TCP crossed the switch as super-frames, not 1514-byte segments.
    let stats = switchd.swctl_json(&["stats"]);
    let red_port = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with(&red.name))
        .expect("red's port in stats")
        .clone();
    let (bytes, packets) = (
        red_port["rx_bytes"].as_f64().unwrap(),
        red_port["rx_packets"].as_f64().unwrap(),
    );
    assert!(
        bytes / packets > 4000.0,
        "average frame from red was {:.0} bytes: offloads are not working",
        bytes / packets
    );

    let fdb = switchd.swctl_json(&["fdb", "show", "--vlan", "10"]);
    let macs: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mac"].as_str().unwrap())
        .collect();
    assert!(
        macs.contains(&"02:42:0a:47:00:01") && macs.contains(&"02:42:0a:47:00:02"),
        "{fdb}"
    );

    let human = String::from_utf8_lossy(&switchd.swctl(&["port", "ls"]).stdout).into_owned();
    assert!(human.contains(&format!("{}/eth0", red.name)), "{human}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn vlans_are_isolated_and_a_trunk_reaches_both() {
    let a = Netns::new("a");
    let b = Netns::new("b");
    let c = Netns::new("c");
    let t = Netns::new("t");
    let switchd = Switchd::start();
    switchd.nsutil_ok(&["attach", &a.name, "--ip", "10.72.10.1/24", "--vlan", "10"]);
    switchd.nsutil_ok(&["attach", &c.name, "--ip", "10.72.10.3/24", "--vlan", "10"]);
    // b also answers for an address in VLAN 10's subnet: only a leak could reach it. It
    // is an address switchd was not told of, so b's port security is off.
    switchd.nsutil_ok(&[
        "attach",
        &b.name,
        "--ip",
        "10.72.20.2/24",
        "--vlan",
        "20",
        "--port-security",
        "off",
    ]);
    b.exec_ok(&["ip", "addr", "add", "10.72.10.2/24", "dev", "eth0"]);

    // The trunk host speaks 802.1Q itself (see common::vlan_host: no VLAN devices here).
    switchd.nsutil_ok(&["attach", &t.name, "--trunk", "10,20"]);
    let trunk = VlanHost::open(&t.path(), "eth0", [0x02, 0, 0, 0, 0x10, 0x64]);

    assert!(a.ping("10.72.10.3", 5), "same VLAN must connect");
    assert!(
        !a.ping("10.72.10.2", 2),
        "VLAN 10 reached a host on VLAN 20"
    );

    let trunk_ip10: Ipv4Addr = "10.72.10.100".parse().unwrap();
    let trunk_ip20: Ipv4Addr = "10.72.20.100".parse().unwrap();
    let a_mac = trunk
        .arp(10, trunk_ip10, "10.72.10.1".parse().unwrap())
        .expect("a answers ARP on VLAN 10, tagged 10");
    assert_eq!(a_mac, [0x02, 0x42, 10, 72, 10, 1]);
    assert!(
        trunk.ping(10, a_mac, trunk_ip10, "10.72.10.1".parse().unwrap()),
        "trunk cannot ping a on VLAN 10"
    );
    let b_mac = trunk
        .arp(20, trunk_ip20, "10.72.20.2".parse().unwrap())
        .expect("b answers ARP on VLAN 20, tagged 20");
    assert!(
        trunk.ping(20, b_mac, trunk_ip20, "10.72.20.2".parse().unwrap()),
        "trunk cannot ping b on VLAN 20"
    );
    // b holds 10.72.10.2 too, but on VLAN 20: asked on VLAN 10, nobody may answer.
    assert_eq!(
        trunk.arp(10, trunk_ip10, "10.72.10.2".parse().unwrap()),
        None,
        "VLAN 10 reached b"
    );

    let stats = switchd.swctl_json(&["stats"]);
    let b_rx: u64 = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with(&b.name))
        .map(|p| p["rx_packets"].as_u64().unwrap())
        .sum();
    assert!(b_rx > 0, "b answered the trunk");

    // Reconfigure: move b into VLAN 10 and the leak-proof address becomes reachable.
    let port = format!("{}/eth0", b.name);
    let out = switchd.swctl(&["port", "set", &port, "--vlan", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        a.ping("10.72.10.2", 5),
        "after port set --vlan 10, a reaches b"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn restarting_switchd_loses_at_most_a_second_of_a_ping() {
    let red = Netns::new("r");
    let blue = Netns::new("b");
    let mut switchd = Switchd::start();
    switchd.nsutil_ok(&["attach", &red.name, "--ip", "10.73.0.1/24"]);
    switchd.nsutil_ok(&["attach", &blue.name, "--ip", "10.73.0.2/24"]);
    assert!(red.ping("10.73.0.2", 5));

    // 80 pings, 50 ms apart: 4 seconds, with the restart in the middle.
    let pinger = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &red.name,
            "ping",
            "-i",
            "0.05",
            "-c",
            "80",
            "-q",
            "10.73.0.2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(1000));
    switchd.restart();
    let out = pinger.wait_with_output().expect("ping output");
    let text = String::from_utf8_lossy(&out.stdout);
    let received: u32 = text
        .split(", ")
        .find_map(|part| part.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read ping summary: {text}"));
    assert!(
        received >= 60,
        "lost {} of 80 pings (50 ms apart) across a restart: {text}",
        80 - received
    );

    // The container kept its interface, address and route; switchd kept the ports.
    assert!(red
        .exec_ok(&["ip", "addr", "show", "eth0"])
        .contains("10.73.0.1/24"));
    assert_eq!(port_names(&switchd).len(), 2);
    let ports = switchd.swctl_json(&["port", "ls"]);
    assert!(
        ports.as_array().unwrap().iter().all(|p| p["state"] == "up"),
        "{ports}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn bad_attaches_fail_cleanly_and_leave_nothing() {
    let ns = Netns::new("e");
    let switchd = Switchd::start();

    // No such namespace.
    let out = switchd.nsutil(&["attach", "syt-no-such-namespace", "--ip", "10.74.0.1/24"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no such network namespace"),
        "{}",
        stderr(&out)
    );

    // Bad address.
    let out = switchd.nsutil(&["attach", &ns.name, "--ip", "10.74.0.300/24"]);
    assert!(!out.status.success());
    let first = stderr(&out).lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("nsutil: ") && first.contains("10.74.0.300/24"),
        "{first}"
    );

    // switchd not running.
    let out = common::run(
        common::bin("nsutil"),
        &[
            "--socket",
            "/nonexistent/switchd.sock",
            "attach",
            &ns.name,
            "--ip",
            "10.74.0.1/24",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("switchd is not running"),
        "{}",
        stderr(&out)
    );

    // Interface name taken by something else.
    ns.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
    ]);
    let out = switchd.nsutil(&["attach", &ns.name, "--ip", "10.74.0.1/24"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    ns.exec_ok(&["ip", "link", "del", "eth0"]);

    // Fails after the port exists (the TAP refuses an MTU over 65521): rolled back.
    let out = switchd.nsutil(&["attach", &ns.name, "--ip", "10.74.0.1/24", "--mtu", "65535"]);
    assert!(!out.status.success(), "MTU 65535 on a TAP should fail");

    assert!(
        port_names(&switchd).is_empty(),
        "a failed attach left a port behind"
    );
    assert_eq!(
        ns.links(),
        vec!["lo".to_string()],
        "a failed attach left an interface behind"
    );

    // Idempotence: attach twice, detach twice.
    switchd.nsutil_ok(&["attach", &ns.name, "--ip", "10.74.0.1/24"]);
    let again = switchd.nsutil_ok(&["attach", &ns.name, "--ip", "10.74.0.1/24"]);
    assert!(
        again.contains("already"),
        "second attach reports the existing port: {again}"
    );
    assert_eq!(port_names(&switchd).len(), 1);
    switchd.nsutil_ok(&["detach", &ns.name]);
    switchd.nsutil_ok(&["detach", &ns.name]);
    assert!(port_names(&switchd).is_empty());
    assert_eq!(ns.links(), vec!["lo".to_string()], "detach removed the TAP");
}

#[test]
#[ignore = "needs root; run by make test"]
fn swctl_reports_a_missing_switchd_in_one_line() {
    let out = common::run(
        common::bin("swctl"),
        &["--socket", "/nonexistent/switchd.sock", "stats"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("switchd is not running"), "{err}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn static_entries_survive_a_restart() {
    let red = Netns::new("r");
    let mut switchd = Switchd::start();
    switchd.nsutil_ok(&["attach", &red.name, "--ip", "10.75.0.1/24", "--vlan", "30"]);
    let port = format!("{}/eth0", red.name);
    let out = switchd.swctl(&[
        "fdb",
        "add",
        "02:42:0a:4b:00:63",
        "--vlan",
        "30",
        "--port",
        &port,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A static entry for a VLAN the port does not carry is refused.
    let out = switchd.swctl(&[
        "fdb",
        "add",
        "02:42:0a:4b:00:64",
        "--vlan",
        "31",
        "--port",
        &port,
    ]);
    assert!(!out.status.success());

    switchd.restart();
    let fdb = switchd.swctl_json(&["fdb", "show"]);
    let statics: Vec<_> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["static"] == true)
        .collect();
    assert_eq!(statics.len(), 1, "{fdb}");
    assert_eq!(statics[0]["mac"], "02:42:0a:4b:00:63");
}
