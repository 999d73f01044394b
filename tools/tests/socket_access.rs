//! Root integration tests of who may use switchd's control socket: root only by default,
//! and the members of `--socket-group` when one is given; and the log of every request
//! that changes something, with the client's uid and pid.
//!
//! Clients run as `nobody` (uid 65534) through `setpriv`, with or without a group that
//! the test creates and deletes. Marked `#[ignore]`; `make test` runs them with
//! `--include-ignored`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output, Stdio};

use common::{bin, stderr, unique, Netns, Switchd};

/// A group made for the test, deleted on drop.
struct Group {
    name: String,
}

impl Group {
    fn new() -> Group {
        common::require_root();
        let name = unique("g");
        common::run_ok("groupadd", &[&name]);
        Group { name }
    }

    fn gid(&self) -> u32 {
        nix::unistd::Group::from_name(&self.name)
            .unwrap()
            .expect("the test's group exists")
            .gid
            .as_raw()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
    }
}

/// `swctl ARGS` against `switchd` as uid nobody, with `groups` as its only groups.
fn swctl_as_nobody(switchd: &Switchd, groups: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", "65534", "--regid", "65534"]);
    match groups {
        Some(groups) => command.args(["--groups", groups]),
        None => command.arg("--clear-groups"),
    };
    command
        .arg(bin("swctl"))
        .arg("--socket")
        .arg(&switchd.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run swctl through setpriv")
}

#[test]
#[ignore = "needs root; run by make test"]
fn by_default_only_root_may_connect() {
    let host = Netns::new("h");
    let switchd = Switchd::start_in(&host, &[]);
    let mode = std::fs::metadata(&switchd.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = swctl_as_nobody(&switchd, None, &["status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no permission"), "{}", stderr(&out));
    assert!(switchd.swctl(&["status"]).status.success(), "root may");
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_socket_group_lets_its_members_in_and_no_one_else() {
    let host = Netns::new("h");
    let group = Group::new();
    let switchd = Switchd::start_in(&host, &["--socket-group", &group.name]);
    let meta = std::fs::metadata(&switchd.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), group.gid(), "the socket belongs to the group");

    let member = swctl_as_nobody(&switchd, Some(&group.name), &["status"]);
    assert!(
        member.status.success(),
        "a member of {} may: {}",
        group.name,
        stderr(&member)
    );
    let stranger = swctl_as_nobody(&switchd, None, &["status"]);
    assert!(!stranger.status.success());
    let said = stderr(&stranger);
    assert!(said.contains("no permission"), "{said}");
    assert_eq!(said.lines().count(), 1, "one line: {said}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_unknown_socket_group_is_refused() {
    let host = Netns::new("h");
    let missing = unique("nogroup");
    let out = common::switchd_refusing(&host, &["--socket-group", &missing]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&missing) && said.contains("--socket-group"),
        "{said}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn requests_that_change_something_are_logged_with_the_client() {
    let host = Netns::new("h");
    let group = Group::new();
    let switchd = Switchd::start_in(&host, &["--socket-group", &group.name]);
    let flushed = swctl_as_nobody(&switchd, Some(&group.name), &["fdb", "flush"]);
    assert!(flushed.status.success(), "{}", stderr(&flushed));
    let refused = switchd.swctl(&["port", "del", "9"]);
    assert!(!refused.status.success());
    assert!(switchd.swctl(&["status"]).status.success());
    assert!(switchd.swctl(&["port", "ls"]).status.success());

    let log = switchd.log();
    let info: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" INFO ") && line.contains("control request"))
        .collect();
    let flush = info
        .iter()
        .find(|line| line.contains("fdb_flush"))
        .unwrap_or_else(|| panic!("the flush is logged at info:\n{log}"));
    assert!(flush.contains("uid=65534"), "{flush}");
    assert!(flush.contains("pid="), "{flush}");
    let del = info
        .iter()
        .find(|line| line.contains("port_del"))
        .unwrap_or_else(|| panic!("a refused change is logged too:\n{log}"));
    assert!(
        del.contains("uid=0") && del.contains("no_such_port"),
        "{del}"
    );
    assert!(
        !info
            .iter()
            .any(|line| line.contains("cmd=\"status\"") || line.contains("port_list")),
        "reading requests are not logged at info:\n{log}"
    );
}

/// In a set-group-ID directory a new file takes the directory's group, not switchd's
/// choice: the socket is made private first and handed to the group, and still comes
/// out 0660 and the group's.
#[test]
#[ignore = "needs root; run by make test"]
fn a_socket_group_holds_in_a_set_group_id_directory() {
    struct Running {
        child: std::process::Child,
        dir: std::path::PathBuf,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
    let host = Netns::new("h");
    let group = Group::new();
    let other = Group::new();
    let dir = std::env::temp_dir().join(unique("sgid"));
    std::fs::create_dir_all(&dir).unwrap();
    nix::unistd::chown(&dir, None, Some(nix::unistd::Gid::from_raw(other.gid()))).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2755)).unwrap();
    let socket = dir.join("s.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &host.name])
        .arg(bin("switchd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--socket-group", &group.name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchd");
    let running = Running { child, dir };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "switchd did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), group.gid(), "not the directory's group");
    drop(running);
}
