//! Root integration tests of the cluster store: switchds on several "host" namespaces
//! share global networks through etcd — one address space, peers found by themselves.
//!
//! The underlay is a namespace of its own with a kernel bridge in it (192.0.2.0/24, inside
//! the test's namespaces only); each host namespace (192.0.2.1, .2, .3) and each etcd
//! member's namespace (192.0.2.10, .11, .12) has a veth to it. Each test runs its own etcd.
//!
//! Marked `#[ignore]`; `make test` runs them with `--include-ignored`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::etcd::{self, Etcd};
use common::underlay::Underlay;
use common::{stderr, Netns, Switchd};
use serde_json::Value;

const SUBNET: &str = "10.40.0.0/16";
const NETWORK: &str = "g";
/// Longest a request may take before the test calls it hung.
const HANG: Duration = Duration::from_secs(30);

/// Hosts with a switchd each, all pointed at one etcd. Fields drop in order: the
/// switchds first, then etcd, then the namespaces.
struct Cluster {
    switchds: Vec<Switchd>,
    etcd: Etcd,
    hosts: Vec<Netns>,
    /// etcd's namespaces and the underlay: kept for their lifetime only.
    _stores: Vec<Netns>,
    _underlay: Underlay,
}

impl Cluster {
    /// `hosts` hosts at 192.0.2.1.. named h1.., and an etcd member at each of `stores`.
    fn new(hosts: usize, stores: &[&str]) -> Cluster {
        let mut underlay = Underlay::new();
        let store_ns: Vec<Netns> = stores.iter().map(|a| underlay.plug("e", a)).collect();
        let members: Vec<(&Netns, &str)> = store_ns.iter().zip(stores.iter().copied()).collect();
        let etcd = Etcd::cluster(&members);
        let host_ns: Vec<Netns> = (1..=hosts)
            .map(|i| underlay.plug("h", &format!("192.0.2.{i}")))
            .collect();
        let mut cluster = Cluster {
            switchds: Vec::new(),
            etcd,
            hosts: host_ns,
            _stores: store_ns,
            _underlay: underlay,
        };
        for i in 0..hosts {
            let args = cluster.switchd_args(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let switchd = Switchd::start_in(&cluster.hosts[i], &args);
            cluster.switchds.push(switchd);
        }
        cluster
    }

    fn switchd_args(&self, i: usize) -> Vec<String> {
        [
            "--vtep",
            &vtep(i),
            "--cluster-store",
            &self.etcd.url(),
            "--cluster-advertise",
            &vtep(i),
            "--node",
            &node(i),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Everything worth seeing when a check fails: what etcd holds, each switchd's log.
    fn dump(&self) -> String {
        let mut text = String::from("etcd holds:\n");
        let out = self.etcd.ctl(&["get", "", "--prefix"]);
        if out.status.success() {
            text += &String::from_utf8_lossy(&out.stdout);
        } else {
            text += &format!("(etcdctl failed: {})\n", stderr(&out));
        }
        for (i, s) in self.switchds.iter().enumerate() {
            text += &format!("--- {} log:\n{}\n", node(i), own_log(s));
        }
        text
    }

    fn swctl_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.switchds[i].swctl(args);
        assert!(
            out.status.success(),
            "swctl {args:?} on {} failed: {}\n{}",
            node(i),
            stderr(&out),
            self.dump()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `swctl --json ARGS` on host `i`; `None` when it fails.
    fn json(&self, i: usize, args: &[&str]) -> Option<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.switchds[i].swctl(&full);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Creates the global network on host 0 and waits until every host knows it.
    fn create_network(&self) {
        self.swctl_ok(
            0,
            &[
                "network", "create", NETWORK, "--scope", "global", "--subnet", SUBNET,
            ],
        );
        for i in 0..self.switchds.len() {
            let info = self
                .wait(&format!("{} to know {NETWORK}", node(i)), || {
                    self.json(i, &["network", "inspect", NETWORK])
                })
                .0;
            assert_eq!(info["scope"], "global", "on {}: {info}", node(i));
        }
    }

    /// [`poll`] for `HANG`, failing with what the cluster looks like.
    fn wait<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> (T, Duration) {
        poll(HANG, check)
            .unwrap_or_else(|| panic!("waited {HANG:?} for {what} in vain\n{}", self.dump()))
    }

    /// Attaches `ns` to the global network on host `i`; the address, or what went wrong.
    fn try_attach(&self, i: usize, ns: &Netns) -> Result<String, String> {
        let out = tool_within(
            &self.switchds[i],
            "nsutil",
            &["attach", &ns.name, "--network", NETWORK, "--json"],
            HANG,
        )
        .0;
        if !out.status.success() {
            return Err(stderr(&out));
        }
        let attachment: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("nsutil --json printed no JSON: {e}"))?;
        let cidr = attachment["addresses"][0]
            .as_str()
            .ok_or_else(|| format!("no address assigned: {attachment}"))?;
        Ok(cidr.split('/').next().unwrap().to_string())
    }

    fn attach(&self, i: usize, ns: &Netns) -> String {
        self.try_attach(i, ns).unwrap_or_else(|err| {
            panic!(
                "attach {} on {} failed: {err}\n{}",
                ns.name,
                node(i),
                self.dump()
            )
        })
    }

    /// A new container namespace on host `i`, and its address.
    fn container(&self, i: usize) -> (Netns, String) {
        let ns = Netns::new("c");
        let addr = self.attach(i, &ns);
        (ns, addr)
    }

    /// The VTEP addresses (without port) host `i` has as peers, sorted.
    fn peers(&self, i: usize) -> Option<Vec<String>> {
        let peers = self.json(i, &["vxlan", "peer", "ls"])?;
        let mut addrs: Vec<String> = peers
            .as_array()?
            .iter()
            .filter_map(|p| p["addr"].as_str().map(|a| ip_of(a).to_string()))
            .collect();
        addrs.sort();
        Some(addrs)
    }

    /// Waits until host `i`'s peers are exactly the VTEPs of `hosts`.
    fn wait_for_peers(&self, i: usize, hosts: &[usize]) -> Duration {
        let mut want: Vec<String> = hosts.iter().map(|&h| vtep(h)).collect();
        want.sort();
        let mut last = None;
        let done = poll(HANG, || {
            last = self.peers(i);
            (last.as_ref() == Some(&want)).then_some(())
        });
        match done {
            Some((_, took)) => took,
            None => panic!(
                "{}'s peers: {last:?} after {HANG:?}, not {want:?}\n{}",
                node(i),
                self.dump()
            ),
        }
    }

    /// Host `i`'s `node ls`: name → (vtep without port, local, endpoints).
    fn nodes(&self, i: usize) -> Option<BTreeMap<String, (String, bool, u64)>> {
        let nodes = self.json(i, &["node", "ls"])?;
        nodes
            .as_array()?
            .iter()
            .map(|n| {
                Some((
                    n["name"].as_str()?.to_string(),
                    (
                        ip_of(n["vtep"].as_str()?).to_string(),
                        n["local"].as_bool()?,
                        n["endpoints"].as_u64()?,
                    ),
                ))
            })
            .collect()
    }

    /// What host `i`'s `node ls` should say when each host in `hosts` has `endpoints`.
    fn expected_nodes(
        &self,
        i: usize,
        hosts: &[usize],
        endpoints: &[u64],
    ) -> BTreeMap<String, (String, bool, u64)> {
        hosts
            .iter()
            .zip(endpoints)
            .map(|(&h, &e)| (node(h), (vtep(h), h == i, e)))
            .collect()
    }

    /// Waits until host `i`'s `node ls` is `want`.
    fn wait_for_nodes(&self, i: usize, want: &BTreeMap<String, (String, bool, u64)>) -> Duration {
        let mut last = None;
        let done = poll(HANG, || {
            last = self.nodes(i);
            (last.as_ref() == Some(want)).then_some(())
        });
        match done {
            Some((_, took)) => took,
            None => panic!(
                "{}'s node ls: {last:?} after {HANG:?}, not {want:?}\n{}",
                node(i),
                self.dump()
            ),
        }
    }

    fn status(&self, i: usize) -> Option<Value> {
        self.json(i, &["cluster", "status"])
    }

    fn wait_connected(&self, i: usize) -> Value {
        self.wait(&format!("{} to be connected", node(i)), || {
            self.status(i).filter(|s| s["connected"] == true)
        })
        .0
    }

    fn ping(&self, from: &Netns, to: &str) {
        assert!(
            from.ping(to, 5),
            "{} cannot ping {to}\n{}",
            from.name,
            self.dump()
        );
    }
}

/// The tail of switchd's own lines, without the control requests (one line each) and
/// the libraries' debug output.
fn own_log(switchd: &Switchd) -> String {
    let log = switchd.log();
    let log: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" switchd::") && !l.contains(" switchd::ctl: "))
        .collect();
    common::tail(&log.join("\n"), 40)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `swctl --json cluster status` against `switchd`; `None` when it fails.
fn cluster_status(switchd: &Switchd) -> Option<Value> {
    let out = switchd.swctl(&["--json", "cluster", "status"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn vtep(i: usize) -> String {
    format!("192.0.2.{}", i + 1)
}

fn node(i: usize) -> String {
    format!("h{}", i + 1)
}

/// `192.0.2.2` from `192.0.2.2:4789` or `192.0.2.2`.
fn ip_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u16>().is_ok() && !ip.contains(':') => ip,
        _ => addr,
    }
}

/// Calls `check` every 100 ms until it gives something: that and how long it took; `None`
/// when `within` ran out first.
fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `TOOL --socket S ARGS` against `switchd`, killed (and the test failed) after `limit`.
/// Returns its output and how long it took.
fn tool_within(
    switchd: &Switchd,
    tool: &str,
    args: &[&str],
    limit: Duration,
) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(common::bin(tool))
        .arg("--socket")
        .arg(&switchd.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    while child.try_wait().expect("wait for the tool").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the tool's output");
            panic!(
                "{tool} {args:?} hung for {limit:?}; stderr: {}\nswitchd log:\n{}",
                stderr(&out),
                common::tail(&switchd.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("the tool's output");
    (out, start.elapsed())
}

fn kill9(switchd: &Switchd) {
    let pid = switchd.pid().expect("switchd is running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL switchd");
}

/// The harness itself: a single member serves puts and gets; a three-member cluster
/// keeps serving on two members after one stops, and takes the stopped one back.
#[test]
#[ignore = "needs root; run by make test"]
fn etcd_harness_single_and_cluster_work() {
    common::require_root();
    let mut underlay = Underlay::new();

    let e0 = underlay.plug("e", "192.0.2.10");
    let data_dir;
    {
        let mut single = Etcd::single(&e0, "192.0.2.10");
        assert_eq!(single.endpoints(), "192.0.2.10:2379");
        assert_eq!(single.url(), "etcd://192.0.2.10:2379");
        // Keys and values of every base64 padding length.
        for (k, v) in [
            ("/t/a", "1"),
            ("/t/bb", "22"),
            ("/t/ccc", "333"),
            ("/u", "x y"),
        ] {
            single.ctl_ok(&["put", k, v]);
        }
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            single.get_prefix("/t/"),
            pairs(&[("/t/a", "1"), ("/t/bb", "22"), ("/t/ccc", "333")])
        );
        assert_eq!(single.get_prefix("").len(), 4);
        assert!(single.get_prefix("/none/").is_empty());
        let revision = single.compact_now();
        assert!(revision >= 5, "{revision}");
        assert_eq!(single.compact_now(), revision, "compacting twice is fine");
        let out = single.ctl(&["get", "/t/a", "--rev", "2"]);
        assert!(
            !out.status.success(),
            "history before {revision} is compacted"
        );

        // It listens on its own address only.
        let listening = e0.exec_ok(&["ss", "-Hltn"]);
        for line in listening.lines() {
            assert!(line.contains("192.0.2.10:"), "listens elsewhere: {line}");
        }

        // Stopped, it refuses; started again on the same data, it has the keys.
        single.stop_member(0);
        assert!(!single.is_running(0));
        let out = etcd::ctl_at(&e0, "192.0.2.10:2379", &["get", "/u"]);
        assert!(!out.status.success(), "a stopped etcd answered");
        single.start_member(0);
        assert_eq!(single.get_prefix("/u"), pairs(&[("/u", "x y")]));
        // A crash loses nothing written either.
        single.ctl_ok(&["put", "/after", "crash"]);
        single.kill_member(0);
        single.start_member(0);
        assert_eq!(single.get_prefix("/after"), pairs(&[("/after", "crash")]));
        assert!(
            single.log(0).contains("192.0.2.10:2379"),
            "{}",
            single.log(0)
        );
        data_dir = single.dir().to_path_buf();
        assert!(data_dir.join("m0/data").exists());
    }
    assert!(!data_dir.exists(), "the data directory is removed on drop");

    let addrs = ["192.0.2.11", "192.0.2.12", "192.0.2.13"];
    let e: Vec<Netns> = addrs.iter().map(|a| underlay.plug("e", a)).collect();
    let mut cluster = Etcd::cluster(&[(&e[0], addrs[0]), (&e[1], addrs[1]), (&e[2], addrs[2])]);
    assert_eq!(
        cluster.endpoints(),
        "192.0.2.11:2379,192.0.2.12:2379,192.0.2.13:2379"
    );
    assert_eq!(
        cluster.url(),
        "etcd://192.0.2.11:2379,192.0.2.12:2379,192.0.2.13:2379"
    );
    let members = cluster.ctl_ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    cluster.ctl_ok(&["put", "/k", "v1"]);
    let leader = cluster.leader().expect("a leader");
    println!("leader: member {leader}");
    // Stop the leader: the other two elect another and keep serving, each of them.
    cluster.stop_member(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for (n, &i) in survivors.iter().enumerate() {
        let endpoint = format!("{}:2379", cluster.addr(i));
        let value = format!("v{}", n + 2);
        // The first put may wait for the election.
        let (_, took) = poll(Duration::from_secs(20), || {
            etcd::ctl_at(&e[i], &endpoint, &["put", "/k", &value])
                .status
                .success()
                .then_some(())
        })
        .unwrap_or_else(|| panic!("no put via {endpoint}; log:\n{}", cluster.log(i)));
        println!("put via {endpoint} took {took:?}");
        let get = etcd::ctl_at(&e[i], &endpoint, &["get", "/k", "--print-value-only"]);
        assert!(get.status.success(), "{}", stderr(&get));
        assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), value);
    }
    assert_eq!(cluster.get_prefix("/k"), vec![("/k".into(), "v3".into())]);
    let new_leader = cluster.leader();
    assert!(
        new_leader.is_some() && new_leader != Some(leader),
        "{new_leader:?}"
    );
    cluster.start_member(leader);
    let endpoint = format!("{}:2379", cluster.addr(leader));
    let back = etcd::ctl_at(&e[leader], &endpoint, &["get", "/k", "--print-value-only"]);
    assert!(back.status.success(), "{}", stderr(&back));
    assert_eq!(
        String::from_utf8_lossy(&back.stdout).trim(),
        "v3",
        "the restarted member caught up"
    );
    // Two of three, whichever: still a quorum. A write that a follower forwards to a
    // leader just killed is lost and times out (5 s): the next one goes through.
    cluster.kill_member(0);
    let (_, took) = poll(Duration::from_secs(20), || {
        cluster
            .ctl(&["put", "/k", "v4"])
            .status
            .success()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no put after a kill; log:\n{}", cluster.log(1)));
    println!("put after killing member 0 took {took:?}");
    assert_eq!(cluster.get_prefix("/k"), vec![("/k".into(), "v4".into())]);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_global_network_spans_three_hosts() {
    common::require_root();
    let cl = Cluster::new(3, &["192.0.2.10"]);
    cl.create_network();
    let containers: Vec<(Netns, String)> = (0..3).map(|i| cl.container(i)).collect();
    let addrs: BTreeSet<&str> = containers.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        addrs.len(),
        3,
        "addresses are cluster-wide unique: {addrs:?}"
    );

    // No `vxlan peer add`: each host found the other two.
    for i in 0..3 {
        let others: Vec<usize> = (0..3).filter(|&h| h != i).collect();
        let took = cl.wait_for_peers(i, &others);
        println!("{}: peers complete after {took:?}", node(i));
    }
    for (i, (from, _)) in containers.iter().enumerate() {
        for (j, (_, to)) in containers.iter().enumerate() {
            if i != j {
                cl.ping(from, to);
            }
        }
    }

    for i in 0..3 {
        let want = cl.expected_nodes(i, &[0, 1, 2], &[1, 1, 1]);
        cl.wait_for_nodes(i, &want);
        let status = cl.wait_connected(i);
        assert_eq!(status["node"], node(i).as_str(), "{status}");
        assert_eq!(status["nodes"], 3, "{status}");
        assert!(
            status["store"]
                .as_str()
                .is_some_and(|s| s.contains("192.0.2.10:2379")),
            "{status}"
        );
        assert!(
            status["revision"].as_u64().is_some_and(|r| r > 0),
            "{status}"
        );
        let networks = cl.json(i, &["network", "ls"]).expect("network ls");
        let global = networks
            .as_array()
            .expect("network ls --json is an array")
            .iter()
            .find(|n| n["name"] == NETWORK)
            .unwrap_or_else(|| panic!("{} does not list {NETWORK}: {networks}", node(i)));
        assert_eq!(global["scope"], "global", "{global}");
    }
}

#[test]
#[ignore = "needs root; run by make test"]
fn parallel_attaches_get_distinct_addresses() {
    common::require_root();
    const PER_HOST: usize = 20;
    let cl = Cluster::new(3, &["192.0.2.10"]);
    cl.create_network();
    let namespaces: Vec<Netns> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3 * PER_HOST)
            .map(|_| s.spawn(|| Netns::new("c")))
            .collect();
        // A panic here drops the namespaces the other threads made.
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = Instant::now();
    let results: Vec<(usize, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(k, ns)| {
                let cl = &cl;
                s.spawn(move || (k % 3, cl.try_attach(k % 3, ns)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!(
        "{} attaches in parallel took {:?}",
        results.len(),
        start.elapsed()
    );
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("{}: {e}", node(*i))))
        .collect();
    assert!(
        failures.is_empty(),
        "{} attaches failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cl.dump()
    );
    let subnet: ipnet::Ipv4Net = SUBNET.parse().unwrap();
    let mut seen: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (i, r) in &results {
        let addr: Ipv4Addr = r.as_ref().unwrap().parse().expect("an IPv4 address");
        assert!(
            subnet.contains(&addr) && addr != subnet.network() && addr != subnet.broadcast(),
            "{addr} (from {}) is not a host address of {subnet}",
            node(*i)
        );
        if let Some(other) = seen.insert(addr, *i) {
            panic!(
                "{addr} given twice: by {} and {}\n{}",
                node(other),
                node(*i),
                cl.dump()
            );
        }
    }
    assert_eq!(seen.len(), 3 * PER_HOST);

    let per_host = PER_HOST as u64;
    let want = cl.expected_nodes(0, &[0, 1, 2], &[per_host; 3]);
    cl.wait_for_nodes(0, &want);
    // And they are real: one across each pair of hosts.
    cl.wait_for_peers(0, &[1, 2]);
    let addr = |k: usize| results[k].1.as_ref().unwrap().clone();
    cl.ping(&namespaces[0], &addr(1));
    cl.ping(&namespaces[1], &addr(2));
    cl.ping(&namespaces[2], &addr(0));
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_killed_node_leaves_and_rejoins() {
    common::require_root();
    let mut cl = Cluster::new(3, &["192.0.2.10"]);
    cl.create_network();
    let containers: Vec<(Netns, String)> = (0..3).map(|i| cl.container(i)).collect();
    for i in 0..3 {
        let others: Vec<usize> = (0..3).filter(|&h| h != i).collect();
        cl.wait_for_peers(i, &others);
    }
    cl.ping(&containers[0].0, &containers[2].1);
    let before = cl.expected_nodes(0, &[0, 1, 2], &[1, 1, 1]);
    cl.wait_for_nodes(0, &before);

    // A crash: no goodbye, the lease (10 s) runs out.
    kill9(&cl.switchds[2]);
    let start = Instant::now();
    let gone = vtep(2);
    let mut left_peers = [None, None];
    let mut left_nodes = [None, None];
    while left_peers.iter().chain(&left_nodes).any(Option::is_none) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "h3 still there after 30 s: peers {:?} / {:?}, nodes {:?} / {:?}\n{}",
            cl.peers(0),
            cl.peers(1),
            cl.nodes(0),
            cl.nodes(1),
            cl.dump()
        );
        for i in 0..2 {
            if left_peers[i].is_none() && cl.peers(i).is_some_and(|p| !p.contains(&gone)) {
                left_peers[i] = Some(start.elapsed());
            }
            if left_nodes[i].is_none()
                && cl
                    .nodes(i)
                    .is_some_and(|n| !n.contains_key(&node(2)) && n.len() == 2)
            {
                left_nodes[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "h3 left h1's and h2's peers after {left_peers:?}, their node ls after {left_nodes:?}"
    );

    // Back on the same state: its container is there again, once.
    cl.switchds[2].crash_and_restart();
    let start = Instant::now();
    for i in 0..3 {
        let want = cl.expected_nodes(i, &[0, 1, 2], &[1, 1, 1]);
        cl.wait_for_nodes(i, &want);
        let others: Vec<usize> = (0..3).filter(|&h| h != i).collect();
        cl.wait_for_peers(i, &others);
    }
    println!("h3 rejoined everywhere after {:?}", start.elapsed());
    cl.ping(&containers[0].0, &containers[2].1);
    cl.ping(&containers[2].0, &containers[1].1);
    let (_c4, a4) = cl.container(1);
    cl.ping(&containers[2].0, &a4);
}

#[test]
#[ignore = "needs root; run by make test"]
fn the_store_going_away_keeps_traffic_and_fails_fast() {
    common::require_root();
    let mut cl = Cluster::new(2, &["192.0.2.10"]);
    cl.create_network();
    let (c1, a1) = cl.container(0);
    let (c2, a2) = cl.container(1);
    cl.wait_for_peers(0, &[1]);
    cl.wait_for_peers(1, &[0]);
    cl.ping(&c1, &a2);

    cl.etcd.stop_member(0);
    assert!(c1.ping(&a2, 5), "traffic stopped with the store");

    let c3 = Netns::new("c");
    for (what, tool, args) in [
        (
            "attach",
            "nsutil",
            vec!["attach", c3.name.as_str(), "--network", NETWORK, "--json"],
        ),
        (
            "network create",
            "swctl",
            vec![
                "network",
                "create",
                "g2",
                "--scope",
                "global",
                "--subnet",
                "10.41.0.0/16",
            ],
        ),
    ] {
        let (out, took) = tool_within(&cl.switchds[0], tool, &args, HANG);
        println!("{what} with the store down failed after {took:?}");
        let said = stderr(&out);
        assert!(!out.status.success(), "{what} worked without the store");
        assert!(
            said.contains("cluster store unreachable"),
            "{what}: {said:?}"
        );
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
    }
    for i in 0..2 {
        println!("{} with the store down: {:?}", node(i), cl.status(i));
    }
    assert!(c1.ping(&a2, 5), "traffic stopped with the store");
    assert!(c2.ping(&a1, 5), "traffic stopped with the store");

    cl.etcd.start_member(0);
    let mut last = None;
    let (a3, took) = poll(HANG, || {
        let tried = cl.try_attach(0, &c3);
        let addr = tried.as_ref().ok().cloned();
        last = Some(tried);
        addr
    })
    .unwrap_or_else(|| panic!("no attach since etcd came back: {last:?}\n{}", cl.dump()));
    println!("attach works again {took:?} after etcd came back");
    for i in 0..2 {
        let status = cl.wait_connected(i);
        println!("{}: {status}", node(i));
    }
    cl.ping(&c3, &a2);
    assert_ne!(a3, a1);
    assert_ne!(a3, a2);
}

#[test]
#[ignore = "needs root; run by make test"]
fn a_three_member_etcd_cluster_losing_one_keeps_serving() {
    common::require_root();
    let mut cl = Cluster::new(3, &["192.0.2.10", "192.0.2.11", "192.0.2.12"]);
    assert!(
        cl.switchd_args(0)
            .iter()
            .any(|a| a == "etcd://192.0.2.10:2379,192.0.2.11:2379,192.0.2.12:2379"),
        "{:?}",
        cl.switchd_args(0)
    );
    cl.create_network();
    let (c1, a1) = cl.container(0);
    let (c2, a2) = cl.container(1);
    cl.wait_for_peers(0, &[1, 2]);
    cl.ping(&c1, &a2);

    println!(
        "etcd leader: member {:?}; stopping member 0",
        cl.etcd.leader()
    );
    cl.etcd.stop_member(0);
    let stopped = Instant::now();
    // Every host can still attach; each new container reaches the old ones.
    for i in [2, 0, 1] {
        let ns = Netns::new("c");
        let mut last = None;
        let (addr, took) = poll(HANG, || {
            let tried = cl.try_attach(i, &ns);
            let addr = tried.as_ref().ok().cloned();
            last = Some(tried);
            addr
        })
        .unwrap_or_else(|| {
            panic!(
                "no attach on {} with a member down: {last:?}\n{}",
                node(i),
                cl.dump()
            )
        });
        println!(
            "{}: attach with a member down took {took:?} (since the stop: {:?})",
            node(i),
            stopped.elapsed()
        );
        cl.ping(&ns, &a1);
        cl.ping(&ns, &a2);
        cl.ping(&c1, &addr);
    }
    cl.ping(&c2, &a1);
    for i in 0..3 {
        cl.wait_connected(i);
    }
}

/// A CA, an etcd server certificate naming `server_ip` (also good for clients, as etcd
/// wants of it) and a client certificate, made with the openssl CLI (P-256 keys, valid
/// two days) in a directory of the test's, removed on drop.
struct Certs {
    dir: PathBuf,
    files: etcd::TlsFiles,
}

impl Certs {
    fn new(server_ip: &str) -> Certs {
        let dir = std::env::temp_dir().join(common::unique("pki"));
        std::fs::create_dir_all(&dir).expect("the certificates' directory");
        let certs = Certs {
            files: etcd::TlsFiles {
                ca: dir.join("ca.pem"),
                server_cert: dir.join("server.pem"),
                server_key: dir.join("server.key"),
                client_cert: dir.join("client.pem"),
                client_key: dir.join("client.key"),
            },
            dir,
        };
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&certs.dir)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                stderr(&out)
            );
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
        openssl(
            &[
                &["req", "-x509"][..],
                &new_key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-days", "2", "-subj", "/CN=test-ca"],
            ]
            .concat(),
        );
        for (name, subject, usage) in [
            (
                "server",
                "/CN=etcd",
                format!("subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth,clientAuth\n"),
            ),
            (
                "client",
                "/CN=switchd",
                "extendedKeyUsage=clientAuth\n".to_string(),
            ),
        ] {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(certs.dir.join(&ext), usage).expect("an extensions file");
            openssl(
                &[
                    &["req"][..],
                    &new_key,
                    &["-keyout", &key, "-out", &csr, "-subj", subject],
                ]
                .concat(),
            );
            openssl(
                &[
                    &["x509", "-req", "-in", &csr][..],
                    &ca,
                    &["-out", &pem, "-days", "2", "-extfile", &ext],
                ]
                .concat(),
            );
        }
        certs
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// TLS to the store, client certificates required: a switchd with one connects and
/// registers; one with only the CA never connects and says why; a certificate without
/// its key (or a key without its certificate) is refused at start.
#[test]
#[ignore = "needs root; run by make test"]
fn the_store_over_tls_needs_the_client_certificate() {
    common::require_root();
    const STORE: &str = "192.0.2.10";
    // Dropped in reverse: the switchds, the hosts, etcd, the underlay, the certificates.
    let certs = Certs::new(STORE);
    let tls = &certs.files;
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    let (ca, cert, key) = (path(&tls.ca), path(&tls.client_cert), path(&tls.client_key));
    let mut underlay = Underlay::new();
    let store_ns = underlay.plug("e", STORE);
    let etcd = Etcd::single_tls(&store_ns, STORE, tls);
    let hosts: Vec<Netns> = (0..2).map(|i| underlay.plug("h", &vtep(i))).collect();
    let url = etcd.url();
    assert_eq!(url, "etcd://192.0.2.10:2379");
    // Host `i`'s switchd flags, with `tls`.
    let args = |i: usize, tls: &[&str]| -> Vec<String> {
        let store = ["--cluster-store", &url].map(String::from);
        let mut args = vec!["--vtep".into(), vtep(i), "--node".into(), node(i)];
        args.extend(store);
        args.extend(tls.iter().map(|a| a.to_string()));
        args
    };

    for (half, flag) in [
        (["--cluster-store-cert", &cert], "--cluster-store-cert"),
        (["--cluster-store-key", &key], "--cluster-store-key"),
    ] {
        let full = args(0, &[&["--cluster-store-ca", &ca][..], &half].concat());
        let out = common::switchd_refusing(&hosts[0], &strs(&full));
        let said = stderr(&out);
        assert!(!out.status.success(), "switchd ran with {flag} alone");
        assert!(
            said.contains("--cluster-store-cert and --cluster-store-key go together"),
            "{flag} alone: {said:?}"
        );
    }

    let full = args(
        0,
        &[
            "--cluster-store-ca",
            &ca,
            "--cluster-store-cert",
            &cert,
            "--cluster-store-key",
            &key,
        ],
    );
    let h1 = Switchd::start_in(&hosts[0], &strs(&full));
    let mut last = None;
    let (status, took) = poll(HANG, || {
        last = cluster_status(&h1);
        last.clone().filter(|s| s["connected"] == true)
    })
    .unwrap_or_else(|| {
        panic!(
            "h1 (with a client certificate) not connected after {HANG:?}: {last:?}\nlog:\n{}",
            own_log(&h1)
        )
    });
    println!("h1 connected over TLS after {took:?}: {status}");
    assert_eq!(status["node"], "h1", "{status}");

    let full = args(1, &["--cluster-store-ca", &ca]);
    let h2 = Switchd::start_in(&hosts[1], &strs(&full));
    let start = Instant::now();
    let mut status = None;
    while start.elapsed() < Duration::from_secs(6) {
        status = cluster_status(&h2);
        let now = status.as_ref().expect("h2 answers cluster status");
        assert!(
            now["connected"] == false,
            "h2 connected without a client certificate: {now}\nlog:\n{}",
            own_log(&h2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.unwrap();
    let error = status["error"].as_str().unwrap_or_default();
    println!("h2 without a client certificate: error {error:?}");
    assert!(!error.is_empty(), "no error: {status}");
    assert_ne!(
        error,
        "connecting",
        "h2 still says only `connecting`: {status}\nlog:\n{}",
        own_log(&h2)
    );

    // Only h1 registered: in h1's picture and in the store.
    let mut last = None;
    poll(HANG, || {
        let out = h1.swctl(&["--json", "node", "ls"]);
        let nodes: Value = serde_json::from_slice(&out.stdout).ok()?;
        let names: Vec<String> = nodes
            .as_array()?
            .iter()
            .filter_map(|n| n["name"].as_str().map(String::from))
            .collect();
        last = Some(names.clone());
        (names == ["h1"]).then_some(())
    })
    .unwrap_or_else(|| panic!("h1's node ls: {last:?}, not [h1]\nlog:\n{}", own_log(&h1)));
    let registered: Vec<String> = etcd
        .get_prefix("/switchyard/v1/nodes/")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(registered, ["/switchyard/v1/nodes/h1"]);
}
