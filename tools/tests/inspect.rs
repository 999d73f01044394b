//! Root integration tests of looking inside switchd: live capture read back by Debian's
//! tshark, and packet traces of known-unicast, flooded, cross-VLAN and overlay frames.
//!
//! switchd runs in a "host" namespace each test makes; containers are namespaces
//! attached with nsutil. Marked `#[ignore]`; `make test` runs them with
//! `--include-ignored`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bin, stderr, Netns, Switchd};
use serde_json::Value;
use switchyard::capture::pcapng::{self, Block};

/// switchd in a host namespace, with red (10.0.0.1) and blue (10.0.0.2) on VLAN 10.
struct Pair {
    _host: Netns,
    red: Netns,
    blue: Netns,
    switchd: Switchd,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(&[], |_| {})
    }

    /// With switchd's `args`, after `prepare` set up the host namespace.
    fn with(args: &[&str], prepare: impl FnOnce(&Netns)) -> Pair {
        let host = Netns::new("ih");
        prepare(&host);
        let switchd = Switchd::start_in(&host, args);
        let (red, blue) = (Netns::new("ir"), Netns::new("ib"));
        switchd.nsutil_ok(&["attach", &red.path(), "--ip", "10.0.0.1/24", "--vlan", "10"]);
        switchd.nsutil_ok(&[
            "attach",
            &blue.path(),
            "--ip",
            "10.0.0.2/24",
            "--vlan",
            "10",
        ]);
        Pair {
            _host: host,
            red,
            blue,
            switchd,
        }
    }

    /// The name `swctl port ls` gives the port of `ns`.
    fn port(&self, ns: &Netns) -> String {
        self.port_field(ns, "name")
    }

    /// The MAC of the port of `ns`.
    fn mac(&self, ns: &Netns) -> String {
        self.port_field(ns, "mac")
    }

    /// `field` of the port of `ns`, as `swctl port ls --json` gives it.
    fn port_field(&self, ns: &Netns, field: &str) -> String {
        let ports = self.switchd.swctl_json(&["port", "ls"]);
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["netns"].as_str() == Some(&ns.path()))
            .and_then(|p| p[field].as_str())
            .unwrap_or_else(|| panic!("no port for {}: {ports:#}", ns.name))
            .to_string()
    }

    /// `swctl --json trace ARGS`, parsed.
    fn trace(&self, args: &[&str]) -> Value {
        let mut full = vec!["trace"];
        full.extend_from_slice(args);
        self.switchd.swctl_json(&full)
    }

    /// `swctl trace ARGS` as text.
    fn trace_text(&self, args: &[&str]) -> String {
        let mut full = vec!["trace"];
        full.extend_from_slice(args);
        let out = self.switchd.swctl(&full);
        assert!(out.status.success(), "swctl trace failed: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A `swctl capture` running in the background, stopped (and its output kept) on drop.
struct Capture {
    child: std::process::Child,
}

impl Capture {
    /// Starts `swctl capture ARGS` and waits until switchd has begun (swctl says so on
    /// stderr before the first frame).
    fn start(switchd: &Switchd, args: &[&str]) -> Capture {
        let mut child = Command::new(bin("swctl"))
            .arg("--socket")
            .arg(&switchd.socket)
            .arg("capture")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start swctl capture");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("capturing on port"), "swctl said {line:?}");
        Capture { child }
    }

    /// Waits for it to end by itself (a count reached); what it said on stderr.
    fn wait(mut self) -> String {
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        assert!(status.success(), "swctl capture failed: {rest}");
        rest
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tshark -r FILE -T fields -e FIELD...`: one row of fields per frame.
fn tshark_fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields"];
    if !filter.is_empty() {
        args.extend(["-Y", filter]);
    }
    for field in fields {
        args.extend(["-e", field]);
    }
    let out = common::run_ok("tshark", &args);
    out.lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
#[ignore = "needs root: namespaces, TAP devices and tshark"]
fn a_capture_of_100_pings_reads_back_in_tshark() {
    let pair = Pair::new();
    assert!(pair.red.ping("10.0.0.2", 5));
    let red = pair.port(&pair.red);
    let file = pair.switchd.dir.join("pings.pcapng");
    let capture = Capture::start(
        &pair.switchd,
        &[&red, "-w", file.to_str().unwrap(), "--direction", "both"],
    );
    // ping waits for its last reply: by then every frame is in switchd's queue.
    pair.red
        .exec_ok(&["ping", "-c", "100", "-i", "0.01", "-q", "10.0.0.2"]);
    std::thread::sleep(Duration::from_millis(500));
    drop(capture);
    let rows = tshark_fields(
        &file,
        "icmp",
        &[
            "icmp.type",
            "frame.interface_name",
            "frame.p2p_dir",
            "ip.src",
        ],
    );
    let requests: Vec<_> = rows.iter().filter(|r| r[0] == "8").collect();
    let replies: Vec<_> = rows.iter().filter(|r| r[0] == "0").collect();
    assert_eq!(requests.len(), 100, "{rows:?}");
    assert_eq!(replies.len(), 100, "{rows:?}");
    for row in &rows {
        assert_eq!(row[1], red, "the interface block names the port: {row:?}");
    }
    // Requests came in from red (inbound), replies went out to it (outbound).
    assert!(
        requests.iter().all(|r| r[2] == "1" && r[3] == "10.0.0.1"),
        "{requests:?}"
    );
    assert!(
        replies.iter().all(|r| r[2] == "0" && r[3] == "10.0.0.2"),
        "{replies:?}"
    );
}

#[test]
#[ignore = "needs root: namespaces, TAP devices and tshark"]
fn a_capture_pipes_into_tshark() {
    let pair = Pair::new();
    let blue = pair.port(&pair.blue);
    let mut ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.red.name,
            "ping",
            "-i",
            "0.05",
            "-q",
            "10.0.0.2",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let script = format!(
        "{} --socket {} capture {blue} -w - -c 10 --direction in | tshark -r - -T fields -e ip.src -e eth.type",
        bin("swctl").display(),
        pair.switchd.socket.display()
    );
    let out = common::run_ok("bash", &["-o", "pipefail", "-c", &script]);
    let _ = ping.kill();
    let _ = ping.wait();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10, "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("10.0.0.2")),
        "blue's replies (in on its port): {out}"
    );
}

#[test]
#[ignore = "needs root: namespaces, TAP devices and tshark"]
fn a_trunk_capture_shows_tags_and_super_frames_as_they_crossed() {
    let pair = Pair::new();
    let trunk = Netns::new("it");
    pair.switchd
        .nsutil_ok(&["attach", &trunk.path(), "--trunk", "10,20"]);
    let trunk_port = pair.port(&trunk);
    let file = pair.switchd.dir.join("trunk.pcapng");
    let capture = Capture::start(
        &pair.switchd,
        &[
            &trunk_port,
            "-w",
            file.to_str().unwrap(),
            "-c",
            "3",
            "--direction",
            "out",
        ],
    );
    // ARP for an address nobody has: broadcasts flooded to the trunk, tagged 10.
    let _ = pair
        .red
        .exec(&["ping", "-c", "3", "-i", "0.3", "-W", "1", "10.0.0.77"]);
    capture.wait();
    let rows = tshark_fields(&file, "arp", &["vlan.id", "arp.dst.proto_ipv4"]);
    assert!(!rows.is_empty(), "no ARP on the trunk");
    assert!(
        rows.iter().all(|r| r[0] == "10" && r[1] == "10.0.0.77"),
        "tagged as on the wire: {rows:?}"
    );

    // TCP from red to blue crosses as super-frames (TSO): the capture shows them whole.
    let blue = pair.port(&pair.blue);
    let file = pair.switchd.dir.join("tcp.pcapng");
    let capture = Capture::start(
        &pair.switchd,
        &[
            &blue,
            "-w",
            file.to_str().unwrap(),
            "-c",
            "400",
            "--direction",
            "out",
        ],
    );
    common::iperf3(&pair.red, &pair.blue, "10.0.0.2", 2, &[]);
    drop(capture);
    let lengths: Vec<usize> = tshark_fields(&file, "tcp", &["frame.len"])
        .iter()
        .filter_map(|r| r[0].parse().ok())
        .collect();
    let largest = lengths.iter().max().copied().unwrap_or(0);
    assert!(
        largest > 1514,
        "a super-frame is one frame of more than 1514 bytes; largest {largest} of {}",
        lengths.len()
    );
}

#[test]
#[ignore = "needs root: namespaces, TAP devices, iperf3"]
fn a_reader_that_does_not_read_loses_frames_and_forwarding_goes_on() {
    let pair = Pair::new();
    let blue = pair.port(&pair.blue);
    let mut stream = UnixStream::connect(&pair.switchd.socket).unwrap();
    writeln!(stream, r#"{{"cmd":"capture","port":"{blue}"}}"#).unwrap();
    // Read nothing while a TCP transfer runs: the socket buffer fills, then the queue.
    let bps = common::iperf3(&pair.red, &pair.blue, "10.0.0.2", 2, &[]);
    assert!(bps > 0.0, "forwarding went on");
    // Now read, and remove the port: the capture ends with its statistics.
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        bytes
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = pair.switchd.swctl(&["port", "del", &blue]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = reader.join().unwrap();
    let newline = bytes.iter().position(|b| *b == b'\n').unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..newline]).unwrap();
    assert_eq!(answer["result"]["name"], blue.as_str(), "{answer}");
    let mut rest = &bytes[newline + 1..];
    let (mut frames, mut stats) = (0u64, None);
    while let Some(len) = pcapng::block_len(rest) {
        let len = len.unwrap();
        match pcapng::parse(&rest[..len]).unwrap() {
            Block::Packet { .. } => frames += 1,
            Block::Statistics {
                received,
                dropped,
                comment,
            } => stats = Some((received, dropped, comment)),
            _ => {}
        }
        rest = &rest[len..];
    }
    assert!(rest.is_empty(), "the stream ends on a whole block");
    let (received, dropped, comment) = stats.expect("a statistics block at the end");
    let dropped = dropped.unwrap();
    assert!(
        dropped > 0,
        "frames were lost, and counted ({frames} written)"
    );
    // What was queued is at least what was written.
    assert!(received.unwrap() >= frames + dropped, "{received:?}");
    assert_eq!(comment.as_deref(), Some("the port was removed"));
    let log = pair.switchd.log();
    assert!(log.contains("capture ended"), "{log}");
}

#[test]
#[ignore = "needs root: namespaces and TAP devices"]
fn captures_are_refused_clearly() {
    let pair = Pair::new();
    let out = pair.switchd.swctl(&["capture", "nosuch/eth0", "-c", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such port"), "{}", stderr(&out));
    let out = pair
        .switchd
        .swctl(&["capture", "1", "--direction", "sideways"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
#[ignore = "needs root: namespaces and TAP devices"]
fn traces_of_unicast_flood_and_cross_vlan_frames_name_each_step() {
    let pair = Pair::new();
    assert!(pair.red.ping("10.0.0.2", 5));
    let (red, blue) = (pair.port(&pair.red), pair.port(&pair.blue));
    let (red_mac, blue_mac) = (pair.mac(&pair.red), pair.mac(&pair.blue));
    let before = pair.switchd.swctl_json(&["stats"]);

    // Known unicast: one output, to blue, and learning only refreshes.
    let trace = pair.trace(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        &blue_mac,
        "--ipv4-src",
        "10.0.0.1",
        "--ipv4-dst",
        "10.0.0.2",
        "--proto",
        "tcp",
        "--dport",
        "80",
    ]);
    let steps: Vec<&str> = trace["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "ingress",
            "parse",
            "classify",
            "port_security",
            "learn",
            "lookup",
            "output"
        ],
        "{trace:#}"
    );
    let output = trace["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(
        trace["port_names"][output["port"].to_string()],
        blue.as_str()
    );
    assert_eq!(trace["steps"][4]["change"], "refresh");
    assert_eq!(trace["copies"], 1);
    assert!(trace["steps"][1]["summary"]
        .as_str()
        .unwrap()
        .starts_with("TCP 10.0.0.1:40000 > 10.0.0.2:80"));

    // Broadcast: flooded, to blue only (nobody else is on VLAN 10).
    let text = pair.trace_text(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        "ff:ff:ff:ff:ff:ff",
    ]);
    assert!(
        text.contains("lookup: ff:ff:ff:ff:ff:ff is broadcast"),
        "{text}"
    );
    assert!(
        text.contains("flood: every port of VLAN 10 but the ingress"),
        "{text}"
    );
    assert!(
        text.contains(&format!("output: port 2 ({blue}), untagged")),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("result: forwarded: 1 copy"),
        "{text}"
    );

    // Cross-VLAN: a tag for VLAN 20 on a trunk of 10 only is refused at once, and a
    // frame for green (VLAN 20) from red finds nobody in VLAN 10 to go to.
    let trunk = Netns::new("it");
    pair.switchd
        .nsutil_ok(&["attach", &trunk.path(), "--trunk", "10"]);
    let trunk_port = pair.port(&trunk);
    let text = pair.trace_text(&[
        "--in-port",
        &trunk_port,
        "--eth-src",
        "02:00:00:00:00:99",
        "--eth-dst",
        &blue_mac,
        "--vlan",
        "20",
    ]);
    assert!(text.contains("drop: vlan_not_allowed"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("result: dropped (vlan_not_allowed)"),
        "{text}"
    );
    let green = Netns::new("ig");
    pair.switchd.nsutil_ok(&[
        "attach",
        &green.path(),
        "--ip",
        "10.0.0.3/24",
        "--vlan",
        "20",
    ]);
    assert!(!green.ping("10.0.0.1", 1));
    let green_mac = pair.mac(&green);
    let trace = pair.trace(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        &green_mac,
    ]);
    let lookup = &trace["steps"].as_array().unwrap()[5];
    assert_eq!(lookup["step"], "lookup", "{trace:#}");
    assert_eq!(
        lookup["result"], "unknown",
        "green is not in VLAN 10: {trace:#}"
    );
    // Flooded in VLAN 10: to blue and the trunk (tagged), never to green.
    let outputs: Vec<&Value> = trace["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "output")
        .collect();
    assert_eq!(outputs.len(), 2, "{trace:#}");
    assert!(outputs.iter().any(|o| o["tag"] == 10), "{trace:#}");

    // Nothing was learned or counted by the traces.
    let after = pair.switchd.swctl_json(&["stats"]);
    let rx = |stats: &Value, name: &str| {
        stats["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["rx_packets"].as_u64().unwrap())
    };
    assert!(rx(&after, &red).unwrap() >= rx(&before, &red).unwrap());
    let fdb = pair.switchd.swctl_json(&["fdb", "show"]);
    assert!(
        !fdb.to_string().contains("02:00:00:00:00:99"),
        "the trace's source was not learned: {fdb}"
    );
    let out = pair
        .switchd
        .swctl(&["trace", "--in-port", &red, "--frame", "00ff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("shorter than an Ethernet header"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs root: namespaces and TAP devices"]
fn a_trace_of_an_overlay_frame_shows_its_encapsulation() {
    let pair = Pair::with(&["--vtep", "192.0.2.1"], |host| {
        host.exec_ok(&[
            "ip", "link", "add", "under0", "type", "veth", "peer", "name", "under1",
        ]);
        host.exec_ok(&["ip", "link", "set", "under1", "up"]);
        host.exec_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "under0"]);
        host.exec_ok(&["ip", "link", "set", "under0", "up"]);
    });
    let out = pair
        .switchd
        .swctl(&["vxlan", "map", "--vlan", "10", "--vni", "4242"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pair.switchd.swctl(&["vxlan", "peer", "add", "192.0.2.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let red = pair.port(&pair.red);
    let red_mac = pair.mac(&pair.red);
    let trace = pair.trace(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        "02:00:00:00:00:42",
    ]);
    let encap = trace["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "encapsulate")
        .unwrap_or_else(|| panic!("no encapsulation: {trace:#}"));
    assert_eq!(encap["vni"], 4242);
    assert_eq!(encap["remote"], "192.0.2.2:4789");
    assert_eq!(encap["inner_len"], 60);
    assert_eq!(
        trace["port_names"][encap["port"].to_string()],
        "vtep:192.0.2.2"
    );
    let text = pair.trace_text(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        "02:00:00:00:00:42",
    ]);
    assert!(text.contains("VXLAN VNI 4242 to 192.0.2.2:4789"), "{text}");
    assert!(
        text.trim_end().ends_with("result: forwarded: 2 copies"),
        "{text}"
    );
    // The MTU recipe: a full-size frame does not fit the overlay's 1500-byte path.
    let text = pair.trace_text(&[
        "--in-port",
        &red,
        "--eth-src",
        &red_mac,
        "--eth-dst",
        "02:00:00:00:00:42",
        "--ipv4-src",
        "10.0.0.1",
        "--ipv4-dst",
        "10.0.0.9",
        "--proto",
        "udp",
        "--len",
        "1514",
    ]);
    assert!(
        text.contains("inner frame 1514 bytes, path MTU 1500: too big (at most 1464)"),
        "{text}"
    );
    assert!(text.contains("drop: too_big"), "{text}");
    // Frames from a peer are traced on the sender's node.
    let out = pair.switchd.swctl(&[
        "trace",
        "--in-port",
        "vtep:192.0.2.2",
        "--eth-src",
        "02:00:00:00:00:43",
        "--eth-dst",
        &red_mac,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is the tunnel to VTEP 192.0.2.2:4789"),
        "{}",
        stderr(&out)
    );
}
