//! A real Docker engine for tests: Debian's dockerd (and the containerd it starts), in a
//! network namespace of its own with its own directories, so that it never touches the
//! machine's network, firewall or the machine's own Docker; and plugin spec files.
//!
//! ```ignore
//! let dockerd = Dockerd::start();
//! let image = dockerd.image();
//! let out = dockerd.docker_ok(&["run", "--rm", "--network", "none", image, "echo", "hi"]);
//! ```

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::engine::{self, Footprint, Holder, COMMAND_LIMIT, IMAGE};
use super::{require_root, unique, Netns};

/// Debian's dockerd and its client (a `docker` elsewhere on PATH may be another version).
const DOCKERD: &str = "/usr/sbin/dockerd";
const DOCKER: &str = "/usr/bin/docker";

/// How long dockerd may take to answer after a start, and to exit after SIGTERM (it
/// stops its containers first, 10 s for one that ignores SIGTERM): failure bounds.
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A dockerd in a fresh network namespace, with its data, state, socket and config in a
/// directory of its own. Dropping it removes its containers and networks, stops it, kills
/// whatever of it is left (containerd, shims, containers), and removes its cgroups,
/// directory and namespace, even when the test has failed.
///
/// dockerd runs with no bridge, no iptables/ip6tables rules, no masquerading, no
/// forwarding change and no userland proxy: nothing in its namespace but what a test or a
/// network plugin puts there. Its containers' cgroups are under a cgroup of its own.
///
/// Drop removes the networks while dockerd still runs, so that their plugin hears of it;
/// a plugin that is gone by then makes dockerd retry each call (about 15 s). A plugin
/// started after the Dockerd (in its namespace) would be dropped before it: hand it over
/// with [`Dockerd::keep`], and it is stopped after dockerd.
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    cgroup_parent: String,
    live_restore: bool,
    daemon: Option<Daemon>,
    image: OnceLock<()>,
    /// Processes handed over with `keep`, stopped after dockerd.
    kept: Mutex<Vec<Child>>,
    // Dropped in this order: the holder (and with it every process), then the namespace.
    holder: Holder,
    netns: Netns,
}

/// A running dockerd: `nsenter`, our child, and dockerd, its child.
struct Daemon {
    nsenter: Child,
    pid: u32,
}

impl Dockerd {
    /// Starts dockerd in a new network namespace and waits until it answers.
    pub fn start() -> Dockerd {
        require_root();
        let netns = Netns::new("dk");
        // The namespace's loopback, for whatever a test or plugin runs next to dockerd.
        netns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(unique("dk"));
        std::fs::create_dir_all(dir.join("client")).expect("dockerd's directory");
        // Shim sockets go to /run/containerd/s whatever the exec root: a tmpfs there keeps
        // them (and any left by a killed shim) away from the machine's.
        let holder = Holder::start(&netns, &["/run/containerd"], &dir.join("holder.log"));
        let mut dockerd = Dockerd {
            socket: dir.join("docker.sock"),
            cgroup_parent: format!("/{}", unique("dkcg")),
            live_restore: false,
            daemon: None,
            image: OnceLock::new(),
            kept: Mutex::new(Vec::new()),
            dir,
            holder,
            netns,
        };
        dockerd.write_config();
        dockerd.launch();
        dockerd
    }

    /// The network namespace dockerd runs in (the "host" of its containers), e.g. to run
    /// a network plugin next to it.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// dockerd's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// dockerd's directory (data root `data`, exec root `exec`, `dockerd.log`); a plugin
    /// may put its socket here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// dockerd's PID (in the machine's PID namespace).
    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("dockerd is running").pid
    }

    /// A command that runs `program` in dockerd's namespaces (network, mount, PID): it
    /// sees what dockerd sees, e.g. the network namespace files of containers (a
    /// container's `SandboxKey`) under the exec root, which the test's own mount
    /// namespace does not. Whatever it starts is killed with dockerd's at drop.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.holder.command(program)
    }

    /// The holder whose namespaces dockerd runs in, e.g. for a Podman beside it
    /// ([`super::podman::Podman::beside`]).
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Hands over a process (e.g. a network plugin started with [`Dockerd::command`]) to
    /// be stopped when the Dockerd is dropped, after its containers and networks are
    /// removed and dockerd has stopped: SIGTERM, SIGKILL after 10 s.
    pub fn keep(&self, child: Child) {
        self.kept.lock().expect("kept processes").push(child);
    }

    /// The `docker` client, pointed at this dockerd, with a client config of its own.
    pub fn docker_command(&self) -> Command {
        let mut command = Command::new(DOCKER);
        command
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        command
    }

    /// Runs `docker ARGS` (killed after [`COMMAND_LIMIT`]); never panics on failure.
    pub fn docker(&self, args: &[&str]) -> Output {
        engine::output_within(self.docker_command().args(args), COMMAND_LIMIT)
    }

    /// Runs `docker ARGS`, insisting it succeeds; returns stdout. The panic message has
    /// the command's output and the end of dockerd's log.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndockerd log (end):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The busybox image ([`IMAGE`], `local/bb`), imported on first use (once per
    /// dockerd; it survives restarts). There is no registry: never pull.
    pub fn image(&self) -> &'static str {
        self.image.get_or_init(|| {
            let tar = engine::busybox_tar(&self.dir);
            self.docker_ok(&["import", tar.to_str().expect("utf-8 path"), IMAGE]);
        });
        IMAGE
    }

    /// The PID, in the machine's PID namespace, of a running container's first process
    /// (`docker inspect` gives it in dockerd's PID namespace), e.g. for
    /// `nsenter --target PID --net`.
    pub fn container_pid(&self, container: &str) -> u32 {
        let out = self.docker_ok(&["inspect", "--format", "{{.State.Pid}}", container]);
        let ns_pid: u32 = out.trim().parse().expect("a PID from docker inspect");
        assert!(ns_pid != 0, "container {container} is not running");
        self.holder
            .host_pid(ns_pid)
            .unwrap_or_else(|| panic!("no process has PID {ns_pid} in dockerd's namespace"))
    }

    /// dockerd's log (stdout and stderr of every dockerd run, and containerd's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        super::tail(&self.log(), lines)
    }

    /// Stops dockerd (SIGTERM) and starts it again with the same directories, socket and
    /// namespace. With `live_restore`, dockerd has live restore on for the stop and the
    /// new run, so running containers keep running across the restart; without, it has
    /// it off for both, so dockerd stops its containers as it shuts down. The setting is
    /// changed by a configuration reload (SIGHUP) before the stop. Panics if dockerd does
    /// not exit by itself within 30 s, or exits with a failure.
    pub fn restart(&mut self, live_restore: bool) {
        self.live_restore = live_restore;
        self.write_config();
        let pid = self.pid();
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
        let want = live_restore.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.live_restore_enabled().as_deref() != Some(want.as_str()) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not reload live-restore={live_restore}; log (end):\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        match self.stop() {
            Some((status, true)) if status.success() => {}
            Some((status, graceful)) => panic!(
                "dockerd {} on SIGTERM ({status}); log (end):\n{}",
                if graceful {
                    "failed"
                } else {
                    "did not exit in 30 s"
                },
                self.log_tail(40)
            ),
            None => unreachable!("dockerd was running"),
        }
        self.launch();
    }

    /// What dockerd has on the machine now, to check after drop that it is all gone.
    pub fn footprint(&self) -> Footprint {
        Footprint::take(
            &self.holder,
            &self.dir,
            &self.netns,
            vec![self.cgroup_parent.trim_start_matches('/').to_string()],
        )
    }

    /// Writes daemon.json: what has no command line flag, and what a reload may change.
    fn write_config(&self) {
        let config = serde_json::json!({
            // dockerd 20.10 writes its identity key to /etc/docker/key.json otherwise.
            "deprecated-key-path": self.dir.join("key.json"),
            // Containers' cgroups under one of this dockerd's, not the machine's /docker.
            "cgroup-parent": self.cgroup_parent,
            "live-restore": self.live_restore,
            // Logs every API and plugin call: what a plugin test needs when it fails.
            "debug": true,
        });
        std::fs::write(
            self.dir.join("daemon.json"),
            serde_json::to_vec_pretty(&config).expect("JSON"),
        )
        .expect("write daemon.json");
    }

    /// Starts dockerd in the holder's namespaces and waits until it answers.
    fn launch(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("dockerd's log");
        let path = |sub: &str| self.dir.join(sub).to_str().expect("utf-8 path").to_string();
        let mut nsenter = self
            .holder
            .command(DOCKERD)
            .args(["--data-root", &path("data")])
            .args(["--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["--config-file", &path("daemon.json")])
            .arg(format!("--host=unix://{}", self.socket.display()))
            // Nothing in the namespace but what tests and plugins make: no docker0, no
            // firewall rules, no sysctl changes, no proxy processes.
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args([
                "--ip-masq=false",
                "--ip-forward=false",
                "--userland-proxy=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd (nsenter)");
        // dockerd is nsenter's child; signals go to it, not to nsenter (which does not
        // pass them on).
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(&pid) = engine::children(nsenter.id()).first() {
                break pid;
            }
            if let Some(status) = nsenter.try_wait().expect("wait for nsenter") {
                panic!("nsenter exited ({status}) before starting dockerd");
            }
            assert!(Instant::now() < deadline, "nsenter did not start dockerd");
            std::thread::sleep(Duration::from_millis(5));
        };
        self.daemon = Some(Daemon { nsenter, pid });
        let deadline = Instant::now() + START_LIMIT;
        while self.live_restore_enabled().is_none() {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|d| d.nsenter.try_wait().ok()?)
            {
                panic!(
                    "dockerd exited ({status}); log (end):\n{}",
                    self.log_tail(60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within {} s; log (end):\n{}",
                START_LIMIT.as_secs(),
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `docker info`'s live restore setting, or `None` while dockerd does not answer.
    fn live_restore_enabled(&self) -> Option<String> {
        let out = engine::output_within(
            self.docker_command()
                .args(["info", "--format", "{{.LiveRestoreEnabled}}"]),
            Duration::from_secs(10),
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops dockerd: SIGTERM, then SIGKILL if it still runs after [`STOP_LIMIT`].
    /// Returns its exit status and whether it exited by itself; `None` if not running.
    fn stop(&mut self) -> Option<(ExitStatus, bool)> {
        let Daemon { mut nsenter, pid } = self.daemon.take()?;
        // While nsenter runs it has not reaped dockerd: the PID is still dockerd's.
        if nsenter.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if let Some(status) = engine::wait_bounded(&mut nsenter, STOP_LIMIT) {
            return Some((status, true));
        }
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let status = nsenter.wait().expect("wait for nsenter");
        Some((status, false))
    }

    /// Removes every container (killed, not stopped) and every network dockerd has, so
    /// that a plugin hears about each removal. Best effort, each step bounded.
    fn remove_all(&self) {
        let limit = Duration::from_secs(30);
        let list = engine::output_within(self.docker_command().args(["ps", "-aq"]), limit);
        let ids = String::from_utf8_lossy(&list.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let out = engine::output_within(
                self.docker_command().args(["rm", "-f", "-v"]).args(&ids),
                limit,
            );
            if !out.status.success() {
                eprintln!(
                    "dockerd cleanup: docker rm: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let out = engine::output_within(
            self.docker_command().args(["network", "prune", "-f"]),
            limit,
        );
        if !out.status.success() {
            eprintln!(
                "dockerd cleanup: docker network prune: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_all();
            if let Some((_, false)) = self.stop() {
                eprintln!("dockerd did not exit on SIGTERM within 30 s; killed");
            }
        }
        for mut child in self
            .kept
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default()
        {
            engine::terminate(&mut child, Duration::from_secs(10));
        }
        // Whatever is left (containerd, shims, containers, processes of `command`) is in
        // the holder's PID namespace and dies with it, and so do the mounts dockerd made.
        self.holder.stop();
        engine::remove_cgroups(
            &self.netns,
            &[self.cgroup_parent.trim_start_matches('/').to_string()],
        );
        engine::remove_dir(&self.dir);
    }
}

/// A Docker plugin spec file, `/etc/docker/plugins/NAME.spec` saying `unix://SOCKET`,
/// removed on drop. dockerd looks plugins up there (and in /run/docker/plugins) for
/// every dockerd on the machine: give each test a name of its own (`unique`).
pub struct PluginSpec {
    name: String,
    path: PathBuf,
}

impl PluginSpec {
    pub const DIR: &'static str = "/etc/docker/plugins";

    /// Writes the spec file for plugin `name` listening on `socket`. Panics if a spec
    /// file by that name exists already (it is someone else's).
    pub fn new(name: &str, socket: &Path) -> PluginSpec {
        require_root();
        std::fs::create_dir_all(Self::DIR).expect("create /etc/docker/plugins");
        let path = Path::new(Self::DIR).join(format!("{name}.spec"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        std::io::Write::write_all(
            &mut file,
            format!("unix://{}\n", socket.display()).as_bytes(),
        )
        .expect("write the spec file");
        PluginSpec {
            name: name.to_string(),
            path,
        }
    }

    /// The plugin's name, as in `docker network create --driver NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PluginSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
