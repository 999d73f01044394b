//! Root integration tests of the VXLAN overlay: "host" namespaces joined by a veth
//! underlay (192.0.2.0/24, inside the test's namespaces only), a switchd VTEP in each host
//! namespace, containers attached to each; and the Linux kernel's own VXLAN device as a
//! peer.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use common::{iperf3, stderr, Netns, Switchd};

/// Two host namespaces joined by a veth pair: h1 = 192.0.2.1, h2 = 192.0.2.2.
struct Underlay {
    h1: Netns,
    h2: Netns,
}

impl Underlay {
    /// The same pair, addressed 2001:db8::1 and 2001:db8::2 instead.
    fn new_ipv6() -> Underlay {
        let net = Underlay::new();
        for (ns, dev, addr) in [
            (&net.h1, "u1", "2001:db8::1/64"),
            (&net.h2, "u2", "2001:db8::2/64"),
        ] {
            ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev, "nodad"]);
        }
        net
    }

    fn new() -> Underlay {
        let h1 = Netns::new("h1");
        let h2 = Netns::new("h2");
        common::run_ok(
            "ip",
            &[
                "link", "add", "u1", "netns", &h1.name, "type", "veth", "peer", "name", "u2",
                "netns", &h2.name,
            ],
        );
        for (ns, dev, addr) in [(&h1, "u1", "192.0.2.1/24"), (&h2, "u2", "192.0.2.2/24")] {
            ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev]);
            ns.exec_ok(&["ip", "link", "set", dev, "up"]);
            ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        }
        Underlay { h1, h2 }
    }
}

/// A switchd VTEP in `host` at `addr`, with `maps` (vlan, vni) and `peers`.
fn vtep(host: &Netns, addr: &str, maps: &[(&str, &str)], peers: &[&str]) -> Switchd {
    let switchd = Switchd::start_in(host, &["--vtep", addr]);
    for (vlan, vni) in maps {
        let out = switchd.swctl(&["vxlan", "map", "--vlan", vlan, "--vni", vni]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for peer in peers {
        let out = switchd.swctl(&["vxlan", "peer", "add", peer]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    switchd
}

fn unattributed(switchd: &Switchd, reason: &str) -> u64 {
    switchd.swctl_json(&["stats"])["unattributed_drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root; run by make test"]
fn containers_on_two_hosts_ping_and_carry_tcp() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let s1 = vtep(&net.h1, "192.0.2.1", &[("10", "42")], &["192.0.2.2"]);
    let s2 = vtep(&net.h2, "192.0.2.2", &[("10", "42")], &["192.0.2.1"]);
    s1.nsutil_ok(&[
        "attach",
        &c1.name,
        "--ip",
        "10.81.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &c2.name,
        "--ip",
        "10.81.0.2/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);

    assert!(
        c1.ping("10.81.0.2", 5),
        "no ping across the overlay; h1 log:\n{}",
        s1.log()
    );
    assert!(c2.ping("10.81.0.1", 5));

    // TCP super-frames from the TAP are segmented before encapsulation: a bulk transfer
    // completes in both directions.
    assert!(iperf3(&c1, &c2, "10.81.0.2", 2, &[]) > 0.0);
    assert!(iperf3(&c2, &c1, "10.81.0.1", 2, &[]) > 0.0);

    // Segmented, merged back within and across receives: every byte arrives in order and
    // unchanged (the merged frame's checksum is the receiving kernel's to complete, so a
    // payload put in the wrong place would not be caught by TCP).
    assert_eq!(
        common::tcp_transfer_intact(&c1, &c2, "10.81.0.2", 7001, 64 << 20),
        None,
        "the transfer c1 → c2 arrived damaged at that offset"
    );
    assert_eq!(
        common::tcp_transfer_intact(&c2, &c1, "10.81.0.1", 7002, 16 << 20),
        None,
        "the transfer c2 → c1 arrived damaged at that offset"
    );

    // On receive, segments of one flow were merged back into super-frames: what h2 wrote
    // into c2's TAP averages far more than one 1450-byte packet.
    let stats = s2.swctl_json(&["stats"]);
    let c2_port = stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with(&c2.name))
        .expect("c2's port")
        .clone();
    let average = c2_port["tx_bytes"].as_f64().unwrap() / c2_port["tx_packets"].as_f64().unwrap();
    assert!(
        average > 3000.0,
        "frames into c2 averaged {average:.0} bytes: no coalescing"
    );

    let fdb = s1.swctl_json(&["fdb", "show", "--vlan", "10"]);
    let remote = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == "02:42:0a:51:00:02")
        .unwrap_or_else(|| panic!("c2's MAC not learned on h1: {fdb}"));
    assert_eq!(
        remote["vtep"], "192.0.2.2",
        "learned behind h2's VTEP: {remote}"
    );
    let human = String::from_utf8_lossy(&s1.swctl(&["fdb", "show"]).stdout).into_owned();
    assert!(human.contains("vtep:192.0.2.2"), "{human}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_ipv6_underlay_carries_the_overlay() {
    let net = Underlay::new_ipv6();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let s1 = vtep(
        &net.h1,
        "[2001:db8::1]:4789",
        &[("10", "42")],
        &["2001:db8::2"],
    );
    let s2 = vtep(
        &net.h2,
        "2001:db8::2",
        &[("10", "42")],
        &["[2001:db8::1]:4789"],
    );
    // 70 bytes of encapsulation on IPv6: 1430 inside a 1500 underlay.
    s1.nsutil_ok(&[
        "attach",
        &c1.name,
        "--ip",
        "10.87.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1430",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &c2.name,
        "--ip",
        "10.87.0.2/24",
        "--vlan",
        "10",
        "--mtu",
        "1430",
    ]);
    assert!(
        c1.ping("10.87.0.2", 5),
        "no ping over IPv6; log:\n{}",
        s1.log()
    );
    assert!(iperf3(&c1, &c2, "10.87.0.2", 2, &[]) > 0.0);
    let peers = s1.swctl_json(&["vxlan", "peer", "ls"]);
    assert_eq!(peers[0]["addr"], "[2001:db8::2]:4789", "{peers}");
    assert_eq!(peers[0]["inner_mtu"], 1430, "{peers}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn vnis_keep_vlans_apart_across_hosts() {
    let net = Underlay::new();
    let (red1, green1, red2, green2) = (
        Netns::new("r1"),
        Netns::new("g1"),
        Netns::new("r2"),
        Netns::new("g2"),
    );
    let maps = [("10", "42"), ("20", "43")];
    let s1 = vtep(&net.h1, "192.0.2.1", &maps, &["192.0.2.2"]);
    let s2 = vtep(&net.h2, "192.0.2.2", &maps, &["192.0.2.1"]);
    // One subnet for all four: only the VNIs keep them apart.
    s1.nsutil_ok(&[
        "attach",
        &red1.name,
        "--ip",
        "10.82.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    s1.nsutil_ok(&[
        "attach",
        &green1.name,
        "--ip",
        "10.82.0.3/24",
        "--vlan",
        "20",
        "--mtu",
        "1450",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &red2.name,
        "--ip",
        "10.82.0.2/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &green2.name,
        "--ip",
        "10.82.0.4/24",
        "--vlan",
        "20",
        "--mtu",
        "1450",
    ]);

    assert!(red1.ping("10.82.0.2", 5), "VNI 42 connects");
    assert!(green1.ping("10.82.0.4", 5), "VNI 43 connects");
    assert!(!red1.ping("10.82.0.4", 2), "VNI 42 reached VNI 43");
    assert!(!green2.ping("10.82.0.1", 2), "VNI 43 reached VNI 42");
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_vtep_that_is_not_a_peer_reaches_nobody() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    // h2 thinks h1 is its peer; h1 never added h2.
    let s1 = vtep(&net.h1, "192.0.2.1", &[("10", "42")], &[]);
    let s2 = vtep(&net.h2, "192.0.2.2", &[("10", "42")], &["192.0.2.1"]);
    s1.nsutil_ok(&[
        "attach",
        &c1.name,
        "--ip",
        "10.83.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &c2.name,
        "--ip",
        "10.83.0.2/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);

    assert!(!c2.ping("10.83.0.1", 2), "a stranger VTEP got through");
    assert!(
        unattributed(&s1, "unknown_vtep") > 0,
        "h1 did not count the stranger's datagrams"
    );
    let fdb = s1.swctl_json(&["fdb", "show"]);
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .all(|e| e["mac"] != "02:42:0a:53:00:02"),
        "learned from a stranger: {fdb}"
    );

    // Once h1 adds h2, they talk.
    let out = s1.swctl(&["vxlan", "peer", "add", "192.0.2.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(c2.ping("10.83.0.1", 5));
}

/// switchd on h1 and the kernel's VXLAN device (bridged to a veth) on h2, on `port`.
fn interoperates_with_kernel_vxlan(port: &str) {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let s1 = vtep(
        &net.h1,
        &format!("192.0.2.1:{port}"),
        &[("10", "42")],
        &["192.0.2.2"],
    );
    s1.nsutil_ok(&[
        "attach",
        &c1.name,
        "--ip",
        "10.84.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);

    let h2 = &net.h2;
    h2.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
    h2.exec_ok(&[
        "ip",
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        port,
        "local",
        "192.0.2.2",
        "remote",
        "192.0.2.1",
    ]);
    h2.exec_ok(&["ip", "link", "set", "vx0", "master", "br0"]);
    common::run_ok(
        "ip",
        &[
            "link", "add", "eth0", "netns", &c2.name, "mtu", "1450", "type", "veth", "peer",
            "name", "p2", "netns", &h2.name, "mtu", "1450",
        ],
    );
    h2.exec_ok(&["ip", "link", "set", "p2", "master", "br0"]);
    for dev in ["br0", "vx0", "p2"] {
        h2.exec_ok(&["ip", "link", "set", dev, "up"]);
    }
    c2.exec_ok(&["ip", "addr", "add", "10.84.0.2/24", "dev", "eth0"]);
    c2.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    c2.exec_ok(&["ip", "link", "set", "lo", "up"]);

    // ARP is flooded both ways, then unicast.
    assert!(
        c1.ping("10.84.0.2", 5),
        "switchd -> kernel VXLAN failed; log:\n{}",
        s1.log()
    );
    assert!(c2.ping("10.84.0.1", 5), "kernel VXLAN -> switchd failed");
    assert!(
        iperf3(&c1, &c2, "10.84.0.2", 2, &[]) > 0.0,
        "TCP switchd -> kernel"
    );
    assert!(
        iperf3(&c2, &c1, "10.84.0.1", 2, &[]) > 0.0,
        "TCP kernel -> switchd"
    );
    // What the kernel segmented, switchd merges: the bytes arrive intact both ways.
    assert_eq!(
        common::tcp_transfer_intact(&c2, &c1, "10.84.0.1", 7003, 16 << 20),
        None,
        "kernel -> switchd: damaged at that offset"
    );
    assert_eq!(
        common::tcp_transfer_intact(&c1, &c2, "10.84.0.2", 7004, 16 << 20),
        None,
        "switchd -> kernel: damaged at that offset"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn interoperates_with_the_kernels_vxlan_on_4789() {
    interoperates_with_kernel_vxlan("4789");
}

#[test]
#[ignore = "needs root; run by make test"]
fn interoperates_with_the_kernels_vxlan_on_the_legacy_port_8472() {
    interoperates_with_kernel_vxlan("8472");
}

#[test]
#[ignore = "needs root; run by make test"]
fn too_big_for_the_overlay_is_answered_with_frag_needed() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let s1 = vtep(&net.h1, "192.0.2.1", &[("10", "42")], &["192.0.2.2"]);
    let s2 = vtep(&net.h2, "192.0.2.2", &[("10", "42")], &["192.0.2.1"]);
    // MTU 1500 inside, 1500 underlay: full-size packets cannot be encapsulated.
    s1.nsutil_ok(&["attach", &c1.name, "--ip", "10.85.0.1/24", "--vlan", "10"]);
    s2.nsutil_ok(&["attach", &c2.name, "--ip", "10.85.0.2/24", "--vlan", "10"]);
    assert!(c1.ping("10.85.0.2", 5));

    let out = c1.exec(&[
        "ping",
        "-c",
        "2",
        "-i",
        "0.3",
        "-W",
        "1",
        "-M",
        "do",
        "-s",
        "1472",
        "10.85.0.2",
    ]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        !out.status.success(),
        "a 1500-byte packet crossed a 1500-byte underlay: {text}"
    );
    assert!(
        text.contains("1450"),
        "the sender was not told the overlay MTU: {text}"
    );
    let info = s1.swctl_json(&["vxlan", "show"]);
    assert!(
        info["icmp_frag_needed_sent"].as_u64().unwrap() > 0,
        "{info}"
    );

    // What fits still goes.
    assert!(c1
        .exec(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1422",
            "10.85.0.2"
        ])
        .status
        .success());
}

#[test]
#[ignore = "needs root; run by make test"]
fn the_overlay_survives_a_restart() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let mut s1 = vtep(&net.h1, "192.0.2.1", &[("10", "42")], &["192.0.2.2"]);
    let s2 = vtep(&net.h2, "192.0.2.2", &[("10", "42")], &["192.0.2.1"]);
    s1.nsutil_ok(&[
        "attach",
        &c1.name,
        "--ip",
        "10.86.0.1/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    s2.nsutil_ok(&[
        "attach",
        &c2.name,
        "--ip",
        "10.86.0.2/24",
        "--vlan",
        "10",
        "--mtu",
        "1450",
    ]);
    let out = s1.swctl(&[
        "fdb",
        "add",
        "02:42:0a:56:00:02",
        "--vlan",
        "10",
        "--vtep",
        "192.0.2.2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    s1.restart();
    let info = s1.swctl_json(&["vxlan", "show"]);
    assert_eq!(info["map"][0]["vni"], 42, "{info}");
    assert_eq!(info["peers"][0]["addr"], "192.0.2.2:4789", "{info}");
    let fdb = s1.swctl_json(&["fdb", "show"]);
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["static"] == true && e["vtep"] == "192.0.2.2"),
        "{fdb}"
    );
    assert!(c1.ping("10.86.0.2", 5));
}

/// Only one switchd may own a VTEP address and port in a network namespace: a second one
/// on the same `--vtep` would share the UDP port (SO_REUSEPORT) and quietly take half of
/// the first one's overlay traffic.
#[test]
#[ignore = "needs root; run by make test"]
fn a_second_switchd_on_the_same_vtep_refuses_to_start() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let s1 = vtep(&net.h1, "192.0.2.1", &[("10", "42")], &["192.0.2.2"]);
    let s2 = vtep(&net.h2, "192.0.2.2", &[("10", "42")], &["192.0.2.1"]);
    for (switchd, c, ip) in [(&s1, &c1, "10.86.0.1/24"), (&s2, &c2, "10.86.0.2/24")] {
        switchd.nsutil_ok(&[
            "attach", &c.name, "--ip", ip, "--vlan", "10", "--mtu", "1450",
        ]);
    }
    assert!(c1.ping("10.86.0.2", 5), "h1 log:\n{}", s1.log());

    for vtep in ["192.0.2.1", "192.0.2.1:4789"] {
        let out = common::switchd_refusing(&net.h1, &["--vtep", vtep]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        let expected = format!(
            "VTEP 192.0.2.1:4789 is already used by another switchd (pid {})",
            s1.pid().unwrap()
        );
        assert!(
            said.contains(&expected),
            "expected {expected:?} in {said:?}"
        );
        assert!(said.contains("--vtep"), "it says what to do: {said}");
        assert_eq!(said.lines().count(), 1, "one line: {said}");
    }

    // The first one still owns the overlay, every flow of it.
    assert_eq!(s1.swctl_json(&["vxlan", "show"])["local"], "192.0.2.1:4789");
    for _ in 0..3 {
        assert!(c1.ping("10.86.0.2", 5), "h1 log:\n{}", s1.log());
        assert!(c2.ping("10.86.0.1", 5), "h1 log:\n{}", s1.log());
    }

    // Another port of the same address is another VTEP.
    let mut other = Switchd::start_in(&net.h1, &["--vtep", "192.0.2.1:8472"]);
    assert!(other.stop().unwrap().success());

    // Names are per network namespace: the same address in another namespace is free.
    let h3 = Netns::new("h3");
    h3.exec_ok(&[
        "ip", "link", "add", "u3", "type", "veth", "peer", "name", "u4",
    ]);
    h3.exec_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "u3"]);
    h3.exec_ok(&["ip", "link", "set", "u3", "up"]);
    let mut elsewhere = Switchd::start_in(&h3, &["--vtep", "192.0.2.1"]);
    assert!(elsewhere.stop().unwrap().success());
}

/// A program other than switchd on the VTEP's UDP port, even one that shares it with
/// SO_REUSEPORT, is refused too.
#[test]
#[ignore = "needs root; run by make test"]
fn a_vtep_port_another_program_holds_is_refused() {
    use std::os::fd::AsRawFd;
    let net = Underlay::new();
    let holder = common::in_netns(&net.h1, || {
        use nix::sys::socket::{
            bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        setsockopt(&fd, sockopt::ReusePort, &true).expect("SO_REUSEPORT");
        bind(fd.as_raw_fd(), &SockaddrIn::new(192, 0, 2, 1, 4789)).expect("bind 192.0.2.1:4789");
        fd
    })
    .join()
    .expect("the holding thread");
    let out = common::switchd_refusing(&net.h1, &["--vtep", "192.0.2.1"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("192.0.2.1:4789")
            && said.contains("already in use")
            && said.contains("--vtep"),
        "{said}"
    );
    drop(holder);
    let mut free = Switchd::start_in(&net.h1, &["--vtep", "192.0.2.1"]);
    assert!(free.stop().unwrap().success());
}

/// `swctl vxlan enable`: two switchds started without `--vtep` become VTEPs while they
/// run and carry a VLAN between their containers; the VTEP is remembered, so a restart
/// without `--vtep` has it again. An address that is not the host's, a second enable, and
/// a VTEP another switchd owns are refused, and change nothing.
#[test]
#[ignore = "needs root; run by make test"]
fn a_vtep_enabled_at_run_time_carries_the_overlay_and_survives_a_restart() {
    let net = Underlay::new();
    let c1 = Netns::new("c1");
    let c2 = Netns::new("c2");
    let mut s1 = Switchd::start_in(&net.h1, &[]);
    let s2 = Switchd::start_in(&net.h2, &[]);

    // No overlay yet, and the refusal says how to have one.
    let out = s1.swctl(&["vxlan", "map", "--vlan", "10", "--vni", "42"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("swctl vxlan enable --vtep"),
        "{}",
        stderr(&out)
    );
    // Not an address of this host: refused, in one line, and nothing changed.
    let out = s1.swctl(&["vxlan", "enable", "--vtep", "198.51.100.7"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("198.51.100.7") && said.contains("not an address of this host"),
        "{said}"
    );
    assert_eq!(said.trim_end().lines().count(), 1, "one line: {said}");
    let out = s1.swctl(&["vxlan", "enable", "--vtep", "not-an-address"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid VTEP"), "{}", stderr(&out));
    assert_eq!(s1.swctl(&["vxlan", "show"]).status.code(), Some(1));

    // Enabled on each, with nothing restarted.
    let out = s1.swctl(&["vxlan", "enable", "--vtep", "192.0.2.1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "VXLAN enabled: VTEP 192.0.2.1:4789\n"
    );
    let info = s2.swctl_json(&["vxlan", "enable", "--vtep", "192.0.2.2:4789"]);
    assert_eq!(info["local"], "192.0.2.2:4789", "{info}");
    for (switchd, peer) in [(&s1, "192.0.2.2"), (&s2, "192.0.2.1")] {
        for args in [
            &["vxlan", "map", "--vlan", "10", "--vni", "42"][..],
            &["vxlan", "peer", "add", peer][..],
        ] {
            let out = switchd.swctl(args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
    }
    for (switchd, c, ip) in [(&s1, &c1, "10.88.0.1/24"), (&s2, &c2, "10.88.0.2/24")] {
        switchd.nsutil_ok(&[
            "attach", &c.name, "--ip", ip, "--vlan", "10", "--mtu", "1450",
        ]);
    }
    assert!(
        c1.ping("10.88.0.2", 5),
        "no ping across a VTEP enabled at run time; h1 log:\n{}",
        s1.log()
    );
    assert!(c2.ping("10.88.0.1", 5), "h2 log:\n{}", s2.log());

    // Once a VTEP, always that one while running.
    let out = s1.swctl(&["vxlan", "enable", "--vtep", "192.0.2.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already a VTEP at 192.0.2.1:4789"),
        "{}",
        stderr(&out)
    );
    // Another switchd in h1 cannot take it either.
    let s3 = Switchd::start_in(&net.h1, &[]);
    let out = s3.swctl(&["vxlan", "enable", "--vtep", "192.0.2.1"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let expected = format!(
        "VTEP 192.0.2.1:4789 is already used by another switchd (pid {})",
        s1.pid().unwrap()
    );
    assert!(
        said.contains(&expected),
        "expected {expected:?} in {said:?}"
    );
    assert_eq!(s3.swctl(&["vxlan", "show"]).status.code(), Some(1));
    drop(s3);
    assert!(c1.ping("10.88.0.2", 5), "h1 log:\n{}", s1.log());

    // A restart without --vtep: the VTEP comes back from the state directory.
    s1.restart();
    let info = s1.swctl_json(&["vxlan", "show"]);
    assert_eq!(info["local"], "192.0.2.1:4789", "{info}");
    assert_eq!(info["map"][0]["vni"], 42, "{info}");
    assert_eq!(info["peers"][0]["addr"], "192.0.2.2:4789", "{info}");
    assert!(
        s1.log().contains("as the state directory remembers it"),
        "{}",
        s1.log()
    );
    assert!(
        c1.ping("10.88.0.2", 5),
        "no ping after the restart; h1 log:\n{}",
        s1.log()
    );
    assert!(c2.ping("10.88.0.1", 5), "h2 log:\n{}", s2.log());
}
