//! A real Podman for tests: Debian's podman (4.3, CNI network backend) with its
//! configuration, storage and CNI directories in a directory of its own, every command
//! in the namespaces of one holder in a network namespace of its own.
//!
//! ```ignore
//! let podman = Podman::start();
//! std::fs::write(podman.cni_config_dir().join("net.conflist"), conflist)?;
//! let out = podman.podman_ok(&["run", "--rm", "--network", "net", podman.image(), "ip", "a"]);
//! ```
//!
//! [`Podman::beside`] runs it in a [`Dockerd`]'s namespaces instead, so that one process
//! there (switchd) can open the network namespaces of both engines' containers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::docker::Dockerd;
use super::engine::{self, Footprint, Holder, COMMAND_LIMIT, IMAGE};
use super::{require_root, unique, Netns};

/// The machine-wide state directories Podman would share with every other Podman (and
/// the machine): a tmpfs of its own on each, in its mount namespace.
const PRIVATE_DIRS: &[&str] = &[
    "/run/netns",
    "/var/lib/cni",
    "/var/lib/containers",
    "/run/runc",
    "/dev/shm",
];

/// Podman and everything it runs, in a fresh network namespace. Dropping it removes its
/// containers, kills whatever of it is left (conmon, containers, CNI plugins, processes
/// of [`Podman::command`]) and removes its cgroups, directory and namespace, even when
/// the test has failed.
///
/// Podman has no daemon: each `podman` command runs in the holder's namespaces, where
/// /run/netns, /var/lib/cni, /var/lib/containers, /run/runc and /dev/shm (its lock
/// memory) are tmpfs of this Podman's own, so nothing is shared with the machine or
/// another Podman. Containers started without `--network` join Podman's default
/// `podman` bridge network and fail (the test's plugin directory has no `bridge`): pass
/// `--network none` or a network of the test's.
///
/// A Podman made with [`Podman::beside`] borrows a Dockerd's namespaces instead of having
/// its own (hence the lifetime; [`Podman::start`]'s is `'static`).
pub struct Podman<'d> {
    dir: PathBuf,
    image: OnceLock<()>,
    /// Processes handed over with `keep`, stopped after the containers are removed.
    kept: Mutex<Vec<Child>>,
    place: Place<'d>,
}

/// Whose namespaces Podman runs in.
enum Place<'d> {
    /// Its own. Dropped in this order: the holder (and with it every process), then the
    /// namespace.
    Own { holder: Holder, netns: Netns },
    /// A Dockerd's (its holder's), which outlives the Podman.
    Beside {
        holder: &'d Holder,
        netns: &'d Netns,
    },
}

impl Podman<'static> {
    pub fn start() -> Podman<'static> {
        require_root();
        let netns = Netns::new("pm");
        netns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(unique("pm"));
        make_dirs(&dir);
        let holder = Holder::start(&netns, PRIVATE_DIRS, &dir.join("holder.log"));
        Podman::ready(dir, Place::Own { holder, netns })
    }
}

impl<'d> Podman<'d> {
    /// A Podman in `dockerd`'s namespaces (network, mount, PID), so that what runs there
    /// (switchd) sees the network namespaces of Podman's containers (under /run/netns)
    /// as well as Docker's (under dockerd's exec root). The tmpfs Podman needs are
    /// mounted in dockerd's mount namespace, which dockerd does not use; they go with it.
    /// Its directory is in dockerd's. One at a time per Dockerd.
    ///
    /// Dropping it removes its containers, stops what was handed over with `keep`, kills
    /// whatever of it is left (in its containers' cgroups, or naming its directory),
    /// unmounts what it mounted under its directory and removes its cgroups and
    /// directory. Drop it before the Dockerd (the borrow sees to that) and before
    /// whatever its networks' plugins talk to (switchd), so that they hear of the
    /// removals.
    pub fn beside(dockerd: &'d Dockerd) -> Podman<'d> {
        let dir = dockerd.dir().join("podman");
        // Another one's tmpfs would be hidden under this one's.
        if let Err(err) = std::fs::create_dir(&dir) {
            panic!(
                "{}: {err} (only one Podman at a time beside a Dockerd)",
                dir.display()
            );
        }
        make_dirs(&dir);
        let holder = dockerd.holder();
        let script = format!(
            "set -eu\nfor d in {}; do mkdir -p \"$d\" && mount -t tmpfs tmpfs \"$d\"; done\n",
            PRIVATE_DIRS.join(" ")
        );
        let out = engine::output_within(holder.command("sh").args(["-c", &script]), COMMAND_LIMIT);
        assert!(
            out.status.success(),
            "mounting Podman's tmpfs beside dockerd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Podman::ready(
            dir,
            Place::Beside {
                holder,
                netns: dockerd.netns(),
            },
        )
    }

    fn ready(dir: PathBuf, place: Place<'d>) -> Podman<'d> {
        let podman = Podman {
            dir,
            image: OnceLock::new(),
            kept: Mutex::new(Vec::new()),
            place,
        };
        // The first command sets up the storage; a failure here is the harness's.
        podman.podman_ok(&["info", "--format", "{{.Host.NetworkBackend}}"]);
        podman
    }

    fn holder(&self) -> &Holder {
        match &self.place {
            Place::Own { holder, .. } => holder,
            Place::Beside { holder, .. } => holder,
        }
    }

    /// The network namespace Podman runs in (the "host" of its containers): its own, or
    /// the Dockerd's it is beside.
    pub fn netns(&self) -> &Netns {
        match &self.place {
            Place::Own { netns, .. } => netns,
            Place::Beside { netns, .. } => netns,
        }
    }

    /// Podman's directory (configs, `storage`, `run`, `tmp`, the CNI directories).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where Podman reads CNI network configurations (`network_config_dir`): a test
    /// writes its `.conflist` files here.
    pub fn cni_config_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// Where Podman looks for CNI plugins (`cni_plugin_dirs`), empty at first: a test
    /// links the plugins its networks use here (e.g. /usr/lib/cni/loopback).
    pub fn cni_plugin_dir(&self) -> PathBuf {
        self.dir.join("cni-plugins")
    }

    /// A command that runs `program` in Podman's namespaces (network, mount, PID), e.g.
    /// to see the network namespaces of containers under /run/netns. Whatever it starts
    /// is killed at drop (beside a Dockerd: with the Dockerd's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.holder().command(program)
    }

    /// Hands over a process (e.g. a switchd started with [`Podman::command`], which the
    /// containers' CNI plugin talks to) to be stopped when the Podman is dropped, after
    /// its containers are removed: SIGTERM, SIGKILL after 10 s.
    pub fn keep(&self, child: Child) {
        self.kept.lock().expect("kept processes").push(child);
    }

    /// The `podman` command with this Podman's configuration (which its conmon and
    /// cleanup processes inherit).
    pub fn podman_command(&self) -> Command {
        let mut command = self.holder().command("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"));
        command
    }

    /// Runs `podman ARGS` (killed after [`COMMAND_LIMIT`]); never panics on failure.
    pub fn podman(&self, args: &[&str]) -> Output {
        engine::output_within(self.podman_command().args(args), COMMAND_LIMIT)
    }

    /// Runs `podman ARGS`, insisting it succeeds; returns stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The busybox image ([`IMAGE`], `local/bb`), imported on first use. Podman lists
    /// it as `localhost/local/bb`; both names work.
    pub fn image(&self) -> &'static str {
        self.image.get_or_init(|| {
            let tar = engine::busybox_tar(&self.dir);
            self.podman_ok(&["import", tar.to_str().expect("utf-8 path"), IMAGE]);
        });
        IMAGE
    }

    /// The PID, in the machine's PID namespace, of a running container's first process.
    pub fn container_pid(&self, container: &str) -> u32 {
        let out = self.podman_ok(&["inspect", "--format", "{{.State.Pid}}", container]);
        let ns_pid: u32 = out.trim().parse().expect("a PID from podman inspect");
        assert!(ns_pid != 0, "container {container} is not running");
        self.holder()
            .host_pid(ns_pid)
            .unwrap_or_else(|| panic!("no process has PID {ns_pid} in podman's namespace"))
    }

    /// What Podman has on the machine now, to check after drop that it is all gone.
    /// Beside a Dockerd it has the Dockerd's processes and namespace too: check it once
    /// both are dropped.
    pub fn footprint(&self) -> Footprint {
        Footprint::take(self.holder(), &self.dir, self.netns(), self.cgroups())
    }

    /// The cgroups of this Podman's containers (cgroupfs puts them under the machine's
    /// `libpod_parent`, shared by every Podman, so they go one by one), from the
    /// container directories in its storage.
    fn cgroups(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("storage/overlay-containers")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|id| format!("libpod_parent/libpod-{id}"))
            .collect()
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // Removing the containers runs their networks' CNI DEL, so a plugin hears of it.
        let out = engine::output_within(
            self.podman_command()
                .args(["rm", "--all", "--force", "--time", "0"]),
            Duration::from_secs(60),
        );
        if !out.status.success() {
            eprintln!(
                "podman cleanup: podman rm: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for mut child in self
            .kept
            .lock()
            .map(|mut k| std::mem::take(&mut *k))
            .unwrap_or_default()
        {
            engine::terminate(&mut child, Duration::from_secs(10));
        }
        let cgroups = self.cgroups();
        match &mut self.place {
            Place::Own { holder, .. } => holder.stop(),
            Place::Beside { holder, .. } => clear_beside(holder, &self.dir, &cgroups),
        }
        engine::remove_cgroups(self.netns(), &cgroups);
        engine::remove_dir(&self.dir);
    }
}

/// What killing its own holder does for a Podman that has none: kills what is left of
/// it in `holder`'s namespaces (the processes of its containers' `cgroups`, and those
/// naming `dir`: conmon, cleanup processes) and detaches its mounts under `dir` in the
/// holder's mount namespace. Best effort, bounded.
fn clear_beside(holder: &Holder, dir: &Path, cgroups: &[String]) {
    // The directory comes in the environment, so that no process of the script names it
    // on its command line (and kills itself).
    let script = r#"
for p in $CGROUPS; do
  for h in /sys/fs/cgroup/*/; do
    if [ -d "$h$p" ]; then find "$h$p" -name cgroup.procs -exec cat {} + | xargs -r kill -9; fi
  done
done
for p in /proc/[0-9]*; do
  case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
    *"$PODMAN_DIR/"*) kill -9 "${p#/proc/}" 2>/dev/null ;;
  esac
done
sleep 0.2
awk '{print $5}' /proc/self/mountinfo | grep -F "$PODMAN_DIR/" | sort -r | xargs -r -n 1 umount -l
"#;
    let out = engine::output_within(
        holder
            .command("sh")
            .args(["-c", script])
            .env("PODMAN_DIR", dir)
            .env("CGROUPS", cgroups.join(" ")),
        Duration::from_secs(30),
    );
    if !out.status.success() {
        eprintln!(
            "podman cleanup beside dockerd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Podman's directories and configuration files under `dir`.
fn make_dirs(dir: &Path) {
    for sub in ["cni", "cni-plugins", "storage", "run", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("podman's directories");
    }
    write_configs(dir);
}

/// Writes containers.conf and storage.conf: everything under `dir`, and what this
/// machine needs.
fn write_configs(dir: &Path) {
    let at = |sub: &str| dir.join(sub).display().to_string();
    let containers = format!(
        r#"[containers]
# This sandbox cannot raise resource limits above what it has.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# No cgroup for conmon: it would be libpod_parent/conmon, shared by every Podman.
cgroups = "no-conmon"

[engine]
# No systemd, no journald on this machine.
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "{tmp}"
image_copy_tmp_dir = "{tmp}"

[network]
network_backend = "cni"
network_config_dir = "{cni}"
cni_plugin_dirs = ["{plugins}"]
"#,
        tmp = at("tmp"),
        cni = at("cni"),
        plugins = at("cni-plugins"),
    );
    let storage = format!(
        r#"[storage]
driver = "overlay"
graphroot = "{graph}"
runroot = "{run}"
"#,
        graph = at("storage"),
        run = at("run"),
    );
    std::fs::write(dir.join("containers.conf"), containers).expect("write containers.conf");
    std::fs::write(dir.join("storage.conf"), storage).expect("write storage.conf");
}
