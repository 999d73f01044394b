//! switchd's control socket under bad clients, each test with its own switchd, socket and
//! state directory. switchd refuses to start without CAP_NET_ADMIN and CAP_SYS_ADMIN, so
//! these need root, and are marked `#[ignore]`; `make test` runs them with
//! `--include-ignored`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::control::{Request, Status};
use switchyard_os::client::Client;

struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    child: Child,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "switchd needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); run this with `make test` as root"
        );
        let dir = std::env::temp_dir().join(format!("switchd-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_switchd"))
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log")
            .arg("warn")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "switchd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { dir, socket, child }
    }

    fn status(&self) -> Status {
        Client::connect(&self.socket)
            .unwrap()
            .call(&Request::Status)
            .expect("status answered")
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn the_socket_is_private_to_its_owner() {
    let daemon = Daemon::start("mode");
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_bad_request_gets_an_error_and_the_connection_stays_usable() {
    let daemon = Daemon::start("bad");
    let stream = UnixStream::connect(&daemon.socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(b"not json\n{\"cmd\":\"launch\"}\n{\"cmd\":\"status\"}\n")
        .unwrap();
    let mut line = String::new();
    for expected in ["malformed request", "malformed request", "\"result\""] {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(expected), "expected {expected:?} in {line:?}");
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_client_that_never_reads_cannot_grow_switchd_or_stall_others() {
    let mut daemon = Daemon::start("flood");
    let before = daemon.rss_kib();
    let flooder = UnixStream::connect(&daemon.socket).unwrap();
    flooder.set_nonblocking(true).unwrap();
    let mut writer = &flooder;
    let chunk = b"{}\n".repeat(64 * 1024);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Keep pushing requests without reading a single answer, as far as the socket takes them.
    while sent < 12 << 20 && Instant::now() < deadline {
        match writer.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
        // Meanwhile everyone else is still served.
        if sent % (1 << 20) < chunk.len() {
            assert_eq!(daemon.status().ports, 0);
        }
    }
    assert_eq!(daemon.status().ports, 0);
    let grown = daemon.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "switchd grew by {grown} KiB for one client that never reads"
    );
    assert!(daemon.terminate().success(), "SIGTERM still works");
    drop(flooder);
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_overlong_request_is_refused_and_the_connection_closed() {
    let daemon = Daemon::start("long");
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let junk = vec![b'x'; 2 << 20];
    let _ = stream.write_all(&junk);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.contains("request too long"), "{answer:?}");
    assert_eq!(daemon.status().ports, 0, "switchd still serves others");
}
