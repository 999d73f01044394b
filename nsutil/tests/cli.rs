//! The `nsutil` command: output, exit codes, and its use of switchd (a stand-in here).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fake_switchd::FakeSwitchd;
use common::{link_names, unique_name, TestNs};
use switchyard::control::Request;

fn nsutil(args: &[&str], socket: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsutil"))
        .args(args)
        .env("SWITCHYARD_SOCKET", socket)
        .output()
        .expect("run nsutil")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code 1, `nsutil: ` on stderr, nothing on stdout.
fn assert_fails(output: &Output, message: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    let err = stderr(output);
    assert!(err.starts_with("nsutil: "), "{err}");
    assert!(err.contains(message), "expected {message:?} in {err}");
}

fn nowhere() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.sock", unique_name()))
}

/// Exit code 2 (bad usage), `nsutil: ` on stderr, nothing on stdout.
fn assert_usage(output: &Output, message: &str) {
    assert_eq!(output.status.code(), Some(2), "{}", stderr(output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    let err = stderr(output);
    assert!(err.starts_with("nsutil: "), "{err}");
    assert!(err.contains(message), "expected {message:?} in {err}");
}

#[test]
fn usage_errors_exit_2() {
    let socket = nowhere();
    assert_usage(
        &nsutil(&["attach", "red", "--ip", "10.0.0.1"], &socket),
        "has no prefix length",
    );
    assert_usage(
        &nsutil(&["attach", "red", "--ip", "10.0.0.300/24"], &socket),
        "CIDR",
    );
    assert_usage(
        &nsutil(
            &["attach", "red", "--network", "blue", "--ip", "10.0.0.x"],
            &socket,
        ),
        "invalid --ip",
    );
    assert_usage(
        &nsutil(
            &["attach", "red", "--network", "blue", "--publish", "80:x"],
            &socket,
        ),
        "invalid --publish",
    );
    assert_usage(&nsutil(&["attach", "red"], &socket), "--ip");
    assert_usage(&nsutil(&["frobnicate"], &socket), "unrecognized subcommand");
    assert_usage(
        &nsutil(
            &["attach", "red", "--ip", "10.0.0.1/24", "--trunk", "10"],
            &socket,
        ),
        "cannot be used with",
    );
    assert_usage(
        &nsutil(&["attach", "red", "--trunk", "10,x"], &socket),
        "invalid VLAN list",
    );
    assert_usage(
        &nsutil(
            &["attach", "red", "--ip", "10.0.0.1/24", "--vlan", "4095"],
            &socket,
        ),
        "invalid VLAN id",
    );
    assert_usage(
        &nsutil(&["attach", "a/b", "--ip", "10.0.0.1/24"], &socket),
        "a path must be absolute",
    );
    // The kernel's and nsutil's refusals of what was asked are failed operations.
    assert_fails(
        &nsutil(&["create", "a b"], &socket),
        "invalid network namespace name",
    );
    let help = nsutil(&["--help"], &socket);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("attach"));
    assert!(
        stdout(&help).contains("Exit status: 0 done"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn version_names_the_program() {
    let version = nsutil(&["--version"], &nowhere());
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        stdout(&version),
        format!("nsutil {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn json_is_global_before_or_after_the_subcommand() {
    let socket = nowhere();
    for args in [["--json", "ls"], ["ls", "--json"]] {
        let output = nsutil(&args, &socket);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let listed: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("stdout is JSON");
        assert!(listed.is_array(), "{listed}");
    }
    // A flag of the tool, not of one subcommand: attach takes it before its own arguments.
    let output = nsutil(&["--json", "attach", "red"], &socket);
    assert_usage(&output, "--ip");
}

#[test]
#[ignore = "needs root; run by make test"]
fn attach_errors_exit_1_and_touch_nothing() {
    let ns = TestNs::new();
    let socket = nowhere();
    let missing = unique_name();
    assert_fails(
        &nsutil(&["attach", &missing, "--ip", "10.0.0.1/24"], &socket),
        &format!("no such network namespace '{missing}' (/run/netns/{missing}): create it with `nsutil create {missing}`"),
    );
    assert_fails(
        &nsutil(
            &[
                "attach",
                &ns.name,
                "--ip",
                "10.0.0.1/24",
                "--gw",
                "10.0.1.1",
            ],
            &socket,
        ),
        "gateway 10.0.1.1 is outside 10.0.0.0/24",
    );
    assert_fails(
        &nsutil(
            &["attach", &ns.name, "--trunk", "10", "--gw", "10.0.1.1"],
            &socket,
        ),
        "--ip",
    );
    // --socket is global: accepted after the subcommand too, and wins over the environment.
    let other = nowhere();
    let output = nsutil(
        &[
            "attach",
            &ns.name,
            "--ip",
            "10.0.0.1/24",
            "--socket",
            other.to_str().unwrap(),
        ],
        &socket,
    );
    assert_fails(
        &output,
        &format!("switchd is not running at {}", other.display()),
    );
    assert!(
        !stderr(&output).contains("os error 2): No such file"),
        "cause printed twice: {}",
        stderr(&output)
    );
    assert_eq!(link_names(&ns), ["lo"]);
}

#[test]
#[ignore = "needs root; run by make test"]
fn create_attach_ls_detach_delete() {
    let switchd = FakeSwitchd::start();
    let name = unique_name();
    let guard = TestNs { name: name.clone() };
    let created = nsutil(&["create", &name], &switchd.path);
    assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
    assert_fails(
        &nsutil(&["create", &name], &switchd.path),
        &format!("namespace {name} already exists"),
    );

    let attach = nsutil(
        &[
            "--socket",
            switchd.path.to_str().unwrap(),
            "attach",
            &name,
            "--ip",
            "10.0.0.1/24",
            "--gw",
            "10.0.0.254",
            "--vlan",
            "10",
        ],
        Path::new("/nonexistent"),
    );
    assert_eq!(attach.status.code(), Some(0), "{}", stderr(&attach));
    assert_eq!(
        stdout(&attach),
        format!("attached {name}/eth0: port 1, access vlan 10, mac 02:42:0a:00:00:01, 10.0.0.1/24 via 10.0.0.254\n")
    );
    // Another VLAN (here the default, 1): refused, nothing changed.
    assert_fails(
        &nsutil(&["attach", &name, "--ip", "10.0.0.1/24"], &switchd.path),
        &format!("{name}/eth0 is already attached as access vlan 10; change it with `swctl port set {name}/eth0 --vlan 1` or `nsutil detach {name}` first"),
    );
    let again = nsutil(
        &[
            "attach",
            &name,
            "--ip",
            "10.0.0.1/24",
            "--vlan",
            "10",
            "--json",
        ],
        &switchd.path,
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["created"], false);
    assert_eq!(json["completed"], false);
    assert_eq!(json["port"]["id"], 1);
    assert_eq!(json["mac"], "02:42:0a:00:00:01");
    assert_eq!(json["addresses"][0], "10.0.0.1/24");
    assert_eq!(json["gateway"], "10.0.0.254");

    let trunk = nsutil(
        &[
            "attach", &name, "--trunk", "10,20", "--vlan", "5", "--ifname", "eth1",
        ],
        &switchd.path,
    );
    assert_eq!(trunk.status.code(), Some(0), "{}", stderr(&trunk));
    assert!(
        stdout(&trunk).contains("trunk 10,20 native 5"),
        "{}",
        stdout(&trunk)
    );

    let ls = nsutil(&["ls", "--json"], &switchd.path);
    assert_eq!(ls.status.code(), Some(0), "{}", stderr(&ls));
    let entries: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == name.as_str())
        .expect("namespace listed");
    assert_eq!(entry["ports"].as_array().unwrap().len(), 2);
    let table = stdout(&nsutil(&["ls"], &switchd.path));
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("eth0") && l.contains("access vlan 10")),
        "{table}"
    );

    let detach = nsutil(&["detach", &name, "--ifname", "eth1"], &switchd.path);
    assert_eq!(stdout(&detach), format!("detached {name}/eth1: port 2\n"));
    let noop = nsutil(&["detach", &name, "--ifname", "eth1"], &switchd.path);
    assert_eq!(noop.status.code(), Some(0));
    assert_eq!(
        stdout(&noop),
        format!("{name}/eth1 was not attached; nothing to do\n")
    );

    // delete detaches what is left first.
    let delete = nsutil(&["delete", &name], &switchd.path);
    assert_eq!(delete.status.code(), Some(0), "{}", stderr(&delete));
    assert_eq!(
        stdout(&delete),
        format!("detached {name}/eth0: port 1\ndeleted network namespace {name}\n")
    );
    assert!(switchd.ports().is_empty());
    assert!(matches!(
        switchd.requests().last(),
        Some(Request::Detach { .. })
    ));
    assert!(!Path::new("/run/netns").join(&name).exists());
    assert_fails(
        &nsutil(&["delete", &name], &switchd.path),
        "no such network namespace",
    );
    drop(guard);
}

#[test]
#[ignore = "needs root; run by make test"]
fn without_switchd_ls_and_delete_carry_on() {
    let ns = TestNs::new();
    let socket = nowhere();
    let ls = nsutil(&["ls"], &socket);
    assert_eq!(ls.status.code(), Some(0));
    assert!(
        stdout(&ls).lines().any(|line| line == ns.name),
        "{}",
        stdout(&ls)
    );
    assert!(
        stderr(&ls).contains("switchd is not running"),
        "{}",
        stderr(&ls)
    );
    assert!(stderr(&ls).contains("ports are unknown"), "{}", stderr(&ls));
    let json = nsutil(&["ls", "--json"], &socket);
    let entries: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == ns.name.as_str() && e["ports"].is_null()));

    let delete = nsutil(&["delete", &ns.name], &socket);
    assert_eq!(delete.status.code(), Some(0), "{}", stderr(&delete));
    assert!(
        stderr(&delete).contains("switchd is not running"),
        "{}",
        stderr(&delete)
    );
    assert_eq!(
        stdout(&delete),
        format!("deleted network namespace {}\n", ns.name)
    );
    assert!(!Path::new("/run/netns").join(&ns.name).exists());
}
