//! Fixtures for root integration tests: network namespaces and switchd instances that
//! remove themselves when dropped, even when the test fails, and run the built binaries
//! the way a user does.
//!
//! Names are unique per process and call, so tests can run in parallel with each other
//! and with other runs on the same machine. Fixtures use `ip` to set things up; the
//! product never does.

#![allow(dead_code)]

pub mod docker;
pub mod engine;
pub mod etcd;
pub mod podman;
pub mod switchyard_docker;
pub mod underlay;
pub mod vlan_host;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A short name unique to this process and call, e.g. `syt4242n3`.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("syt{}{}{n}", std::process::id(), tag)
}

/// A positive check may meet a first packet that waits for ARP: three tries.
pub fn eventually(check: impl Fn() -> Option<String>) -> Option<String> {
    (0..3).find_map(|_| check())
}

/// The last `lines` lines of `text` (a log, for a panic message).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Path of a workspace binary. Tests run from `target/<profile>/deps/`; the binaries
/// are in `target/<profile>/` (built by `make test` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `make test`, which builds every binary first",
        path.display()
    );
    path
}

pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (namespaces, TAP devices); run it with `make test` as root"
    );
}

/// Runs a command, returning its output (never panics on a non-zero exit).
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(program.as_ref())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {:?}: {err}", program.as_ref()))
}

/// Runs a command and insists it succeeds.
pub fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = run(program.as_ref(), args);
    assert!(
        out.status.success(),
        "{:?} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        program.as_ref(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A named network namespace (under /run/netns), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = unique(tag);
        run_ok("ip", &["netns", "add", &name]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn exec_ok(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// Whether `addr` answers one ping within `secs` seconds.
    pub fn ping(&self, addr: &str, secs: u32) -> bool {
        let deadline = secs.to_string();
        self.exec(&["ping", "-c", "1", "-w", &deadline, "-q", addr])
            .status
            .success()
    }

    /// Names of the interfaces in the namespace.
    pub fn links(&self) -> Vec<String> {
        let out = self.exec_ok(&["ip", "-o", "link", "show"]);
        out.lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        // The resolver file nsutil writes for a named namespace on a network.
        let _ = nsutil::resolv::remove(std::path::Path::new(nsutil::resolv::NETNS_ETC), &self.name);
    }
}

/// A switchd with its own socket and state directory, stopped and removed on drop.
pub struct Switchd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    /// Runs inside this namespace (`ip netns exec`), when set.
    netns: Option<String>,
    extra_args: Vec<String>,
}

impl Switchd {
    pub fn start() -> Switchd {
        Switchd::start_with(None, &[])
    }

    /// Starts switchd inside `netns` (a "host" namespace) with extra flags.
    pub fn start_in(netns: &Netns, args: &[&str]) -> Switchd {
        Switchd::start_with(Some(netns), args)
    }

    fn start_with(netns: Option<&Netns>, args: &[&str]) -> Switchd {
        require_root();
        let dir = std::env::temp_dir().join(unique("sw"));
        std::fs::create_dir_all(&dir).expect("test directory");
        let mut switchd = Switchd {
            socket: dir.join("switchd.sock"),
            dir,
            child: None,
            netns: netns.map(|n| n.name.clone()),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
        };
        switchd.launch();
        switchd
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("switchd.log"))
            .expect("log file");
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("switchd"));
                c
            }
            None => Command::new(bin("switchd")),
        };
        let child = command
            .args(&self.extra_args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--log")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start switchd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "switchd did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switchd.log")).unwrap_or_default()
    }

    /// Stops switchd with SIGTERM and waits for it; returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().ok()
    }

    /// Stops switchd and starts it again on the same socket and state directory.
    pub fn restart(&mut self) {
        let status = self.stop().expect("switchd was running");
        assert!(status.success(), "switchd exited with {status} on SIGTERM");
        self.launch();
    }

    /// Kills switchd with SIGKILL (a crash), waits for it, and starts it again on the
    /// same socket and state directory.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let mut full = vec!["--socket", self.socket.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        run(bin(tool), &full)
    }

    pub fn swctl(&self, args: &[&str]) -> Output {
        self.tool("swctl", args)
    }

    pub fn nsutil(&self, args: &[&str]) -> Output {
        self.tool("nsutil", args)
    }

    /// Runs nsutil and insists it succeeds; returns stdout.
    pub fn nsutil_ok(&self, args: &[&str]) -> String {
        let out = self.nsutil(args);
        assert!(
            out.status.success(),
            "nsutil {args:?} failed:\n{}\nswitchd log:\n{}",
            stderr(&out),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `swctl --json ARGS`, parsed.
    pub fn swctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.swctl(&full);
        assert!(
            out.status.success(),
            "swctl {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("swctl --json prints JSON")
    }
}

impl Drop for Switchd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs switchd in `netns` with a socket and state directory of its own and `args`,
/// expecting it to refuse to start: waits for it to exit and returns what it said. A
/// switchd still running after 10 s is killed, and the test fails.
pub fn switchd_refusing(netns: &Netns, args: &[&str]) -> Output {
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Dir(std::env::temp_dir().join(unique("swr")));
    std::fs::create_dir_all(&dir.0).expect("test directory");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns.name])
        .arg(bin("switchd"))
        .args(args)
        .arg("--socket")
        .arg(dir.0.join("switchd.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait for switchd").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("switchd's output");
            panic!(
                "switchd {args:?} kept running instead of refusing to start; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("switchd's output")
}

/// Waits until something in `ns` listens on TCP `port` (at most 10 s).
pub fn wait_for_listener(ns: &Netns, port: u16) {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.exec_ok(&["ss", "-Hltn", &filter]).trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} in {}",
            ns.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `iperf3 -s -1` in `server`, then a client in `client` for `secs` seconds.
/// Returns the received bits per second.
pub fn iperf3(client: &Netns, server: &Netns, addr: &str, secs: u32, extra: &[&str]) -> f64 {
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &server.name, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    wait_for_listener(server, 5201);
    let duration = secs.to_string();
    let mut args = vec!["iperf3", "-c", addr, "-t", &duration, "-J"];
    args.extend_from_slice(extra);
    let out = client.exec(&args);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        out.status.success(),
        "iperf3 failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J");
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no bits_per_second in the iperf3 report:\n{report:#}"))
}

/// Runs `work` on a thread of its own that has entered `ns`'s network namespace (a
/// thread's network namespace is its own), so sockets it opens live there.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        work()
    })
}

/// The `index`th byte of a stream no two positions of which are likely to hold the same
/// run: a misplaced, repeated or missing piece of a transfer shows as a mismatch.
fn stream_byte(index: u64) -> u8 {
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 32) as u8
}

/// Sends `bytes` bytes over one TCP connection from `client` to `server` (at `addr`,
/// `port`) and checks that every byte arrived, in order and unchanged. Returns the
/// offset of the first wrong byte, or `None` when the transfer is intact.
pub fn tcp_transfer_intact(
    client: &Netns,
    server: &Netns,
    addr: &str,
    port: u16,
    bytes: u64,
) -> Option<u64> {
    use std::io::{Read, Write};
    let bind = format!("{addr}:{port}");
    let listener = in_netns(server, move || {
        std::net::TcpListener::bind(bind).expect("bind")
    })
    .join()
    .expect("the listener thread");
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        loop {
            let n = conn.read(&mut buf).expect("read the transfer");
            if n == 0 {
                return (at == bytes).then_some(()).map_or(Some(at), |()| None);
            }
            for (i, b) in buf[..n].iter().enumerate() {
                if *b != stream_byte(at + i as u64) {
                    return Some(at + i as u64);
                }
            }
            at += n as u64;
        }
    });
    let target = format!("{addr}:{port}");
    in_netns(client, move || {
        let mut conn = std::net::TcpStream::connect(target).expect("connect");
        let mut chunk = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < bytes {
            let n = chunk.len().min((bytes - at) as usize);
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = stream_byte(at + i as u64);
            }
            // The receiver hangs up at the first wrong byte: its verdict is the one
            // that counts.
            if conn.write_all(&chunk[..n]).is_err() {
                break;
            }
            at += n as u64;
        }
    })
    .join()
    .expect("the sending thread");
    receiver.join().expect("the receiving thread")
}

/// Servers inside a container's namespace that answer each TCP connection on port 80
/// and each UDP datagram on port 53 with the address the client came from. They stop
/// when dropped.
pub struct PeerEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PeerEcho {
    pub fn start(ns: &Netns) -> PeerEcho {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (tcp_stop, tcp_ready) = (stop.clone(), ready_tx.clone());
        let tcp = in_netns(ns, move || {
            let listener = std::net::TcpListener::bind("0.0.0.0:80").expect("bind tcp/80");
            listener.set_nonblocking(true).unwrap();
            tcp_ready.send(()).unwrap();
            while !tcp_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        let udp_stop = stop.clone();
        let udp = in_netns(ns, move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:53").expect("bind udp/53");
            socket
                .set_read_timeout(Some(std::time::Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(peer.ip().to_string().as_bytes(), peer);
                }
            }
        });
        ready_rx.recv().unwrap();
        ready_rx.recv().unwrap();
        PeerEcho {
            stop,
            threads: vec![tcp, udp],
        }
    }
}

impl Drop for PeerEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// From inside `ns`, what the server at `to` says it saw us come from; `None` when
/// nothing answered within 2 s.
pub fn tcp_peer(ns: &Netns, to: &str) -> Option<String> {
    use std::io::Read;
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_netns(ns, move || {
        let timeout = std::time::Duration::from_secs(2);
        let mut stream = std::net::TcpStream::connect_timeout(&to, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        let mut seen = String::new();
        stream.read_to_string(&mut seen).ok()?;
        Some(seen)
    })
    .join()
    .unwrap()
}

/// [`tcp_peer`] over UDP: one datagram, the answer.
pub fn udp_peer(ns: &Netns, to: &str) -> Option<String> {
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        socket.send_to(b"who am i", to).ok()?;
        let mut buf = [0u8; 64];
        let (len, _) = socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    })
    .join()
    .unwrap()
}
