//! Root tests of the hardening: a container cannot pretend to be another, a broadcast
//! flood is capped while the others keep talking, removing a port leaves no interface
//! behind even when its namespace path is gone, and `kill -9` at any moment of attach,
//! detach and network churn leaves nothing inconsistent after a restart.
//!
//! Each test makes its own namespaces and switchd (unique names) and removes them even
//! when it fails.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vlan_host::VlanHost;
use common::{Netns, Switchd};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};
use serde_json::Value;

fn port_of<'a>(stats: &'a Value, ns: &Netns) -> &'a Value {
    stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with(&ns.name))
        .unwrap_or_else(|| panic!("no port of {} in {stats}", ns.name))
}

fn drops(stats: &Value, ns: &Netns, reason: &str) -> u64 {
    port_of(stats, ns)["drops"][reason].as_u64().unwrap_or(0)
}

fn tx(stats: &Value, ns: &Netns) -> u64 {
    port_of(stats, ns)["tx_packets"].as_u64().unwrap()
}

fn mac_of(ip: [u8; 4]) -> [u8; 6] {
    [0x02, 0x42, ip[0], ip[1], ip[2], ip[3]]
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(4000, 4001)
        .write(&mut frame, b"switchyard spoof test")
        .unwrap();
    frame
}

/// A gratuitous ARP reply: "`ip` is at `mac`", sent from `mac`.
fn arp_claim(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &mac,
        &ip,
        &[0xff; 6],
        &ip,
    )
    .unwrap();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(mac, [0xff; 6])
        .arp(packet)
        .write(&mut frame)
        .unwrap();
    frame
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_spoofing_container_reaches_nobody_and_is_counted() {
    let (a, b, c) = (Netns::new("pa"), Netns::new("pb"), Netns::new("pc"));
    let switchd = Switchd::start();
    let (ip_a, ip_b, ip_c) = ([10, 91, 0, 1], [10, 91, 0, 2], [10, 91, 0, 3]);
    for (ns, ip) in [(&a, ip_a), (&b, ip_b), (&c, ip_c)] {
        let cidr = format!("{}/24", Ipv4Addr::from(ip));
        switchd.nsutil_ok(&["attach", &ns.name, "--ip", &cidr, "--vlan", "10"]);
    }
    assert!(a.ping("10.91.0.3", 5), "a reaches c with its own addresses");
    assert!(b.ping("10.91.0.3", 5));
    let before = switchd.swctl_json(&["stats"]);
    let attacker = VlanHost::open(&a.path(), "eth0", mac_of(ip_a));
    for _ in 0..100 {
        // b's MAC; a's own MAC with b's address; and ARP poisoning ("b is at a").
        attacker.send(&udp(mac_of(ip_b), mac_of(ip_c), ip_b, ip_c));
        attacker.send(&udp(mac_of(ip_a), mac_of(ip_c), ip_b, ip_c));
        attacker.send(&arp_claim(mac_of(ip_a), ip_b));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = switchd.swctl_json(&["stats"]);
    assert!(drops(&after, &a, "spoofed_mac") >= 100, "{after}");
    assert!(drops(&after, &a, "spoofed_ip") >= 100, "{after}");
    assert!(drops(&after, &a, "spoofed_arp") >= 100, "{after}");
    // None of the 300 spoofed frames reached c (it sees only a little background noise).
    let to_c = tx(&after, &c) - tx(&before, &c);
    assert!(to_c < 20, "{to_c} frames reached c during the spoofing");
    // c still knows b by b's own MAC: the poisoning did not take.
    let neigh = c.exec_ok(&["ip", "neigh", "show", "10.91.0.2"]);
    assert!(
        !neigh.contains("02:42:0a:5b:00:01"),
        "c was poisoned: {neigh}"
    );
    assert!(c.ping("10.91.0.2", 5), "c still reaches the real b");
    // The spoofed MAC was never learned on a's port.
    let fdb = switchd.swctl_json(&["fdb", "show", "--vlan", "10"]);
    let b_entry = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == "02:42:0a:5b:00:02")
        .unwrap_or_else(|| panic!("b not learned: {fdb}"));
    assert!(
        b_entry["port_name"].as_str().unwrap().starts_with(&b.name),
        "{b_entry}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_broadcast_flood_is_capped_while_the_others_keep_talking() {
    let (a, b, c) = (Netns::new("fa"), Netns::new("fb"), Netns::new("fc"));
    let switchd = Switchd::start();
    let ip_a = [10, 92, 0, 1];
    for (ns, cidr) in [
        (&a, "10.92.0.1/24"),
        (&b, "10.92.0.2/24"),
        (&c, "10.92.0.3/24"),
    ] {
        switchd.nsutil_ok(&["attach", &ns.name, "--ip", cidr, "--vlan", "10"]);
    }
    assert!(b.ping("10.92.0.3", 5));
    let before = switchd.swctl_json(&["stats"]);
    let flood = udp(mac_of(ip_a), [0xff; 6], ip_a, [10, 92, 0, 255]);
    let a_path = a.path();
    let flooder = std::thread::spawn(move || {
        let host = VlanHost::open(&a_path, "eth0", mac_of(ip_a));
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            for _ in 0..64 {
                host.send(&flood);
            }
            sent += 64;
        }
        (sent, start.elapsed())
    });
    // While a floods, b and c keep talking.
    std::thread::sleep(Duration::from_millis(300));
    let pinged = b.exec(&["ping", "-c", "5", "-i", "0.2", "-w", "3", "-q", "10.92.0.3"]);
    let (sent, took) = flooder.join().unwrap();
    assert!(
        pinged.status.success(),
        "b could not reach c during the flood: {}",
        String::from_utf8_lossy(&pinged.stdout)
    );
    std::thread::sleep(Duration::from_millis(200));
    let after = switchd.swctl_json(&["stats"]);
    let capped = drops(&after, &a, "storm_control") - drops(&before, &a, "storm_control");
    let to_c = tx(&after, &c) - tx(&before, &c);
    // The default limit: a burst of 4,000, then 2,000 a second (plus b's pings, ARP).
    let allowed = 4000 + (2000.0 * took.as_secs_f64()).ceil() as u64 + 100;
    assert!(
        sent > allowed * 2,
        "the flood was too small to tell ({sent} frames)"
    );
    assert!(
        to_c <= allowed,
        "{to_c} frames reached c, over the cap {allowed}"
    );
    assert!(capped > 0, "nothing was counted as storm control: {after}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn removing_a_port_leaves_no_interface_even_when_its_path_is_gone() {
    let ns = Netns::new("pg");
    let switchd = Switchd::start();
    // A process in the namespace; the port is attached through its /proc path.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "300"])
        .spawn()
        .unwrap();
    let pid = holder.id();
    // `ip netns exec` execs sleep: the pid is sleep's.
    std::thread::sleep(Duration::from_millis(200));
    let reference = format!("pid:{pid}");
    switchd.nsutil_ok(&[
        "attach",
        &reference,
        "--ip",
        "10.93.0.1/24",
        "--ifname",
        "eth7",
    ]);
    assert!(ns.links().contains(&"eth7".to_string()));
    // The process goes; the namespace lives on through /run/netns.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = switchd.swctl(&["port", "del", &format!("{reference}/eth7")]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        !ns.links().contains(&"eth7".to_string()),
        "the TAP stayed: {:?}",
        ns.links()
    );
}

/// The TAP interfaces in `ns` (what switchd may have made), by name.
fn taps(ns: &Netns) -> BTreeSet<String> {
    let out = ns.exec_ok(&["ip", "-d", "-j", "link", "show"]);
    let links: Value = serde_json::from_str(&out).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == "tun")
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_kill_at_any_moment_leaves_everything_consistent_after_a_restart() {
    let spaces: Vec<Netns> = (0..4).map(|i| Netns::new(&format!("k{i}"))).collect();
    let mut switchd = Switchd::start();
    for round in 0..12u32 {
        // Churn: a network comes and goes, every namespace attaches and detaches, all at
        // once, until switchd dies under it.
        let socket = switchd.socket.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churners: Vec<_> = spaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (socket, ns, stop) = (socket.clone(), ns.name.clone(), stop.clone());
                std::thread::spawn(move || {
                    let run = |program: &str, args: &[&str]| {
                        let _ = Command::new(common::bin(program))
                            .args(args)
                            .env("SWITCHYARD_SOCKET", &socket)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                    };
                    let ip = format!("10.95.{i}.9/24");
                    let mut step = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match (step + i as u32) % 4 {
                            0 if i == 0 => run(
                                "swctl",
                                &[
                                    "network",
                                    "create",
                                    "churn",
                                    "--subnet",
                                    "10.94.0.0/24",
                                    "--internal",
                                ],
                            ),
                            1 => run("nsutil", &["attach", &ns, "--network", "churn"]),
                            2 => run("nsutil", &["attach", &ns, "--ip", &ip, "--ifname", "eth1"]),
                            3 => {
                                run("nsutil", &["detach", &ns, "--ifname", "eth1"]);
                                run("nsutil", &["detach", &ns]);
                                if i == 0 {
                                    run("swctl", &["network", "rm", "churn"]);
                                }
                            }
                            _ => {}
                        }
                        step += 1;
                    }
                })
            })
            .collect();
        // Kill it somewhere in the middle of that.
        std::thread::sleep(Duration::from_millis(50 + u64::from(round) * 53 % 300));
        switchd.crash_and_restart();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for churner in churners {
            churner.join().unwrap();
        }

        // Every port has its interface, every TAP its port, and IPAM agrees.
        let ports = switchd.swctl_json(&["port", "ls"]);
        let ports = ports.as_array().unwrap();
        for port in ports {
            assert_eq!(
                port["state"],
                "up",
                "round {round}: {port}\n{}",
                switchd.log()
            );
        }
        for ns in &spaces {
            let theirs: BTreeSet<String> = ports
                .iter()
                .filter(|p| p["netns"].as_str() == Some(ns.path().as_str()))
                .map(|p| p["ifname"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                taps(ns),
                theirs,
                "round {round}, namespace {}\n{}",
                ns.name,
                switchd.log()
            );
        }
        let networks = switchd.swctl_json(&["network", "ls"]);
        for network in networks.as_array().unwrap() {
            for endpoint in network["endpoints"].as_array().unwrap() {
                assert!(
                    ports.iter().any(|p| p["id"] == endpoint["port"]),
                    "round {round}: an address held for a port that is gone: {endpoint}"
                );
            }
        }
        assert!(switchd.swctl(&["status"]).status.success());
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_address_with_another_prefix_than_the_networks_is_refused() {
    let ns = Netns::new("pp");
    let switchd = Switchd::start();
    let out = switchd.swctl(&[
        "network",
        "create",
        "pfx",
        "--subnet",
        "10.96.0.0/24",
        "--internal",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = switchd.nsutil(&[
        "attach",
        &ns.name,
        "--network",
        "pfx",
        "--ip",
        "10.96.0.50/16",
    ]);
    assert!(!out.status.success(), "a /16 was accepted on a /24 network");
    assert!(
        common::stderr(&out).contains("not /16"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(ns.links(), ["lo"], "nothing was made");
    // The network's own prefix, or none, is fine.
    switchd.nsutil_ok(&[
        "attach",
        &ns.name,
        "--network",
        "pfx",
        "--ip",
        "10.96.0.50/24",
    ]);
}
