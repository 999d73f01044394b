//! The `scale` scenario: one switchd, many namespaces attached with nsutil.
//!
//! Measures how long each `nsutil attach` takes (wall clock, the whole command), checks that
//! every namespace reaches its neighbour (namespace i pings i+1, the last pings the first),
//! then measures switchd's idle CPU and resident memory with every port attached. The namespaces
//! (`syb<pid>n<i>`) and switchd belong to a [`Topology`], so they are removed when it
//! drops, on failure too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::topo::{process_rss_kib, process_ticks, ticks_per_second, Topology};
use crate::{interrupted, progress};

#[derive(Serialize, Debug)]
pub struct ScaleResult {
    pub ports: usize,
    /// Every attach's wall-clock time, in attach order (milliseconds).
    pub attach_ms: Vec<f64>,
    pub attach_ms_median: f64,
    pub attach_ms_p90: f64,
    pub attach_ms_max: f64,
    /// switchd's VmRSS right after it started, with no port.
    pub rss_kib_no_ports: u64,
    /// switchd's VmRSS with every port attached and idle.
    pub rss_kib_idle_ports: u64,
    pub idle_secs: u64,
    /// switchd's user + system CPU over `idle_secs` with every port attached, in ticks.
    pub idle_cpu_ticks: u64,
    /// Frames switchd received in that time (the namespaces' own chatter, if any).
    pub idle_rx_frames: u64,
    pub ticks_per_second: f64,
    pub neighbours_tried: usize,
    pub neighbours_reached: usize,
}

/// The address of namespace `i` (a /16, so up to 65 000 namespaces fit).
fn address(i: usize) -> (String, String) {
    let host = i + 1;
    let ip = format!("10.97.{}.{}", host >> 8, host & 0xff);
    (format!("{ip}/16"), ip)
}

/// The median and the nearest-rank 90th percentile of `values`.
pub fn median_p90(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let p90 = sorted[(n * 9).div_ceil(10) - 1];
    (median, p90)
}

/// Frames switchd has received on all its ports (`swctl stats --json`).
fn rx_frames(topo: &Topology, bin_dir: &Path, socket: &str) -> Result<u64> {
    let out = topo.swctl(bin_dir, socket, &["stats", "--json"])?;
    let stats: serde_json::Value = serde_json::from_str(&out).context("swctl stats --json")?;
    let ports = stats["ports"].as_array().context("swctl stats: no ports")?;
    Ok(ports.iter().filter_map(|p| p["rx_packets"].as_u64()).sum())
}

/// Sleeps, unless interrupted.
fn sleep(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    Ok(())
}

pub fn run(
    bin_dir: &Path,
    switchd_args: &[String],
    ports: usize,
    idle_secs: u64,
) -> Result<ScaleResult> {
    if ports < 2 {
        bail!("scale needs at least 2 ports");
    }
    let mut topo = Topology::empty(switchd_args);
    progress("scale", "starting switchd");
    let socket = topo.start_switchd(bin_dir, None, &[])?;
    let pid = topo.switchd_pids()[0];
    let rss_kib_no_ports = process_rss_kib(pid).unwrap_or(0);

    progress(
        "scale",
        &format!("attaching {ports} namespaces with nsutil"),
    );
    let mut names = Vec::with_capacity(ports);
    let mut attach_ms = Vec::with_capacity(ports);
    for i in 0..ports {
        if interrupted() {
            bail!("interrupted");
        }
        let ns = topo.add_ns(&format!("n{i}"))?;
        let (cidr, _) = address(i);
        let start = Instant::now();
        topo.nsutil(bin_dir, &socket, &["attach", &ns, "--ip", &cidr])?;
        attach_ms.push(start.elapsed().as_secs_f64() * 1e3);
        names.push(ns);
        if (i + 1) % 25 == 0 && i + 1 < ports {
            progress("scale", &format!("{} attached", i + 1));
        }
    }
    let (attach_ms_median, attach_ms_p90) = median_p90(&attach_ms);
    let attach_ms_max = attach_ms.iter().copied().fold(0.0, f64::max);

    progress("scale", "every namespace pings its neighbour");
    let mut neighbours_reached = 0;
    for (i, ns) in names.iter().enumerate() {
        if interrupted() {
            bail!("interrupted");
        }
        let (_, neighbour) = address((i + 1) % ports);
        // The first ping also resolves the neighbour's MAC: allow three tries.
        if (0..3).any(|_| topo.ping(ns, &neighbour)) {
            neighbours_reached += 1;
        } else {
            println!("   {ns} cannot reach {neighbour}");
        }
    }

    // New interfaces send IPv6 router solicitations and MLD reports for a few seconds
    // after they come up (4 s apart): wait (at most 30 s) until switchd has received
    // nothing for 5 s.
    progress("scale", "waiting for the new interfaces to fall quiet");
    let frames = || rx_frames(&topo, bin_dir, &socket);
    let settle_until = Instant::now() + Duration::from_secs(30);
    let (mut last, mut quiet_since) = (frames()?, Instant::now());
    while Instant::now() < settle_until && quiet_since.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(500))?;
        let now = frames()?;
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
    }

    progress(
        "scale",
        &format!("switchd idle for {idle_secs} s with {ports} ports"),
    );
    let (before, frames_before) = (process_ticks(pid).unwrap_or(0), frames()?);
    sleep(Duration::from_secs(idle_secs))?;
    let idle_cpu_ticks = process_ticks(pid).unwrap_or(0).saturating_sub(before);
    let idle_rx_frames = frames()?.saturating_sub(frames_before);
    let rss_kib_idle_ports = process_rss_kib(pid).unwrap_or(0);

    Ok(ScaleResult {
        ports,
        attach_ms,
        attach_ms_median,
        attach_ms_p90,
        attach_ms_max,
        rss_kib_no_ports,
        rss_kib_idle_ports,
        idle_secs,
        idle_cpu_ticks,
        idle_rx_frames,
        ticks_per_second: ticks_per_second(),
        neighbours_tried: ports,
        neighbours_reached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median_p90(&v), (50.5, 90.0));
        assert_eq!(median_p90(&[3.0, 1.0, 2.0]), (2.0, 3.0));
        assert_eq!(median_p90(&[]), (0.0, 0.0));
    }

    #[test]
    fn addresses_are_unique_hosts() {
        assert_eq!(address(0), ("10.97.0.1/16".into(), "10.97.0.1".into()));
        assert_eq!(address(254).1, "10.97.0.255");
        assert_eq!(address(255).1, "10.97.1.0");
    }
}
