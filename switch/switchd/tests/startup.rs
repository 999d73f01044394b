//! switchd refuses to start, in one clear line, when it could not work as asked.

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
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("inf0") && stderr.contains("error, warn, info, debug, trace"),
        "the message names the bad level and the valid ones: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!dir.0.join("s.sock").exists(), "no socket was made");
}
