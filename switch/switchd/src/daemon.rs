//! The control thread: the control socket, signals, FDB aging, and the life of ports
//! (their TAPs and forwarding threads, see `dataplane`) on one `mio` poll.
//!
//! With nothing to do it sleeps in `epoll_wait` until a request, a signal, a forwarding
//! thread reporting a failed TAP, or the next FDB expiry.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::unistd::Gid;
use switchyard::cluster::{ClusterView, NodeRecord};
use switchyard::control::Request;
use switchyard::controller::state::SavedPortKind;
use switchyard::controller::{port_name, Controller, ControllerConfig, Note, Subject};
use switchyard::datapath::Datapath;
use switchyard::dns::DnsService;
use switchyard::fdb::FdbConfig;
use switchyard::port::StormLimit;
use switchyard::{PortId, Time};
use switchyard_os::netns;

use crate::capture::{self, Captures};
use crate::cluster::{ClusterLink, ClusterOptions, Update};
use crate::conn::Conn;
use crate::ctl;
use crate::dataplane::{self, Shared, Thread};
use crate::links::LinkWatch;
use crate::state::StateStore;
use crate::system::{vtep_receivers, System};
use crate::vtep::Vtep;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// A forwarding thread has news (a TAP failed).
const WAKE: Token = Token(2);
/// Another switchd asks who owns our VTEP.
pub(crate) const VTEP_CLAIM: Token = Token(3);
const FIRST_CONN: usize = 16;
/// The cluster store's changes are applied at most this often (the first at once).
const CLUSTER_BATCH: Duration = Duration::from_millis(50);
/// Control connections served at once. At the cap, a new one is let in by closing the
/// connection idle the longest (see `conn`).
const MAX_CONNS: usize = 256;

pub struct Options {
    pub socket: PathBuf,
    /// Members of this group may use the control socket too; otherwise only its owner.
    pub socket_group: Option<SocketGroup>,
    pub fdb: FdbConfig,
    pub vtep: VtepOptions,
    /// The name of the TUN device facing the host, made when a network needs it.
    pub uplink: String,
    pub busy_poll: dataplane::BusyPoll,
    /// Every port's storm limit unless it has its own.
    pub storm_limit: Option<StormLimit>,
    /// The embedded DNS's upstream resolvers; `None`: no DNS.
    pub dns: Option<Vec<SocketAddr>>,
    pub dns_rate_limit: switchyard::dns::RateLimit,
    /// The cluster store, when switchd is a member of a cluster.
    pub cluster: Option<ClusterOptions>,
    /// Whether metrics are served (`--metrics`): without, nothing is kept for them.
    pub metrics: bool,
}

/// The group whose members may use the control socket (`--socket-group`).
#[derive(Clone, Debug, PartialEq)]
pub struct SocketGroup {
    pub name: String,
    pub gid: Gid,
}

/// How this switchd takes part in the VXLAN overlay.
#[derive(Debug, PartialEq)]
pub struct VtepOptions {
    /// `--vtep`: the VTEP to be at start. It wins over one the state directory
    /// remembers (from `swctl vxlan enable`), which a start without it binds.
    pub local: Option<SocketAddr>,
    /// For any VTEP, also one enabled later.
    pub udp_checksums: bool,
    pub accept_inner_tagged: bool,
}

pub struct Daemon {
    poll: Poll,
    /// What the forwarding threads share: the datapath, the TAPs, the VTEP.
    pub shared: Arc<Shared>,
    failures: crossbeam_channel::Receiver<(PortId, String)>,
    /// The thread that reads the DNS upstream socket (and sends retries, SERVFAILs).
    _dns_thread: Option<Thread>,
    /// The owner of ports, peers, networks: every control request goes to it.
    pub controller: Controller,
    /// The effects the controller asks for, carried out on this machine.
    pub system: System,
    /// What the metrics thread needs of the controller, published after every change,
    /// and the control requests counted; `None` without `--metrics`.
    pub metrics: Option<Arc<crate::metrics::Control>>,
    listener: UnixListener,
    socket: PathBuf,
    conns: HashMap<Token, Conn>,
    next_conn: usize,
    /// Connections with work left after their turn (edge-triggered polling will not
    /// report them again).
    conn_backlog: VecDeque<Token>,
    /// Accepting stopped (out of descriptors): try again soon.
    accept_pending: bool,
    /// When the next control connection may time out (`conn::IDLE_TIMEOUT`); `None`
    /// without connections.
    next_idle_check: Option<Instant>,
    /// When switchd last logged that it was at `MAX_CONNS`.
    cap_noted: Option<Instant>,
    signals: SignalFd,
    /// The cluster store's picture, once a first snapshot arrived.
    pub cluster_view: Option<ClusterView>,
    /// When a change from the store was last applied.
    pub cluster_synced: Option<Instant>,
    /// The picture changed since it was last applied to the controller.
    cluster_dirty: bool,
    /// When this switchd started (seconds since the Unix epoch), for its registration.
    started_unix: u64,
    /// Live captures, each on a connection of its own (`swctl capture`).
    pub captures: Captures,
    /// Link events of host ports' interfaces.
    links: LinkWatch,
}

impl Daemon {
    /// Binds the control socket, restores saved ports, and gets ready to run.
    /// `signals` must already be blocked in every thread.
    pub fn new(options: Options, store: StateStore, signals: SignalFd) -> Result<Daemon> {
        // State first: a corrupt state file must not leave a socket file behind.
        let saved = store.load()?;
        // The VTEP before the control socket: a switchd refused because another owns the
        // VTEP leaves no socket file behind.
        let dp = Arc::new(Datapath::new(options.fdb));
        dp.switch()
            .set_accept_inner_tagged(options.vtep.accept_inner_tagged);
        let (udp_checksums, receivers) = (options.vtep.udp_checksums, vtep_receivers());
        // --vtep wins over the VTEP the state remembers (the controller warns when they
        // differ, and remembers --vtep's).
        let vtep = match (options.vtep.local, saved.vtep) {
            (Some(local), _) => Some(Vtep::bind(local, udp_checksums, receivers)?),
            (None, Some(remembered)) => {
                let vtep = Vtep::bind(remembered, udp_checksums, receivers).with_context(|| {
                    format!(
                        "cannot bind VTEP {remembered}, which the state directory {} remembers (from `swctl vxlan enable`); start switchd with --vtep ADDR to use another address",
                        store.dir().display()
                    )
                })?;
                tracing::info!("VTEP {remembered}, as the state directory remembers it");
                Some(vtep)
            }
            (None, None) => None,
        };
        let poll = Poll::new().context("cannot create the event loop (epoll)")?;
        let mut listener = bind_control_socket(&options.socket, options.socket_group.as_ref())?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .context("cannot watch the control socket")?;
        poll.registry()
            .register(
                &mut SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&signals.as_fd())),
                SIGNALS,
                Interest::READABLE,
            )
            .context("cannot watch signals")?;
        let waker =
            Arc::new(mio::Waker::new(poll.registry(), WAKE).context("cannot create a waker")?);
        // A flapping MAC is logged by the control thread, which knows the ports' names.
        let flap_waker = Arc::clone(&waker);
        dp.switch().fdb().set_flap_notifier(move || {
            let _ = flap_waker.wake();
        });
        let (failed, failures) = crossbeam_channel::unbounded();
        // The embedded DNS: its upstream socket, a fresh seed, the router handing it
        // queries; before the controller gives it names.
        let dns_socket = match &options.dns {
            Some(upstreams) => {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0")
                    .context("cannot open the DNS upstream socket")?;
                socket
                    .set_nonblocking(true)
                    .context("cannot make the DNS upstream socket non-blocking")?;
                *dp.dns() = DnsService::with_rate_limit(
                    upstreams.clone(),
                    options.dns_rate_limit,
                    dns_seed(),
                );
                dp.router().set_dns(true);
                if upstreams.is_empty() {
                    tracing::warn!("the embedded DNS has no upstream resolver (none in /etc/resolv.conf, no --dns-upstream): names other than containers' get SERVFAIL");
                }
                Some(socket)
            }
            None => None,
        };
        let cluster_waker = Arc::clone(&waker);
        // Host ports follow their interfaces' links from before the restore on, so that
        // one that comes back while switchd starts is not missed.
        let links = LinkWatch::start(Arc::clone(&waker))
            .context("cannot start the thread that watches host interfaces")?;
        let shared = Arc::new(Shared::new(
            Arc::clone(&dp),
            options.busy_poll,
            failed,
            waker,
            dns_socket,
        ));
        let registry = poll
            .registry()
            .try_clone()
            .context("cannot share the event loop")?;
        let mut system = System::new(
            Arc::clone(&shared),
            store,
            options.uplink.clone(),
            registry,
            udp_checksums,
        );
        if let Some(vtep) = vtep {
            system.set_vtep(Arc::new(vtep))?;
        }
        let config = ControllerConfig {
            boot_id: netns::boot_id(),
            uplink_name: options.uplink,
            storm_limit: options.storm_limit,
        };
        let mut controller = Controller::restore(dp, config, saved, &mut system)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        log_notes(&mut controller);
        let metrics = options.metrics.then(|| {
            let metrics = Arc::new(crate::metrics::Control::default());
            metrics.publish(&controller);
            metrics
        });
        // The cluster store after the restore: the first snapshot meets a controller
        // that has this node's own endpoints again, and publishes them.
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(cluster) = options.cluster {
            let own = own_keys(&controller, &cluster.node, cluster.advertise, started_unix);
            system.cluster = Some(ClusterLink::start(cluster, own, move || {
                let _ = cluster_waker.wake();
            })?);
        }
        let dns_thread = if shared.dns_on() {
            Some(dataplane::spawn_dns(Arc::clone(&shared)).context("cannot start the DNS thread")?)
        } else {
            None
        };
        system
            .start_vxlan()
            .context("cannot start the VXLAN receiving threads")?;
        let mut daemon = Daemon {
            poll,
            shared,
            failures,
            _dns_thread: dns_thread,
            controller,
            system,
            metrics,
            listener,
            socket: options.socket,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            conn_backlog: VecDeque::new(),
            accept_pending: false,
            next_idle_check: None,
            cap_noted: None,
            signals,
            cluster_view: None,
            cluster_synced: None,
            cluster_dirty: false,
            started_unix,
            captures: Captures::default(),
            links,
        };
        daemon.watch_host_namespaces();
        Ok(daemon)
    }

    pub fn now(&self) -> Time {
        self.shared.now()
    }

    pub fn started(&self) -> Instant {
        self.shared.started()
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if !self.conn_backlog.is_empty() {
                Some(Duration::ZERO)
            } else {
                let aging = self
                    .shared
                    .dp
                    .next_timeout()
                    .map(|at| at.since(self.now()) + Duration::from_millis(1));
                let accepting = self.accept_pending.then_some(Duration::from_millis(100));
                let idle = self.next_idle_check.map(|at| {
                    at.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
                });
                let cluster = self.cluster_due().map(|at| {
                    at.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
                });
                [aging, accepting, idle, cluster]
                    .into_iter()
                    .flatten()
                    .min()
            };
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err).context("event loop failed");
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKE => {
                        self.take_failures();
                        self.take_link_events();
                        self.controller.take_flaps();
                        log_notes(&mut self.controller);
                        self.take_cluster_updates();
                    }
                    VTEP_CLAIM => {
                        if let Some(vtep) = self.shared.vtep.get() {
                            vtep.drop_claim_queries();
                        }
                    }
                    SIGNALS => {
                        if let Some(signal) = self.take_signal() {
                            tracing::info!("received {signal}, shutting down");
                            return Ok(());
                        }
                    }
                    token => self.serve_conn(token),
                }
            }
            self.serve_conn_backlog();
            self.apply_cluster_if_due();
            if self.accept_pending {
                self.accept();
            }
            if self.next_idle_check.is_some_and(|at| at <= Instant::now()) {
                self.close_idle_conns();
            }
            let aged = self.shared.dp.handle_timeout(self.now());
            if aged > 0 {
                tracing::debug!(aged, "aged FDB entries");
            }
        }
    }

    /// Applies what the cluster store sent since the last call: a snapshot replaces the
    /// picture, events change it; the controller then brings the model in line.
    fn take_cluster_updates(&mut self) {
        let Some(link) = &self.system.cluster else {
            return;
        };
        let updates = link.take_updates();
        if updates.is_empty() {
            return;
        }
        for update in updates {
            match update {
                Update::Snapshot(snapshot) => {
                    self.cluster_view = Some(ClusterView::from_snapshot(&snapshot));
                }
                Update::Events(events) => {
                    if let Some(view) = &mut self.cluster_view {
                        view.apply(&events);
                    }
                }
            }
        }
        self.cluster_dirty = self.cluster_view.is_some();
        self.apply_cluster_if_due();
    }

    /// When the changed picture is applied: at once, unless it was applied less than
    /// [`CLUSTER_BATCH`] ago (a burst of watch events is applied once per batch, not once
    /// per event).
    fn cluster_due(&self) -> Option<Instant> {
        if !self.cluster_dirty {
            return None;
        }
        Some(
            self.cluster_synced
                .map_or_else(Instant::now, |at| at + CLUSTER_BATCH),
        )
    }

    /// Brings the controller in line with the store's picture, when it is due.
    fn apply_cluster_if_due(&mut self) {
        if self.cluster_due().is_none_or(|at| at > Instant::now()) {
            return;
        }
        self.apply_cluster();
    }

    /// Brings the controller in line with the store's picture now, if it changed (a
    /// request is about to be decided against the model).
    pub fn apply_cluster(&mut self) {
        if !self.cluster_dirty {
            return;
        }
        let (Some(view), Some(link)) = (&self.cluster_view, &self.system.cluster) else {
            return;
        };
        let remote = view.remote(link.node());
        self.cluster_dirty = false;
        self.cluster_synced = Some(Instant::now());
        self.controller.cluster_update(&mut self.system, remote);
        log_notes(&mut self.controller);
        self.publish_metrics();
        self.publish_own_keys();
    }

    /// Hands the metrics thread what the controller now has (with `--metrics`).
    pub fn publish_metrics(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.publish(&self.controller);
        }
    }

    /// Counts an answered control request for the metrics (with `--metrics`).
    pub fn count_request(&self, kind: &str, result: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.count_request(kind, result);
        }
    }

    /// Tells the cluster thread what this node's keys in the store should be now (after
    /// a change of the model: a request, the cluster's own update).
    pub fn publish_own_keys(&mut self) {
        let Some(link) = self.system.cluster.as_mut() else {
            return;
        };
        let own = own_keys(
            &self.controller,
            link.node(),
            link.advertise(),
            self.started_unix,
        );
        link.publish(own);
    }

    /// Tells the controller what host ports' interfaces did.
    fn take_link_events(&mut self) {
        let mut changed = false;
        while let Ok((netns, event)) = self.links.events.try_recv() {
            self.controller.link_changed(
                &mut self.system,
                netns.as_deref(),
                event.ifindex,
                &event.name,
                event.up,
                event.gone,
            );
            changed = true;
        }
        if changed {
            log_notes(&mut self.controller);
            self.publish_metrics();
        }
    }

    /// Makes sure every namespace a host port lives in is watched (switchd's own is).
    pub fn watch_host_namespaces(&mut self) {
        let own = std::path::Path::new(switchyard::controller::effects::OWN_NETNS);
        let namespaces: std::collections::BTreeSet<PathBuf> = self
            .controller
            .model()
            .ports
            .values()
            .filter(|p| p.kind == SavedPortKind::Host && p.netns != own)
            .map(|p| p.netns.clone())
            .collect();
        for netns in namespaces {
            self.links.watch(Some(netns));
        }
    }

    /// Marks down the ports whose forwarding threads found their TAP broken.
    fn take_failures(&mut self) {
        while let Ok((id, problem)) = self.failures.try_recv() {
            let name = self
                .controller
                .model()
                .ports
                .get(&id)
                .map(port_name)
                .unwrap_or_default();
            tracing::warn!(port = %name, port_id = %id, "TAP failed, port is down: {problem}");
            drop(self.system.release(id));
            self.controller.mark_down(id, problem);
        }
    }

    fn take_signal(&mut self) -> Option<Signal> {
        match self.signals.read_signal() {
            Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
            _ => None,
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNS {
                        self.close_longest_idle();
                    }
                    let token = Token(self.next_conn);
                    self.next_conn = if self.next_conn == usize::MAX {
                        FIRST_CONN
                    } else {
                        self.next_conn + 1
                    };
                    let registered =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE);
                    if let Err(err) = registered {
                        tracing::warn!("cannot watch a control connection: {err}");
                        continue;
                    }
                    let conn = Conn::new(stream);
                    if self.next_idle_check.is_none() {
                        self.next_idle_check = Some(conn.deadline());
                    }
                    self.conns.insert(token, conn);
                    // It may have sent its request before we watched it.
                    self.conn_backlog.push_back(token);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // Out of descriptors or memory: the pending connection stays in the
                    // backlog, and edge-triggered polling will not report it again.
                    if !self.accept_pending {
                        tracing::warn!("cannot accept control connections for now: {err}");
                    }
                    self.accept_pending = true;
                    return;
                }
            }
        }
    }

    /// Closes the connection `token`.
    fn close_conn(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Makes room for a new connection at the cap: closes the one idle the longest.
    fn close_longest_idle(&mut self) {
        let now = Instant::now();
        let Some((token, idle)) = self
            .conns
            .iter()
            .map(|(token, conn)| (*token, conn.idle_for(now)))
            .max_by_key(|(_, idle)| *idle)
        else {
            return;
        };
        // Once a minute at most: a client opening connections in a loop would flood the log.
        if self
            .cap_noted
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60))
        {
            self.cap_noted = Some(now);
            tracing::info!(
                "{MAX_CONNS} control connections open: closing the longest-idle ones to let new clients in"
            );
        }
        tracing::debug!(
            conn = token.0,
            "closing a control connection idle for {} ms to make room",
            idle.as_millis()
        );
        self.close_conn(token);
    }

    /// Closes the connections that made no progress for `conn::IDLE_TIMEOUT`, and notes
    /// when the next one may time out.
    fn close_idle_conns(&mut self) {
        let now = Instant::now();
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.deadline() <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            tracing::debug!(
                conn = token.0,
                "closing a control connection idle for {} s",
                crate::conn::IDLE_TIMEOUT.as_secs()
            );
            self.close_conn(token);
        }
        self.next_idle_check = self.conns.values().map(Conn::deadline).min();
    }

    /// Gives the connection `token` one turn: flush answers, read (within budget),
    /// answer up to a batch of requests while the client takes its answers, flush again.
    fn serve_conn(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        conn.flush();
        let stopped_at_budget = conn.wants_input() && conn.fill();
        for _ in 0..crate::conn::LINES_PER_TURN {
            if !conn.may_answer() {
                break;
            }
            let Some(line) = conn.next_line() else { break };
            let answer = match ctl::decode(self, &line) {
                Ok(Request::Capture {
                    port,
                    directions,
                    count,
                }) => {
                    let capture = capture::CaptureRequest {
                        port,
                        directions,
                        count,
                    };
                    match self.start_capture(conn, &capture) {
                        // The connection is the capture's now.
                        None => return,
                        Some(refused) => {
                            conn = refused;
                            continue;
                        }
                    }
                }
                Ok(request) => ctl::handle(self, conn.peer, request),
                Err(refusal) => refusal,
            };
            conn.push_answer(&answer);
        }
        conn.end_turn(|| {
            ctl::error_line(
                switchyard::control::ErrorCode::RequestTooLong,
                "request too long (over 1 MiB); closing the connection",
            )
        });
        conn.flush();
        if conn.finished() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if self.accept_pending {
                self.accept();
            }
            return;
        }
        if let Some(interest) = conn.interest_change() {
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
                .is_err()
            {
                return;
            }
        }
        if conn.has_more(stopped_at_budget) {
            self.conn_backlog.push_back(token);
        }
        self.conns.insert(token, conn);
    }

    /// Hands `conn` over to a new capture of `request`'s port; gives it back, with the
    /// refusal as its answer, if the capture cannot start.
    fn start_capture(&mut self, mut conn: Conn, request: &capture::CaptureRequest) -> Option<Conn> {
        let peer = conn.peer;
        let tapped = self
            .controller
            .capture_port(&request.port)
            .and_then(|target| self.captures.tap(&self.shared.dp, target, request));
        // Who watches whose traffic: logged as every change is, and counted.
        let outcome = tapped
            .as_ref()
            .map_or_else(|err| err.code.as_str(), |_| "ok");
        tracing::info!(
            uid = peer.map_or(-1, |p| i64::from(p.uid)),
            pid = peer.map_or(-1, |p| p.pid),
            port = %request.port,
            outcome,
            "control request: capture"
        );
        self.count_request("capture", outcome);
        let tapped = match tapped {
            Ok(tapped) => tapped,
            Err(err) => {
                conn.push_answer(&ctl::error_line(err.code, &err.message));
                return Some(conn);
            }
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let (stream, pending) = conn.into_parts();
        self.captures.start(
            &self.shared.dp,
            self.shared.started(),
            tapped,
            std::os::unix::net::UnixStream::from(stream),
            pending,
        );
        if self.accept_pending {
            self.accept();
        }
        None
    }

    /// One turn for every connection that still had work.
    fn serve_conn_backlog(&mut self) {
        for _ in 0..self.conn_backlog.len() {
            if let Some(token) = self.conn_backlog.pop_front() {
                self.serve_conn(token);
            }
        }
    }

    /// Releases every TAP (they stay, persistent, in their namespaces) and the socket.
    pub fn shutdown(mut self) {
        // The node leaves the cluster at once (its lease revoked), not a TTL later.
        self.system.cluster = None;
        // The uplink goes with this process, and with it the routes; the NAT rules would
        // stay, so they go too (the next start writes them again).
        self.controller.shutdown(&mut self.system);
        log_notes(&mut self.controller);
        self.system.shutdown();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Writes what the controller noted to the log.
pub fn log_notes(controller: &mut Controller) {
    for note in controller.take_notes() {
        match note {
            Note::Info(message) => tracing::info!("{message}"),
            Note::Warn(message) => tracing::warn!("{message}"),
            Note::About {
                warn,
                subject,
                message,
            } => {
                let (port, network, vlan) = match &subject {
                    Subject::Port(name) => (Some(name.as_str()), None, None),
                    Subject::Network(name) => (None, Some(name.as_str()), None),
                    Subject::Vlan(vlan) => (None, None, Some(vlan.get())),
                };
                if warn {
                    tracing::warn!(port, network, vlan, "{message}");
                } else {
                    tracing::info!(port, network, vlan, "{message}");
                }
            }
        }
    }
}

/// Binds the control socket, replacing a stale socket file but never a live daemon's:
/// mode 0600, or with `group` mode 0660 and owned by that group.
fn bind_control_socket(path: &Path, group: Option<&SocketGroup>) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another switchd is already listening on {}; stop it or pass a different --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = match group {
        None => bind_with_umask(path, 0o177)?,
        Some(group) => bind_for_group(path, group)?,
    };
    // What was made is what was meant, or the socket goes.
    let (mode, gid) = (
        if group.is_some() { 0o660 } else { 0o600 },
        group.map(|g| g.gid),
    );
    let checked = std::fs::metadata(path)
        .with_context(|| format!("cannot check the socket {}", path.display()))
        .and_then(|meta| {
            use std::os::unix::fs::MetadataExt;
            let made = (meta.mode() & 0o777, Gid::from_raw(meta.gid()));
            if made.0 != mode || gid.is_some_and(|gid| gid != made.1) {
                anyhow::bail!(
                    "the socket {} came out with mode {:o} and group {} instead of {mode:o}{}",
                    path.display(),
                    made.0,
                    made.1,
                    gid.map_or(String::new(), |gid| format!(" and group {gid}"))
                );
            }
            Ok(())
        });
    if let Err(err) = checked {
        let _ = std::fs::remove_file(path);
        return Err(err);
    }
    Ok(listener)
}

/// Binds with the process's umask set to `mask` (restored after): the socket is created
/// with its final mode, so there is no moment in which others could connect.
fn bind_with_umask(path: &Path, mask: u32) -> Result<UnixListener> {
    let old_mask = nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old_mask);
    bound.with_context(|| format!("cannot listen on {}", path.display()))
}

/// Binds the socket for `group`, mode 0660. A new file takes the creating thread's
/// filesystem gid, so the socket is made with this thread's set to the group (per
/// thread: nothing else in switchd sees it): it is born with its final mode and group.
/// Where that cannot be (a set-group-ID directory, or no right to take the gid), it is
/// made private (0600) first and then handed to the group: never open to another one.
fn bind_for_group(path: &Path, group: &SocketGroup) -> Result<UnixListener> {
    use std::os::unix::fs::MetadataExt;
    let dir_imposes_group = path
        .parent()
        .and_then(|dir| std::fs::metadata(dir).ok())
        .is_some_and(|dir| dir.mode() & 0o2000 != 0 && dir.gid() != group.gid.as_raw());
    if !dir_imposes_group {
        let previous = nix::unistd::setfsgid(group.gid);
        // setfsgid reports the previous value, not whether it worked: ask again.
        let taken = nix::unistd::setfsgid(group.gid) == group.gid;
        let bound = taken.then(|| bind_with_umask(path, 0o117));
        nix::unistd::setfsgid(previous);
        if let Some(bound) = bound {
            return bound;
        }
    }
    let listener = bind_with_umask(path, 0o177)?;
    let handed = nix::unistd::chown(path, None, Some(group.gid))
        .and_then(|()| {
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                path,
                Mode::from_bits_truncate(0o660),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        })
        .with_context(|| {
            format!(
                "cannot give the control socket {} to group {} ({}); switchd must run as root or be a member of the group",
                path.display(),
                group.name,
                group.gid
            )
        });
    if let Err(err) = handed {
        let _ = std::fs::remove_file(path);
        return Err(err);
    }
    Ok(listener)
}

/// Blocks SIGTERM and SIGINT (in this thread and every thread spawned later) and returns a
/// descriptor that reports them, so the event loop handles signals like any other event.
pub fn signal_fd() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().context("cannot block signals")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot create signalfd")
}

/// A seed for the DNS's ids and shuffles, from the OS (std's hasher keys come from it).
fn dns_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}

/// This node's keys in the cluster store: its registration and what the controller has.
fn own_keys(
    controller: &Controller,
    node: &str,
    vtep: SocketAddr,
    started: u64,
) -> switchyard::cluster::OwnKeys {
    let mut own = controller.own_keys(node);
    own.record = Some(NodeRecord { vtep, started });
    own
}
