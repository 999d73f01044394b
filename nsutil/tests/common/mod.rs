//! Fixtures for the root integration tests: uniquely named namespaces that delete
//! themselves, and `ip` for setting up interfaces (tests may use it; the product may not).

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nsutil::netns::{self, NetnsRef};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh name no other test (or test process) uses: `syt-ns-<pid>-<n>`.
pub fn unique_name() -> String {
    format!(
        "syt-ns-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A namespace created through the library and deleted on drop, even when the test fails.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new() -> TestNs {
        let name = unique_name();
        netns::create(&name).expect("create test namespace");
        TestNs { name }
    }

    pub fn reference(&self) -> NetnsRef {
        NetnsRef::Named(self.name.clone())
    }

    /// Runs `ip -n NAME ARGS...` and panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let path = std::path::Path::new(netns::NETNS_RUN_DIR).join(&self.name);
        if netns::delete(&self.name).is_err() && path.exists() {
            // Whatever state the test left, make sure the name is gone.
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.name])
                .status();
        }
    }
}

/// Runs `ip ARGS...` and returns its stdout; panics with stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The interface names in the namespace, as `ip` sees them.
pub fn link_names(ns: &TestNs) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

pub mod fake_switchd {
    //! A stand-in for switchd's control socket: it speaks the real protocol, and makes
    //! each "port" a TAP inside the namespace with `ip tuntap` (as switchd creates its
    //! TAPs there under the final name).

    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use switchyard::control::{Attached, Detached, PortInfo, Request};
    use switchyard::PortId;

    #[derive(Default)]
    pub struct State {
        pub ports: Vec<PortInfo>,
        pub requests: Vec<Request>,
        pub refuse_detach: bool,
        /// Answer port_del with this error instead of removing the port.
        pub refuse_port_del: Option<String>,
        /// Close the connection instead of answering an attach (after making the port,
        /// if it is new), as when switchd's answer is lost.
        pub drop_attach_answer: bool,
        next_id: u32,
    }

    pub struct FakeSwitchd {
        pub path: PathBuf,
        pub state: Arc<Mutex<State>>,
    }

    impl FakeSwitchd {
        pub fn start() -> FakeSwitchd {
            let path = std::env::temp_dir().join(format!("{}.sock", super::unique_name()));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).expect("bind fake switchd");
            let state = Arc::new(Mutex::new(State::default()));
            let shared = Arc::clone(&state);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let state = Arc::clone(&shared);
                    std::thread::spawn(move || serve(stream, &state));
                }
            });
            FakeSwitchd { path, state }
        }

        pub fn requests(&self) -> Vec<Request> {
            self.state.lock().unwrap().requests.clone()
        }

        pub fn ports(&self) -> Vec<PortInfo> {
            self.state.lock().unwrap().ports.clone()
        }
    }

    impl Drop for FakeSwitchd {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn serve(stream: UnixStream, state: &Mutex<State>) {
        let mut writer = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let answer = match serde_json::from_str::<Request>(&line) {
                Ok(request) => match handle(request, state) {
                    Some(answer) => answer,
                    None => return,
                },
                Err(err) => json!({ "error": err.to_string() }),
            };
            if writeln!(writer, "{answer}").is_err() {
                return;
            }
        }
    }

    fn ns_name(path: &Path) -> String {
        path.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn ip_in(path: &Path, args: &[&str]) -> Result<(), String> {
        let name = ns_name(path);
        let output = Command::new("ip")
            .args(["-n", name.as_str()])
            .args(args)
            .output()
            .unwrap();
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// The answer to `request`; `None` closes the connection without one.
    fn handle(request: Request, state: &Mutex<State>) -> Option<serde_json::Value> {
        let mut state = state.lock().unwrap();
        state.requests.push(request.clone());
        let drop = state.drop_attach_answer && matches!(request, Request::Attach(_));
        let answer = answer(request, &mut state);
        (!drop).then_some(answer)
    }

    fn answer(request: Request, state: &mut State) -> serde_json::Value {
        match request {
            Request::Attach(attach) => {
                if let Some(port) = state
                    .ports
                    .iter()
                    .find(|p| p.netns == attach.netns && p.ifname == attach.ifname)
                {
                    let answer = Attached {
                        port: port.clone(),
                        created: false,
                        endpoint: None,
                    };
                    return json!({ "result": answer });
                }
                let ifname = attach.ifname.as_str();
                if let Err(err) = ip_in(
                    &attach.netns,
                    &["tuntap", "add", "dev", ifname, "mode", "tap"],
                ) {
                    return json!({ "error": format!("cannot create {ifname}: {err}") });
                }
                state.next_id += 1;
                let label = attach
                    .label
                    .clone()
                    .unwrap_or_else(|| ns_name(&attach.netns));
                let port = PortInfo {
                    id: PortId(state.next_id),
                    name: format!("{label}/{ifname}"),
                    netns: attach.netns.clone(),
                    ifname: attach.ifname.clone(),
                    ifindex: 0,
                    mode: attach.mode.clone(),
                    state: "up".into(),
                    mac: attach.mac,
                    port_security: false,
                    storm_limit_pps: None,
                    kind: Default::default(),
                };
                state.ports.push(port.clone());
                json!({ "result": Attached { port, created: true, endpoint: None } })
            }
            Request::Detach { netns, ifname } => {
                if state.refuse_detach {
                    return json!({ "error": "detach refused by the test" });
                }
                let found = state
                    .ports
                    .iter()
                    .position(|p| p.netns == netns && p.ifname == ifname);
                let port = found.map(|index| state.ports.remove(index));
                if port.is_some() {
                    let _ = ip_in(&netns, &["link", "del", ifname.as_str()]);
                }
                json!({ "result": Detached { port } })
            }
            Request::PortDel { port } => {
                if let Some(message) = &state.refuse_port_del {
                    return json!({ "error": message });
                }
                let Some(index) = state.ports.iter().position(|p| p.id.to_string() == port) else {
                    return json!({ "error": format!("no such port {port:?}") });
                };
                let removed = state.ports.remove(index);
                let _ = ip_in(&removed.netns, &["link", "del", removed.ifname.as_str()]);
                json!({ "result": removed })
            }
            Request::PortList => json!({ "result": state.ports }),
            other => json!({ "error": format!("the fake switchd does not do {other:?}") }),
        }
    }
}

pub mod real_switchd {
    //! The real switchd, built by `cargo build --workspace --bins` (as `make test`
    //! does), with its own socket and state directory; stopped with SIGTERM and its
    //! directory removed on drop, even when the test fails.

    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use switchyard::control::{PortInfo, Request};
    use switchyard_os::client::Client;

    /// Path of a workspace binary. Tests run from `target/<profile>/deps/`; the binaries
    /// are in `target/<profile>/`.
    pub fn bin(name: &str) -> PathBuf {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory");
        let path = dir.join(name);
        assert!(
            path.exists(),
            "{} is not built; run `cargo build --workspace --bins` (or `make test`) first",
            path.display()
        );
        path
    }

    pub struct Switchd {
        pub dir: PathBuf,
        pub socket: PathBuf,
        child: Child,
    }

    impl Switchd {
        pub fn start() -> Switchd {
            let dir = std::env::temp_dir().join(super::unique_name());
            std::fs::create_dir_all(&dir).expect("test directory");
            let log = std::fs::File::create(dir.join("switchd.log")).expect("log file");
            let socket = dir.join("switchd.sock");
            let child = Command::new(bin("switchd"))
                .arg("--socket")
                .arg(&socket)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .args(["--log", "debug"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start switchd");
            let switchd = Switchd { dir, socket, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::os::unix::net::UnixStream::connect(&switchd.socket).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "switchd did not come up; log:\n{}",
                    switchd.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            switchd
        }

        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.join("switchd.log")).unwrap_or_default()
        }

        pub fn client(&self) -> Client {
            Client::connect(&self.socket).expect("connect to switchd")
        }

        pub fn ports(&self) -> Vec<PortInfo> {
            self.client()
                .call(&Request::PortList)
                .expect("list switchd's ports")
        }
    }

    impl Drop for Switchd {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
