//! Runs the built `swctl` binary: against no switchd at all, and against a fake switchd
//! that answers one canned line per connection on a Unix socket in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use serde_json::{json, Value};

fn swctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swctl"))
        .args(args)
        .env_remove("SWITCHYARD_SOCKET")
        .output()
        .expect("run swctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "swctl-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
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

/// A fake switchd: for each answer, accepts one connection, reads one request line and
/// sends the answer. The join handle yields the request lines it received.
fn fake_switchd(socket: &Path, answers: Vec<Value>) -> JoinHandle<Vec<Value>> {
    let listener = UnixListener::bind(socket).expect("bind fake switchd");
    thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("read request");
            requests.push(serde_json::from_str(&line).expect("request is JSON"));
            let mut writer = stream;
            writeln!(writer, "{answer}").expect("write answer");
        }
        requests
    })
}

fn two_ports() -> Value {
    json!([
        {
            "id": 1,
            "name": "red/eth0",
            "netns": "/run/netns/red",
            "ifname": "eth0",
            "ifindex": 7,
            "mode": "access",
            "vlan": 10,
            "state": "up",
            "kind": "tap"
        },
        {
            "id": 2,
            "name": "blue/eth1",
            "netns": "/run/netns/blue",
            "ifname": "eth1",
            "ifindex": 9,
            "mode": "trunk",
            "allowed": [10, 20],
            "native": 30,
            "state": "up",
            "kind": "tap"
        }
    ])
}

#[test]
fn without_switchd_says_it_is_not_running() {
    let output = swctl(&["--socket", "/nonexistent/x.sock", "port", "ls"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with('\n'), "{err:?}");
    assert!(
        err.starts_with("swctl: switchd is not running at /nonexistent/x.sock: "),
        "{err}"
    );
    // The hint names the socket asked for.
    assert!(
        err.contains("start it with `switchd --socket /nonexistent/x.sock`"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let output = swctl(&["port", "set", "1", "--vlan", "10", "--trunk", "20"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("cannot be used with"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn port_ls_prints_json_and_a_table() {
    let dir = TempDir::new();
    let socket = dir.path().join("switchd.sock");
    let ports = two_ports();
    let server = fake_switchd(
        &socket,
        vec![json!({ "result": ports }), json!({ "result": ports })],
    );
    let socket = socket.to_str().expect("UTF-8 temp path");

    let as_json = swctl(&["port", "ls", "--json", "--socket", socket]);
    assert_eq!(as_json.status.code(), Some(0), "{}", stderr(&as_json));
    let text = stdout(&as_json);
    assert!(text.starts_with("[\n  {\n"), "not pretty JSON: {text}");
    let printed: Value = serde_json::from_str(&text).expect("stdout is JSON");
    assert_eq!(printed, ports);

    let as_table = swctl(&["--socket", socket, "port", "ls"]);
    assert_eq!(as_table.status.code(), Some(0), "{}", stderr(&as_table));
    assert_eq!(
        stdout(&as_table),
        "\
ID  NAME       NETNS            IFNAME  KIND  MODE    VLANS            STATE
 1  red/eth0   /run/netns/red   eth0    tap   access  10               up
 2  blue/eth1  /run/netns/blue  eth1    tap   trunk   10,20 native 30  up
"
    );
    assert_eq!(stderr(&as_table), "");

    let requests = server.join().expect("fake switchd");
    assert_eq!(requests, vec![json!({ "cmd": "port_list" }); 2]);
}

#[test]
fn port_set_sends_the_mode_and_prints_one_line() {
    let dir = TempDir::new();
    let socket = dir.path().join("switchd.sock");
    let port = two_ports()[1].clone();
    let server = fake_switchd(&socket, vec![json!({ "result": port })]);
    let socket = socket.to_str().expect("UTF-8 temp path");

    let output = swctl(&[
        "--socket",
        socket,
        "port",
        "set",
        "blue/eth1",
        "--trunk",
        "10,20",
        "--native",
        "30",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "port 2 (blue/eth1): trunk 10,20 native 30\n"
    );

    let requests = server.join().expect("fake switchd");
    assert_eq!(
        requests,
        vec![json!({
            "cmd": "port_set",
            "port": "blue/eth1",
            "mode": { "mode": "trunk", "allowed": [10, 20], "native": 30 }
        })]
    );
}

#[test]
fn a_refusal_is_one_line_on_stderr() {
    let dir = TempDir::new();
    let socket = dir.path().join("switchd.sock");
    let server = fake_switchd(&socket, vec![json!({ "error": "no such port: 9" })]);
    let socket = socket.to_str().expect("UTF-8 temp path");

    let output = swctl(&["--socket", socket, "--json", "port", "del", "9"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    // What failed (the command), then switchd's why.
    assert_eq!(stderr(&output), "swctl: port del: no such port: 9\n");

    let requests = server.join().expect("fake switchd");
    assert_eq!(requests, vec![json!({ "cmd": "port_del", "port": "9" })]);
}
