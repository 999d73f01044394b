//! switchyard under a real Docker engine, as a user runs it: switchd and the
//! `switchyard-docker` plugin next to dockerd (in its network, mount and PID namespaces,
//! so that switchd can open the containers' `SandboxKey`s and makes Join's TAPs where
//! dockerd can move them), the plugin found through a spec file under a name unique to
//! the test.
//!
//! ```ignore
//! let rig = Rig::start();
//! rig.docker_ok(&["network", "create", "-d", rig.driver(), "--ipam-driver", rig.driver(), ...]);
//! ```

use std::fs::OpenOptions;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::docker::{Dockerd, PluginSpec};
use super::engine::{self, COMMAND_LIMIT};
use super::{bin, tail, unique};

/// dockerd with switchd and the plugin beside it. Dropping it removes the containers and
/// networks while the plugin and switchd still run (so nothing waits on a dead plugin),
/// then stops dockerd, the plugin and switchd, and removes everything.
pub struct Rig {
    // Dropped first: hands the plugin and switchd to `dockerd` (see Drop).
    switchd: Option<Child>,
    plugin: Option<Child>,
    dir: PathBuf,
    spec: PluginSpec,
    /// What switchd is started with besides its socket, state and log.
    switchd_args: Vec<String>,
    pub dockerd: Dockerd,
}

impl Rig {
    pub fn start() -> Rig {
        Rig::start_with(|_| Vec::new())
    }

    /// A rig whose switchd gets the arguments `prepare` returns; `prepare` runs once
    /// dockerd (and so its namespace) is there, before switchd starts (to give the
    /// namespace an underlay for `--vtep`, say).
    pub fn start_with(prepare: impl FnOnce(&Dockerd) -> Vec<String>) -> Rig {
        let dockerd = Dockerd::start();
        let switchd_args = prepare(&dockerd);
        // Inside dockerd's directory, which its drop removes once everything has stopped.
        let dir = dockerd.dir().join("switchyard");
        std::fs::create_dir_all(dir.join("plugins")).expect("the rig's directory");
        let name = unique("sy");
        let spec = PluginSpec::new(&name, &dir.join("plugins").join(format!("{name}.sock")));
        let mut rig = Rig {
            switchd: None,
            plugin: None,
            dir,
            spec,
            switchd_args,
            dockerd,
        };
        rig.start_switchd();
        rig.start_plugin();
        rig
    }

    /// The driver's name, for `-d` and `--ipam-driver`.
    pub fn driver(&self) -> &str {
        self.spec.name()
    }

    /// switchd's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("switchd.sock")
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .expect("a log file")
    }

    pub fn start_switchd(&mut self) {
        assert!(self.switchd.is_none(), "switchd is running");
        let _ = std::fs::remove_file(self.socket());
        let child = self
            .dockerd
            .command(bin("switchd"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--log", "debug"])
            .args(&self.switchd_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("switchd.log"))
            .spawn()
            .expect("start switchd");
        self.switchd = Some(child);
        self.wait_for(&self.socket(), "switchd");
    }

    pub fn stop_switchd(&mut self) {
        let mut child = self.switchd.take().expect("switchd is running");
        let (status, graceful) = engine::terminate(&mut child, Duration::from_secs(10));
        assert!(
            graceful && status.success(),
            "switchd exited with {status} on SIGTERM; log:\n{}",
            self.switchd_log()
        );
    }

    pub fn start_plugin(&mut self) {
        assert!(self.plugin.is_none(), "the plugin is running");
        let plugin_socket = self.plugin_socket();
        let child = self
            .dockerd
            .command(bin("switchyard-docker"))
            .arg("--name")
            .arg(self.spec.name())
            .arg("--plugin-dir")
            .arg(self.dir.join("plugins"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--docker-host")
            .arg(format!("unix://{}", self.dockerd.socket().display()))
            .args(["--log", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("plugin.log"))
            .spawn()
            .expect("start switchyard-docker");
        self.plugin = Some(child);
        self.wait_for(&plugin_socket, "switchyard-docker");
    }

    pub fn stop_plugin(&mut self) {
        let mut child = self.plugin.take().expect("the plugin is running");
        let (status, graceful) = engine::terminate(&mut child, Duration::from_secs(10));
        assert!(
            graceful && status.success(),
            "switchyard-docker exited with {status} on SIGTERM; log:\n{}",
            self.plugin_log()
        );
    }

    fn plugin_socket(&self) -> PathBuf {
        self.dir
            .join("plugins")
            .join(format!("{}.sock", self.spec.name()))
    }

    fn wait_for(&self, socket: &std::path::Path, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} did not come up; switchd log:\n{}\nplugin log:\n{}",
                self.switchd_log(),
                self.plugin_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn switchd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switchd.log")).unwrap_or_default()
    }

    pub fn plugin_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plugin.log")).unwrap_or_default()
    }

    /// `docker ARGS`, insisting it succeeds; the panic has the plugin's and switchd's
    /// logs as well as dockerd's.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.dockerd.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstderr: {}\nplugin log:\n{}\nswitchd log (end):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.plugin_log(), 40),
            tail(&self.switchd_log(), 40),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tool (`swctl`, `nsutil`) against this switchd, run in dockerd's namespaces.
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        engine::output_within(
            self.dockerd
                .command(bin(tool))
                .arg("--socket")
                .arg(self.socket())
                .args(args),
            COMMAND_LIMIT,
        )
    }

    /// `swctl --json ARGS`, parsed.
    pub fn swctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.tool("swctl", &full);
        assert!(
            out.status.success(),
            "swctl {full:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("swctl --json prints JSON")
    }

    /// Runs `ARGS` inside a running container (`docker exec`); never panics.
    pub fn exec(&self, container: &str, args: &[&str]) -> Output {
        let mut full = vec!["exec", container];
        full.extend_from_slice(args);
        self.dockerd.docker(&full)
    }

    /// Whether `container` gets an answer to a ping of `target` within `secs` seconds.
    pub fn ping(&self, container: &str, target: &str, secs: u32) -> bool {
        let secs = secs.to_string();
        self.exec(
            container,
            &["ping", "-c", "1", "-W", &secs, "-w", &secs, target],
        )
        .status
        .success()
    }

    /// Whether `container` gets an answer to a ping of `target` within `secs` seconds,
    /// trying once a second (a path that is coming back).
    pub fn ping_eventually(&self, container: &str, target: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.ping(container, target, 1) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

impl Deref for Rig {
    type Target = Dockerd;
    fn deref(&self) -> &Dockerd {
        &self.dockerd
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // dockerd's drop removes the containers and networks first (the plugin and
        // switchd hear of it), then stops dockerd, then these.
        if let Some(plugin) = self.plugin.take() {
            self.dockerd.keep(plugin);
        }
        if let Some(switchd) = self.switchd.take() {
            self.dockerd.keep(switchd);
        }
    }
}
