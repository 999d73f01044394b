//! Topologies the benchmark measures across: two "container" namespaces, `client` and
//! `server`, joined by the data path under test, and the three measurements taken across
//! them (iperf3 TCP, sockperf TCP ping-pong, iperf3 UDP with 64-byte payloads). Everything
//! is removed on drop: servers, the OVS bridge, switchds, namespaces.
//!
//! The harness uses `ip` to build the kernel baselines (they are the kernel's, after all);
//! the switchyard scenarios use switchd and nsutil exactly as a user would, and the OVS
//! scenario uses ovs-vsctl as `shared/anchors/ovs_netdev.sh` does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::interrupted;
use crate::ovs::Ovs;

const CLIENT_ADDR: &str = "10.99.0.1/24";
const SERVER_ADDR: &str = "10.99.0.2/24";
const SERVER_IP: &str = "10.99.0.2";
/// Underlay addresses of the two host namespaces in the overlay scenarios.
const UNDERLAY: [&str; 2] = ["10.98.0.1", "10.98.0.2"];
/// sockperf's default port, and the message size it uses by default (passed explicitly).
const SOCKPERF_PORT: u16 = 11111;
pub const SOCKPERF_MSG_SIZE: u64 = 14;

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub struct IperfResult {
    pub bits_per_second: f64,
    pub bytes: u64,
    pub retransmits: u64,
}

pub struct UdpResult {
    pub sent_packets: u64,
    pub sent_seconds: f64,
    pub received_packets: u64,
    pub received_bytes: u64,
    pub lost_percent: f64,
}

pub struct LatencyResult {
    /// sockperf's "latency": half the round trip, averaged.
    pub avg_us: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Messages the client sent and received over the whole run, warm-up included.
    pub messages: u64,
}

/// A server process (iperf3, sockperf) in a namespace, killed on drop.
pub struct Server(Child);

impl Server {
    /// The server's process id (`ip netns exec` execs it, so it is the program's own).
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    switchds: Vec<Child>,
    work: Option<PathBuf>,
    /// The container interface in `client` and `server` (`eth0`, or OVS's TAP names).
    devs: [String; 2],
    /// The OVS bridge to delete on drop.
    ovs_bridge: Option<String>,
    /// Extra flags for every switchd this topology starts (`--switchd-arg`).
    switchd_args: Vec<String>,
    /// Declared last: dropped after the body of `drop` removed the bridge, so an
    /// ovs-vswitchd the bench started is stopped last.
    ovs: Option<Ovs>,
}

/// Extra flags for every `nsutil attach` (`--attach-arg`), set once at start.
pub static ATTACH_ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

impl Topology {
    /// No namespaces yet; names start with `syb<pid>`.
    /// No namespaces yet; every switchd it starts gets `switchd_args` too.
    pub fn empty(switchd_args: &[String]) -> Topology {
        Topology {
            switchd_args: switchd_args.to_vec(),
            prefix: format!("syb{}", std::process::id()),
            namespaces: Vec::new(),
            switchds: Vec::new(),
            work: None,
            devs: ["eth0".into(), "eth0".into()],
            ovs_bridge: None,
            ovs: None,
        }
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    pub fn add_ns(&mut self, role: &str) -> Result<String> {
        let name = self.ns(role);
        sh(&["ip", "netns", "add", &name])?;
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    pub fn build(scenario: &str, bin_dir: &Path, switchd_args: &[String]) -> Result<Topology> {
        let mut topo = Topology::empty(switchd_args);
        let client = topo.add_ns("c")?;
        let server = topo.add_ns("s")?;
        match scenario {
            "veth" => {
                sh(&[
                    "ip", "link", "add", "eth0", "netns", &client, "type", "veth", "peer", "name",
                    "eth0", "netns", &server,
                ])?;
                topo.address_both()?;
            }
            "bridge" => {
                let br = topo.add_bridge("br")?;
                for (ns, port) in [(&client, "pc"), (&server, "ps")] {
                    bridge_port(&br, ns, port)?;
                }
                topo.address_both()?;
            }
            "switchyard" => {
                let socket = topo.start_switchd(bin_dir, None, &[])?;
                for (ns, addr) in [(&client, CLIENT_ADDR), (&server, SERVER_ADDR)] {
                    topo.nsutil(bin_dir, &socket, &["attach", ns, "--ip", addr])?;
                }
            }
            "ovs" => {
                // As ovs_netdev.sh: a netdev (userspace) bridge, a TAP port per container,
                // each TAP moved into its namespace; userspace TSO on (see `Ovs::start`).
                topo.ovs = Some(Ovs::start()?);
                let bridge = topo.ns("o");
                topo.ovs_bridge = Some(bridge.clone());
                sh(&[
                    "ovs-vsctl",
                    "add-br",
                    &bridge,
                    "--",
                    "set",
                    "bridge",
                    &bridge,
                    "datapath_type=netdev",
                ])?;
                for (i, ns) in [&client, &server].into_iter().enumerate() {
                    let tap = topo.ns(["tc", "ts"][i]);
                    sh(&[
                        "ovs-vsctl",
                        "add-port",
                        &bridge,
                        &tap,
                        "--",
                        "set",
                        "Interface",
                        &tap,
                        "type=tap",
                    ])?;
                    wait_for(
                        || sh(&["ip", "link", "show", &tap]).is_ok(),
                        "OVS did not create its TAP",
                    )?;
                    sh(&["ip", "link", "set", &tap, "netns", ns])?;
                    topo.devs[i] = tap;
                }
                topo.address_both()?;
            }
            "kernel-vxlan" => {
                let hosts = topo.underlay()?;
                for (i, (host, ns, port)) in
                    [(&hosts[0], &client, "pc"), (&hosts[1], &server, "ps")]
                        .into_iter()
                        .enumerate()
                {
                    let (local, remote) = (UNDERLAY[i], UNDERLAY[1 - i]);
                    sh(&["ip", "-n", host, "link", "add", "br0", "type", "bridge"])?;
                    sh(&[
                        "ip", "-n", host, "link", "add", "vx0", "type", "vxlan", "id", "42",
                        "dstport", "4789", "local", local, "remote", remote,
                    ])?;
                    sh(&["ip", "-n", host, "link", "set", "vx0", "master", "br0"])?;
                    sh(&[
                        "ip", "link", "add", "eth0", "netns", ns, "mtu", "1450", "type", "veth",
                        "peer", "name", port, "netns", host, "mtu", "1450",
                    ])?;
                    sh(&["ip", "-n", host, "link", "set", port, "master", "br0"])?;
                    for dev in ["br0", "vx0", port] {
                        sh(&["ip", "-n", host, "link", "set", dev, "up"])?;
                    }
                }
                topo.address_both()?;
            }
            "switchyard-overlay" => {
                let hosts = topo.underlay()?;
                for (i, ns, addr) in [(0, &client, CLIENT_ADDR), (1, &server, SERVER_ADDR)] {
                    let vtep = ["--vtep", UNDERLAY[i]];
                    let socket = topo.start_switchd(bin_dir, Some(&hosts[i]), &vtep)?;
                    topo.swctl(
                        bin_dir,
                        &socket,
                        &["vxlan", "map", "--vlan", "10", "--vni", "42"],
                    )?;
                    topo.swctl(bin_dir, &socket, &["vxlan", "peer", "add", UNDERLAY[1 - i]])?;
                    topo.nsutil(
                        bin_dir,
                        &socket,
                        &["attach", ns, "--ip", addr, "--vlan", "10", "--mtu", "1450"],
                    )?;
                }
            }
            path if crate::host_port::PATHS.contains(&path) => {
                crate::host_port::build(&mut topo, path, bin_dir)?;
            }
            other => bail!("unknown scenario {other}"),
        }
        // Wait for the path to carry traffic (bridge ports start in learning/forwarding).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !topo.ping(&client, SERVER_IP) {
            if Instant::now() > deadline {
                bail!("{scenario}: client cannot reach the server");
            }
            if interrupted() {
                bail!("interrupted");
            }
        }
        Ok(topo)
    }

    /// A namespace (named for `role`) holding a Linux bridge `br0`, up; its name.
    pub fn add_bridge(&mut self, role: &str) -> Result<String> {
        let br = self.add_ns(role)?;
        sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        Ok(br)
    }

    /// One ping from namespace `ns` to `ip`, waiting at most a second for the answer.
    pub fn ping(&self, ns: &str, ip: &str) -> bool {
        sh(&["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip]).is_ok()
    }

    /// Two host namespaces joined by a veth pair, addressed from [`UNDERLAY`].
    fn underlay(&mut self) -> Result<[String; 2]> {
        let h1 = self.add_ns("h1")?;
        let h2 = self.add_ns("h2")?;
        sh(&[
            "ip", "link", "add", "u", "netns", &h1, "type", "veth", "peer", "name", "u", "netns",
            &h2,
        ])?;
        for (ns, addr) in [(&h1, UNDERLAY[0]), (&h2, UNDERLAY[1])] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "u",
            ])?;
            sh(&["ip", "-n", ns, "link", "set", "u", "up"])?;
        }
        Ok([h1, h2])
    }

    /// The topology's temporary directory (made on first use, removed on drop).
    pub fn work_dir(&mut self) -> Result<PathBuf> {
        if let Some(work) = &self.work {
            return Ok(work.clone());
        }
        let work = std::env::temp_dir().join(format!("{}-switchd", self.prefix));
        std::fs::create_dir_all(&work)?;
        self.work = Some(work.clone());
        Ok(work)
    }

    /// Starts a switchd (inside `netns` when given) with its own socket and state
    /// directory under the topology's work directory; returns the socket path.
    pub fn start_switchd(
        &mut self,
        bin_dir: &Path,
        netns: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        let work = self.work_dir()?;
        let n = self.switchds.len();
        let socket = work.join(format!("switchd{n}.sock"));
        let switchd = bin_dir.join("switchd");
        let mut command = match netns {
            Some(ns) => {
                // `ip netns exec` execs switchd: the child's pid is switchd's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&switchd);
                c
            }
            None => Command::new(&switchd),
        };
        let child = command
            .args(args)
            .args(&self.switchd_args)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(work.join(format!("state{n}")))
            .arg("--log")
            .arg("warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (run `make build`)", switchd.display()))?;
        self.switchds.push(child);
        wait_for(
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            "switchd did not come up",
        )?;
        socket
            .to_str()
            .map(String::from)
            .context("utf-8 socket path")
    }

    /// The process ids of this topology's switchds.
    pub fn switchd_pids(&self) -> Vec<u32> {
        self.switchds.iter().map(Child::id).collect()
    }

    pub fn nsutil(&self, bin_dir: &Path, socket: &str, args: &[&str]) -> Result<String> {
        let mut args = args.to_vec();
        if args.first() == Some(&"attach") {
            args.extend(ATTACH_ARGS.get().into_iter().flatten().map(String::as_str));
        }
        self.tool(bin_dir, "nsutil", socket, &args)
    }

    pub fn swctl(&self, bin_dir: &Path, socket: &str, args: &[&str]) -> Result<String> {
        self.tool(bin_dir, "swctl", socket, args)
    }

    fn tool(&self, bin_dir: &Path, tool: &str, socket: &str, args: &[&str]) -> Result<String> {
        let path = bin_dir.join(tool);
        let path = path.to_str().context("utf-8 path")?;
        let mut full = vec![path, "--socket", socket];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn address_both(&self) -> Result<()> {
        for (i, (role, addr)) in [("c", CLIENT_ADDR), ("s", SERVER_ADDR)]
            .into_iter()
            .enumerate()
        {
            address(&self.ns(role), &self.devs[i], addr)?;
        }
        Ok(())
    }

    /// Whether userspace TSO is on in the OVS scenario (`None` in the others).
    pub fn ovs_tso(&self) -> Option<bool> {
        self.ovs.as_ref().map(Ovs::tso)
    }

    /// CPU time the userspace switches of this topology (its switchds, or ovs-vswitchd)
    /// have used so far; `None` when the data path is the kernel's.
    pub fn switch_cpu(&self) -> Option<Duration> {
        let mut pids = self.switchd_pids();
        pids.extend(self.ovs.as_ref().and_then(Ovs::pid));
        if pids.is_empty() {
            return None;
        }
        pids.into_iter().map(process_cpu).sum()
    }

    /// Starts `args` in the server namespace and waits until it listens on TCP `port`.
    fn serve(&self, args: &[&str], port: u16) -> Result<Server> {
        serve_in(&self.ns("s"), args, port)
    }

    /// Runs a client in the client namespace; its stdout.
    fn client(&self, args: &[&str]) -> Result<String> {
        let client = self.ns("c");
        let mut full = vec!["ip", "netns", "exec", &client];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// iperf3 TCP, client to server, `streams` parallel streams.
    pub fn iperf(&self, duration: u32, streams: u32) -> Result<IperfResult> {
        let _server = self.serve(&["iperf3", "-s", "-1"], 5201)?;
        let (duration, streams) = (duration.to_string(), streams.to_string());
        let out = self.client(&[
            "iperf3", "-c", SERVER_IP, "-t", &duration, "-P", &streams, "-J",
        ])?;
        parse_iperf(&out)
    }

    /// iperf3 UDP with 64-byte payloads as fast as the client can send (`-b 0`).
    pub fn udp64(&self, duration: u32) -> Result<UdpResult> {
        let _server = self.serve(&["iperf3", "-s", "-1"], 5201)?;
        let duration = duration.to_string();
        let out = self.client(&[
            "iperf3", "-c", SERVER_IP, "-u", "-b", "0", "-l", "64", "-t", &duration, "-J",
        ])?;
        let report: serde_json::Value = serde_json::from_str(&out).context("iperf3 -J output")?;
        let end = &report["end"];
        // iperf3 3.12 has sum_sent/sum_received; older ones only `sum` (receiver's view).
        let sent = if end["sum_sent"].is_object() {
            &end["sum_sent"]
        } else {
            &end["sum"]
        };
        let received = if end["sum_received"].is_object() {
            &end["sum_received"]
        } else {
            &end["sum"]
        };
        let received_packets = received["packets"].as_u64().context("iperf3 UDP report")?;
        let lost = received["lost_packets"].as_u64().unwrap_or(0);
        Ok(UdpResult {
            sent_packets: sent["packets"].as_u64().context("iperf3 UDP report")?,
            sent_seconds: sent["seconds"].as_f64().context("iperf3 UDP report")?,
            received_packets: received_packets.saturating_sub(lost),
            received_bytes: received["bytes"].as_u64().unwrap_or(0),
            lost_percent: received["lost_percent"].as_f64().unwrap_or(0.0),
        })
    }

    /// sockperf TCP ping-pong for `duration` seconds.
    pub fn latency(&self, duration: u32) -> Result<LatencyResult> {
        let port = SOCKPERF_PORT.to_string();
        let _server = self.serve(
            &["sockperf", "server", "--tcp", "-i", SERVER_IP, "-p", &port],
            SOCKPERF_PORT,
        )?;
        let (duration, size) = (duration.to_string(), SOCKPERF_MSG_SIZE.to_string());
        let out = self.client(&[
            "sockperf",
            "ping-pong",
            "--tcp",
            "-i",
            SERVER_IP,
            "-p",
            &port,
            "-t",
            &duration,
            "-m",
            &size,
        ])?;
        parse_sockperf(&out)
    }
}

/// A veth pair from `eth0` in namespace `ns` to `port` in the bridge namespace `br`,
/// enslaved to its `br0` and up.
pub fn bridge_port(br: &str, ns: &str, port: &str) -> Result<()> {
    sh(&[
        "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", br,
    ])?;
    sh(&["ip", "-n", br, "link", "set", port, "master", "br0"])?;
    sh(&["ip", "-n", br, "link", "set", port, "up"])?;
    Ok(())
}

/// Gives `dev` in namespace `ns` the address `cidr` and sets it up.
pub fn address(ns: &str, dev: &str, cidr: &str) -> Result<()> {
    sh(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev])?;
    sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
    Ok(())
}

/// Starts `args` in namespace `ns` and waits until it listens on TCP `port`.
pub fn serve_in(ns: &str, args: &[&str], port: u16) -> Result<Server> {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} (is it installed?)", args[0]))?;
    let server_guard = Server(child);
    let filter = format!("sport = :{port}");
    wait_for(
        || {
            sh(&["ip", "netns", "exec", ns, "ss", "-Hltn", &filter])
                .is_ok_and(|out| !out.trim().is_empty())
        },
        &format!("{} did not start listening", args[0]),
    )?;
    Ok(server_guard)
}

/// Reads an iperf3 `-J` TCP report: what the receiver got, the sender's retransmits. A
/// report with an `error` (iperf3 could not connect, the server went away) is an error.
pub fn parse_iperf(out: &str) -> Result<IperfResult> {
    let report: serde_json::Value = serde_json::from_str(out).context("iperf3 -J output")?;
    if let Some(error) = report["error"].as_str() {
        bail!("iperf3: {error}");
    }
    let end = &report["end"];
    Ok(IperfResult {
        bits_per_second: end["sum_received"]["bits_per_second"]
            .as_f64()
            .context("iperf3 report")?,
        bytes: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

/// Reads sockperf's summary: `avg-latency=27.4`, `percentile 50.000 =  26.1`,
/// `[Total Run] ... SentMessages=N; ReceivedMessages=M` (lines carry colour escapes).
fn parse_sockperf(out: &str) -> Result<LatencyResult> {
    let number = |s: &str| -> Option<f64> {
        let s = s.trim_start();
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let after = |line: &str, key: &str| line.find(key).and_then(|i| number(&line[i + key.len()..]));
    let mut avg = None;
    let (mut p50, mut p99, mut messages) = (None, None, 0);
    for line in out.lines() {
        avg = avg.or_else(|| after(line, "avg-latency="));
        p50 = p50.or_else(|| after(line, "percentile 50.000 ="));
        p99 = p99.or_else(|| after(line, "percentile 99.000 ="));
        if line.contains("[Total Run]") {
            messages = after(line, "SentMessages=").unwrap_or(0.0) as u64
                + after(line, "ReceivedMessages=").unwrap_or(0.0) as u64;
        }
    }
    Ok(LatencyResult {
        avg_us: avg.context("sockperf printed no avg-latency")?,
        p50_us: p50,
        p99_us: p99,
        messages,
    })
}

/// Polls `ready` every 20 ms for up to 10 s.
pub fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what}");
        }
        if interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// User plus system CPU time of process `pid`.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let ticks = process_ticks(pid)?;
    Some(Duration::from_secs_f64(ticks as f64 / ticks_per_second()))
}

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: utime is the 14th field overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of process `pid` in KiB (VmRSS).
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The unit of utime/stime in /proc/PID/stat.
pub fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// SIGTERM, up to 5 s to exit, then SIGKILL: a switchd that hangs on its way out must not
/// hang the bench.
fn stop(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("   switchd (pid {pid}) did not exit on SIGTERM within 5 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(bridge) = self.ovs_bridge.take() {
            let _ = sh(&["ovs-vsctl", "--if-exists", "del-br", &bridge]);
        }
        for mut child in self.switchds.drain(..) {
            stop(&mut child);
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
            // What `nsutil attach` wrote for it (`ip netns del` leaves it).
            let _ = nsutil::resolv::remove(std::path::Path::new(nsutil::resolv::NETNS_ETC), &ns);
        }
        if let Some(work) = self.work.take() {
            let _ = std::fs::remove_dir_all(work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sockperf_summary() {
        let out = "sockperf: [Total Run] RunTime=1.001 sec; Warm up time=400 msec; \
                   SentMessages=20799; ReceivedMessages=20798\n\
                   sockperf: \x1b[2;35m====> avg-latency=35.097 (std-dev=5.883)\x1b[0m\n\
                   sockperf: ---> percentile 99.000 =   49.958\n\
                   sockperf: ---> percentile 50.000 =   34.326\n";
        let r = parse_sockperf(out).unwrap();
        assert_eq!(r.avg_us, 35.097);
        assert_eq!(r.p50_us, Some(34.326));
        assert_eq!(r.p99_us, Some(49.958));
        assert_eq!(r.messages, 41597);
    }

    #[test]
    fn reads_iperf_report() {
        // iperf3 3.12 -J, trimmed to what is read.
        let out = r#"{"start": {"version": "iperf 3.12"}, "intervals": [],
            "end": {
                "sum_sent": {"seconds": 1.000017, "bytes": 1528954880,
                             "bits_per_second": 12231431105.671204, "retransmits": 11885},
                "sum_received": {"seconds": 1.000043, "bytes": 1528954128,
                                 "bits_per_second": 12231107086.395285}}}"#;
        let r = parse_iperf(out).unwrap();
        assert_eq!(r.bits_per_second, 12231107086.395285);
        assert_eq!(r.bytes, 1528954128);
        assert_eq!(r.retransmits, 11885);
    }

    #[test]
    fn iperf_error_report_is_an_error() {
        let out = r#"{"start": {"connected": []}, "intervals": [], "end": {},
            "error": "unable to connect to server: Connection refused"}"#;
        let e = parse_iperf(out).err().unwrap();
        assert!(format!("{e:#}").contains("Connection refused"));
        assert!(parse_iperf("iperf3: parameter error").is_err());
    }

    #[test]
    fn sockperf_without_summary_is_an_error() {
        assert!(parse_sockperf("sockperf: connection refused").is_err());
    }
}
