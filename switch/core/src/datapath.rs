//! The datapath: what happens to a frame from the moment a port hands it over to the
//! moment every copy of it has been given to the I/O layer, as a sans-IO core.
//!
//! A [`Datapath`] is shared by all threads (`Arc`): the [`Switch`] (ports, VLANs, FDB,
//! overlay policy, counters) and switchd's IPv4 [`Router`]. Each forwarding thread owns
//! a [`Worker`]: its buffers, its view of the switch, and the overlay's receive-side
//! merge state. A driver (switchd's threads, or the simulator) reads a frame into the
//! worker's buffer and calls one `handle_*` method with the time and where the frame came
//! from; the worker decides, tags, encapsulates, segments, routes and answers, and hands
//! every resulting packet to the driver's [`Io`] as a [`Transmit`]: to a local port, to a
//! VTEP (VXLAN datagrams, possibly many for one `UDP_SEGMENT` send), or up the uplink.
//! The driver reports whether each send worked, and the worker counts it. The worker
//! never touches a file descriptor or a clock, so the simulator drives exactly the code
//! switchd runs (in the manner of quinn-proto's `handle_*`/`poll_transmit` and
//! boringtun's `TunnResult`).
//!
//! What the worker does after the switch's decision:
//!
//! * **Local egress**: pushes, rewrites or pops the 802.1Q tag the egress port needs
//!   (in place, in the buffer's headroom) and transmits the vnet header and frame.
//! * **The router's port** ([`ROUTER_PORT`]): hands the untagged frame to the router; a
//!   packet it routes to the host goes up the uplink, and what it answers (ARP, ICMP,
//!   released packets) comes back into the switch as if the router had sent it.
//! * **Tunnel egress**: encapsulates in VXLAN with the VLAN's VNI; a super-frame (TSO,
//!   partial checksum) is segmented to fit the path MTU and checksummed first
//!   (`switchyard_encap::segment`); a frame too big for the path is dropped and
//!   answered, when it should be, with ICMP "fragmentation needed" back through the
//!   port it came from.
//! * **VXLAN receive**: runs of datagrams of one TCP flow (a UDP GRO batch) are merged
//!   back into one super-frame (`switchyard_encap::coalesce`), and the last merged frame
//!   of a batch is *held* until the next batch continues it or the socket is empty
//!   ([`Worker::flush`]): a 64 KiB super-frame leaves its sender as two UDP GSO sends,
//!   so it arrives as two batches, and merging across them writes it to the TAP as one
//!   frame again. Nothing is held longer than until the driver finds its socket dry.
//!
//! Counting: every received frame is counted on its port (by the switch), every copy
//! sent on its egress port, and every copy that could not be sent as a drop of the
//! egress port with the reason the driver gave.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use switchyard_encap::coalesce::{self, TcpSegment};
use switchyard_encap::flow::flow_hash;
use switchyard_encap::partial::partial_checksum;
use switchyard_encap::segment::{segment, GsoKind, Offload, SegmentError};
use switchyard_encap::vxlan::{self, Vni};

use crate::dns::{DnsService, DnsStep, TcpFrame};
use crate::fdb::FdbConfig;
use crate::forward::{Decision, DropReason, Egress, Switch, View};
use crate::port::PortId;
use crate::router::{Router, RouterOutput, Verdict};
use crate::time::Time;
use crate::trace::{Step as TraceStep, Trace};
use crate::wire::{
    vnet, EtherType, EthernetFrame, PacketBuf, VlanId, VnetHdr, HEADER_LEN, VLAN_TAG_LEN,
    VNET_HDR_LEN,
};

/// The switch port the router sits on, a trunk of every network's VLAN. Port ids of
/// TAPs and peers start at 1, so 0 is never anything else.
pub const ROUTER_PORT: PortId = PortId(0);

/// A TCP super-frame is at most 64 KiB plus link headers; room for that and the vnet
/// header. Drivers read at most this much into a worker's buffers.
pub const MAX_WIRE_LEN: usize = 65536 + 1024;

/// Where a received datagram goes in the frame buffer: the 2 bytes before it plus its
/// 8-byte VXLAN header become the 10-byte vnet header the TAP write needs.
const RX_OFFSET: usize = 2;

/// Headers (Ethernet, IP and TCP with options) fit in this many bytes.
const MAX_HEADERS: usize = 14 + 60 + 60;

/// One packet for the driver to send.
#[derive(Debug)]
pub enum Transmit<'a> {
    /// A vnet header and an Ethernet frame, tagged as `port` needs, for a local port.
    Port { port: PortId, wire: &'a [u8] },
    /// VXLAN datagrams (each with its 8-byte VXLAN header) for the VTEP at `remote`:
    /// `datagrams` holds them back to back, every one `stride` bytes but the last; one
    /// datagram when `stride == datagrams.len()`. `flow` hashes the inner flow, for
    /// picking the outer UDP source port (RFC 7348 §5).
    Vxlan {
        remote: SocketAddr,
        flow: u32,
        datagrams: &'a [u8],
        stride: usize,
    },
    /// A vnet header and an IPv4 packet for the uplink to the host.
    Uplink { wire: &'a [u8] },
    /// A DNS query for an upstream resolver, over UDP from switchd's own namespace. The
    /// reply goes to [`Worker::handle_dns_reply`].
    Dns {
        upstream: SocketAddr,
        message: &'a [u8],
    },
    /// The DNS service has a timer due sooner than before, perhaps: the driver calls
    /// [`Worker::poll_dns`] by [`Datapath::dns`]'s next timeout. Nothing to send.
    DnsTimers,
}

/// The driver's side: carries out one [`Transmit`], or says why it could not.
pub trait Io {
    fn transmit(&mut self, transmit: Transmit<'_>) -> Result<(), DropReason>;
}

impl<F: FnMut(Transmit<'_>) -> Result<(), DropReason>> Io for F {
    fn transmit(&mut self, transmit: Transmit<'_>) -> Result<(), DropReason> {
        self(transmit)
    }
}

/// What every thread shares: the switch and the router. See the module documentation.
pub struct Datapath {
    switch: Switch,
    /// Lock order: the router is never held while the switch's topology is changed.
    router: Mutex<Router>,
    /// The embedded DNS; taken only for DNS packets and timeouts, never with the router.
    dns: Mutex<DnsService>,
    frag_needed_sent: AtomicU64,
}

impl Datapath {
    pub fn new(fdb: FdbConfig) -> Datapath {
        Datapath {
            switch: Switch::new(fdb),
            router: Mutex::new(Router::new()),
            dns: Mutex::new(DnsService::new(Vec::new(), 0x5eed)),
            frag_needed_sent: AtomicU64::new(0),
        }
    }

    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// The router. A thread that panicked while holding it left it consistent enough
    /// to keep routing (every update is a few field writes), so poison is ignored.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The embedded DNS (poison ignored, as the router's).
    pub fn dns(&self) -> MutexGuard<'_, DnsService> {
        self.dns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// "Fragmentation needed" answers sent for frames too big for the overlay.
    pub fn frag_needed_sent(&self) -> u64 {
        self.frag_needed_sent.load(Ordering::Relaxed)
    }

    /// ARP suppression of a flood of `frame` to `egresses` (see [`Worker`]'s): when the
    /// router answers the ARP request for the endpoint, only the router gets it. Returns
    /// the address asked for when it did that.
    fn suppress_arp(&self, frame: &[u8], egresses: &mut Vec<Egress>) -> Option<Ipv4Addr> {
        let router_egress = egresses.iter().find(|e| e.port == ROUTER_PORT).copied()?;
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.payload_ethertype() != EtherType::ARP {
            return None;
        }
        let target = arp_request_target(eth.payload())?;
        if !self.router().answers_arp_for(router_egress.vlan, target) {
            return None;
        }
        egresses.clear();
        egresses.push(router_egress);
        Some(target)
    }

    /// What the datapath would do with `frame` (Ethernet, as a TAP hands it over) from
    /// local port `in_port` at `now`: the switch's steps, then every copy's (its tag, the
    /// VXLAN encapsulation, the router's verdict on a copy of the router). Nothing is
    /// sent, learned or counted. See [`crate::trace`].
    pub fn trace(&self, now: Time, in_port: PortId, frame: &[u8]) -> Trace {
        let mut steps = Vec::new();
        let decision = self.switch.trace(now, in_port, frame, &mut steps);
        let view = self.switch.view();
        let mut egresses = Vec::new();
        self.switch.egresses_into(&view, decision, &mut egresses);
        if egresses.len() > 1 {
            if let Some(target) = self.suppress_arp(frame, &mut egresses) {
                steps.push(TraceStep::ArpSuppression { target });
            }
        }
        let untagged = untag(frame);
        let mut copies = 0;
        for egress in &egresses {
            if egress.port == ROUTER_PORT {
                let (step, onward) = self.trace_router(now, egress.vlan, &untagged);
                steps.push(step);
                copies += usize::from(onward);
                continue;
            }
            match view.vxlan_target(egress) {
                None => {
                    steps.push(TraceStep::Output {
                        port: egress.port,
                        vlan: egress.vlan,
                        tag: egress.tag,
                    });
                    copies += 1;
                }
                Some((remote, vni, path_mtu)) => {
                    let max_inner_len = max_inner_frame(remote, path_mtu);
                    steps.push(TraceStep::Encapsulate {
                        port: egress.port,
                        remote,
                        vni: vni.get(),
                        path_mtu,
                        inner_len: untagged.len(),
                        max_inner_len,
                    });
                    if untagged.len() > max_inner_len {
                        steps.push(TraceStep::Drop {
                            port: Some(egress.port),
                            reason: DropReason::TooBig.as_str().to_string(),
                        });
                    } else {
                        copies += 1;
                    }
                }
            }
        }
        Trace {
            in_port,
            frame_len: frame.len(),
            steps,
            copies,
            port_names: Default::default(),
        }
    }

    /// The router's verdict on `frame` (untagged) from `vlan`, from a copy of the router
    /// so that nothing it learns or counts stays; and whether the packet goes on (up the
    /// uplink, or held for its next hop) rather than ending at the router.
    fn trace_router(&self, now: Time, vlan: VlanId, frame: &[u8]) -> (TraceStep, bool) {
        // Copied under the router's lock, which is let go before the copy is asked.
        let mut router = self.router().dry_run_copy();
        let mut copy = frame.to_vec();
        let mut out = Vec::new();
        let verdict = router.from_switch(now, vlan, &mut copy, &mut out);
        let onward = matches!(verdict, Verdict::ToUplink | Verdict::Held);
        let dropped = match verdict {
            Verdict::Drop(reason) => Some(reason.as_str().to_string()),
            _ => None,
        };
        let verdict = match verdict {
            Verdict::ToUplink => "routed up the uplink, to the host".to_string(),
            Verdict::ToSwitch { vlan, .. } => format!("routed to VLAN {vlan}"),
            Verdict::Consumed => "taken by the router".to_string(),
            Verdict::Held => "held until its next hop answers ARP".to_string(),
            Verdict::Drop(reason) => format!("dropped ({reason})"),
        };
        let answers = out
            .iter()
            .map(|output| match output {
                RouterOutput::ToSwitch { vlan, frame } => {
                    format!("on VLAN {vlan}: {}", crate::trace::summarize(frame))
                }
                RouterOutput::ToUplink { .. } => "up the uplink: ICMP to the host".to_string(),
                RouterOutput::Dns(_) => "through the embedded DNS (a UDP query)".to_string(),
                RouterOutput::DnsTcp(_) => "through the embedded DNS (TCP)".to_string(),
            })
            .collect();
        let step = TraceStep::Router {
            vlan,
            verdict,
            dropped,
            answers,
        };
        (step, onward)
    }

    /// When [`Datapath::handle_timeout`] next has work: FDB aging, the router's
    /// neighbours and held packets.
    pub fn next_timeout(&self) -> Option<Time> {
        match (self.switch.next_timeout(), self.router().next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ages what is due at `now`. Returns how many FDB entries aged out.
    pub fn handle_timeout(&self, now: Time) -> usize {
        let aged = if self.switch.next_timeout().is_some_and(|at| at <= now) {
            self.switch.handle_timeout(now)
        } else {
            0
        };
        let mut router = self.router();
        if router.next_timeout().is_some_and(|at| at <= now) {
            router.handle_timeout(now);
        }
        aged
    }
}

/// A TCP super-frame merged from VXLAN datagrams and held in the worker's frame buffer
/// instead of being sent at once, because the next batch may continue it.
struct Held {
    /// When it was decided (the router's clock, should it go there).
    at: Time,
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

/// One thread's datapath: buffers, view, merge state. See the module documentation.
pub struct Worker {
    dp: Arc<Datapath>,
    view: View,
    /// The frame being forwarded (vnet header + frame, with headroom).
    packet: PacketBuf,
    /// Where datagram batches are read (allocated on first use).
    datagrams: Vec<u8>,
    /// Where frames are segmented for VXLAN.
    scratch: Vec<u8>,
    egresses: Vec<Egress>,
    /// What the router answered (ARP, ICMP, released packets), sent after the frame.
    router_out: Vec<RouterOutput>,
    /// A copy of a flooded frame for the router, which may rewrite what it gets.
    router_copy: PacketBuf,
    /// A merged TCP super-frame in `packet` that the next batch may continue.
    held: Option<Held>,
    /// The router's verdicts, when asked to keep them (the simulator does).
    verdicts: Option<Vec<Verdict>>,
}

impl Worker {
    pub fn new(dp: Arc<Datapath>) -> Worker {
        let view = dp.switch.view();
        Worker {
            dp,
            view,
            packet: PacketBuf::with_capacity(MAX_WIRE_LEN, true),
            datagrams: Vec::new(),
            scratch: Vec::with_capacity(128 * 1024),
            egresses: Vec::new(),
            router_out: Vec::new(),
            // The frame may carry a tag pushed for an earlier egress.
            router_copy: PacketBuf::with_capacity(MAX_WIRE_LEN + VLAN_TAG_LEN, true),
            held: None,
            verdicts: None,
        }
    }

    pub fn datapath(&self) -> &Arc<Datapath> {
        &self.dp
    }

    /// Keeps the router's verdicts on frames from the switch, for [`Worker::take_verdicts`].
    pub fn keep_verdicts(&mut self, keep: bool) {
        self.verdicts = keep.then(Vec::new);
    }

    /// The router's verdicts since the last call, oldest first.
    pub fn take_verdicts(&mut self) -> Vec<Verdict> {
        self.verdicts
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Where the driver reads the next frame from a port or the uplink: a vnet header
    /// and the frame (or IP packet), [`MAX_WIRE_LEN`] bytes at most. Sends whatever is
    /// held first, since the buffer is about to be reused.
    pub fn frame_buffer(&mut self, io: &mut impl Io) -> &mut [u8] {
        self.flush(io);
        self.packet.read_space()
    }

    /// Forwards the frame of `len` bytes (vnet header + frame) that the driver read
    /// into [`Worker::frame_buffer`] from local port `port`. Returns the decision.
    pub fn handle_port(
        &mut self,
        now: Time,
        port: PortId,
        len: usize,
        io: &mut impl Io,
    ) -> Decision {
        self.dp.switch.refresh(&mut self.view);
        if len > MAX_WIRE_LEN {
            // The port reported more than fitted: the frame was cut. Never forward it.
            self.dp
                .switch
                .record_tx_drop(&self.view, port, DropReason::Malformed);
            return Decision::Drop(DropReason::Malformed);
        }
        if len < VNET_HDR_LEN {
            return Decision::Drop(DropReason::Malformed);
        }
        self.packet.set_len(len);
        let decision = self
            .dp
            .switch
            .process(&self.view, now, port, self.packet.frame());
        self.forward(now, port, decision, io);
        decision
    }

    /// Routes the IP packet of `len` bytes (vnet header + packet) that the driver read
    /// into [`Worker::frame_buffer`] from the uplink, towards a container.
    pub fn handle_uplink(&mut self, now: Time, len: usize, io: &mut impl Io) -> Verdict {
        self.dp.switch.refresh(&mut self.view);
        if len <= VNET_HDR_LEN || len > MAX_WIRE_LEN {
            return Verdict::Drop(crate::router::RouterDrop::Malformed);
        }
        self.packet.set_len(len);
        let can_hold = self
            .packet
            .vnet_hdr()
            .is_some_and(|hdr| hdr.flags() == 0 && hdr.gso_type() == vnet::GSO_NONE);
        let verdict = self.dp.router().from_uplink(
            now,
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
                self.inject(now, vlan, io);
            }
        }
        if !self.router_out.is_empty() {
            self.send_router_output(now, io);
        }
        verdict
    }

    /// Where the driver reads the next batch of VXLAN datagrams ([`MAX_WIRE_LEN`] bytes).
    pub fn datagram_buffer(&mut self) -> &mut [u8] {
        if self.datagrams.len() < MAX_WIRE_LEN {
            self.datagrams.resize(MAX_WIRE_LEN, 0);
        }
        &mut self.datagrams[..]
    }

    /// Forwards the datagrams the driver read into [`Worker::datagram_buffer`]: `len`
    /// bytes from `from`, each datagram `segment` bytes but the last (a UDP GRO batch;
    /// `segment == len` for one datagram). Merges runs of one TCP flow into super-frames
    /// and may hold the last one; call [`Worker::flush`] when the socket has nothing
    /// more. Returns the decision for the first datagram, if one was made.
    pub fn handle_datagrams(
        &mut self,
        now: Time,
        from: SocketAddr,
        len: usize,
        segment: usize,
        io: &mut impl Io,
    ) -> Option<Decision> {
        self.dp.switch.refresh(&mut self.view);
        let mut data = std::mem::take(&mut self.datagrams);
        let len = len.min(data.len());
        let first = self.forward_datagrams(now, from, &data[..len], segment.max(1), io);
        std::mem::swap(&mut self.datagrams, &mut data);
        first
    }

    /// Sends the held super-frame, if there is one: the driver's socket ran dry.
    pub fn flush(&mut self, io: &mut impl Io) {
        if let Some(held) = self.held.take() {
            self.forward(held.at, held.in_port, held.decision, io);
        }
    }

    /// Carries out `decision` for the frame in `self.packet`, which came in on `in_port`.
    fn forward(&mut self, now: Time, in_port: PortId, decision: Decision, io: &mut impl Io) {
        if let Decision::Drop(_) = decision {
            return;
        }
        let mut egresses = std::mem::take(&mut self.egresses);
        self.dp
            .switch
            .egresses_into(&self.view, decision, &mut egresses);
        if egresses.len() > 1 {
            self.suppress_arp(&mut egresses);
        }
        let copies = egresses.len();
        for egress in &egresses {
            let sent = if egress.port == ROUTER_PORT {
                self.hand_to_router(now, egress.vlan, copies == 1, io)
            } else if self.packet.set_vlan_tag(egress.tag).is_err() {
                Err(DropReason::Malformed)
            } else {
                match self.view.vxlan_target(egress) {
                    None => io
                        .transmit(Transmit::Port {
                            port: egress.port,
                            wire: self.packet.wire(),
                        })
                        .map(|()| self.packet.frame().len()),
                    Some((remote, vni, path_mtu)) => {
                        let len = self.packet.frame().len();
                        self.tunnel_send(in_port, egress, remote, vni, path_mtu, io)
                            .map(|()| len)
                    }
                }
            };
            match sent {
                Ok(bytes) => self.dp.switch.record_tx(
                    &self.view,
                    now,
                    egress.port,
                    bytes,
                    self.packet.frame(),
                ),
                Err(reason) => self
                    .dp
                    .switch
                    .record_tx_drop(&self.view, egress.port, reason),
            }
        }
        self.egresses = egresses;
        if !self.router_out.is_empty() {
            self.send_router_output(now, io);
        }
    }

    /// ARP suppression: an ARP request for a remote endpoint the router answers for (a
    /// cluster's, see `Router::set_remote_neighbor`) goes to the router only, not across
    /// the overlay nor to the other ports.
    fn suppress_arp(&self, egresses: &mut Vec<Egress>) {
        self.dp.suppress_arp(self.packet.frame(), egresses);
    }

    /// Hands the frame (for `vlan`) to the router; what it routes to the host goes up
    /// the uplink. `only` says the frame has no other copy, so the router may edit it in
    /// place; otherwise it gets a copy. Returns the bytes handed over (the router port's
    /// transmit), or why nothing was.
    fn hand_to_router(
        &mut self,
        now: Time,
        vlan: VlanId,
        only: bool,
        io: &mut impl Io,
    ) -> Result<usize, DropReason> {
        let packet = if only {
            &mut self.packet
        } else {
            // Into the buffer kept for it: no allocation per flooded frame.
            self.router_copy
                .load(self.packet.wire())
                .map_err(|_| DropReason::Malformed)?;
            &mut self.router_copy
        };
        packet
            .set_vlan_tag(None)
            .map_err(|_| DropReason::Malformed)?;
        let len = packet.frame().len();
        let verdict =
            self.dp
                .router()
                .from_switch(now, vlan, packet.frame_mut(), &mut self.router_out);
        if let Some(verdicts) = self.verdicts.as_mut() {
            verdicts.push(verdict);
        }
        match verdict {
            Verdict::ToUplink => {
                packet
                    .strip_front(HEADER_LEN)
                    .map_err(|_| DropReason::Malformed)?;
                io.transmit(Transmit::Uplink {
                    wire: packet.wire(),
                })?;
                Ok(len)
            }
            // Dropped or answered by the router: counted there, not as a switch drop.
            _ => Ok(len),
        }
    }

    /// Sends what the router produced besides its verdict: frames into the switch as if
    /// they came in on the router's port, packets up the uplink.
    fn send_router_output(&mut self, now: Time, io: &mut impl Io) {
        let outputs = std::mem::take(&mut self.router_out);
        for output in &outputs {
            match output {
                RouterOutput::ToSwitch { vlan, frame } => self.inject_frame(now, *vlan, frame, io),
                RouterOutput::ToUplink { packet } => {
                    let wire = [&[0u8; VNET_HDR_LEN][..], packet].concat();
                    // Best effort, like any packet a router originates.
                    let _ = io.transmit(Transmit::Uplink { wire: &wire });
                }
                RouterOutput::Dns(query) => {
                    let step = self.dp.dns().query(now, query);
                    if let Some(step) = step {
                        let forwarded = matches!(step, DnsStep::Send(_));
                        self.dns_step(now, step, io);
                        if forwarded {
                            // A query in flight has a timer now: the driver's DNS timer
                            // must know.
                            let _ = io.transmit(Transmit::DnsTimers);
                        }
                    }
                }
                RouterOutput::DnsTcp(segment) => {
                    // The lock is let go before the frames go into the switch.
                    let steps = self.dp.dns().segment(now, segment);
                    for step in steps {
                        self.dns_step(now, step, io);
                    }
                    // A connection has timers now (retransmits, idle): the driver's DNS
                    // timer must know.
                    let _ = io.transmit(Transmit::DnsTimers);
                }
            }
        }
        // Keep the allocation; frames injected above come from the router's port, which
        // the switch never sends back to the router, so nothing new was added meanwhile.
        self.router_out = outputs;
        self.router_out.clear();
    }

    /// A datagram that came back on the DNS upstream socket from `from`: relays the
    /// reply it is, if it is one (over UDP, or on the client's TCP connection).
    pub fn handle_dns_reply(
        &mut self,
        now: Time,
        from: SocketAddr,
        message: &[u8],
        io: &mut impl Io,
    ) {
        let steps = self.dp.dns().upstream_reply(now, from, message);
        if !steps.is_empty() {
            self.dp.switch.refresh(&mut self.view);
        }
        for step in steps {
            self.dns_step(now, step, io);
        }
    }

    /// Sends the DNS retries and SERVFAILs due at `now`, and runs the DNS TCP timers
    /// (retransmissions, idle connections); returns when to call again.
    pub fn poll_dns(&mut self, now: Time, io: &mut impl Io) -> Option<Time> {
        let steps = self.dp.dns().poll(now);
        if !steps.is_empty() {
            self.dp.switch.refresh(&mut self.view);
        }
        for step in steps {
            self.dns_step(now, step, io);
        }
        self.dp.dns().next_timeout()
    }

    fn dns_step(&mut self, now: Time, step: DnsStep, io: &mut impl Io) {
        match step {
            DnsStep::Reply { client, message } => {
                self.inject_frame(now, client.vlan, &client.reply_frame(&message), io)
            }
            DnsStep::Frame(TcpFrame { vlan, frame }) => self.inject_frame(now, vlan, &frame, io),
            DnsStep::Send(outgoing) => {
                // Best effort: a lost query is retried on the next upstream. Over UDP
                // whatever the client used (a TCP client may get a truncated answer).
                let _ = io.transmit(Transmit::Dns {
                    upstream: outgoing.upstream,
                    message: &outgoing.bytes,
                });
            }
        }
    }

    /// Forwards `frame` (untagged Ethernet; nothing when empty) as if the router sent it
    /// on `vlan`.
    fn inject_frame(&mut self, now: Time, vlan: VlanId, frame: &[u8], io: &mut impl Io) {
        if !frame.is_empty()
            && self
                .packet
                .load(&[&[0u8; VNET_HDR_LEN][..], frame].concat())
                .is_ok()
        {
            self.inject(now, vlan, io);
        }
    }

    /// Forwards the frame in `self.packet` (untagged) as if the router sent it on `vlan`.
    fn inject(&mut self, now: Time, vlan: VlanId, io: &mut impl Io) {
        if self.packet.set_vlan_tag(Some(vlan)).is_err() {
            return;
        }
        let decision = self
            .dp
            .switch
            .process(&self.view, now, ROUTER_PORT, self.packet.frame());
        self.forward(now, ROUTER_PORT, decision, io);
    }

    /// Sends the (untagged) frame in `self.packet` to the VTEP at `remote` as `vni`,
    /// segmenting and checksumming an offloaded frame first. A frame too big for the
    /// path is answered, when it should be, with ICMP "fragmentation needed" back
    /// through `in_port`.
    fn tunnel_send(
        &mut self,
        in_port: PortId,
        egress: &Egress,
        remote: SocketAddr,
        vni: Vni,
        path_mtu: u32,
        io: &mut impl Io,
    ) -> Result<(), DropReason> {
        let offload = match self.packet.vnet_hdr() {
            Some(h) => Offload::from_virtio(
                h.flags(),
                h.gso_type(),
                h.gso_size(),
                h.csum_start(),
                h.csum_offset(),
            )
            .map_err(|_| DropReason::BadOffload)?,
            None => Offload::NONE,
        };
        let max_inner = max_inner_frame(remote, path_mtu);
        let frame = self.packet.frame();
        let flow = flow_hash(frame);
        let mut header = [0u8; vxlan::HEADER_LEN];
        vxlan::emit(&mut header, vni);
        if offload.kind == GsoKind::None && !offload.needs_csum {
            if frame.len() > max_inner {
                return Err(self.too_big(in_port, egress.vlan, max_inner, io));
            }
            // The VXLAN header goes into the headroom: the datagram is contiguous.
            self.packet
                .push_front(&header)
                .map_err(|_| DropReason::TxError)?;
            let datagram = self.packet.frame();
            let sent = io.transmit(Transmit::Vxlan {
                remote,
                flow,
                datagrams: datagram,
                stride: datagram.len(),
            });
            let _ = self.packet.strip_front(vxlan::HEADER_LEN);
            return sent;
        }
        let layout = match segment(
            &offload,
            frame,
            vxlan::HEADER_LEN,
            max_inner,
            &mut self.scratch,
        ) {
            Ok(layout) => layout,
            Err(SegmentError::TooBig { .. }) => {
                return Err(self.too_big(in_port, egress.vlan, max_inner, io))
            }
            Err(_) => return Err(DropReason::BadOffload),
        };
        let total = layout.total_len();
        for record in self.scratch[..total].chunks_mut(layout.stride) {
            record[..vxlan::HEADER_LEN].copy_from_slice(&header);
        }
        io.transmit(Transmit::Vxlan {
            remote,
            flow,
            datagrams: &self.scratch[..total],
            stride: layout.stride,
        })
    }

    /// Answers the frame in `self.packet`, too big for the overlay, with ICMP
    /// "fragmentation needed" through the local port it came from (when it is one, and
    /// the frame deserves an answer). Returns the drop reason.
    fn too_big(
        &mut self,
        in_port: PortId,
        vlan: VlanId,
        max_inner: usize,
        io: &mut impl Io,
    ) -> DropReason {
        let mtu = (max_inner.saturating_sub(HEADER_LEN)).min(usize::from(u16::MAX)) as u16;
        let Some(icmp) = switchyard_encap::icmp::frag_needed(self.packet.frame(), mtu) else {
            return DropReason::TooBig;
        };
        if in_port == ROUTER_PORT || !self.view.is_local(in_port) {
            return DropReason::TooBig;
        }
        let Some(tag) = self.view.egress_tag(in_port, vlan) else {
            return DropReason::TooBig;
        };
        let mut reply = PacketBuf::from_wire(&[&[0u8; VNET_HDR_LEN][..], &icmp].concat(), true);
        if reply.set_vlan_tag(tag).is_ok()
            && io
                .transmit(Transmit::Port {
                    port: in_port,
                    wire: reply.wire(),
                })
                .is_ok()
        {
            self.dp.frag_needed_sent.fetch_add(1, Ordering::Relaxed);
        }
        DropReason::TooBig
    }

    /// Forwards the datagrams of one read, merging runs of consecutive TCP segments of
    /// one flow (same VXLAN header, headers that allow it) into super-frames. A run that
    /// continues the held super-frame extends it; the read's last run is held in turn
    /// when it could go on (see [`Held`]). Returns the first decision made.
    fn forward_datagrams(
        &mut self,
        now: Time,
        from: SocketAddr,
        data: &[u8],
        stride: usize,
        io: &mut impl Io,
    ) -> Option<Decision> {
        let mut first = None;
        let mut run: Vec<(&[u8], TcpSegment)> = Vec::with_capacity(data.len() / stride + 1);
        // Whether `run` continues the held frame (it may still be empty).
        let mut extends = self.held.as_ref().is_some_and(|p| p.from == from);
        let mut merged_payload = match &self.held {
            Some(held) if extends => held.payload,
            _ => 0,
        };
        for datagram in data.chunks(stride) {
            let inner = datagram.get(vxlan::HEADER_LEN..).unwrap_or_default();
            let segment = TcpSegment::parse(inner);
            if let Some(segment) = segment {
                // What it must continue: the run's last datagram, or the held frame's.
                let previous = match (run.last(), &self.held) {
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
            let decided = self.end_run(now, from, &run, extends, false, io);
            first = first.or(decided);
            extends = false;
            run.clear();
            match segment {
                Some(segment) => {
                    merged_payload = segment.payload_len();
                    run.push((datagram, segment));
                }
                None => {
                    let decided = self.forward_datagram(now, from, datagram, io);
                    first = first.or(decided);
                }
            }
        }
        let decided = self.end_run(now, from, &run, extends, true, io);
        first.or(decided)
    }

    /// Forwards a run of mergeable datagrams (with their VXLAN headers), or adds it to
    /// the held frame when `extends`. Whatever is held and not extended is sent first.
    /// With `hold`, the result is held when it could go on rather than sent.
    fn end_run(
        &mut self,
        now: Time,
        from: SocketAddr,
        run: &[(&[u8], TcpSegment)],
        extends: bool,
        hold: bool,
        io: &mut impl Io,
    ) -> Option<Decision> {
        if !extends || run.is_empty() {
            self.flush(io);
        }
        let &(last_datagram, last) = run.last()?;
        let inner = inner_segments(run);
        let mut decided = None;
        if let Some(held) = self.held.as_mut().filter(|_| extends) {
            let held_len = self.packet.frame().len();
            let space = self.packet.read_space();
            let frame_space = space.get_mut(VNET_HDR_LEN..).unwrap_or_default();
            match coalesce::append_into(frame_space, held_len, &held.first, &inner) {
                Some((len, offload)) => {
                    write_offload(space, &offload);
                    self.packet.set_len(VNET_HDR_LEN + len);
                    held.payload += coalesce::payload_len(&inner);
                    self.note_merged(now, from, run);
                }
                None => {
                    // No room (never expected: `continues` checked the size): the held
                    // frame goes as it is, the run on its own.
                    self.flush(io);
                    return self.forward_run(now, from, run, io);
                }
            }
        } else if !hold || !coalesce::open_ended(&last, coalesce::payload_len(&inner)) {
            // Nothing can continue it (mid-read, or PSH: a request, a reply): as before.
            return self.forward_run(now, from, run, io);
        } else {
            // Start holding this run: decide once, for its first datagram.
            let decided_first = self.decide_vxlan(now, from, run[0].0);
            self.note_merged(now, from, &run[1..]);
            let (decision, in_port) = decided_first?;
            decided = Some(decision);
            if !self.merge_into_packet(&inner) {
                return decided;
            }
            let mut vxlan = [0u8; vxlan::HEADER_LEN];
            vxlan.copy_from_slice(&last_datagram[..vxlan::HEADER_LEN]);
            self.held = Some(Held {
                at: now,
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
        let held = self.held.as_mut()?;
        let headers = &last_datagram[vxlan::HEADER_LEN..];
        match headers.get(..last.header_len()) {
            Some(h) if hold && h.len() <= MAX_HEADERS => {
                held.last_headers[..h.len()].copy_from_slice(h);
                held.last = last;
                if !coalesce::open_ended(&last, held.payload) {
                    self.flush(io);
                }
            }
            _ => self.flush(io),
        }
        decided
    }

    /// Forwards a run of mergeable datagrams: one alone as it is, several as one frame.
    fn forward_run(
        &mut self,
        now: Time,
        from: SocketAddr,
        run: &[(&[u8], TcpSegment)],
        io: &mut impl Io,
    ) -> Option<Decision> {
        match run {
            [] => None,
            [(datagram, _)] => self.forward_datagram(now, from, datagram, io),
            [(first, _), rest @ ..] => {
                let decided = self.decide_vxlan(now, from, first);
                self.note_merged(now, from, rest);
                let (decision, in_port) = decided?;
                if self.merge_into_packet(&inner_segments(run)) {
                    self.forward(now, in_port, decision, io);
                }
                Some(decision)
            }
        }
    }

    /// Counts (and offers to the peer port's captures) the datagrams merged into a frame
    /// the switch decided for by another datagram: each crossed the tunnel port.
    fn note_merged(&self, now: Time, from: SocketAddr, run: &[(&[u8], TcpSegment)]) {
        for (datagram, _) in run {
            self.dp
                .switch
                .record_vxlan_rx(&self.view, now, from.ip(), datagram);
        }
    }

    /// Forwards one VXLAN datagram as it came.
    fn forward_datagram(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
        io: &mut impl Io,
    ) -> Option<Decision> {
        let space = self.packet.read_space();
        let room = space.get_mut(RX_OFFSET..RX_OFFSET + datagram.len())?;
        room.copy_from_slice(datagram);
        self.packet.set_len(RX_OFFSET + datagram.len());
        let decision = self
            .dp
            .switch
            .process_vxlan(&self.view, now, from.ip(), datagram);
        let Some(in_port) = self.forwarded_from(decision, from) else {
            return Some(decision);
        };
        strip_vxlan_header(&mut self.packet);
        self.forward(now, in_port, decision, io);
        Some(decision)
    }

    /// The switch's decision for a VXLAN datagram from `from` and the port of that peer,
    /// when the frame goes anywhere.
    fn decide_vxlan(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<(Decision, PortId)> {
        let decision = self
            .dp
            .switch
            .process_vxlan(&self.view, now, from.ip(), datagram);
        self.forwarded_from(decision, from)
            .map(|port| (decision, port))
    }

    /// The peer's tunnel port, when `decision` sends the frame somewhere.
    fn forwarded_from(&self, decision: Decision, from: SocketAddr) -> Option<PortId> {
        match decision {
            Decision::Output(_) | Decision::Flood { .. } => self.view.peer_port(from.ip()),
            Decision::Drop(_) => None,
        }
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

/// The largest inner Ethernet frame that fits the path to `peer` once encapsulated:
/// the path MTU less the outer IP (20 or 40), UDP (8) and VXLAN (8) headers.
pub fn max_inner_frame(peer: SocketAddr, path_mtu: u32) -> usize {
    let ip_header = if peer.is_ipv4() { 20 } else { 40 };
    path_mtu.saturating_sub(ip_header + 8 + vxlan::HEADER_LEN as u32) as usize
}

/// The inner frames of a run of VXLAN datagrams, with their parses.
fn inner_segments<'a>(run: &[(&'a [u8], TcpSegment)]) -> Vec<(&'a [u8], TcpSegment)> {
    run.iter()
        .map(|(datagram, s)| (&datagram[vxlan::HEADER_LEN..], *s))
        .collect()
}

/// Turns a datagram copied to `RX_OFFSET` of a packet's read space into a frame for a
/// TAP: the VXLAN header (and the 2 bytes before it) become the vnet header. It asks
/// the receiving kernel to complete a transport checksum the sender left partial (see
/// `switchyard_encap::partial`); otherwise it claims nothing and the kernel verifies.
fn strip_vxlan_header(packet: &mut PacketBuf) {
    if let Some(head) = packet.wire_mut().get_mut(..RX_OFFSET + vxlan::HEADER_LEN) {
        head.fill(0);
    }
    if let Some((start, offset)) = partial_checksum(packet.frame()) {
        if let Some(mut hdr) = packet.vnet_hdr_mut() {
            hdr.set_flags(vnet::F_NEEDS_CSUM);
            hdr.set_csum_start(start);
            hdr.set_csum_offset(offset);
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

/// The address an Ethernet/IPv4 ARP request asks for (`None` for anything else).
/// `frame` without its 802.1Q tag, if it has one (as the router and VXLAN get it).
fn untag(frame: &[u8]) -> Vec<u8> {
    match EthernetFrame::new_checked(frame) {
        Ok(eth) if eth.tci().is_some() && frame.len() >= HEADER_LEN + VLAN_TAG_LEN => {
            [&frame[..12], &frame[12 + VLAN_TAG_LEN..]].concat()
        }
        _ => frame.to_vec(),
    }
}

fn arp_request_target(arp: &[u8]) -> Option<Ipv4Addr> {
    const REQUEST: u16 = 1;
    let header = arp.get(..28)?;
    let is_ipv4_over_ethernet = header[..6] == [0, 1, 0x08, 0x00, 6, 4];
    let operation = u16::from_be_bytes([header[6], header[7]]);
    if !is_ipv4_over_ethernet || operation != REQUEST {
        return None;
    }
    Some(std::net::Ipv4Addr::new(
        header[24], header[25], header[26], header[27],
    ))
}
