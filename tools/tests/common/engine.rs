//! What the Docker and Podman fixtures share: the holder whose namespaces an engine runs
//! in, commands with a failure bound, the busybox image, and the cleanup and its check.
//!
//! An engine and everything it starts (containerd, shims, conmon, containers, and any
//! process a test starts with [`Holder::command`]) live in the namespaces of one holder
//! process: the test's network namespace, a mount namespace of its own (with the cgroup
//! mounts engines need and tmpfs over the machine-wide state directories they would
//! otherwise share with every other engine on the machine) and a PID namespace of which
//! the holder is init. Killing the holder makes the kernel kill every process in that PID
//! namespace, which also drops the mount namespace and every mount the engine made: that
//! is the cleanup guarantee, whatever state the engine is in.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{run, Netns};

/// The image both fixtures import: a static busybox and its applets, nothing else.
pub const IMAGE: &str = "local/bb";

/// How long an engine command may take before it is killed and counted as failed: only a
/// bound that turns a hung engine into a failing test, never a timing assertion.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Mounts a process started by `ip netns exec` lacks: that command mounts a fresh /sys
/// for the namespace, with nothing under /sys/fs/cgroup, and the engines (cgroupfs
/// driver) need the v1 hierarchies this machine uses, named the way runc looks for them.
const CGROUP_MOUNTS: &str = "\
mount -t tmpfs cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
";

/// The applets linked into the image's /bin. (busybox `wget` crashes on this machine:
/// use `nc`.)
const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "echo", "env", "false", "grep", "head", "hostname", "httpd", "ifconfig",
    "ip", "kill", "ls", "mkdir", "nc", "nslookup", "ping", "ping6", "printf", "ps", "route", "sed",
    "seq", "sleep", "tail", "test", "timeout", "touch", "true", "udhcpc", "uname", "wc", "wget",
];

/// A process holding the namespaces an engine runs in (see the module's comment). It is
/// init of its PID namespace; dropping it kills it and so everything in that namespace.
///
/// It also dies when the test process does, however that happens: it waits for the end
/// of a pipe the test holds, so nothing of an engine outlives a test killed by a signal.
pub struct Holder {
    /// `unshare`, the holder's parent, which reports when the holder has exited (and with
    /// it every process of its PID namespace).
    unshare: Option<Child>,
    /// The write end of the holder's stdin; the holder exits at its end of file.
    _stdin: Option<ChildStdin>,
    /// The holder's PID (in the machine's PID namespace).
    pid: u32,
    log: PathBuf,
}

impl Holder {
    /// Starts a holder in `netns` with tmpfs mounted (in its own mount namespace only) on
    /// each of `tmpfs`. Those mount points are created on the machine when missing (as
    /// empty directories). Its stderr goes to `log`.
    pub fn start(netns: &Netns, tmpfs: &[&str], log: &Path) -> Holder {
        let script = format!(
            "set -eu\n{CGROUP_MOUNTS}\
             for d in {dirs}; do mkdir -p \"$d\" && mount -t tmpfs tmpfs \"$d\"; done\n\
             echo ready\n\
             exec >/dev/null 3<&0\n\
             # Waits for the test to go away (end of file on stdin). dash's wait reaps\n\
             # every child meanwhile, so the processes that engines orphan leave no\n\
             # zombies behind.\n\
             cat <&3 >/dev/null &\n\
             wait $!\n",
            dirs = tmpfs.join(" ")
        );
        let stderr = File::create(log).expect("the holder's log");
        let mut unshare = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            // --mount-proc gives a mount namespace and a /proc of the new PID namespace
            // (runc reads /proc/PID of the PIDs it sees); --kill-child kills the holder
            // if unshare dies.
            .args(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(["sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the holder (ip netns exec ... unshare)");
        let mut line = String::new();
        let stdout = unshare.stdout.take().expect("the holder's stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = unshare.kill();
            let _ = unshare.wait();
            panic!(
                "the holder did not come up; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let pid = *children(unshare.id())
            .first()
            .expect("unshare has forked the holder");
        Holder {
            _stdin: unshare.stdin.take(),
            unshare: Some(unshare),
            pid,
            log: log.to_path_buf(),
        }
    }

    /// The holder's PID, in the machine's PID namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The holder's PID namespace (`pid:[INODE]`).
    pub fn pid_ns(&self) -> String {
        ns_of(self.pid, "pid").expect("the holder is running")
    }

    /// A command that runs `program` in the holder's network, mount and PID namespaces,
    /// with the view the engine has (its cgroup mounts and tmpfs, the network namespace
    /// files under its state directories). It runs under `nsenter`, which forks it and
    /// waits for it: the process `spawn` returns is `nsenter`, the program is its child.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.pid))
            .args(["--mount", "--net", "--pid", "--"])
            .arg(program);
        command
    }

    /// The PID in the machine's namespace of the process that has `ns_pid` in the
    /// holder's PID namespace (the PIDs engines report, e.g. `docker inspect`'s
    /// `.State.Pid`).
    pub fn host_pid(&self, ns_pid: u32) -> Option<u32> {
        // NSpid lists a process's PID in its namespace and in each one above it; the
        // holder's own line ends with 1 at the holder namespace's level.
        let level = nspids(self.pid)?.len() - 1;
        let ours = self.pid_ns();
        all_pids().into_iter().find(|&pid| {
            nspids(pid).is_some_and(|ids| ids.get(level) == Some(&ns_pid)) && within(pid, &ours)
        })
    }

    /// Every process in the holder's PID namespace or under a process in it (containers
    /// have PID namespaces of their own), in the machine's PIDs.
    pub fn processes(&self) -> Vec<u32> {
        let Some(ours) = ns_of(self.pid, "pid") else {
            return Vec::new();
        };
        all_pids()
            .into_iter()
            .filter(|&pid| within(pid, &ours))
            .collect()
    }

    /// Kills the holder and with it every process in its PID namespace, and waits (at
    /// most 30 s, a failure bound) until they are gone. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut unshare) = self.unshare.take() else {
            return;
        };
        self._stdin = None;
        // The holder is unshare's child and unshare reaps it only to exit: while unshare
        // runs, the PID cannot belong to another process.
        if unshare.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
        // Init of a PID namespace is reaped only once every other process in the
        // namespace has exited, so unshare's exit means they are all gone.
        if wait_bounded(&mut unshare, Duration::from_secs(30)).is_none() {
            eprintln!(
                "holder {}: its namespace's processes did not exit within 30 s",
                self.pid
            );
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` with its output captured and stdin empty; a command still running
/// after `limit` is killed (with what it started) and returns with the signal as its
/// status and a note at the end of its stderr. Never panics on a failing command.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    // The output goes to memory files rather than pipes: a process the command leaves
    // behind (nsenter forks, engines daemonize) would keep a pipe open after it exits.
    let stdout = memfile("stdout");
    let stderr = memfile("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("dup a memory file"))
        .stderr(stderr.try_clone().expect("dup a memory file"))
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let (status, timed_out) = match wait_bounded(&mut child, limit) {
        Some(status) => (status, false),
        None => {
            kill_tree(child.id());
            (child.wait().expect("wait for a killed command"), true)
        }
    };
    let mut output = Output {
        status,
        stdout: read_back(stdout),
        stderr: read_back(stderr),
    };
    if timed_out {
        output.stderr.extend_from_slice(
            format!("\n(test harness: killed after {} s)\n", limit.as_secs()).as_bytes(),
        );
    }
    output
}

fn memfile(name: &str) -> File {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .expect("memfd_create");
    File::from(fd)
}

fn read_back(mut file: File) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = file.rewind();
    let _ = file.read_to_end(&mut bytes);
    bytes
}

/// Waits for `child` at most `limit`; `None` if it still runs.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Stops a process a test started, e.g. a plugin run with [`Holder::command`]: SIGTERM
/// to the program (to `nsenter`'s child when it runs under `nsenter`, which does not pass
/// signals on), then SIGKILL to it and what it started if it still runs after `limit`.
/// Returns its exit status, and whether it exited by itself.
pub fn terminate(child: &mut Child, limit: Duration) -> (ExitStatus, bool) {
    if child.try_wait().ok().flatten().is_none() {
        let under_nsenter = std::fs::read_to_string(format!("/proc/{}/comm", child.id()))
            .is_ok_and(|comm| comm.trim() == "nsenter");
        let targets = if under_nsenter {
            children(child.id())
        } else {
            vec![child.id()]
        };
        for pid in targets {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    if let Some(status) = wait_bounded(child, limit) {
        return (status, true);
    }
    kill_tree(child.id());
    (child.wait().expect("wait for a killed process"), false)
}

/// Kills `pid` and its descendants (those still its descendants: a daemon that has
/// detached is out of reach here, and dies with its holder).
fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut at = 0;
    while at < all.len() {
        all.extend(children(all[at]));
        at += 1;
    }
    for pid in all {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The children of `pid`, from /proc/PID/task/*/children.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Every PID in /proc.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `pid`'s namespace of `kind` (`net:[INODE]`), if it still runs.
pub fn ns_of(pid: u32, kind: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// A process's PID in its own namespace and each above it (the NSpid line), outermost
/// first.
fn nspids(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// `pid`'s parent, process name and start time (clock ticks after boot), from
/// /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold anything: fields follow the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    Some((
        fields.get(1)?.parse().ok()?,
        name,
        fields.get(19)?.parse().ok()?,
    ))
}

/// Whether `pid`, or a process it descends from, is in PID namespace `ns`.
fn within(pid: u32, ns: &str) -> bool {
    let mut at = pid;
    // Bounded by the depth of the process tree; the guard stops a loop on odd /proc data.
    for _ in 0..64 {
        if at <= 1 {
            return false;
        }
        if ns_of(at, "pid").as_deref() == Some(ns) {
            return true;
        }
        match stat(at) {
            Some((parent, _, _)) => at = parent,
            None => return false,
        }
    }
    false
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// Writes `dir/bb.tar`, the root filesystem of [`IMAGE`]: the machine's static busybox
/// as /bin/busybox, its applets as links to it, and the directories runc mounts on.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    // A dynamic busybox would need its libraries in the image.
    assert!(
        !run("ldd", &["/bin/busybox"]).status.success(),
        "/bin/busybox is not static; install busybox-static (make test does)"
    );
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("the image's directories");
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("an applet link");
    }
    let tar = dir.join("bb.tar");
    let out = run(
        "tar",
        &[
            "-C",
            rootfs.to_str().expect("utf-8 path"),
            "-cf",
            tar.to_str().expect("utf-8 path"),
            ".",
        ],
    );
    assert!(out.status.success(), "tar: {}", super::stderr(&out));
    tar
}

/// Removes the cgroups (paths relative to each hierarchy's root, e.g. `docker-x` or
/// `libpod_parent/libpod-ID`) and everything below them, in every hierarchy, once their
/// processes are gone. Runs in a process of its own in `netns` with the cgroup mounts
/// of a holder, so it needs no cgroup mounts in the test's own namespace.
pub fn remove_cgroups(netns: &Netns, paths: &[String]) {
    if paths.is_empty() {
        return;
    }
    let script = format!(
        "{CGROUP_MOUNTS}\
         for p in {paths}; do\n\
           for h in /sys/fs/cgroup/*/; do\n\
             if [ -d \"$h$p\" ]; then find \"$h$p\" -depth -type d -exec rmdir {{}} +; fi\n\
           done\n\
         done\n",
        paths = paths.join(" ")
    );
    let out = output_within(
        Command::new("ip").args(["netns", "exec", &netns.name, "sh", "-c", &script]),
        Duration::from_secs(30),
    );
    if !out.status.success() {
        eprintln!(
            "removing cgroups {paths:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Mount points at or under `dir` in the mount namespace of `pid`.
fn mounts_under(pid: &str, dir: &Path) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// Detaches every mount under `dir` in the test's mount namespace (deepest first; there
/// should be none, the engines mount in their holder's namespace), then removes `dir`
/// unless a mount is still there: removing through a mount would empty what is mounted.
pub fn remove_dir(dir: &Path) {
    let mut points = mounts_under("self", dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in &points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let left = mounts_under("self", dir);
    if left.is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        eprintln!("not removing {}: still mounted: {left:?}", dir.display());
    }
}

/// What an engine has on the machine while it runs, taken before it is dropped, so that
/// a test can check afterwards that nothing of it is left ([`Footprint::leftovers`]).
pub struct Footprint {
    /// The engine's directory: its paths are in the command lines of its processes and
    /// its mounts are under it.
    pub dir: PathBuf,
    pub netns: String,
    /// Every process of the engine: (PID, name, start time), the start time telling a
    /// process from a later one with the same PID.
    pub processes: Vec<(u32, String, u64)>,
    /// Cgroups of the engine, relative to each hierarchy's root.
    pub cgroups: Vec<String>,
}

impl Footprint {
    /// Takes the footprint of an engine in `holder`, with state in `dir`: the holder's
    /// processes and every process whose command line names `dir` (e.g. the `nsenter`
    /// an engine runs under).
    pub fn take(holder: &Holder, dir: &Path, netns: &Netns, cgroups: Vec<String>) -> Footprint {
        let needle = format!("{}/", dir.display());
        let mut pids = holder.processes();
        pids.push(holder.pid());
        pids.extend(
            all_pids()
                .into_iter()
                .filter(|&pid| cmdline(pid).contains(&needle)),
        );
        pids.sort_unstable();
        pids.dedup();
        let processes = pids
            .into_iter()
            .filter_map(|pid| stat(pid).map(|(_, name, start)| (pid, name, start)))
            .collect();
        Footprint {
            dir: dir.to_path_buf(),
            netns: netns.name.clone(),
            processes,
            cgroups,
        }
    }

    /// What is left of the engine: processes, mounts under its directory in any mount
    /// namespace, the directory, the network namespace, cgroups. Empty when it is gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (pid, name, start) in &self.processes {
            if stat(*pid).is_some_and(|(_, _, now)| now == *start) {
                left.push(format!("process {pid} ({name}) still runs"));
            }
        }
        let needle = format!("{}/", self.dir.display());
        let mut namespaces = Vec::new();
        for pid in all_pids() {
            let line = cmdline(pid);
            if line.contains(&needle) {
                left.push(format!("process {pid} still runs: {line}"));
            }
            // Every mount namespace once, through any process in it.
            match ns_of(pid, "mnt") {
                Some(ns) if !namespaces.contains(&ns) => {
                    for point in mounts_under(&pid.to_string(), &self.dir) {
                        left.push(format!("{point} is mounted in {ns} (process {pid})"));
                    }
                    namespaces.push(ns);
                }
                _ => {}
            }
        }
        if self.dir.exists() {
            left.push(format!("{} still exists", self.dir.display()));
        }
        if Path::new("/run/netns").join(&self.netns).exists() {
            left.push(format!("network namespace {} still exists", self.netns));
        }
        // The test's own cgroup mounts (this machine has them; without, no check).
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in hierarchies.flatten() {
                for cgroup in &self.cgroups {
                    let path = hierarchy.path().join(cgroup);
                    if path.exists() {
                        left.push(format!("cgroup {} still exists", path.display()));
                    }
                }
            }
        }
        left
    }
}
