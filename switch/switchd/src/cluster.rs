//! The cluster thread: switchd's one connection to the cluster store (etcd v3, through
//! the `etcd-client` crate on a tokio runtime of its own). Forwarding threads never
//! wait on it, and the control thread only for a transaction it asked for, at most
//! [`TXN_TIMEOUT`].
//!
//! A session, until the store stops answering:
//! 1. connect to one member (each in turn until one answers: a client balancing over all
//!    of them keeps sending to a dead one); grant this node's lease ([`LEASE_TTL`]) and keep it alive (every third
//!    of the TTL);
//! 2. read a snapshot of the whole prefix; put the registration and this node's
//!    endpoints under the lease and repair its addresses (`OwnKeys::resync`); hand the
//!    snapshot to the control thread;
//! 3. watch from the snapshot's revision + 1, handing every batch of events to the
//!    control thread; a watch whose revision was compacted away starts again at 2's
//!    snapshot (without re-registering);
//! 4. meanwhile run the control thread's transactions and keep the store's copy of this
//!    node's endpoints in line with the controller's (`OwnKeys::update`).
//!
//! When the store fails (a call times out, the watch or the keep-alive stream breaks,
//! the lease is found expired) the session ends, the status says why, transactions fail
//! at once with "cluster store unreachable at ...", and a new session is tried after a
//! back-off (0.5 s doubling to 5 s, each with up to a quarter more at random). The new session re-registers under a new lease and
//! resyncs, so a node that was partitioned for longer than the TTL comes back whole.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client as etcd;
use switchyard::cluster::{
    self, Compare, Event, EventKind, KeyValue, Op, OwnKeys, Snapshot, StoreError, Txn,
};
use switchyard::control::ClusterStatus;
use tokio::sync::mpsc;

/// How long the control thread waits for a transaction.
pub const TXN_TIMEOUT: Duration = Duration::from_secs(2);
/// The lease of a node's registration and endpoints.
pub const LEASE_TTL: i64 = cluster::DEFAULT_LEASE_TTL;
/// Between sessions, at first; doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The TLS files of `--cluster-store-ca/-cert/-key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// As given: `etcd://H:P[,H:P...]`.
    pub url: String,
    /// `H:P` of each member.
    pub endpoints: Vec<String>,
    pub node: String,
    /// The VTEP other nodes send to (`--cluster-advertise`, the VTEP's port).
    pub advertise: std::net::SocketAddr,
    pub tls: TlsFiles,
}

/// Parses `etcd://H:P[,H:P...]` into its members' `H:P`.
pub fn parse_store_url(url: &str) -> Result<Vec<String>, String> {
    let hint = "give etcd://HOST:PORT[,HOST:PORT...], such as etcd://192.0.2.10:2379";
    let rest = url.strip_prefix("etcd://").ok_or_else(|| {
        format!("invalid --cluster-store {url:?}: only etcd is supported; {hint}")
    })?;
    let members: Vec<String> = rest.split(',').map(|m| m.trim().to_string()).collect();
    for member in &members {
        let (host, port) = member
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid --cluster-store member {member:?}: no port; {hint}"))?;
        if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("invalid --cluster-store member {member:?}; {hint}"));
        }
    }
    Ok(members)
}

/// What the cluster thread hands the control thread.
pub enum Update {
    /// Everything under the prefix: replace the picture.
    Snapshot(Snapshot),
    /// Changes after the last snapshot or events, in order.
    Events(Vec<Event>),
}

enum Command {
    Txn(Txn, crossbeam_channel::Sender<Result<bool, StoreError>>),
    Own(OwnKeys),
    Stop,
}

/// The control thread's side of the cluster thread.
pub struct ClusterLink {
    options: ClusterOptions,
    commands: mpsc::UnboundedSender<Command>,
    updates: crossbeam_channel::Receiver<Update>,
    status: Arc<Mutex<ClusterStatus>>,
    /// What was last asked of the store for this node's keys.
    own: Option<OwnKeys>,
    thread: Option<JoinHandle<()>>,
}

impl ClusterLink {
    /// Starts the cluster thread with this node's keys as they are now (so that its
    /// first registration repairs the store against them, never against nothing); it
    /// calls `wake` whenever it has an update.
    pub fn start(
        options: ClusterOptions,
        own: OwnKeys,
        wake: impl Fn() + Send + 'static,
    ) -> Result<ClusterLink> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (update_tx, updates) = crossbeam_channel::unbounded();
        let status = Arc::new(Mutex::new(ClusterStatus {
            store: options.url.clone(),
            node: options.node.clone(),
            advertise: Some(options.advertise),
            lease_ttl_secs: LEASE_TTL,
            error: Some("connecting".into()),
            ..ClusterStatus::default()
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the cluster store's runtime")?;
        let agent = Agent {
            options: options.clone(),
            status: Arc::clone(&status),
            updates: update_tx,
            wake: Box::new(wake),
            own: own.clone(),
            member: 0,
        };
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || runtime.block_on(agent.run(command_rx)))
            .context("cannot start the cluster thread")?;
        Ok(ClusterLink {
            options,
            commands,
            updates,
            status,
            own: Some(own),
            thread: Some(thread),
        })
    }

    pub fn node(&self) -> &str {
        &self.options.node
    }

    pub fn advertise(&self) -> std::net::SocketAddr {
        self.options.advertise
    }

    pub fn status(&self) -> ClusterStatus {
        lock(&self.status).clone()
    }

    /// The updates that arrived since the last call.
    pub fn take_updates(&self) -> Vec<Update> {
        self.updates.try_iter().collect()
    }

    /// Runs `txn`, waiting at most [`TXN_TIMEOUT`]; at once an error while the store is
    /// known to be unreachable.
    pub fn txn(&self, txn: &Txn) -> Result<bool, StoreError> {
        let unreachable = |reason: String| StoreError::Unreachable {
            at: self.options.url.clone(),
            reason,
        };
        {
            let status = lock(&self.status);
            if !status.connected {
                return Err(unreachable(
                    status
                        .error
                        .clone()
                        .unwrap_or_else(|| "not connected".into()),
                ));
            }
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command::Txn(txn.clone(), reply))
            .map_err(|_| unreachable("the cluster thread has stopped".into()))?;
        match answer.recv_timeout(TXN_TIMEOUT) {
            Ok(outcome) => outcome,
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                TXN_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Asks the cluster thread to make this node's keys in the store `own` (when they
    /// changed since the last call).
    pub fn publish(&mut self, own: OwnKeys) {
        if self.own.as_ref() == Some(&own) {
            return;
        }
        self.own = Some(own.clone());
        let _ = self.commands.send(Command::Own(own));
    }
}

impl Drop for ClusterLink {
    /// Revokes the lease (the node leaves at once, not after the TTL) and stops.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(status: &Mutex<ClusterStatus>) -> MutexGuard<'_, ClusterStatus> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a session ended.
enum End {
    Stopped,
    Failed(String),
}

struct Agent {
    options: ClusterOptions,
    status: Arc<Mutex<ClusterStatus>>,
    updates: crossbeam_channel::Sender<Update>,
    wake: Box<dyn Fn() + Send>,
    /// This node's keys as the controller last said.
    own: OwnKeys,
    /// The member the next session tries first (modulo the members).
    member: usize,
}

impl Agent {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        loop {
            let started = Instant::now();
            match self.session(&mut commands).await {
                End::Stopped => return,
                End::Failed(reason) => {
                    if reason != last_error {
                        tracing::warn!(store = %self.options.url, "cluster store: {reason}; forwarding goes on with the last known state, retrying");
                        last_error = reason.clone();
                    }
                    let mut status = lock(&self.status);
                    status.connected = false;
                    status.member = None;
                    status.lease = None;
                    status.error = Some(reason);
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = FIRST_BACKOFF;
            }
            // Until the next try, transactions fail at once.
            // With up to a quarter more at random: nodes that lost the store together
            // do not all come back (and read a snapshot) at the same instant.
            let retry = tokio::time::sleep(jittered(backoff));
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = &mut retry => break,
                    command = commands.recv() => match command {
                        Some(Command::Txn(_, reply)) => {
                            let reason = lock(&self.status).error.clone().unwrap_or_default();
                            let _ = reply.send(Err(self.unreachable(reason)));
                        }
                        Some(Command::Own(own)) => self.own = own,
                        Some(Command::Stop) | None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn unreachable(&self, reason: String) -> StoreError {
        StoreError::Unreachable {
            at: self.options.url.clone(),
            reason,
        }
    }

    fn notify(&self, update: Update) {
        let _ = self.updates.send(update);
        (self.wake)();
    }

    async fn connect(&self) -> Result<etcd::Client, String> {
        let mut options = etcd::ConnectOptions::new()
            .with_connect_timeout(TXN_TIMEOUT)
            .with_timeout(TXN_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), TXN_TIMEOUT);
        let tls = &self.options.tls;
        let scheme = if tls.ca.is_some() || tls.cert.is_some() {
            let mut config = etcd::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                let pem = std::fs::read(ca).map_err(|err| {
                    format!("cannot read --cluster-store-ca {}: {err}", ca.display())
                })?;
                config = config.ca_certificate(etcd::Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                let read = |path: &std::path::Path, flag: &str| {
                    std::fs::read(path)
                        .map_err(|err| format!("cannot read {flag} {}: {err}", path.display()))
                };
                let identity = etcd::Identity::from_pem(
                    read(cert, "--cluster-store-cert")?,
                    read(key, "--cluster-store-key")?,
                );
                config = config.identity(identity);
            }
            options = options.with_tls(config);
            "https"
        } else {
            "http"
        };
        let member = self.current_member();
        etcd::Client::connect([format!("{scheme}://{member}")], Some(options))
            .await
            .map_err(|err| format!("cannot connect to {member}: {}", describe(&err)))
    }

    fn current_member(&self) -> &str {
        &self.options.endpoints[self.member % self.options.endpoints.len()]
    }

    /// A client of one member that answers, and this node's new lease from it: each
    /// member in turn, from the one after the last session's. (One client balancing over
    /// every member keeps sending some requests to a member that is down, so a session
    /// talks to one member; any member serves, followers forward to the leader.)
    async fn connect_any(&mut self) -> Result<(etcd::Client, i64), String> {
        let mut reasons = Vec::new();
        for _ in 0..self.options.endpoints.len() {
            let attempt = async {
                let mut client = self.connect().await?;
                let granted = client
                    .lease_grant(LEASE_TTL, None)
                    .await
                    .map_err(|err| format!("cannot get a lease: {}", describe(&err)))?;
                Ok::<_, String>((client, granted.id()))
            };
            match timeout(attempt).await {
                Ok(connected) => return Ok(connected),
                Err(reason) => {
                    reasons.push(reason);
                    self.member = self.member.wrapping_add(1);
                }
            }
        }
        let mut reason = reasons.join("; ");
        let tls = &self.options.tls;
        if tls.ca.is_some() && tls.cert.is_none() {
            reason.push_str(
                " (TLS without a client certificate: if etcd was started with --trusted-ca-file or --client-cert-auth, it wants one; give --cluster-store-cert and --cluster-store-key)",
            );
        }
        Err(reason)
    }

    async fn session(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> End {
        let (client, lease) = match self.connect_any().await {
            Ok(connected) => connected,
            Err(reason) => return End::Failed(reason),
        };
        let end = self.serve(client, lease, commands).await;
        if matches!(end, End::Failed(_)) {
            // The next session starts with another member.
            self.member = self.member.wrapping_add(1);
        }
        end
    }

    /// One session's work with `client`, under `lease`, until the store fails or the
    /// daemon stops.
    async fn serve(
        &mut self,
        mut client: etcd::Client,
        lease: i64,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> End {
        let (mut keeper, mut kept) = match timeout(async {
            client
                .lease_keep_alive(lease)
                .await
                .map_err(|err| format!("cannot keep the lease alive: {}", describe(&err)))
        })
        .await
        {
            Ok(pair) => pair,
            Err(reason) => return End::Failed(reason),
        };
        let mut revision = match self.register(&mut client, lease).await {
            Ok(revision) => revision,
            Err(reason) => return End::Failed(reason),
        };
        let mut watch = match self.watch(&mut client, revision + 1).await {
            Ok(watch) => watch,
            Err(reason) => return End::Failed(reason),
        };
        let mut tick = tokio::time::interval(Duration::from_millis((LEASE_TTL as u64 * 1000) / 3));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_kept = Instant::now();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Txn(txn, reply)) => {
                        let outcome = timeout(run_txn(&mut client, &txn, lease)).await;
                        let failed = outcome.as_ref().err().cloned();
                        let _ = reply.send(outcome.map_err(|reason| self.unreachable(reason)));
                        if let Some(reason) = failed {
                            return End::Failed(reason);
                        }
                    }
                    Some(Command::Own(own)) => {
                        for txn in own.update(&self.own) {
                            if let Err(reason) = timeout(run_txn(&mut client, &txn, lease)).await {
                                self.own = own;
                                return End::Failed(reason);
                            }
                        }
                        self.own = own;
                    }
                    Some(Command::Stop) | None => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await;
                        return End::Stopped;
                    }
                },
                _ = tick.tick() => {
                    if last_kept.elapsed() > Duration::from_secs(LEASE_TTL as u64) {
                        return End::Failed("the lease's keep-alives go unanswered".into());
                    }
                    if let Err(err) = keeper.keep_alive().await {
                        return End::Failed(format!("cannot keep the lease alive: {}", describe(&err)));
                    }
                }
                answer = kept.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => last_kept = Instant::now(),
                    Ok(Some(_)) => return End::Failed("the lease expired (the store was out of reach longer than its TTL)".into()),
                    Ok(None) => return End::Failed("the lease's keep-alive stream ended".into()),
                    Err(err) => return End::Failed(format!("the lease's keep-alive stream broke: {}", describe(&err))),
                },
                message = watch.message() => match message {
                    Ok(Some(response)) => {
                        if response.canceled() || response.compact_revision() > 0 {
                            // Compacted past our revision: a fresh snapshot, then on.
                            tracing::info!(revision, compacted = response.compact_revision(), "cluster store: the watch's revision was compacted; reading a fresh snapshot");
                            lock(&self.status).compactions += 1;
                            revision = match self.snapshot(&mut client).await {
                                Ok(revision) => revision,
                                Err(reason) => return End::Failed(reason),
                            };
                            watch = match self.watch(&mut client, revision + 1).await {
                                Ok(watch) => watch,
                                Err(reason) => return End::Failed(reason),
                            };
                            continue;
                        }
                        let events: Vec<Event> = response.events().iter().filter_map(event).collect();
                        if let Some(last) = events.last() {
                            revision = last.revision;
                            {
                                let mut status = lock(&self.status);
                                status.watch_events += events.len() as u64;
                                status.revision = revision;
                            }
                            self.notify(Update::Events(events));
                        }
                    }
                    Ok(None) => return End::Failed("the watch ended".into()),
                    Err(err) => return End::Failed(format!("the watch broke: {}", describe(&err))),
                },
            }
        }
    }

    /// Reads a snapshot, puts this node's keys under `lease` and repairs its addresses,
    /// and hands the snapshot over. Returns its revision.
    async fn register(&mut self, client: &mut etcd::Client, lease: i64) -> Result<i64, String> {
        let snapshot = timeout(read_snapshot(client)).await?;
        let resync = self.own.resync(&snapshot);
        for key in &resync.conflicts {
            tracing::warn!(%key, "cluster store: an address this node uses is held by another node");
        }
        for txn in &resync.txns {
            timeout(run_txn(client, txn, lease)).await?;
        }
        {
            let mut status = lock(&self.status);
            status.connected = true;
            status.member = Some(self.current_member().to_string());
            status.error = None;
            status.lease = Some(format!("{lease:x}"));
            status.registrations += 1;
        }
        tracing::info!(store = %self.options.url, node = %self.options.node, lease = format!("{lease:x}"), keys = snapshot.kvs.len(), "cluster store: registered");
        Ok(self.hand_over(snapshot))
    }

    /// A fresh snapshot for the control thread (the watch's revision was compacted).
    async fn snapshot(&mut self, client: &mut etcd::Client) -> Result<i64, String> {
        let snapshot = timeout(read_snapshot(client)).await?;
        Ok(self.hand_over(snapshot))
    }

    /// Gives the control thread `snapshot`; returns its revision, where the watch goes on.
    fn hand_over(&self, snapshot: Snapshot) -> i64 {
        let revision = snapshot.revision;
        lock(&self.status).revision = revision;
        self.notify(Update::Snapshot(snapshot));
        revision
    }

    async fn watch(
        &self,
        client: &mut etcd::Client,
        from: i64,
    ) -> Result<etcd::WatchStream, String> {
        let options = etcd::WatchOptions::new()
            .with_prefix()
            .with_start_revision(from);
        timeout(async {
            client
                .watch(cluster::PREFIX, Some(options))
                .await
                .map_err(|err| format!("cannot watch: {}", describe(&err)))
        })
        .await
    }
}

/// `wait` plus up to a quarter of it, at random.
fn jittered(wait: Duration) -> Duration {
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    wait + wait.mul_f64(f64::from(noise % 1000) / 4000.0)
}

/// `future`, or why it did not finish within [`TXN_TIMEOUT`].
async fn timeout<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(TXN_TIMEOUT, future).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} s", TXN_TIMEOUT.as_secs())),
    }
}

async fn read_snapshot(client: &mut etcd::Client) -> Result<Snapshot, String> {
    let response = client
        .get(cluster::PREFIX, Some(etcd::GetOptions::new().with_prefix()))
        .await
        .map_err(|err| format!("cannot read {}: {}", cluster::PREFIX, describe(&err)))?;
    let revision = response.header().map_or(0, |h| h.revision());
    let kvs = response
        .kvs()
        .iter()
        .filter_map(|kv| {
            Some(KeyValue {
                key: kv.key_str().ok()?.to_string(),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
                lease: kv.lease(),
            })
        })
        .collect();
    Ok(Snapshot { kvs, revision })
}

/// One transaction, in etcd's terms. True if its compares held.
async fn run_txn(client: &mut etcd::Client, txn: &Txn, lease: i64) -> Result<bool, String> {
    let compares: Vec<etcd::Compare> = txn
        .compares
        .iter()
        .map(|compare| match compare {
            Compare::Absent(key) => etcd::Compare::version(key.as_str(), etcd::CompareOp::Equal, 0),
            Compare::Value(key, value) => {
                etcd::Compare::value(key.as_str(), etcd::CompareOp::Equal, value.clone())
            }
            // Over a range: every key in it has version 0, which an empty range passes.
            Compare::PrefixEmpty(prefix) => {
                etcd::Compare::version(prefix.as_str(), etcd::CompareOp::Equal, 0).with_prefix()
            }
        })
        .collect();
    let ops: Vec<etcd::TxnOp> = txn
        .success
        .iter()
        .map(|op| match op {
            Op::Put { key, value, leased } => etcd::TxnOp::put(
                key.as_str(),
                value.clone(),
                leased.then(|| etcd::PutOptions::new().with_lease(lease)),
            ),
            Op::Delete(key) => etcd::TxnOp::delete(key.as_str(), None),
        })
        .collect();
    let response = client
        .txn(etcd::Txn::new().when(compares).and_then(ops))
        .await
        .map_err(|err| format!("transaction failed: {}", describe(&err)))?;
    Ok(response.succeeded())
}

/// An etcd client error in a line: gRPC's status without its plumbing.
fn describe(err: &etcd::Error) -> String {
    match err {
        etcd::Error::GRpcStatus(status) if status.code() == tonic::Code::Cancelled => {
            format!("no answer within {} s", TXN_TIMEOUT.as_secs())
        }
        etcd::Error::GRpcStatus(status) if status.code() == tonic::Code::Unavailable => {
            format!("unavailable ({})", status.message())
        }
        etcd::Error::GRpcStatus(status) => format!("{:?}: {}", status.code(), status.message()),
        other => other.to_string(),
    }
}

fn event(event: &etcd::Event) -> Option<Event> {
    let kv = event.kv()?;
    Some(Event {
        kind: match event.event_type() {
            etcd::EventType::Put => EventKind::Put,
            etcd::EventType::Delete => EventKind::Delete,
        },
        key: kv.key_str().ok()?.to_string(),
        value: kv.value().to_vec(),
        revision: kv.mod_revision(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_etcd_members() {
        assert_eq!(
            parse_store_url("etcd://192.0.2.10:2379").unwrap(),
            vec!["192.0.2.10:2379"]
        );
        assert_eq!(
            parse_store_url("etcd://a:2379,b:2380").unwrap(),
            vec!["a:2379", "b:2380"]
        );
        for bad in [
            "consul://a:8500",
            "etcd://",
            "etcd://a",
            "etcd://a:0",
            "etcd://a:x",
            "etcd://:2379",
            "etcd://a:2379,",
            "192.0.2.10:2379",
        ] {
            let err = parse_store_url(bad).unwrap_err();
            assert!(err.contains("etcd://HOST:PORT"), "{bad}: {err}");
        }
    }
}
