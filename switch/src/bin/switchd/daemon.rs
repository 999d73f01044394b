//! The event loop: TAP ports, the control socket and signals on one `mio` poll.
//!
//! One thread does everything, so the forwarding core needs no locks. A readable TAP is
//! drained in batches; ports that still have frames after their batch go to the back of
//! a ready queue, so one busy port cannot starve the others. With nothing to do the loop
//! sleeps in `epoll_wait` until a frame, a request, a signal, or the next FDB expiry.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use switchyard::control::VniMapping;
use switchyard::fdb::FdbConfig;
use switchyard::forward::Egress;
use switchyard::wire::{vnet, PacketBuf, VnetHdr, VNET_HDR_LEN};
use switchyard::{Decision, DropReason, PortId, Switch, Time};
use switchyard_encap::coalesce::{self, TcpSegment};
use switchyard_encap::segment::{GsoKind, Offload};
use switchyard_encap::vxlan;

use crate::conn::Conn;
use crate::ctl;
use crate::netns;
use crate::state::{SavedOverlay, SavedPeer, SavedPort, SavedState, StateStore};
use crate::tap::Tap;
use crate::vtep::{Batch, SendFailure, Vtep, RX_OFFSET};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const VXLAN: Token = Token(2);
const FIRST_CONN: usize = 16;
/// Ports use tokens from here up: `PORT_TOKENS + port id`.
const PORT_TOKENS: usize = 1 << 32;

/// Frames read from one port before the loop looks at the others.
const BATCH: usize = 64;
/// A TCP super-frame is at most 64 KiB plus link headers; room for that and the vnet header.
const MAX_WIRE_LEN: usize = 65536 + 1024;
/// Control connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 256;

/// A port: what is saved about it, and its TAP while it has one.
pub struct PortEntry {
    pub saved: SavedPort,
    pub tap: Option<Tap>,
    /// Why the port is not forwarding, when it is not.
    pub problem: Option<String>,
}

pub struct Options {
    pub socket: PathBuf,
    pub fdb: FdbConfig,
    pub vtep: Option<VtepOptions>,
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
    pub switch: Switch,
    pub ports: BTreeMap<PortId, PortEntry>,
    pub peers: BTreeMap<PortId, Peer>,
    pub vtep: Option<Vtep>,
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
    pub started: Instant,
    packet: PacketBuf,
    ready: VecDeque<PortId>,
    ready_set: HashSet<PortId>,
    vxlan_ready: bool,
    /// Where VXLAN reads land (a GRO run of datagrams is up to 64 KiB).
    vxlan_rx: Vec<u8>,
    /// Where runs of TCP segments are merged.
    merge_buf: Vec<u8>,
}

fn port_token(id: PortId) -> Token {
    Token(PORT_TOKENS + id.0 as usize)
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
        let mut switch = Switch::new(options.fdb);
        let vtep = match &options.vtep {
            Some(vtep_options) => {
                let mut vtep = Vtep::bind(vtep_options.local, vtep_options.udp_checksums)?;
                poll.registry()
                    .register(vtep.rx_socket(), VXLAN, Interest::READABLE)
                    .context("cannot watch the VXLAN socket")?;
                switch.set_accept_inner_tagged(vtep_options.accept_inner_tagged);
                Some(vtep)
            }
            None if !saved.overlay.is_empty() => anyhow::bail!(
                "the state directory has a VXLAN configuration ({} VNI mappings, {} peers) but switchd was started without --vtep; pass --vtep ADDR",
                saved.overlay.map.len(),
                saved.overlay.peers.len()
            ),
            None => None,
        };
        let mut daemon = Daemon {
            poll,
            switch,
            ports: BTreeMap::new(),
            peers: BTreeMap::new(),
            vtep,
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
            started: Instant::now(),
            packet: PacketBuf::with_capacity(MAX_WIRE_LEN, true),
            ready: VecDeque::new(),
            ready_set: HashSet::new(),
            vxlan_ready: false,
            vxlan_rx: vec![0; MAX_WIRE_LEN],
            merge_buf: Vec::with_capacity(MAX_WIRE_LEN),
        };
        daemon.restore(saved);
        Ok(daemon)
    }

    pub fn now(&self) -> Time {
        Time::from_duration(self.started.elapsed())
    }

    /// Reattaches every saved port and reinstalls static FDB entries.
    fn restore(&mut self, saved: SavedState) {
        let same_boot = !saved.boot_id.is_empty() && saved.boot_id == self.boot_id;
        for port in saved.ports {
            let id = port.id;
            let name = port_name(&port);
            self.switch.set_port(id, port.mode.clone());
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
                    let _ = self.switch.set_port_up(id, false);
                }
            }
        }
        for mapping in &saved.overlay.map {
            if let Err(err) = self.switch.map_vni(mapping.vlan, mapping.vni) {
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
                    .switch
                    .fdb_mut()
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
    }

    /// Adds the remote VTEP at `addr` as tunnel port `id` and learns the path MTU to it.
    pub fn add_peer(&mut self, id: PortId, addr: SocketAddr) -> Result<Peer> {
        let vtep = self
            .vtep
            .as_mut()
            .context("switchd was started without --vtep, so it has no VXLAN overlay; restart it with --vtep ADDR")?;
        self.switch.add_peer(id, addr)?;
        let mtu = vtep.learn_path_mtu(addr);
        tracing::info!(%addr, port = %id, path_mtu = mtu, "VXLAN peer added");
        let peer = Peer { id, addr };
        self.peers.insert(id, peer);
        Ok(peer)
    }

    /// Removes the remote VTEP at `addr` and everything learned behind it.
    pub fn remove_peer(&mut self, addr: IpAddr) -> Result<Peer> {
        let id = self.switch.remove_peer(addr)?;
        if let Some(vtep) = self.vtep.as_mut() {
            vtep.forget_peer(addr);
        }
        self.peers.remove(&id).context("peer vanished")
    }

    /// Starts watching `tap` as port `id` and marks the port up.
    pub fn install_tap(&mut self, id: PortId, tap: Tap) -> Result<()> {
        let (raw_fd, name) = (tap.raw_fd(), tap.name().to_string());
        // The port owns the TAP before anything can fail, so that whoever undoes a failed
        // install finds it there (and can destroy it, for a port being created).
        let entry = self.ports.get_mut(&id).context("port vanished")?;
        entry.tap = Some(tap);
        self.poll
            .registry()
            .register(&mut SourceFd(&raw_fd), port_token(id), Interest::READABLE)
            .with_context(|| format!("cannot watch TAP {name}"))?;
        if let Some(entry) = self.ports.get_mut(&id) {
            entry.problem = None;
        }
        let _ = self.switch.set_port_up(id, true);
        // Frames may have queued before we registered; edge-triggered epoll would not say so.
        self.mark_ready(id);
        Ok(())
    }

    /// Stops watching port `id`'s TAP and hands it back (it stays in the namespace).
    pub fn uninstall_tap(&mut self, id: PortId) -> Option<Tap> {
        let tap = self.ports.get_mut(&id)?.tap.take()?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&tap.raw_fd()));
        self.ready_set.remove(&id);
        Some(tap)
    }

    fn mark_ready(&mut self, id: PortId) {
        if self.ready_set.insert(id) {
            self.ready.push_back(id);
        }
    }

    /// The port stops forwarding until it is reattached, and says why.
    fn mark_down(&mut self, id: PortId, problem: String) {
        drop(self.uninstall_tap(id));
        let _ = self.switch.set_port_up(id, false);
        if let Some(entry) = self.ports.get_mut(&id) {
            entry.problem = Some(problem);
        }
    }

    pub fn saved_state(&self) -> SavedState {
        let mut static_fdb: Vec<_> = self
            .switch
            .fdb()
            .entries(self.now())
            .filter(|e| e.is_static)
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
                map: self
                    .switch
                    .vni_map()
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
            } else if self.ready.is_empty() && !self.vxlan_ready {
                self.switch
                    .next_timeout()
                    .map(|at| at.since(self.now()) + Duration::from_millis(1))
            } else {
                Some(Duration::ZERO)
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
                    VXLAN => self.vxlan_ready = true,
                    SIGNALS => {
                        if let Some(signal) = self.take_signal() {
                            tracing::info!("received {signal}, shutting down");
                            return Ok(());
                        }
                    }
                    Token(t) if t >= PORT_TOKENS => {
                        self.mark_ready(PortId((t - PORT_TOKENS) as u32))
                    }
                    token => self.serve_conn(token),
                }
            }
            self.serve_ready_ports();
            self.serve_conn_backlog();
            if self.accept_pending {
                self.accept();
            }
            let now = self.now();
            if self.switch.next_timeout().is_some_and(|at| at <= now) {
                let aged = self.switch.handle_timeout(now);
                tracing::debug!(aged, "aged FDB entries");
            }
        }
    }

    fn take_signal(&mut self) -> Option<Signal> {
        match self.signals.read_signal() {
            Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
            _ => None,
        }
    }

    /// Gives every ready port, and the VXLAN socket, one batch, in turn.
    fn serve_ready_ports(&mut self) {
        if self.vxlan_ready {
            self.vxlan_ready = match self.drain_vxlan() {
                Ok(more) => more,
                Err(err) => {
                    tracing::warn!("reading the VXLAN socket failed: {err}");
                    false
                }
            };
        }
        for _ in 0..self.ready.len() {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            match self.drain(id) {
                Ok(true) => self.ready.push_back(id),
                Ok(false) => {
                    self.ready_set.remove(&id);
                }
                Err(err) => {
                    self.ready_set.remove(&id);
                    let name = self
                        .ports
                        .get(&id)
                        .map(|p| port_name(&p.saved))
                        .unwrap_or_default();
                    tracing::warn!(port = %id, %name, "TAP failed, port is down: {err}");
                    self.mark_down(
                        id,
                        format!("TAP read failed: {err}; the interface was probably deleted inside the container: remove the port with `swctl port del {id}` and attach again"),
                    );
                }
            }
        }
    }

    /// Forwards up to one batch of frames from port `id`. Ok(true) if more may be waiting.
    fn drain(&mut self, id: PortId) -> io::Result<bool> {
        let now = self.now();
        for _ in 0..BATCH {
            let Some(tap) = self.ports.get(&id).and_then(|p| p.tap.as_ref()) else {
                return Ok(false);
            };
            let len = match tap.read(self.packet.read_space()) {
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if len > MAX_WIRE_LEN {
                // The TAP reported more than fitted: the frame was cut. Never forward it.
                self.switch.record_tx_drop(id, DropReason::Malformed);
                continue;
            }
            if len < VNET_HDR_LEN {
                continue;
            }
            self.packet.set_len(len);
            let decision = self.switch.process(now, id, self.packet.frame());
            let (ports, vtep) = (&self.ports, &mut self.vtep);
            self.switch
                .execute(decision, &mut self.packet, |switch, egress, packet| {
                    transmit(ports, vtep, switch, id, egress, packet)
                });
        }
        Ok(true)
    }

    /// Forwards up to one batch of VXLAN reads. Ok(true) if more may be waiting.
    fn drain_vxlan(&mut self) -> io::Result<bool> {
        let now = self.now();
        for _ in 0..BATCH {
            let Some(vtep) = self.vtep.as_ref() else {
                return Ok(false);
            };
            let Some(batch) = vtep.recv_batch(&mut self.vxlan_rx)? else {
                return Ok(false);
            };
            let rx = std::mem::take(&mut self.vxlan_rx);
            self.forward_datagrams(now, &batch, &rx[..batch.len]);
            self.vxlan_rx = rx;
        }
        Ok(true)
    }

    /// Forwards the datagrams of one read, merging runs of consecutive TCP segments of
    /// one flow (same VXLAN header, headers that allow it) into super-frames.
    fn forward_datagrams(&mut self, now: Time, batch: &Batch, data: &[u8]) {
        let datagrams: Vec<&[u8]> = data.chunks(batch.segment).collect();
        let mut run: Vec<(&[u8], TcpSegment)> = Vec::with_capacity(datagrams.len());
        let mut merged_payload = 0;
        for datagram in datagrams {
            let inner = datagram.get(vxlan::HEADER_LEN..).unwrap_or_default();
            let segment = TcpSegment::parse(inner);
            if let (Some(segment), Some(&(last, last_segment))) = (segment, run.last()) {
                let same_header =
                    datagram.get(..vxlan::HEADER_LEN) == last.get(..vxlan::HEADER_LEN);
                let last_inner = &last[vxlan::HEADER_LEN..];
                if same_header
                    && coalesce::continues(
                        last_inner,
                        &last_segment,
                        inner,
                        &segment,
                        merged_payload,
                    )
                {
                    merged_payload += segment.payload_len();
                    run.push((datagram, segment));
                    continue;
                }
            }
            self.forward_run(now, batch.from, &run);
            run.clear();
            match segment {
                Some(segment) => {
                    merged_payload = segment.payload_len();
                    run.push((datagram, segment));
                }
                None => self.forward_datagram(now, batch.from, datagram),
            }
        }
        self.forward_run(now, batch.from, &run);
    }

    /// Forwards a run of mergeable datagrams: one alone as it is, several as one frame.
    fn forward_run(&mut self, now: Time, from: SocketAddr, run: &[(&[u8], TcpSegment)]) {
        match run {
            [] => {}
            [(datagram, _)] => self.forward_datagram(now, from, datagram),
            [(first, _), ..] => {
                let decision = self.switch.process_vxlan(now, from.ip(), first);
                if let Decision::Drop(_) = decision {
                    return;
                }
                let inner: Vec<(&[u8], TcpSegment)> = run
                    .iter()
                    .map(|(d, s)| (&d[vxlan::HEADER_LEN..], *s))
                    .collect();
                let offload = coalesce::merge(&inner, &mut self.merge_buf);
                load_offloaded(&mut self.packet, &offload, &self.merge_buf);
                self.execute_from_peer(decision, from);
            }
        }
    }

    /// Forwards one VXLAN datagram as it came.
    fn forward_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        let space = self.packet.read_space();
        let Some(room) = space.get_mut(RX_OFFSET..RX_OFFSET + datagram.len()) else {
            return;
        };
        room.copy_from_slice(datagram);
        self.packet.set_len(RX_OFFSET + datagram.len());
        let decision = self.switch.process_vxlan(now, from.ip(), datagram);
        if let Decision::Drop(_) = decision {
            return;
        }
        Vtep::strip_header(&mut self.packet);
        self.execute_from_peer(decision, from);
    }

    fn execute_from_peer(&mut self, decision: Decision, from: SocketAddr) {
        let in_port = self.switch.peer_port(from.ip()).unwrap_or(PortId(0));
        let (ports, vtep) = (&self.ports, &mut self.vtep);
        self.switch
            .execute(decision, &mut self.packet, |switch, egress, packet| {
                transmit(ports, vtep, switch, in_port, egress, packet)
            });
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
                    self.next_conn = if self.next_conn + 1 >= PORT_TOKENS {
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
        let ids: Vec<PortId> = self.ports.keys().copied().collect();
        for id in ids {
            drop(self.uninstall_tap(id));
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Puts `frame` into `packet` behind a vnet header that describes `offload` (a merged
/// TCP super-frame: GSO, checksum left for the receiving kernel).
fn load_offloaded(packet: &mut PacketBuf, offload: &Offload, frame: &[u8]) {
    let space = packet.read_space();
    let Some(room) = space.get_mut(..VNET_HDR_LEN + frame.len()) else {
        return;
    };
    room[VNET_HDR_LEN..].copy_from_slice(frame);
    if let Ok(mut hdr) = VnetHdr::new_checked(&mut room[..VNET_HDR_LEN]) {
        let start = usize::from(offload.csum_start);
        let tcp_header = frame
            .get(start + 12)
            .map_or(20, |b| usize::from(b >> 4) * 4);
        hdr.set_flags(vnet::F_NEEDS_CSUM);
        hdr.set_gso_type(match offload.kind {
            GsoKind::TcpV4 => vnet::GSO_TCPV4,
            GsoKind::TcpV6 => vnet::GSO_TCPV6,
            _ => vnet::GSO_NONE,
        });
        hdr.set_gso_size(offload.segment_size);
        hdr.set_hdr_len((start + tcp_header) as u16);
        hdr.set_csum_start(offload.csum_start);
        hdr.set_csum_offset(offload.csum_offset);
    }
    packet.set_len(VNET_HDR_LEN + frame.len());
}

/// Sends one copy of a frame that came in on `in_port`: to a TAP, or encapsulated to a
/// VTEP. A frame too big for the overlay is answered, when it should be, with ICMP
/// "fragmentation needed" back through `in_port`.
fn transmit(
    ports: &BTreeMap<PortId, PortEntry>,
    vtep: &mut Option<Vtep>,
    switch: &Switch,
    in_port: PortId,
    egress: &Egress,
    packet: &PacketBuf,
) -> Result<(), DropReason> {
    let Some((remote, vni)) = switch.vxlan_target(egress) else {
        return match ports.get(&egress.port).and_then(|p| p.tap.as_ref()) {
            Some(tap) if tap.write(packet.wire()).is_ok() => Ok(()),
            _ => Err(DropReason::TxError),
        };
    };
    let vtep = vtep.as_mut().ok_or(DropReason::TxError)?;
    match vtep.send(remote, vni, packet) {
        Ok(()) => Ok(()),
        Err(SendFailure::TooBig { icmp }) => {
            if let Some(icmp) = icmp {
                let tag = switch
                    .port_mode(in_port)
                    .and_then(|m| m.egress_tag(egress.vlan));
                let tap = ports.get(&in_port).and_then(|p| p.tap.as_ref());
                if let (Some(tag), Some(tap)) = (tag, tap) {
                    let mut reply =
                        PacketBuf::from_wire(&[&[0u8; VNET_HDR_LEN][..], &icmp].concat(), true);
                    if reply.set_vlan_tag(tag).is_ok() && tap.write(reply.wire()).is_ok() {
                        vtep.icmp_sent += 1;
                    }
                }
            }
            Err(DropReason::TooBig)
        }
        Err(SendFailure::Offload(err)) => {
            tracing::debug!("cannot segment a frame for VXLAN: {err}");
            Err(DropReason::BadOffload)
        }
        Err(SendFailure::Io(err)) => {
            tracing::debug!(%remote, "VXLAN send failed: {err}");
            Err(DropReason::TxError)
        }
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
    let file = netns::open(&port.netns)
        .with_context(|| format!("namespace {} is gone; {advice}", port.netns.display()))?;
    let identity = netns::identity(&file)?;
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
