//! switchd refuses to start, in one clear line, when it could not work as asked: an
//! unknown log level, or missing capabilities.
//!
//! The log-level test needs no root (the flags are checked first). The capability test
//! runs switchd as `nobody` through `setpriv`, so it needs root, and is marked
//! `#[ignore]`; `make test` runs it with `--include-ignored`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("switchd-start-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` and waits for it to exit; a switchd that is still running after 10 s
/// (it started when it should have refused) is killed, and the test fails.
fn run_expecting_exit(mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "switchd kept running instead of refusing to start; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn switchd(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchd"));
    command
        .arg("--socket")
        .arg(dir.0.join("s.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    command
}

#[test]
fn an_unknown_log_level_is_refused() {
    let dir = TempDir::new("log");
    let mut command = switchd(&dir);
    command.args(["--log", "inf0"]);
    let out = run_expecting_exit(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A flag's value: clap's usage error.
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.starts_with(
            "switchd: invalid value 'inf0' for '--log <FILTER>': \"inf0\" is not a log level"
        ) && stderr.contains("error, warn, info, debug, trace"),
        "the message names the bad level and the valid ones: {stderr}"
    );
    assert!(!dir.0.join("s.sock").exists(), "no socket was made");

    // The config file's: switchd cannot start (exit 1), in one line.
    let config = dir.0.join("switchd.toml");
    std::fs::write(&config, "log = \"inf0\"\n").unwrap();
    let mut command = switchd(&dir);
    command.arg("--config").arg(&config);
    let out = run_expecting_exit(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("inf0") && stderr.contains("error, warn, info, debug, trace"),
        "the message names the bad level and the valid ones: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!dir.0.join("s.sock").exists(), "no socket was made");
}

#[test]
#[ignore = "needs root; run by make test"]
fn without_capabilities_switchd_refuses_to_start() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test runs switchd as nobody with setpriv; run it as root"
    );
    // Paths nobody may write to, so that only the capabilities stand in the way.
    let dir = TempDir::new("caps");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_switchd"))
        .arg("--socket")
        .arg(dir.0.join("s.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    let out = run_expecting_exit(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("CAP_NET_ADMIN") && stderr.contains("CAP_SYS_ADMIN"),
        "the message names the missing capabilities: {stderr}"
    );
    assert!(
        !stderr.contains("switchd ready"),
        "it never said it was ready: {stderr}"
    );
    assert!(!dir.0.join("s.sock").exists(), "no socket was made");
}
