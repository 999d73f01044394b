//! Root tests of `switchyard-docker` against a real Docker engine (Debian's dockerd 20.10
//! in a namespace of the test's, see tests/common/docker.rs), with switchd doing the
//! switching: networks, containers by name, nsutil namespaces on Docker's networks,
//! connect/disconnect, published ports, restarts of the plugin, switchd and dockerd, and
//! the errors a user meets.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::switchyard_docker::Rig;
use common::{in_netns, stderr, tail, Netns};
use serde_json::Value;

/// Creates a switchyard network through Docker and waits until switchd has it under
/// Docker's name (the plugin learns the name from Docker's API once the create is done).
fn create_network(rig: &Rig, name: &str, subnet: &str, extra: &[&str]) -> Value {
    let driver = rig.driver();
    let mut args = vec![
        "network",
        "create",
        "-d",
        driver,
        "--ipam-driver",
        driver,
        "--subnet",
        subnet,
    ];
    args.extend_from_slice(extra);
    args.push(name);
    rig.docker_ok(&args);
    switchd_network(rig, name)
}

/// switchd's view of network `name`, once it has one by that name (at most 10 s).
fn switchd_network(rig: &Rig, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let networks = rig.swctl_json(&["network", "ls"]);
        if let Some(found) = networks
            .as_array()
            .expect("a list of networks")
            .iter()
            .find(|n| n["name"] == name)
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "switchd has no network {name}: {networks}\nplugin log:\n{}",
            tail(&rig.plugin_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn endpoints(rig: &Rig, network: &str) -> Vec<Value> {
    rig.swctl_json(&["network", "inspect", network])["endpoints"]
        .as_array()
        .expect("endpoints")
        .clone()
}

/// Runs a container that sleeps on `network` (plus `extra` options).
fn run_sleeper(rig: &Rig, name: &str, network: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[rig.image(), "sleep", "600"]);
    rig.docker_ok(&args);
}

/// The IPv4 address (with prefix) a container has on `ifname`, from `ip -4 -o addr`.
fn container_addr(rig: &Rig, container: &str, ifname: &str) -> Option<String> {
    let out = rig.exec(
        container,
        &["ip", "-4", "-o", "addr", "show", "dev", ifname],
    );
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "inet")?;
    words.next().map(str::to_string)
}

fn docker_inspect(rig: &Rig, what: &[&str]) -> Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(what);
    let out = rig.docker_ok(&args);
    serde_json::from_str(&out).expect("docker inspect prints JSON")
}

/// `docker ARGS`, expecting it to fail: its stderr.
fn docker_fails(rig: &Rig, args: &[&str]) -> String {
    let out = rig.dockerd.docker(args);
    assert!(
        !out.status.success(),
        "docker {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

#[test]
#[ignore = "needs root; run by make test"]
fn docker_networks_come_and_go_and_containers_find_each_other_by_name() {
    let rig = Rig::start();
    let net = create_network(
        &rig,
        "blue",
        "10.30.0.0/24",
        &["-o", "masquerade=true", "-o", "mtu=1400"],
    );
    assert_eq!(net["subnet"], "10.30.0.0/24");
    assert_eq!(net["gateway"], "10.30.0.1");
    assert_eq!(net["masquerade"], true);
    assert_eq!(net["mtu"], 1400);
    let inspect = docker_inspect(&rig, &["--type", "network", "blue"]);
    let inspect = &inspect[0];
    assert_eq!(inspect["Driver"], rig.driver());
    assert_eq!(inspect["Scope"], "local");
    assert_eq!(inspect["IPAM"]["Driver"], rig.driver());
    assert_eq!(inspect["IPAM"]["Config"][0]["Subnet"], "10.30.0.0/24");
    // switchd's network carries Docker's id.
    let docker_id = inspect["Id"].as_str().expect("a network id");
    assert_eq!(net["id"], docker_id, "switchd's network is Docker's");

    run_sleeper(&rig, "web", "blue", &[]);
    run_sleeper(&rig, "client", "blue", &[]);
    let web = container_addr(&rig, "web", "eth0").expect("web has an address on eth0");
    let client = container_addr(&rig, "client", "eth0").expect("client has eth0");
    let eps = endpoints(&rig, "blue");
    let mut addrs: Vec<&str> = eps.iter().map(|e| e["address"].as_str().unwrap()).collect();
    addrs.sort();
    let mut want = vec![web.as_str(), client.as_str()];
    want.sort();
    assert_eq!(addrs, want, "switchd's endpoints are the containers'");
    // The MTU reached the containers' interfaces.
    let link = rig.exec("web", &["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(String::from_utf8_lossy(&link.stdout).trim(), "1400");
    // Docker's embedded DNS, on a network of a remote driver.
    assert!(
        rig.ping("client", "web", 5),
        "client does not reach web by name; switchd log:\n{}",
        tail(&rig.switchd_log(), 40)
    );
    assert!(rig.ping("web", "client", 5), "web does not reach client");
    // The default route is switchd's router.
    assert!(
        rig.ping("web", "10.30.0.1", 5),
        "web does not reach its gateway"
    );

    // In use: Docker refuses, and switchd still has the network.
    let refused = docker_fails(&rig, &["network", "rm", "blue"]);
    assert!(refused.contains("active endpoints"), "{refused}");
    switchd_network(&rig, "blue");

    // Removing a container removes its port and frees its address.
    rig.docker_ok(&["rm", "-f", "client"]);
    let eps = endpoints(&rig, "blue");
    assert_eq!(eps.len(), 1, "one endpoint left: {eps:?}");
    assert_eq!(eps[0]["address"], web.as_str());
    let net = rig.swctl_json(&["network", "inspect", "blue"]);
    assert_eq!(
        net["reservations"].as_array().map_or(0, Vec::len),
        0,
        "the address was released: {net}"
    );

    rig.docker_ok(&["rm", "-f", "web"]);
    rig.docker_ok(&["network", "rm", "blue"]);
    let left = rig.swctl_json(&["network", "ls"]);
    assert_eq!(
        left,
        serde_json::json!([]),
        "switchd's network went with Docker's"
    );
    let ports = rig.swctl_json(&["port", "ls"]);
    assert_eq!(ports, serde_json::json!([]), "no port left");
}

#[test]
#[ignore = "needs root; run by make test"]
fn connect_and_disconnect_a_running_container() {
    let rig = Rig::start();
    create_network(&rig, "front", "10.31.0.0/24", &[]);
    create_network(&rig, "back", "10.32.0.0/24", &["-o", "internal=true"]);
    run_sleeper(&rig, "app", "front", &[]);
    run_sleeper(&rig, "db", "back", &[]);
    assert!(!rig.ping("app", "db", 1), "not on one network yet");

    rig.docker_ok(&["network", "connect", "back", "app"]);
    let addr = container_addr(&rig, "app", "eth1").expect("app has eth1 on back");
    assert!(addr.starts_with("10.32.0."), "{addr}");
    assert!(rig.ping("app", "db", 5), "app does not reach db by name");
    let db = container_addr(&rig, "db", "eth0").expect("db's address");
    let db_ip = db.split('/').next().unwrap();
    assert!(rig.ping("app", db_ip, 5), "app does not reach db's address");
    assert_eq!(endpoints(&rig, "back").len(), 2);

    rig.docker_ok(&["network", "disconnect", "back", "app"]);
    assert_eq!(container_addr(&rig, "app", "eth1"), None, "eth1 is gone");
    assert!(!rig.ping("app", db_ip, 1), "disconnected");
    let eps = endpoints(&rig, "back");
    assert_eq!(eps.len(), 1, "only db is left on back: {eps:?}");
    // Still on front, through the gateway.
    assert!(rig.ping("app", "10.31.0.1", 5));
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_docker_container_and_an_nsutil_namespace_share_a_network() {
    let rig = Rig::start();
    create_network(&rig, "mixed", "10.33.0.0/24", &[]);
    run_sleeper(&rig, "box", "mixed", &[]);
    let plain = InnerNetns::create(&rig, "plain");
    let out = rig.tool(
        "nsutil",
        &["attach", &plain.name, "--network", "mixed", "--json"],
    );
    assert!(
        out.status.success(),
        "nsutil attach: {}\nswitchd log:\n{}",
        stderr(&out),
        tail(&rig.switchd_log(), 30)
    );
    let attached: Value = serde_json::from_slice(&out.stdout).expect("nsutil --json");
    let plain_addr = attached["addresses"][0]
        .as_str()
        .unwrap_or_else(|| panic!("nsutil's answer has an address: {attached}"))
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let box_addr = container_addr(&rig, "box", "eth0").expect("box's address");
    let box_ip = box_addr.split('/').next().unwrap();
    assert_ne!(plain_addr, box_ip, "one allocator: two addresses");
    assert!(
        plain.ping(box_ip, 5),
        "the namespace does not reach the container"
    );
    assert!(
        rig.ping("box", &plain_addr, 5),
        "the container does not reach the namespace"
    );
    assert_eq!(endpoints(&rig, "mixed").len(), 2);

    // Docker removes its network whatever a remote driver answers (libnetwork honours
    // only a "forbidden" error, which the plugin protocol cannot carry). The plugin
    // refuses, so switchd keeps the network for the namespace still on it: nothing is
    // lost, and dockerd's log says why.
    rig.docker_ok(&["rm", "-f", "box"]);
    rig.docker_ok(&["network", "rm", "mixed"]);
    assert!(
        rig.dockerd.log().contains("1 endpoint(s) attached"),
        "dockerd logged the plugin's refusal:\n{}",
        tail(&rig.dockerd.log(), 20)
    );
    switchd_network(&rig, "mixed");
    assert!(
        plain.ping("10.33.0.1", 5),
        "the namespace still has its network"
    );
    // The name and subnet are still switchd's: a new Docker network cannot take them.
    let driver = rig.driver();
    let err = docker_fails(
        &rig,
        &[
            "network",
            "create",
            "-d",
            driver,
            "--ipam-driver",
            driver,
            "--subnet",
            "10.33.0.0/24",
            "again",
        ],
    );
    assert!(err.contains("10.33.0.0/24"), "{err}");
    let out = rig.tool("nsutil", &["delete", &plain.name]);
    assert!(out.status.success(), "nsutil delete: {}", stderr(&out));
    let out = rig.tool("swctl", &["network", "rm", "mixed"]);
    assert!(out.status.success(), "swctl network rm: {}", stderr(&out));
}

/// A named namespace made with `nsutil create` in dockerd's mount namespace, as a user
/// does on a host where dockerd and switchd run: the test's own mount namespace does not
/// see it (dockerd's is private), so it is used through [`Rig::tool`] and
/// [`Dockerd::command`]. Deleted on drop, with the file it leaves under /run/netns.
struct InnerNetns<'a> {
    rig: &'a Rig,
    name: String,
}

impl<'a> InnerNetns<'a> {
    fn create(rig: &'a Rig, tag: &str) -> InnerNetns<'a> {
        let name = common::unique(tag);
        let out = rig.tool("nsutil", &["create", &name]);
        assert!(out.status.success(), "nsutil create: {}", stderr(&out));
        InnerNetns { rig, name }
    }

    fn ping(&self, addr: &str, secs: u32) -> bool {
        let secs = secs.to_string();
        let mut ping = self.rig.dockerd.command("ip");
        ping.args(["netns", "exec", &self.name, "ping", "-c", "1"])
            .args(["-W", &secs, "-w", &secs, addr]);
        common::engine::output_within(&mut ping, Duration::from_secs(30))
            .status
            .success()
    }
}

impl Drop for InnerNetns<'_> {
    fn drop(&mut self) {
        let _ = self.rig.tool("nsutil", &["delete", &self.name]);
        let _ = std::fs::remove_file(format!("/run/netns/{}", self.name));
    }
}

/// `GET /` from inside `netns` to `to`: the body of the answer, or `None` when nothing
/// answered within 2 s.
fn http_get_once(netns: &Netns, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().expect("an address and port");
    in_netns(netns, move || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    })
    .join()
    .expect("the client thread")
}

/// [`http_get_once`], tried for up to 10 s (the server may be starting).
fn http_get(netns: &Netns, to: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = http_get_once(netns, to);
        if got.is_some() || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_published_port_is_reached_from_outside_dockerds_namespace() {
    let rig = Rig::start();
    create_network(&rig, "pub", "10.34.0.0/24", &["-o", "masquerade=true"]);
    // An outside machine: a namespace with a link to dockerd's (switchd's) namespace.
    let outside = Netns::new("out");
    rig.dockerd.netns().exec_ok(&[
        "ip",
        "link",
        "add",
        "to-out",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside.name,
    ]);
    rig.dockerd
        .netns()
        .exec_ok(&["ip", "addr", "add", "192.168.90.1/24", "dev", "to-out"]);
    rig.dockerd
        .netns()
        .exec_ok(&["ip", "link", "set", "to-out", "up"]);
    outside.exec_ok(&["ip", "addr", "add", "192.168.90.2/24", "dev", "eth0"]);
    outside.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    outside.exec_ok(&["ip", "link", "set", "lo", "up"]);
    assert!(outside.ping("192.168.90.1", 5), "the link is up");

    let serve = "mkdir -p /www && echo hello from web > /www/index.html && \
                 exec httpd -f -p 80 -h /www";
    let image = rig.image();
    rig.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "pub",
        "-p",
        "8080:80",
        image,
        "sh",
        "-c",
        serve,
    ]);
    assert_eq!(
        http_get(&outside, "192.168.90.1:8080").as_deref(),
        Some("hello from web\n"),
        "the published port from outside; switchd log:\n{}",
        tail(&rig.switchd_log(), 30)
    );
    let web = endpoints(&rig, "pub");
    assert_eq!(
        web[0]["published"][0]["host_port"], 8080,
        "switchd lists the mapping: {web:?}"
    );
    // Not published: nothing on another port.
    assert_eq!(http_get_once(&outside, "192.168.90.1:8081"), None);

    // Hairpin: another container through the host's address.
    run_sleeper(&rig, "peer", "pub", &[]);
    let hairpin = rig.exec(
        "peer",
        &[
            "sh",
            "-c",
            "(printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 2) | nc 192.168.90.1 8080",
        ],
    );
    assert!(
        String::from_utf8_lossy(&hairpin.stdout).contains("hello from web"),
        "hairpin: {}",
        stderr(&hairpin)
    );

    // Removing the container unpublishes the port.
    rig.docker_ok(&["rm", "-f", "web"]);
    assert_eq!(
        http_get_once(&outside, "192.168.90.1:8080"),
        None,
        "unpublished"
    );
}

#[test]
#[ignore = "needs root; run by make test"]
fn containers_stay_connected_across_plugin_switchd_and_dockerd_restarts() {
    let mut rig = Rig::start();
    create_network(&rig, "steady", "10.35.0.0/24", &[]);
    run_sleeper(&rig, "alpha", "steady", &[]);
    run_sleeper(&rig, "beta", "steady", &[]);
    assert!(
        rig.ping("alpha", "beta", 5),
        "a reaches b before any restart"
    );

    // The plugin keeps nothing: after a restart, Docker's ids still find their network.
    rig.stop_plugin();
    rig.start_plugin();
    assert!(
        rig.ping("alpha", "beta", 5),
        "traffic after the plugin restarted"
    );
    run_sleeper(&rig, "gamma", "steady", &[]);
    assert!(
        rig.ping("gamma", "alpha", 5),
        "a container started after the plugin restart"
    );
    rig.docker_ok(&["rm", "-f", "gamma"]);
    assert_eq!(endpoints(&rig, "steady").len(), 2);

    // switchd restarts from its state: the containers' interfaces are still theirs.
    rig.stop_switchd();
    rig.start_switchd();
    assert!(
        rig.ping_eventually("alpha", "beta", 10),
        "traffic after switchd restarted; switchd log:\n{}",
        tail(&rig.switchd_log(), 30)
    );

    // dockerd with live restore: the containers keep running, and stay connected.
    let pid_before = rig.dockerd.container_pid("alpha");
    rig.dockerd.restart(true);
    assert_eq!(
        rig.dockerd.container_pid("alpha"),
        pid_before,
        "alpha kept running"
    );
    assert!(
        rig.ping("alpha", "beta", 5),
        "traffic after dockerd restarted"
    );
    assert!(
        rig.ping("beta", "alpha", 5),
        "by name too, after dockerd restarted"
    );
    // And Docker still drives the network through the plugin.
    rig.docker_ok(&["network", "disconnect", "steady", "beta"]);
    assert!(!rig.ping("alpha", "beta", 1), "beta disconnected");
    assert_eq!(endpoints(&rig, "steady").len(), 1);

    // Without live restore, dockerd stops its containers, and their endpoints go
    // through the plugin; started again, they are connected again.
    rig.dockerd.restart(false);
    assert_eq!(
        endpoints(&rig, "steady").len(),
        0,
        "dockerd's shutdown removed the endpoints"
    );
    rig.docker_ok(&["network", "connect", "steady", "beta"]);
    rig.docker_ok(&["start", "alpha", "beta"]);
    assert!(
        rig.ping("alpha", "beta", 5),
        "traffic once the containers started again"
    );
}

/// switchd's record of `container`'s endpoint on `network` (its port, address, ...).
fn endpoint_of(rig: &Rig, container: &str, network: &str) -> Value {
    let format = format!("{{{{(index .NetworkSettings.Networks {network:?}).EndpointID}}}}");
    let endpoint_id = rig.docker_ok(&["inspect", "--format", &format, container]);
    let endpoint_id = endpoint_id.trim();
    endpoints(rig, network)
        .into_iter()
        .find(|e| e["container_id"] == endpoint_id)
        .unwrap_or_else(|| panic!("switchd has no endpoint {endpoint_id} ({container})"))
}

/// Waits (at most 25 s: the plugin's 20 s of retries, and its start) until switchd
/// records `container`'s port in the container's sandbox, renamed by Docker: where a
/// switchd restart finds it again.
fn wait_until_recorded_in_its_sandbox(rig: &Rig, container: &str, network: &str) {
    let sandbox = rig.docker_ok(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        container,
    ]);
    let sandbox = sandbox.trim();
    let port = endpoint_of(rig, container, network)["port"].clone();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let ports = rig.swctl_json(&["port", "ls"]);
        let record = ports
            .as_array()
            .expect("a list of ports")
            .iter()
            .find(|p| p["id"] == port)
            .unwrap_or_else(|| panic!("no port {port} for {container}: {ports}"))
            .clone();
        if record["netns"] == sandbox && record["ifname"] == "eth0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{container}'s port is recorded as {} in {}, not as eth0 in its sandbox {sandbox}; plugin log:\n{}",
            record["ifname"],
            record["netns"],
            tail(&rig.plugin_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `nsenter --target PID --net ARGS...` (a namespace of dockerd's or a container's).
fn in_ns_of(pid: u32, args: &[&str]) {
    let pid = pid.to_string();
    let mut full = vec!["--target", pid.as_str(), "--net"];
    full.extend_from_slice(args);
    common::run_ok("nsenter", &full);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_plugin_restart_records_the_moves_its_previous_run_did_not() {
    let mut rig = Rig::start();
    create_network(&rig, "moving", "10.39.0.0/24", &[]);
    run_sleeper(&rig, "alpha", "moving", &[]);
    run_sleeper(&rig, "beta", "moving", &[]);
    wait_until_recorded_in_its_sandbox(&rig, "beta", "moving");

    // What a plugin stopped between Join and Docker's move leaves: switchd records the
    // TAP where Join made it, in the plugin's namespace (/proc/PID/ns/net; PID 1 is in
    // dockerd's namespace too), under Join's name, while the TAP is in the container.
    // Made here by hand: the TAP goes back to dockerd's namespace, switchd is told so,
    // and it returns into beta as Docker moves it (renamed eth0, address, route).
    let endpoint = endpoint_of(&rig, "beta", "moving");
    let port = endpoint["port"].to_string();
    let address = endpoint["address"]
        .as_str()
        .expect("an address")
        .to_string();
    let gateway = endpoint["gateway"].as_str().expect("a gateway").to_string();
    let join_name = format!(
        "sy{}",
        &endpoint["container_id"].as_str().expect("an endpoint id")[..11]
    );
    rig.stop_plugin();
    let beta = rig.dockerd.container_pid("beta");
    let dockerd = rig.dockerd.pid().to_string();
    in_ns_of(beta, &["ip", "link", "set", "eth0", "down"]);
    in_ns_of(beta, &["ip", "link", "set", "eth0", "name", &join_name]);
    in_ns_of(beta, &["ip", "link", "set", &join_name, "netns", &dockerd]);
    let recorded = switchyard_os::client::Client::connect(&rig.socket())
        .and_then(|mut client| {
            client.call::<Value>(&switchyard::control::Request::PortMoved {
                port: port.clone(),
                netns: "/proc/1/ns/net".into(),
            })
        })
        .expect("switchd records the TAP in dockerd's namespace");
    assert_eq!(recorded["ifname"], join_name.as_str(), "{recorded}");
    let beta_pid = beta.to_string();
    in_ns_of(
        rig.dockerd.pid(),
        &["ip", "link", "set", &join_name, "netns", &beta_pid],
    );
    in_ns_of(beta, &["ip", "link", "set", &join_name, "name", "eth0"]);
    in_ns_of(beta, &["ip", "addr", "add", &address, "dev", "eth0"]);
    in_ns_of(beta, &["ip", "link", "set", "eth0", "up"]);
    in_ns_of(beta, &["ip", "route", "add", "default", "via", &gateway]);
    assert!(
        rig.ping_eventually("alpha", "beta", 5),
        "beta is connected again (switchd kept the TAP's descriptor)"
    );

    // The next plugin finds the move that was never recorded and records it.
    rig.start_plugin();
    wait_until_recorded_in_its_sandbox(&rig, "beta", "moving");
    assert!(
        rig.plugin_log().contains("resuming"),
        "the plugin says what it resumed; log:\n{}",
        tail(&rig.plugin_log(), 20)
    );

    // And plugins stopped right after `docker run` returns, whenever their follow-up
    // was, leave nothing unrecorded either.
    let quick = ["quick0", "quick1", "quick2"];
    for name in quick {
        run_sleeper(&rig, name, "moving", &[]);
        rig.stop_plugin();
        rig.start_plugin();
        wait_until_recorded_in_its_sandbox(&rig, name, "moving");
    }

    // So a switchd restart reattaches every one of them.
    rig.stop_switchd();
    rig.start_switchd();
    for name in ["beta"].into_iter().chain(quick) {
        assert!(
            rig.ping_eventually("alpha", name, 10),
            "alpha reaches {name} after switchd restarted; switchd log:\n{}",
            tail(&rig.switchd_log(), 30)
        );
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn bad_input_and_a_missing_switchd_get_clear_errors() {
    let mut rig = Rig::start();
    create_network(&rig, "good", "10.36.0.0/24", &[]);
    let before = rig.swctl_json(&["network", "ls"]);
    let driver = rig.driver().to_string();
    let create = |rig: &Rig, extra: &[&str]| {
        let mut args = vec!["network", "create", "-d", &driver, "--ipam-driver", &driver];
        args.extend_from_slice(extra);
        docker_fails(rig, &args)
    };

    let err = create(
        &rig,
        &["--subnet", "10.37.0.0/24", "-o", "vni=99999999", "bad1"],
    );
    assert!(err.contains("vni") && err.contains("16777215"), "{err}");
    let err = create(
        &rig,
        &["--subnet", "10.37.0.0/24", "-o", "mtu=lots", "bad2"],
    );
    assert!(err.contains("mtu"), "{err}");
    let err = create(&rig, &["--subnet", "10.36.0.0/24", "bad3"]);
    assert!(err.contains("10.36.0.0/24"), "an overlapping subnet: {err}");
    assert_eq!(
        rig.swctl_json(&["network", "ls"]),
        before,
        "nothing changed in switchd"
    );
    let networks = rig.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !networks.contains("bad"),
        "Docker has none of them: {networks}"
    );

    // An address outside the pool.
    let image = rig.image();
    let err = docker_fails(
        &rig,
        &[
            "run",
            "-d",
            "--name",
            "stray",
            "--network",
            "good",
            "--ip",
            "10.99.0.5",
            image,
            "sleep",
            "600",
        ],
    );
    assert!(err.contains("10.99.0.5"), "{err}");
    assert_eq!(endpoints(&rig, "good").len(), 0, "no endpoint was made");
    let _ = rig.dockerd.docker(&["rm", "-f", "stray"]);

    // switchd not running: the plugin answers at once, naming switchd and what to start.
    rig.stop_switchd();
    let started = Instant::now();
    let err = create(&rig, &["--subnet", "10.38.0.0/24", "down"]);
    let took = started.elapsed();
    eprintln!("docker network create with switchd down failed after {took:?}");
    assert!(err.contains("switchd"), "{err}");
    assert!(err.contains("start"), "says what to start: {err}");
    let err = docker_fails(
        &rig,
        &[
            "run",
            "-d",
            "--name",
            "orphan",
            "--network",
            "good",
            image,
            "sleep",
            "600",
        ],
    );
    assert!(err.contains("switchd"), "{err}");
    let _ = rig.dockerd.docker(&["rm", "-f", "orphan"]);
    rig.start_switchd();
    assert_eq!(endpoints(&rig, "good").len(), 0, "nothing half made");
    run_sleeper(&rig, "fine", "good", &[]);
    assert_eq!(
        endpoints(&rig, "good").len(),
        1,
        "works again with switchd back"
    );
}

/// Two Docker hosts on an underlay with one etcd, a clustered switchd and the plugin on
/// each: `-o global=blue` on both makes one network of the cluster's, containers on the
/// two hosts ping each other with no peer configured, and removing one host's Docker
/// network leaves the cluster's network to the other.
#[test]
#[ignore = "needs root; run by make test"]
fn docker_networks_on_two_hosts_join_one_global_network() {
    let mut underlay = common::underlay::Underlay::new();
    let store_ns = underlay.plug("e", "192.0.2.10");
    let etcd = common::etcd::Etcd::single(&store_ns, "192.0.2.10");
    let rigs: Vec<Rig> = (1..=2)
        .map(|i| {
            Rig::start_with(|dockerd| {
                let vtep = format!("192.0.2.{i}");
                underlay.join(dockerd.netns(), &vtep);
                [
                    "--vtep",
                    &vtep,
                    "--cluster-store",
                    &etcd.url(),
                    "--node",
                    &format!("docker{i}"),
                ]
                .map(String::from)
                .to_vec()
            })
        })
        .collect();
    for rig in &rigs {
        let network = create_network(rig, "blue", "10.40.0.0/16", &["-o", "global=blue"]);
        assert_eq!(network["scope"], "global", "{network}");
    }
    let ids: Vec<Value> = rigs
        .iter()
        .map(|rig| switchd_network(rig, "blue")["id"].clone())
        .collect();
    assert_eq!(ids[0], ids[1], "one network of the cluster's");
    for (i, rig) in rigs.iter().enumerate() {
        run_sleeper(rig, &format!("c{i}"), "blue", &[]);
    }
    let addrs: Vec<String> = rigs
        .iter()
        .enumerate()
        .map(|(i, rig)| {
            let cidr = container_addr(rig, &format!("c{i}"), "eth0").expect("an address");
            cidr.split('/').next().unwrap().to_string()
        })
        .collect();
    assert_ne!(addrs[0], addrs[1], "the cluster's IPAM: {addrs:?}");
    assert!(
        rigs[0].ping_eventually("c0", &addrs[1], 10),
        "c0 on host 1 cannot reach c1 ({}) on host 2\nswitchd 1:\n{}",
        addrs[1],
        tail(&rigs[0].switchd_log(), 40)
    );
    assert!(rigs[1].ping("c1", &addrs[0], 5));
    let remote = rigs[1].swctl_json(&["network", "inspect", "blue"])["remote_endpoints"].clone();
    assert_eq!(remote[0]["ip"], addrs[0].as_str(), "{remote}");

    // Host 2 leaves: its container and its Docker network go; the network stays the
    // cluster's, and host 1's container keeps it.
    rigs[1].docker_ok(&["rm", "-f", "c1"]);
    rigs[1].docker_ok(&["network", "rm", "blue"]);
    let kept = switchd_network(&rigs[1], "blue");
    assert_eq!(kept["local_ids"], Value::Null, "the handle is gone: {kept}");
    assert!(
        rigs[0].ping("c0", "10.40.0.1", 5),
        "host 1 keeps its gateway"
    );
    drop(rigs);
    drop(etcd);
}
