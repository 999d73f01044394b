//! The `dns` scenario: queries per second answered by switchd's embedded DNS, beside
//! dnsmasq serving the same names, from the same container namespace, in the same round.
//!
//! switchd runs in a namespace of its own (`syb<pid>h`: its uplink, routes and NAT rules
//! live there) with one network, `bench` (10.95.0.0/16, gateway 10.95.0.1). [`NAMES`]
//! endpoints (`syb<pid>e<i>`, attached by nsutil with `--name host<i>`, 10.95.0.10 on)
//! give it names to serve. The client namespace (`syb<pid>c`) is on the network too
//! (10.95.0.2, port security off so that it may send from extra addresses, 10.95.1.1 on)
//! and has a veth (10.94.0.1, extra addresses 10.94.1.1 on) to dnsmasq's namespace (`syb<pid>m`, dnsmasq on 10.94.0.2), which serves
//! the same names with the same addresses from a hosts file and nothing else.
//!
//! The load generator is dnsperf (Debian's): A queries for the names in turn, at most
//! [`WINDOW`] outstanding from one source ([`SPREAD_WINDOW`] over several), each lost
//! after [`TIMEOUT_SECS`]. Each server is measured twice: from one source address, then
//! from `--dns-sources` addresses at once (one dnsperf each). switchd's DNS limits each
//! source address (500 queries/s, bursts of 1000, by default): from one source the limiter
//! is what is measured; from several, what switchd answers past it. Each measurement
//! follows a warm-up of [`WARMUP_SECS`] (at most the measurement's duration) from the same
//! sources, which also spends each source's burst, so the figures are the steady state.
//! Which server goes first alternates from round to round. switchd's `rate_limited`
//! counter (`swctl router show`) says how many queries the limiter
//! dropped during the measurement.
//!
//! Every namespace belongs to a [`Topology`] and dnsmasq is a [`Server`], so everything is
//! removed when the scenario ends, on failure too.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::topo::{address, process_cpu, serve_in, sh, Server, Topology};
use crate::{cpu_used, interrupted, progress};

/// Endpoints whose names the servers answer.
pub const NAMES: usize = 20;
/// The most source addresses (`--dns-sources`): the client's own, then 10.95.1.1 on.
pub const MAX_SOURCES: u32 = 250;
/// Queries dnsperf keeps outstanding from one source.
const WINDOW: u32 = 64;
/// Queries outstanding over all the sources when there are several (each at least 1):
/// enough to keep a server busy, few enough not to overflow its socket (a lost query holds
/// its slot for [`TIMEOUT_SECS`], which would slow the server that lost it).
const SPREAD_WINDOW: u32 = 256;
/// Seconds after which dnsperf counts a query lost.
const TIMEOUT_SECS: u32 = 1;
/// Seconds of untimed queries before each measurement.
const WARMUP_SECS: u32 = 2;
/// A /16, so that the extra source addresses fit beside the endpoints.
const SUBNET: &str = "10.95.0.0/16";
const GATEWAY: &str = "10.95.0.1";
const DNSMASQ_IP: &str = "10.94.0.2";
/// The two servers, in the order odd rounds measure them.
pub const SERVERS: [&str; 2] = ["switchd", "dnsmasq"];

#[derive(Serialize, Debug)]
pub struct DnsResult {
    /// Which round of `--rounds` (from 1).
    pub round: u32,
    /// `switchd` or `dnsmasq`.
    pub server: String,
    /// Source addresses the queries came from (one dnsperf each).
    pub sources: usize,
    pub names: usize,
    /// Over all the sources.
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    /// Answers with NOERROR (every one should be).
    pub noerror: u64,
    /// Answers per second, summed over the sources (dnsperf's "queries per second").
    pub qps: f64,
    /// The slowest source's run time.
    pub seconds: f64,
    /// dnsperf's average latency, the mean over the sources (ms).
    pub avg_latency_ms: Option<f64>,
    /// The server's CPU time (user + system) over the measurement per answer.
    pub server_cpu_us_per_answer: Option<f64>,
    /// Queries switchd's rate limiter dropped during the measurement; `None` for dnsmasq.
    pub rate_limited: Option<u64>,
}

/// What one dnsperf printed.
#[derive(Debug, Default, PartialEq)]
struct Dnsperf {
    sent: u64,
    completed: u64,
    lost: u64,
    noerror: u64,
    seconds: f64,
    qps: f64,
    avg_latency_s: Option<f64>,
}

/// The built scenario: the topology, dnsmasq, and each server's address and sources.
struct Site {
    /// Declared first: stopped before the topology removes its namespace.
    dnsmasq: Server,
    topo: Topology,
    bin_dir: std::path::PathBuf,
    socket: String,
    client: String,
    queries: std::path::PathBuf,
}

/// The address of endpoint `i`, and its name.
fn endpoint(i: usize) -> (String, String) {
    (format!("10.95.0.{}", 10 + i), format!("host{i}"))
}

/// The source addresses toward `server`: the client's own, then the extra ones.
fn sources(server: &str, count: usize) -> Vec<String> {
    let net = if server == "switchd" {
        "10.95"
    } else {
        "10.94"
    };
    let own = if server == "switchd" { 2 } else { 1 };
    std::iter::once(format!("{net}.0.{own}"))
        .chain((1..count).map(|k| format!("{net}.1.{k}")))
        .collect()
}

fn server_ip(server: &str) -> &'static str {
    if server == "switchd" {
        GATEWAY
    } else {
        DNSMASQ_IP
    }
}

/// Builds the site, then measures both servers from one source and from `spread` sources.
pub fn measure(
    round: u32,
    duration: u32,
    spread: usize,
    bin_dir: &Path,
    switchd_args: &[String],
) -> Result<Vec<DnsResult>> {
    progress(
        "dns",
        &format!("setting up switchd with {NAMES} names, dnsmasq"),
    );
    let site = build(spread, bin_dir, switchd_args)?;
    let mut servers = SERVERS;
    if round % 2 == 0 {
        servers.reverse();
    }
    // No longer than the measurement (a smoke run's is 1 s).
    let warmup = WARMUP_SECS.min(duration);
    let mut out = Vec::new();
    let mut counts = vec![1];
    if spread > 1 {
        counts.push(spread);
    }
    for count in counts {
        for server in servers {
            if interrupted() {
                bail!("interrupted");
            }
            let plural = if count > 1 { "es" } else { "" };
            progress(
                "dns",
                &format!(
                    "{server}: dnsperf from {count} source address{plural}, {warmup} s \
                     warm-up, {duration} s"
                ),
            );
            let from = sources(server, count);
            site.dnsperf(server, &from, warmup)?;
            let cpu_before = site.server_cpu(server);
            let limited_before = site.rate_limited(server)?;
            let runs = site.dnsperf(server, &from, duration)?;
            let cpu = cpu_used(cpu_before, site.server_cpu(server));
            let limited_after = site.rate_limited(server)?;
            out.push(result(
                round,
                server,
                &runs,
                cpu,
                limited_before.zip(limited_after).map(|(b, a)| a - b),
            ));
        }
    }
    Ok(out)
}

/// The measurement over every source's dnsperf.
fn result(
    round: u32,
    server: &str,
    runs: &[Dnsperf],
    cpu: Option<Duration>,
    rate_limited: Option<u64>,
) -> DnsResult {
    let sum = |f: fn(&Dnsperf) -> u64| runs.iter().map(f).sum::<u64>();
    let completed = sum(|r| r.completed);
    let latencies: Vec<f64> = runs.iter().filter_map(|r| r.avg_latency_s).collect();
    DnsResult {
        round,
        server: server.to_string(),
        sources: runs.len(),
        names: NAMES,
        sent: sum(|r| r.sent),
        completed,
        lost: sum(|r| r.lost),
        noerror: sum(|r| r.noerror),
        qps: runs.iter().map(|r| r.qps).sum(),
        seconds: runs.iter().map(|r| r.seconds).fold(0.0, f64::max),
        avg_latency_ms: (!latencies.is_empty())
            .then(|| latencies.iter().sum::<f64>() / latencies.len() as f64 * 1e3),
        server_cpu_us_per_answer: cpu
            .filter(|_| completed > 0)
            .map(|c| c.as_secs_f64() * 1e6 / completed as f64),
        rate_limited,
    }
}

fn build(spread: usize, bin_dir: &Path, switchd_args: &[String]) -> Result<Site> {
    let mut topo = Topology::empty(switchd_args);
    let host = topo.add_ns("h")?;
    // Nothing is forwarded (every name asked is an endpoint's); the upstream is a
    // documentation address, so that switchd does not read the machine's resolv.conf.
    let socket = topo.start_switchd(bin_dir, Some(&host), &["--dns-upstream", "192.0.2.53"])?;
    topo.swctl(
        bin_dir,
        &socket,
        &["network", "create", "bench", "--subnet", SUBNET],
    )?;
    let mut hosts = String::new();
    let mut queries = String::new();
    for i in 0..NAMES {
        if interrupted() {
            bail!("interrupted");
        }
        let ns = topo.add_ns(&format!("e{i}"))?;
        let (ip, name) = endpoint(i);
        topo.nsutil(
            bin_dir,
            &socket,
            &[
                "attach",
                &ns,
                "--network",
                "bench",
                "--ip",
                &ip,
                "--name",
                &name,
            ],
        )?;
        hosts.push_str(&format!("{ip} {name}\n"));
        queries.push_str(&format!("{name} A\n"));
    }
    let client = topo.add_ns("c")?;
    topo.nsutil(
        bin_dir,
        &socket,
        &[
            "attach",
            &client,
            "--network",
            "bench",
            "--ip",
            "10.95.0.2",
            "--name",
            "client",
            "--port-security",
            "off",
        ],
    )?;
    let resolver = topo.add_ns("m")?;
    sh(&[
        "ip", "link", "add", "dm0", "netns", &client, "type", "veth", "peer", "name", "eth0",
        "netns", &resolver,
    ])?;
    for (ns, dev, cidr) in [
        (&client, "dm0", "10.94.0.1/16"),
        (&resolver, "eth0", "10.94.0.2/16"),
    ] {
        address(ns, dev, cidr)?;
    }
    // The extra source addresses, on the client's interface toward each server.
    for (server, dev) in [("switchd", "eth0"), ("dnsmasq", "dm0")] {
        for ip in sources(server, spread).iter().skip(1) {
            sh(&[
                "ip",
                "-n",
                &client,
                "addr",
                "add",
                &format!("{ip}/16"),
                "dev",
                dev,
            ])?;
        }
    }

    let work = topo.work_dir()?;
    let hosts_file = work.join("dnsmasq.hosts");
    std::fs::write(&hosts_file, hosts)?;
    let queries_file = work.join("queries");
    std::fs::write(&queries_file, queries)?;
    let pid_file = work.join("dnsmasq.pid");
    let path = |p: &Path| p.to_str().map(String::from).context("utf-8 path");
    let args = [
        crate::DNSMASQ.to_string(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        format!("--addn-hosts={}", path(&hosts_file)?),
        format!("--listen-address={DNSMASQ_IP}"),
        "--bind-interfaces".into(),
        "--port=53".into(),
        "--cache-size=1000".into(),
        format!("--pid-file={}", path(&pid_file)?),
        // Stays root, so that it reads the hosts file under the bench's directory.
        "--user=root".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // dnsmasq listens on TCP port 53 too: ready once that is open.
    let dnsmasq = serve_in(&resolver, &args, 53)?;
    let site = Site {
        topo,
        bin_dir: bin_dir.to_path_buf(),
        socket,
        client,
        dnsmasq,
        queries: queries_file,
    };
    // Wait until both answer every name from every source.
    for server in SERVERS {
        let from = sources(server, spread);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let runs = site.dnsperf_once(server, &from)?;
            if runs.iter().all(|r| r.completed == NAMES as u64) {
                break;
            }
            if Instant::now() > deadline {
                bail!("dns: {server} does not answer every name from every source: {runs:?}");
            }
            if interrupted() {
                bail!("interrupted");
            }
        }
    }
    Ok(site)
}

impl Site {
    /// One dnsperf per source address at once, for `secs` seconds.
    fn dnsperf(&self, server: &str, from: &[String], secs: u32) -> Result<Vec<Dnsperf>> {
        self.run(server, from, &["-l", &secs.to_string()])
    }

    /// One dnsperf per source address, each asking every name once.
    fn dnsperf_once(&self, server: &str, from: &[String]) -> Result<Vec<Dnsperf>> {
        self.run(server, from, &["-n", "1"])
    }

    fn run(&self, server: &str, from: &[String], extra: &[&str]) -> Result<Vec<Dnsperf>> {
        let queries = self.queries.to_str().context("utf-8 path")?;
        let window = match from.len() {
            1 => WINDOW,
            n => (SPREAD_WINDOW / n as u32).max(1),
        };
        let (window, timeout) = (window.to_string(), TIMEOUT_SECS.to_string());
        let children = from
            .iter()
            .map(|source| {
                Command::new("ip")
                    .args(["netns", "exec", &self.client, "dnsperf"])
                    .args(["-s", server_ip(server), "-a", source, "-d", queries])
                    .args(["-q", &window, "-t", &timeout])
                    .args(extra)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("cannot run dnsperf (is it installed?)")
            })
            .collect::<Result<Vec<_>>>()?;
        // Wait for every one, even when one fails, so that none is left running.
        let outputs: Vec<std::io::Result<Output>> =
            children.into_iter().map(|c| c.wait_with_output()).collect();
        from.iter()
            .zip(outputs)
            .map(|(source, out)| {
                let out = out.context("dnsperf")?;
                let text = String::from_utf8_lossy(&out.stdout);
                parse_dnsperf(&text).with_context(|| {
                    format!(
                        "dnsperf from {source} to {server}: {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                })
            })
            .collect()
    }

    /// The CPU time `server` has used so far.
    fn server_cpu(&self, server: &str) -> Option<Duration> {
        if server == "switchd" {
            self.topo.switch_cpu()
        } else {
            process_cpu(self.dnsmasq.id())
        }
    }

    /// switchd's `rate_limited` DNS counter; `None` for dnsmasq.
    fn rate_limited(&self, server: &str) -> Result<Option<u64>> {
        if server != "switchd" {
            return Ok(None);
        }
        let out = self
            .topo
            .swctl(&self.bin_dir, &self.socket, &["--json", "router", "show"])?;
        let router: serde_json::Value =
            serde_json::from_str(&out).context("swctl --json router show")?;
        router["dns"]["rate_limited"]
            .as_u64()
            .map(Some)
            .ok_or_else(|| anyhow!("swctl router show: no dns.rate_limited in {router}"))
    }
}

/// Reads dnsperf's statistics (`Queries sent:  N`, `Queries completed:  N (x%)`, `Response
/// codes:  NOERROR N (x%)`, `Run time (s):  x`, `Queries per second:  x`, `Average Latency
/// (s):  x (min ...)`).
fn parse_dnsperf(out: &str) -> Result<Dnsperf> {
    let field = |key: &str| -> Option<&str> {
        out.lines()
            .find_map(|l| l.trim_start().strip_prefix(key))
            .map(str::trim)
    };
    let first = |key: &str| -> Option<&str> { field(key)?.split_whitespace().next() };
    let int = |key: &str| -> Result<u64> {
        first(key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("dnsperf printed no {key:?}"))
    };
    let float = |key: &str| -> Option<f64> { first(key)?.parse().ok() };
    let noerror = field("Response codes:")
        .and_then(|codes| {
            let mut words = codes.split_whitespace();
            words.find(|w| *w == "NOERROR")?;
            words.next()?.parse().ok()
        })
        .unwrap_or(0);
    Ok(Dnsperf {
        sent: int("Queries sent:")?,
        completed: int("Queries completed:")?,
        lost: int("Queries lost:")?,
        noerror,
        seconds: float("Run time (s):").context("dnsperf printed no run time")?,
        qps: float("Queries per second:").context("dnsperf printed no queries per second")?,
        avg_latency_s: float("Average Latency (s):"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dnsperf_statistics() {
        // dnsperf 2.10.0, trimmed.
        let out = "DNS Performance Testing Tool\nVersion 2.10.0\n\n[Status] Command line: \
                   dnsperf -s 10.95.0.1\n[Status] Testing complete (time limit)\n\n\
                   Statistics:\n\n  Queries sent:         5627\n  \
                   Queries completed:    5563 (98.86%)\n  Queries lost:         64 (1.14%)\n\n  \
                   Response codes:       NOERROR 5563 (100.00%)\n  \
                   Average packet size:  request 23, response 39\n  \
                   Run time (s):         10.000123\n  Queries per second:   556.293157\n\n  \
                   Average Latency (s):  0.000291 (min 0.000081, max 0.003561)\n  \
                   Latency StdDev (s):   0.000140\n";
        let r = parse_dnsperf(out).unwrap();
        assert_eq!(
            r,
            Dnsperf {
                sent: 5627,
                completed: 5563,
                lost: 64,
                noerror: 5563,
                seconds: 10.000123,
                qps: 556.293157,
                avg_latency_s: Some(0.000291),
            }
        );
        assert!(parse_dnsperf("dnsperf: invalid argument").is_err());
    }

    #[test]
    fn sources_are_distinct_and_start_with_the_clients_own() {
        let s = sources("switchd", MAX_SOURCES as usize);
        assert_eq!(s[0], "10.95.0.2");
        assert_eq!(s.last().map(String::as_str), Some("10.95.1.249"));
        let mut sorted = s.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), s.len());
        assert_eq!(sources("dnsmasq", 2), ["10.94.0.1", "10.94.1.1"]);
        // None is an endpoint's.
        assert!(!s.contains(&endpoint(NAMES - 1).0));
    }
}
