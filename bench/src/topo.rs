//! Topologies the benchmark measures across: two "container" namespaces, `client` and
//! `server`, joined by the data path under test. Everything is removed on drop.
//!
//! The harness uses `ip` to build the kernel baselines (they are the kernel's, after all);
//! the switchyard scenario uses switchd and nsutil exactly as a user would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const CLIENT_ADDR: &str = "10.99.0.1/24";
const SERVER_ADDR: &str = "10.99.0.2/24";
const SERVER_IP: &str = "10.99.0.2";
/// Underlay addresses of the two host namespaces in the overlay scenarios.
const UNDERLAY: [&str; 2] = ["10.98.0.1", "10.98.0.2"];

fn sh(args: &[&str]) -> Result<String> {
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

/// One iperf3 run's parameters.
pub struct Iperf {
    pub duration: u32,
    pub streams: u32,
}

pub struct IperfResult {
    pub bits_per_second: f64,
    pub bytes: u64,
    pub retransmits: u64,
}

pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    switchds: Vec<Child>,
    work: Option<PathBuf>,
}

impl Topology {
    fn new() -> Topology {
        Topology {
            prefix: format!("syb{}", std::process::id()),
            namespaces: Vec::new(),
            switchds: Vec::new(),
            work: None,
        }
    }

    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn add_ns(&mut self, role: &str) -> Result<String> {
        let name = self.ns(role);
        sh(&["ip", "netns", "add", &name])?;
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    pub fn build(scenario: &str, bin_dir: &Path) -> Result<Topology> {
        let mut topo = Topology::new();
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
                let br = topo.add_ns("br")?;
                sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
                sh(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
                for (ns, port) in [(&client, "pc"), (&server, "ps")] {
                    sh(&[
                        "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                        port, "netns", &br,
                    ])?;
                    sh(&["ip", "-n", &br, "link", "set", port, "master", "br0"])?;
                    sh(&["ip", "-n", &br, "link", "set", port, "up"])?;
                }
                topo.address_both()?;
            }
            "switchyard" => {
                let socket = topo.start_switchd(bin_dir, None, &[])?;
                for (ns, addr) in [(&client, CLIENT_ADDR), (&server, SERVER_ADDR)] {
                    topo.nsutil(bin_dir, &socket, &["attach", ns, "--ip", addr])?;
                }
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
            other => bail!("unknown scenario {other}"),
        }
        // Wait for the path to carry traffic (bridge ports start in learning/forwarding).
        let deadline = Instant::now() + Duration::from_secs(10);
        while sh(&[
            "ip", "netns", "exec", &client, "ping", "-c", "1", "-W", "1", SERVER_IP,
        ])
        .is_err()
        {
            if Instant::now() > deadline {
                bail!("{scenario}: client cannot reach the server");
            }
        }
        Ok(topo)
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

    /// Starts a switchd (inside `netns` when given) with its own socket and state
    /// directory under the topology's work directory; returns the socket path.
    fn start_switchd(
        &mut self,
        bin_dir: &Path,
        netns: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        let work = match &self.work {
            Some(work) => work.clone(),
            None => {
                let work = std::env::temp_dir().join(format!("{}-switchd", self.prefix));
                std::fs::create_dir_all(&work)?;
                self.work = Some(work.clone());
                work
            }
        };
        let n = self.switchds.len();
        let socket = work.join(format!("switchd{n}.sock"));
        let switchd = bin_dir.join("switchd");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&switchd);
                c
            }
            None => Command::new(&switchd),
        };
        let child = command
            .args(args)
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("switchd did not come up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        socket
            .to_str()
            .map(String::from)
            .context("utf-8 socket path")
    }

    fn nsutil(&self, bin_dir: &Path, socket: &str, args: &[&str]) -> Result<String> {
        self.tool(bin_dir, "nsutil", socket, args)
    }

    fn swctl(&self, bin_dir: &Path, socket: &str, args: &[&str]) -> Result<String> {
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
        for (role, addr) in [("c", CLIENT_ADDR), ("s", SERVER_ADDR)] {
            let ns = self.ns(role);
            sh(&["ip", "-n", &ns, "addr", "add", addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// CPU time the switchds of this topology have used so far, if there are any.
    pub fn switchd_cpu(&self) -> Option<Duration> {
        if self.switchds.is_empty() {
            return None;
        }
        self.switchds.iter().map(|c| process_cpu(c.id())).sum()
    }

    pub fn iperf(&self, run: &Iperf) -> Result<IperfResult> {
        let server = self.ns("s");
        let client = self.ns("c");
        let mut daemon = Command::new("ip")
            .args(["netns", "exec", &server, "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3 (is it installed? `make deps`)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sh(&[
            "ip",
            "netns",
            "exec",
            &server,
            "ss",
            "-Hltn",
            "sport = :5201",
        ])?
        .trim()
        .is_empty()
        {
            if Instant::now() > deadline {
                bail!("iperf3 server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let duration = run.duration.to_string();
        let streams = run.streams.to_string();
        let out = sh(&[
            "ip", "netns", "exec", &client, "iperf3", "-c", SERVER_IP, "-t", &duration, "-P",
            &streams, "-J",
        ]);
        let _ = daemon.kill();
        let _ = daemon.wait();
        let report: serde_json::Value = serde_json::from_str(&out?).context("iperf3 -J output")?;
        let end = &report["end"];
        Ok(IperfResult {
            bits_per_second: end["sum_received"]["bits_per_second"]
                .as_f64()
                .context("iperf3 report")?,
            bytes: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
            retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        })
    }
}

/// User plus system CPU time of process `pid`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: utime is the 14th field overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second();
    Some(Duration::from_secs_f64((utime + stime) as f64 / ticks))
}

/// The unit of utime/stime in /proc/PID/stat.
fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

impl Drop for Topology {
    fn drop(&mut self) {
        for mut child in self.switchds.drain(..) {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(work) = self.work.take() {
            let _ = std::fs::remove_dir_all(work);
        }
    }
}
