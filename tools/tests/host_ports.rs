//! Root integration tests of host ports, internal ports and LAN networks (issue 17).
//!
//! A veth pair plays the host's NIC: `nic0` in a "host" namespace, where switchd runs,
//! becomes a host port; its other end, `lan0`, is in a "LAN" namespace, enslaved to a
//! Linux bridge `br0` there. The bridge carries the LAN's router, 192.168.77.1 (on
//! `br0`), with a network beyond it (198.51.100.1, on the LAN namespace's `lo`, reached
//! only through the router), and the LAN's hosts: namespaces with a veth into `br0`
//! (192.168.77.11, or VLAN-aware hosts that speak tagged frames over AF_PACKET: this
//! kernel has no 802.1Q devices, see `common::vlan_host`; a Linux bridge without VLAN
//! filtering passes tagged frames as they are, as an upstream switch's trunk would).
//!
//! Everything lives in namespaces the tests create and remove, even on failure.
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;
#[path = "common/vlan_responder.rs"]
mod vlan_responder;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::vlan_host::VlanHost;
use common::{iperf3, run_ok, stderr, Netns, Switchd};
use serde_json::Value;
use vlan_responder::VlanResponder;

const ROUTER: &str = "192.168.77.1";
const LAN_HOST: &str = "192.168.77.11";
/// An address beyond the LAN's router: reachable only by a default route through it.
const BEYOND: &str = "198.51.100.1";

/// The LAN, the host with switchd, and the veth between them.
struct Lan {
    /// switchd's namespace.
    host: Netns,
    /// Where `nic0` is: the host namespace, or, for `--netns`, a namespace of its own.
    nic_ns: Option<Netns>,
    /// The LAN: `br0` with `lan0`, the router's address, [`BEYOND`] on `lo`.
    lan: Netns,
    /// A host on the LAN, [`LAN_HOST`].
    lan_host: Netns,
    switchd: Switchd,
    mtu: u32,
}

impl Lan {
    /// `nic0` in the host namespace, MTU 1500.
    fn new() -> Lan {
        Lan::build(1500, false)
    }

    /// The NIC (both veth ends) with `mtu`; in a namespace of its own when `apart`.
    fn build(mtu: u32, apart: bool) -> Lan {
        let host = Netns::new("h");
        let nic_ns = apart.then(|| Netns::new("e"));
        let lan = Netns::new("l");
        let lan_host = Netns::new("lh");
        for ns in [&host, &lan, &lan_host].into_iter().chain(nic_ns.as_ref()) {
            ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        }
        lan.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        lan.exec_ok(&["ip", "addr", "add", &format!("{ROUTER}/24"), "dev", "br0"]);
        lan.exec_ok(&["ip", "addr", "add", &format!("{BEYOND}/32"), "dev", "lo"]);
        lan.exec_ok(&["ip", "link", "set", "br0", "up"]);
        let site = Lan {
            switchd: Switchd::start_in(&host, &[]),
            host,
            nic_ns,
            lan,
            lan_host,
            mtu,
        };
        site.plug_nic();
        site.lan_host_on(&site.lan_host, "192.168.77.11/24");
        site.lan_host
            .exec_ok(&["ip", "route", "add", "default", "via", ROUTER]);
        site
    }

    /// The namespace `nic0` is in.
    fn nic_netns(&self) -> &Netns {
        self.nic_ns.as_ref().unwrap_or(&self.host)
    }

    /// Creates the veth pair that plays the NIC, `lan0` in the LAN's bridge, both up.
    fn plug_nic(&self) {
        let mtu = self.mtu.to_string();
        run_ok(
            "ip",
            &[
                "link",
                "add",
                "nic0",
                "netns",
                &self.nic_netns().name,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                "lan0",
                "netns",
                &self.lan.name,
                "mtu",
                &mtu,
            ],
        );
        self.lan
            .exec_ok(&["ip", "link", "set", "lan0", "master", "br0"]);
        self.lan.exec_ok(&["ip", "link", "set", "lan0", "up"]);
        self.nic_netns()
            .exec_ok(&["ip", "link", "set", "nic0", "up"]);
    }

    /// A veth from `eth0` in `ns` into the LAN's bridge; `eth0` gets `cidr` when given.
    fn lan_host_on(&self, ns: &Netns, cidr: &str) {
        let port = common::unique("p");
        let mtu = self.mtu.to_string();
        run_ok(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "netns",
                &ns.name,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.lan.name,
                "mtu",
                &mtu,
            ],
        );
        self.lan
            .exec_ok(&["ip", "link", "set", &port, "master", "br0"]);
        self.lan.exec_ok(&["ip", "link", "set", &port, "up"]);
        if !cidr.is_empty() {
            ns.exec_ok(&["ip", "addr", "add", cidr, "dev", "eth0"]);
        }
        ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    }

    /// A new namespace on the LAN with no address (a VLAN-aware host's).
    fn member(&self, tag: &str) -> Netns {
        let ns = Netns::new(tag);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        self.lan_host_on(&ns, "");
        ns
    }

    fn swctl_ok(&self, args: &[&str]) -> String {
        let out = self.switchd.swctl(args);
        assert!(
            out.status.success(),
            "swctl {args:?} failed: {}\nswitchd log:\n{}",
            stderr(&out),
            common::tail(&self.switchd.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `swctl port add nic0 ARGS...`, in `nic0`'s namespace.
    fn add_nic(&self, args: &[&str]) {
        let mut full = vec!["port", "add", "nic0"];
        if let Some(ns) = &self.nic_ns {
            full.extend(["--netns", ns.name.as_str()]);
        }
        full.extend_from_slice(args);
        self.swctl_ok(&full);
    }

    /// A LAN network on `nic0`'s port: `--parent` (the port's name) plus `args`.
    fn network(&self, name: &str, args: &[&str]) {
        let port = self.port("nic0").expect("nic0 is a port");
        let parent = port["name"].as_str().expect("the port's name").to_string();
        let mut full = vec!["network", "create", name, "--parent", &parent];
        full.extend_from_slice(args);
        self.swctl_ok(&full);
    }

    /// The plain LAN network on an access host port: 192.168.77.0/24, the LAN's router.
    fn plain_lan(&self) {
        self.add_nic(&[]);
        self.network("lan", &["--subnet", "192.168.77.0/24", "--gateway", ROUTER]);
    }

    /// Attaches a new namespace to `network`; it and the address IPAM gave it.
    fn container(&self, tag: &str, network: &str) -> (Netns, String) {
        let ns = Netns::new(tag);
        let out = self
            .switchd
            .nsutil_ok(&["attach", &ns.name, "--network", network, "--json"]);
        let attached: Value = serde_json::from_str(&out).expect("nsutil --json prints JSON");
        let cidr = attached["addresses"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no address assigned: {attached}"));
        let ip = cidr.split('/').next().unwrap().to_string();
        (ns, ip)
    }

    fn ports(&self) -> Value {
        self.switchd.swctl_json(&["port", "ls"])
    }

    /// The port whose interface is `ifname` (a host or internal port), if any.
    fn port(&self, ifname: &str) -> Option<Value> {
        self.ports()
            .as_array()
            .expect("port list")
            .iter()
            .find(|p| p["ifname"] == ifname && p["kind"] != "tap")
            .cloned()
    }

    /// Waits up to `secs` seconds for `nic0`'s port to be up (`up`) or not; the port.
    fn wait_port(&self, up: bool, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let port = self.port("nic0").expect("nic0 is still a port");
            if (port["state"] == "up") == up {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "nic0's port did not go {} within {secs} s: {port}\nswitchd log:\n{}",
                if up { "up" } else { "down" },
                common::tail(&self.switchd.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host port's counters from `swctl --json stats`.
    fn host_port_counters(&self) -> Value {
        let id = self.port("nic0").expect("nic0's port")["id"].clone();
        let stats = self.switchd.swctl_json(&["stats"]);
        stats["ports"]
            .as_array()
            .expect("ports in stats")
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("nic0's port not in stats: {stats}"))
    }
}

/// How much counter `key` of a port's `swctl --json stats` grew from `before` to `after`.
fn grew(before: &Value, after: &Value, key: &str) -> u64 {
    after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0)
}

/// `ip -d link show IFNAME` in `ns`: its promiscuity count.
fn promiscuity(ns: &Netns, ifname: &str) -> u32 {
    let out = ns.exec_ok(&["ip", "-d", "link", "show", ifname]);
    let after = out
        .split("promiscuity ")
        .nth(1)
        .unwrap_or_else(|| panic!("no promiscuity in: {out}"));
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad promiscuity in: {out}"))
}

/// Whether `ns` reaches `addr` within `secs` seconds (one ping a second).
fn reaches(ns: &Netns, addr: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if ns.ping(addr, 1) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

fn mac_of(ns: &Netns, ifname: &str) -> String {
    ns.exec_ok(&["cat", &format!("/sys/class/net/{ifname}/address")])
        .trim()
        .to_string()
}

fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn lan_containers_get_lan_addresses_and_reach_the_lan_and_its_router() {
    let site = Lan::build(1400, false);
    site.add_nic(&[]);
    let port = site.port("nic0").expect("nic0 became a port");
    assert_eq!(port["kind"], "host", "{port}");
    assert_eq!(port["state"], "up", "{port}");
    let human = site.swctl_ok(&["port", "ls"]);
    assert!(human.contains("KIND"), "{human}");
    assert!(
        human
            .lines()
            .any(|l| l.contains("nic0") && l.split_whitespace().any(|w| w == "host")),
        "{human}"
    );

    // IPAM hands out addresses from the range only, never the aux addresses.
    site.network(
        "lan",
        &[
            "--subnet",
            "192.168.77.0/24",
            "--gateway",
            ROUTER,
            "--ip-range",
            "192.168.77.128/29",
            "--aux-address",
            "192.168.77.129",
            "--aux-address",
            "192.168.77.130",
        ],
    );
    let network = site.switchd.swctl_json(&["network", "inspect", "lan"]);
    assert_eq!(network["gateway"], ROUTER, "{network}");
    assert_eq!(
        network["mtu"], 1400,
        "endpoints get the parent's MTU: {network}"
    );
    let (a, a_ip) = site.container("a", "lan");
    let (b, b_ip) = site.container("b", "lan");
    for ip in [&a_ip, &b_ip] {
        let last: u8 = ip.parse::<Ipv4Addr>().unwrap().octets()[3];
        assert!((128..136).contains(&last), "{ip} is outside --ip-range");
        assert!(![129, 130].contains(&last), "{ip} is an --aux-address");
    }
    assert_ne!(a_ip, b_ip);

    // The LAN's router is the default route, and the parent's MTU the container's.
    let route = a.exec_ok(&["ip", "route", "show", "default"]);
    assert!(route.contains(&format!("via {ROUTER} dev eth0")), "{route}");
    let link = a.exec_ok(&["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400"), "{link}");

    assert!(
        reaches(&a, LAN_HOST, 5),
        "a cannot reach the LAN host; log:\n{}",
        common::tail(&site.switchd.log(), 40)
    );
    assert!(reaches(&a, ROUTER, 5), "a cannot reach the LAN's router");
    assert!(
        reaches(&a, BEYOND, 5),
        "a cannot reach past the LAN's router"
    );
    assert!(reaches(&a, &b_ip, 5), "a cannot reach b");
    assert!(
        reaches(&site.lan_host, &a_ip, 5),
        "the LAN host cannot reach a"
    );
    assert!(reaches(&b, LAN_HOST, 5));

    // The gateway's MAC is the LAN router's: switchd's router did not answer for it.
    let neighbours = a.exec_ok(&["ip", "neigh", "show", ROUTER]);
    let router_mac = mac_of(&site.lan, "br0");
    assert!(
        neighbours.contains(&router_mac),
        "the gateway {ROUTER} resolved to something other than the LAN's router \
         ({router_mac}): {neighbours}"
    );

    // TCP crosses the host port as super-frames, both ways.
    let before = site.host_port_counters();
    let bps = iperf3(&a, &site.lan_host, LAN_HOST, 2, &[]);
    assert!(bps > 0.0);
    let after = site.host_port_counters();
    let tx_avg = grew(&before, &after, "tx_bytes") as f64
        / grew(&before, &after, "tx_packets").max(1) as f64;
    assert!(
        tx_avg > 4000.0,
        "the host port sent {tx_avg:.0} bytes per frame to the LAN: no super-frames"
    );
    let before = site.host_port_counters();
    let bps = iperf3(&a, &site.lan_host, LAN_HOST, 2, &["-R"]);
    assert!(bps > 0.0);
    let after = site.host_port_counters();
    let rx_avg = grew(&before, &after, "rx_bytes") as f64
        / grew(&before, &after, "rx_packets").max(1) as f64;
    assert!(
        rx_avg > 4000.0,
        "the host port read {rx_avg:.0} bytes per frame from the LAN: no super-frames"
    );
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn vlans_trunked_over_the_host_port_reach_vlan_aware_lan_hosts_and_stay_apart() {
    let site = Lan::new();
    let t10 = site.member("t");
    let t20 = site.member("u");
    site.add_nic(&["--trunk", "10,20"]);
    site.network(
        "lan10",
        &[
            "--vlan",
            "10",
            "--subnet",
            "192.168.10.0/24",
            "--gateway",
            "192.168.10.1",
        ],
    );
    site.network(
        "lan20",
        &[
            "--vlan",
            "20",
            "--subnet",
            "192.168.20.0/24",
            "--gateway",
            "192.168.20.1",
        ],
    );
    let lan10 = site.switchd.swctl_json(&["network", "inspect", "lan10"]);
    assert_eq!(lan10["vlan"], 10, "{lan10}");
    let (c10, c10_ip) = site.container("a", "lan10");
    let (c20, c20_ip) = site.container("b", "lan20");
    assert!(c10_ip.starts_with("192.168.10."), "{c10_ip}");
    assert!(c20_ip.starts_with("192.168.20."), "{c20_ip}");
    let route = c20.exec_ok(&["ip", "route", "show", "default"]);
    assert!(route.contains("via 192.168.20.1 dev eth0"), "{route}");

    let h10 = VlanHost::open(&t10.path(), "eth0", [0x02, 0, 0, 0, 10, 11]);
    let h20 = VlanHost::open(&t20.path(), "eth0", [0x02, 0, 0, 0, 20, 11]);
    let (h10_ip, h20_ip): (Ipv4Addr, Ipv4Addr) = (
        "192.168.10.11".parse().unwrap(),
        "192.168.20.11".parse().unwrap(),
    );
    let (c10_addr, c20_addr): (Ipv4Addr, Ipv4Addr) =
        (c10_ip.parse().unwrap(), c20_ip.parse().unwrap());

    // Each VLAN-aware host reaches its VLAN's container, tagged both ways.
    let mac10 = h10.arp(10, h10_ip, c10_addr).unwrap_or_else(|| {
        panic!(
            "c10 did not answer ARP tagged 10; log:\n{}",
            common::tail(&site.switchd.log(), 40)
        )
    });
    assert_eq!(mac10, parse_mac(&mac_of(&c10, "eth0")));
    assert!(
        h10.ping(10, mac10, h10_ip, c10_addr),
        "no echo reply on VLAN 10"
    );
    let mac20 = h20
        .arp(20, h20_ip, c20_addr)
        .expect("c20 answers ARP tagged 20");
    assert_eq!(mac20, parse_mac(&mac_of(&c20, "eth0")));
    assert!(
        h20.ping(20, mac20, h20_ip, c20_addr),
        "no echo reply on VLAN 20"
    );

    // And each container reaches its VLAN's LAN host, which answers tagged.
    let _r10 = VlanResponder::start(&t10.path(), "eth0", [0x02, 0, 0, 0, 10, 11], 10, h10_ip);
    let _r20 = VlanResponder::start(&t20.path(), "eth0", [0x02, 0, 0, 0, 20, 11], 20, h20_ip);
    assert!(
        reaches(&c10, "192.168.10.11", 5),
        "c10 cannot reach the LAN host on VLAN 10"
    );
    assert!(
        reaches(&c20, "192.168.20.11", 5),
        "c20 cannot reach the LAN host on VLAN 20"
    );

    // Asked on the other VLAN, nobody answers.
    assert_eq!(h10.arp(10, h10_ip, c20_addr), None, "VLAN 10 reached c20");
    assert_eq!(h20.arp(20, h20_ip, c10_addr), None, "VLAN 20 reached c10");

    // Inside switchd: c10, told that VLAN 20's subnet is on its own link, still cannot
    // reach c20 (its ARP stays on VLAN 10).
    c10.exec_ok(&["ip", "route", "add", "192.168.20.0/24", "dev", "eth0"]);
    assert!(
        !c10.ping(&c20_ip, 2),
        "a container on VLAN 10 reached VLAN 20"
    );
    c20.exec_ok(&["ip", "route", "add", "192.168.10.0/24", "dev", "eth0"]);
    assert!(
        !c20.ping(&c10_ip, 2),
        "a container on VLAN 20 reached VLAN 10"
    );
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn a_host_port_follows_its_interface_down_up_gone_and_back() {
    let site = Lan::new();
    site.plain_lan();
    let (a, _) = site.container("a", "lan");
    assert!(reaches(&a, LAN_HOST, 5), "a cannot reach the LAN host");

    site.host.exec_ok(&["ip", "link", "set", "nic0", "down"]);
    site.wait_port(false, 5);
    assert!(!a.ping(LAN_HOST, 1), "traffic crossed a port that is down");
    site.host.exec_ok(&["ip", "link", "set", "nic0", "up"]);
    site.wait_port(true, 5);
    assert!(
        reaches(&a, LAN_HOST, 10),
        "traffic did not return after link up"
    );

    // Gone: the port stays, down; the interface comes back under the same name.
    site.host.exec_ok(&["ip", "link", "del", "nic0"]);
    let port = site.wait_port(false, 5);
    assert_eq!(port["kind"], "host", "{port}");
    assert!(!a.ping(LAN_HOST, 1));
    site.plug_nic();
    site.wait_port(true, 5);
    assert!(
        reaches(&a, LAN_HOST, 10),
        "traffic did not return after nic0 came back; log:\n{}",
        common::tail(&site.switchd.log(), 40)
    );
    assert_eq!(
        promiscuity(&site.host, "nic0"),
        1,
        "the new nic0 is not promiscuous"
    );
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn a_restart_reattaches_the_host_port() {
    let mut site = Lan::new();
    site.plain_lan();
    let (a, _) = site.container("a", "lan");
    assert!(reaches(&a, LAN_HOST, 5));
    let before = site.port("nic0").expect("nic0's port");

    site.switchd.restart();
    let after = site.wait_port(true, 5);
    assert_eq!(after["kind"], "host", "{after}");
    assert_eq!(after["name"], before["name"]);
    assert_eq!(after["mode"], before["mode"]);
    assert!(
        reaches(&a, LAN_HOST, 5),
        "no traffic after a restart; log:\n{}",
        common::tail(&site.switchd.log(), 40)
    );
    assert_eq!(promiscuity(&site.host, "nic0"), 1);

    site.switchd.crash_and_restart();
    site.wait_port(true, 5);
    assert!(
        reaches(&a, LAN_HOST, 5),
        "no traffic after a crash and restart"
    );
    let network = site.switchd.swctl_json(&["network", "inspect", "lan"]);
    assert_eq!(network["gateway"], ROUTER, "{network}");
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn bad_host_ports_are_refused_and_change_nothing() {
    let site = Lan::new();
    site.add_nic(&[]);
    let host = &site.host;
    // An interface in a Linux bridge.
    host.exec_ok(&["ip", "link", "add", "brx", "type", "bridge"]);
    host.exec_ok(&[
        "ip", "link", "add", "bx0", "type", "veth", "peer", "name", "bx1",
    ]);
    host.exec_ok(&["ip", "link", "set", "bx0", "master", "brx"]);
    // A spare interface, for a VLAN a network already has.
    host.exec_ok(&[
        "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
    ]);
    // A routed network: switchd's uplink TUN appears, and the network holds a VLAN.
    site.swctl_ok(&["network", "create", "blue", "--subnet", "10.10.0.0/24"]);
    assert!(
        host.links().iter().any(|l| l == "switchyard0"),
        "{:?}",
        host.links()
    );
    let blue = site.switchd.swctl_json(&["network", "inspect", "blue"]);
    let vlan = blue["vlan"].as_u64().expect("blue's VLAN").to_string();

    let ports = site.ports();
    let promisc = |ifname: &str| promiscuity(host, ifname);
    let (bx0, spare0) = (promisc("bx0"), promisc("spare0"));
    let cases: [(&[&str], &str); 6] = [
        (&["port", "add", "nope0"], "nope0"),
        (&["port", "add", "nic0"], "nic0"),
        (&["port", "add", "bx0"], "bx0"),
        (&["port", "add", "switchyard0"], "switchyard0"),
        (&["port", "add", "lo"], "lo"),
        (&["port", "add", "spare0", "--vlan", &vlan], &vlan),
    ];
    for (args, named) in cases {
        let out = site.switchd.swctl(args);
        let message = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "swctl {args:?} should be refused with exit 1; stdout: {}\nstderr: {message}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            message.contains(named),
            "swctl {args:?}: the message should name {named}: {message}"
        );
        assert!(
            message.trim().lines().count() <= 2,
            "swctl {args:?}: one clear error, not: {message}"
        );
        assert_eq!(site.ports(), ports, "swctl {args:?} changed the ports");
    }
    assert_eq!(promisc("bx0"), bx0, "a refused port add changed bx0");
    assert_eq!(
        promisc("spare0"),
        spare0,
        "a refused port add changed spare0"
    );
    assert_eq!(promisc("nic0"), 1, "nic0 is still a port");
    // The same VLAN on a LAN network is refused as well.
    let out = site.switchd.swctl(&[
        "network",
        "create",
        "clash",
        "--parent",
        "nic0",
        "--vlan",
        &vlan,
        "--subnet",
        "192.168.99.0/24",
        "--gateway",
        "192.168.99.1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let names: Vec<String> = site
        .switchd
        .swctl_json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["blue"]);
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn an_internal_port_gives_the_host_an_address_on_the_switch() {
    let host = Netns::new("h");
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let switchd = Switchd::start_in(&host, &[]);
    let out = switchd.swctl(&["port", "add", "--internal", "host0", "--vlan", "10"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), switchd.log());
    assert!(
        host.links().iter().any(|l| l == "host0"),
        "{:?}",
        host.links()
    );
    let ports = switchd.swctl_json(&["port", "ls"]);
    let port = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ifname"] == "host0")
        .unwrap_or_else(|| panic!("no host0 in {ports}"))
        .clone();
    assert_eq!(port["kind"], "internal", "{port}");
    assert_eq!(port["vlan"], 10, "{port}");

    let c = Netns::new("c");
    switchd.nsutil_ok(&["attach", &c.name, "--ip", "10.77.10.2/24", "--vlan", "10"]);
    // The same subnet on VLAN 20: only a leak could reach it from host0.
    let other = Netns::new("o");
    switchd.nsutil_ok(&[
        "attach",
        &other.name,
        "--ip",
        "10.77.10.3/24",
        "--vlan",
        "20",
    ]);
    host.exec_ok(&["ip", "addr", "add", "10.77.10.1/24", "dev", "host0"]);
    host.exec_ok(&["ip", "link", "set", "host0", "up"]);
    assert!(
        reaches(&host, "10.77.10.2", 5),
        "the host cannot reach the container through host0; log:\n{}",
        common::tail(&switchd.log(), 40)
    );
    assert!(
        reaches(&c, "10.77.10.1", 5),
        "the container cannot reach the host"
    );
    assert!(
        !host.ping("10.77.10.3", 2),
        "host0 on VLAN 10 reached VLAN 20"
    );

    let name = port["name"].as_str().unwrap().to_string();
    let out = switchd.swctl(&["port", "del", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !host.links().iter().any(|l| l == "host0"),
        "{:?}",
        host.links()
    );
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn the_host_port_is_promiscuous_only_while_it_is_a_port() {
    let site = Lan::new();
    // The user's own configuration of the interface, which switchd leaves alone.
    site.host
        .exec_ok(&["ip", "addr", "add", "192.168.77.5/24", "dev", "nic0"]);
    assert_eq!(promiscuity(&site.host, "nic0"), 0);
    site.add_nic(&[]);
    assert_eq!(promiscuity(&site.host, "nic0"), 1, "a port is promiscuous");
    let name = site.port("nic0").expect("nic0's port")["name"]
        .as_str()
        .unwrap()
        .to_string();
    site.swctl_ok(&["port", "del", &name]);
    assert!(site.port("nic0").is_none(), "{}", site.ports());
    assert_eq!(
        promiscuity(&site.host, "nic0"),
        0,
        "port del restores promiscuity"
    );
    let link = site.host.exec_ok(&["ip", "-o", "addr", "show", "nic0"]);
    assert!(link.contains("192.168.77.5/24"), "{link}");
    let link = site.host.exec_ok(&["ip", "-o", "link", "show", "nic0"]);
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    // And the kernel's own stack on it still works as configured.
    assert!(reaches(&site.host, LAN_HOST, 5));
}

#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn an_interface_of_another_namespace_becomes_a_port() {
    let site = Lan::build(1500, true);
    site.plain_lan();
    let port = site.port("nic0").expect("nic0's port");
    assert_eq!(port["kind"], "host", "{port}");
    let edge = site.nic_netns();
    assert_eq!(promiscuity(edge, "nic0"), 1);
    let (a, _) = site.container("a", "lan");
    assert!(
        reaches(&a, LAN_HOST, 5),
        "a cannot reach the LAN through nic0 in {}; log:\n{}",
        edge.name,
        common::tail(&site.switchd.log(), 40)
    );
}

/// Small frames a container sends back to back wait in switchd's batch for the host
/// port and go with one `sendmmsg`: every one of them reaches the LAN, in order, and the
/// port counts each as sent. The bursts are 50 frames, read before the next is sent, so
/// the LAN side's own socket never holds more than one (its queue is no part of switchd).
#[test]
#[ignore = "needs root: namespaces, veths, switchd; run by make test"]
fn a_burst_of_small_frames_reaches_the_lan_whole_and_in_order() {
    const BURSTS: u32 = 8;
    const PER_BURST: u32 = 50;
    const MARK: &[u8; 8] = b"sybatch:";
    let site = Lan::new();
    site.plain_lan();
    let (a, a_ip) = site.container("a", "lan");
    assert!(reaches(&a, LAN_HOST, 5), "a cannot reach the LAN host");
    let a_mac = parse_mac(&mac_of(&a, "eth0"));
    let lan_host_mac = parse_mac(&mac_of(&site.lan_host, "eth0"));
    let sender = VlanHost::open(&a.path(), "eth0", a_mac);
    let watcher = VlanHost::open(&site.lan_host.path(), "eth0", lan_host_mac);
    let before = site.host_port_counters();

    let src: Ipv4Addr = a_ip.parse().unwrap();
    let dst: Ipv4Addr = LAN_HOST.parse().unwrap();
    let mut seen = Vec::new();
    for burst in 0..BURSTS {
        for seq in burst * PER_BURST..(burst + 1) * PER_BURST {
            let mut payload = MARK.to_vec();
            payload.extend_from_slice(&seq.to_be_bytes());
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2(a_mac, lan_host_mac)
                .ipv4(src.octets(), dst.octets(), 64)
                .udp(40000, 9)
                .write(&mut frame, &payload)
                .expect("build UDP");
            sender.send(&frame);
        }
        while seen.len() < ((burst + 1) * PER_BURST) as usize {
            // Frames to the LAN host only: its ICMP errors back quote the payload.
            let Some(frame) = watcher.recv_matching(Duration::from_secs(3), |r| {
                r.untagged.starts_with(&lan_host_mac)
                    && r.untagged.windows(MARK.len()).any(|w| w == MARK)
            }) else {
                break;
            };
            let at = frame
                .untagged
                .windows(MARK.len())
                .position(|w| w == MARK)
                .unwrap()
                + MARK.len();
            seen.push(u32::from_be_bytes(
                frame.untagged[at..at + 4].try_into().unwrap(),
            ));
        }
    }
    let expected: Vec<u32> = (0..BURSTS * PER_BURST).collect();
    assert_eq!(
        seen, expected,
        "the LAN host saw the bursts incomplete or out of order"
    );
    let after = site.host_port_counters();
    let sent = grew(&before, &after, "tx_packets");
    assert!(
        sent >= u64::from(BURSTS * PER_BURST),
        "the host port counted {sent} frames sent for {} in bursts: {after}",
        BURSTS * PER_BURST
    );
}
