//! `bench`: measures switchyard against the kernel's own data paths and Open vSwitch's
//! userspace datapath, in one run, so that the figures compare as ratios on a noisy
//! machine.
//!
//! Every scenario builds its topology in namespaces it creates (unique names) and removes
//! them when it ends, even on failure or Ctrl-C. Across each path it measures TCP
//! throughput (iperf3, 1 stream and `-P N`), latency (sockperf TCP ping-pong) and small
//! frames (iperf3 UDP, 64-byte payloads, as fast as iperf3 sends), with the userspace
//! switch's CPU seconds per GB (switchd's, or ovs-vswitchd's) where one is in the path; the
//! kernel's paths spend theirs in softirq, which no process is charged for. Results are printed as they come, then as
//! one table with the ratios, and written to `bench/results/<timestamp>.json` with a bar
//! chart `bench/results/<timestamp>.png`. Missing tools (iperf3, sockperf, the chart's
//! font) are installed with apt-get.
//!
//! `--rounds N` runs the whole list of scenarios N times, interleaved (a, b, a, b, …), so
//! that each round's ratios are taken minutes apart at most, and reports every ratio's
//! median and range over the rounds: on a shared machine one round says little about
//! whether a ratio holds. The table and the chart then show each figure's median.
//!
//! Scenarios:
//! * `veth` — a veth pair between the two namespaces, nothing in between (the limit).
//! * `bridge` — a Linux bridge in a third namespace, veth pairs to it.
//! * `switchyard` — switchd with TAP ports, attached by nsutil.
//! * `ovs` — Open vSwitch's userspace (netdev) datapath with TAP ports and userspace TSO;
//!   only when ovs-vswitchd is installed (skipped with a note otherwise).
//! * `kernel-vxlan` — two host namespaces joined by a veth underlay, each with a Linux
//!   bridge and the kernel's VXLAN device (VNI 42); containers on veths, MTU 1450.
//! * `switchyard-overlay` — the same underlay with a switchd VTEP in each host namespace.
//! * `scale` — one switchd, 100 namespaces: attach times, memory, idle CPU, reachability.
//!   Not part of `all` (the default); `make bench` runs `all scale pairs`.
//! * `pairs` — many flows at once: `--pairs N` (16) client/server pairs on one switchd and
//!   N on one Linux bridge, in the same round, every pair's iperf3 TCP stream running at
//!   the same time; the aggregate, the slowest and fastest pair, and the ratio. TCP only
//!   (whatever `--tests` says); not part of `all`.
//! * `dns` — queries per second answered by switchd's embedded DNS (20 names, dnsperf
//!   from one container namespace) beside dnsmasq serving the same names to the same
//!   client, from one source address and from `--dns-sources` at once (switchd limits each
//!   source address to 500 queries/s); not part of `all`.
//! * `published` — iperf3 TCP from an external namespace through a container's published
//!   port (DNAT in switchd's namespace) beside the same flow routed to the container's
//!   address; TCP only; not part of `all`.
//! * `host-port` — a container on the LAN behind a veth that plays the host's NIC, three
//!   ways in the same round: through switchd's host port and a LAN network
//!   (`lan-switchyard`), through a Linux bridge with the NIC enslaved (`lan-bridge`, the
//!   base of the ratios), and through a macvlan device on the NIC, as Docker's macvlan
//!   driver does (`lan-macvlan`); each path also runs alone by its name. The switchyard
//!   path also reports the average frame the host port's counters show. Not part of
//!   `all`; see `host_port.rs`.
//! * `cluster` — one switchd with an etcd cluster store (etcd in a namespace of the
//!   bench's): how long switchd takes to converge when N simulated nodes with M endpoints
//!   are written to the store, and when their leases are revoked (`--cluster-sizes`), and
//!   what one `nsutil attach` costs in the store (keys, bytes, revisions, watch events);
//!   not part of `all`.
//!
//! `--smoke` runs `switchyard` (one TCP stream), `published` (one stream per path) and `dns`
//! (2 sources), 1 s each; `dns` is skipped with a note when dnsperf or dnsmasq is missing
//! (a smoke run installs nothing new for it).

mod chart;
mod cluster;
mod dns;
mod host_port;
mod ovs;
mod pairs;
mod published;
mod scale;
mod topo;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use cluster::ClusterResult;
use dns::DnsResult;
use pairs::PairsResult;
use published::PublishedResult;
use scale::ScaleResult;
use topo::{Topology, SOCKPERF_MSG_SIZE};

/// The scenarios `all` stands for, in the order a full run measures them.
const ALL: [&str; 6] = [
    "veth",
    "bridge",
    "switchyard",
    "ovs",
    "kernel-vxlan",
    "switchyard-overlay",
];
const CHOICES: [&str; 16] = [
    "all",
    "veth",
    "bridge",
    "switchyard",
    "ovs",
    "kernel-vxlan",
    "switchyard-overlay",
    "scale",
    "pairs",
    "dns",
    "published",
    "cluster",
    host_port::GROUP,
    "lan-bridge",
    "lan-switchyard",
    "lan-macvlan",
];
/// The scenarios with measurements of their own, which do not take `--tests`.
const OWN_TESTS: [&str; 5] = ["scale", "pairs", "dns", "published", "cluster"];
/// dnsmasq-base's binary (in /usr/sbin, which a sudo PATH may lack).
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Each switchyard scenario and what it is compared with (same tests, same run).
const RATIOS: [(&str, &str); 5] = [
    ("switchyard", "bridge"),
    ("switchyard-overlay", "kernel-vxlan"),
    ("switchyard", "ovs"),
    host_port::RATIOS[0],
    host_port::RATIOS[1],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum TestKind {
    /// iperf3 TCP, 1 stream and `--streams` streams.
    Tcp,
    /// sockperf TCP ping-pong.
    Latency,
    /// iperf3 UDP, 64-byte payloads, `-b 0`.
    Udp64,
}

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark switchyard against the Linux bridge, the kernel's VXLAN and \
                   Open vSwitch's userspace datapath"
)]
struct Args {
    /// Scenarios to run, in order; `all` is every one but `scale`, `pairs`, `dns`,
    /// `published`, `cluster` and `host-port` (which is `lan-bridge`, `lan-switchyard`
    /// and `lan-macvlan`) [default: all]
    #[arg(value_parser = CHOICES)]
    scenarios: Vec<String>,
    /// Seconds per measurement (each iperf3 and sockperf run).
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// Parallel TCP streams per run (also runs a single stream when above 1).
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// Which measurements to take in each scenario.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tcp,latency,udp64"
    )]
    tests: Vec<TestKind>,
    /// Times to run the whole list of scenarios, interleaved; the table and chart show
    /// medians, the ratios their median and range over the rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Namespaces the scale scenario attaches.
    #[arg(long, default_value_t = 100)]
    scale_ports: usize,
    /// Client/server pairs the pairs scenario runs at once, on each of switchd and the
    /// bridge.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=pairs::MAX_PAIRS as i64))]
    pairs: u32,
    /// Source addresses the dns scenario also queries from at once (one dnsperf each),
    /// besides from one; 1 for one source only.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=dns::MAX_SOURCES as i64))]
    dns_sources: u32,
    /// Simulated nodes × endpoints the cluster scenario writes to the store, one size
    /// after the other.
    #[arg(long, value_delimiter = ',', value_parser = cluster::parse_size,
          default_value = "10x100,100x1000,300x3000")]
    cluster_sizes: Vec<cluster::Size>,
    /// A quick check that the harness and switchd work: switchyard (one TCP stream),
    /// published and dns, 1 s each, no chart and no results file.
    #[arg(long)]
    smoke: bool,
    /// Do not draw the PNG chart.
    #[arg(long)]
    no_chart: bool,
    /// Where the workspace binaries are (switchd, nsutil, swctl).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// An extra flag for every switchd the bench starts, e.g. `--switchd-arg=--busy-poll-us=0`
    /// (repeat for several).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    switchd_arg: Vec<String>,
    /// An extra flag for every `nsutil attach` the bench runs, e.g.
    /// `--attach-arg=--port-security=off` (repeat for several).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    attach_arg: Vec<String>,
    /// Directory for the JSON results and the chart.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Serialize, Debug)]
struct Throughput {
    /// Which round of `--rounds` (from 1).
    round: u32,
    scenario: String,
    test: String,
    streams: u32,
    gbit_per_sec: f64,
    retransmits: u64,
    /// The userspace switch's CPU time (user + system; switchd, or ovs-vswitchd) per GB
    /// received; `None` for the kernel's data paths.
    switch_cpu_sec_per_gb: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Latency {
    round: u32,
    scenario: String,
    /// sockperf's latency: half the TCP round trip, averaged (µs).
    avg_us: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    message_bytes: u64,
    messages: u64,
    /// Over the payload bytes of every message both ways.
    switch_cpu_sec_per_gb: Option<f64>,
    switch_cpu_us_per_round_trip: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Udp64 {
    round: u32,
    scenario: String,
    sent_pps: f64,
    received_pps: f64,
    loss_percent: f64,
    /// Over the payload bytes received.
    switch_cpu_sec_per_gb: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Ratio {
    round: u32,
    ours: String,
    base: String,
    test: String,
    /// ours / base. For latency a ratio above 1 means ours is slower.
    ratio: f64,
}

/// One ratio over every round that measured both sides.
#[derive(Serialize, Debug)]
struct RatioSummary {
    ours: String,
    base: String,
    test: String,
    rounds: usize,
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Serialize, Debug)]
struct Note {
    scenario: String,
    reason: String,
}

#[derive(Serialize, Debug)]
struct Settings {
    duration_secs: u32,
    rounds: u32,
    streams: u32,
    tests: Vec<TestKind>,
    scenarios: Vec<String>,
    ovs_userspace_tso: Option<bool>,
    /// Pairs per switch in the pairs scenario, when it ran.
    pairs: Option<u32>,
    /// Source addresses of the dns scenario's spread measurement, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_sources: Option<u32>,
    /// The cluster scenario's sizes, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_sizes: Option<Vec<cluster::Size>>,
    /// Extra switchd flags (`--switchd-arg`).
    switchd_args: Vec<String>,
    /// Extra `nsutil attach` flags (`--attach-arg`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attach_args: Vec<String>,
}

#[derive(Serialize, Debug)]
struct Report {
    timestamp: u64,
    machine: Machine,
    settings: Settings,
    throughput: Vec<Throughput>,
    latency: Vec<Latency>,
    udp64: Vec<Udp64>,
    scale: Option<ScaleResult>,
    pairs: Vec<PairsResult>,
    dns: Vec<DnsResult>,
    published: Vec<PublishedResult>,
    /// One per round of the cluster scenario.
    cluster: Vec<ClusterResult>,
    /// The host-port scenario's switchyard path: its port counters, one per round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    host_port_frames: Vec<host_port::FrameSizes>,
    ratios: Vec<Ratio>,
    ratio_summary: Vec<RatioSummary>,
    skipped: Vec<Note>,
    failed: Vec<Note>,
}

#[derive(Serialize, Debug)]
struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
    memory_kib: u64,
    iperf3: Option<String>,
    sockperf: Option<String>,
    ovs: Option<String>,
    git_commit: Option<String>,
}

fn first_line(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(|l| strip_escapes(l).trim().to_string())
        .find(|l| !l.is_empty())
}

/// Drops ANSI colour sequences (sockperf colours its output).
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn machine() -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Machine {
        kernel,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_kib,
        iperf3: first_line(&["iperf3", "--version"]),
        sockperf: first_line(&["sockperf", "--version"]),
        ovs: ovs::version(),
        git_commit: first_line(&["git", "rev-parse", "--short", "HEAD"]),
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived: the bench then stops at the next step and
/// removes what it built.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn catch_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.context("sigaction")?;
    }
    Ok(())
}

/// Whether `command` is an executable on PATH.
pub fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let path = dir.join(command);
            std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        })
    })
}

/// Installs the Debian packages whose file is missing (a command on PATH, or an absolute
/// path).
fn ensure_installed(needs: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|(what, _)| {
            if what.starts_with('/') {
                !Path::new(what).exists()
            } else {
                !on_path(what)
            }
        })
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        bail!("missing {}; install them first", missing.join(" "));
    }
    println!("installing {} (apt-get)", missing.join(" "));
    let apt = |args: &[&str]| -> Result<()> {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)
}

/// A progress line: what is about to be measured.
pub fn progress(scenario: &str, what: &str) {
    println!("-- {scenario}: {what}");
}

fn row(scenario: &str, test: &str, result: &str, detail: &str, cpu: Option<f64>) {
    println!(
        "{scenario:<20} {test:<10} {result:>15}  {detail:<24} {:>15}",
        fmt_cpu(cpu)
    );
}

fn fmt_cpu(cpu: Option<f64>) -> String {
    match cpu {
        None => "-".to_string(),
        Some(c) if c >= 100.0 => format!("{c:.0}"),
        Some(c) if c >= 10.0 => format!("{c:.1}"),
        Some(c) => format!("{c:.3}"),
    }
}

/// Switch CPU seconds per GB, from the CPU time before and after and the bytes moved.
fn cpu_per_gb(before: Option<Duration>, after: Option<Duration>, bytes: u64) -> Option<f64> {
    let used = cpu_used(before, after)?;
    (bytes > 0).then(|| used.as_secs_f64() / (bytes as f64 / 1e9))
}

pub(crate) fn cpu_used(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

fn test_name(streams: u32) -> String {
    if streams > 1 {
        format!("tcp -P {streams}")
    } else {
        "tcp".to_string()
    }
}

/// Builds one scenario's topology and takes every measurement across it.
fn run_scenario(scenario: &str, round: u32, args: &Args, report: &mut Report) -> Result<()> {
    progress(scenario, "setting up");
    let mut topo = Topology::build(scenario, &args.bin_dir, &args.switchd_arg)?;
    if let Some(tso) = topo.ovs_tso() {
        report.settings.ovs_userspace_tso = Some(tso);
    }
    let d = args.duration;
    for test in &args.tests {
        if interrupted() {
            bail!("interrupted");
        }
        match test {
            TestKind::Tcp => {
                let mut runs = vec![1];
                if args.streams > 1 {
                    runs.push(args.streams);
                }
                for streams in runs {
                    let plural = if streams > 1 { "s" } else { "" };
                    progress(
                        scenario,
                        &format!("iperf3 TCP, {streams} stream{plural}, {d} s"),
                    );
                    let before = topo.switch_cpu();
                    let r = topo.iperf(d, streams)?;
                    let cpu = cpu_per_gb(before, topo.switch_cpu(), r.bytes);
                    let m = Throughput {
                        round,
                        scenario: scenario.to_string(),
                        test: test_name(streams),
                        streams,
                        gbit_per_sec: r.bits_per_second / 1e9,
                        retransmits: r.retransmits,
                        switch_cpu_sec_per_gb: cpu,
                    };
                    row(
                        scenario,
                        &m.test,
                        &format!("{:.2} Gbit/s", m.gbit_per_sec),
                        &format!("retr {}", m.retransmits),
                        cpu,
                    );
                    report.throughput.push(m);
                }
            }
            TestKind::Latency => {
                progress(scenario, &format!("sockperf TCP ping-pong, {d} s"));
                let before = topo.switch_cpu();
                let r = topo.latency(d)?;
                let after = topo.switch_cpu();
                let bytes = r.messages * SOCKPERF_MSG_SIZE;
                let round_trips = r.messages / 2;
                let m = Latency {
                    round,
                    scenario: scenario.to_string(),
                    avg_us: r.avg_us,
                    p50_us: r.p50_us,
                    p99_us: r.p99_us,
                    message_bytes: SOCKPERF_MSG_SIZE,
                    messages: r.messages,
                    switch_cpu_sec_per_gb: cpu_per_gb(before, after, bytes),
                    switch_cpu_us_per_round_trip: cpu_used(before, after)
                        .filter(|_| round_trips > 0)
                        .map(|c| c.as_secs_f64() * 1e6 / round_trips as f64),
                };
                row(
                    scenario,
                    "latency",
                    &format!("{:.1} µs", m.avg_us),
                    &m.p99_us.map_or(String::new(), |p| format!("p99 {p:.1} µs")),
                    m.switch_cpu_sec_per_gb,
                );
                report.latency.push(m);
            }
            TestKind::Udp64 => {
                progress(
                    scenario,
                    &format!("iperf3 UDP 64-byte payloads, -b 0, {d} s"),
                );
                let before = topo.switch_cpu();
                let r = topo.udp64(d)?;
                let cpu = cpu_per_gb(before, topo.switch_cpu(), r.received_bytes);
                let secs = r.sent_seconds.max(1e-9);
                let m = Udp64 {
                    round,
                    scenario: scenario.to_string(),
                    sent_pps: r.sent_packets as f64 / secs,
                    received_pps: r.received_packets as f64 / secs,
                    loss_percent: r.lost_percent,
                    switch_cpu_sec_per_gb: cpu,
                };
                row(
                    scenario,
                    "udp64",
                    &format!("{:.3} Mpps", m.sent_pps / 1e6),
                    &format!(
                        "loss {:.1} %, {:.3} recv",
                        m.loss_percent,
                        m.received_pps / 1e6
                    ),
                    cpu,
                );
                report.udp64.push(m);
            }
        }
    }
    if scenario == host_port::SWITCHYARD && args.tests.contains(&TestKind::Tcp) {
        let f = host_port::frames(&mut topo, round, args.duration, &args.bin_dir)?;
        let avg = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        row(
            scenario,
            "frames",
            &format!("tx {} B", avg(f.host_port_tx_avg_bytes)),
            &format!("rx {} B (-R)", avg(f.host_port_rx_avg_bytes)),
            None,
        );
        report.host_port_frames.push(f);
    }
    Ok(())
}

fn run_scale(args: &Args, report: &mut Report) -> Result<()> {
    let s = scale::run(&args.bin_dir, &args.switchd_arg, args.scale_ports, 5)?;
    let ports = s.ports;
    row(
        "scale",
        "attach",
        &format!("{:.1} ms", s.attach_ms_median),
        &format!("p90 {:.1} ms", s.attach_ms_p90),
        None,
    );
    row(
        "scale",
        "rss",
        &format!("{} KiB", s.rss_kib_idle_ports),
        &format!("{} KiB, 0 ports", s.rss_kib_no_ports),
        None,
    );
    row(
        "scale",
        "idle cpu",
        &format!("{} ticks", s.idle_cpu_ticks),
        &format!("{} s, {} frames in", s.idle_secs, s.idle_rx_frames),
        None,
    );
    row(
        "scale",
        "reach",
        &format!("{}/{}", s.neighbours_reached, s.neighbours_tried),
        "i pings i+1",
        None,
    );
    let all_reached = s.neighbours_reached == s.neighbours_tried;
    report.scale = Some(s);
    if !all_reached {
        bail!("not every one of the {ports} namespaces reached its neighbour");
    }
    Ok(())
}

/// The pairs scenario on switchyard and on the bridge, one after the other; which goes
/// first alternates from round to round.
fn run_pairs(round: u32, args: &Args, report: &mut Report) -> Result<()> {
    let mut paths = pairs::PATHS;
    if round % 2 == 0 {
        paths.reverse();
    }
    for path in paths {
        if interrupted() {
            bail!("interrupted");
        }
        let r = pairs::measure(
            path,
            round,
            args.pairs as usize,
            args.duration,
            &args.bin_dir,
            &args.switchd_arg,
        )?;
        row(
            &format!("pairs {path}"),
            &format!("tcp x{}", r.pairs),
            &format!("{:.2} Gbit/s", r.aggregate_gbit_per_sec),
            &format!(
                "{:.2}–{:.2}/pair, {:.1} s",
                r.min_pair_gbit_per_sec, r.max_pair_gbit_per_sec, r.overlap_secs
            ),
            r.switch_cpu_sec_per_gb,
        );
        report.pairs.push(r);
    }
    Ok(())
}

/// The dns scenario: both servers, from one source and from `--dns-sources`.
fn run_dns(round: u32, args: &Args, report: &mut Report) -> Result<()> {
    let results = dns::measure(
        round,
        args.duration,
        args.dns_sources as usize,
        &args.bin_dir,
        &args.switchd_arg,
    )?;
    for r in results {
        let limited = r
            .rate_limited
            .map_or(String::new(), |n| format!(", {n} rate-limited"));
        row(
            &format!("dns {}", r.server),
            &dns_test(r.sources),
            &format!("{:.0} qps", r.qps),
            &format!("lost {}{limited}", r.lost),
            None,
        );
        report.dns.push(r);
    }
    Ok(())
}

/// The name of a dns ratio: answers per second from `sources` source addresses.
fn dns_test(sources: usize) -> String {
    match sources {
        1 => "qps 1 source".to_string(),
        n => format!("qps {n} sources"),
    }
}

/// The cluster scenario: convergence at each `--cluster-sizes`, then one attach's cost.
fn run_cluster(round: u32, args: &Args, report: &mut Report) -> Result<()> {
    let r = cluster::measure(round, &args.cluster_sizes, &args.bin_dir, &args.switchd_arg)?;
    report.cluster.push(r);
    Ok(())
}

/// The published scenario: the published port and the routed address, same round.
fn run_published(round: u32, args: &Args, report: &mut Report) -> Result<()> {
    let results = published::measure(
        round,
        args.duration,
        args.streams,
        &args.bin_dir,
        &args.switchd_arg,
    )?;
    for r in results {
        row(
            &r.path,
            &r.test,
            &format!("{:.2} Gbit/s", r.gbit_per_sec),
            &format!("retr {}", r.retransmits),
            r.switch_cpu_sec_per_gb,
        );
        report.published.push(r);
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    let _ = topo::ATTACH_ARGS.set(args.attach_arg.clone());
    if !nix::unistd::Uid::effective().is_root() {
        bail!("bench needs root: it creates network namespaces and TAP devices");
    }
    catch_signals()?;
    if args.smoke {
        if args.scenarios.is_empty() {
            args.scenarios = ["switchyard", "published", "dns"]
                .map(String::from)
                .to_vec();
        }
        args.duration = 1;
        args.streams = 1;
        args.dns_sources = args.dns_sources.min(2);
        args.tests = vec![TestKind::Tcp];
        args.no_chart = true;
    }
    let mut scenarios: Vec<String> = Vec::new();
    for s in if args.scenarios.is_empty() {
        vec!["all".to_string()]
    } else {
        args.scenarios.clone()
    } {
        if s == "all" {
            scenarios.extend(ALL.map(String::from));
        } else if s == host_port::GROUP {
            scenarios.extend(host_port::PATHS.map(String::from));
        } else {
            scenarios.push(s);
        }
    }
    scenarios.dedup();

    // The scenarios that take `--tests` (the others have their own).
    let paths = scenarios.iter().any(|s| !OWN_TESTS.contains(&s.as_str()));
    let with_pairs = scenarios.iter().any(|s| s == "pairs");
    let with_published = scenarios.iter().any(|s| s == "published");
    let dns_tools = [("dnsperf", "dnsperf"), (DNSMASQ, "dnsmasq-base")];
    if args.smoke
        && scenarios.iter().any(|s| s == "dns")
        && !dns_tools
            .iter()
            .all(|(what, _)| on_path(what) || Path::new(what).exists())
    {
        // A smoke run installs nothing new for dns: it goes without.
        scenarios.retain(|s| s != "dns");
        println!("-- dns: skipped: dnsperf or dnsmasq is not installed");
    }
    let with_dns = scenarios.iter().any(|s| s == "dns");
    let with_cluster = scenarios.iter().any(|s| s == "cluster");
    let mut needs = vec![("ip", "iproute2"), ("ping", "iputils-ping")];
    if with_pairs || with_published || (paths && args.tests.iter().any(|t| *t != TestKind::Latency))
    {
        needs.push(("iperf3", "iperf3"));
    }
    if with_dns {
        needs.extend(dns_tools);
    }
    if with_cluster {
        needs.push(("etcd", "etcd-server"));
    }
    if paths && args.tests.contains(&TestKind::Latency) {
        needs.push(("sockperf", "sockperf"));
    }
    let chart = !args.no_chart && paths && args.tests.contains(&TestKind::Tcp);
    if chart {
        needs.push((chart::FONT, "fonts-dejavu-core"));
    }
    ensure_installed(&needs)?;

    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let mut report = Report {
        timestamp,
        machine: machine(),
        settings: Settings {
            duration_secs: args.duration,
            rounds: args.rounds,
            streams: args.streams,
            tests: args.tests.clone(),
            scenarios: scenarios.clone(),
            ovs_userspace_tso: None,
            pairs: with_pairs.then_some(args.pairs),
            dns_sources: with_dns.then_some(args.dns_sources),
            cluster_sizes: with_cluster.then(|| args.cluster_sizes.clone()),
            switchd_args: args.switchd_arg.clone(),
            attach_args: args.attach_arg.clone(),
        },
        throughput: Vec::new(),
        latency: Vec::new(),
        udp64: Vec::new(),
        scale: None,
        pairs: Vec::new(),
        dns: Vec::new(),
        published: Vec::new(),
        cluster: Vec::new(),
        host_port_frames: Vec::new(),
        ratios: Vec::new(),
        ratio_summary: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };

    println!(
        "{:<20} {:<10} {:>15}  {:<24} {:>15}",
        "SCENARIO", "TEST", "RESULT", "DETAIL", "SWITCH CPU S/GB"
    );
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("-- round {round} of {}", args.rounds);
        }
        for scenario in &scenarios {
            if interrupted() {
                break;
            }
            // Scale is not a ratio: once is enough.
            if round > 1 && scenario == "scale" {
                continue;
            }
            if scenario == "ovs" && !ovs::installed() {
                if round == 1 {
                    let reason =
                        "ovs-vswitchd is not installed (apt-get install openvswitch-switch)";
                    println!("-- ovs: skipped: {reason}");
                    report.skipped.push(Note {
                        scenario: scenario.clone(),
                        reason: reason.into(),
                    });
                }
                continue;
            }
            let result = match scenario.as_str() {
                "scale" => run_scale(&args, &mut report),
                "pairs" => run_pairs(round, &args, &mut report),
                "dns" => run_dns(round, &args, &mut report),
                "published" => run_published(round, &args, &mut report),
                "cluster" => run_cluster(round, &args, &mut report),
                _ => run_scenario(scenario, round, &args, &mut report),
            };
            if let Err(e) = result {
                println!("-- {scenario}: FAILED: {e:#}");
                report.failed.push(Note {
                    scenario: scenario.clone(),
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    if interrupted() {
        bail!("interrupted; everything the bench built is removed");
    }

    report.ratios = ratios(&report);
    report.ratio_summary = summarize(&report.ratios);
    if !args.smoke {
        print_summary(&report, &scenarios);
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let path = args.out.join(format!("{timestamp}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nresults: {}", path.display());
        if chart && !report.throughput.is_empty() {
            let png = args.out.join(format!("{timestamp}.png"));
            draw_chart(&png, &report, &scenarios)?;
            println!("chart:   {}", png.display());
        }
    }
    if !report.failed.is_empty() {
        let names: Vec<&str> = report.failed.iter().map(|n| n.scenario.as_str()).collect();
        bail!("failed: {}", names.join(", "));
    }
    if args.smoke {
        println!("smoke: ok");
    }
    Ok(())
}

/// ours / base for every pair measured in the same round.
fn ratios(report: &Report) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut push = |round: u32, ours: &str, base: &str, test: String, a: f64, b: f64| {
        if b > 0.0 {
            out.push(Ratio {
                round,
                ours: ours.into(),
                base: base.into(),
                test,
                ratio: a / b,
            });
        }
    };
    for round in 1..=report.settings.rounds {
        for (ours, base) in RATIOS {
            for m in report
                .throughput
                .iter()
                .filter(|m| m.scenario == ours && m.round == round)
            {
                if let Some(b) = report
                    .throughput
                    .iter()
                    .find(|b| b.scenario == base && b.test == m.test && b.round == round)
                {
                    push(
                        round,
                        ours,
                        base,
                        m.test.clone(),
                        m.gbit_per_sec,
                        b.gbit_per_sec,
                    );
                }
            }
            let find = |s: &str| {
                report
                    .latency
                    .iter()
                    .find(|m| m.scenario == s && m.round == round)
            };
            if let (Some(a), Some(b)) = (find(ours), find(base)) {
                push(round, ours, base, "latency".into(), a.avg_us, b.avg_us);
            }
            let find = |s: &str| {
                report
                    .udp64
                    .iter()
                    .find(|m| m.scenario == s && m.round == round)
            };
            if let (Some(a), Some(b)) = (find(ours), find(base)) {
                push(
                    round,
                    ours,
                    base,
                    "udp64 delivered pps".into(),
                    a.received_pps,
                    b.received_pps,
                );
            }
        }
        let [ours, base] = dns::SERVERS;
        for a in report
            .dns
            .iter()
            .filter(|m| m.server == ours && m.round == round)
        {
            if let Some(b) = report
                .dns
                .iter()
                .find(|b| b.server == base && b.sources == a.sources && b.round == round)
            {
                push(
                    round,
                    "switchd-dns",
                    base,
                    dns_test(a.sources),
                    a.qps,
                    b.qps,
                );
            }
        }
        let [ours, base] = published::PATHS;
        for a in report
            .published
            .iter()
            .filter(|m| m.path == ours && m.round == round)
        {
            if let Some(b) = report
                .published
                .iter()
                .find(|b| b.path == base && b.test == a.test && b.round == round)
            {
                push(
                    round,
                    ours,
                    base,
                    a.test.clone(),
                    a.gbit_per_sec,
                    b.gbit_per_sec,
                );
            }
        }
        let [ours, base] = pairs::PATHS;
        let find = |path: &str| {
            report
                .pairs
                .iter()
                .find(|m| m.path == path && m.round == round)
        };
        if let (Some(a), Some(b)) = (find(ours), find(base)) {
            push(
                round,
                ours,
                base,
                pairs_test(a.pairs),
                a.aggregate_gbit_per_sec,
                b.aggregate_gbit_per_sec,
            );
        }
    }
    out
}

/// The name of the pairs scenario's ratio: aggregate Gbit/s over `pairs` pairs.
fn pairs_test(pairs: usize) -> String {
    format!("tcp {pairs} pairs")
}

/// Each ratio's median and range over the rounds, in the order first measured.
fn summarize(ratios: &[Ratio]) -> Vec<RatioSummary> {
    let mut out: Vec<RatioSummary> = Vec::new();
    for r in ratios {
        if out
            .iter()
            .any(|s| (&s.ours, &s.base, &s.test) == (&r.ours, &r.base, &r.test))
        {
            continue;
        }
        let values: Vec<f64> = ratios
            .iter()
            .filter(|o| (&o.ours, &o.base, &o.test) == (&r.ours, &r.base, &r.test))
            .map(|o| o.ratio)
            .collect();
        if let Some(median) = median(values.iter().copied()) {
            out.push(RatioSummary {
                ours: r.ours.clone(),
                base: r.base.clone(),
                test: r.test.clone(),
                rounds: values.len(),
                median,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
        }
    }
    out
}

/// The median, over the rounds, of `value` of the measurements `keep` picks.
fn median_of<T>(
    measurements: &[T],
    keep: impl Fn(&T) -> bool,
    value: impl Fn(&T) -> Option<f64>,
) -> Option<f64> {
    median(measurements.iter().filter(|m| keep(m)).filter_map(value))
}

/// The median of `values` (the mean of the middle two for an even count); `None` for none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The whole run as one Markdown table (one row per scenario), the scale figures and the
/// ratios.
fn print_summary(report: &Report, scenarios: &[String]) {
    let streams = report.settings.streams;
    let many = test_name(streams);
    let measured: Vec<&String> = scenarios
        .iter()
        .filter(|s| {
            report.throughput.iter().any(|m| &m.scenario == *s)
                || report.latency.iter().any(|m| &m.scenario == *s)
                || report.udp64.iter().any(|m| &m.scenario == *s)
        })
        .collect();
    println!(
        "\n{} · {} CPUs · Linux {} · {}s per run",
        report.machine.cpu_model,
        report.machine.cpus,
        report.machine.kernel,
        report.settings.duration_secs
    );
    if !measured.is_empty() {
        if report.settings.rounds > 1 {
            println!(
                "\neach figure: the median of {} rounds",
                report.settings.rounds
            );
        }
        println!(
            "\n| scenario | tcp Gbit/s | cpu s/GB | {many} Gbit/s | cpu s/GB | latency µs | cpu s/GB \
             | udp64 Mpps sent | loss % | Mpps delivered | cpu s/GB |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for scenario in measured {
            // Medians over the rounds (with one round, the figure itself).
            let tp = |test: &str, f: &dyn Fn(&Throughput) -> Option<f64>| {
                median_of(
                    &report.throughput,
                    |m| &m.scenario == scenario && m.test == test,
                    f,
                )
            };
            let lat = |f: &dyn Fn(&Latency) -> Option<f64>| {
                median_of(&report.latency, |m| &m.scenario == scenario, f)
            };
            let udp = |f: &dyn Fn(&Udp64) -> Option<f64>| {
                median_of(&report.udp64, |m| &m.scenario == scenario, f)
            };
            let dash = || "–".to_string();
            let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(dash, f);
            let cpu = |v: Option<f64>| v.map_or_else(dash, |c| fmt_cpu(Some(c)));
            println!(
                "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(tp("tcp", &|m| Some(m.gbit_per_sec)), &|v| format!("{v:.2}")),
                cpu(tp("tcp", &|m| m.switch_cpu_sec_per_gb)),
                cell(tp(&many, &|m| Some(m.gbit_per_sec)), &|v| format!("{v:.2}")),
                cpu(tp(&many, &|m| m.switch_cpu_sec_per_gb)),
                cell(lat(&|m| Some(m.avg_us)), &|v| format!("{v:.1}")),
                cpu(lat(&|m| m.switch_cpu_sec_per_gb)),
                cell(udp(&|m| Some(m.sent_pps / 1e6)), &|v| format!("{v:.3}")),
                cell(udp(&|m| Some(m.loss_percent)), &|v| format!("{v:.1}")),
                cell(udp(&|m| Some(m.received_pps / 1e6)), &|v| format!("{v:.3}")),
                cpu(udp(&|m| m.switch_cpu_sec_per_gb)),
            );
        }
        println!(
            "\ncpu s/GB: CPU seconds (user + system) of the userspace switch in the path (switchd, \
             both switchds in the overlay, ovs-vswitchd) per GB of payload received; – for the \
             kernel's paths. latency: sockperf's average, half a TCP round trip of \
             {SOCKPERF_MSG_SIZE}-byte messages. udp64: iperf3 -u -l 64 -b 0, packets/s the \
             client sent and the server received."
        );
    }
    if !report.pairs.is_empty() {
        print_pairs(report);
    }
    if !report.dns.is_empty() {
        print_dns(report);
    }
    if !report.published.is_empty() {
        print_published(report);
    }
    if !report.cluster.is_empty() {
        cluster::print(&report.cluster);
    }
    if !report.host_port_frames.is_empty() {
        host_port::print(&report.host_port_frames);
    }
    if let Some(tso) = report.settings.ovs_userspace_tso {
        println!(
            "\novs: userspace datapath, TAP ports, userspace TSO {}",
            if tso { "on" } else { "off" }
        );
    }
    if let Some(s) = &report.scale {
        println!(
            "\nscale: {} namespaces on one switchd: attach median {:.1} ms, p90 {:.1} ms, \
             max {:.1} ms; switchd RSS {} KiB with {} idle ports ({} KiB with none); \
             idle CPU {} ticks in {} s ({} ticks/s, {} frames received meanwhile); \
             neighbours reached {}/{}",
            s.ports,
            s.attach_ms_median,
            s.attach_ms_p90,
            s.attach_ms_max,
            s.rss_kib_idle_ports,
            s.ports,
            s.rss_kib_no_ports,
            s.idle_cpu_ticks,
            s.idle_secs,
            s.ticks_per_second,
            s.idle_rx_frames,
            s.neighbours_reached,
            s.neighbours_tried
        );
    }
    if !report.ratio_summary.is_empty() {
        let rounds = report.settings.rounds;
        if rounds > 1 {
            println!(
                "\nratios (each round's own pair; median, then the range over the rounds; \
                 latency above 1 means slower, the others above 1 faster):"
            );
        } else {
            println!(
                "\nratios (same run; latency above 1 means slower, the others above 1 faster):"
            );
        }
        for r in &report.ratio_summary {
            let range = if r.rounds > 1 {
                format!("  ({:.2}–{:.2}, {} rounds)", r.min, r.max, r.rounds)
            } else {
                String::new()
            };
            println!(
                "  {:<18} / {:<13} {:<20} {:.2}x{range}",
                r.ours, r.base, r.test, r.median
            );
        }
    }
    for n in &report.skipped {
        println!("skipped {}: {}", n.scenario, n.reason);
    }
    for n in &report.failed {
        println!("FAILED {}: {}", n.scenario, n.reason);
    }
}

/// The pairs scenario's own table: one row per path, each figure the median over the
/// rounds.
fn print_pairs(report: &Report) {
    let pairs = report.settings.pairs.unwrap_or(0);
    let rounds = match report.settings.rounds {
        1 => String::new(),
        n => format!("; each figure the median of {n} rounds"),
    };
    println!(
        "\npairs: {pairs} client/server pairs per switch, every client at once (one iperf3 TCP \
         stream each, {} s){rounds}",
        report.settings.duration_secs
    );
    println!(
        "\n| path | aggregate Gbit/s | slowest pair | fastest pair | retransmits | all running s \
         | cpu s/GB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for path in pairs::PATHS {
        let of = |f: &dyn Fn(&PairsResult) -> Option<f64>| {
            median_of(&report.pairs, |m| m.path == path, f)
        };
        let Some(aggregate) = of(&|m| Some(m.aggregate_gbit_per_sec)) else {
            continue;
        };
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
        };
        println!(
            "| {path} | {aggregate:.2} | {} | {} | {} | {} | {} |",
            cell(of(&|m| Some(m.min_pair_gbit_per_sec)), 2),
            cell(of(&|m| Some(m.max_pair_gbit_per_sec)), 2),
            cell(of(&|m| Some(m.retransmits as f64)), 0),
            cell(of(&|m| Some(m.overlap_secs)), 1),
            of(&|m| m.switch_cpu_sec_per_gb).map_or_else(|| "–".to_string(), |c| fmt_cpu(Some(c))),
        );
    }
    println!(
        "\nslowest/fastest pair: Gbit/s of one pair. all running s: how long every client was \
         running at once (the last start to the first exit). cpu s/GB: switchd's CPU seconds \
         per GB over all the pairs; – for the bridge."
    );
}

/// The dns scenario's table: one row per server and source count, each figure the median
/// over the rounds.
fn print_dns(report: &Report) {
    let rounds = match report.settings.rounds {
        1 => String::new(),
        n => format!("; each figure the median of {n} rounds"),
    };
    println!(
        "\ndns: dnsperf A queries for {} names from one client namespace, {} s after a warm-up{rounds}",
        dns::NAMES,
        report.settings.duration_secs
    );
    println!(
        "\n| server | sources | answers/s | lost/s | rate-limited/s | latency ms | cpu µs/answer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut keys: Vec<(String, usize)> = Vec::new();
    for m in &report.dns {
        if !keys.contains(&(m.server.clone(), m.sources)) {
            keys.push((m.server.clone(), m.sources));
        }
    }
    keys.sort_by_key(|(server, sources)| (*sources, server != "switchd"));
    for (server, sources) in keys {
        let of = |f: &dyn Fn(&DnsResult) -> Option<f64>| {
            median_of(
                &report.dns,
                |m| m.server == server && m.sources == sources,
                f,
            )
        };
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
        };
        let per_sec = |n: u64, m: &DnsResult| n as f64 / m.seconds.max(1e-9);
        println!(
            "| {server} | {sources} | {} | {} | {} | {} | {} |",
            cell(of(&|m| Some(m.qps)), 0),
            cell(of(&|m| Some(per_sec(m.lost, m))), 0),
            cell(of(&|m| m.rate_limited.map(|n| per_sec(n, m))), 0),
            cell(of(&|m| m.avg_latency_ms), 3),
            cell(of(&|m| m.server_cpu_us_per_answer), 1),
        );
    }
    println!(
        "\nanswers/s: dnsperf's queries per second, summed over the sources (one dnsperf \
         each, -t 1; -q 64 from one source, 256 over several, at least 1 each). rate-limited/s: switchd's rate_limited counter (500 queries/s \
         per source address by default). cpu: the server's CPU seconds (switchd's, \
         dnsmasq's) per answer."
    );
}

/// The published scenario's table: one row per path and test, medians over the rounds.
fn print_published(report: &Report) {
    let rounds = match report.settings.rounds {
        1 => String::new(),
        n => format!("; each figure the median of {n} rounds"),
    };
    println!(
        "\npublished: iperf3 TCP from an external namespace to a container, {} s{rounds}",
        report.settings.duration_secs
    );
    println!("\n| path | test | Gbit/s | retransmits | cpu s/GB |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let mut keys: Vec<(String, String)> = Vec::new();
    for m in &report.published {
        if !keys.contains(&(m.path.clone(), m.test.clone())) {
            keys.push((m.path.clone(), m.test.clone()));
        }
    }
    keys.sort_by_key(|(path, test)| (test.clone(), path != "published"));
    for (path, test) in keys {
        let of = |f: &dyn Fn(&PublishedResult) -> Option<f64>| {
            median_of(&report.published, |m| m.path == path && m.test == test, f)
        };
        let dash = || "–".to_string();
        println!(
            "| {path} | {test} | {} | {} | {} |",
            of(&|m| Some(m.gbit_per_sec)).map_or_else(dash, |v| format!("{v:.2}")),
            of(&|m| Some(m.retransmits as f64)).map_or_else(dash, |v| format!("{v:.0}")),
            of(&|m| m.switch_cpu_sec_per_gb).map_or_else(dash, |c| fmt_cpu(Some(c))),
        );
    }
    println!(
        "\npublished: to switchd's namespace's address, port 8080, DNAT to the container's \
         5201. routed: to the container's address, through the same namespace, no DNAT. \
         cpu s/GB: switchd's."
    );
}

fn draw_chart(path: &Path, report: &Report, scenarios: &[String]) -> Result<()> {
    let many = test_name(report.settings.streams);
    let groups: Vec<chart::Group> = scenarios
        .iter()
        .filter_map(|s| {
            let find = |test: &str| {
                median_of(
                    &report.throughput,
                    |m| &m.scenario == s && m.test == test,
                    |m| Some(m.gbit_per_sec),
                )
            };
            let (one, many) = (find("tcp"), find(&many));
            (one.is_some() || many.is_some()).then(|| chart::Group {
                label: s.clone(),
                one,
                many,
            })
        })
        .collect();
    let date = first_line(&["date", "-u", "-d", &format!("@{}", report.timestamp), "+%F"])
        .unwrap_or_default();
    let rounds = match report.settings.rounds {
        1 => String::new(),
        n => format!(", median of {n} rounds"),
    };
    let title = format!(
        "iperf3 TCP throughput, Gbit/s ({} CPUs, Linux {}, {date}{rounds})",
        report.machine.cpus, report.machine.kernel
    );
    chart::draw(path, &title, report.settings.streams, &groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratio(round: u32, test: &str, value: f64) -> Ratio {
        Ratio {
            round,
            ours: "switchyard".into(),
            base: "bridge".into(),
            test: test.into(),
            ratio: value,
        }
    }

    fn pairs_result(round: u32, path: &str, gbit_per_sec: f64) -> PairsResult {
        PairsResult {
            round,
            path: path.into(),
            pairs: 16,
            aggregate_gbit_per_sec: gbit_per_sec,
            min_pair_gbit_per_sec: gbit_per_sec / 16.0,
            max_pair_gbit_per_sec: gbit_per_sec / 16.0,
            pair_gbit_per_sec: vec![gbit_per_sec / 16.0; 16],
            bytes: 0,
            retransmits: 0,
            overlap_secs: 5.0,
            switch_cpu_sec_per_gb: None,
        }
    }

    fn report(rounds: u32, pairs: Vec<PairsResult>) -> Report {
        Report {
            timestamp: 0,
            machine: Machine {
                kernel: String::new(),
                cpus: 2,
                cpu_model: String::new(),
                memory_kib: 0,
                iperf3: None,
                sockperf: None,
                ovs: None,
                git_commit: None,
            },
            settings: Settings {
                duration_secs: 5,
                rounds,
                streams: 4,
                tests: vec![TestKind::Tcp],
                scenarios: vec!["pairs".into()],
                ovs_userspace_tso: None,
                pairs: Some(16),
                dns_sources: None,
                cluster_sizes: None,
                switchd_args: Vec::new(),
                attach_args: Vec::new(),
            },
            throughput: Vec::new(),
            latency: Vec::new(),
            udp64: Vec::new(),
            scale: None,
            pairs,
            dns: Vec::new(),
            published: Vec::new(),
            cluster: Vec::new(),
            host_port_frames: Vec::new(),
            ratios: Vec::new(),
            ratio_summary: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
        }
    }

    #[test]
    fn pairs_ratio_within_each_round() {
        // Round 2 measured the bridge first; round 3 lost its bridge side (no ratio).
        let report = report(
            3,
            vec![
                pairs_result(1, "switchyard", 15.0),
                pairs_result(1, "bridge", 20.0),
                pairs_result(2, "bridge", 25.0),
                pairs_result(2, "switchyard", 20.0),
                pairs_result(3, "switchyard", 30.0),
            ],
        );
        let ratios = ratios(&report);
        let got: Vec<(u32, &str, f64)> = ratios
            .iter()
            .map(|r| (r.round, r.test.as_str(), r.ratio))
            .collect();
        assert_eq!(got, [(1, "tcp 16 pairs", 0.75), (2, "tcp 16 pairs", 0.8)]);
        let summary = summarize(&ratios);
        assert_eq!(summary.len(), 1);
        assert_eq!(
            (summary[0].ours.as_str(), summary[0].base.as_str()),
            ("switchyard", "bridge")
        );
        assert_eq!((summary[0].min, summary[0].max), (0.75, 0.8));
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
        // A figure that is not a number does not move the median.
        assert_eq!(median([f64::NAN, 5.0].into_iter()), Some(5.0));
    }

    #[test]
    fn summary_per_test_over_rounds() {
        let ratios = [
            ratio(1, "tcp", 0.80),
            ratio(1, "latency", 0.5),
            ratio(2, "tcp", 0.95),
            ratio(3, "tcp", 0.90),
        ];
        let summary = summarize(&ratios);
        assert_eq!(summary.len(), 2);
        let tcp = &summary[0];
        assert_eq!((tcp.test.as_str(), tcp.rounds), ("tcp", 3));
        assert_eq!((tcp.median, tcp.min, tcp.max), (0.90, 0.80, 0.95));
        let latency = &summary[1];
        assert_eq!((latency.rounds, latency.median), (1, 0.5));
    }
}
