//! The control thread: the control socket, signals, FDB aging, and the life of ports
//! (their TAPs and forwarding threads, see `dataplane`) on one `mio` poll.
//!
//! With nothing to do it sleeps in `epoll_wait` until a request, a signal, a forwarding
//! thread reporting a failed TAP, or the next FDB expiry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
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
use switchyard::control::VniMapping;
use switchyard::fdb::FdbConfig;
use switchyard::network::{Network, Networks};
use switchyard::port::PortMode;
use switchyard::router::Interface;
use switchyard::wire::{VlanId, VlanSet};
use switchyard::{PortId, Switch, Time};

use crate::conn::Conn;
use crate::ctl;
use crate::dataplane::{self, Shared, Thread};
use crate::state::{SavedOverlay, SavedPeer, SavedPort, SavedState, StateStore};
use crate::uplink::Uplink;
use crate::vtep::Vtep;
use switchyard::datapath::{Datapath, ROUTER_PORT};
use switchyard_os::netns;
use switchyard_os::nft as nat;
use switchyard_os::tap::Tap;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// A forwarding thread has news (a TAP failed).
const WAKE: Token = Token(2);
const FIRST_CONN: usize = 16;
/// Control connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 256;

/// A port: what is saved about it, and its TAP and forwarding thread while it has them.
pub struct PortEntry {
    pub saved: SavedPort,
    pub tap: Option<Arc<Tap>>,
    thread: Option<Thread>,
    /// Why the port is not forwarding, when it is not.
    pub problem: Option<String>,
}

impl PortEntry {
    pub fn new(saved: SavedPort) -> PortEntry {
        PortEntry {
            saved,
            tap: None,
            thread: None,
            problem: None,
        }
    }
}

pub struct Options {
    pub socket: PathBuf,
    pub fdb: FdbConfig,
    pub vtep: Option<VtepOptions>,
    /// The name of the TUN device facing the host, made when a network needs it.
    pub uplink: String,
    pub busy_poll: dataplane::BusyPoll,
}

/// How this switchd takes part in the VXLAN overlay.
#[derive(Debug, PartialEq)]
pub struct VtepOptions {
    pub local: SocketAddr,
    pub udp_checksums: bool,
    pub accept_inner_tagged: bool,
}

/// A remote VTEP: its address and its tunnel port in the core.
#[derive(Clone, Copy)]
pub struct Peer {
    pub id: PortId,
    pub addr: SocketAddr,
}

pub struct Daemon {
    poll: Poll,
    /// What the forwarding threads share: the core, the TAPs, the VTEP.
    pub shared: Arc<Shared>,
    failures: crossbeam_channel::Receiver<(PortId, String)>,
    vxlan_threads: Vec<Thread>,
    pub ports: BTreeMap<PortId, PortEntry>,
    pub peers: BTreeMap<PortId, Peer>,
    /// Networks, their endpoints and addresses.
    pub networks: Networks,
    /// The TUN to the host, once a network that is not internal exists.
    pub uplink: Option<Uplink>,
    uplink_name: String,
    pub store: StateStore,
    /// This boot's id; namespace cookies saved under another boot mean nothing.
    boot_id: String,
    pub next_port_id: u32,
    listener: UnixListener,
    socket: PathBuf,
    conns: HashMap<Token, Conn>,
    next_conn: usize,
    /// Connections with work left after their turn (edge-triggered polling will not
    /// report them again).
    conn_backlog: VecDeque<Token>,
    /// Accepting stopped (connection cap, or out of descriptors): try again soon.
    accept_pending: bool,
    signals: SignalFd,
}

impl Daemon {
    /// Binds the control socket, restores saved ports, and gets ready to run.
    /// `signals` must already be blocked in every thread.
    pub fn new(options: Options, store: StateStore, signals: SignalFd) -> Result<Daemon> {
        // State first: a corrupt state file must not leave a socket file behind.
        let saved = store.load()?;
        let poll = Poll::new().context("cannot create the event loop (epoll)")?;
        let mut listener = bind_control_socket(&options.socket)?;
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
        let dp = Arc::new(Datapath::new(options.fdb));
        let vtep = match &options.vtep {
            Some(vtep_options) => {
                let receivers = std::thread::available_parallelism().map_or(1, |n| n.get());
                let vtep = Vtep::bind(vtep_options.local, vtep_options.udp_checksums, receivers)?;
                dp.switch()
                    .set_accept_inner_tagged(vtep_options.accept_inner_tagged);
                Some(vtep)
            }
            None if !saved.overlay.is_empty() => anyhow::bail!(
                "the state directory has a VXLAN configuration ({} VNI mappings, {} peers) but switchd was started without --vtep; pass --vtep ADDR",
                saved.overlay.map.len(),
                saved.overlay.peers.len()
            ),
            None => None,
        };
        let waker = mio::Waker::new(poll.registry(), WAKE).context("cannot create a waker")?;
        let (failed, failures) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new(dp, vtep, options.busy_poll, failed, waker));
        let receivers = shared.vtep.as_ref().map_or(0, Vtep::receivers);
        let vxlan_threads = (0..receivers)
            .map(|i| dataplane::spawn_vxlan(Arc::clone(&shared), i))
            .collect::<io::Result<Vec<_>>>()
            .context("cannot start the VXLAN receiving threads")?;
        let mut daemon = Daemon {
            poll,
            shared,
            failures,
            vxlan_threads,
            ports: BTreeMap::new(),
            peers: BTreeMap::new(),
            networks: Networks::new(),
            uplink: None,
            uplink_name: options.uplink,
            store,
            boot_id: netns::boot_id(),
            next_port_id: saved.next_port_id,
            listener,
            socket: options.socket,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            conn_backlog: VecDeque::new(),
            accept_pending: false,
            signals,
        };
        daemon.restore(saved);
        Ok(daemon)
    }

    pub fn now(&self) -> Time {
        self.shared.now()
    }

    pub fn started(&self) -> Instant {
        self.shared.started()
    }

    /// The forwarding core.
    pub fn switch(&self) -> &Switch {
        self.shared.dp.switch()
    }

    pub fn vtep(&self) -> Option<&Vtep> {
        self.shared.vtep.as_ref()
    }

    /// Reattaches every saved port and reinstalls static FDB entries.
    fn restore(&mut self, saved: SavedState) {
        let same_boot = !saved.boot_id.is_empty() && saved.boot_id == self.boot_id;
        for port in saved.ports {
            let id = port.id;
            let name = port_name(&port);
            self.switch().set_port(id, port.mode.clone());
            let (tap, problem) = match reopen(&port, same_boot) {
                Ok(tap) => {
                    tracing::info!(port = %id, %name, ifindex = port.ifindex, "reattached TAP");
                    (Some(tap), None)
                }
                Err(err) => {
                    tracing::warn!(port = %id, %name, "cannot reattach TAP: {err:#}");
                    (None, Some(format!("{err:#}")))
                }
            };
            self.ports.insert(
                id,
                PortEntry {
                    saved: port,
                    tap: None,
                    thread: None,
                    problem,
                },
            );
            match tap {
                Some(tap) => {
                    if let Err(err) = self.install_tap(id, tap) {
                        self.mark_down(id, format!("{err:#}"));
                    }
                }
                None => {
                    let _ = self.switch().set_port_up(id, false);
                }
            }
        }
        for mapping in &saved.overlay.map {
            let mapped = self.switch().map_vni(mapping.vlan, mapping.vni);
            if let Err(err) = mapped {
                tracing::warn!(
                    "cannot restore VLAN {} ↔ VNI {}: {err}",
                    mapping.vlan,
                    mapping.vni
                );
            }
        }
        for peer in &saved.overlay.peers {
            if let Err(err) = self.add_peer(peer.id, peer.addr) {
                tracing::warn!("cannot restore VXLAN peer {}: {err:#}", peer.addr);
            }
        }
        for entry in saved.static_fdb {
            if !self.ports.contains_key(&entry.port) && !self.peers.contains_key(&entry.port) {
                tracing::warn!(
                    "static FDB entry {} vlan {} points at port {}, which no longer exists; dropped",
                    entry.mac,
                    entry.vlan,
                    entry.port
                );
            }
            if self.ports.contains_key(&entry.port) || self.peers.contains_key(&entry.port) {
                if let Err(err) = self
                    .switch()
                    .fdb()
                    .add_static(entry.vlan, entry.mac, entry.port)
                {
                    tracing::warn!(
                        "cannot restore static FDB entry {} vlan {}: {err}",
                        entry.mac,
                        entry.vlan
                    );
                }
            }
        }
        self.restore_networks(saved.networks, saved.endpoints);
    }

    /// Sets up the saved networks again (router, uplink routes, NAT) and tells the
    /// router the addresses of their endpoints.
    fn restore_networks(
        &mut self,
        networks: Vec<Network>,
        endpoints: Vec<switchyard::network::Endpoint>,
    ) {
        let model = match Networks::restore(networks, endpoints) {
            Ok(model) => model,
            Err(err) => {
                // StateStore::load checked this already.
                tracing::error!("saved networks are inconsistent, none restored: {err}");
                return;
            }
        };
        self.networks = model;
        let networks: Vec<Network> = self.networks.iter().cloned().collect();
        for network in &networks {
            match self.setup_network(network) {
                Ok(()) => {
                    tracing::info!(network = %network.name, subnet = %network.subnet, "network restored")
                }
                Err(err) => {
                    tracing::error!(network = %network.name, "cannot set up network again: {err:#}")
                }
            }
        }
        for endpoint in self.networks.endpoints().to_vec() {
            if let Some(network) = self.networks.get(&endpoint.network) {
                let vlan = network.vlan;
                self.shared
                    .dp
                    .router()
                    .set_static_neighbor(vlan, endpoint.ip, endpoint.mac);
            }
        }
    }

    /// Puts `network` (not yet in `self.networks`) or an existing one in place in the
    /// data path: its VNI, the router's interface and MAC, the uplink route and NAT.
    /// On failure, undoes what it did.
    pub fn setup_network(&mut self, network: &Network) -> Result<()> {
        let result = self.try_setup_network(network);
        if result.is_err() {
            self.teardown_network(network);
        }
        result
    }

    fn try_setup_network(&mut self, network: &Network) -> Result<()> {
        if let Some(vni) = network.vni {
            if self.vtep().is_none() {
                anyhow::bail!("network {} has VNI {vni}, but switchd was started without --vtep, so it has no overlay; restart it with --vtep ADDR", network.name);
            }
            let switch = self.switch();
            if switch.vni_of(network.vlan) != Some(vni) {
                switch.map_vni(network.vlan, vni).with_context(|| {
                    format!("cannot carry network {} as VNI {vni}", network.name)
                })?;
            }
        }
        self.shared.dp.router().set_interface(Interface {
            vlan: network.vlan,
            subnet: network.subnet,
            gateway: network.gateway,
            mac: network.router_mac(),
            uplink: !network.internal,
        });
        self.set_router_vlans(Some(network.vlan), None);
        self.switch()
            .fdb()
            .add_static(network.vlan, network.router_mac(), ROUTER_PORT)
            .with_context(|| format!("cannot add the gateway MAC of network {}", network.name))?;
        if !network.internal {
            if self.uplink.is_none() {
                self.uplink = Some(Uplink::create(&self.uplink_name, &self.shared)?);
            }
            if let Some(uplink) = &self.uplink {
                uplink.route(network.subnet, network.mtu).with_context(|| {
                    format!(
                        "cannot route network {}'s subnet into the uplink",
                        network.name
                    )
                })?;
            }
        }
        if network.masquerade {
            self.apply_nat(Some(network), None)?;
        }
        Ok(())
    }

    /// Takes `network` out of the data path; every step is attempted, failures logged.
    pub fn teardown_network(&mut self, network: &Network) {
        if network.masquerade {
            if let Err(err) = self.apply_nat(None, Some(&network.name)) {
                tracing::warn!(network = %network.name, "cannot remove the NAT rule: {err:#}");
            }
        }
        if let (false, Some(uplink)) = (network.internal, &self.uplink) {
            if let Err(err) = uplink.unroute(network.subnet) {
                tracing::warn!(network = %network.name, "cannot remove the uplink route: {err:#}");
            }
        }
        self.switch()
            .fdb()
            .remove(network.vlan, network.router_mac());
        self.shared.dp.router().remove_interface(network.vlan);
        self.set_router_vlans(None, Some(network.vlan));
        if let Some(vni) = network.vni {
            let switch = self.switch();
            if switch.vni_of(network.vlan) == Some(vni) {
                switch.unmap_vlan(network.vlan);
            }
        }
    }

    /// Makes the router's port a trunk of every network's VLAN, plus `add`, less `remove`.
    fn set_router_vlans(&mut self, add: Option<VlanId>, remove: Option<VlanId>) {
        let mut vlans: Vec<VlanId> = self.networks.iter().map(|n| n.vlan).chain(add).collect();
        vlans.retain(|v| Some(*v) != remove);
        let switch = self.switch();
        if vlans.is_empty() {
            let _ = switch.remove_port(ROUTER_PORT);
            return;
        }
        let allowed: VlanSet = vlans.into_iter().collect();
        switch.set_port(
            ROUTER_PORT,
            PortMode::Trunk {
                allowed,
                native: None,
            },
        );
        let _ = switch.set_port_up(ROUTER_PORT, true);
    }

    /// Rewrites the NAT table from the masquerading networks, plus `add`, less `remove`.
    fn apply_nat(&self, add: Option<&Network>, remove: Option<&str>) -> Result<()> {
        let uplink = self
            .uplink
            .as_ref()
            .map_or(self.uplink_name.as_str(), Uplink::name);
        let rules: Vec<nat::Masquerade> = self
            .networks
            .iter()
            // While restoring, `add` is already among the networks.
            .filter(|n| add.is_none_or(|a| a.name != n.name))
            .chain(add)
            .filter(|n| n.masquerade && Some(n.name.as_str()) != remove)
            .map(|n| nat::Masquerade {
                subnet: n.subnet,
                uplink: uplink.to_string(),
            })
            .collect();
        nat::apply(&rules).context("cannot update the NAT (masquerade) rules")
    }

    /// Adds the remote VTEP at `addr` as tunnel port `id` and learns the path MTU to it.
    pub fn add_peer(&mut self, id: PortId, addr: SocketAddr) -> Result<Peer> {
        let vtep = self
            .shared
            .vtep
            .as_ref()
            .context("switchd was started without --vtep, so it has no VXLAN overlay; restart it with --vtep ADDR")?;
        self.shared.dp.switch().add_peer(id, addr)?;
        let mtu = vtep.learn_path_mtu(addr);
        self.shared.dp.switch().set_path_mtu(addr.ip(), mtu)?;
        tracing::info!(%addr, port = %id, path_mtu = mtu, "VXLAN peer added");
        let peer = Peer { id, addr };
        self.peers.insert(id, peer);
        Ok(peer)
    }

    /// Removes the remote VTEP at `addr` and everything learned behind it.
    pub fn remove_peer(&mut self, addr: IpAddr) -> Result<Peer> {
        let id = self.switch().remove_peer(addr)?;
        self.peers.remove(&id).context("peer vanished")
    }

    /// Starts forwarding for port `id` through `tap` (a thread of its own) and marks the
    /// port up.
    pub fn install_tap(&mut self, id: PortId, tap: Tap) -> Result<()> {
        let tap = Arc::new(tap);
        let name = tap.name().to_string();
        // The port owns the TAP before anything can fail, so that whoever undoes a failed
        // install finds it there (and can destroy it, for a port being created).
        let entry = self.ports.get_mut(&id).context("port vanished")?;
        entry.tap = Some(Arc::clone(&tap));
        self.shared.set_tap(id, Some(Arc::clone(&tap)));
        let thread = dataplane::spawn_port(Arc::clone(&self.shared), id, tap)
            .with_context(|| format!("cannot start the forwarding thread of TAP {name}"))?;
        if let Some(entry) = self.ports.get_mut(&id) {
            entry.thread = Some(thread);
            entry.problem = None;
        }
        let _ = self.switch().set_port_up(id, true);
        Ok(())
    }

    /// Stops port `id`'s forwarding thread and hands its TAP back (it stays in the
    /// namespace until it is destroyed or the last reference goes).
    pub fn uninstall_tap(&mut self, id: PortId) -> Option<Arc<Tap>> {
        let entry = self.ports.get_mut(&id)?;
        drop(entry.thread.take());
        self.shared.set_tap(id, None);
        entry.tap.take()
    }

    /// The port stops forwarding until it is reattached, and says why.
    fn mark_down(&mut self, id: PortId, problem: String) {
        drop(self.uninstall_tap(id));
        let _ = self.switch().set_port_up(id, false);
        if let Some(entry) = self.ports.get_mut(&id) {
            entry.problem = Some(problem);
        }
    }

    pub fn saved_state(&self) -> SavedState {
        let (networks, endpoints) = self.networks.to_saved();
        let switch = self.switch();
        let mut static_fdb: Vec<_> = switch
            .fdb()
            .entries(self.now())
            .into_iter()
            .filter(|e| e.is_static && e.port != ROUTER_PORT)
            .map(|e| crate::state::SavedFdbEntry {
                vlan: e.vlan,
                mac: e.mac,
                port: e.port,
            })
            .collect();
        static_fdb.sort_by_key(|e| (e.vlan, e.mac));
        SavedState {
            boot_id: self.boot_id.clone(),
            next_port_id: self.next_port_id,
            ports: self.ports.values().map(|p| p.saved.clone()).collect(),
            static_fdb,
            overlay: SavedOverlay {
                map: switch
                    .vni_map()
                    .into_iter()
                    .map(|(vlan, vni)| VniMapping { vlan, vni })
                    .collect(),
                peers: self
                    .peers
                    .values()
                    .map(|p| SavedPeer {
                        id: p.id,
                        addr: p.addr,
                    })
                    .collect(),
            },
            networks,
            endpoints,
            ..SavedState::default()
        }
    }

    pub fn save(&self) -> Result<()> {
        self.store.save(&self.saved_state())
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if !self.conn_backlog.is_empty() {
                Some(Duration::ZERO)
            } else if self.accept_pending {
                Some(Duration::from_millis(100))
            } else {
                self.shared
                    .dp
                    .next_timeout()
                    .map(|at| at.since(self.now()) + Duration::from_millis(1))
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
                    WAKE => self.take_failures(),
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
            if self.accept_pending {
                self.accept();
            }
            let aged = self.shared.dp.handle_timeout(self.now());
            if aged > 0 {
                tracing::debug!(aged, "aged FDB entries");
            }
        }
    }

    /// Marks down the ports whose forwarding threads found their TAP broken.
    fn take_failures(&mut self) {
        while let Ok((id, problem)) = self.failures.try_recv() {
            let name = self
                .ports
                .get(&id)
                .map(|p| port_name(&p.saved))
                .unwrap_or_default();
            tracing::warn!(port = %id, %name, "TAP failed, port is down: {problem}");
            self.mark_down(id, problem);
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
            if self.conns.len() >= MAX_CONNS {
                self.accept_pending = true;
                return;
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
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
                    self.conns.insert(token, Conn::new(stream));
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

    /// Gives the connection `token` one turn: flush answers, read (within budget),
    /// answer up to a batch of requests, flush again.
    fn serve_conn(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        conn.flush();
        let stopped_at_budget = conn.wants_input() && conn.fill();
        for _ in 0..crate::conn::LINES_PER_TURN {
            let Some(line) = conn.next_line() else { break };
            let answer = ctl::handle_line(self, &line);
            conn.push_answer(&answer);
        }
        conn.end_turn(|| ctl::error_line("request too long (over 1 MiB); closing the connection"));
        conn.flush();
        if conn.finished() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if self.accept_pending {
                self.accept();
            }
            return;
        }
        let interest = conn.interest();
        if self
            .poll
            .registry()
            .reregister(&mut conn.stream, token, interest)
            .is_err()
        {
            return;
        }
        if conn.has_more(stopped_at_budget) {
            self.conn_backlog.push_back(token);
        }
        self.conns.insert(token, conn);
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
        self.vxlan_threads.clear();
        let ids: Vec<PortId> = self.ports.keys().copied().collect();
        for id in ids {
            drop(self.uninstall_tap(id));
        }
        // The uplink goes with this process, and with it the routes; the NAT rules would
        // stay, so they go too (the next start writes them again).
        if self.networks.iter().any(|n| n.masquerade) {
            if let Err(err) = nat::remove() {
                tracing::warn!("cannot remove the NAT rules: {err}");
            }
        }
        self.shared.set_uplink(None);
        self.uplink = None;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `label/ifname`, the name users see.
pub fn port_name(port: &SavedPort) -> String {
    format!("{}/{}", port.label, port.ifname)
}

/// Finds a saved port's TAP again, after checking that the namespace path still names
/// the very namespace the port was attached in (same cookie, same boot).
fn reopen(port: &SavedPort, same_boot: bool) -> Result<Tap> {
    let advice = "remove the port with `swctl port del` (or `nsutil detach`) and attach again";
    if !same_boot {
        anyhow::bail!(
            "the machine rebooted since the port was attached, so its TAP is gone; {advice}"
        );
    }
    let file = netns::Netns::open_path(&port.netns)
        .with_context(|| format!("namespace {} is gone; {advice}", port.netns.display()))?;
    let identity = file.identity();
    if identity.cookie != port.netns_cookie {
        anyhow::bail!(
            "{} now names a different namespace than the one attached; {advice}",
            port.netns.display()
        );
    }
    Ok(Tap::reopen_in(&file, port.ifindex)?)
}

/// Binds the control socket with mode 0600, replacing a stale socket file but never a
/// live daemon's.
fn bind_control_socket(path: &Path) -> Result<UnixListener> {
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
    // Create the socket with no group/other permissions from the start: no window in
    // which another user could connect.
    let old_mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old_mask);
    bound.with_context(|| format!("cannot listen on {}", path.display()))
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
