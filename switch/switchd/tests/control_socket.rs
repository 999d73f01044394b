//! switchd's control socket under bad clients, each test with its own switchd, socket and
//! state directory, and its own network namespace (switchd rewrites its NAT table when it
//! starts, which must not happen in the machine's own). switchd refuses to start without
//! CAP_NET_ADMIN and CAP_SYS_ADMIN, so these need root, and are marked `#[ignore]`;
//! `make test` runs them with `--include-ignored`.

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
    /// The network namespace it runs in, deleted on drop (after switchd stopped).
    netns: String,
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
        let netns = format!("sytctl{}{tag}", std::process::id());
        let added = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap();
        assert!(added.success(), "ip netns add {netns}");
        // `ip netns exec` execs switchd: the child's pid is switchd's.
        let child = Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(env!("CARGO_BIN_EXE_switchd"))
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
        let daemon = Daemon {
            dir,
            socket,
            child,
            netns,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&daemon.socket).is_err() {
            assert!(Instant::now() < deadline, "switchd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
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

    /// CPU time switchd has used so far, in clock ticks (user + system, /proc/PID/stat).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses and may hold blanks.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the whole line; 3 is the first here.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .stderr(Stdio::null())
            .status();
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

/// Clock ticks per second, for [`Daemon::cpu_ticks`].
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64
}

/// A client that writes garbage lines and never reads the answers: once its answers pile
/// up, switchd must stop serving it, not spin on it.
#[test]
#[ignore = "needs root; run by make test"]
fn a_garbage_writer_that_never_reads_does_not_make_switchd_spin() {
    let daemon = Daemon::start("spin");
    let flooder = UnixStream::connect(&daemon.socket).unwrap();
    flooder.set_nonblocking(true).unwrap();
    let chunk = b"garbage, not a request\n".repeat(4096);
    let mut writer = &flooder;
    let mut write_for = |how_long: Duration| {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            if writer.write(&chunk).is_err() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // Fill every buffer on the way: switchd's answers, the socket's both ways.
    write_for(Duration::from_secs(2));
    let before = daemon.cpu_ticks();
    let started = Instant::now();
    write_for(Duration::from_secs(4));
    let used = daemon.cpu_ticks() - before;
    let elapsed = started.elapsed().as_secs_f64();
    let share = used as f64 / ticks_per_second() as f64 / elapsed;
    assert!(
        share < 0.5,
        "switchd used {:.0} % of a core on a client that never reads",
        share * 100.0
    );
    assert_eq!(daemon.status().ports, 0, "everyone else is still served");
    drop(flooder);
}

/// Connections that never send a request must not lock everyone else out.
#[test]
#[ignore = "needs root; run by make test"]
fn five_hundred_idle_connections_leave_room_for_a_new_client() {
    let daemon = Daemon::start("idle");
    let idle: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    // A bound for failure only, well below the idle timeout: the room must be kept for a
    // new client, not freed by connections timing out.
    let stream = UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut writer = &stream;
    writer.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .expect("status is answered despite 500 idle connections");
    assert!(answer.contains("\"result\""), "{answer:?}");
    drop(idle);
}

/// Whether switchd has closed its end of `stream`: reads until EOF (or a reset), at
/// most `bound`.
fn closed_by_switchd(stream: &UnixStream, bound: Duration) -> bool {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(bound)).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = stream;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// An idle connection, and one whose answers pile up unread, are closed after the idle
/// timeout (30 s); a connection in use is not.
#[test]
#[ignore = "needs root; run by make test"]
fn idle_and_stuck_connections_are_closed_after_a_while() {
    let daemon = Daemon::start("timeout");
    let idle = UnixStream::connect(&daemon.socket).unwrap();
    let stuck = UnixStream::connect(&daemon.socket).unwrap();
    stuck.set_nonblocking(true).unwrap();
    let chunk = b"{}\n".repeat(64 * 1024);
    let mut writer = &stuck;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if writer.write(&chunk).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut busy = Client::connect(&daemon.socket).unwrap();
    // Bounds for failure only: generously past the 30 s timeout.
    let bound = Duration::from_secs(90);
    let waiter = {
        let idle = idle.try_clone().unwrap();
        std::thread::spawn(move || closed_by_switchd(&idle, bound))
    };
    let stuck_waiter = {
        let stuck = stuck.try_clone().unwrap();
        std::thread::spawn(move || closed_by_switchd(&stuck, bound))
    };
    // Meanwhile a client that keeps asking keeps its connection.
    let until = Instant::now() + bound;
    while Instant::now() < until && !(waiter.is_finished() && stuck_waiter.is_finished()) {
        let status: Status = busy
            .call(&Request::Status)
            .expect("a busy connection stays open");
        assert_eq!(status.ports, 0);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(waiter.join().unwrap(), "the idle connection was closed");
    assert!(
        stuck_waiter.join().unwrap(),
        "the connection whose answers were never read was closed"
    );
    let status: Status = busy.call(&Request::Status).expect("still open");
    assert_eq!(status.ports, 0);
}

/// A client that pipelines far more requests than switchd buffers answers for, and reads
/// them all, gets every answer: pausing a client whose answers wait must resume it as soon
/// as it reads.
#[test]
#[ignore = "needs root; run by make test"]
fn a_client_that_pipelines_many_requests_gets_every_answer() {
    let daemon = Daemon::start("pipeline");
    let stream = UnixStream::connect(&daemon.socket).unwrap();
    // A bound for failure only.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    const REQUESTS: usize = 20_000;
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let batch = b"{\"cmd\":\"status\"}\n{}\n".repeat(REQUESTS / 2);
        writer.write_all(&batch).unwrap();
    });
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    let (mut results, mut errors) = (0, 0);
    for _ in 0..REQUESTS {
        line.clear();
        reader.read_line(&mut line).expect("every answer comes");
        if line.starts_with("{\"result\"") {
            results += 1;
        } else if line.contains("malformed") {
            errors += 1;
        }
    }
    sender.join().unwrap();
    assert_eq!((results, errors), (REQUESTS / 2, REQUESTS / 2));
}
