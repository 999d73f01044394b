//! `swctl show`: the whole switch in one view, as text, JSON and a Graphviz graph that
//! Debian's `dot` renders.
//!
//! switchd runs inside a "host" namespace of the test's (networks add an uplink and
//! routes there). Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{stderr, Netns, Switchd};

#[test]
#[ignore = "needs root; run by make test"]
fn show_names_ports_networks_and_endpoints_and_dot_renders_it() {
    let host = Netns::new("h");
    let switchd = Switchd::start_in(&host, &[]);
    let web = Netns::new("w");
    let db = Netns::new("d");
    let plain = Netns::new("p");
    let out = switchd.swctl(&["network", "create", "showme", "--subnet", "10.61.0.0/24"]);
    assert!(out.status.success(), "{}", stderr(&out));
    switchd.nsutil_ok(&["attach", &web.name, "--network", "showme"]);
    switchd.nsutil_ok(&[
        "attach",
        &db.name,
        "--network",
        "showme",
        "--ip",
        "10.61.0.50",
    ]);
    switchd.nsutil_ok(&[
        "attach",
        &plain.name,
        "--ip",
        "10.62.0.1/24",
        "--vlan",
        "42",
    ]);

    let out = switchd.swctl(&["show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        format!("{}/eth0", web.name),
        format!("{}/eth0", db.name),
        format!("{}/eth0", plain.name),
        "showme 10.61.0.0/24 gateway 10.61.0.1".to_string(),
        "10.61.0.50/24".to_string(),
        "uplink   switchyard0".to_string(),
        "vtep     none".to_string(),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }

    let picture = switchd.swctl_json(&["show"]);
    assert_eq!(picture["networks"][0]["name"], "showme", "{picture}");
    assert_eq!(
        picture["ports"].as_array().map(Vec::len),
        Some(3),
        "{picture}"
    );
    assert!(picture["vxlan"].is_null(), "{picture}");
    // --format json is --json.
    let out = switchd.swctl(&["show", "--format", "json"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(again["networks"], picture["networks"]);

    let out = switchd.swctl(&["show", "--format", "dot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = render_svg(&out.stdout);
    for want in [
        format!("{}/eth0", web.name),
        format!("{}/eth0", db.name),
        format!("{}/eth0", plain.name),
        "network showme".to_string(),
        "vlan 42".to_string(),
        "gateway 10.61.0.1".to_string(),
        "uplink switchyard0".to_string(),
    ] {
        assert!(svg.contains(&want), "no {want:?} in the SVG:\n{svg}");
    }
    // Networks and VLANs are Graphviz clusters.
    assert!(
        svg.contains("<title>cluster network showme</title>"),
        "{svg}"
    );
    assert!(svg.contains("<title>cluster vlan 42</title>"), "{svg}");

    // --json with another format is bad usage.
    for format in ["dot", "text"] {
        let out = switchd.swctl(&["show", "--json", "--format", format]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--format {format}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "--format {format}");
    }
    let out = switchd.swctl(&["show", "--json", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `dot -Tsvg`, insisting it accepts the graph without a warning.
fn render_svg(dot: &[u8]) -> String {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dot (graphviz; scripts/deps.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot)
        .expect("write the graph to dot");
    let out = child.wait_with_output().expect("wait for dot");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dot refused the graph ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(dot)
    );
    String::from_utf8(out.stdout).expect("SVG is UTF-8")
}
