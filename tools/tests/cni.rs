//! Root integration tests of `switchyard-cni`, the CNI plugin, run exactly as a container
//! runtime runs it: `CNI_*` environment variables, the network configuration as JSON on
//! stdin, the result (or an error) as JSON on stdout, logs on stderr only.
//!
//! Each test has its own "host" namespace with its own switchd in it (the plugin talks to
//! it through the `socket` of the configuration, never the default one), and its
//! containers are fresh namespaces. IPAM is delegated in one test to the reference
//! `host-local` plugin from `/usr/lib/cni` (Debian's containernetworking-plugins), with a
//! data directory of its own.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{stderr, Netns, Switchd};
use serde_json::{json, Value};

/// Where the reference plugins (host-local) are installed.
const CNI_PATH: &str = "/usr/lib/cni";
/// How long one run of the plugin may take before the test gives up on it.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The `CNI_ARGS` kubelet (through containerd or CRI-O) passes.
const KUBELET_ARGS: &str =
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=x";

/// One run of the plugin: exit code (-1 when killed by a signal), stdout parsed as JSON
/// (`Null` when empty) and stderr.
type Outcome = (i32, Value, String);

/// Runs the plugin with exactly `env` (plus PATH) and `stdin`.
fn cni_raw(env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    cni_launch(&Launch::default(), env, stdin)
}

/// The test's own PATH (the one the plugin gets unless a test says otherwise).
fn default_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// Where and how the plugin is started, beyond its `CNI_*` environment.
#[derive(Default)]
struct Launch<'a> {
    /// Run it inside this namespace (`ip netns exec`) instead of the test's own.
    netns: Option<&'a Netns>,
    /// Its working directory; the test's own unless set.
    cwd: Option<&'a Path>,
    /// Its PATH; the test's own unless set.
    path: Option<String>,
}

/// Runs the plugin as `launch` says, with exactly `env` (plus PATH) and `stdin`.
fn cni_launch(launch: &Launch, env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    let plugin = common::bin("switchyard-cni");
    let mut command = match launch.netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &ns.name]).arg(&plugin);
            command
        }
        None => Command::new(&plugin),
    };
    if let Some(cwd) = launch.cwd {
        command.current_dir(cwd);
    }
    command
        .env_clear()
        .env("PATH", launch.path.clone().unwrap_or_else(default_path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start switchyard-cni");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        // The plugin may exit before reading (e.g. on a bad environment): ignore EPIPE.
        let _ = input.write_all(stdin);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(PLUGIN_TIMEOUT) {
        Ok(output) => output.expect("wait for switchyard-cni"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let output = rx.recv().expect("killed plugin").expect("wait");
            panic!(
                "switchyard-cni {env:?} did not finish within {PLUGIN_TIMEOUT:?}\nstderr: {}",
                stderr(&output)
            );
        }
    };
    let code = output.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|err| {
            panic!(
                "switchyard-cni {env:?} printed something that is not one JSON document on \
                 stdout ({err}); logs belong on stderr\nstdout: {text}\nstderr: {}",
                stderr(&output)
            )
        })
    };
    (code, json, stderr(&output))
}

/// Runs the plugin as a runtime does. An empty `container` or `ifname` leaves that variable
/// unset (STATUS, GC and VERSION have none); `netns: None` leaves `CNI_NETNS` unset.
fn cni(
    command: &str,
    netns: Option<&str>,
    container: &str,
    ifname: &str,
    config: &Value,
    cni_path: &str,
) -> Outcome {
    cni_with_args(command, netns, container, ifname, config, cni_path, "")
}

fn cni_with_args(
    command: &str,
    netns: Option<&str>,
    container: &str,
    ifname: &str,
    config: &Value,
    cni_path: &str,
    args: &str,
) -> Outcome {
    let mut env = vec![
        ("CNI_COMMAND", command),
        ("CNI_PATH", cni_path),
        ("CNI_ARGS", args),
    ];
    if let Some(netns) = netns {
        env.push(("CNI_NETNS", netns));
    }
    if !container.is_empty() {
        env.push(("CNI_CONTAINERID", container));
    }
    if !ifname.is_empty() {
        env.push(("CNI_IFNAME", ifname));
    }
    cni_raw(&env, config.to_string().as_bytes())
}

/// Insists the plugin failed the CNI way: non-zero exit, and an error object on stdout
/// with cniVersion, a numeric code (equal to `code` when given) and a message. Returns it.
fn assert_cni_error(outcome: &Outcome, code: Option<u64>, what: &str) -> Value {
    let (exit, error, logs) = outcome;
    assert_ne!(
        *exit, 0,
        "{what}: the plugin succeeded: {error}\nstderr: {logs}"
    );
    assert!(
        error["cniVersion"].is_string(),
        "{what}: the error has no cniVersion: {error}\nstderr: {logs}"
    );
    let actual = error["code"].as_u64().unwrap_or_else(|| {
        panic!("{what}: the error has no numeric code: {error}\nstderr: {logs}")
    });
    assert!(
        error["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: the error has no msg: {error}\nstderr: {logs}"
    );
    if let Some(code) = code {
        assert_eq!(
            actual, code,
            "{what}: wrong code in {error}\nstderr: {logs}"
        );
    }
    error.clone()
}

/// A directory under the temp dir, removed on drop (host-local's `dataDir`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(common::unique(tag));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A "host" namespace with switchd in it; the containers' namespaces come and go.
/// (switchd is declared first so it stops before its namespace goes.)
struct Host {
    switchd: Switchd,
    ns: Netns,
}

impl Host {
    fn new() -> Host {
        let ns = Netns::new("h");
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let switchd = Switchd::start_in(&ns, &[]);
        Host { switchd, ns }
    }

    fn socket(&self) -> &str {
        self.switchd.socket.to_str().expect("utf-8 path")
    }

    /// A plugin configuration for `network`, with this host's socket.
    fn config(&self, network: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": network,
            "type": "switchyard-cni",
            "socket": self.socket(),
            "subnet": subnet,
        })
    }

    /// ADD that must succeed; returns the result.
    fn add(&self, config: &Value, container: &str, ns: &Netns, ifname: &str) -> Value {
        let (code, result, logs) =
            cni("ADD", Some(&ns.path()), container, ifname, config, CNI_PATH);
        assert_eq!(
            code,
            0,
            "ADD {container} failed: {result}\nstderr: {logs}\nswitchd log:\n{}",
            self.switchd.log()
        );
        result
    }

    /// DEL that must succeed.
    fn del(&self, config: &Value, container: &str, netns: Option<&str>, ifname: &str) {
        let (code, result, logs) = cni("DEL", netns, container, ifname, config, CNI_PATH);
        assert_eq!(
            code,
            0,
            "DEL {container} (netns {netns:?}) failed: {result}\nstderr: {logs}\nswitchd log:\n{}",
            self.switchd.log()
        );
    }

    fn inspect(&self, network: &str) -> Value {
        self.switchd.swctl_json(&["network", "inspect", network])
    }

    /// The network's endpoints, or none when the network does not exist.
    fn endpoints(&self, network: &str) -> Vec<Value> {
        let out = self
            .switchd
            .swctl(&["--json", "network", "inspect", network]);
        if !out.status.success() {
            assert!(
                stderr(&out).contains("no such network"),
                "inspect {network}: {}",
                stderr(&out)
            );
            return Vec::new();
        }
        let info: Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
        info["endpoints"].as_array().cloned().unwrap_or_default()
    }

    fn endpoint_of(&self, network: &str, container: &str) -> Option<Value> {
        self.endpoints(network)
            .into_iter()
            .find(|e| e["container_id"] == container)
    }

    fn ports(&self) -> Vec<Value> {
        self.switchd
            .swctl_json(&["port", "ls"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The address of the result's first IP, without its prefix.
fn address_of(result: &Value) -> String {
    let cidr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in {result}"));
    cidr.split('/').next().unwrap().to_string()
}

/// `ip -j link show IFNAME` inside the namespace: the link object.
fn link(ns: &Netns, ifname: &str) -> Value {
    let out = ns.exec_ok(&["ip", "-j", "link", "show", "dev", ifname]);
    let links: Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    links[0].clone()
}

fn ipv4_addresses(ns: &Netns, ifname: &str) -> Vec<String> {
    let out = ns.exec_ok(&["ip", "-j", "-4", "addr", "show", "dev", ifname]);
    let links: Value = serde_json::from_str(&out).expect("ip -j prints JSON");
    links[0]["addr_info"]
        .as_array()
        .map(|infos| {
            infos
                .iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root; run by make test"]
fn add_creates_the_network_and_connects_containers() {
    let host = Host::new();
    let mut config = host.config("blue", "10.10.0.0/24");
    config["gateway"] = json!("10.10.0.1");
    config["mtu"] = json!(1400);
    config["masquerade"] = json!(true);
    config["dns"] = json!({"nameservers": ["10.10.0.1"], "search": ["example.test"]});
    let a = Netns::new("a");
    let b = Netns::new("b");
    let a_id = common::unique("ca");
    let b_id = common::unique("cb");

    let result = host.add(&config, &a_id, &a, "eth0");
    let b_result = host.add(&config, &b_id, &b, "eth0");

    // The first ADD created the network from the configuration.
    let networks = host.switchd.swctl_json(&["network", "ls"]);
    let blue = networks
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "blue")
        .unwrap_or_else(|| panic!("no network blue in {networks}"));
    assert_eq!(blue["subnet"], "10.10.0.0/24", "{blue}");
    assert_eq!(blue["gateway"], "10.10.0.1", "{blue}");
    assert_eq!(blue["mtu"], 1400, "{blue}");
    assert_eq!(blue["masquerade"], true, "{blue}");

    // The result: version, the gateway's and the container's interfaces, the address on
    // the container's interface, the default route, the configuration's DNS.
    assert_eq!(result["cniVersion"], "1.1.0", "{result}");
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 2, "{result}");
    let info = host.inspect("blue");
    assert_eq!(interfaces[0]["name"], "blue", "{result}");
    assert_eq!(
        interfaces[0]["mac"], info["gateway_mac"],
        "{result}\n{info}"
    );
    assert!(interfaces[0].get("sandbox").is_none(), "{result}");
    assert_eq!(interfaces[1]["name"], "eth0", "{result}");
    assert_eq!(interfaces[1]["sandbox"], a.path().as_str(), "{result}");
    let mac = interfaces[1]["mac"].as_str().expect("mac");
    assert!(mac.starts_with("02:42:"), "{result}");
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    assert_eq!(ips[0]["address"], "10.10.0.2/24", "{result}");
    assert_eq!(ips[0]["gateway"], "10.10.0.1", "{result}");
    let index = ips[0]["interface"].as_u64().expect("ips[0].interface") as usize;
    assert_eq!(
        interfaces[index]["sandbox"],
        a.path().as_str(),
        "ips[0].interface points at the container's interface: {result}"
    );
    assert_eq!(interfaces[index]["name"], "eth0");
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.10.0.1"}]),
        "{result}"
    );
    assert_eq!(result["dns"], config["dns"], "{result}");
    assert_eq!(b_result["ips"][0]["address"], "10.10.0.3/24", "{b_result}");
    assert_eq!(b_result["interfaces"][1]["sandbox"], b.path().as_str());

    // The container's interface is configured as the result says.
    let eth0 = link(&a, "eth0");
    assert_eq!(eth0["address"].as_str().unwrap(), mac, "{eth0}");
    assert_eq!(eth0["mtu"], 1400, "{eth0}");
    assert!(
        eth0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{eth0}"
    );
    assert_eq!(ipv4_addresses(&a, "eth0"), ["10.10.0.2/24"]);
    let route = a.exec_ok(&["ip", "route", "show", "default"]);
    assert!(route.contains("via 10.10.0.1 dev eth0"), "{route}");

    // switchd knows the attachments by container id and interface.
    let endpoints = info["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 2, "{info}");
    let endpoint = host.endpoint_of("blue", &a_id).expect("a's endpoint");
    assert_eq!(endpoint["ifname"], "eth0", "{endpoint}");
    assert_eq!(endpoint["address"], "10.10.0.2/24", "{endpoint}");
    assert_eq!(endpoint["mac"], mac, "{endpoint}");

    // And the containers reach each other and the gateway.
    assert!(a.ping(&address_of(&b_result), 5), "a to b");
    assert!(b.ping(&address_of(&result), 5), "b to a");
    assert!(a.ping("10.10.0.1", 5), "the gateway");
    // The host reaches the container through switchd's uplink (from the address of an
    // interface of its own: the host namespace has none but lo otherwise).
    host.ns.exec_ok(&[
        "ip", "link", "add", "hostif", "type", "veth", "peer", "name", "hostifp",
    ]);
    host.ns.exec_ok(&["ip", "link", "set", "hostifp", "up"]);
    host.ns
        .exec_ok(&["ip", "addr", "add", "192.168.201.1/24", "dev", "hostif"]);
    host.ns.exec_ok(&["ip", "link", "set", "hostif", "up"]);
    assert!(
        host.ns.ping(&address_of(&result), 5),
        "the host, through switchd's uplink"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn check_passes_until_the_interface_changes() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let c = Netns::new("c");
    let id = common::unique("cc");
    let result = host.add(&config, &id, &c, "eth0");

    let mut check = config.clone();
    check["prevResult"] = result.clone();
    let (code, out, logs) = cni("CHECK", Some(&c.path()), &id, "eth0", &check, CNI_PATH);
    assert_eq!(code, 0, "CHECK right after ADD: {out}\nstderr: {logs}");

    c.exec_ok(&["ip", "addr", "flush", "dev", "eth0"]);
    let outcome = cni("CHECK", Some(&c.path()), &id, "eth0", &check, CNI_PATH);
    assert_cni_error(&outcome, None, "CHECK after the address was flushed");
}

#[test]
#[ignore = "needs root; run by make test"]
fn del_releases_and_is_idempotent() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");

    // DEL twice: both succeed, the endpoint, the port and the interface are gone.
    let a = Netns::new("a");
    let a_id = common::unique("ca");
    host.add(&config, &a_id, &a, "eth0");
    host.del(&config, &a_id, Some(&a.path()), "eth0");
    host.del(&config, &a_id, Some(&a.path()), "eth0");
    assert!(
        host.endpoints("blue").is_empty(),
        "{}",
        host.inspect("blue")
    );
    assert!(host.ports().is_empty(), "{:?}", host.ports());
    assert_eq!(a.links(), ["lo"], "DEL left the interface");

    // The address is free again: the same namespace and a new one get addresses.
    let again = host.add(&config, &a_id, &a, "eth0");
    assert!(address_of(&again).starts_with("10.10.0."), "{again}");
    let b = Netns::new("b");
    let b_id = common::unique("cb");
    let b_result = host.add(&config, &b_id, &b, "eth0");
    assert!(a.ping(&address_of(&b_result), 5));
    host.del(&config, &a_id, Some(&a.path()), "eth0");
    host.del(&config, &b_id, Some(&b.path()), "eth0");
    assert!(
        host.endpoints("blue").is_empty(),
        "{}",
        host.inspect("blue")
    );

    // The namespace is gone before DEL.
    let gone = Netns::new("g");
    let gone_id = common::unique("cg");
    let gone_path = gone.path();
    host.add(&config, &gone_id, &gone, "eth0");
    drop(gone);
    host.del(&config, &gone_id, Some(&gone_path), "eth0");
    assert!(
        host.endpoint_of("blue", &gone_id).is_none(),
        "DEL after the namespace went left the endpoint: {}",
        host.inspect("blue")
    );
    host.del(&config, &gone_id, Some(&gone_path), "eth0");

    // DEL without CNI_NETNS still detaches (switchd knows the attachment).
    let d = Netns::new("d");
    let d_id = common::unique("cd");
    host.add(&config, &d_id, &d, "eth0");
    host.del(&config, &d_id, None, "eth0");
    assert!(
        host.endpoint_of("blue", &d_id).is_none(),
        "DEL without CNI_NETNS left the endpoint: {}",
        host.inspect("blue")
    );
    assert_eq!(
        d.links(),
        ["lo"],
        "DEL without CNI_NETNS left the interface"
    );
    let (code, out, logs) = cni("DEL", Some(""), &d_id, "eth0", &config, CNI_PATH);
    assert_eq!(
        code, 0,
        "DEL with an empty CNI_NETNS: {out}\nstderr: {logs}"
    );

    // Nothing was ever attached for this container, and a network that does not exist.
    let never = common::unique("cn");
    let e = Netns::new("e");
    host.del(&config, &never, Some(&e.path()), "eth0");
    host.del(
        &host.config("nothere", "10.30.0.0/24"),
        &never,
        Some(&e.path()),
        "eth0",
    );
    assert!(host.ports().is_empty(), "{:?}", host.ports());
}

#[test]
#[ignore = "needs root; run by make test"]
fn version_lists_the_supported_versions() {
    let (code, out, logs) = cni_raw(
        &[("CNI_COMMAND", "VERSION")],
        json!({"cniVersion": "1.1.0"}).to_string().as_bytes(),
    );
    assert_eq!(code, 0, "{out}\nstderr: {logs}");
    assert!(out["cniVersion"].is_string(), "{out}");
    let versions = out["supportedVersions"]
        .as_array()
        .expect("supportedVersions");
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(
            versions.contains(&json!(version)),
            "{version} missing: {out}"
        );
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn status_tells_whether_switchd_answers() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let (code, out, logs) = cni("STATUS", None, "", "", &config, CNI_PATH);
    assert_eq!(
        code, 0,
        "STATUS with switchd running: {out}\nstderr: {logs}"
    );

    // No socket at all, and a socket file nobody listens on any more.
    let dir = TempDir::new("st");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    for socket in [dir.path().join("missing.sock"), stale] {
        let mut config = config.clone();
        config["socket"] = json!(socket.to_str().unwrap());
        let outcome = cni("STATUS", None, "", "", &config, CNI_PATH);
        let error = assert_cni_error(&outcome, Some(50), &format!("STATUS on {socket:?}"));
        assert_eq!(error["cniVersion"], "1.1.0", "{error}");
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn gc_detaches_what_the_runtime_no_longer_knows() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let containers: Vec<(Netns, String)> = (0..3)
        .map(|i| (Netns::new("g"), common::unique(&format!("gc{i}x"))))
        .collect();
    let mut addresses = Vec::new();
    for (ns, id) in &containers {
        addresses.push(address_of(&host.add(&config, id, ns, "eth0")));
    }
    // An attachment the plugin did not make (no container id), and one on another network.
    let manual = Netns::new("m");
    host.switchd
        .nsutil_ok(&["attach", &manual.name, "--network", "blue"]);
    let red = host.config("red", "10.20.0.0/24");
    let other = Netns::new("r");
    let other_id = common::unique("cr");
    host.add(&red, &other_id, &other, "eth0");

    // Without the list nothing can be told stale: refused, nothing detached.
    let (code, out, _) = cni("GC", None, "", "", &config, CNI_PATH);
    assert_ne!(code, 0, "GC without valid-attachments: {out}");
    assert_eq!(out["code"], 7, "{out}");
    assert_eq!(
        host.inspect("blue")["endpoints"].as_array().unwrap().len(),
        4
    );
    // A configuration that contradicts the existing network is refused too.
    let mut other_mtu = config.clone();
    other_mtu["mtu"] = json!(1280);
    let late = Netns::new("l");
    let (code, out, _) = cni(
        "ADD",
        Some(&late.path()),
        "late",
        "eth0",
        &other_mtu,
        CNI_PATH,
    );
    assert_eq!((code != 0, &out["code"]), (true, &json!(7)), "{out}");
    assert_eq!(late.links(), ["lo"]);

    let mut gc = config.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": containers[0].1, "ifname": "eth0"},
        {"containerID": containers[1].1, "ifname": "eth0"},
    ]);
    let (code, out, logs) = cni("GC", None, "", "", &gc, CNI_PATH);
    assert_eq!(
        code,
        0,
        "GC: {out}\nstderr: {logs}\nswitchd log:\n{}",
        host.switchd.log()
    );

    let info = host.inspect("blue");
    for (ns, id) in &containers[..2] {
        assert!(host.endpoint_of("blue", id).is_some(), "{id} went: {info}");
        assert!(ns.links().contains(&"eth0".to_string()));
    }
    let (third, third_id) = &containers[2];
    assert!(
        host.endpoint_of("blue", third_id).is_none(),
        "the stale attachment stayed: {info}"
    );
    assert_eq!(third.links(), ["lo"], "its interface stayed");
    let endpoints = info["endpoints"].as_array().unwrap();
    assert_eq!(
        endpoints.len(),
        3,
        "the two valid ones and the one nsutil made stay: {info}"
    );
    assert!(
        endpoints
            .iter()
            .all(|e| e["address"].as_str().unwrap().split('/').next() != Some(&*addresses[2])),
        "{info}"
    );
    assert!(
        host.endpoint_of("red", &other_id).is_some(),
        "GC of blue touched red: {}",
        host.inspect("red")
    );
    assert!(
        containers[0].0.ping(&addresses[1], 5),
        "the valid ones still talk"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn errors_are_cni_errors() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let c = Netns::new("c");
    let id = common::unique("ce");
    let path = c.path();

    let outcome = cni(
        "ADD",
        Some("/run/netns/does-not-exist-switchyard-test"),
        &id,
        "eth0",
        &config,
        CNI_PATH,
    );
    assert_cni_error(&outcome, Some(3), "a namespace that does not exist");

    let outcome = cni_raw(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &id),
            ("CNI_NETNS", &path),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ],
        b"{\"cniVersion\": \"1.1.0\", \"name\": ",
    );
    assert_cni_error(&outcome, Some(6), "malformed JSON");

    let env_cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "no CNI_COMMAND",
            &[
                ("CNI_CONTAINERID", &id),
                ("CNI_NETNS", &path),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", CNI_PATH),
            ],
        ),
        (
            "ADD without CNI_CONTAINERID",
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_NETNS", &path),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", CNI_PATH),
            ],
        ),
        (
            "ADD without CNI_IFNAME",
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &id),
                ("CNI_NETNS", &path),
                ("CNI_PATH", CNI_PATH),
            ],
        ),
    ];
    for (what, env) in env_cases {
        let outcome = cni_raw(env, config.to_string().as_bytes());
        assert_cni_error(&outcome, Some(4), what);
    }

    let mut future = config.clone();
    future["cniVersion"] = json!("9.9.9");
    let outcome = cni("ADD", Some(&c.path()), &id, "eth0", &future, CNI_PATH);
    assert_cni_error(&outcome, Some(1), "cniVersion 9.9.9");

    let mut bad = config.clone();
    bad["subnet"] = json!("banana");
    let outcome = cni("ADD", Some(&c.path()), &id, "eth0", &bad, CNI_PATH);
    assert_cni_error(&outcome, Some(7), "subnet banana");

    let dir = TempDir::new("nosock");
    let mut down = config.clone();
    down["socket"] = json!(dir.path().join("switchd.sock").to_str().unwrap());
    let outcome = cni("ADD", Some(&c.path()), &id, "eth0", &down, CNI_PATH);
    assert_cni_error(&outcome, Some(11), "ADD without switchd");

    // None of it attached anything.
    assert_eq!(c.links(), ["lo"], "a failed ADD left an interface");
    assert!(
        host.endpoints("blue").is_empty(),
        "{}",
        host.inspect("blue")
    );
    assert!(host.ports().is_empty(), "{:?}", host.ports());
}

#[test]
#[ignore = "needs root; run by make test"]
fn an_interface_name_in_use_fails_and_attaches_nothing() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let first = Netns::new("f");
    let first_id = common::unique("cf");
    host.add(&config, &first_id, &first, "eth0");

    let c = Netns::new("c");
    c.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let id = common::unique("cu");
    let outcome = cni("ADD", Some(&c.path()), &id, "eth0", &config, CNI_PATH);
    assert_cni_error(&outcome, None, "eth0 already in the namespace");

    let mut links = c.links();
    links.sort();
    assert_eq!(links, ["eth0", "eth0p", "lo"]);
    assert_eq!(link(&c, "eth0")["link_type"], "ether");
    assert!(
        ipv4_addresses(&c, "eth0").is_empty(),
        "the veth got an address"
    );
    let endpoints = host.endpoints("blue");
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["container_id"], first_id.as_str());
    assert_eq!(host.ports().len(), 1, "{:?}", host.ports());
}

#[test]
#[ignore = "needs root; run by make test"]
fn ipam_can_be_delegated_to_host_local() {
    assert!(
        Path::new(CNI_PATH).join("host-local").exists(),
        "{CNI_PATH}/host-local is missing: install containernetworking-plugins (make deps)"
    );
    let host = Host::new();
    let data = TempDir::new("hl");
    let mut config = host.config("green", "10.60.0.0/24");
    config["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{
            "subnet": "10.60.0.0/24",
            "rangeStart": "10.60.0.100",
            "rangeEnd": "10.60.0.110",
        }]],
        "dataDir": data.str(),
    });
    let a = Netns::new("a");
    let b = Netns::new("b");
    let a_id = common::unique("ca");
    let b_id = common::unique("cb");
    let a_result = host.add(&config, &a_id, &a, "eth0");
    let b_result = host.add(&config, &b_id, &b, "eth0");
    assert_eq!(a_result["cniVersion"], "1.1.0", "{a_result}");

    let store = data.path().join("green");
    let mut allocated = Vec::new();
    for (result, id, ns) in [(&a_result, &a_id, &a), (&b_result, &b_id, &b)] {
        let address = address_of(result);
        let last: u8 = address
            .strip_prefix("10.60.0.")
            .and_then(|last| last.parse().ok())
            .unwrap_or_else(|| panic!("{address} is not in 10.60.0.0/24: {result}"));
        assert!(
            (100..=110).contains(&last),
            "{address} is outside the range: {result}"
        );
        assert_eq!(
            result["ips"][0]["address"],
            format!("{address}/24"),
            "{result}"
        );
        assert!(
            store.join(&address).exists(),
            "host-local has no record of {address} in {}",
            store.display()
        );
        let endpoint = host.endpoint_of("green", id).expect("endpoint");
        assert_eq!(endpoint["address"], format!("{address}/24"), "{endpoint}");
        assert_eq!(ipv4_addresses(ns, "eth0"), [format!("{address}/24")]);
        allocated.push(address);
    }
    assert_ne!(allocated[0], allocated[1]);
    let info = host.inspect("green");
    assert_eq!(info["subnet"], "10.60.0.0/24", "{info}");
    assert!(a.ping(&allocated[1], 5), "a to b");
    assert!(b.ping("10.60.0.1", 5), "the gateway");

    host.del(&config, &a_id, Some(&a.path()), "eth0");
    assert!(
        !store.join(&allocated[0]).exists(),
        "DEL did not release {} in host-local",
        allocated[0]
    );
    assert!(store.join(&allocated[1]).exists(), "b's address went too");
    assert!(host.endpoint_of("green", &a_id).is_none());
    host.del(&config, &a_id, Some(&a.path()), "eth0");
    host.del(&config, &b_id, Some(&b.path()), "eth0");
    assert!(!store.join(&allocated[1]).exists());
    assert!(host.endpoints("green").is_empty());

    // An address host-local hands out that switchd already gave to someone else: a
    // switchyard error (100 and up), and nothing attached.
    let out = host
        .switchd
        .swctl(&["network", "create", "taken", "--subnet", "10.61.0.0/24"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let holder = Netns::new("t");
    host.switchd.nsutil_ok(&[
        "attach",
        &holder.name,
        "--network",
        "taken",
        "--ip",
        "10.61.0.50",
    ]);
    let mut taken = host.config("taken", "10.61.0.0/24");
    taken["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{
            "subnet": "10.61.0.0/24",
            "rangeStart": "10.61.0.50",
            "rangeEnd": "10.61.0.50",
        }]],
        "dataDir": data.str(),
    });
    let c = Netns::new("c");
    let outcome = cni(
        "ADD",
        Some(&c.path()),
        &common::unique("ct"),
        "eth0",
        &taken,
        CNI_PATH,
    );
    let error = assert_cni_error(&outcome, None, "an address switchd has given out");
    assert!(error["code"].as_u64().unwrap() >= 100, "{error}");
    assert_eq!(c.links(), ["lo"]);
    assert_eq!(host.endpoints("taken").len(), 1);
    assert!(
        !data.path().join("taken").join("10.61.0.50").exists(),
        "the failed ADD kept its host-local address"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_conflist_is_accepted() {
    let host = Host::new();
    // Shaped like docs/cni.md's conflist, with the runtime's CNI_ARGS.
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "switchyard",
        "plugins": [{
            "type": "switchyard-cni",
            "socket": host.socket(),
            "subnet": "10.88.0.0/24",
            "masquerade": true,
        }],
    });
    let a = Netns::new("a");
    let b = Netns::new("b");
    let a_id = common::unique("ca");
    let b_id = common::unique("cb");
    let mut results = Vec::new();
    for (ns, id) in [(&a, &a_id), (&b, &b_id)] {
        let (code, result, logs) = cni_with_args(
            "ADD",
            Some(&ns.path()),
            id,
            "eth0",
            &conflist,
            CNI_PATH,
            KUBELET_ARGS,
        );
        assert_eq!(
            code,
            0,
            "ADD with a conflist: {result}\nstderr: {logs}\nswitchd log:\n{}",
            host.switchd.log()
        );
        assert_eq!(
            result["cniVersion"], "1.0.0",
            "the list's version: {result}"
        );
        results.push(result);
    }
    let info = host.inspect("switchyard");
    assert_eq!(info["subnet"], "10.88.0.0/24", "{info}");
    assert_eq!(info["masquerade"], true, "{info}");
    assert!(host.endpoint_of("switchyard", &a_id).is_some(), "{info}");
    assert!(a.ping(&address_of(&results[1]), 5));

    let (code, out, logs) = cni_with_args(
        "DEL",
        Some(&a.path()),
        &a_id,
        "eth0",
        &conflist,
        CNI_PATH,
        KUBELET_ARGS,
    );
    assert_eq!(code, 0, "DEL with a conflist: {out}\nstderr: {logs}");
    assert!(host.endpoint_of("switchyard", &a_id).is_none());
}

#[test]
#[ignore = "needs root; run by make test"]
fn parallel_adds_share_one_new_network() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let containers: Vec<(Netns, String)> = (0..4)
        .map(|i| (Netns::new("p"), common::unique(&format!("cp{i}x"))))
        .collect();
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let runs: Vec<_> = containers
            .iter()
            .map(|(ns, id)| {
                let config = &config;
                scope.spawn(move || cni("ADD", Some(&ns.path()), id, "eth0", config, CNI_PATH))
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = results
        .iter()
        .map(|(code, result, logs)| {
            assert_eq!(
                *code,
                0,
                "a parallel ADD failed: {result}\nstderr: {logs}\nswitchd log:\n{}",
                host.switchd.log()
            );
            address_of(result)
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        4,
        "an address was given twice: {addresses:?}"
    );
    assert_eq!(host.endpoints("blue").len(), 4, "{}", host.inspect("blue"));
    let networks = host.switchd.swctl_json(&["network", "ls"]);
    assert_eq!(networks.as_array().unwrap().len(), 1, "{networks}");
    assert!(containers[0].0.ping(&addresses[3], 5));
}

#[test]
#[ignore = "needs root; run by make test"]
fn one_container_on_two_networks() {
    let host = Host::new();
    let blue = host.config("blue", "10.10.0.0/24");
    let red = host.config("red", "10.20.0.0/24");
    let c = Netns::new("c");
    let peer = Netns::new("p");
    let id = common::unique("cm");
    let peer_id = common::unique("cp");
    let on_blue = host.add(&blue, &id, &c, "eth0");
    let on_red = host.add(&red, &id, &c, "eth1");
    let peer_red = host.add(&red, &peer_id, &peer, "eth0");
    assert!(address_of(&on_blue).starts_with("10.10.0."), "{on_blue}");
    assert!(address_of(&on_red).starts_with("10.20.0."), "{on_red}");
    assert_eq!(on_red["interfaces"][1]["name"], "eth1", "{on_red}");
    let mut links = c.links();
    links.sort();
    assert_eq!(links, ["eth0", "eth1", "lo"]);
    let route = c.exec_ok(&["ip", "route", "show", "default"]);
    assert!(
        route.contains("via 10.10.0.1 dev eth0"),
        "the first network keeps the default route: {route}"
    );
    assert!(c.ping(&address_of(&peer_red), 5), "over eth1");
    // Each result describes its own interface as it is (CHECK compares them).
    for (config, result, ifname) in [(&blue, &on_blue, "eth0"), (&red, &on_red, "eth1")] {
        let mut check = config.clone();
        check["prevResult"] = result.clone();
        let (code, out, logs) = cni("CHECK", Some(&c.path()), &id, ifname, &check, CNI_PATH);
        assert_eq!(
            code, 0,
            "CHECK {ifname}: {out}\nstderr: {logs}\nprevResult: {result}"
        );
    }

    // (network, container id, ifname) is the key: DEL on red leaves blue alone.
    host.del(&red, &id, Some(&c.path()), "eth1");
    assert!(
        host.endpoint_of("red", &id).is_none(),
        "{}",
        host.inspect("red")
    );
    let endpoint = host
        .endpoint_of("blue", &id)
        .expect("blue's endpoint stays");
    assert_eq!(endpoint["ifname"], "eth0");
    assert_eq!(
        ipv4_addresses(&c, "eth0"),
        [on_blue["ips"][0]["address"].as_str().unwrap()]
    );
    assert!(!c.links().contains(&"eth1".to_string()));
    // And DEL on blue with the wrong ifname detaches nothing.
    host.del(&blue, &id, Some(&c.path()), "eth1");
    assert!(host.endpoint_of("blue", &id).is_some());
}

/// Everything a namespace has that an ADD could add to: its links, addresses and routes
/// (IPv4 and IPv6, every table), as `ip` prints them.
fn snapshot(ns: &Netns) -> String {
    [
        &["ip", "-o", "link", "show"][..],
        &["ip", "-o", "addr", "show"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
    ]
    .iter()
    .map(|args| ns.exec_ok(args))
    .collect::<Vec<_>>()
    .join("\n")
}

/// How many control requests switchd has logged (it logs each one at debug level).
fn control_requests(switchd: &common::Switchd) -> usize {
    switchd.log().matches("control request").count()
}

/// A process that sleeps inside a namespace, so that `/proc/PID/ns/net` names that
/// namespace; killed (by its own pid) and reaped on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start_in(ns: &Netns) -> Sleeper {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        // `ip netns exec` becomes `sleep` (same pid) once it has entered the namespace.
        let sleeper = Sleeper(child);
        let want = std::fs::metadata(ns.path()).expect("the namespace's file");
        let link = format!("/proc/{}/ns/net", sleeper.pid());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let entered = std::fs::metadata(&link).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino()) == (want.dev(), want.ino())
            });
            if entered {
                return sleeper;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sleep did not enter {} within 10 s",
                ns.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ADD with `CNI_NETNS` = `netns`, the plugin started as `launch` says: must be refused
/// with code 4 and a message that names `CNI_NETNS`.
fn assert_netns_refused(launch: &Launch, host: &Host, netns: &str, what: &str) {
    let config = host.config("blue", "10.10.0.0/24");
    let id = common::unique("cs");
    let outcome = cni_launch(
        launch,
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ],
        config.to_string().as_bytes(),
    );
    let error = assert_cni_error(&outcome, Some(4), what);
    let msg = error["msg"].as_str().unwrap();
    assert!(msg.contains("CNI_NETNS"), "{what}: {error}");
}

#[test]
#[ignore = "needs root; run by make test"]
fn the_plugins_own_namespace_is_refused() {
    // The usual setup: the runtime runs the plugin in the host's namespace, where switchd
    // runs too. Here the "host" is the test's namespace with switchd in it, and the
    // plugin runs there as well; the machine's own namespace is never named.
    let host = Host::new();
    let sleeper = Sleeper::start_in(&host.ns);
    let before = snapshot(&host.ns);
    let launch = Launch {
        netns: Some(&host.ns),
        ..Launch::default()
    };
    let by_pid = format!("/proc/{}/ns/net", sleeper.pid());
    for (netns, what) in [
        ("/proc/self/ns/net", "/proc/self/ns/net"),
        ("/proc/thread-self/ns/net", "/proc/thread-self/ns/net"),
        (
            &*by_pid,
            "/proc/PID/ns/net of a process in the plugin's namespace",
        ),
        (&*host.ns.path(), "a bind mount of the plugin's namespace"),
    ] {
        assert_netns_refused(&launch, &host, netns, what);
        assert_eq!(
            snapshot(&host.ns),
            before,
            "ADD with CNI_NETNS={netns} changed the plugin's namespace\nswitchd log:\n{}",
            host.switchd.log()
        );
    }
    let networks = host.switchd.swctl_json(&["network", "ls"]);
    assert_eq!(networks, json!([]), "a refused ADD created a network");
    assert!(host.ports().is_empty(), "{:?}", host.ports());
}

#[test]
#[ignore = "needs root; run by make test"]
fn switchds_namespace_is_refused_from_elsewhere() {
    // The plugin in a namespace of its own (a runtime's), switchd in the host's: the
    // plugin's namespace and switchd's are both refused, by identity whatever the path.
    let host = Host::new();
    let runtime = Netns::new("rt");
    runtime.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let launch = Launch {
        netns: Some(&runtime),
        ..Launch::default()
    };
    let host_before = snapshot(&host.ns);
    let runtime_before = snapshot(&runtime);
    let switchd_pid = host.switchd.pid().expect("switchd runs");
    let by_pid = format!("/proc/{switchd_pid}/ns/net");
    for (netns, what) in [
        ("/proc/self/ns/net", "the plugin's own namespace"),
        (
            &*runtime.path(),
            "a bind mount of the plugin's own namespace",
        ),
        (&*host.ns.path(), "a bind mount of switchd's namespace"),
        (&*by_pid, "/proc/PID/ns/net of switchd"),
    ] {
        assert_netns_refused(&launch, &host, netns, what);
        assert_eq!(
            snapshot(&host.ns),
            host_before,
            "ADD with CNI_NETNS={netns} changed switchd's namespace\nswitchd log:\n{}",
            host.switchd.log()
        );
        assert_eq!(
            snapshot(&runtime),
            runtime_before,
            "ADD with CNI_NETNS={netns} changed the plugin's namespace"
        );
    }
    let networks = host.switchd.swctl_json(&["network", "ls"]);
    assert_eq!(networks, json!([]), "a refused ADD created a network");
    assert!(host.ports().is_empty(), "{:?}", host.ports());

    // A container's namespace still works from there.
    let c = Netns::new("c");
    let id = common::unique("cs");
    let config = host.config("blue", "10.10.0.0/24");
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", &*id),
        ("CNI_NETNS", &*c.path()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_PATH),
    ];
    let (code, result, logs) = cni_launch(&launch, &env, config.to_string().as_bytes());
    assert_eq!(
        code, 0,
        "ADD from the runtime's namespace: {result}\n{logs}"
    );
    assert_eq!(ipv4_addresses(&c, "eth0"), ["10.10.0.2/24"]);
}

/// Writes an executable script at `dir/name` that records each run (its `CNI_COMMAND`)
/// in `marker` and answers like an IPAM plugin.
fn marker_plugin(dir: &Path, name: &str, marker: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\n\
         cat > /dev/null\n\
         echo \"$CNI_COMMAND\" >> '{}'\n\
         case \"$CNI_COMMAND\" in\n\
         VERSION) echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}}' ;;\n\
         ADD) echo '{{\"cniVersion\":\"1.1.0\",\"ips\":[{{\"address\":\"10.70.0.5/24\"}}]}}' ;;\n\
         esac\n",
        marker.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write the marker plugin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_delegated_plugin_is_found_only_in_cni_path() {
    let host = Host::new();
    let name = common::unique("ipam");
    // A plugin of that name in the plugin's working directory, in a directory of its
    // PATH, and in a subdirectory of the working directory: none of them may run.
    let cwd = TempDir::new("cwd");
    let bin = TempDir::new("pathbin");
    let markers = TempDir::new("marks");
    let ran_from_cwd = markers.path().join("cwd");
    let ran_from_path = markers.path().join("path");
    let ran_from_sub = markers.path().join("sub");
    marker_plugin(cwd.path(), &name, &ran_from_cwd);
    marker_plugin(bin.path(), &name, &ran_from_path);
    std::fs::create_dir(cwd.path().join("sub")).expect("mkdir");
    marker_plugin(&cwd.path().join("sub"), &name, &ran_from_sub);
    let launch = Launch {
        cwd: Some(cwd.path()),
        path: Some(format!("{}:{}", bin.str(), default_path())),
        ..Launch::default()
    };
    let mut config = host.config("blue", "10.70.0.0/24");
    config["ipam"] = json!({ "type": name });
    let c = Netns::new("c");
    let id = common::unique("ci");
    let run = |command: &str, cni_path: Option<&str>, config: &Value| {
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", &*id),
            ("CNI_IFNAME", "eth0"),
        ];
        let netns = c.path();
        env.push(("CNI_NETNS", &netns));
        if let Some(cni_path) = cni_path {
            env.push(("CNI_PATH", cni_path));
        }
        cni_launch(&launch, &env, config.to_string().as_bytes())
    };
    let nothing_ran = |what: &str| {
        for marker in [&ran_from_cwd, &ran_from_path, &ran_from_sub] {
            assert!(
                !marker.exists(),
                "{what}: the plugin ran {} ({})",
                marker.display(),
                std::fs::read_to_string(marker).unwrap_or_default().trim()
            );
        }
    };

    for command in ["ADD", "DEL"] {
        let outcome = run(command, None, &config);
        let error = assert_cni_error(&outcome, Some(4), &format!("{command} without CNI_PATH"));
        assert!(
            error["msg"].as_str().unwrap().contains("CNI_PATH"),
            "{error}"
        );
        nothing_ran(&format!("{command} without CNI_PATH"));
        let outcome = run(command, Some(""), &config);
        assert_cni_error(
            &outcome,
            Some(4),
            &format!("{command} with an empty CNI_PATH"),
        );
        nothing_ran(&format!("{command} with an empty CNI_PATH"));
    }
    // A relative directory in CNI_PATH, and an empty entry (which once meant the working
    // directory).
    let outcome = run("ADD", Some(&format!("{CNI_PATH}:.")), &config);
    assert_cni_error(&outcome, Some(4), "CNI_PATH with a relative directory");
    nothing_ran("CNI_PATH with a relative directory");
    let outcome = run("ADD", Some(&format!("{CNI_PATH}:")), &config);
    assert_cni_error(&outcome, Some(7), "CNI_PATH with an empty entry");
    nothing_ran("CNI_PATH with an empty entry");
    // A plugin named like a path, even with the working directory in CNI_PATH.
    for kind in [format!("./{name}"), format!("sub/{name}"), "..".to_string()] {
        let mut named = config.clone();
        named["ipam"]["type"] = json!(kind);
        let outcome = run("ADD", Some(cwd.str()), &named);
        assert_cni_error(&outcome, Some(7), &format!("ipam type {kind}"));
        nothing_ran(&format!("ipam type {kind}"));
    }
    assert_eq!(c.links(), ["lo"], "a refused ADD left an interface");
    let networks = host.switchd.swctl_json(&["network", "ls"]);
    assert_eq!(networks, json!([]), "a refused ADD created a network");

    // The marker works: the plugin in a CNI_PATH directory does run.
    let (code, out, logs) = run("DEL", Some(&format!("/nonexistent:{}", cwd.str())), &config);
    assert_eq!(code, 0, "DEL with the plugin in CNI_PATH: {out}\n{logs}");
    let ran = std::fs::read_to_string(&ran_from_cwd).unwrap_or_default();
    assert!(
        ran.contains("DEL"),
        "the plugin in CNI_PATH did not run: {ran:?}\n{logs}"
    );
    assert!(!ran_from_path.exists() && !ran_from_sub.exists());
}

#[test]
#[ignore = "needs root; run by make test"]
fn invalid_fields_are_refused_before_switchd_is_asked() {
    let host = Host::new();
    let config = host.config("blue", "10.10.0.0/24");
    let c = Netns::new("c");
    let id = common::unique("cv");
    let asked = control_requests(&host.switchd);
    let with = |key: &str, value: Value| {
        let mut config = config.clone();
        config[key] = value;
        config
    };
    let huge = "n".repeat(50 << 20);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("a 50 MiB network name", with("name", json!(huge)), "1 MiB"),
        (
            "a 65-byte network name",
            with("name", json!("n".repeat(65))),
            "name",
        ),
        (
            "a network name with '/'",
            with("name", json!("a/b")),
            "name",
        ),
        (
            "no cniVersion",
            {
                let mut config = config.clone();
                config.as_object_mut().unwrap().remove("cniVersion");
                config
            },
            "cniVersion",
        ),
        ("mtu 0", with("mtu", json!(0)), "mtu"),
        ("mtu \"big\"", with("mtu", json!("big")), "mtu"),
        ("vni 2^24", with("vni", json!(1 << 24)), "vni"),
        ("gateway \"x\"", with("gateway", json!("x")), "gateway"),
        (
            "a relative socket",
            with("socket", json!("switchd.sock")),
            "socket",
        ),
    ];
    for (what, config, field) in &cases {
        let outcome = cni("ADD", Some(&c.path()), &id, "eth0", config, CNI_PATH);
        let error = assert_cni_error(&outcome, Some(7), what);
        let msg = error["msg"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{what}: the message does not name {field}: {error}"
        );
        assert!(msg.len() < 1000, "{what}: a message of {} bytes", msg.len());
    }
    let env_cases: [(&str, &str, &str, &str); 4] = [
        (
            "an interface name of 16 bytes",
            "CNI_IFNAME",
            &id,
            "eth0123456789012",
        ),
        ("an interface name with ':'", "CNI_IFNAME", &id, "eth0:1"),
        (
            "a container id with '/'",
            "CNI_CONTAINERID",
            "../../etc",
            "eth0",
        ),
        (
            "a container id of 300 bytes",
            "CNI_CONTAINERID",
            &"c".repeat(300),
            "eth0",
        ),
    ];
    for (what, variable, container, ifname) in env_cases {
        let outcome = cni("ADD", Some(&c.path()), container, ifname, &config, CNI_PATH);
        let error = assert_cni_error(&outcome, Some(4), what);
        assert!(
            error["msg"].as_str().unwrap().contains(variable),
            "{what}: {error}"
        );
    }
    assert_eq!(
        control_requests(&host.switchd),
        asked,
        "switchd was asked:\n{}",
        host.switchd.log()
    );
    assert_eq!(c.links(), ["lo"], "a refused ADD left an interface");
}

#[test]
#[ignore = "needs root; run by make test"]
fn port_mappings_from_the_runtime_are_published_and_go_with_del() {
    let host = Host::new();
    let mut config = host.config("pm", "10.10.7.0/24");
    // What a runtime does for a plugin that declares the portMappings capability.
    config["capabilities"] = json!({"portMappings": true});
    config["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]});
    let ns = Netns::new("c");
    let id = common::unique("cpm");
    let result = host.add(&config, &id, &ns, "eth0");
    // No `dns` in the configuration: the result names switchd's DNS on the gateway.
    assert_eq!(
        result["dns"]["nameservers"],
        json!(["10.10.7.1"]),
        "{result}"
    );
    assert_eq!(result["dns"]["search"], json!(["pm"]), "{result}");
    let endpoint = host.endpoint_of("pm", &id).expect("the endpoint");
    let host_ports: Vec<u64> = endpoint["published"]
        .as_array()
        .expect("published ports")
        .iter()
        .filter_map(|m| m["host_port"].as_u64())
        .collect();
    assert_eq!(host_ports, [8080, 5353], "{endpoint}");

    // A host has an address of its own to answer from (the uplink has none).
    host.ns.exec_ok(&[
        "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    host.ns
        .exec_ok(&["ip", "addr", "add", "192.168.201.1/24", "dev", "d0"]);
    host.ns.exec_ok(&["ip", "link", "set", "d0", "up"]);
    host.ns.exec_ok(&["ip", "link", "set", "d1", "up"]);
    let _servers = common::PeerEcho::start(&ns);
    assert!(
        common::eventually(|| common::tcp_peer(&host.ns, "127.0.0.1:8080")).is_some(),
        "tcp 8080 from switchd's namespace; log:\n{}",
        host.switchd.log()
    );
    assert!(
        common::eventually(|| common::udp_peer(&host.ns, "127.0.0.1:5353")).is_some(),
        "udp 5353 on 127.0.0.1"
    );

    // A second container asking for a taken host port fails whole.
    let other = Netns::new("c");
    let other_id = common::unique("cpm");
    let (code, result, _) = cni(
        "ADD",
        Some(&other.path()),
        &other_id,
        "eth0",
        &config,
        CNI_PATH,
    );
    assert_ne!(code, 0, "a taken host port was published twice");
    assert!(
        result["msg"].as_str().unwrap_or("").contains("8080"),
        "{result}"
    );
    assert!(
        host.endpoint_of("pm", &other_id).is_none(),
        "no endpoint made"
    );

    host.del(&config, &id, Some(&ns.path()), "eth0");
    assert_eq!(
        common::tcp_peer(&host.ns, "127.0.0.1:8080"),
        None,
        "gone with DEL"
    );
}
