//! Root integration tests of switchd's log: `--log-format json` writes one JSON object
//! per line, naming the port or network a line is about; `swctl log level` changes the
//! filter of a running switchd, and refuses one that is not a filter.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use common::{stderr, Netns, Switchd};
use serde_json::Value;

/// The log's lines after the first `skip`, each parsed (every one must be JSON).
fn json_lines(switchd: &Switchd, skip: usize) -> Vec<Value> {
    switchd
        .log()
        .lines()
        .skip(skip)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("a log line that is not a JSON object: {line}"))
        })
        .collect()
}

fn log_len(switchd: &Switchd) -> usize {
    switchd.log().lines().count()
}

fn is_debug_request(line: &Value) -> bool {
    line["level"] == "DEBUG" && line["fields"]["message"] == "control request"
}

fn swctl_ok(switchd: &Switchd, args: &[&str]) -> String {
    let out = switchd.swctl(args);
    assert!(
        out.status.success(),
        "swctl {args:?}: {}\nlog:\n{}",
        stderr(&out),
        switchd.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends one raw request line and returns the answer.
fn raw_request(switchd: &Switchd, line: &str) -> Value {
    let mut stream = UnixStream::connect(&switchd.socket).expect("connect to switchd");
    stream.write_all(line.as_bytes()).expect("send");
    stream.write_all(b"\n").expect("send");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .expect("an answer");
    serde_json::from_str(&answer).expect("a JSON answer")
}

#[test]
#[ignore = "needs root; run by make test"]
fn json_logs_and_a_level_changed_at_run_time() {
    let host = Netns::new("h");
    // The fixture starts switchd at --log debug.
    let switchd = Switchd::start_in(&host, &["--log-format", "json"]);
    swctl_ok(&switchd, &["port", "ls"]);
    let start = json_lines(&switchd, 0);
    assert!(
        start
            .iter()
            .any(|l| l["fields"]["message"] == "switchd ready"),
        "{start:#?}"
    );
    assert!(start.iter().any(is_debug_request), "debug at first");
    for line in &start {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }

    // Down to warn: reads are no longer logged.
    let out = swctl_ok(&switchd, &["log", "level", "warn"]);
    assert_eq!(out, "log filter is warn (was debug)\n");
    let mark = log_len(&switchd);
    swctl_ok(&switchd, &["port", "ls"]);
    swctl_ok(
        &switchd,
        &["network", "create", "blue", "--subnet", "10.32.0.0/24"],
    );
    let quiet = json_lines(&switchd, mark);
    assert!(
        quiet
            .iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "nothing below warn after `log level warn`:\n{quiet:#?}"
    );

    // Back to debug: the next read is logged again.
    let json = switchd.swctl_json(&["log", "level", "debug"]);
    assert_eq!(json["filter"], "debug");
    assert_eq!(json["previous"], "warn");
    let mark = log_len(&switchd);
    swctl_ok(&switchd, &["port", "ls"]);
    let after = json_lines(&switchd, mark);
    assert!(after.iter().any(is_debug_request), "{after:#?}");

    // Lines about a port or a network name it in a field of its own.
    let ns = Netns::new("c");
    switchd.nsutil_ok(&["attach", &ns.name, "--network", "blue"]);
    let port = format!("{}/eth0", ns.name);
    let lines = json_lines(&switchd, mark);
    assert!(
        lines.iter().any(|l| l["fields"]["port"] == port.as_str()
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("attached port"))),
        "an attach names its port:\n{lines:#?}"
    );
    assert!(
        lines.iter().any(
            |l| l["fields"]["message"] == "control request" && l["fields"]["network"] == "blue"
        ),
        "the audit line names the network:\n{lines:#?}"
    );
    // An attach and a detach name the port by namespace and interface: the audit line
    // carries the port's name all the same.
    let audits = |lines: &[Value], cmd: &str| {
        lines.iter().any(|l| {
            l["fields"]["message"] == "control request"
                && l["fields"]["port"] == port.as_str()
                && l["fields"]["request"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("\"cmd\":\"{cmd}\"")))
        })
    };
    assert!(
        audits(&lines, "attach"),
        "the attach's audit line:\n{lines:#?}"
    );
    let before_detach = log_len(&switchd);
    switchd.nsutil_ok(&["detach", &ns.name]);
    let lines = json_lines(&switchd, before_detach);
    assert!(
        audits(&lines, "detach"),
        "the detach's audit line:\n{lines:#?}"
    );
    let mark = log_len(&switchd);
    swctl_ok(&switchd, &["network", "rm", "blue"]);
    let lines = json_lines(&switchd, mark);
    assert!(
        lines.iter().any(|l| l["fields"]["network"] == "blue"
            && l["fields"]["message"] == "network blue removed"),
        "a removal names its network:\n{lines:#?}"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_filter_that_is_not_one_is_refused_and_the_old_one_stays() {
    let host = Netns::new("h");
    let switchd = Switchd::start_in(&host, &[]);
    for bad in ["loud", "switchd=loud", "inf0", ""] {
        let out = switchd.swctl(&["log", "level", bad]);
        assert!(!out.status.success(), "log level {bad:?} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("is not a log level") || err.contains("empty log filter"),
            "{bad:?}: {err}"
        );
    }
    let answer = raw_request(&switchd, r#"{"cmd":"log_level","filter":"loud"}"#);
    assert_eq!(answer["error"]["code"], "invalid_argument", "{answer}");
    // Still the fixture's debug: a read is logged.
    let mark = log_len(&switchd);
    swctl_ok(&switchd, &["port", "ls"]);
    let log = switchd.log();
    let after: Vec<&str> = log.lines().skip(mark).collect();
    assert!(
        after
            .iter()
            .any(|l| l.contains("DEBUG") && l.contains("control request")),
        "{after:#?}"
    );
}
