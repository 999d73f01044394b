//! The `host-port` scenario: a container on the LAN, three ways, in the same round.
//!
//! A veth pair plays the host's NIC: `nic0` in a "host" namespace (`syb<pid>h`), `lan0` in
//! the LAN namespace, which is the server namespace of [`Topology`] (`syb<pid>s`): the
//! LAN's host (10.99.0.2, the iperf3 and sockperf server) and its router (10.99.0.254,
//! a second address). The client namespace (`syb<pid>c`) is the container, 10.99.0.1,
//! on the LAN's subnet. Three paths from the container to the LAN host, each built fresh
//! on the same `nic0`:
//!
//! * `lan-switchyard` — switchd in the host namespace, `nic0` its host port (`swctl port
//!   add nic0`, AF_PACKET with vnet headers), a LAN network on it (`swctl network create
//!   lan --parent nic0 --subnet 10.99.0.0/24 --gateway 10.99.0.254`) and the container
//!   attached to it by nsutil (a TAP in the container).
//! * `lan-bridge` — a Linux bridge in the host namespace with `nic0` enslaved and the
//!   container on a veth into the same bridge: the kernel's way, the base of the ratios.
//! * `lan-macvlan` — Docker's macvlan driver done by hand: a macvlan device (mode bridge)
//!   on `nic0`, moved into the container namespace as its `eth0`.
//!
//! `host-port` stands for all three (bridge first). Each is an ordinary scenario to
//! `run_scenario` (TCP with 1 and `--streams` streams, latency, udp64, as `--tests`
//! says); the ratios are against `lan-bridge` in the same round. On the switchyard path
//! the bench also reads switchd's port counters around a one-stream TCP run each way
//! ([`frames`]): the average frame the host port sent to the LAN and received from it,
//! which shows whether super-frames cross the AF_PACKET socket whole.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::topo::{address, bridge_port, parse_iperf, serve_in, sh, Topology};
use crate::{interrupted, progress};

/// What `host-port` stands for, in the order a round measures them.
pub const PATHS: [&str; 3] = ["lan-bridge", "lan-switchyard", "lan-macvlan"];
/// The scenario name that runs [`PATHS`].
pub const GROUP: &str = "host-port";
/// The path through switchd.
pub const SWITCHYARD: &str = "lan-switchyard";
/// The ratios: each path against the bridge.
pub const RATIOS: [(&str, &str); 2] = [
    ("lan-switchyard", "lan-bridge"),
    ("lan-macvlan", "lan-bridge"),
];

/// The host's NIC (in the host namespace) and its other end (in the LAN namespace).
pub const NIC: &str = "nic0";
const LAN_END: &str = "lan0";
const SUBNET: &str = "10.99.0.0/24";
const CONTAINER_IP: &str = "10.99.0.1";
const CONTAINER_CIDR: &str = "10.99.0.1/24";
const LAN_HOST_CIDR: &str = "10.99.0.2/24";
const LAN_HOST_IP: &str = "10.99.0.2";
const ROUTER_IP: &str = "10.99.0.254";
const ROUTER_CIDR: &str = "10.99.0.254/24";

/// switchd's port counters around one TCP stream each way on the switchyard path.
#[derive(Serialize, Debug)]
pub struct FrameSizes {
    pub round: u32,
    pub scenario: String,
    /// Container → LAN: Gbit/s of the one stream the counters were read around.
    pub to_lan_gbit_per_sec: f64,
    /// Bytes per frame the host port sent to the LAN (`tx_bytes / tx_packets`).
    pub host_port_tx_avg_bytes: Option<f64>,
    /// Bytes per frame switchd read from the container's TAP in the same run.
    pub container_rx_avg_bytes: Option<f64>,
    /// LAN → container (`iperf3 -R`).
    pub from_lan_gbit_per_sec: f64,
    /// Bytes per frame the host port read from the LAN (`rx_bytes / rx_packets`).
    pub host_port_rx_avg_bytes: Option<f64>,
    pub host_port_tx_packets: u64,
    pub host_port_rx_packets: u64,
}

/// Builds `path` on a [`Topology`] whose `c` (container) and `s` (LAN) namespaces exist.
pub fn build(topo: &mut Topology, path: &str, bin_dir: &Path) -> Result<()> {
    let container = topo.ns("c");
    let lan = topo.ns("s");
    let host = if path == "lan-bridge" {
        topo.add_bridge("h")?
    } else {
        topo.add_ns("h")?
    };
    sh(&[
        "ip", "link", "add", NIC, "netns", &host, "type", "veth", "peer", "name", LAN_END, "netns",
        &lan,
    ])?;
    sh(&["ip", "-n", &host, "link", "set", NIC, "up"])?;
    address(&lan, LAN_END, LAN_HOST_CIDR)?;
    sh(&["ip", "-n", &lan, "addr", "add", ROUTER_CIDR, "dev", LAN_END])?;
    match path {
        "lan-bridge" => {
            sh(&["ip", "-n", &host, "link", "set", NIC, "master", "br0"])?;
            bridge_port(&host, &container, "pc")?;
            address(&container, "eth0", CONTAINER_CIDR)?;
            route_via_router(&container)?;
        }
        "lan-macvlan" => {
            sh(&[
                "ip", "-n", &host, "link", "add", "mv0", "link", NIC, "type", "macvlan", "mode",
                "bridge",
            ])?;
            sh(&["ip", "-n", &host, "link", "set", "mv0", "netns", &container])?;
            sh(&["ip", "-n", &container, "link", "set", "mv0", "name", "eth0"])?;
            address(&container, "eth0", CONTAINER_CIDR)?;
            route_via_router(&container)?;
        }
        "lan-switchyard" => {
            let socket = topo.start_switchd(bin_dir, Some(&host), &["--dns", "off"])?;
            topo.swctl(bin_dir, &socket, &["port", "add", NIC])?;
            topo.swctl(
                bin_dir,
                &socket,
                &[
                    "network",
                    "create",
                    "lan",
                    "--parent",
                    NIC,
                    "--subnet",
                    SUBNET,
                    "--gateway",
                    ROUTER_IP,
                ],
            )?;
            topo.nsutil(
                bin_dir,
                &socket,
                &[
                    "attach",
                    &container,
                    "--network",
                    "lan",
                    "--ip",
                    CONTAINER_IP,
                ],
            )?;
        }
        other => bail!("unknown host-port path {other}"),
    }
    Ok(())
}

/// The default route the LAN network gives a switchyard container, by hand for the kernel
/// paths (the measurements stay on the subnet; this keeps the three containers alike).
fn route_via_router(container: &str) -> Result<()> {
    sh(&[
        "ip", "-n", container, "route", "add", "default", "via", ROUTER_IP,
    ])?;
    Ok(())
}

/// The host port's and the container port's counters: (tx bytes, tx packets, rx bytes,
/// rx packets) of the host port, (rx bytes, rx packets) of the container's.
fn counters(topo: &mut Topology, bin_dir: &Path) -> Result<([u64; 4], [u64; 2])> {
    let socket = topo.work_dir()?.join("switchd0.sock");
    let socket = socket.to_str().context("utf-8 socket path")?;
    let ports: serde_json::Value =
        serde_json::from_str(&topo.swctl(bin_dir, socket, &["--json", "port", "ls"])?)
            .context("swctl --json port ls")?;
    let stats: serde_json::Value =
        serde_json::from_str(&topo.swctl(bin_dir, socket, &["--json", "stats"])?)
            .context("swctl --json stats")?;
    let ports = ports.as_array().context("port list")?;
    let id_of = |want: &dyn Fn(&serde_json::Value) -> bool| {
        ports
            .iter()
            .find(|p| want(p))
            .and_then(|p| p["id"].as_u64())
    };
    let host = id_of(&|p| p["ifname"] == NIC).context("no host port for nic0 in port ls")?;
    let container =
        id_of(&|p| p["ifname"] != NIC && p["ifname"] == "eth0").context("no container port")?;
    let of = |id: u64| {
        stats["ports"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["id"].as_u64() == Some(id)))
            .cloned()
            .unwrap_or_default()
    };
    let n = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap_or(0);
    let (h, c) = (of(host), of(container));
    Ok((
        [
            n(&h, "tx_bytes"),
            n(&h, "tx_packets"),
            n(&h, "rx_bytes"),
            n(&h, "rx_packets"),
        ],
        [n(&c, "rx_bytes"), n(&c, "rx_packets")],
    ))
}

fn average(bytes: u64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| bytes as f64 / packets as f64)
}

/// One TCP stream to the LAN and one from it (`-R`), `duration` seconds each, with the
/// switchyard path's port counters read around each.
pub fn frames(
    topo: &mut Topology,
    round: u32,
    duration: u32,
    bin_dir: &Path,
) -> Result<FrameSizes> {
    let (container, lan) = (topo.ns("c"), topo.ns("s"));
    let mut run = |reverse: bool| -> Result<(f64, [u64; 4], [u64; 2])> {
        if interrupted() {
            bail!("interrupted");
        }
        let way = if reverse {
            "from the LAN (-R)"
        } else {
            "to the LAN"
        };
        progress(
            SWITCHYARD,
            &format!("port counters around one TCP stream {way}, {duration} s"),
        );
        let before = counters(topo, bin_dir)?;
        let _server = serve_in(&lan, &["iperf3", "-s", "-1"], 5201)?;
        let secs = duration.to_string();
        let mut args = vec![
            "ip",
            "netns",
            "exec",
            &container,
            "iperf3",
            "-c",
            LAN_HOST_IP,
            "-t",
            &secs,
            "-J",
        ];
        if reverse {
            args.push("-R");
        }
        let r = parse_iperf(&sh(&args)?)?;
        let after = counters(topo, bin_dir)?;
        let host: Vec<u64> = (0..4)
            .map(|i| after.0[i] - before.0[i].min(after.0[i]))
            .collect();
        let cont: Vec<u64> = (0..2)
            .map(|i| after.1[i] - before.1[i].min(after.1[i]))
            .collect();
        Ok((
            r.bits_per_second / 1e9,
            [host[0], host[1], host[2], host[3]],
            [cont[0], cont[1]],
        ))
    };
    let (to_lan, out, cont) = run(false)?;
    let (from_lan, back, _) = run(true)?;
    Ok(FrameSizes {
        round,
        scenario: SWITCHYARD.to_string(),
        to_lan_gbit_per_sec: to_lan,
        host_port_tx_avg_bytes: average(out[0], out[1]),
        container_rx_avg_bytes: average(cont[0], cont[1]),
        from_lan_gbit_per_sec: from_lan,
        host_port_rx_avg_bytes: average(back[2], back[3]),
        host_port_tx_packets: out[1],
        host_port_rx_packets: back[3],
    })
}

/// The frame-size table, one row per round.
pub fn print(frames: &[FrameSizes]) {
    println!(
        "\nhost-port: switchd's port counters around one TCP stream each way (average bytes \
         per frame; a 1500-byte MTU makes 1514-byte frames, super-frames are up to 64 KiB)"
    );
    println!(
        "\n| round | to LAN Gbit/s | host port tx B/frame | container rx B/frame | from LAN Gbit/s \
         | host port rx B/frame |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
    for f in frames {
        println!(
            "| {} | {:.2} | {} | {} | {:.2} | {} |",
            f.round,
            f.to_lan_gbit_per_sec,
            cell(f.host_port_tx_avg_bytes),
            cell(f.container_rx_avg_bytes),
            f.from_lan_gbit_per_sec,
            cell(f.host_port_rx_avg_bytes),
        );
    }
}
