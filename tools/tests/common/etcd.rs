//! etcd for root integration tests: one member, or a cluster of members each in a network
//! namespace of the test's, listening only on its address there (client port 2379, peer
//! port 2380). Data directories and logs live in a temporary directory of the fixture's;
//! on drop every member is killed and waited for, and the directory removed.
//!
//! etcd is Debian's `etcd-server` (`/usr/bin/etcd`, `/usr/bin/etcdctl`, API v3).
//!
//! A member started with [`TlsFiles`] serves clients over TLS only and asks them for a
//! certificate of its CA (`--client-cert-auth`); its peers still talk plain HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{tail, unique, Netns};

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// How long a starting member (or cluster) may take to answer `endpoint health`.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// How long a member may take to exit on SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// `addr:port`, with brackets around an IPv6 address.
fn host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

struct Member {
    name: String,
    netns: String,
    addr: String,
    /// Holds `data/` and `etcd.log`.
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client(&self) -> String {
        host_port(&self.addr, CLIENT_PORT)
    }

    fn peer_url(&self) -> String {
        format!("http://{}", host_port(&self.addr, PEER_PORT))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is running (a member that exited by itself is reaped here).
    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }
}

/// The PEM files of a TLS etcd: the CA both sides trust, the server's certificate
/// (which must name the member's address) and a client certificate etcdctl presents.
/// Where they live, and removing them, is the caller's business.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// An etcd member or cluster. See the module's documentation.
pub struct Etcd {
    dir: PathBuf,
    token: String,
    initial_cluster: String,
    members: Vec<Member>,
    /// Set when the members serve clients over TLS.
    tls: Option<TlsFiles>,
}

impl Etcd {
    /// One member in `ns` on `addr` (which `ns` must have), healthy.
    pub fn single(ns: &Netns, addr: &str) -> Etcd {
        Etcd::cluster(&[(ns, addr)])
    }

    /// [`Etcd::single`] serving clients over TLS with `tls`, client certificates
    /// required; healthy as etcdctl with the client certificate sees it.
    pub fn single_tls(ns: &Netns, addr: &str, tls: &TlsFiles) -> Etcd {
        Etcd::start(&[(ns, addr)], Some(tls))
    }

    /// A cluster of one member per (namespace, address), all started together, all
    /// healthy (a leader elected) before this returns.
    pub fn cluster(members: &[(&Netns, &str)]) -> Etcd {
        Etcd::start(members, None)
    }

    fn start(members: &[(&Netns, &str)], tls: Option<&TlsFiles>) -> Etcd {
        super::require_root();
        assert!(!members.is_empty(), "an etcd cluster needs a member");
        let dir = std::env::temp_dir().join(unique("etcd"));
        std::fs::create_dir_all(&dir).expect("etcd's test directory");
        let members: Vec<Member> = members
            .iter()
            .enumerate()
            .map(|(i, (ns, addr))| {
                // etcdctl in the namespace reaches the member's own address through lo.
                ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
                let member_dir = dir.join(format!("m{i}"));
                std::fs::create_dir_all(&member_dir).expect("a member's directory");
                Member {
                    name: format!("m{i}"),
                    netns: ns.name.clone(),
                    addr: addr.to_string(),
                    dir: member_dir,
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            dir,
            token: unique("etcdc"),
            initial_cluster,
            members,
            tls: tls.cloned(),
        };
        for i in 0..etcd.members.len() {
            etcd.launch(i, "new");
        }
        let all: Vec<usize> = (0..etcd.members.len()).collect();
        etcd.wait_healthy(&all);
        etcd
    }

    fn launch(&mut self, i: usize, state: &str) {
        let member = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.log_path())
            .expect("etcd's log file");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{}", member.client());
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &member.netns, "etcd"]);
        if let Some(tls) = &self.tls {
            // --trusted-ca-file alone already requires client certificates (etcd 3.4,
            // whatever --client-cert-auth says): the flag only says so out loud.
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(member.dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &member.peer_url()])
            .args(["--initial-advertise-peer-urls", &member.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// Waits until each of `members` answers `endpoint health`; panics with their logs'
    /// tails when one exits or the wait runs out.
    fn wait_healthy(&mut self, members: &[usize]) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let mut pending: Vec<usize> = members.to_vec();
        let mut last = String::new();
        while !pending.is_empty() {
            for &i in &pending {
                if !self.members[i].running() {
                    panic!(
                        "etcd member {i} ({} in {}) exited while starting; log:\n{}",
                        self.members[i].addr,
                        self.members[i].netns,
                        tail(&self.members[i].log(), 40)
                    );
                }
            }
            let mut still = Vec::new();
            for &i in &pending {
                let m = &self.members[i];
                let out = ctl_in(
                    &m.netns,
                    &m.client(),
                    self.tls.as_ref(),
                    &["endpoint", "health"],
                );
                if !out.status.success() {
                    last = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        super::stderr(&out)
                    );
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = pending
                    .iter()
                    .map(|&i| {
                        format!(
                            "--- member {i} ({}) log:\n{}",
                            self.members[i].addr,
                            tail(&self.members[i].log(), 30)
                        )
                    })
                    .collect();
                panic!(
                    "etcd members {pending:?} not healthy within {HEALTHY_WITHIN:?}; last answer: {last}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client endpoints of every member, `H:P,H:P`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::client)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcd://H:P,H:P`: what switchd's `--cluster-store` takes.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints())
    }

    /// The directory holding the members' data and logs (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> &str {
        &self.members[i].addr
    }

    /// Stops member `i` with SIGTERM and waits for it (killing it after 10 s).
    pub fn stop_member(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WITHIN;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "etcd member {i} did not exit within {STOP_WITHIN:?} of SIGTERM; log:\n{}",
                    tail(&self.members[i].log(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills member `i` with SIGKILL (a crash) and waits for it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn start_member(&mut self, i: usize) {
        assert!(
            !self.members[i].running(),
            "etcd member {i} is already running"
        );
        self.launch(i, "existing");
        self.wait_healthy(&[i]);
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].running()
    }

    /// The members whose process was started and not stopped.
    fn live(&self) -> Vec<&Member> {
        self.members.iter().filter(|m| m.child.is_some()).collect()
    }

    /// `etcdctl --endpoints LIVE ARGS` (API v3), in the first live member's namespace;
    /// the endpoints are those of the members not stopped or killed.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let live = self.live();
        let first = live.first().expect("no etcd member is running");
        let endpoints = live
            .iter()
            .map(|m| m.client())
            .collect::<Vec<_>>()
            .join(",");
        ctl_in(&first.netns, &endpoints, self.tls.as_ref(), args)
    }

    /// [`Etcd::ctl`] that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            super::stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key under `prefix` ("" for all) with its value, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl_ok(&["get", prefix, "--prefix", "-w", "json"]);
        let answer: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json: {e}: {out}"));
        let Some(kvs) = answer["kvs"].as_array() else {
            return Vec::new();
        };
        let text = |v: &serde_json::Value| {
            let bytes = base64_decode(v.as_str().unwrap_or(""));
            String::from_utf8_lossy(&bytes).into_owned()
        };
        kvs.iter()
            .map(|kv| (text(&kv["key"]), text(&kv["value"])))
            .collect()
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        // A read of any key answers with the header of the current revision.
        let out = self.ctl_ok(&["get", "/", "-w", "json"]);
        let answer: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json: {e}: {out}"));
        answer["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {answer}"))
    }

    /// Compacts the history up to the current revision; returns that revision. Compacting
    /// again without writes in between is fine.
    pub fn compact_now(&self) -> i64 {
        let revision = self.revision();
        let out = self.ctl(&["compact", &revision.to_string(), "--physical"]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            super::stderr(&out)
        );
        assert!(
            out.status.success() || said.contains("has been compacted"),
            "etcdctl compact {revision} failed: {said}"
        );
        revision
    }

    /// The index of the member the others follow, as the live members see it.
    pub fn leader(&self) -> Option<usize> {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let statuses = answer.as_array()?;
        let leader = statuses
            .iter()
            .find_map(|s| s["Status"]["leader"].as_u64())?;
        let endpoint = statuses
            .iter()
            .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))?["Endpoint"]
            .as_str()?
            .trim_start_matches("https://")
            .to_string();
        self.members.iter().position(|m| m.client() == endpoint)
    }

    /// Member `i`'s log (every run of it).
    pub fn log(&self, i: usize) -> String {
        self.members[i].log()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `etcdctl --endpoints ENDPOINTS ARGS` (API v3) inside `ns`, with bounded waits: to
/// talk to one member in particular (of an etcd without TLS).
pub fn ctl_at(ns: &Netns, endpoints: &str, args: &[&str]) -> Output {
    ctl_in(&ns.name, endpoints, None, args)
}

/// `etcdctl` with `tls`'s CA and client certificate, to `https://` endpoints, when set.
fn ctl_in(netns: &str, endpoints: &str, tls: Option<&TlsFiles>, args: &[&str]) -> Output {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, "etcdctl"]);
    match tls {
        Some(tls) => {
            let endpoints = endpoints
                .split(',')
                .map(|e| format!("https://{e}"))
                .collect::<Vec<_>>()
                .join(",");
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key)
                .args(["--endpoints", &endpoints]);
        }
        None => {
            command.args(["--endpoints", endpoints]);
        }
    }
    command
        .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

/// Standard base64 with padding (what `etcdctl -w json` prints keys and values in).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text:?}"),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * k);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
