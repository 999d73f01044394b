//! The `pairs` scenario: many flows through one switch at once.
//!
//! `--pairs N` container pairs (a client and a server namespace each) on one switchd, then
//! N pairs on one Linux bridge, in the same round. Every server starts first; then every
//! client starts at once (one iperf3 TCP stream each, `--duration` seconds, each in a
//! thread of its own) and the bench waits for all of them. The figure is the aggregate
//! (the sum over the pairs of what each receiver got) with the slowest and the fastest
//! pair, switchd's CPU seconds per GB over the whole run, and how long every client was
//! running at the same time (wall clock, the last start to the first exit), so that a run
//! whose flows did not overlap shows it. With more flows than CPUs the run is CPU-bound:
//! it measures how each switch shares the CPU among the flows.
//!
//! Every pair is on one L2 segment (switchd's default VLAN, or the one bridge): pair i's
//! client is 10.96.i.1/16, its server 10.96.i.2/16. The namespaces are
//! `syb<pid>yc<i>`/`syb<pid>ys<i>` for switchyard and `syb<pid>bc<i>`/`syb<pid>bs<i>` (and
//! the bridge's `syb<pid>bbr`) for the bridge; they belong to a [`Topology`], so they are
//! removed when it drops, on failure too.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::topo::{address, bridge_port, parse_iperf, serve_in, IperfResult, Topology};
use crate::{cpu_per_gb, interrupted, progress};

/// The two paths the scenario compares, in the order odd rounds measure them (even rounds
/// take them the other way round).
pub const PATHS: [&str; 2] = ["switchyard", "bridge"];
/// The most pairs one run can have (the third byte of their addresses).
pub const MAX_PAIRS: u32 = 255;

#[derive(Serialize, Debug)]
pub struct PairsResult {
    /// Which round of `--rounds` (from 1).
    pub round: u32,
    /// `switchyard` or `bridge`.
    pub path: String,
    pub pairs: usize,
    /// The sum over the pairs of each receiver's Gbit/s.
    pub aggregate_gbit_per_sec: f64,
    pub min_pair_gbit_per_sec: f64,
    pub max_pair_gbit_per_sec: f64,
    /// Each pair's Gbit/s, in pair order.
    pub pair_gbit_per_sec: Vec<f64>,
    /// Bytes received over all the pairs.
    pub bytes: u64,
    pub retransmits: u64,
    /// How long every client ran at the same time: from the last one's start to the first
    /// one's exit (wall clock, process start and connection included).
    pub overlap_secs: f64,
    /// switchd's CPU time (user + system) over the run per GB received; `None` for the
    /// bridge.
    pub switch_cpu_sec_per_gb: Option<f64>,
}

/// One pair's client namespace and its server's namespace and address.
struct Pair {
    client: String,
    server: String,
    server_ip: String,
}

/// One client's report and when it ran, in seconds from just before the first started.
struct ClientRun {
    result: IperfResult,
    started: f64,
    ended: f64,
}

/// The addresses of pair `i`'s client and server (a /16, so the pairs share one subnet).
fn addresses(i: usize) -> [(String, String); 2] {
    [1, 2].map(|host| {
        let ip = format!("10.96.{i}.{host}");
        (format!("{ip}/16"), ip)
    })
}

/// Builds `pairs` pairs on `path` (`switchyard` or `bridge`), every client reaching its
/// server, then runs every pair's iperf3 at once.
pub fn measure(
    path: &str,
    round: u32,
    pairs: usize,
    duration: u32,
    bin_dir: &Path,
    switchd_args: &[String],
) -> Result<PairsResult> {
    let label = format!("pairs {path}");
    progress(&label, &format!("setting up {pairs} pairs"));
    let (topo, list) = build(path, pairs, bin_dir, switchd_args)?;
    // Wait for every path to carry traffic (as `Topology::build` does).
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in &list {
        while !topo.ping(&p.client, &p.server_ip) {
            if Instant::now() > deadline {
                bail!("{label}: {} cannot reach {}", p.client, p.server_ip);
            }
            if interrupted() {
                bail!("interrupted");
            }
        }
    }

    let mut servers = Vec::with_capacity(list.len());
    for p in &list {
        servers.push(serve_in(&p.server, &["iperf3", "-s", "-1"], 5201)?);
    }
    progress(
        &label,
        &format!("iperf3 TCP, {pairs} clients at once, one stream each, {duration} s"),
    );
    let before = topo.switch_cpu();
    let runs = run_clients(&list, duration)?;
    let after = topo.switch_cpu();
    drop(servers);

    let results: Vec<&IperfResult> = runs.iter().map(|r| &r.result).collect();
    let spans: Vec<(f64, f64)> = runs.iter().map(|r| (r.started, r.ended)).collect();
    let (aggregate, min, max) = aggregate(&results);
    let bytes = results.iter().map(|r| r.bytes).sum();
    Ok(PairsResult {
        round,
        path: path.to_string(),
        pairs,
        aggregate_gbit_per_sec: aggregate / 1e9,
        min_pair_gbit_per_sec: min / 1e9,
        max_pair_gbit_per_sec: max / 1e9,
        pair_gbit_per_sec: results.iter().map(|r| r.bits_per_second / 1e9).collect(),
        bytes,
        retransmits: results.iter().map(|r| r.retransmits).sum(),
        overlap_secs: overlap(&spans),
        switch_cpu_sec_per_gb: cpu_per_gb(before, after, bytes),
    })
}

/// The topology of `pairs` pairs on `path`, and the pairs in it.
fn build(
    path: &str,
    pairs: usize,
    bin_dir: &Path,
    switchd_args: &[String],
) -> Result<(Topology, Vec<Pair>)> {
    let mut topo = Topology::empty(switchd_args);
    let mut list = Vec::with_capacity(pairs);
    let (tag, socket, bridge) = match path {
        "switchyard" => ("y", Some(topo.start_switchd(bin_dir, None, &[])?), None),
        "bridge" => ("b", None, Some(topo.add_bridge("bbr")?)),
        other => bail!("pairs: unknown path {other}"),
    };
    for i in 0..pairs {
        if interrupted() {
            bail!("interrupted");
        }
        let [(client_cidr, _), (server_cidr, server_ip)] = addresses(i);
        let mut ends = Vec::with_capacity(2);
        for (role, cidr) in [("c", client_cidr), ("s", server_cidr)] {
            let ns = topo.add_ns(&format!("{tag}{role}{i}"))?;
            if let Some(socket) = &socket {
                topo.nsutil(bin_dir, socket, &["attach", &ns, "--ip", &cidr])?;
            }
            if let Some(br) = &bridge {
                bridge_port(br, &ns, &format!("{role}{i}"))?;
                address(&ns, "eth0", &cidr)?;
            }
            ends.push(ns);
        }
        let [client, server] = <[String; 2]>::try_from(ends).expect("two ends");
        list.push(Pair {
            client,
            server,
            server_ip,
        });
    }
    Ok((topo, list))
}

/// Starts every pair's client at once (a thread each), waits for all of them and reads
/// each one's report.
fn run_clients(pairs: &[Pair], duration: u32) -> Result<Vec<ClientRun>> {
    let duration = duration.to_string();
    let zero = Instant::now();
    let outcomes: Vec<std::thread::Result<(f64, f64, std::io::Result<Output>)>> =
        std::thread::scope(|scope| {
            let threads: Vec<_> = pairs
                .iter()
                .map(|p| {
                    let duration = &duration;
                    scope.spawn(move || {
                        let started = zero.elapsed().as_secs_f64();
                        let out = Command::new("ip")
                            .args(["netns", "exec", &p.client])
                            .args(["iperf3", "-c", &p.server_ip, "-t", duration, "-J"])
                            .stdin(Stdio::null())
                            .output();
                        (started, zero.elapsed().as_secs_f64(), out)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join()).collect()
        });
    pairs
        .iter()
        .zip(outcomes)
        .map(|(p, outcome)| {
            let (started, ended, out) =
                outcome.map_err(|_| anyhow!("{}: the client's thread panicked", p.client))?;
            let out = out.context("cannot run iperf3 (is it installed?)")?;
            let result = parse_iperf(&String::from_utf8_lossy(&out.stdout)).with_context(|| {
                format!(
                    "{} to {}: iperf3 {}: {}",
                    p.client,
                    p.server_ip,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
            Ok(ClientRun {
                result,
                started,
                ended,
            })
        })
        .collect()
}

/// The sum, the minimum and the maximum of the pairs' bits per second (zeros for none).
fn aggregate(results: &[&IperfResult]) -> (f64, f64, f64) {
    if results.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let rates = || results.iter().map(|r| r.bits_per_second);
    (
        rates().sum(),
        rates().fold(f64::INFINITY, f64::min),
        rates().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// How long every one of the `(start, end)` spans was running: the last start to the first
/// end, or 0 when some ended before another started (or there are none).
fn overlap(spans: &[(f64, f64)]) -> f64 {
    if spans.is_empty() {
        return 0.0;
    }
    let last_start = spans.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
    let first_end = spans.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    (first_end - last_start).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bits_per_second: f64) -> IperfResult {
        IperfResult {
            bits_per_second,
            bytes: 0,
            retransmits: 0,
        }
    }

    #[test]
    fn aggregate_is_sum_min_max() {
        let runs = [rate(2e9), rate(1e9), rate(3e9)];
        let refs: Vec<&IperfResult> = runs.iter().collect();
        assert_eq!(aggregate(&refs), (6e9, 1e9, 3e9));
        assert_eq!(aggregate(&[]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn overlap_is_last_start_to_first_end() {
        assert_eq!(overlap(&[(0.0, 5.0), (0.5, 5.5), (0.25, 6.0)]), 4.5);
        // One run over before the next began: no overlap at all.
        assert_eq!(overlap(&[(0.0, 1.0), (2.0, 3.0)]), 0.0);
        assert_eq!(overlap(&[]), 0.0);
    }

    #[test]
    fn pairs_have_distinct_addresses_in_one_subnet() {
        let [(client_cidr, client), (server_cidr, server)] = addresses(0);
        assert_eq!(client_cidr, "10.96.0.1/16");
        assert_eq!(
            (server_cidr.as_str(), server.as_str()),
            ("10.96.0.2/16", "10.96.0.2")
        );
        assert_ne!(client, server);
        let last = addresses(MAX_PAIRS as usize - 1);
        assert_eq!(last[1].1, "10.96.254.2");
    }
}
