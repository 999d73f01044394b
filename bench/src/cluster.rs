//! The `cluster` scenario: how fast one real switchd takes in a cluster written to its
//! store, and what one attach costs in the store.
//!
//! Three namespaces: etcd's (`syb<pid>e`, 10.96.0.2, one member, data in a temporary
//! directory), switchd's "host" (`syb<pid>h`, 10.96.0.1, its VTEP, a veth to etcd's) and
//! a container (`syb<pid>c`) for the attach. switchd runs with `--vtep 10.96.0.1
//! --cluster-store etcd://10.96.0.2:2379 --cluster-advertise 10.96.0.1 --node host`, and
//! creates the one global network, `bench` (10.40.0.0/16), with `swctl network create
//! --scope global`. The bench's own etcd client runs on a thread that entered etcd's
//! namespace (and never leaves it), so it only ever talks inside the bench's namespaces.
//!
//! For each `--cluster-sizes` N×M the bench then writes, as N simulated nodes would, the
//! keys real nodes write (`switch/core/src/cluster/keys.rs`): each node's `nodes/NODE`
//! (`{"vtep":"IP:4789","started":...}`) with its share of the M endpoints
//! (`endpoints/bench/NODE/IP`, `{"mac":...}`) under that node's lease, in transactions of
//! at most 64 operations as `OwnKeys::resync` makes them, and its `addresses/bench/IP`
//! (`{"node":...}`, no lease), [`WRITERS`] transactions in flight at once. Each node's VTEP
//! is its own address in 10.96.0.0/16 (on-link from switchd's namespace, nobody answers
//! there; no traffic is sent). The clock starts at the first write; switchd has converged
//! at the first `swctl cluster status --json` (polled every [`POLL`]) that shows N+1
//! nodes, N peers and M remote endpoints. Then every simulated lease is revoked at once,
//! and the clock runs until the status shows 1 node, 0 peers and 0 remote endpoints. The
//! simulated nodes' address claims, which no lease removes, are deleted before the next
//! size (untimed). Simulated leases have a long TTL and no keep-alives: what switchd sees
//! is the same.
//!
//! Last, the cost of one attach: the keys and bytes (keys + values) under `/switchyard/`,
//! the store's revision and switchd's `watch_events` before and after one `nsutil attach
//! syb<pid>c --network bench`, once the store and switchd are quiet again.
//!
//! Everything is removed when the scenario ends, on failure too: the client thread, then
//! the topology (switchd, namespaces, work directory), then etcd and its directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client as etcd;
use serde::Serialize;
use serde_json::Value;

use crate::topo::{address, process_cpu, sh, Topology};
use crate::{interrupted, progress};

/// The store's key prefix (`switch/core/src/cluster/keys.rs`).
const PREFIX: &str = "/switchyard/v1/";
const NETWORK: &str = "bench";
const SUBNET: &str = "10.40.0.0/16";
const HOST_IP: &str = "10.96.0.1";
const ETCD_IP: &str = "10.96.0.2";
const NODE: &str = "host";
/// How often switchd's status is read while waiting for it to converge.
const POLL: Duration = Duration::from_millis(50);
/// How long switchd may take to converge before the scenario fails.
const CONVERGE_WITHIN: Duration = Duration::from_secs(180);
/// Transactions the bench keeps in flight, as many nodes writing at once would.
const WRITERS: usize = 16;
/// Operations per transaction, as switchd's `OwnKeys` batches them.
const OPS_PER_TXN: usize = 64;
/// The simulated nodes' leases: long enough for any measurement (they are revoked).
const SIM_LEASE_TTL: i64 = 3600;
/// The most simulated nodes and endpoints (their addresses must fit the /16s).
pub const MAX_NODES: usize = 10_000;
pub const MAX_ENDPOINTS: usize = 50_000;

/// N simulated nodes with M endpoints among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Size {
    pub nodes: usize,
    pub endpoints: usize,
}

/// Parses `NxM` (`--cluster-sizes`).
pub fn parse_size(text: &str) -> Result<Size, String> {
    let (n, m) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?}: give NODESxENDPOINTS, such as 100x1000"))?;
    let nodes: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: bad node count"))?;
    let endpoints: usize = m
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: bad endpoint count"))?;
    if nodes == 0 || nodes > MAX_NODES {
        return Err(format!("{text:?}: 1 to {MAX_NODES} nodes"));
    }
    if endpoints > MAX_ENDPOINTS {
        return Err(format!("{text:?}: at most {MAX_ENDPOINTS} endpoints"));
    }
    Ok(Size { nodes, endpoints })
}

/// One size: the writes, switchd's convergence, the revocation and its convergence.
#[derive(Serialize, Debug)]
pub struct ConvergeResult {
    pub round: u32,
    pub nodes: usize,
    pub endpoints: usize,
    /// Keys written (nodes, endpoints, addresses) and the transactions they took.
    pub keys_written: usize,
    pub txns: usize,
    /// From the first write until etcd acknowledged the last.
    pub write_ms: f64,
    /// From the first write until the first status whose revision (what switchd's
    /// cluster thread has received) reached the last write's. The status is answered by
    /// switchd's control thread, the one applying the events, so a busy control thread
    /// delays this answer too: mostly the same as `converged_ms`. The status is first read
    /// once the writes are done.
    pub seen_ms: Option<f64>,
    /// From the first write until the status showed N+1 nodes, N peers, M endpoints.
    pub converged_ms: f64,
    /// Watch events switchd counted meanwhile.
    pub watch_events: u64,
    /// CPU time (user + system) switchd and etcd used from the first write to convergence.
    pub switchd_cpu_ms: Option<f64>,
    pub etcd_cpu_ms: Option<f64>,
    /// From the first revocation until etcd acknowledged the last.
    pub revoke_ms: f64,
    pub revoke_seen_ms: Option<f64>,
    /// From the first revocation until the status showed 1 node, 0 peers, 0 endpoints.
    pub revoke_converged_ms: f64,
    pub revoke_watch_events: u64,
    pub revoke_switchd_cpu_ms: Option<f64>,
    /// Keys left under the prefix after the revocation converged (the simulated nodes'
    /// address claims are not leased), before the bench deleted them.
    pub keys_left_after_revoke: usize,
}

/// What one `nsutil attach` on the real switchd changed in the store.
#[derive(Serialize, Debug)]
pub struct AttachCost {
    pub round: u32,
    pub attach_ms: f64,
    pub keys_before: usize,
    pub keys_after: usize,
    /// Keys plus values under `/switchyard/`.
    pub bytes_before: usize,
    pub bytes_after: usize,
    /// Revisions the store moved (one per transaction that changed something).
    pub revisions: i64,
    /// Watch events switchd counted (its own writes come back to it too).
    pub watch_events: u64,
    /// Keys added, changed and removed, without the prefix.
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct ClusterResult {
    /// Which round of `--rounds` (from 1).
    pub round: u32,
    pub sizes: Vec<ConvergeResult>,
    pub attach: Option<AttachCost>,
}

/// Builds the site, measures every size, then the attach.
pub fn measure(
    round: u32,
    sizes: &[Size],
    bin_dir: &Path,
    switchd_args: &[String],
) -> Result<ClusterResult> {
    progress("cluster", "setting up etcd and switchd");
    let site = Site::build(bin_dir, switchd_args)?;
    let mut out = ClusterResult {
        round,
        sizes: Vec::new(),
        attach: None,
    };
    for &size in sizes {
        if interrupted() {
            bail!("interrupted");
        }
        let r = site.converge(round, size)?;
        println!(
            "{:<20} {:<10} {:>15}  {:<24} {:>15}",
            "cluster",
            format!("{}x{}", size.nodes, size.endpoints),
            format!("{:.0} ms", r.converged_ms),
            format!("revoked {:.0} ms", r.revoke_converged_ms),
            "-"
        );
        out.sizes.push(r);
    }
    if interrupted() {
        bail!("interrupted");
    }
    let a = site.attach_cost(round)?;
    println!(
        "{:<20} {:<10} {:>15}  {:<24} {:>15}",
        "cluster",
        "attach",
        format!("+{} keys", a.keys_after as i64 - a.keys_before as i64),
        format!(
            "+{} B, {} revs, {} ev",
            a.bytes_after as i64 - a.bytes_before as i64,
            a.revisions,
            a.watch_events
        ),
        "-"
    );
    out.attach = Some(a);
    Ok(out)
}

/// etcd in its namespace, killed on drop, its directory removed.
struct Etcd {
    child: Child,
    dir: PathBuf,
}

impl Etcd {
    fn start(netns: &str, dir: PathBuf) -> Result<Etcd> {
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let client = format!("http://{ETCD_IP}:2379");
        let peer = format!("http://{ETCD_IP}:2380");
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "etcd", "--name", "bench"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start etcd (apt-get install etcd-server)")?;
        // Made first, so that a failure below still removes the directory.
        Ok(Etcd { child, dir })
    }

    /// etcd's process id (`ip netns exec` execs it).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One operation of a bench transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// Key, value, lease.
    Put(String, String, Option<i64>),
    Delete(String),
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &mut etcd::Client) + Send>;

/// The bench's etcd client, on a thread of its own inside etcd's namespace: jobs run there
/// one at a time. Dropping it ends the thread.
struct Store {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Store {
    /// Enters `netns` on a new thread, connects, and waits until etcd answers.
    fn start(netns: &str) -> Result<Store> {
        let path = format!("/run/netns/{netns}");
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("etcd-client".into())
            .spawn(move || {
                let setup = || -> Result<(tokio::runtime::Runtime, etcd::Client)> {
                    let file = std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {path}"))?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("cannot enter {path}"))?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let client = runtime.block_on(connect())?;
                    Ok((runtime, client))
                };
                match setup() {
                    Ok((runtime, mut client)) => {
                        let _ = ready_tx.send(Ok(()));
                        for job in jobs_rx {
                            job(&runtime, &mut client);
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .context("cannot start the etcd client's thread")?;
        let store = Store {
            jobs: Some(jobs_tx),
            thread: Some(thread),
        };
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the etcd client's thread ended"))??;
        Ok(store)
    }

    /// Runs `job` on the client's thread; its answer.
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&tokio::runtime::Runtime, &mut etcd::Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .context("no etcd client")?
            .send(Box::new(move |runtime, client| {
                let _ = tx.send(job(runtime, client));
            }))
            .map_err(|_| anyhow!("the etcd client's thread ended"))?;
        rx.recv()
            .map_err(|_| anyhow!("the etcd client's thread ended"))?
    }

    /// Every key under the prefix with its value, and the store's revision.
    fn read_all(&self) -> Result<(BTreeMap<String, Vec<u8>>, i64)> {
        self.run(|runtime, client| {
            runtime.block_on(async {
                let r = client
                    .get(PREFIX, Some(etcd::GetOptions::new().with_prefix()))
                    .await?;
                let revision = r.header().map_or(0, |h| h.revision());
                let kvs = r
                    .kvs()
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(kv.key()).into_owned(),
                            kv.value().to_vec(),
                        )
                    })
                    .collect();
                Ok((kvs, revision))
            })
        })
    }

    /// Leases for `count` simulated nodes.
    fn grant(&self, count: usize) -> Result<Vec<i64>> {
        self.run(move |runtime, client| {
            runtime.block_on(async {
                let mut leases = Vec::with_capacity(count);
                for _ in 0..count {
                    leases.push(client.lease_grant(SIM_LEASE_TTL, None).await?.id());
                }
                Ok(leases)
            })
        })
    }

    /// Runs `txns`, [`WRITERS`] at a time; how long it took and the last revision.
    fn write(&self, txns: Vec<Vec<Op>>) -> Result<(Duration, i64)> {
        self.run(move |runtime, client| {
            runtime.block_on(async {
                let started = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                let mut revision = 0;
                for ops in txns {
                    while set.len() >= WRITERS {
                        revision = revision.max(joined(set.join_next().await)?);
                    }
                    let ops: Vec<etcd::TxnOp> = ops
                        .into_iter()
                        .map(|op| match op {
                            Op::Put(key, value, lease) => {
                                let options = lease.map(|l| etcd::PutOptions::new().with_lease(l));
                                etcd::TxnOp::put(key, value, options)
                            }
                            Op::Delete(key) => etcd::TxnOp::delete(key, None),
                        })
                        .collect();
                    let mut client = client.clone();
                    set.spawn(async move {
                        let r = client.txn(etcd::Txn::new().and_then(ops)).await?;
                        Ok::<i64, etcd::Error>(r.header().map_or(0, |h| h.revision()))
                    });
                }
                while !set.is_empty() {
                    revision = revision.max(joined(set.join_next().await)?);
                }
                Ok((started.elapsed(), revision))
            })
        })
    }

    /// Revokes `leases`, [`WRITERS`] at a time; how long it took and the last revision.
    fn revoke(&self, leases: Vec<i64>) -> Result<(Duration, i64)> {
        self.run(move |runtime, client| {
            runtime.block_on(async {
                let started = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                let mut revision = 0;
                for lease in leases {
                    while set.len() >= WRITERS {
                        revision = revision.max(joined(set.join_next().await)?);
                    }
                    let mut client = client.clone();
                    set.spawn(async move {
                        let r = client.lease_revoke(lease).await?;
                        Ok::<i64, etcd::Error>(r.header().map_or(0, |h| h.revision()))
                    });
                }
                while !set.is_empty() {
                    revision = revision.max(joined(set.join_next().await)?);
                }
                Ok((started.elapsed(), revision))
            })
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A finished writer task's revision.
fn joined(next: Option<Result<Result<i64, etcd::Error>, tokio::task::JoinError>>) -> Result<i64> {
    match next {
        Some(Ok(Ok(revision))) => Ok(revision),
        Some(Ok(Err(e))) => Err(anyhow!("etcd: {e}")),
        Some(Err(e)) => Err(anyhow!("an etcd writer failed: {e}")),
        None => Ok(0),
    }
}

/// Connects to etcd and waits (30 s at most) until it answers.
async fn connect() -> Result<etcd::Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let options = etcd::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    loop {
        let attempt = async {
            let mut client =
                etcd::Client::connect([format!("http://{ETCD_IP}:2379")], Some(options.clone()))
                    .await?;
            client.status().await?;
            Ok::<_, etcd::Error>(client)
        };
        match attempt.await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => bail!("etcd does not answer: {e}"),
            Err(_) if interrupted() => bail!("interrupted"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What `swctl cluster status --json` says (the fields the bench reads).
#[derive(Clone, Debug, Default)]
struct Status {
    connected: bool,
    revision: i64,
    nodes: u64,
    peers: u64,
    remote_endpoints: u64,
    global_networks: u64,
    watch_events: u64,
}

impl Status {
    fn of(value: &Value) -> Status {
        let n = |key: &str| value[key].as_u64().unwrap_or(0);
        Status {
            connected: value["connected"].as_bool().unwrap_or(false),
            revision: value["revision"].as_i64().unwrap_or(0),
            nodes: n("nodes"),
            peers: n("peers"),
            remote_endpoints: n("remote_endpoints"),
            global_networks: n("global_networks"),
            watch_events: n("watch_events"),
        }
    }
}

/// A wait's outcome.
struct Converged {
    /// Since the start, when the condition first held.
    at: Duration,
    /// Since the start, when switchd's revision first reached the target one.
    seen: Option<Duration>,
    status: Status,
}

/// The built scenario. Fields drop in order: the client thread, the topology (switchd,
/// namespaces), then etcd.
struct Site {
    store: Store,
    topo: Topology,
    etcd: Etcd,
    bin_dir: PathBuf,
    socket: String,
    container: String,
}

impl Site {
    fn build(bin_dir: &Path, switchd_args: &[String]) -> Result<Site> {
        let mut topo = Topology::empty(switchd_args);
        let host = topo.add_ns("h")?;
        let store_ns = topo.add_ns("e")?;
        let container = topo.add_ns("c")?;
        sh(&[
            "ip", "link", "add", "u0", "netns", &host, "type", "veth", "peer", "name", "u0",
            "netns", &store_ns,
        ])?;
        address(&host, "u0", &format!("{HOST_IP}/16"))?;
        address(&store_ns, "u0", &format!("{ETCD_IP}/16"))?;
        let dir = std::env::temp_dir().join(format!("{}-etcd", topo.ns("")));
        let etcd = Etcd::start(&store_ns, dir)?;
        let store = match Store::start(&store_ns) {
            Ok(store) => store,
            Err(e) => bail!("{e:#}; etcd's log:\n{}", etcd.log_tail()),
        };
        let url = format!("etcd://{ETCD_IP}:2379");
        let socket = topo.start_switchd(
            bin_dir,
            Some(&host),
            &[
                "--vtep",
                HOST_IP,
                "--cluster-store",
                &url,
                "--cluster-advertise",
                HOST_IP,
                "--node",
                NODE,
            ],
        )?;
        let site = Site {
            store,
            topo,
            etcd,
            bin_dir: bin_dir.to_path_buf(),
            socket,
            container,
        };
        site.wait_until("switchd to register", Instant::now(), 0, |s| {
            s.connected && s.nodes == 1
        })?;
        site.swctl(&[
            "network", "create", NETWORK, "--scope", "global", "--subnet", SUBNET,
        ])?;
        site.wait_until("the global network", Instant::now(), 0, |s| {
            s.global_networks == 1
        })?;
        Ok(site)
    }

    fn swctl(&self, args: &[&str]) -> Result<String> {
        self.topo.swctl(&self.bin_dir, &self.socket, args)
    }

    fn status(&self) -> Result<Status> {
        let out = self.swctl(&["--json", "cluster", "status"])?;
        let value: Value = serde_json::from_str(&out).context("swctl cluster status --json")?;
        Ok(Status::of(&value))
    }

    /// Polls the status every [`POLL`] until `done` holds; times are since `start`, `seen`
    /// when the status's revision first reached `revision`.
    fn wait_until(
        &self,
        what: &str,
        start: Instant,
        revision: i64,
        done: impl Fn(&Status) -> bool,
    ) -> Result<Converged> {
        let mut seen = None;
        let mut next = Instant::now();
        loop {
            let status = self.status()?;
            let now = start.elapsed();
            if seen.is_none() && status.revision >= revision {
                seen = Some(now);
            }
            if done(&status) {
                return Ok(Converged {
                    at: now,
                    seen,
                    status,
                });
            }
            if now > CONVERGE_WITHIN {
                bail!(
                    "waited {} s for {what} in vain: switchd says {} nodes, {} peers, {} \
                     remote endpoints at revision {} (the store is at {revision}){}",
                    CONVERGE_WITHIN.as_secs(),
                    status.nodes,
                    status.peers,
                    status.remote_endpoints,
                    status.revision,
                    if status.connected {
                        ""
                    } else {
                        ", not connected"
                    }
                );
            }
            if interrupted() {
                bail!("interrupted");
            }
            next += POLL;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                next = Instant::now();
            }
        }
    }

    fn switchd_cpu(&self) -> Option<Duration> {
        self.topo.switch_cpu()
    }

    fn etcd_cpu(&self) -> Option<Duration> {
        process_cpu(self.etcd.pid())
    }

    /// Writes N nodes and M endpoints, waits for switchd; revokes them, waits again.
    fn converge(&self, round: u32, size: Size) -> Result<ConvergeResult> {
        let Size { nodes, endpoints } = size;
        progress(
            "cluster",
            &format!("{nodes} simulated nodes, {endpoints} endpoints: writing, then revoking"),
        );
        let leases = self.store.grant(nodes)?;
        let txns = simulated_txns(size, &leases);
        let keys_written = txns.iter().map(Vec::len).sum();
        let txn_count = txns.len();
        let before = self.status()?;
        let (cpu0, etcd0) = (self.switchd_cpu(), self.etcd_cpu());
        let start = Instant::now();
        let (write_time, last) = self.store.write(txns)?;
        let (n, m) = (nodes as u64, endpoints as u64);
        let up = self.wait_until(
            &format!("{nodes} nodes and {endpoints} endpoints"),
            start,
            last,
            |s| s.nodes == n + 1 && s.peers == n && s.remote_endpoints == m,
        )?;
        let (cpu1, etcd1) = (self.switchd_cpu(), self.etcd_cpu());

        let start = Instant::now();
        let (revoke_time, last) = self.store.revoke(leases)?;
        let down = self.wait_until("the simulated nodes to leave", start, last, |s| {
            s.nodes == 1 && s.peers == 0 && s.remote_endpoints == 0
        })?;
        let cpu2 = self.switchd_cpu();
        let (left, _) = self.store.read_all()?;
        let left = left.keys().filter(|k| !is_real(k)).count();
        // The simulated address claims (no lease took them); untimed.
        self.delete_simulated()?;
        Ok(ConvergeResult {
            round,
            nodes,
            endpoints,
            keys_written,
            txns: txn_count,
            write_ms: ms(write_time),
            seen_ms: up.seen.map(ms),
            converged_ms: ms(up.at),
            watch_events: up.status.watch_events - before.watch_events,
            switchd_cpu_ms: crate::cpu_used(cpu0, cpu1).map(ms),
            etcd_cpu_ms: crate::cpu_used(etcd0, etcd1).map(ms),
            revoke_ms: ms(revoke_time),
            revoke_seen_ms: down.seen.map(ms),
            revoke_converged_ms: ms(down.at),
            revoke_watch_events: down.status.watch_events - up.status.watch_events,
            revoke_switchd_cpu_ms: crate::cpu_used(cpu1, cpu2).map(ms),
            keys_left_after_revoke: left,
        })
    }

    /// Deletes what the simulated nodes left (their address claims) and waits until
    /// switchd has seen it.
    fn delete_simulated(&self) -> Result<()> {
        let (kvs, _) = self.store.read_all()?;
        let stale: Vec<Op> = kvs
            .keys()
            .filter(|k| !is_real(k))
            .map(|k| Op::Delete(k.clone()))
            .collect();
        let txns = stale.chunks(OPS_PER_TXN).map(<[Op]>::to_vec).collect();
        self.store.write(txns)?;
        let (_, revision) = self.store.read_all()?;
        self.wait_until(
            "switchd to see the cleanup",
            Instant::now(),
            revision,
            |s| s.revision >= revision,
        )?;
        Ok(())
    }

    /// The store before and after one `nsutil attach`.
    fn attach_cost(&self, round: u32) -> Result<AttachCost> {
        progress("cluster", "the store's cost of one nsutil attach");
        let (before, rev0) = self.quiet()?;
        let status0 = self.status()?;
        let start = Instant::now();
        self.topo.nsutil(
            &self.bin_dir,
            &self.socket,
            &["attach", &self.container, "--network", NETWORK],
        )?;
        let attach_time = start.elapsed();
        let (after, rev1) = self.quiet()?;
        let status1 = self.status()?;
        let bytes = |kvs: &BTreeMap<String, Vec<u8>>| -> usize {
            kvs.iter().map(|(k, v)| k.len() + v.len()).sum()
        };
        let short = |k: &String| k.strip_prefix(PREFIX).unwrap_or(k).to_string();
        Ok(AttachCost {
            round,
            attach_ms: ms(attach_time),
            keys_before: before.len(),
            keys_after: after.len(),
            bytes_before: bytes(&before),
            bytes_after: bytes(&after),
            revisions: rev1 - rev0,
            watch_events: status1.watch_events - status0.watch_events,
            added: after
                .keys()
                .filter(|k| !before.contains_key(*k))
                .map(short)
                .collect(),
            changed: after
                .iter()
                .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
                .map(|(k, _)| short(k))
                .collect(),
            removed: before
                .keys()
                .filter(|k| !after.contains_key(*k))
                .map(short)
                .collect(),
        })
    }

    /// The store's keys and revision once it has not moved for half a second and switchd
    /// has seen its revision (10 s at most).
    fn quiet(&self) -> Result<(BTreeMap<String, Vec<u8>>, i64)> {
        let mut last = self.store.read_all()?;
        let mut since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::thread::sleep(POLL);
            let now = self.store.read_all()?;
            if now.1 != last.1 {
                since = Instant::now();
                last = now;
                continue;
            }
            if since.elapsed() >= Duration::from_millis(500) && self.status()?.revision >= last.1 {
                return Ok(last);
            }
            if Instant::now() > deadline {
                bail!("the store or switchd did not settle within 10 s");
            }
            if interrupted() {
                bail!("interrupted");
            }
        }
    }
}

/// Whether `key` is one the real switchd or its network made (not a simulated node's).
fn is_real(key: &str) -> bool {
    let rest = key.strip_prefix(PREFIX).unwrap_or(key);
    rest.starts_with("networks/")
        || rest.starts_with("vnis/")
        || rest.starts_with("vlans/")
        || rest == format!("nodes/{NODE}")
        || rest.starts_with(&format!("endpoints/{NETWORK}/{NODE}/"))
        || match rest.strip_prefix(&format!("addresses/{NETWORK}/")) {
            // The simulated nodes' addresses are 10.40.1.1 on; the real node's below.
            Some(ip) => ip
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.octets()[2] == 0),
            None => false,
        }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Simulated node `i`'s name and VTEP address (10.96.1.1 on).
fn sim_node(i: usize) -> (String, String) {
    (
        format!("sim{i}"),
        format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250),
    )
}

/// Endpoint `k`'s address (10.40.1.1 on) and MAC.
fn sim_endpoint(k: usize) -> (String, String) {
    let (c, d) = (1 + k / 250, 1 + k % 250);
    (
        format!("10.40.{c}.{d}"),
        format!("02:42:0a:28:{c:02x}:{d:02x}"),
    )
}

/// The transactions N nodes would write: per node, its registration and endpoints under
/// its lease (64 operations at most each), then its address claims. Endpoint `k` belongs
/// to node `k % N`.
fn simulated_txns(size: Size, leases: &[i64]) -> Vec<Vec<Op>> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut txns = Vec::new();
    for (i, &lease) in leases.iter().enumerate().take(size.nodes) {
        let (name, vtep) = sim_node(i);
        // As switchd serializes its records: fields in their order, no spaces.
        let mut leased = vec![Op::Put(
            format!("{PREFIX}nodes/{name}"),
            format!(r#"{{"vtep":"{vtep}:4789","started":{started}}}"#),
            Some(lease),
        )];
        let mut claims = Vec::new();
        for k in (i..size.endpoints).step_by(size.nodes) {
            let (ip, mac) = sim_endpoint(k);
            leased.push(Op::Put(
                format!("{PREFIX}endpoints/{NETWORK}/{name}/{ip}"),
                format!(r#"{{"mac":"{mac}"}}"#),
                Some(lease),
            ));
            claims.push(Op::Put(
                format!("{PREFIX}addresses/{NETWORK}/{ip}"),
                format!(r#"{{"node":"{name}"}}"#),
                None,
            ));
        }
        for chunk in leased.chunks(OPS_PER_TXN).chain(claims.chunks(OPS_PER_TXN)) {
            txns.push(chunk.to_vec());
        }
    }
    txns
}

/// The scenario's table: one row per size (and round).
pub fn print(results: &[ClusterResult]) {
    println!(
        "\ncluster: one switchd, simulated nodes and endpoints written to etcd ({WRITERS} \
         transactions in flight), switchd's `cluster status` polled every {} ms",
        POLL.as_millis()
    );
    println!(
        "\n| round | nodes | endpoints | keys / txns | etcd write ms | seen ms | converged ms \
         | watch events | switchd cpu ms | etcd cpu ms | revoke ms | revoke converged ms \
         | revoke events |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
    for r in results {
        let round = r.round;
        for s in &r.sizes {
            println!(
                "| {round} | {} | {} | {} / {} | {:.0} | {} | {:.0} | {} | {} | {} | {:.0} | {:.0} | {} |",
                s.nodes,
                s.endpoints,
                s.keys_written,
                s.txns,
                s.write_ms,
                cell(s.seen_ms),
                s.converged_ms,
                s.watch_events,
                cell(s.switchd_cpu_ms),
                cell(s.etcd_cpu_ms),
                s.revoke_ms,
                s.revoke_converged_ms,
                s.revoke_watch_events,
            );
        }
    }
    println!(
        "\nms from the first write (or revocation). seen: switchd's status revision reached \
         the last write's (its cluster thread has every event; the control thread answers \
         the status, so it waits on the same work). The status is first read when etcd \
         has taken every write. converged: nodes = N+1, \
         peers = N, remote endpoints = M (after revoking: 1, 0, 0)."
    );
    let attaches: Vec<&AttachCost> = results.iter().filter_map(|r| r.attach.as_ref()).collect();
    if attaches.is_empty() {
        return;
    }
    println!(
        "\n| round | attach ms | keys before → after | bytes before → after | revisions | \
         watch events | keys added / changed |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for a in attaches {
        let mut what: Vec<String> = a.added.iter().map(|k| format!("+{k}")).collect();
        what.extend(a.changed.iter().map(|k| format!("~{k}")));
        what.extend(a.removed.iter().map(|k| format!("-{k}")));
        println!(
            "| {} | {:.0} | {} → {} | {} → {} | {} | {} | {} |",
            a.round,
            a.attach_ms,
            a.keys_before,
            a.keys_after,
            a.bytes_before,
            a.bytes_after,
            a.revisions,
            a.watch_events,
            what.join(" "),
        );
    }
    println!(
        "\nattach: one `nsutil attach --network {NETWORK}` on the real switchd; bytes are keys \
         plus values under {PREFIX}; revisions: how far the store's revision moved."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            parse_size("100x1000"),
            Ok(Size {
                nodes: 100,
                endpoints: 1000
            })
        );
        assert!(parse_size("0x10").is_err());
        assert!(parse_size("10").is_err());
        assert!(parse_size("10x999999").is_err());
    }

    #[test]
    fn simulated_keys_follow_the_layout() {
        let size = Size {
            nodes: 3,
            endpoints: 200,
        };
        let txns = simulated_txns(size, &[1, 2, 3]);
        assert!(txns.iter().all(|t| t.len() <= OPS_PER_TXN));
        let puts: Vec<(&str, &str, Option<i64>)> = txns
            .iter()
            .flatten()
            .map(|op| match op {
                Op::Put(k, v, l) => (k.as_str(), v.as_str(), *l),
                Op::Delete(k) => panic!("a delete of {k}"),
            })
            .collect();
        // 3 registrations, 200 endpoints, 200 addresses.
        assert_eq!(puts.len(), 403);
        let find = |key: &str| *puts.iter().find(|(k, _, _)| *k == key).unwrap();
        let (_, endpoint, lease) = find("/switchyard/v1/endpoints/bench/sim0/10.40.1.1");
        assert_eq!(
            (endpoint, lease),
            (r#"{"mac":"02:42:0a:28:01:01"}"#, Some(1))
        );
        let (_, node, lease) = find("/switchyard/v1/nodes/sim1");
        let started = node
            .strip_prefix(r#"{"vtep":"10.96.1.2:4789","started":"#)
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap();
        assert!(started.parse::<u64>().is_ok(), "{node}");
        assert_eq!(lease, Some(2));
        let (claim, holder, lease) = find("/switchyard/v1/addresses/bench/10.40.1.2");
        assert_eq!((holder, lease), (r#"{"node":"sim1"}"#, None));
        assert!(!is_real(claim));
        assert!(is_real("/switchyard/v1/addresses/bench/10.40.0.2"));
        assert!(is_real("/switchyard/v1/nodes/host"));
        assert!(!is_real("/switchyard/v1/nodes/sim0"));
        assert!(!is_real("/switchyard/v1/endpoints/bench/sim0/10.40.1.1"));
    }
}
