//! The command-line programs behave alike (docs/operations.md, "The command-line tools"):
//! `--version` names the program, `--help` exits 0, bad usage exits 2 with the program's
//! name first on stderr. Needs no root and no switchd: the binaries are run as built.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The binaries of this package by Cargo's path; nsutil and switchd from the target
/// directory (`make test` builds every binary first).
fn program(name: &str) -> PathBuf {
    match name {
        "swctl" => env!("CARGO_BIN_EXE_swctl").into(),
        "switchyard-cni" => env!("CARGO_BIN_EXE_switchyard-cni").into(),
        "switchyard-docker" => env!("CARGO_BIN_EXE_switchyard-docker").into(),
        other => common::bin(other),
    }
}

/// Runs `name` with `args`, no CNI_* or SWITCHYARD_* variables and nothing on stdin.
fn run(name: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program(name));
    command.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CNI_") || key.starts_with("SWITCHYARD_") {
            command.env_remove(&*key);
        }
    }
    command.output().expect("run the program")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_names_the_program() {
    for name in [
        "switchd",
        "swctl",
        "nsutil",
        "switchyard-cni",
        "switchyard-docker",
    ] {
        let out = run(name, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{name}"
        );
    }
}

#[test]
fn help_exits_0_and_tells_the_exit_codes() {
    for name in ["switchd", "swctl", "nsutil", "switchyard-cni"] {
        let out = run(name, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("Usage: "), "{name}: {help}");
        assert!(help.contains("Exit status: 0 "), "{name}: {help}");
        assert!(help.contains("2 bad usage"), "{name}: {help}");
    }
    // --socket has a default: no usage line shows it, as if it were required.
    for (name, args) in [
        ("swctl", &["--help"][..]),
        ("swctl", &["port", "set", "--help"][..]),
        ("nsutil", &["--help"][..]),
        ("nsutil", &["attach", "--help"][..]),
        ("nsutil", &["detach", "--help"][..]),
        ("switchd", &["--help"][..]),
    ] {
        let help = text(&run(name, args).stdout);
        let usage = help
            .lines()
            .find(|line| line.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("{name} {args:?}: no usage line in {help}"));
        assert!(!usage.contains("--socket"), "{name} {args:?}: {usage}");
    }
}

#[test]
fn switchd_help_describes_switchd() {
    let help = text(&run("switchd", &["--help"]).stdout);
    assert!(help.starts_with("The switchyard switch daemon: "), "{help}");
    assert!(help.contains("[env: SWITCHYARD_SOCKET="), "{help}");
}

#[test]
fn the_cni_plugin_answers_a_person_and_a_runtime_apart() {
    // A person: help, and usage errors that are not CNI errors.
    let out = run("switchyard-cni", &["-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("CNI_COMMAND"),
        "{}",
        text(&out.stdout)
    );
    let out = run("switchyard-cni", &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with("switchyard-cni: unexpected argument 'frobnicate'"),
        "{}",
        text(&out.stderr)
    );
    // A runtime: CNI_COMMAND set, arguments not looked at, the spec's answer on stdout.
    let out = Command::new(program("switchyard-cni"))
        .arg("--help")
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard-cni");
    assert_eq!(out.status.code(), Some(0));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(answer["supportedVersions"].is_array(), "{answer}");
    // No CNI_COMMAND and no arguments: the spec's error (code 4) on stdout, exit 1.
    let out = run("switchyard-cni", &[]);
    assert_eq!(out.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(error["code"], 4, "{error}");
    assert_eq!(
        text(&out.stderr),
        format!("switchyard-cni: {}\n", error["msg"].as_str().unwrap())
    );
}

#[test]
fn usage_errors_exit_2_with_the_program_first() {
    for (name, args, prefix) in [
        ("swctl", &["frobnicate"][..], "swctl: "),
        ("swctl", &["port", "set", "1"][..], "swctl: "),
        (
            "swctl",
            &["show", "--json", "--format", "text"][..],
            "swctl: --json cannot be used with --format text",
        ),
        ("nsutil", &["frobnicate"][..], "nsutil: "),
        (
            "nsutil",
            &["attach", "red", "--ip", "10.0.0.1"][..],
            "nsutil: ",
        ),
        ("switchyard-cni", &["--frobnicate"][..], "switchyard-cni: "),
        ("switchd", &["--frobnicate"][..], "switchd: "),
        (
            "switchyard-docker",
            &["--frobnicate"][..],
            "switchyard-docker: ",
        ),
        // A flag's value is checked by clap too, and flags that do not go together
        // after it; both before switchd touches anything.
        (
            "switchd",
            &["--metrics", "9469"][..],
            "switchd: invalid value '9469' for '--metrics <ADDR:PORT>'",
        ),
        (
            "switchd",
            &["--dns", "off", "--dns-upstream", "192.0.2.53"][..],
            "switchd: --dns-upstream goes with the embedded DNS",
        ),
    ] {
        let out = run(name, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name} {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{name} {args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).starts_with(prefix),
            "{name} {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_failed_operation_exits_1_naming_the_socket_asked_for() {
    let nowhere = std::env::temp_dir().join(format!("cli-conventions-{}.sock", std::process::id()));
    let nowhere = nowhere.to_str().expect("UTF-8 path");
    for name in ["swctl", "nsutil"] {
        let args: &[&str] = match name {
            "swctl" => &["status"],
            _ => &["detach", "/proc/self/ns/net"],
        };
        let out = Command::new(program(name))
            .args(args)
            .env("SWITCHYARD_SOCKET", nowhere)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with(&format!("{name}: ")), "{err}");
        assert!(
            err.contains(&format!("switchd is not running at {nowhere}: "))
                && err.contains(&format!("start it with `switchd --socket {nowhere}`")),
            "{name}: {err}"
        );
    }
}
