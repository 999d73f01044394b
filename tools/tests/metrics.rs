//! Root integration tests of `switchd --metrics`: a scrape after traffic, read with the
//! Prometheus client's own parser (Debian's python3-prometheus-client), checked against
//! `swctl stats`; refusals of bad addresses; and what scraping in a loop costs traffic.
//!
//! switchd runs inside a "host" namespace the test makes, and is scraped there on its
//! loopback. Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stderr, Netns, Switchd};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9469";

/// Fetches `url` inside `ns` and parses it with `prometheus_client.parser`; prints JSON:
/// the status, the content type, and every family with its type and samples.
const SCRAPE: &str = r#"
import json, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        status, ctype = response.status, response.headers.get("Content-Type")
        text = response.read().decode()
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code}))
    sys.exit(0)
families = {}
for family in text_string_to_metric_families(text):
    assert family.name not in families, "family twice: " + family.name
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps({"status": status, "content_type": ctype, "families": families}))
"#;

fn scrape(ns: &Netns, path: &str) -> Value {
    let url = format!("http://{METRICS}{path}");
    let out = ns.exec(&["/usr/bin/python3", "-c", SCRAPE, &url]);
    assert!(
        out.status.success(),
        "scraping {url} failed (is python3-prometheus-client installed? scripts/deps.sh installs it): {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("the scrape script prints JSON")
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scraped: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scraped["families"]
        .as_object()?
        .values()
        .flat_map(|f| f["samples"].as_array().into_iter().flatten())
        .find(|s| {
            s[0] == name
                && labels
                    .iter()
                    .all(|(key, value)| s[1][*key].as_str() == Some(*value))
        })
        .and_then(|s| s[2].as_f64())
}

fn must(scraped: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(scraped, name, labels).unwrap_or_else(|| {
        panic!(
            "no sample {name}{labels:?} in the scrape:\n{:#}",
            scraped["families"]
        )
    })
}

/// A host namespace (loopback up) with switchd serving metrics, and a network.
fn site() -> (Netns, Switchd) {
    let host = Netns::new("h");
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let switchd = Switchd::start_in(&host, &["--metrics", METRICS]);
    let out = switchd.swctl(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.31.0.0/24",
        "--masquerade",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    (host, switchd)
}

fn attach(switchd: &Switchd, ns: &Netns) -> String {
    let out = switchd.nsutil_ok(&["attach", &ns.name, "--network", "blue", "--json"]);
    let attached: Value = serde_json::from_str(&out).expect("nsutil --json prints JSON");
    let cidr = attached["addresses"][0].as_str().expect("an address");
    cidr.split('/').next().unwrap().to_string()
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_scrape_after_traffic_parses_and_agrees_with_swctl_stats() {
    let (host, switchd) = site();
    let (red, blue) = (Netns::new("r"), Netns::new("b"));
    let _red_ip = attach(&switchd, &red);
    let blue_ip = attach(&switchd, &blue);
    assert!(red.ping(&blue_ip, 5), "red reaches blue");
    assert!(red.ping("10.31.0.1", 5), "and the gateway");
    // A refusal, to be counted by its code.
    assert!(!switchd.swctl(&["port", "del", "no/such"]).status.success());

    let stats = switchd.swctl_json(&["stats"]);
    let scraped = scrape(&host, "/metrics");
    assert_eq!(scraped["status"], 200);
    let ctype = scraped["content_type"].as_str().unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain; version=0.0.4"),
        "the Prometheus text format: {ctype}"
    );
    assert_eq!(
        must(
            &scraped,
            "switchyard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        scraped["families"]["switchyard_port_rx_packets"]["type"], "counter",
        "counters, named without _total by the parser"
    );

    // Both ports: counters above zero, and no less than swctl said just before.
    let ports = stats["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2, "{stats}");
    for port in ports {
        let name = port["name"].as_str().unwrap();
        for counter in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] {
            let metric = format!("switchyard_port_{counter}_total");
            let scraped_value = must(&scraped, &metric, &[("port", name)]);
            let swctl_value = port[counter].as_u64().unwrap() as f64;
            assert!(scraped_value > 0.0, "{metric} of {name} is 0");
            assert!(
                scraped_value >= swctl_value,
                "{metric} of {name}: {scraped_value} < swctl's {swctl_value}"
            );
        }
    }

    assert!(must(&scraped, "switchyard_fdb_entries", &[]) > 0.0);
    assert!(must(&scraped, "switchyard_fdb_learned_total", &[]) > 0.0);
    assert!(must(&scraped, "switchyard_router_echo_replies_sent_total", &[]) >= 1.0);
    assert_eq!(
        must(&scraped, "switchyard_nat_masquerade_networks", &[]),
        1.0
    );

    // IPAM: two endpoints of a /24 (253 addresses but the network's, broadcast, gateway).
    let used = must(
        &scraped,
        "switchyard_ipam_addresses_used",
        &[("network", "blue")],
    );
    let free = must(
        &scraped,
        "switchyard_ipam_addresses_free",
        &[("network", "blue")],
    );
    assert_eq!(used, 2.0);
    assert_eq!(used + free, 253.0);

    // Control requests by kind and result.
    let requests = |kind: &str, result: &str| {
        sample(
            &scraped,
            "switchyard_control_requests_total",
            &[("kind", kind), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert!(requests("attach", "ok") >= 2.0, "{:#}", scraped["families"]);
    assert!(requests("network_create", "ok") >= 1.0);
    assert!(requests("port_del", "no_such_port") >= 1.0);
    assert!(requests("stats", "ok") >= 1.0);

    // Only /metrics.
    assert_eq!(scrape(&host, "/other")["status"], 404);
}

#[test]
#[ignore = "needs root; run by make test"]
fn bad_metrics_addresses_are_refused_at_start() {
    let host = Netns::new("h");
    host.exec_ok(&["ip", "link", "set", "lo", "up"]);
    for (value, expected) in [
        (
            "localhost",
            "invalid value 'localhost' for '--metrics <ADDR:PORT>': give ADDR:PORT",
        ),
        (
            "127.0.0.1:0",
            "invalid value '127.0.0.1:0' for '--metrics <ADDR:PORT>': give a port",
        ),
        (
            "192.0.2.1:9469",
            "cannot serve metrics on 192.0.2.1:9469 (--metrics)",
        ),
    ] {
        let out = common::switchd_refusing(&host, &["--metrics", value]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.starts_with("switchd: ") && err.contains(expected),
            "--metrics {value}: {err}"
        );
    }
    // An address in use: the second switchd says so, and the first serves on.
    let _first = Switchd::start_in(&host, &["--metrics", METRICS]);
    let out = common::switchd_refusing(&host, &["--metrics", METRICS]);
    let err = stderr(&out);
    assert!(
        err.contains("cannot serve metrics on 127.0.0.1:9469") && err.contains("in use"),
        "{err}"
    );
    assert_eq!(scrape(&host, "/metrics")["status"], 200);
}

/// One scrape over a plain socket (no Python: as fast as a client can ask).
fn raw_scrape() -> usize {
    let mut stream = std::net::TcpStream::connect(METRICS).expect("connect to the metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: switchd\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "a scrape failed");
    answer.len()
}

/// TCP throughput and ping latency between two containers, without and then with a
/// client scraping in a loop. Prints the numbers (docs/operations.md reports them);
/// asserts nothing about time.
#[test]
#[ignore = "needs root; run by make test"]
fn scraping_in_a_loop_beside_traffic() {
    let (host, switchd) = site();
    let (red, blue) = (Netns::new("r"), Netns::new("b"));
    attach(&switchd, &red);
    let blue_ip = attach(&switchd, &blue);
    assert!(red.ping(&blue_ip, 5));
    let rtt = |ns: &Netns| -> String {
        let out = ns.exec_ok(&["ping", "-c", "200", "-i", "0.005", "-q", &blue_ip]);
        out.lines()
            .find(|l| l.contains("rtt"))
            .unwrap_or_default()
            .to_string()
    };
    let quiet_rtt = rtt(&red);
    let quiet_bps = common::iperf3(&red, &blue, &blue_ip, 3, &[]);
    eprintln!(
        "without scrapes: {:.2} Gbit/s, {quiet_rtt}",
        quiet_bps / 1e9
    );
    // Ten a second (Prometheus scrapes every 15 s by default), then as fast as one
    // client can ask: on a small machine that client takes a core from the traffic.
    for pause in [Some(Duration::from_millis(100)), None] {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let scraper = {
            let (stop, scrapes) = (Arc::clone(&stop), Arc::clone(&scrapes));
            common::in_netns(&host, move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    raw_scrape();
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    if let Some(pause) = pause {
                        std::thread::sleep(pause);
                    }
                }
                started.elapsed()
            })
        };
        let busy_rtt = rtt(&red);
        let busy_bps = common::iperf3(&red, &blue, &blue_ip, 3, &[]);
        stop.store(true, Ordering::Relaxed);
        let elapsed = scraper.join().expect("the scraper");
        let n = scrapes.load(Ordering::Relaxed);
        eprintln!(
            "with {n} scrapes in {elapsed:.1?} ({:.0}/s): {:.2} Gbit/s, {busy_rtt}",
            n as f64 / elapsed.as_secs_f64(),
            busy_bps / 1e9,
        );
        assert!(n > 0);
    }
}
