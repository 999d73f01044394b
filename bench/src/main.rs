//! `bench`: measures switchyard against the kernel's own data paths with iperf3, in one run,
//! so that the figures compare as ratios on a noisy machine.
//!
//! Every scenario builds its topology in namespaces it creates (unique names) and removes
//! them when it ends, even on failure. Results are printed as a table and written to
//! `bench/results/<timestamp>.json`.
//!
//! Scenarios:
//! * `veth` — a veth pair between the two namespaces, nothing in between (the limit).
//! * `bridge` — a Linux bridge in a third namespace, veth pairs to it.
//! * `switchyard` — switchd with TAP ports, attached by nsutil.
//! * `kernel-vxlan` — two host namespaces joined by a veth underlay, each with a Linux
//!   bridge and the kernel's VXLAN device (VNI 42); containers on veths, MTU 1450.
//! * `switchyard-overlay` — the same underlay with a switchd VTEP in each host namespace.

mod topo;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;

use topo::{Iperf, Topology};

/// Every scenario, in the order a full run measures them.
const SCENARIOS: [&str; 5] = [
    "veth",
    "bridge",
    "switchyard",
    "kernel-vxlan",
    "switchyard-overlay",
];

#[derive(Parser, Debug)]
#[command(about = "Benchmark switchyard against the Linux bridge with iperf3")]
struct Args {
    /// Scenarios to run, in order [default: all]
    #[arg(value_parser = SCENARIOS)]
    scenarios: Vec<String>,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// Parallel TCP streams per run (also runs a single stream when above 1).
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// Where the workspace binaries are (switchd, nsutil).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Directory for the JSON results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Serialize, Debug)]
struct Measurement {
    scenario: String,
    test: String,
    gbit_per_sec: f64,
    retransmits: u64,
    /// switchd CPU time per GB forwarded (user + system), when switchd is in the path.
    switchd_cpu_sec_per_gb: Option<f64>,
}

#[derive(Serialize, Debug)]
struct Report {
    timestamp: u64,
    machine: Machine,
    duration_secs: u32,
    measurements: Vec<Measurement>,
}

#[derive(Serialize, Debug)]
struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
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
    Machine {
        kernel,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
    }
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        bail!("bench needs root: it creates network namespaces and TAP devices");
    }
    if args.scenarios.is_empty() {
        args.scenarios = SCENARIOS.map(String::from).to_vec();
    }
    let mut tests = vec![("tcp", 1)];
    if args.streams > 1 {
        tests.push(("tcp-parallel", args.streams));
    }

    let mut measurements = Vec::new();
    println!(
        "{:<20} {:<18} {:>8} {:>8} {:>10}",
        "SCENARIO", "TEST", "GBIT/S", "RETR", "CPU S/GB"
    );
    for scenario in &args.scenarios {
        let topo = Topology::build(scenario, &args.bin_dir)
            .with_context(|| format!("cannot set up scenario {scenario}"))?;
        for (test, streams) in &tests {
            let run = Iperf {
                duration: args.duration,
                streams: *streams,
            };
            let cpu_before = topo.switchd_cpu();
            let result = topo.iperf(&run)?;
            let switchd_cpu_sec_per_gb = match (cpu_before, topo.switchd_cpu()) {
                (Some(before), Some(after)) if result.bytes > 0 => {
                    Some((after - before).as_secs_f64() / (result.bytes as f64 / 1e9))
                }
                _ => None,
            };
            let m = Measurement {
                scenario: scenario.clone(),
                test: format!(
                    "{test}{}",
                    if *streams > 1 {
                        format!(" -P {streams}")
                    } else {
                        String::new()
                    }
                ),
                gbit_per_sec: result.bits_per_second / 1e9,
                retransmits: result.retransmits,
                switchd_cpu_sec_per_gb,
            };
            println!(
                "{:<20} {:<18} {:>8.2} {:>8} {:>10}",
                m.scenario,
                m.test,
                m.gbit_per_sec,
                m.retransmits,
                m.switchd_cpu_sec_per_gb
                    .map_or("-".to_string(), |c| format!("{c:.3}"))
            );
            measurements.push(m);
        }
        drop(topo);
    }
    print_ratios(&measurements);

    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let report = Report {
        timestamp,
        machine: machine(),
        duration_secs: args.duration,
        measurements,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join(format!("{timestamp}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("\nresults: {}", path.display());
    Ok(())
}

/// Each switchyard scenario's throughput relative to its kernel counterpart (the Linux
/// bridge, the kernel's VXLAN) in the same test, same run.
fn print_ratios(measurements: &[Measurement]) {
    println!("\nrelative to the kernel (same run):");
    for (ours, kernel) in [
        ("switchyard", "bridge"),
        ("switchyard-overlay", "kernel-vxlan"),
    ] {
        for m in measurements.iter().filter(|m| m.scenario == ours) {
            let Some(base) = measurements
                .iter()
                .find(|b| b.scenario == kernel && b.test == m.test)
            else {
                continue;
            };
            println!(
                "  {:<20} {:<18} {:.2}x {kernel}",
                m.scenario,
                m.test,
                m.gbit_per_sec / base.gbit_per_sec
            );
        }
    }
}
