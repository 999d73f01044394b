//! switchyard as a user installs it: `make install` into a scratch DESTDIR (binaries that
//! run, man pages, completions, units), the units through `systemd-analyze`, `make deb`
//! installed with dpkg into a scratch root, and the sd_notify handshake of switchd.service
//! (`Type=notify`) with the test as the service manager, switchd confined to the unit's
//! capabilities.
//!
//! The machine has no running systemd: nothing is installed outside the test's own
//! directories, and the notify socket is the test's. The tests install the debug build
//! (`BUILD_DIR=target/debug`): `make test` builds every binary first, and no release. They
//! need those binaries, make, dpkg and systemd-analyze (scripts/deps.sh), and the notify
//! test root (namespaces, TAPs), so all are marked `#[ignore]`; `make test` runs them
//! with `--include-ignored`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, run, run_ok, stderr, unique, Netns};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).expect("test directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tools/")
}

/// Where the binaries are: target/debug when `make test` runs this.
fn build_dir() -> PathBuf {
    bin("switchd").parent().expect("target/<profile>").into()
}

/// `make ARGS` in the workspace, insisting it succeeds. The make that runs `make test`
/// passes its command line's variables down in MAKEFLAGS: they are not this make's.
fn make(args: &[&str]) -> String {
    let out = Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(repo())
        .args(args)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .stdin(Stdio::null())
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `make install` of the debug build into a fresh DESTDIR, as a package would (PREFIX=/usr).
fn install_tree() -> TempDir {
    let dest = TempDir::new("inst");
    make(&[
        "install",
        &format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/usr",
        &format!("BUILD_DIR={}", build_dir().display()),
    ]);
    dest
}

/// Every file (not directory) under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read the tree") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn assert_executable(path: &Path) {
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{} is not installed: {err}", path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "{} has mode {mode:o}", path.display());
}

#[test]
#[ignore = "needs every binary built and make (make test)"]
fn make_install_puts_runnable_binaries_man_pages_completions_and_units() {
    let dest = install_tree();
    let root = dest.path();
    let usr = root.join("usr");

    // The binaries run from where they were put, and say which program and version.
    for (dir, name) in [
        ("sbin", "switchd"),
        ("sbin", "switchyard-docker"),
        ("bin", "swctl"),
        ("bin", "nsutil"),
        ("bin", "switchyard-cni"),
    ] {
        assert_executable(&usr.join(dir).join(name));
    }
    let version = run_ok(usr.join("sbin/switchd"), &["--version"]);
    assert!(
        version.starts_with("switchd ") && version.contains(VERSION),
        "switchd --version: {version}"
    );
    let help = run_ok(usr.join("bin/swctl"), &["--help"]);
    assert!(help.contains("Usage: swctl"), "swctl --help: {help}");
    run_ok(usr.join("bin/nsutil"), &["--help"]);
    run_ok(usr.join("sbin/switchyard-docker"), &["--help"]);
    // Where CNI runtimes look for plugins, the same binary.
    let cni = root.join("opt/cni/bin/switchyard-cni");
    assert_executable(&cni);
    assert_eq!(
        std::fs::read(&cni).unwrap(),
        std::fs::read(usr.join("bin/switchyard-cni")).unwrap(),
        "/opt/cni/bin/switchyard-cni is the installed switchyard-cni"
    );

    // Man pages: the daemons' in section 8, the tools' in 1, one per subcommand; roff
    // that man renders.
    let man = usr.join("share/man");
    for (page, title) in [
        ("man8/switchd.8", "switchd 8"),
        ("man8/switchyard-docker.8", "switchyard-docker 8"),
        ("man1/swctl.1", "swctl 1"),
        ("man1/swctl-port-set.1", "swctl-port-set 1"),
        ("man1/swctl-completion.1", "swctl-completion 1"),
        ("man1/nsutil.1", "nsutil 1"),
        ("man1/nsutil-attach.1", "nsutil-attach 1"),
        ("man1/switchyard-cni.1", "switchyard-cni 1"),
    ] {
        let path = man.join(page);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("no man page {}: {err}", path.display()));
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!(".TH {title}"))),
            "{page} has no .TH {title} header:\n{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{page} has mode {mode:o}");
        let name = title.split(' ').next().unwrap();
        let rendered = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            // Plain text when not on a terminal, unless this is set (to anything).
            .env_remove("MAN_KEEP_FORMATTING")
            .output()
            .expect("run man");
        let shown = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            rendered.status.success() && shown.contains("NAME") && shown.contains(name),
            "man -l {page} ({}): {}\n{shown}",
            rendered.status,
            stderr(&rendered)
        );
    }
    let switchd_page = std::fs::read_to_string(man.join("man8/switchd.8")).unwrap();
    assert!(
        switchd_page.contains("state\\-dir") && !switchd_page.contains("generate\\-man"),
        "switchd.8 describes the flags, not the hidden --generate-man"
    );

    // Completions, in the directories each shell reads; bash's parses.
    let share = usr.join("share");
    for tool in ["swctl", "nsutil"] {
        let bash = share.join("bash-completion/completions").join(tool);
        let script = std::fs::read_to_string(&bash).expect("bash completion");
        assert!(
            script.contains(&format!("complete -F _{tool}")),
            "{}",
            bash.display()
        );
        run_ok("bash", &["-n", bash.to_str().unwrap()]);
        let zsh =
            std::fs::read_to_string(share.join("zsh/site-functions").join(format!("_{tool}")))
                .expect("zsh completion");
        assert!(zsh.starts_with(&format!("#compdef {tool}")), "{zsh}");
        let fish = std::fs::read_to_string(
            share
                .join("fish/vendor_completions.d")
                .join(format!("{tool}.fish")),
        )
        .expect("fish completion");
        assert!(fish.contains(&format!("complete -c {tool}")), "{fish}");
    }
    // The same scripts as the subcommand prints.
    let printed = run_ok(usr.join("bin/swctl"), &["completion", "bash"]);
    assert_eq!(
        printed,
        std::fs::read_to_string(share.join("bash-completion/completions/swctl")).unwrap()
    );

    // The units, with ExecStart where the daemons went.
    let units = usr.join("lib/systemd/system");
    let switchd_unit = std::fs::read_to_string(units.join("switchd.service")).unwrap();
    assert!(
        switchd_unit.contains("\nExecStart=/usr/sbin/switchd ")
            && switchd_unit.contains("\nType=notify\n"),
        "{switchd_unit}"
    );
    let docker_unit = std::fs::read_to_string(units.join("switchyard-docker.service")).unwrap();
    assert!(
        docker_unit.contains("\nExecStart=/usr/sbin/switchyard-docker ")
            && docker_unit.contains("\nAfter=switchd.service\n"),
        "{docker_unit}"
    );

    // And `make uninstall` takes back every file it put there.
    make(&[
        "uninstall",
        &format!("DESTDIR={}", root.display()),
        "PREFIX=/usr",
    ]);
    assert_eq!(
        files_under(root),
        Vec::<String>::new(),
        "left after uninstall"
    );
}

/// The installed units with ExecStart pointing into the DESTDIR (systemd-analyze checks
/// that the command exists), in a directory of their own.
fn units_for_verify(dest: &Path, out: &Path) -> Vec<PathBuf> {
    ["switchd.service", "switchyard-docker.service"]
        .into_iter()
        .map(|unit| {
            let text = std::fs::read_to_string(dest.join("usr/lib/systemd/system").join(unit))
                .expect("installed unit");
            let text = text.replace("\nExecStart=/", &format!("\nExecStart={}/", dest.display()));
            let path = out.join(unit);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
#[ignore = "needs every binary built, make and systemd-analyze (make test)"]
fn the_units_pass_systemd_analyze() {
    let dest = install_tree();
    let scratch = TempDir::new("units");
    let units = units_for_verify(dest.path(), scratch.path());
    // verify: the syntax, every directive known, the command there, the man pages of
    // Documentation= found (in the DESTDIR). It warns without failing, so a quiet
    // stderr is part of passing.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("MANPATH", dest.path().join("usr/share/man"))
        .output()
        .expect("run systemd-analyze (apt-get install systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // The sandbox stays in the "OK" band of systemd's own exposure score (below 5.0 of
    // 10), so that a loosened setting shows here.
    for unit in &units {
        let out = run(
            "systemd-analyze",
            &[
                "security",
                "--offline=true",
                "--threshold=49",
                unit.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{} is exposed more than before:\n{}",
            unit.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The sandbox must not move switchd out of the host's network namespace, where it
    // makes the uplink and its routes.
    let switchd = std::fs::read_to_string(&units[0]).unwrap();
    for setting in [
        "PrivateNetwork=",
        "NetworkNamespacePath=",
        "PrivateDevices=",
        "ProtectKernelTunables=",
        "ProtectProc=",
    ] {
        assert!(
            !switchd.lines().any(|line| line.starts_with(setting)),
            "switchd.service sets {setting}"
        );
    }
}

#[test]
#[ignore = "needs every binary built, make and dpkg (make test)"]
fn make_deb_builds_a_package_that_dpkg_installs() {
    let out = TempDir::new("deb");
    make(&[
        "deb",
        &format!("BUILD_DIR={}", build_dir().display()),
        &format!("DEB_DIR={}", out.path().display()),
        // Debian compresses with xz; a test need not wait for it.
        "DEB_COMPRESS=gzip",
    ]);
    let arch = run_ok("dpkg", &["--print-architecture"]);
    let deb = out
        .path()
        .join(format!("switchyard_{VERSION}_{}.deb", arch.trim()));
    let deb = deb.to_str().unwrap();
    let info = run_ok("dpkg-deb", &["--info", deb]);
    for field in [
        "Package: switchyard".to_string(),
        format!("Version: {VERSION}"),
        format!("Architecture: {}", arch.trim()),
    ] {
        assert!(info.contains(&field), "no {field:?} in:\n{info}");
    }
    let depends = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in:\n{info}"));
    assert!(depends.contains("libc6 (>= "), "Depends: {depends}");
    let contents = run_ok("dpkg-deb", &["--contents", deb]);
    for path in [
        "./usr/sbin/switchd",
        "./usr/sbin/switchyard-docker",
        "./usr/bin/swctl",
        "./usr/bin/nsutil",
        "./usr/bin/switchyard-cni",
        "./opt/cni/bin/switchyard-cni",
        "./usr/lib/systemd/system/switchd.service",
        "./usr/lib/systemd/system/switchyard-docker.service",
        "./usr/share/man/man8/switchd.8",
        "./usr/share/man/man1/swctl.1",
        "./usr/share/man/man1/switchyard-cni.1",
        "./usr/share/bash-completion/completions/swctl",
    ] {
        assert!(
            contents
                .lines()
                .any(|line| line.ends_with(&format!(" {path}"))),
            "the package lacks {path}:\n{contents}"
        );
    }
    assert!(
        contents.lines().all(|line| line.contains(" root/root ")),
        "every file is root's:\n{contents}"
    );

    // dpkg -i into a root of the test's own (with a database of its own: the machine's
    // knows nothing of it, so Depends are taken as met), then run what it unpacked.
    let root = TempDir::new("dpkgroot");
    let admin = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    let root_arg = format!("--root={}", root.path().display());
    run_ok("dpkg", &[&root_arg, "--force-depends", "-i", deb]);
    let version = run_ok(root.path().join("usr/sbin/switchd"), &["--version"]);
    assert!(
        version.starts_with("switchd ") && version.contains(VERSION),
        "switchd --version: {version}"
    );
    run_ok(root.path().join("usr/bin/swctl"), &["--help"]);
    let status = run_ok("dpkg", &[&root_arg, "-s", "switchyard"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    run_ok("dpkg", &[&root_arg, "-r", "switchyard"]);
    assert!(
        !root.path().join("usr/sbin/switchd").exists(),
        "dpkg -r removes switchd"
    );
}

/// The capabilities switchd.service leaves switchd, as setpriv's --bounding-set.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(repo().join("dist/switchd.service")).unwrap();
    let caps = unit
        .lines()
        .find_map(|line| line.strip_prefix("CapabilityBoundingSet="))
        .expect("switchd.service has a CapabilityBoundingSet");
    let mut set = String::from("-all");
    for cap in caps.split_whitespace() {
        set.push_str(",+");
        set.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    set
}

/// A switchd in `netns` with only switchd.service's capabilities and no new privileges
/// (as the unit starts it), on `dir`'s socket and state directory, with NOTIFY_SOCKET
/// when given. Stopped with SIGTERM on drop.
struct Confined {
    child: Option<Child>,
    log: PathBuf,
}

impl Confined {
    fn start(netns: &Netns, dir: &Path, notify: Option<&Path>) -> Confined {
        let log = dir.join("switchd.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns.name, "setpriv"])
            .arg(format!("--bounding-set={}", unit_capabilities()))
            .args(["--inh-caps=-all", "--no-new-privs", "--"])
            .arg(bin("switchd"))
            .arg("--socket")
            .arg(dir.join("switchd.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--log", "debug"])
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        if let Some(path) = notify {
            command.env("NOTIFY_SOCKET", path);
        }
        Confined {
            child: Some(command.spawn().expect("start switchd")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit status.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().ok()
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_socket(path: &Path, switchd: &Confined) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "switchd did not come up; log:\n{}",
            switchd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tool(name: &str, socket: &Path, args: &[&str]) -> Output {
    let mut full = vec!["--socket", socket.to_str().unwrap()];
    full.extend_from_slice(args);
    run(bin(name), &full)
}

/// The next notification, or a failure naming what did not come.
fn next_message(listener: &UnixDatagram, waiting_for: &str, switchd: &Confined) -> String {
    let mut buf = [0; 4096];
    match listener.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(err) => panic!(
            "no notification ({err}) while waiting for {waiting_for}; log:\n{}",
            switchd.log()
        ),
    }
}

#[test]
#[ignore = "needs root: namespaces and TAPs (make test)"]
fn switchd_is_ready_only_after_restoring_its_ports_and_says_when_it_stops() {
    common::require_root();
    let host = Netns::new("nh");
    let red = Netns::new("nr");
    let dir = TempDir::new("ntf");
    let socket = dir.path().join("switchd.sock");

    // A state directory with a port in it: attached under a first switchd, which stops.
    let mut first = Confined::start(&host, dir.path(), None);
    wait_for_socket(&socket, &first);
    let attached = tool(
        "nsutil",
        &socket,
        &["attach", &red.name, "--ip", "10.0.0.1/24"],
    );
    assert!(
        attached.status.success(),
        "nsutil attach under the unit's capabilities: {}\nswitchd log:\n{}",
        stderr(&attached),
        first.log()
    );
    let status = first.stop().expect("switchd was running");
    assert!(status.success(), "switchd exited with {status} on SIGTERM");

    // The second switchd has a service manager: this test.
    let notify_path = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut second = Confined::start(&host, dir.path(), Some(&notify_path));
    let mut before_ready = Vec::new();
    let ready = loop {
        let message = next_message(&listener, "READY=1", &second);
        if message.lines().any(|line| line == "READY=1") {
            break message;
        }
        before_ready.push(message);
    };
    // What the log says at this moment was written before READY=1 was sent: the port's
    // TAP was back by then, and the control socket answers at once.
    let log = second.log();
    assert!(
        log.contains("reattached TAP of port"),
        "READY=1 came before the port was restored; log:\n{log}"
    );
    let ports = tool("swctl", &socket, &["--json", "port", "ls"]);
    assert!(ports.status.success(), "swctl port ls: {}", stderr(&ports));
    let ports: serde_json::Value = serde_json::from_slice(&ports.stdout).expect("JSON");
    let ports = ports.as_array().expect("a list of ports");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["state"], "up", "{ports:?}");
    assert!(
        before_ready
            .iter()
            .any(|m| m.starts_with("STATUS=restoring ports")),
        "a STATUS= while restoring: {before_ready:?}"
    );
    assert!(
        ready
            .lines()
            .any(|line| line == "STATUS=ready: 1 port, 0 networks"),
        "READY=1 comes with what was restored: {ready:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let pid = nix::unistd::Pid::from_raw(second.child.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = next_message(&listener, "STOPPING=1", &second);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1")
            && stopping.lines().any(|line| line.starts_with("STATUS=")),
        "{stopping:?}"
    );
    let status = second.stop().expect("switchd was running");
    assert!(status.success(), "switchd exited with {status} on SIGTERM");
    // Stopped, the port's TAP stays in its namespace.
    assert!(
        red.links().iter().any(|link| link == "eth0"),
        "{:?}",
        red.links()
    );
}
