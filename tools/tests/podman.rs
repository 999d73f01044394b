//! Root tests of switchyard under Debian's real Podman (4.3) with its CNI backend
//! (tests/common/podman.rs): a switchyard conflist in Podman's `network_config_dir`,
//! `switchyard-cni` in its `cni_plugin_dirs`, containers made with `podman run`.
//!
//! switchd opens the network namespace paths it is sent, so it runs where they are: in
//! Podman's namespaces (whose /run/netns is Podman's own), or, for the test that joins
//! Podman, Docker and nsutil on one network, with Podman beside dockerd
//! ([`Podman::beside`]) and switchd and switchyard-docker there too
//! (tests/common/switchyard_docker.rs).
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::engine::{self, COMMAND_LIMIT};
use common::podman::Podman;
use common::switchyard_docker::Rig;
use common::{bin, tail, unique};
use serde_json::{json, Value};

/// The conflist Podman reads for switchyard network `name`: CNI 1.0.0 (Podman 4.3's
/// libcni speaks no later version), the plugin pointed at `socket`.
fn conflist(name: &str, socket: &Path, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "switchyard-cni",
            "socket": socket,
            "subnet": subnet,
            "capabilities": {"portMappings": true, "aliases": true},
        }],
    })
}

/// Writes `conf` as `NAME.conflist` in Podman's network directory and puts the plugin in
/// its plugin directory (once).
fn install(podman: &Podman, conf: &Value) {
    let name = conf["name"].as_str().expect("the conflist has a name");
    std::fs::write(
        podman.cni_config_dir().join(format!("{name}.conflist")),
        serde_json::to_vec_pretty(conf).expect("JSON"),
    )
    .expect("write the conflist");
    let link = podman.cni_plugin_dir().join("switchyard-cni");
    if !link.exists() {
        std::os::unix::fs::symlink(bin("switchyard-cni"), link).expect("link the plugin");
    }
}

/// switchd in Podman's namespaces (where the containers' network namespace files are),
/// with its socket, state and log in Podman's directory, handed to Podman to stop after
/// its containers are gone.
struct Switchd {
    dir: PathBuf,
}

impl Switchd {
    fn start(podman: &Podman) -> Switchd {
        let dir = podman.dir().join("switchd");
        std::fs::create_dir_all(&dir).expect("switchd's directory");
        let log = std::fs::File::create(dir.join("switchd.log")).expect("switchd's log");
        let switchd = Switchd { dir };
        let child = podman
            .command(bin("switchd"))
            .arg("--socket")
            .arg(switchd.socket())
            .arg("--state-dir")
            .arg(switchd.dir.join("state"))
            .args(["--log", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start switchd");
        podman.keep(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(switchd.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "switchd did not come up; log:\n{}",
                switchd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        switchd
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("switchd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("switchd.log")).unwrap_or_default()
    }

    /// A tool (`swctl`, `nsutil`) against this switchd, in Podman's namespaces (where
    /// the namespace names nsutil takes are).
    fn tool(&self, podman: &Podman, tool: &str, args: &[&str]) -> Output {
        engine::output_within(
            podman
                .command(bin(tool))
                .arg("--socket")
                .arg(self.socket())
                .args(args),
            COMMAND_LIMIT,
        )
    }

    fn swctl_json(&self, podman: &Podman, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.tool(podman, "swctl", &full);
        assert!(
            out.status.success(),
            "swctl {full:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("swctl --json prints JSON")
    }
}

/// The output of a command that must have succeeded.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman ARGS` that must succeed, with the end of switchd's log in the panic message.
fn podman_ok(podman: &Podman, switchd_log: &dyn Fn() -> String, args: &[&str]) -> String {
    let out = podman.podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}\nswitchd log (end):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&switchd_log(), 30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Podman container's full id and its address (with prefix) and MAC on `network`, as
/// `podman inspect` has them.
fn podman_attachment(podman: &Podman, container: &str, network: &str) -> (String, String, String) {
    let format = format!(
        "{{{{.Id}}}} {{{{with index .NetworkSettings.Networks \"{network}\"}}}}\
         {{{{.IPAddress}}}}/{{{{.IPPrefixLen}}}} {{{{.MacAddress}}}}{{{{end}}}}"
    );
    let out = podman.podman_ok(&["inspect", "--format", &format, container]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "podman inspect {container}: {out}");
    (
        fields[0].to_string(),
        fields[1].to_string(),
        fields[2].to_string(),
    )
}

/// The endpoints of `network` in switchd's `network inspect`.
fn endpoints(inspect: &Value) -> Vec<Value> {
    inspect["endpoints"].as_array().cloned().unwrap_or_default()
}

/// The address without its prefix.
fn bare(address: &str) -> &str {
    address.split('/').next().unwrap_or(address)
}

/// Whether `container` (Podman's) gets an answer to one ping of `target` within 10 s.
fn podman_pings(podman: &Podman, container: &str, target: &str) -> bool {
    podman
        .podman(&[
            "exec", container, "ping", "-c", "1", "-W", "10", "-w", "10", target,
        ])
        .status
        .success()
}

/// Starts `sleep 600` in a detached Podman container `name` on `network`.
fn podman_run(podman: &Podman, switchd_log: &dyn Fn() -> String, name: &str, network: &str) {
    let image = podman.image();
    let args = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        image,
        "sleep",
        "600",
    ];
    podman_ok(podman, switchd_log, &args);
}

/// Drops the engines and insists nothing of them is left.
fn assert_gone(footprints: Vec<engine::Footprint>, engines: impl FnOnce()) {
    engines();
    assert_left_nothing(footprints);
}

/// Insists nothing is left of engines that are gone.
fn assert_left_nothing(footprints: Vec<engine::Footprint>) {
    for footprint in footprints {
        let left = footprint.leftovers();
        assert!(
            left.is_empty(),
            "left behind by the engine in {}:\n{}",
            footprint.dir.display(),
            left.join("\n")
        );
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn podman_containers_on_a_switchyard_network_get_switchds_addresses_and_reach_each_other() {
    let podman = Podman::start();
    let switchd = Switchd::start(&podman);
    let log = || switchd.log();
    let net = unique("pn");
    // switchd has no such network yet: the first ADD makes it from the conflist.
    install(&podman, &conflist(&net, &switchd.socket(), "10.91.0.0/24"));

    // Podman lists and inspects it as a network of the plugin's type.
    let listed = podman.podman_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    let want = format!("{net} switchyard-cni");
    assert!(
        listed.lines().any(|l| l == want),
        "podman network ls has no {want:?}:\n{listed}"
    );
    let inspected: Value =
        serde_json::from_str(&podman.podman_ok(&["network", "inspect", &net])).expect("JSON");
    assert_eq!(inspected[0]["name"], net.as_str(), "{inspected:#}");
    assert_eq!(inspected[0]["driver"], "switchyard-cni", "{inspected:#}");

    podman_run(&podman, &log, "a", &net);
    podman_run(&podman, &log, "b", &net);

    // The addresses are switchd's: each container's endpoint on the network has
    // Podman's container id, Podman's network namespace, the address and MAC Podman
    // reports, and the container's eth0 has that address.
    let network = switchd.swctl_json(&podman, &["network", "inspect", &net]);
    assert_eq!(network["subnet"], "10.91.0.0/24", "{network:#}");
    let found = endpoints(&network);
    assert_eq!(found.len(), 2, "{network:#}");
    let mut addresses = Vec::new();
    for container in ["a", "b"] {
        let (id, address, mac) = podman_attachment(&podman, container, &net);
        let endpoint = found
            .iter()
            .find(|e| e["container_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no endpoint for {container} ({id}):\n{network:#}"));
        assert_eq!(endpoint["address"], address.as_str(), "{endpoint:#}");
        assert_eq!(endpoint["mac"], mac.as_str(), "{endpoint:#}");
        assert_eq!(endpoint["ifname"], "eth0", "{endpoint:#}");
        let sandbox = podman.podman_ok(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.SandboxKey}}",
            container,
        ]);
        assert_eq!(endpoint["netns"], sandbox.trim(), "{endpoint:#}");
        let inside =
            podman.podman_ok(&["exec", container, "ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(
            inside.contains(&format!("inet {address} ")),
            "{container}'s eth0 has not {address}:\n{inside}"
        );
        let routes = podman.podman_ok(&["exec", container, "ip", "route"]);
        assert!(
            routes.contains("default via 10.91.0.1 dev eth0"),
            "{container}'s routes:\n{routes}"
        );
        addresses.push((endpoint["port"].clone(), address));
    }
    let (a_port, a_address) = addresses[0].clone();
    let (_, b_address) = addresses[1].clone();
    assert_ne!(a_address, b_address);

    assert!(
        podman_pings(&podman, "a", bare(&b_address)),
        "a cannot ping b"
    );
    assert!(
        podman_pings(&podman, "b", bare(&a_address)),
        "b cannot ping a"
    );
    assert!(
        podman_pings(&podman, "a", "10.91.0.1"),
        "a cannot ping the gateway"
    );

    // While a has its address, switchd gives it to nobody else.
    let other = unique("ns");
    let _resolver = ResolverFile(other.clone());
    ok(
        engine::output_within(
            podman.command("ip").args(["netns", "add", &other]),
            COMMAND_LIMIT,
        ),
        "ip netns add",
    );
    let ask = [
        "attach",
        &other,
        "--network",
        &net,
        "--ip",
        bare(&a_address),
    ];
    let taken = switchd.tool(&podman, "nsutil", &ask);
    assert!(
        !taken.status.success(),
        "switchd handed out {a_address}, which a holds"
    );

    // Podman passes -p and --network-alias through the capabilities.
    let image = podman.image();
    podman_ok(
        &podman,
        &log,
        &[
            "run",
            "-d",
            "--name",
            "c",
            "--network",
            &net,
            "-p",
            "8080:80",
            "--network-alias",
            "cache",
            image,
            "sleep",
            "600",
        ],
    );
    let c_id = podman.podman_ok(&["inspect", "--format", "{{.Id}}", "c"]);
    let network = switchd.swctl_json(&podman, &["network", "inspect", &net]);
    let c = endpoints(&network)
        .into_iter()
        .find(|e| e["container_id"] == c_id.trim())
        .unwrap_or_else(|| panic!("no endpoint for c: {network:#}"));
    assert_eq!(c["published"][0]["host_port"], 8080, "{c:#}");
    assert_eq!(c["published"][0]["container_port"], 80, "{c:#}");
    assert!(
        c["aliases"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == "cache")),
        "{c:#}"
    );
    // Podman sends the container's name as K8S_POD_NAME, and its short id as an alias.
    assert_eq!(c["name"], "c", "{c:#}");
    podman_ok(&podman, &log, &["rm", "-f", "-t", "0", "c"]);

    // podman rm takes the port away and releases the address; b stays.
    podman_ok(&podman, &log, &["rm", "-f", "-t", "0", "a"]);
    let network = switchd.swctl_json(&podman, &["network", "inspect", &net]);
    let left = endpoints(&network);
    assert_eq!(left.len(), 1, "{network:#}");
    assert_eq!(left[0]["address"], b_address.as_str(), "{network:#}");
    let ports = switchd.swctl_json(&podman, &["port", "ls"]);
    assert!(
        ports
            .as_array()
            .is_some_and(|all| !all.iter().any(|p| p["id"] == a_port)),
        "port {a_port} is still there: {ports:#}"
    );
    ok(
        switchd.tool(&podman, "nsutil", &ask),
        "nsutil attach --ip with a's old address",
    );
    assert!(
        podman_pings(&podman, "b", bare(&a_address)),
        "b cannot ping the new holder of a's address"
    );

    assert_gone(vec![podman.footprint()], move || drop(podman));
}

/// Runs a container `name` on `network` that must fail to start; returns Podman's
/// stderr. The container stays behind as created, not running, as Podman leaves it.
fn podman_run_fails(podman: &Podman, name: &str, network: &str) -> String {
    let image = podman.image();
    let out = podman.podman(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        image,
        "sleep",
        "600",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "podman run on {network} succeeded; stderr: {stderr}"
    );
    let running = podman.podman_ok(&["inspect", "--format", "{{.State.Running}}", name]);
    assert_eq!(running.trim(), "false", "{name} runs");
    stderr
}

#[test]
#[ignore = "needs root; run by make test"]
fn podman_run_fails_with_the_plugins_message_and_attaches_nothing() {
    let podman = Podman::start();
    let switchd = Switchd::start(&podman);

    // The conflist disagrees with the network switchd has.
    let net = unique("pn");
    let create = ["network", "create", &net, "--subnet", "10.92.0.0/24"];
    ok(
        switchd.tool(&podman, "swctl", &create),
        "swctl network create",
    );
    install(&podman, &conflist(&net, &switchd.socket(), "10.93.0.0/24"));
    let said = podman_run_fails(&podman, "x", &net);
    let want =
        format!("network {net} exists with subnet 10.92.0.0/24 (configuration: 10.93.0.0/24)");
    assert!(said.contains(&want), "podman run said:\n{said}");

    // The conflist points at a socket nobody listens on.
    let dead = unique("pd");
    let nowhere = podman.dir().join("nobody.sock");
    install(&podman, &conflist(&dead, &nowhere, "10.94.0.0/24"));
    let said = podman_run_fails(&podman, "y", &dead);
    let want = format!("switchd is not running at {}", nowhere.display());
    assert!(said.contains(&want), "podman run said:\n{said}");
    assert!(
        said.contains("set \"socket\" in the network configuration"),
        "podman run said:\n{said}"
    );

    // Nothing attached, no network made, the network as it was, no namespace left.
    let networks = switchd.swctl_json(&podman, &["network", "ls"]);
    let all = networks.as_array().expect("a list of networks");
    assert_eq!(all.len(), 1, "{networks:#}");
    assert_eq!(all[0]["name"], net.as_str(), "{networks:#}");
    assert_eq!(all[0]["subnet"], "10.92.0.0/24", "{networks:#}");
    assert!(endpoints(&all[0]).is_empty(), "{networks:#}");
    let ports = switchd.swctl_json(&podman, &["port", "ls"]);
    assert_eq!(ports, json!([]), "{ports:#}");
    let netns = ok(
        engine::output_within(podman.command("ls").arg("/run/netns"), COMMAND_LIMIT),
        "ls /run/netns",
    );
    assert_eq!(
        netns.trim(),
        "",
        "network namespaces left in Podman's /run/netns"
    );

    assert_gone(vec![podman.footprint()], move || drop(podman));
}

/// Waits (at most 30 s) until switchd has network `name`; returns it.
fn network_named(rig: &Rig, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = rig.tool("swctl", &["--json", "network", "inspect", name]);
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("swctl --json prints JSON");
        }
        assert!(
            Instant::now() < deadline,
            "switchd has no network {name} after 30 s: {}\nplugin log (end):\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&rig.plugin_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One switchyard network, three ways onto it: `docker run` through switchyard-docker,
/// `podman run` through switchyard-cni, and `nsutil attach`. Podman runs beside dockerd,
/// so that the one switchd opens the network namespaces of both.
#[test]
#[ignore = "needs root; run by make test"]
fn podman_docker_and_nsutil_attachments_on_one_network_reach_each_other() {
    let rig = Rig::start();
    let podman = Podman::beside(&rig.dockerd);
    let log = || rig.switchd_log();
    let net = unique("tn");
    let subnet = "10.95.0.0/24";
    let driver = rig.driver().to_string();
    rig.docker_ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--ipam-driver",
        &driver,
        "--subnet",
        subnet,
        &net,
    ]);
    // The plugin names switchd's network after Docker's once Docker's API has it; the
    // conflist names that network.
    let network = network_named(&rig, &net);
    assert_eq!(network["subnet"], subnet, "{network:#}");
    install(&podman, &conflist(&net, &rig.socket(), subnet));

    podman_run(&podman, &log, "p1", &net);
    podman_run(&podman, &log, "p2", &net);
    let image = rig.image();
    rig.docker_ok(&[
        "run",
        "-d",
        "--name",
        "d1",
        "--network",
        &net,
        image,
        "sleep",
        "600",
    ]);
    let ns = unique("ns");
    let _resolver = ResolverFile(ns.clone());
    ok(
        engine::output_within(rig.command("ip").args(["netns", "add", &ns]), COMMAND_LIMIT),
        "ip netns add",
    );
    ok(
        rig.tool("nsutil", &["attach", &ns, "--network", &net]),
        "nsutil attach",
    );

    // Four endpoints on the one network, with the addresses each front door reports.
    let network = rig.swctl_json(&["network", "inspect", &net]);
    let found = endpoints(&network);
    assert_eq!(found.len(), 4, "{network:#}");
    let switchd_has = |address: &str| found.iter().any(|e| e["address"] == address);
    let (_, p1, _) = podman_attachment(&podman, "p1", &net);
    let (_, p2, _) = podman_attachment(&podman, "p2", &net);
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{net}\"}}}}\
         {{{{.IPAddress}}}}/{{{{.IPPrefixLen}}}}{{{{end}}}}"
    );
    let d1 = rig
        .docker_ok(&["inspect", "--format", &format, "d1"])
        .trim()
        .to_string();
    let ns_path = format!("/run/netns/{ns}");
    let by_nsutil = found
        .iter()
        .find(|e| e["netns"] == ns_path.as_str())
        .unwrap_or_else(|| panic!("no endpoint in {ns_path}:\n{network:#}"));
    let n1 = by_nsutil["address"]
        .as_str()
        .expect("an address")
        .to_string();
    for address in [&p1, &p2, &d1] {
        assert!(
            switchd_has(address),
            "switchd has no {address}:\n{network:#}"
        );
    }
    let mut distinct = vec![&p1, &p2, &d1, &n1];
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{p1} {p2} {d1} {n1}");

    // Everyone reaches everyone.
    let pings = |from: &str, target: &str| -> bool {
        match from {
            "d1" => rig.ping("d1", target, 10),
            "ns" => engine::output_within(
                rig.command("ip")
                    .args(["netns", "exec", &ns])
                    .args(["ping", "-c", "1", "-W", "10", "-w", "10", target]),
                COMMAND_LIMIT,
            )
            .status
            .success(),
            podman_container => podman_pings(&podman, podman_container, target),
        }
    };
    let members = [("p1", &p1), ("p2", &p2), ("d1", &d1), ("ns", &n1)];
    for (from, _) in members {
        for (to, address) in members {
            if from != to {
                assert!(
                    pings(from, bare(address)),
                    "{from} cannot ping {to} ({address}); switchd log (end):\n{}",
                    tail(&rig.switchd_log(), 30)
                );
            }
        }
    }

    // A Podman container goes; the others stay, and still reach each other.
    podman_ok(&podman, &log, &["rm", "-f", "-t", "0", "p1"]);
    let network = rig.swctl_json(&["network", "inspect", &net]);
    let left: Vec<Value> = endpoints(&network)
        .iter()
        .map(|e| e["address"].clone())
        .collect();
    assert_eq!(left.len(), 3, "{network:#}");
    assert!(!left.contains(&json!(p1)), "{network:#}");
    assert!(pings("d1", bare(&p2)), "d1 cannot ping p2 after p1 went");

    // The namespace's attachment goes by hand, so that Docker can remove its network.
    ok(rig.tool("nsutil", &["detach", &ns]), "nsutil detach");

    let footprints = vec![podman.footprint(), rig.dockerd.footprint()];
    drop(podman);
    drop(rig);
    assert_left_nothing(footprints);
}

/// The resolver file `nsutil attach` writes for a namespace named in an engine's holder:
/// the namespace goes with the holder, but /etc/netns is the machine's. Removed on drop.
struct ResolverFile(String);

impl Drop for ResolverFile {
    fn drop(&mut self) {
        let _ = nsutil::resolv::remove(Path::new(nsutil::resolv::NETNS_ETC), &self.0);
    }
}
