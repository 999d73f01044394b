//! The `published` scenario: iperf3 TCP through a published port, beside the same flow
//! routed to the container's own address, in the same round.
//!
//! switchd runs in a namespace of its own (`syb<pid>h`) with a veth (10.93.0.1) to an
//! "external" namespace (`syb<pid>x`, 10.93.0.2), as in `tools/tests/networks.rs`. One
//! network, `bench` (10.95.0.0/24, no masquerade), and one container (`syb<pid>s`,
//! 10.95.0.2) attached with `--publish 8080:5201`, its iperf3 server on 5201. The external
//! namespace has a route to 10.95.0.0/24 via switchd's namespace, so it reaches the
//! container two ways: `published`, to 10.93.0.1:8080 (DNAT in switchd's namespace's
//! nftables table), and `routed`, to 10.95.0.2:5201 (the same kernel forwarding, uplink
//! TUN and switchd router, without the DNAT). TCP only, 1 stream and `--streams` streams,
//! whatever `--tests` says; which path goes first alternates from round to round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::topo::{address, parse_iperf, serve_in, sh, IperfResult, Topology};
use crate::{cpu_per_gb, interrupted, progress, test_name};

/// The two paths, in the order odd rounds measure them.
pub const PATHS: [&str; 2] = ["published", "routed"];
const HOST_IP: &str = "10.93.0.1";
const CONTAINER_IP: &str = "10.95.0.2";
const PUBLISHED_PORT: &str = "8080";

#[derive(Serialize, Debug)]
pub struct PublishedResult {
    /// Which round of `--rounds` (from 1).
    pub round: u32,
    /// `published` or `routed`.
    pub path: String,
    pub test: String,
    pub streams: u32,
    pub gbit_per_sec: f64,
    pub retransmits: u64,
    /// switchd's CPU time (user + system) per GB received.
    pub switch_cpu_sec_per_gb: Option<f64>,
}

/// Where the client connects on `path`.
fn target(path: &str) -> (&'static str, &'static str) {
    if path == "published" {
        (HOST_IP, PUBLISHED_PORT)
    } else {
        (CONTAINER_IP, "5201")
    }
}

/// Builds the site and measures both paths with 1 stream and with `streams`.
pub fn measure(
    round: u32,
    duration: u32,
    streams: u32,
    bin_dir: &Path,
    switchd_args: &[String],
) -> Result<Vec<PublishedResult>> {
    progress("published", "setting up");
    let mut topo = Topology::empty(switchd_args);
    let host = topo.add_ns("h")?;
    let external = topo.add_ns("x")?;
    sh(&[
        "ip", "link", "add", "out0", "netns", &host, "type", "veth", "peer", "name", "in0",
        "netns", &external,
    ])?;
    for (ns, dev, cidr) in [
        (&host, "out0", "10.93.0.1/24"),
        (&external, "in0", "10.93.0.2/24"),
    ] {
        address(ns, dev, cidr)?;
    }
    let socket = topo.start_switchd(bin_dir, Some(&host), &["--dns", "off"])?;
    topo.swctl(
        bin_dir,
        &socket,
        &["network", "create", "bench", "--subnet", "10.95.0.0/24"],
    )?;
    let container = topo.add_ns("s")?;
    let publish = format!("{PUBLISHED_PORT}:5201");
    topo.nsutil(
        bin_dir,
        &socket,
        &[
            "attach",
            &container,
            "--network",
            "bench",
            "--ip",
            CONTAINER_IP,
            "--publish",
            &publish,
        ],
    )?;
    sh(&[
        "ip",
        "-n",
        &external,
        "route",
        "add",
        "10.95.0.0/24",
        "via",
        HOST_IP,
    ])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !topo.ping(&external, CONTAINER_IP) {
        if Instant::now() > deadline {
            bail!("published: the external namespace cannot reach the container");
        }
        if interrupted() {
            bail!("interrupted");
        }
    }
    let _server = serve_in(&container, &["iperf3", "-s"], 5201)?;

    let mut paths = PATHS;
    if round % 2 == 0 {
        paths.reverse();
    }
    let mut runs = vec![1];
    if streams > 1 {
        runs.push(streams);
    }
    let mut out = Vec::new();
    for streams in runs {
        for path in paths {
            if interrupted() {
                bail!("interrupted");
            }
            let (ip, port) = target(path);
            let plural = if streams > 1 { "s" } else { "" };
            progress(
                "published",
                &format!(
                    "{path}: iperf3 TCP to {ip}:{port}, {streams} stream{plural}, {duration} s"
                ),
            );
            let before = topo.switch_cpu();
            let r = iperf(&external, ip, port, duration, streams)?;
            let cpu = cpu_per_gb(before, topo.switch_cpu(), r.bytes);
            out.push(PublishedResult {
                round,
                path: path.to_string(),
                test: test_name(streams),
                streams,
                gbit_per_sec: r.bits_per_second / 1e9,
                retransmits: r.retransmits,
                switch_cpu_sec_per_gb: cpu,
            });
        }
    }
    Ok(out)
}

fn iperf(ns: &str, ip: &str, port: &str, duration: u32, streams: u32) -> Result<IperfResult> {
    let (duration, streams) = (duration.to_string(), streams.to_string());
    let out = sh(&[
        "ip", "netns", "exec", ns, "iperf3", "-c", ip, "-p", port, "-t", &duration, "-P", &streams,
        "-J",
    ])?;
    parse_iperf(&out)
}
