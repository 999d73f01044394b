//! The data plane: the threads that move frames.
//!
//! Every up TAP port has a thread of its own, and every VXLAN receiving socket one more.
//! Each sleeps in `poll(2)` on its descriptor and a stop eventfd, so an idle switch uses
//! no CPU, and several ports are served at once: on a two-core machine the thread that
//! runs one container's receive path (a TAP write is the receiver's TCP input) no longer
//! holds up every other port.
//!
//! The forwarding core is one [`Switch`] behind a mutex. A thread holds it only to decide
//! (`process`, the list of egresses) and to count what it sent, never while it reads,
//! writes or segments, so the threads do their I/O in parallel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use switchyard::forward::Egress;
use switchyard::router::{Router, RouterOutput, Verdict};
use switchyard::wire::{
    vnet, EtherType, PacketBuf, VlanId, VnetHdr, HEADER_LEN, VLAN_TAG_LEN, VNET_HDR_LEN,
};
use switchyard::{Decision, DropReason, PortId, Switch, Time};
use switchyard_encap::coalesce::{self, TcpSegment};
use switchyard_encap::segment::{GsoKind, Offload};
use switchyard_encap::vxlan::{self, Vni};

use crate::vtep::{Batch, SendFailure, Vtep, RX_OFFSET};
use switchyard_os::tap::Tap;

/// Frames a thread forwards between two looks at its stop signal.
const BATCH: usize = 64;
/// A TCP super-frame is at most 64 KiB plus link headers; room for that and the vnet header.
pub const MAX_WIRE_LEN: usize = 65536 + 1024;

/// The switch port switchd's router sits on, a trunk of every network's VLAN. Port ids
/// of TAPs and peers start at 1, so 0 is never anything else.
pub const ROUTER_PORT: PortId = PortId(0);

/// What the forwarding threads share.
pub struct Shared {
    switch: Mutex<Switch>,
    router: Mutex<Router>,
    /// The TUN device facing the host, once a network needs it.
    uplink: RwLock<Option<Arc<Tap>>>,
    /// The TAP of every up port, for writing frames to it.
    taps: RwLock<HashMap<PortId, Arc<Tap>>>,
    pub vtep: Option<Vtep>,
    busy_poll: BusyPoll,
    started: Instant,
    /// Threads report a TAP that failed here; the control thread marks the port down.
    failures: crossbeam_channel::Sender<(PortId, String)>,
    wake_control: mio::Waker,
}

impl Shared {
    pub fn new(
        switch: Switch,
        vtep: Option<Vtep>,
        busy_poll: BusyPoll,
        failures: crossbeam_channel::Sender<(PortId, String)>,
        wake_control: mio::Waker,
    ) -> Shared {
        Shared {
            switch: Mutex::new(switch),
            router: Mutex::new(Router::new()),
            uplink: RwLock::new(None),
            taps: RwLock::new(HashMap::new()),
            vtep,
            busy_poll,
            started: Instant::now(),
            failures,
            wake_control,
        }
    }

    pub fn now(&self) -> Time {
        Time::from_duration(self.started.elapsed())
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The forwarding core. A thread that panicked while holding it left it consistent
    /// enough to keep forwarding (every update is a few field writes), so poison is ignored.
    pub fn switch(&self) -> MutexGuard<'_, Switch> {
        self.switch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The router. Lock order: never take the switch while holding it.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_uplink(&self, tun: Option<Arc<Tap>>) {
        *self.uplink.write().unwrap_or_else(|p| p.into_inner()) = tun;
    }

    fn uplink(&self) -> Option<Arc<Tap>> {
        self.uplink
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_tap(&self, id: PortId, tap: Option<Arc<Tap>>) {
        let mut taps = self.taps.write().unwrap_or_else(|p| p.into_inner());
        match tap {
            Some(tap) => taps.insert(id, tap),
            None => taps.remove(&id),
        };
    }

    fn tap(&self, id: PortId) -> Option<Arc<Tap>> {
        self.taps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }
}

/// A forwarding thread, stopped and joined when dropped.
pub struct Worker {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn(name: String, work: impl FnOnce(&EventFd) + Send + 'static) -> io::Result<Worker> {
    let stop = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || work(&thread_stop))?;
    Ok(Worker {
        stop,
        thread: Some(thread),
    })
}

/// How long a forwarding thread keeps trying to read after its descriptor ran dry, before
/// it goes back to sleep in `poll(2)`: the userspace counterpart of the kernel's
/// `net.core.busy_poll`. Under load the next frame is usually microseconds away, and
/// catching it awake saves the sleep and the wake-up (an inter-processor interrupt, and a
/// halted vCPU to resume, both costly in a VM). Between tries the thread yields, so a
/// container that has work on that CPU runs first. A thread polls only right after it
/// forwarded something, so an idle switch still sleeps and uses no CPU.
#[derive(Clone, Copy, Debug)]
pub struct BusyPoll(pub Duration);

/// One wake-up's reading: counts frames against the batch and decides, when the
/// descriptor is dry, whether to keep trying.
struct Reading {
    budget: usize,
    busy_poll: Duration,
    dry_since: Option<Instant>,
}

impl Reading {
    fn new(busy_poll: BusyPoll) -> Reading {
        Reading {
            budget: BATCH,
            busy_poll: busy_poll.0,
            dry_since: None,
        }
    }

    /// Whether to read again: the batch is not used up.
    fn more(&self) -> bool {
        self.budget > 0
    }

    fn got_one(&mut self) {
        self.budget = self.budget.saturating_sub(1);
        self.dry_since = None;
    }

    /// Nothing to read: true to try again (still within the busy-poll time), false to
    /// go back to sleep.
    fn keep_trying(&mut self) -> bool {
        let since = *self.dry_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.busy_poll {
            // Let anything else runnable on this CPU go first (a container answering
            // is worth more than the next frame a moment earlier).
            std::thread::yield_now();
            true
        } else {
            false
        }
    }
}

/// Sleeps until `fd` is readable (true) or `stop` is signalled (false).
fn wait_readable(fd: BorrowedFd<'_>, stop: &EventFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let stopped = fds[1].revents().is_some_and(|r| !r.is_empty());
                if stopped {
                    return false;
                }
                if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                    return true;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Starts the thread that forwards what the container behind port `id` sends.
pub fn spawn_port(shared: Arc<Shared>, id: PortId, tap: Arc<Tap>) -> io::Result<Worker> {
    spawn(format!("port{id}"), move |stop| {
        let mut forwarder = Forwarder::new();
        let busy_poll = shared.busy_poll;
        while wait_readable(tap.as_fd(), stop) {
            let mut reading = Reading::new(busy_poll);
            while reading.more() {
                let len = match tap.read(forwarder.packet.read_space()) {
                    Ok(len) => {
                        reading.got_one();
                        len
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        if reading.keep_trying() {
                            continue;
                        }
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        shared.switch().set_port_up(id, false).ok();
                        let problem = format!(
                            "TAP read failed: {err}; the interface was probably deleted inside the container: remove the port with `swctl port del {id}` and attach again"
                        );
                        let _ = shared.failures.send((id, problem));
                        let _ = shared.wake_control.wake();
                        return;
                    }
                };
                if len > MAX_WIRE_LEN {
                    // The TAP reported more than fitted: the frame was cut. Never forward it.
                    shared.switch().record_tx_drop(id, DropReason::Malformed);
                    continue;
                }
                if len < VNET_HDR_LEN {
                    continue;
                }
                forwarder.packet.set_len(len);
                let decision = shared
                    .switch()
                    .process(shared.now(), id, forwarder.packet.frame());
                forwarder.forward(&shared, id, decision);
            }
        }
    })
}

/// Starts the thread that reads the VTEP's receiving socket number `index`.
pub fn spawn_vxlan(shared: Arc<Shared>, index: usize) -> io::Result<Worker> {
    spawn(format!("vxlan{index}"), move |stop| {
        let mut forwarder = Forwarder::new();
        let mut rx = vec![0u8; MAX_WIRE_LEN];
        let Some(vtep) = shared.vtep.as_ref() else {
            return;
        };
        while wait_readable(vtep.rx_fd(index), stop) {
            let mut reading = Reading::new(shared.busy_poll);
            while reading.more() {
                match vtep.recv_batch(index, &mut rx) {
                    Ok(Some(batch)) => {
                        reading.got_one();
                        forwarder.forward_datagrams(&shared, &batch, &rx[..batch.len])
                    }
                    Ok(None) => {
                        // Nothing more now: a held frame goes without waiting.
                        forwarder.flush_pending(&shared);
                        if !reading.keep_trying() {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!("reading the VXLAN socket failed: {err}");
                        break;
                    }
                }
            }
            forwarder.flush_pending(&shared);
        }
    })
}

/// Starts the thread that reads what the host routes into the uplink TUN: IP packets
/// the router turns into frames on a network's VLAN.
pub fn spawn_uplink(shared: Arc<Shared>, tun: Arc<Tap>) -> io::Result<Worker> {
    spawn("uplink".to_string(), move |stop| {
        let mut forwarder = Forwarder::new();
        while wait_readable(tun.as_fd(), stop) {
            let mut reading = Reading::new(shared.busy_poll);
            while reading.more() {
                let len = match tun.read(forwarder.packet.read_space()) {
                    Ok(len) => {
                        reading.got_one();
                        len
                    }
                    Err(err)
                        if err.kind() == io::ErrorKind::WouldBlock && reading.keep_trying() =>
                    {
                        continue
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        if err.kind() != io::ErrorKind::WouldBlock {
                            tracing::warn!("reading the uplink failed: {err}");
                        }
                        break;
                    }
                };
                if len <= VNET_HDR_LEN || len > MAX_WIRE_LEN {
                    continue;
                }
                forwarder.packet.set_len(len);
                forwarder.route_from_uplink(&shared);
            }
        }
    })
}

/// One thread's buffers for forwarding.
struct Forwarder {
    packet: PacketBuf,
    /// Where frames are segmented for VXLAN.
    scratch: Vec<u8>,
    egresses: Vec<Egress>,
    /// Per egress: where it goes on the underlay, if it is a tunnel port.
    targets: Vec<Option<(SocketAddr, Vni)>>,
    outcomes: Vec<(PortId, Result<usize, DropReason>)>,
    /// What the router answered (ARP, ICMP, released packets), sent after the frame.
    router_out: Vec<RouterOutput>,
    /// A copy of a flooded frame for the router, which may rewrite what it gets.
    router_copy: PacketBuf,
    /// A merged TCP super-frame in `packet` that the next receive may continue.
    pending: Option<Pending>,
}

/// Headers (Ethernet, IP and TCP with options) fit in this many bytes.
const MAX_HEADERS: usize = 14 + 60 + 60;

/// A TCP super-frame merged from VXLAN datagrams and held in the forwarder's `packet`
/// instead of being written at once, because the next receive may continue it: the
/// sender's 64 KiB super-frame leaves as two UDP GSO sends (at most 64 KiB of datagrams
/// each), so it arrives as two batches. Merging across them writes it to the TAP as one
/// frame again, not as a 62 KiB frame and a 3 KiB one: half the receiver's TCP work and
/// half its ACKs. Held only until the socket has nothing more to read.
struct Pending {
    from: SocketAddr,
    in_port: PortId,
    decision: Decision,
    /// The VXLAN header every datagram of it carried.
    vxlan: [u8; vxlan::HEADER_LEN],
    /// The first segment's parse: where the merged frame's headers are.
    first: TcpSegment,
    /// The last segment's headers and parse, to compare the next datagram with.
    last_headers: [u8; MAX_HEADERS],
    last: TcpSegment,
    /// Bytes of TCP payload merged so far.
    payload: usize,
}

impl Forwarder {
    fn new() -> Forwarder {
        Forwarder {
            packet: PacketBuf::with_capacity(MAX_WIRE_LEN, true),
            scratch: Vec::with_capacity(128 * 1024),
            egresses: Vec::new(),
            targets: Vec::new(),
            outcomes: Vec::new(),
            router_out: Vec::new(),
            // The frame may carry a tag pushed for an earlier egress.
            router_copy: PacketBuf::with_capacity(MAX_WIRE_LEN + VLAN_TAG_LEN, true),
            pending: None,
        }
    }

    /// Carries out `decision` for the frame in `self.packet`, which came in on `in_port`:
    /// decides the egresses under the lock, sends without it, counts under it again.
    fn forward(&mut self, shared: &Shared, in_port: PortId, decision: Decision) {
        if let Decision::Drop(_) = decision {
            return;
        }
        {
            let switch = shared.switch();
            switch.egresses_into(decision, &mut self.egresses);
            self.targets.clear();
            self.targets
                .extend(self.egresses.iter().map(|e| switch.vxlan_target(e)));
        }
        self.outcomes.clear();
        let copies = self.egresses.len();
        for (index, egress) in self.egresses.iter().enumerate() {
            if egress.port == ROUTER_PORT {
                let sent = if copies == 1 {
                    route_from_switch(shared, egress.vlan, &mut self.packet, &mut self.router_out)
                } else {
                    // Into the buffer kept for it: no allocation per flooded frame.
                    self.router_copy
                        .load(self.packet.wire())
                        .map_err(|_| DropReason::Malformed)
                        .and_then(|()| {
                            route_from_switch(
                                shared,
                                egress.vlan,
                                &mut self.router_copy,
                                &mut self.router_out,
                            )
                        })
                };
                self.outcomes.push((egress.port, sent));
                continue;
            }
            let target = &self.targets[index];
            if self.packet.set_vlan_tag(egress.tag).is_err() {
                self.outcomes
                    .push((egress.port, Err(DropReason::Malformed)));
                continue;
            }
            let sent = match target {
                None => match shared.tap(egress.port) {
                    Some(tap) if tap.write(self.packet.wire()).is_ok() => Ok(()),
                    _ => Err(DropReason::TxError),
                },
                Some((remote, vni)) => tunnel_send(
                    shared,
                    in_port,
                    egress,
                    *remote,
                    *vni,
                    &self.packet,
                    &mut self.scratch,
                ),
            };
            self.outcomes
                .push((egress.port, sent.map(|()| self.packet.frame().len())));
        }
        {
            let mut switch = shared.switch();
            for (port, outcome) in &self.outcomes {
                match outcome {
                    Ok(bytes) => switch.record_tx(*port, *bytes),
                    Err(reason) => switch.record_tx_drop(*port, *reason),
                }
            }
        }
        if !self.router_out.is_empty() {
            self.send_router_output(shared);
        }
    }

    /// Sends what the router produced besides its verdict: frames into the switch as if
    /// they came in on the router's port, packets out of the uplink.
    fn send_router_output(&mut self, shared: &Shared) {
        let outputs = std::mem::take(&mut self.router_out);
        for output in &outputs {
            match output {
                RouterOutput::ToSwitch { vlan, frame } => {
                    let space = self.packet.read_space();
                    let Some(room) = space.get_mut(..VNET_HDR_LEN + frame.len()) else {
                        continue;
                    };
                    room[..VNET_HDR_LEN].fill(0);
                    room[VNET_HDR_LEN..].copy_from_slice(frame);
                    self.packet.set_len(VNET_HDR_LEN + frame.len());
                    self.inject(shared, *vlan);
                }
                RouterOutput::ToUplink { packet } => {
                    if let Some(tun) = shared.uplink() {
                        let wire = [&[0u8; VNET_HDR_LEN][..], packet].concat();
                        let _ = tun.write(&wire);
                    }
                }
            }
        }
        // Keep the allocation; frames injected above come from the router's port, which
        // the switch never sends back to the router, so nothing new was added meanwhile.
        self.router_out = outputs;
        self.router_out.clear();
    }

    /// Forwards the frame in `self.packet` (untagged) as if the router sent it on `vlan`.
    fn inject(&mut self, shared: &Shared, vlan: VlanId) {
        if self.packet.set_vlan_tag(Some(vlan)).is_err() {
            return;
        }
        let decision = shared
            .switch()
            .process(shared.now(), ROUTER_PORT, self.packet.frame());
        self.forward(shared, ROUTER_PORT, decision);
    }

    /// Routes the IP packet in `self.packet` (vnet header + packet, as the uplink TUN
    /// gives it) towards a container.
    fn route_from_uplink(&mut self, shared: &Shared) {
        let can_hold = self
            .packet
            .vnet_hdr()
            .is_some_and(|hdr| hdr.flags() == 0 && hdr.gso_type() == vnet::GSO_NONE);
        let verdict = shared.router().from_uplink(
            shared.now(),
            self.packet.frame_mut(),
            can_hold,
            &mut self.router_out,
        );
        if let Verdict::ToSwitch { vlan, dst, src } = verdict {
            let mut header = [0u8; HEADER_LEN];
            header[..6].copy_from_slice(&dst.0);
            header[6..12].copy_from_slice(&src.0);
            header[12..].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
            if self.packet.push_front(&header).is_ok() {
                self.inject(shared, vlan);
            }
        }
        if !self.router_out.is_empty() {
            self.send_router_output(shared);
        }
    }

    /// Forwards the datagrams of one read, merging runs of consecutive TCP segments of
    /// one flow (same VXLAN header, headers that allow it) into super-frames. A run that
    /// continues the held super-frame extends it; the read's last run is held in turn
    /// when it could go on (see [`Pending`]).
    fn forward_datagrams(&mut self, shared: &Shared, batch: &Batch, data: &[u8]) {
        let mut run: Vec<(&[u8], TcpSegment)> =
            Vec::with_capacity(data.len() / batch.segment.max(1) + 1);
        // Whether `run` continues the held frame (it may still be empty).
        let mut extends = self.pending.as_ref().is_some_and(|p| p.from == batch.from);
        let mut merged_payload = match &self.pending {
            Some(held) if extends => held.payload,
            _ => 0,
        };
        for datagram in data.chunks(batch.segment.max(1)) {
            let inner = datagram.get(vxlan::HEADER_LEN..).unwrap_or_default();
            let segment = TcpSegment::parse(inner);
            if let Some(segment) = segment {
                // What it must continue: the run's last datagram, or the held frame's.
                let previous = match (run.last(), &self.pending) {
                    (Some(&(last, last_segment)), _) => Some((
                        last.get(..vxlan::HEADER_LEN),
                        &last[vxlan::HEADER_LEN..],
                        last_segment,
                    )),
                    (None, Some(held)) if extends => {
                        Some((Some(&held.vxlan[..]), &held.last_headers[..], held.last))
                    }
                    _ => None,
                };
                let follows = previous.is_some_and(|(vxlan_header, headers, last)| {
                    datagram.get(..vxlan::HEADER_LEN) == vxlan_header
                        && coalesce::continues(headers, &last, inner, &segment, merged_payload)
                });
                if follows {
                    merged_payload += segment.payload_len();
                    run.push((datagram, segment));
                    continue;
                }
            }
            self.end_run(shared, batch.from, &run, extends, false);
            extends = false;
            run.clear();
            match segment {
                Some(segment) => {
                    merged_payload = segment.payload_len();
                    run.push((datagram, segment));
                }
                None => self.forward_datagram(shared, batch.from, datagram),
            }
        }
        self.end_run(shared, batch.from, &run, extends, true);
    }

    /// Forwards a run of mergeable datagrams (with their VXLAN headers), or adds it to
    /// the held frame when `extends`. Whatever is held and not extended is sent first.
    /// With `hold`, the result is held when it could go on rather than sent.
    fn end_run(
        &mut self,
        shared: &Shared,
        from: SocketAddr,
        run: &[(&[u8], TcpSegment)],
        extends: bool,
        hold: bool,
    ) {
        if !extends || run.is_empty() {
            self.flush_pending(shared);
        }
        let Some(&(last_datagram, last)) = run.last() else {
            return;
        };
        let inner = inner_segments(run);
        if let Some(held) = self.pending.as_mut().filter(|_| extends) {
            let held_len = self.packet.frame().len();
            let space = self.packet.read_space();
            let frame_space = space.get_mut(VNET_HDR_LEN..).unwrap_or_default();
            match coalesce::append_into(frame_space, held_len, &held.first, &inner) {
                Some((len, offload)) => {
                    write_offload(space, &offload);
                    self.packet.set_len(VNET_HDR_LEN + len);
                    held.payload += coalesce::payload_len(&inner);
                }
                None => {
                    // No room (never expected: `continues` checked the size): the held
                    // frame goes as it is, the run on its own.
                    self.flush_pending(shared);
                    return self.forward_run(shared, from, run);
                }
            }
        } else if !hold || !coalesce::open_ended(&last, coalesce::payload_len(&inner)) {
            // Nothing can continue it (mid-read, or PSH: a request, a reply): as before.
            return self.forward_run(shared, from, run);
        } else {
            // Start holding this run: decide once, for its first datagram.
            let Some((decision, in_port)) = decide_vxlan(shared, from, run[0].0) else {
                return;
            };
            if !self.merge_into_packet(&inner) {
                return;
            }
            let mut vxlan = [0u8; vxlan::HEADER_LEN];
            vxlan.copy_from_slice(&last_datagram[..vxlan::HEADER_LEN]);
            self.pending = Some(Pending {
                from,
                in_port,
                decision,
                vxlan,
                first: inner[0].1,
                last_headers: [0; MAX_HEADERS],
                last,
                payload: coalesce::payload_len(&inner),
            });
        }
        let Some(held) = self.pending.as_mut() else {
            return;
        };
        let headers = &last_datagram[vxlan::HEADER_LEN..];
        match headers.get(..last.header_len()) {
            Some(h) if hold && h.len() <= MAX_HEADERS => {
                held.last_headers[..h.len()].copy_from_slice(h);
                held.last = last;
                if !coalesce::open_ended(&last, held.payload) {
                    self.flush_pending(shared);
                }
            }
            _ => self.flush_pending(shared),
        }
    }

    /// Sends the held super-frame, if there is one.
    fn flush_pending(&mut self, shared: &Shared) {
        if let Some(held) = self.pending.take() {
            self.forward(shared, held.in_port, held.decision);
        }
    }

    /// Forwards a run of mergeable datagrams: one alone as it is, several as one frame.
    fn forward_run(&mut self, shared: &Shared, from: SocketAddr, run: &[(&[u8], TcpSegment)]) {
        match run {
            [] => {}
            [(datagram, _)] => self.forward_datagram(shared, from, datagram),
            [(first, _), ..] => {
                let Some((decision, in_port)) = decide_vxlan(shared, from, first) else {
                    return;
                };
                if self.merge_into_packet(&inner_segments(run)) {
                    self.forward(shared, in_port, decision);
                }
            }
        }
    }

    /// Forwards one VXLAN datagram as it came.
    fn forward_datagram(&mut self, shared: &Shared, from: SocketAddr, datagram: &[u8]) {
        let space = self.packet.read_space();
        let Some(room) = space.get_mut(RX_OFFSET..RX_OFFSET + datagram.len()) else {
            return;
        };
        room.copy_from_slice(datagram);
        self.packet.set_len(RX_OFFSET + datagram.len());
        let Some((decision, in_port)) = decide_vxlan(shared, from, datagram) else {
            return;
        };
        Vtep::strip_header(&mut self.packet);
        self.forward(shared, in_port, decision);
    }

    /// Merges `segments` (inner frames) into `self.packet` behind the vnet header that
    /// describes the result: straight into the buffer the TAP write goes from, so the
    /// payload is copied once. False when it does not fit (nothing to send).
    fn merge_into_packet(&mut self, segments: &[(&[u8], TcpSegment)]) -> bool {
        let space = self.packet.read_space();
        let frame_space = space.get_mut(VNET_HDR_LEN..).unwrap_or_default();
        let Some((len, offload)) = coalesce::merge_into(segments, frame_space) else {
            return false;
        };
        write_offload(space, &offload);
        self.packet.set_len(VNET_HDR_LEN + len);
        true
    }
}

/// The switch's decision for a VXLAN datagram from `from` and the port of that peer, when
/// the frame goes anywhere.
fn decide_vxlan(shared: &Shared, from: SocketAddr, datagram: &[u8]) -> Option<(Decision, PortId)> {
    let mut switch = shared.switch();
    let decision = switch.process_vxlan(shared.now(), from.ip(), datagram);
    match (decision, switch.peer_port(from.ip())) {
        (Decision::Output(_) | Decision::Flood { .. }, Some(in_port)) => Some((decision, in_port)),
        _ => None,
    }
}

/// The inner frames of a run of VXLAN datagrams, with their parses.
fn inner_segments<'a>(run: &[(&'a [u8], TcpSegment)]) -> Vec<(&'a [u8], TcpSegment)> {
    run.iter()
        .map(|(datagram, s)| (&datagram[vxlan::HEADER_LEN..], *s))
        .collect()
}

/// Hands the router a frame the switch delivered to it on `vlan`, and sends what it
/// routes to the host out of the uplink. Returns the bytes sent on (counted as the router
/// port's transmit), or why nothing was.
fn route_from_switch(
    shared: &Shared,
    vlan: VlanId,
    packet: &mut PacketBuf,
    out: &mut Vec<RouterOutput>,
) -> Result<usize, DropReason> {
    packet
        .set_vlan_tag(None)
        .map_err(|_| DropReason::Malformed)?;
    let len = packet.frame().len();
    let verdict = shared
        .router()
        .from_switch(shared.now(), vlan, packet.frame_mut(), out);
    match verdict {
        Verdict::ToUplink => {
            let tun = shared.uplink().ok_or(DropReason::NoEgress)?;
            packet
                .strip_front(HEADER_LEN)
                .map_err(|_| DropReason::Malformed)?;
            tun.write(packet.wire()).map_err(|_| DropReason::TxError)?;
            Ok(len)
        }
        // Dropped or answered by the router: counted there, not as a switch drop.
        _ => Ok(len),
    }
}

/// Sends one copy to a VTEP. A frame too big for the overlay is answered, when it should
/// be, with ICMP "fragmentation needed" back through `in_port`.
fn tunnel_send(
    shared: &Shared,
    in_port: PortId,
    egress: &Egress,
    remote: SocketAddr,
    vni: Vni,
    packet: &PacketBuf,
    scratch: &mut Vec<u8>,
) -> Result<(), DropReason> {
    let vtep = shared.vtep.as_ref().ok_or(DropReason::TxError)?;
    match vtep.send(remote, vni, packet, scratch) {
        Ok(()) => Ok(()),
        Err(SendFailure::TooBig { icmp }) => {
            if let Some(icmp) = icmp {
                let tag = shared
                    .switch()
                    .port_mode(in_port)
                    .and_then(|m| m.egress_tag(egress.vlan));
                if let (Some(tag), Some(tap)) = (tag, shared.tap(in_port)) {
                    let mut reply =
                        PacketBuf::from_wire(&[&[0u8; VNET_HDR_LEN][..], &icmp].concat(), true);
                    if reply.set_vlan_tag(tag).is_ok() && tap.write(reply.wire()).is_ok() {
                        vtep.icmp_sent.fetch_add(1, Ordering::Relaxed);
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

/// Writes the vnet header at the start of `wire` (followed by the frame) that describes
/// `offload`, a merged TCP super-frame: GSO, checksum left for the receiving kernel.
fn write_offload(wire: &mut [u8], offload: &Offload) {
    let start = usize::from(offload.csum_start);
    let tcp_header = wire
        .get(VNET_HDR_LEN + start + 12)
        .map_or(20, |b| usize::from(b >> 4) * 4);
    if let Ok(mut hdr) = VnetHdr::new_checked(wire) {
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
}
