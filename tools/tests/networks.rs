//! Root integration tests of networks: IPAM, the router in switchd, isolation between
//! networks, the TUN uplink and masquerade.
//!
//! switchd runs inside a "host" namespace the test makes (the uplink, its routes, IPv4
//! forwarding and the NAT rules all live there), joined by a veth to an "external"
//! namespace that has no route back to the containers' subnets.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use common::{stderr, Netns, Switchd};
use serde_json::Value;

/// The host namespace with switchd in it (192.168.200.1) and the external one
/// (192.168.200.2), which knows nothing of the containers' subnets.
struct Site {
    host: Netns,
    external: Netns,
    switchd: Switchd,
}

impl Site {
    fn new() -> Site {
        Site::with_args(&[])
    }

    /// A site whose switchd gets `args` too.
    fn with_args(args: &[&str]) -> Site {
        let host = Netns::new("h");
        let external = Netns::new("x");
        common::run_ok(
            "ip",
            &[
                "link",
                "add",
                "out0",
                "netns",
                &host.name,
                "type",
                "veth",
                "peer",
                "name",
                "in0",
                "netns",
                &external.name,
            ],
        );
        for (ns, dev, addr) in [
            (&host, "out0", "192.168.200.1/24"),
            (&external, "in0", "192.168.200.2/24"),
        ] {
            ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev]);
            ns.exec_ok(&["ip", "link", "set", dev, "up"]);
            ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        }
        let switchd = Switchd::start_in(&host, args);
        Site {
            host,
            external,
            switchd,
        }
    }

    fn swctl_ok(&self, args: &[&str]) -> String {
        let out = self.switchd.swctl(args);
        assert!(
            out.status.success(),
            "swctl {args:?} failed: {}\nlog:\n{}",
            stderr(&out),
            self.switchd.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its error message.
    fn swctl_err(&self, args: &[&str]) -> String {
        let out = self.switchd.swctl(args);
        assert!(!out.status.success(), "swctl {args:?} should have failed");
        stderr(&out)
    }

    /// Attaches a new namespace to `network`; returns it and the address IPAM gave it.
    fn container(&self, tag: &str, network: &str, extra: &[&str]) -> (Netns, String) {
        let ns = Netns::new(tag);
        let address = self.attach(&ns, network, extra);
        (ns, address)
    }

    fn attach(&self, ns: &Netns, network: &str, extra: &[&str]) -> String {
        let mut args = vec!["attach", &ns.name, "--network", network, "--json"];
        args.extend_from_slice(extra);
        let out = self.switchd.nsutil_ok(&args);
        let attachment: Value = serde_json::from_str(&out).expect("nsutil --json prints JSON");
        let cidr = attachment["addresses"][0]
            .as_str()
            .expect("an address was assigned")
            .to_string();
        cidr.split('/').next().unwrap().to_string()
    }

    fn networks(&self) -> Value {
        self.switchd.swctl_json(&["network", "ls"])
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn containers_reach_their_network_and_gateway_but_not_other_networks() {
    let site = Site::new();
    site.swctl_ok(&["network", "create", "blue", "--subnet", "10.10.0.0/24"]);
    site.swctl_ok(&["network", "create", "red", "--subnet", "10.20.0.0/24"]);
    let (web, web_ip) = site.container("w", "blue", &[]);
    let (_db, db_ip) = site.container("d", "blue", &["--ip", "10.10.0.50"]);
    let (other, other_ip) = site.container("r", "red", &[]);
    assert_eq!(web_ip, "10.10.0.2", "IPAM starts after the gateway");
    assert_eq!(db_ip, "10.10.0.50", "the requested address");
    assert_eq!(other_ip, "10.20.0.2");

    // The interface got the network's address, gateway route and MTU.
    let route = web.exec_ok(&["ip", "route", "show", "default"]);
    assert!(route.contains("via 10.10.0.1 dev eth0"), "{route}");
    assert!(web.ping(&db_ip, 5), "same network");
    assert!(web.ping("10.10.0.1", 5), "the gateway answers");
    assert!(other.ping("10.20.0.1", 5), "the other network's gateway");

    // Isolation: nothing crosses from red to blue, neither directly nor via gateways.
    assert!(!other.ping(&db_ip, 2), "red reached blue");
    assert!(!other.ping("10.10.0.1", 2), "red reached blue's gateway");
    let router = site.switchd.swctl_json(&["router", "show"]);
    assert!(
        router["counters"]["drops"]["isolated"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{router}"
    );

    // A container attached to both networks reaches both.
    let (both, _) = site.container("b", "blue", &[]);
    let red_ip = site.attach(&both, "red", &["--ifname", "eth1"]);
    assert!(red_ip.starts_with("10.20.0."), "{red_ip}");
    assert!(both.ping(&db_ip, 5));
    assert!(both.ping(&other_ip, 5));

    // inspect lists the endpoints with MAC and address.
    let blue = site.switchd.swctl_json(&["network", "inspect", "blue"]);
    assert_eq!(blue["driver"], "local");
    assert_eq!(blue["options"]["mtu"], "1500");
    assert_eq!(blue["subnet"], "10.10.0.0/24");
    let endpoints = blue["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3, "{blue}");
    assert!(endpoints
        .iter()
        .any(|e| e["address"] == "10.10.0.50/24" && e["mac"] == "02:42:0a:0a:00:32"));

    // Detaching releases the address; the network can go once it is empty.
    let err = site.swctl_err(&["network", "rm", "red"]);
    assert!(err.contains("endpoint(s) attached"), "{err}");
    site.switchd.nsutil_ok(&["detach", &other.name]);
    site.switchd
        .nsutil_ok(&["detach", &both.name, "--ifname", "eth1"]);
    site.swctl_ok(&["network", "rm", "red"]);
    let networks = site.networks();
    let names: Vec<&str> = networks
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blue"]);
    let routes = site.host.exec_ok(&["ip", "route"]);
    assert!(!routes.contains("10.20.0.0/24"), "{routes}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn the_uplink_joins_containers_and_the_host_and_masquerade_reaches_outside() {
    let site = Site::new();
    site.swctl_ok(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.10.0.0/24",
        "--masquerade",
    ]);
    site.swctl_ok(&["network", "create", "red", "--subnet", "10.20.0.0/24"]);
    site.swctl_ok(&["network", "create", "vault", "--internal"]);
    let (web, web_ip) = site.container("w", "blue", &[]);
    let (other, other_ip) = site.container("r", "red", &[]);
    let (secret, _) = site.container("s", "vault", &[]);

    // Host ↔ container, both ways, through the uplink.
    assert!(site.host.ping(&web_ip, 5), "host to blue");
    assert!(site.host.ping(&other_ip, 5), "host to red");
    assert!(web.ping("192.168.200.1", 5), "blue to the host");
    let forwarding = site.host.exec_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forwarding.trim(), "1");

    // The external namespace has no route back: only masquerade gets an answer home.
    assert!(web.ping("192.168.200.2", 5), "blue masquerades");
    assert!(!other.ping("192.168.200.2", 2), "red does not masquerade");
    let rules = site
        .host
        .exec_ok(&["nft", "list", "table", "ip", "switchyard"]);
    assert!(rules.contains("ip saddr 10.10.0.0/24"), "{rules}");
    assert!(!rules.contains("10.20.0.0"), "{rules}");

    // An internal network has no uplink at all.
    assert!(
        !secret.ping("192.168.200.1", 2),
        "internal reached the host"
    );
    let vault = site.switchd.swctl_json(&["network", "inspect", "vault"]);
    let vault_subnet = vault["subnet"].as_str().unwrap().to_string();
    let routes = site.host.exec_ok(&["ip", "route"]);
    assert!(!routes.contains(&vault_subnet), "{routes}");
    assert!(routes.contains("10.10.0.0/24 dev switchyard0"), "{routes}");

    // TCP through the router and the NAT, both ways of the uplink.
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &site.external.name, "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3");
    common::wait_for_listener(&site.external, 5201);
    let out = web.exec(&["iperf3", "-c", "192.168.200.2", "-t", "1", "-J"]);
    let mut server = server;
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.status.success(), "iperf3 through NAT: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(bits > 0.0, "no TCP data arrived through the NAT");

    // Removing the masquerading network removes its rule.
    site.switchd.nsutil_ok(&["detach", &web.name]);
    site.swctl_ok(&["network", "rm", "blue"]);
    let tables = site.host.exec_ok(&["nft", "list", "tables"]);
    assert!(!tables.contains("switchyard"), "{tables}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_restart_restores_networks_and_never_reuses_an_address() {
    let mut site = Site::new();
    site.swctl_ok(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.10.0.0/24",
        "--masquerade",
    ]);
    let (a, a_ip) = site.container("a", "blue", &[]);
    let (b, b_ip) = site.container("b", "blue", &[]);
    assert!(a.ping(&b_ip, 5));
    assert!(a.ping("192.168.200.2", 5));

    site.switchd.restart();
    assert!(a.ping(&b_ip, 5), "containers after the restart");
    assert!(a.ping("10.10.0.1", 5), "gateway after the restart");
    assert!(site.host.ping(&a_ip, 5), "uplink after the restart");
    assert!(a.ping("192.168.200.2", 5), "masquerade after the restart");
    let rules = site
        .host
        .exec_ok(&["nft", "list", "table", "ip", "switchyard"]);
    assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");

    // New attachments get fresh addresses, never one in use.
    let (c, c_ip) = site.container("c", "blue", &[]);
    assert!(c_ip != a_ip && c_ip != b_ip, "{c_ip} reused");
    assert!(c.ping(&a_ip, 5));
    let out = site.switchd.nsutil(&[
        "attach",
        &Netns::new("d").name,
        "--network",
        "blue",
        "--ip",
        &b_ip,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    drop(b);
}

#[test]
#[ignore = "needs root; run by make test"]
fn bad_input_gets_one_clear_error_and_changes_nothing() {
    let site = Site::new();
    site.swctl_ok(&["network", "create", "blue", "--subnet", "10.10.0.0/24"]);
    let (_web, _) = site.container("w", "blue", &["--ip", "10.10.0.9"]);
    let before = site.networks();
    let host_routes = site.host.exec_ok(&["ip", "route"]);

    let cases: &[(&[&str], &str)] = &[
        (
            &["network", "create", "red", "--subnet", "10.10.0.128/25"],
            "overlaps network blue",
        ),
        (
            &["network", "create", "red", "--subnet", "192.168.200.0/24"],
            "already routes",
        ),
        (
            &[
                "network",
                "create",
                "red",
                "--subnet",
                "10.20.0.0/24",
                "--gateway",
                "10.30.0.1",
            ],
            "outside subnet",
        ),
        (
            &["network", "create", "blue", "--subnet", "10.40.0.0/24"],
            "already exists",
        ),
        (
            &["network", "create", "red", "--subnet", "10.20.0.7/24"],
            "host bits",
        ),
        (&["network", "rm", "blue"], "endpoint(s) attached"),
        (&["network", "rm", "nope"], "no such network"),
        (&["network", "create", "ov", "--vni", "42"], "--vtep"),
    ];
    for (args, expected) in cases {
        let err = site.swctl_err(args);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert_eq!(
        site.networks(),
        before,
        "a refused request changed networks"
    );
    assert_eq!(site.host.exec_ok(&["ip", "route"]), host_routes);

    let ns = Netns::new("n");
    let attach_cases: &[(&[&str], &str)] = &[
        (&["--network", "nope"], "no such network nope"),
        (&["--network", "blue", "--ip", "10.99.0.5"], "outside"),
        (
            &["--network", "blue", "--ip", "10.10.0.9"],
            "already in use",
        ),
        (&["--network", "blue", "--ip", "10.10.0.1"], "reserved"),
        (&["--network", "blue", "--ip", "banana"], "invalid --ip"),
    ];
    for (extra, expected) in attach_cases {
        let mut args = vec!["attach", &ns.name];
        args.extend_from_slice(extra);
        let out = site.switchd.nsutil(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(ns.links(), ["lo"], "a refused attach left an interface");
    assert_eq!(site.networks(), before);
    let ports = site.switchd.swctl_json(&["port", "ls"]);
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_overlay_network_spans_two_hosts() {
    let h1 = Netns::new("o1");
    let h2 = Netns::new("o2");
    common::run_ok(
        "ip",
        &[
            "link", "add", "u1", "netns", &h1.name, "type", "veth", "peer", "name", "u2", "netns",
            &h2.name,
        ],
    );
    for (ns, dev, addr) in [(&h1, "u1", "192.0.2.1/24"), (&h2, "u2", "192.0.2.2/24")] {
        ns.exec_ok(&["ip", "addr", "add", addr, "dev", dev]);
        ns.exec_ok(&["ip", "link", "set", dev, "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    }
    let mut containers = Vec::new();
    let mut switchds = Vec::new();
    for (host, local, peer, range) in [
        (&h1, "192.0.2.1", "192.0.2.2", "10.50.0.0/25"),
        (&h2, "192.0.2.2", "192.0.2.1", "10.50.0.128/25"),
    ] {
        let switchd = Switchd::start_in(host, &["--vtep", local]);
        for args in [
            &["vxlan", "peer", "add", peer][..],
            &[
                "network",
                "create",
                "ov",
                "--subnet",
                "10.50.0.0/24",
                "--vni",
                "77",
                "--ip-range",
                range,
            ],
        ] {
            let out = switchd.swctl(args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
        let ns = Netns::new("c");
        let out = switchd.nsutil_ok(&["attach", &ns.name, "--network", "ov", "--json"]);
        let attachment: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(attachment["mtu"], 1450, "an overlay network's default MTU");
        let address = attachment["addresses"][0].as_str().unwrap().to_string();
        containers.push((ns, address.split('/').next().unwrap().to_string()));
        switchds.push(switchd);
    }
    let (c1, ip1) = &containers[0];
    let (c2, ip2) = &containers[1];
    assert_eq!(
        ip1, "10.50.0.2",
        "host 1's range, after the network address and gateway"
    );
    assert_eq!(ip2, "10.50.0.128");
    assert!(c1.ping(ip2, 5), "across the overlay");
    assert!(c2.ping(ip1, 5), "and back");
    assert!(c1.ping("10.50.0.1", 5), "each host's router is the gateway");
    assert!(c2.ping("10.50.0.1", 5));
    let info = switchds[0].swctl_json(&["network", "inspect", "ov"]);
    assert_eq!(info["driver"], "overlay");
    assert_eq!(info["vni"], 77);
}

/// The DNAT rules in switchd's nftables table.
fn dnat_rules(site: &Site) -> usize {
    let out = site
        .host
        .exec(&["nft", "list", "table", "ip", "switchyard"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("dnat to"))
        .count()
}

#[test]
#[ignore = "needs root; run by make test"]
fn published_ports_reach_a_container_from_outside_from_the_host_and_by_hairpin() {
    let site = Site::new();
    site.swctl_ok(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.10.0.0/24",
        "--masquerade",
    ]);
    let (web, web_ip) = site.container(
        "w",
        "blue",
        &["--publish", "8080:80", "--publish", "5353:53/udp"],
    );
    let _servers = common::PeerEcho::start(&web);
    let outside = "192.168.200.2".to_string();

    // From outside, TCP and UDP, with the client's own address.
    assert_eq!(
        common::eventually(|| common::tcp_peer(&site.external, "192.168.200.1:8080")),
        Some(outside.clone()),
        "tcp from outside; log:\n{}",
        site.switchd.log()
    );
    assert_eq!(
        common::eventually(|| common::udp_peer(&site.external, "192.168.200.1:5353")),
        Some(outside.clone()),
        "udp from outside"
    );
    assert_eq!(
        common::tcp_peer(&site.external, "192.168.200.1:8081"),
        None,
        "not published"
    );
    // From switchd's namespace: its address and 127.0.0.1.
    assert_eq!(
        common::eventually(|| common::tcp_peer(&site.host, "192.168.200.1:8080")),
        Some("192.168.200.1".to_string())
    );
    assert!(common::eventually(|| common::tcp_peer(&site.host, "127.0.0.1:8080")).is_some());
    // Hairpin: another container on the network, through the host's address.
    let (peer, _) = site.container("p", "blue", &[]);
    let seen = common::eventually(|| common::tcp_peer(&peer, "192.168.200.1:8080"));
    assert!(seen.is_some(), "hairpin");
    assert_ne!(seen.as_deref(), Some(web_ip.as_str()));

    // Listed with the endpoint.
    let info = site.switchd.swctl_json(&["network", "inspect", "blue"]);
    let endpoint = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["address"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{web_ip}/"))
        })
        .cloned()
        .expect("web's endpoint");
    assert_eq!(
        endpoint["published"].as_array().unwrap().len(),
        2,
        "{endpoint}"
    );

    // A taken host port refuses the attach whole: no endpoint, no namespace port.
    let taken = Netns::new("t");
    let out = site.switchd.nsutil(&[
        "attach",
        &taken.name,
        "--network",
        "blue",
        "--publish",
        "8080:81",
    ]);
    assert!(!out.status.success(), "a taken host port was accepted");
    assert!(stderr(&out).contains("8080"), "{}", stderr(&out));
    let info = site.switchd.swctl_json(&["network", "inspect", "blue"]);
    assert_eq!(info["endpoints"].as_array().unwrap().len(), 2, "{info}");
    assert!(
        !taken.links().iter().any(|l| l == "eth0"),
        "no interface left"
    );

    // swctl adds and removes mappings.
    site.swctl_ok(&[
        "port",
        "publish",
        &format!("{}/eth0", web.name),
        "9090-9091:80-81",
    ]);
    assert_eq!(
        common::eventually(|| common::tcp_peer(&site.external, "192.168.200.1:9090")),
        Some(outside.clone())
    );
    let err = site.swctl_err(&["port", "unpublish", &format!("{}/eth0", web.name), "7:7"]);
    assert!(err.contains("does not publish"), "{err}");
    site.swctl_ok(&[
        "port",
        "unpublish",
        &format!("{}/eth0", web.name),
        "9090-9091:80-81",
    ]);
    assert_eq!(common::tcp_peer(&site.external, "192.168.200.1:9090"), None);

    // A restart keeps them, as one rule set.
    let rules = dnat_rules(&site);
    assert!(rules > 0);
    let mut site = site;
    site.switchd.restart();
    assert_eq!(dnat_rules(&site), rules, "the same rules after a restart");
    assert_eq!(
        common::eventually(|| common::tcp_peer(&site.external, "192.168.200.1:8080")),
        Some(outside.clone()),
        "after a restart"
    );

    // Detaching the container removes them.
    site.switchd.nsutil_ok(&["detach", &web.name]);
    assert_eq!(dnat_rules(&site), 0);
    assert_eq!(common::tcp_peer(&site.external, "192.168.200.1:8080"), None);
}

#[test]
#[ignore = "needs root; run by make test"]
fn endpoints_have_names_and_aliases_unique_where_they_must_be() {
    let site = Site::new();
    site.swctl_ok(&["network", "create", "blue", "--subnet", "10.10.0.0/24"]);
    let attach_json = |ns: &Netns, extra: &[&str]| -> Value {
        let mut args = vec!["attach", &ns.name, "--network", "blue", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&site.switchd.nsutil_ok(&args)).unwrap()
    };
    // The name defaults to the namespace's; aliases may be shared.
    let web = Netns::new("web");
    let got = attach_json(&web, &["--alias", "api", "--alias", "www"]);
    assert_eq!(got["name"], web.name.as_str(), "{got}");
    assert_eq!(got["aliases"], serde_json::json!(["api", "www"]), "{got}");
    let db = Netns::new("db");
    let got = attach_json(&db, &["--name", "postgres", "--alias", "api"]);
    assert_eq!(got["name"], "postgres", "{got}");

    // A name given and taken is refused, and nothing is made.
    let third = Netns::new("x");
    let out = site.switchd.nsutil(&[
        "attach",
        &third.name,
        "--network",
        "blue",
        "--name",
        "POSTGRES",
    ]);
    assert!(!out.status.success(), "a taken name was accepted");
    assert!(
        stderr(&out).contains("name POSTGRES is taken"),
        "{}",
        stderr(&out)
    );
    let out = site.switchd.nsutil(&[
        "attach",
        &third.name,
        "--network",
        "blue",
        "--name",
        "no_pe",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DNS label"), "{}", stderr(&out));
    let info = site.switchd.swctl_json(&["network", "inspect", "blue"]);
    assert_eq!(info["endpoints"].as_array().unwrap().len(), 2, "{info}");
    // A default name that is taken (a second interface of web) is left out.
    let got = attach_json(&web, &["--ifname", "eth1"]);
    assert!(got.get("name").is_none(), "{got}");

    // Names survive a restart; the table shows them.
    let mut site = site;
    site.switchd.restart();
    let text = site.swctl_ok(&["network", "inspect", "blue"]);
    assert!(
        text.contains("postgres") && text.contains("api,www"),
        "{text}"
    );
}

use switchyard::dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use switchyard::dns::proto::rr::{rdata, Name, RData, Record as DnsRecord, RecordType};

/// Asks `server` (port 53) from inside `ns` for `name`'s A records, as a stub resolver
/// does: up to three tries, 3 s each. The reply, or `None` when none came.
fn resolve(ns: &Netns, server: &str, name: &str) -> Option<Message> {
    resolve_tries(ns, server, name, 3)
}

/// [`resolve`] with `tries` tries.
fn resolve_tries(ns: &Netns, server: &str, name: &str, tries: usize) -> Option<Message> {
    let server: std::net::SocketAddr = format!("{server}:53").parse().unwrap();
    let name = name.to_string();
    common::in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .ok()?;
        let query = a_query(0x4242, &name)?;
        (0..tries).find_map(|_| {
            socket.send_to(&query, server).ok()?;
            let mut buf = [0u8; 1500];
            let (len, _) = socket.recv_from(&mut buf).ok()?;
            Message::from_vec(&buf[..len]).ok()
        })
    })
    .join()
    .unwrap()
}

/// A recursive query for `name`'s A records, encoded; `None` when `name` is no name.
fn a_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    query.to_vec().ok()
}

fn a_records(reply: &Message) -> Vec<String> {
    let mut out: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// A resolver in `ns` on `addr` that answers every A query with 198.51.100.7, until
/// dropped (it answers `count` queries at most).
fn fake_upstream(ns: &Netns, addr: &str) -> std::thread::JoinHandle<()> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = common::in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind(addr).expect("bind the fake upstream");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                reply.add_answer(DnsRecord::from_rdata(
                    q.name().clone(),
                    30,
                    RData::A(rdata::A("198.51.100.7".parse().unwrap())),
                ));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from);
        }
    });
    ready_rx.recv().unwrap();
    server
}

#[test]
#[ignore = "needs root; run by make test"]
fn containers_resolve_each_other_by_name_and_the_rest_upstream() {
    // The first upstream is dead (nothing on that port): the second one answers.
    let site = Site::with_args(&[
        "--dns-upstream",
        "192.168.200.2:5354",
        "--dns-upstream",
        "192.168.200.2:5353",
    ]);
    let _upstream = fake_upstream(&site.external, "192.168.200.2:5353");
    site.swctl_ok(&["network", "create", "blue", "--subnet", "10.10.0.0/24"]);
    site.swctl_ok(&["network", "create", "red", "--subnet", "10.20.0.0/24"]);
    let (web, web_ip) = site.container("web", "blue", &["--alias", "api"]);
    let (_db, db_ip) = site.container("db", "blue", &["--name", "postgres", "--alias", "api"]);
    let (other, _) = site.container("o", "red", &[]);

    let reply = resolve(&web, "10.10.0.1", "postgres").unwrap_or_else(|| {
        panic!(
            "no answer; router: {}\nlog:\n{}",
            site.swctl_ok(&["--json", "router", "show"]),
            site.switchd.log()
        )
    });
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), std::slice::from_ref(&db_ip), "{reply:?}");
    let mut both = vec![web_ip.clone(), db_ip.clone()];
    both.sort();
    let reply = resolve(&web, "10.10.0.1", "API.blue.").expect("an answer");
    assert_eq!(
        a_records(&reply),
        both,
        "a shared alias, NAME.NETWORK, any case"
    );
    // Another network's container: NXDOMAIN, not forwarded.
    let reply = resolve(&other, "10.20.0.1", "postgres").expect("an answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // Everything else goes upstream, past the dead one.
    let reply = resolve(&web, "10.10.0.1", "example.org")
        .unwrap_or_else(|| panic!("no forwarded answer; log:\n{}", site.switchd.log()));
    assert_eq!(a_records(&reply), ["198.51.100.7"], "{reply:?}");

    // As a user asks: nsutil pointed the namespace's resolver file at the gateway, and
    // `ip netns exec` mounts it over /etc/resolv.conf.
    let conf = std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", web.name))
        .expect("nsutil wrote the namespace's resolv.conf");
    assert!(
        conf.contains("nameserver 10.10.0.1") && conf.contains("search blue"),
        "{conf}"
    );
    let out = web.exec(&["getent", "hosts", "postgres"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&db_ip),
        "getent hosts postgres: {} {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    // Not an open resolver: from switchd's own namespace (through the uplink) and from
    // outside, the gateway's port 53 answers nothing.
    site.external
        .exec_ok(&["ip", "route", "add", "10.10.0.0/24", "via", "192.168.200.1"]);
    for (ns, what) in [
        (&site.host, "switchd's namespace"),
        (&site.external, "outside"),
    ] {
        assert!(
            resolve_tries(ns, "10.10.0.1", "postgres", 1).is_none(),
            "the DNS answered {what}"
        );
    }

    let router = site.switchd.swctl_json(&["router", "show"]);
    assert!(
        router["dns"]["answered_local"].as_u64() >= Some(2),
        "{router}"
    );
    assert_eq!(router["dns"]["nxdomain"], 1, "{router}");
    assert_eq!(router["dns"]["forwarded"], 1, "{router}");
    assert!(
        router["dns"]["upstream_timeouts"].as_u64() >= Some(1),
        "{router}"
    );

    // The names survive a restart.
    let mut site = site;
    site.switchd.restart();
    let reply = resolve(&web, "10.10.0.1", "postgres").unwrap_or_else(|| {
        panic!(
            "no answer after a restart; router: {}\nlog:\n{}",
            site.swctl_ok(&["--json", "router", "show"]),
            site.switchd.log()
        )
    });
    assert_eq!(a_records(&reply), [db_ip]);
}

#[test]
#[ignore = "needs root; run by make test"]
fn dns_flags_are_checked() {
    let host = Netns::new("h");
    let out = common::switchd_refusing(&host, &["--dns", "off", "--dns-upstream", "192.0.2.53"]);
    assert!(
        stderr(&out).contains("--dns-upstream goes with the embedded DNS"),
        "{}",
        stderr(&out)
    );
    let out = common::switchd_refusing(&host, &["--dns-upstream", "not-an-address"]);
    assert!(
        stderr(&out).contains("invalid value 'not-an-address' for '--dns-upstream <IP>'"),
        "{}",
        stderr(&out)
    );
    let four = [
        "--dns-upstream",
        "192.0.2.1",
        "--dns-upstream",
        "192.0.2.2",
        "--dns-upstream",
        "192.0.2.3",
        "--dns-upstream",
        "192.0.2.4",
    ];
    let out = common::switchd_refusing(&host, &four);
    assert!(stderr(&out).contains("at most 3"), "{}", stderr(&out));
    let out = common::switchd_refusing(&host, &["--dns", "off", "--dns-rate-limit", "10"]);
    assert!(
        stderr(&out).contains("--dns-rate-limit goes with"),
        "{}",
        stderr(&out)
    );
}

/// Asks for `names` (type A) one after the other on one TCP connection to `server`:53,
/// each query and answer with its 2-byte length (RFC 7766); the answers' A records, or
/// why there are none.
fn resolve_over_tcp(ns: &Netns, server: &str, names: &[&str]) -> Result<Vec<Vec<String>>, String> {
    use std::io::{Read, Write};
    let server: std::net::SocketAddr = format!("{server}:53").parse().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    common::in_netns(ns, move || {
        let timeout = std::time::Duration::from_secs(3);
        let mut stream = std::net::TcpStream::connect_timeout(&server, timeout)
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut answers = Vec::new();
        for (id, name) in names.iter().enumerate() {
            let query = a_query(0x100 + id as u16, name).unwrap();
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&query);
            stream
                .write_all(&framed)
                .map_err(|e| format!("send: {e}"))?;
            let mut len = [0u8; 2];
            stream
                .read_exact(&mut len)
                .map_err(|e| format!("read a length: {e}"))?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream
                .read_exact(&mut reply)
                .map_err(|e| format!("read an answer: {e}"))?;
            let reply = Message::from_vec(&reply).map_err(|e| format!("decode: {e}"))?;
            if reply.metadata.id != 0x100 + id as u16 || reply.metadata.truncation {
                return Err(format!("not the answer: {reply:?}"));
            }
            answers.push(a_records(&reply));
        }
        Ok(answers)
    })
    .join()
    .unwrap()
}

#[test]
#[ignore = "needs root; run by make test"]
fn containers_resolve_each_other_over_tcp() {
    let site = Site::new();
    site.swctl_ok(&["network", "create", "green", "--subnet", "10.30.0.0/24"]);
    let (web, web_ip) = site.container("web", "green", &["--name", "web"]);
    let (db, db_ip) = site.container("db", "green", &["--name", "db", "--alias", "store"]);
    let answers =
        resolve_over_tcp(&web, "10.30.0.1", &["db", "store.green."]).unwrap_or_else(|e| {
            panic!(
                "{e}; router: {}\nlog:\n{}",
                site.swctl_ok(&["--json", "router", "show"]),
                site.switchd.log()
            )
        });
    assert_eq!(
        answers,
        [[db_ip.clone()], [db_ip.clone()]],
        "two queries, one connection"
    );
    // And a second connection, from the other side.
    let answers = resolve_over_tcp(&db, "10.30.0.1", &["web"]).expect("an answer");
    assert_eq!(answers, [[web_ip]]);

    let router = site.switchd.swctl_json(&["router", "show"]);
    assert_eq!(router["dns"]["tcp_connections"], 2, "{router}");
    assert_eq!(router["dns"]["tcp_messages"], 3, "{router}");
    assert_eq!(router["dns"]["answered_local"], 3, "{router}");
}
