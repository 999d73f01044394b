//! A deterministic simulator of hosts and switches, for testing the datapath without root.
//!
//! Every switch is a real [`Datapath`] driven by one [`Worker`], exactly the code switchd's
//! forwarding threads run: switching, tagging, the router, VXLAN encapsulation and
//! segmentation, merging on receive. Its ports lead to in-memory hosts (which keep what
//! they receive in an inbox) or, through links, to ports of other switches. The clock is
//! virtual and only moves when [`Network::advance`] is called, so aging tests take no
//! wall time and every run is identical.
//!
//! Switches can also be VTEPs on an in-memory underlay: give each an address with
//! [`Network::set_vtep`] and make them peers with [`Network::add_peer`]. What a worker
//! transmits to a VTEP arrives at the peer's worker as a receive batch, cut the way
//! switchd's sender cuts a `UDP_SEGMENT` send (at most 64 datagrams, 64 KB), so merging
//! across batches is exercised as on a real underlay; a switch's held frame is flushed
//! when no more datagrams are queued for it (its socket would be dry).
//!
//! switchd's router sits on each switch's [`ROUTER_PORT`] ([`Network::add_router`]): what
//! it routes to the host lands in an uplink inbox ([`Network::take_uplink`]), and
//! [`Network::send_uplink`] plays the host sending into it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use switchyard_encap::vxlan::IANA_PORT;

use crate::datapath::{Datapath, Transmit, Worker, MAX_WIRE_LEN, ROUTER_PORT};
use crate::fdb::FdbConfig;
use crate::forward::{Decision, DropReason, Switch};
use crate::port::{PortId, PortMode};
use crate::router::{Router, Verdict};
use crate::time::Time;
use crate::wire::{emit_header, EtherType, MacAddr, Tci, VlanId, HEADER_LEN, VNET_HDR_LEN};

/// Index of a switch in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SwitchId(pub usize);

/// Index of a host in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(pub usize);

/// A switch's router, in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouterId(pub usize);

#[derive(Clone, Copy, Debug)]
enum Peer {
    Host(HostId),
    Switch(SwitchId, PortId),
}

struct SimSwitch {
    dp: Arc<Datapath>,
    worker: Worker,
    next_port: u32,
    vtep: Option<IpAddr>,
    /// IP packets its router sent up the uplink.
    uplink: Vec<Vec<u8>>,
    /// DNS queries its DNS service sent upstream.
    dns: Vec<(SocketAddr, Vec<u8>)>,
}

struct Host {
    at: (SwitchId, PortId),
    /// Wire images (vnet header + frame) received.
    inbox: Vec<Vec<u8>>,
}

/// A frame on its way into a switch.
enum Arrival {
    /// A wire image (vnet header + frame) on a local port.
    Port(SwitchId, PortId, Vec<u8>),
    /// A receive batch of VXLAN datagrams (`stride` bytes each) from underlay address `src`.
    Vxlan(SwitchId, IpAddr, Vec<u8>, usize),
}

/// What a worker handed to its driver, owned.
enum Out {
    Port(PortId, Vec<u8>),
    Vxlan(SocketAddr, Vec<u8>, usize),
    Uplink(Vec<u8>),
    Dns(SocketAddr, Vec<u8>),
}

/// Most datagrams one `UDP_SEGMENT` send carries, and most bytes (as switchd's VTEP).
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65_000;

/// A set of simulated switches, hosts and links with a virtual clock.
pub struct Network {
    now: Time,
    switches: Vec<SimSwitch>,
    peers: HashMap<(SwitchId, PortId), Peer>,
    hosts: Vec<Host>,
    vteps: HashMap<IpAddr, SwitchId>,
    /// Deliveries a single `send` may cause before the simulator declares a loop.
    pub hop_budget: usize,
}

impl Default for Network {
    fn default() -> Self {
        Network::new()
    }
}

impl Network {
    pub fn new() -> Network {
        Network {
            now: Time::ZERO,
            switches: Vec::new(),
            peers: HashMap::new(),
            hosts: Vec::new(),
            vteps: HashMap::new(),
            hop_budget: 10_000,
        }
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn add_switch(&mut self, fdb: FdbConfig) -> SwitchId {
        let dp = Arc::new(Datapath::new(fdb));
        let mut worker = Worker::new(Arc::clone(&dp));
        worker.keep_verdicts(true);
        self.switches.push(SimSwitch {
            dp,
            worker,
            next_port: 1,
            vtep: None,
            uplink: Vec::new(),
            dns: Vec::new(),
        });
        SwitchId(self.switches.len() - 1)
    }

    pub fn switch(&self, id: SwitchId) -> &Switch {
        self.switches[id.0].dp.switch()
    }

    /// The switch's datapath (its router, its ICMP counter).
    pub fn datapath(&self, id: SwitchId) -> &Datapath {
        &self.switches[id.0].dp
    }

    /// Adds a port to switch `sw`, with nothing plugged in yet.
    pub fn add_port(&mut self, sw: SwitchId, mode: PortMode) -> PortId {
        let switch = &mut self.switches[sw.0];
        let id = PortId(switch.next_port);
        switch.next_port += 1;
        switch.dp.switch().set_port(id, mode);
        id
    }

    /// Adds a port to `sw` with a new host behind it.
    pub fn add_host(&mut self, sw: SwitchId, mode: PortMode) -> HostId {
        let port = self.add_port(sw, mode);
        self.hosts.push(Host {
            at: (sw, port),
            inbox: Vec::new(),
        });
        let host = HostId(self.hosts.len() - 1);
        self.peers.insert((sw, port), Peer::Host(host));
        host
    }

    /// Puts switch `sw`'s router on its port [`ROUTER_PORT`], in `mode` (a trunk of its
    /// interfaces' VLANs), as switchd does.
    pub fn add_router(&mut self, sw: SwitchId, mode: PortMode) -> RouterId {
        self.switches[sw.0].dp.switch().set_port(ROUTER_PORT, mode);
        RouterId(sw.0)
    }

    pub fn router_mut(&mut self, id: RouterId) -> MutexGuard<'_, Router> {
        self.switches[id.0].dp.router()
    }

    /// The switch port a router sits on.
    pub fn router_port(&self, id: RouterId) -> (SwitchId, PortId) {
        (SwitchId(id.0), ROUTER_PORT)
    }

    /// IP packets the router sent up its uplink since the last call.
    pub fn take_uplink(&mut self, id: RouterId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.switches[id.0].uplink)
    }

    /// DNS queries the switch's DNS service sent to upstreams since the last call.
    pub fn take_dns(&mut self, id: RouterId) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.switches[id.0].dns)
    }

    /// An upstream at `from` answers with `message`.
    pub fn dns_reply(&mut self, id: RouterId, from: SocketAddr, message: &[u8]) {
        let sw = SwitchId(id.0);
        let now = self.now;
        let mut outs = Vec::new();
        {
            let mut io = collect(&mut outs, sw, &self.peers, &self.vteps);
            self.switches[sw.0]
                .worker
                .handle_dns_reply(now, from, message, &mut io);
        }
        let mut queue = VecDeque::new();
        self.deliver(sw, outs, &mut queue);
        self.run_queue(queue, None);
    }

    /// The router's verdicts on frames from the switch since the last call, oldest first.
    pub fn take_verdicts(&mut self, id: RouterId) -> Vec<Verdict> {
        self.switches[id.0].worker.take_verdicts()
    }

    /// The host sends `packet` (IPv4) into the router's uplink.
    pub fn send_uplink(&mut self, id: RouterId, packet: &[u8]) -> Verdict {
        let sw = SwitchId(id.0);
        let now = self.now;
        let mut outs = Vec::new();
        let verdict = {
            let switch = &mut self.switches[sw.0];
            let mut io = collect(&mut outs, sw, &self.peers, &self.vteps);
            let buffer = switch.worker.frame_buffer(&mut io);
            let Some(room) = buffer.get_mut(..VNET_HDR_LEN + packet.len()) else {
                return Verdict::Drop(crate::router::RouterDrop::Malformed);
            };
            room[..VNET_HDR_LEN].fill(0);
            room[VNET_HDR_LEN..].copy_from_slice(packet);
            switch
                .worker
                .handle_uplink(now, VNET_HDR_LEN + packet.len(), &mut io)
        };
        let mut queue = VecDeque::new();
        self.deliver(sw, outs, &mut queue);
        self.run_queue(queue, None);
        verdict
    }

    /// Where host `host` is plugged in.
    pub fn host_port(&self, host: HostId) -> (SwitchId, PortId) {
        self.hosts[host.0].at
    }

    /// Moves `host` to a new port on `sw` (a VM migrating, a cable moved).
    pub fn move_host(&mut self, host: HostId, sw: SwitchId, mode: PortMode) {
        let old = self.hosts[host.0].at;
        self.peers.remove(&old);
        let port = self.add_port(sw, mode);
        self.hosts[host.0].at = (sw, port);
        self.peers.insert((sw, port), Peer::Host(host));
    }

    /// Cables port `a` of switch `sa` to port `b` of switch `sb`.
    pub fn link(&mut self, (sa, a): (SwitchId, PortId), (sb, b): (SwitchId, PortId)) {
        self.peers.insert((sa, a), Peer::Switch(sb, b));
        self.peers.insert((sb, b), Peer::Switch(sa, a));
    }

    /// Gives switch `sw` the underlay address `addr`.
    pub fn set_vtep(&mut self, sw: SwitchId, addr: IpAddr) {
        self.vteps.insert(addr, sw);
        self.switches[sw.0].vtep = Some(addr);
    }

    /// Makes the VTEP at `remote` a peer of switch `sw` (one direction; call twice for a
    /// pair). Returns the tunnel port.
    pub fn add_peer(&mut self, sw: SwitchId, remote: IpAddr) -> PortId {
        let switch = &mut self.switches[sw.0];
        let id = PortId(switch.next_port);
        switch.next_port += 1;
        switch
            .dp
            .switch()
            .add_peer(id, SocketAddr::new(remote, IANA_PORT))
            .expect("a new peer");
        id
    }

    /// Sets the underlay path MTU from switch `sw` towards its peer at `remote`.
    pub fn set_path_mtu(&mut self, sw: SwitchId, remote: IpAddr, mtu: u32) {
        self.switches[sw.0]
            .dp
            .switch()
            .set_path_mtu(remote, mtu)
            .expect("a peer");
    }

    /// Delivers a VXLAN datagram to switch `sw` as if from underlay address `src`
    /// (which need not be a VTEP of this network: a stranger).
    pub fn inject_vxlan(&mut self, sw: SwitchId, src: IpAddr, datagram: &[u8]) -> Decision {
        self.run(Arrival::Vxlan(
            sw,
            src,
            datagram.to_vec(),
            datagram.len().max(1),
        ))
    }

    /// Delivers a receive batch of VXLAN datagrams, each `stride` bytes but the last, to
    /// switch `sw` as if from `src` (what UDP GRO hands switchd in one read).
    pub fn inject_vxlan_batch(
        &mut self,
        sw: SwitchId,
        src: IpAddr,
        datagrams: &[u8],
        stride: usize,
    ) -> Decision {
        self.run(Arrival::Vxlan(sw, src, datagrams.to_vec(), stride.max(1)))
    }

    /// Moves the clock forward and lets every switch age its table and its router.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        for switch in &self.switches {
            switch.dp.handle_timeout(self.now);
        }
    }

    /// Frames `host` has received since the last call, oldest first.
    pub fn take_inbox(&mut self, host: HostId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.hosts[host.0].inbox)
            .into_iter()
            .map(|wire| wire.get(VNET_HDR_LEN..).unwrap_or_default().to_vec())
            .collect()
    }

    /// What `host` has received since the last call, as the TAP wrote it: the vnet
    /// header (which describes a merged super-frame) and the frame.
    pub fn take_inbox_wire(&mut self, host: HostId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.hosts[host.0].inbox)
    }

    /// `host` transmits `frame`; everything it causes is delivered before this returns.
    /// Returns the decision of the first switch, for tests that want to see it.
    ///
    /// # Panics
    /// If the frame is still bouncing after `hop_budget` deliveries: a forwarding loop.
    pub fn send(&mut self, host: HostId, frame: &[u8]) -> Decision {
        self.send_wire(host, &[&[0u8; VNET_HDR_LEN][..], frame].concat())
    }

    /// `host` transmits a wire image: a vnet header (for an offloaded super-frame, as a
    /// container's TAP hands it over) and the frame.
    pub fn send_wire(&mut self, host: HostId, wire: &[u8]) -> Decision {
        let (sw, port) = self.hosts[host.0].at;
        self.run(Arrival::Port(sw, port, wire.to_vec()))
    }

    fn run(&mut self, first_arrival: Arrival) -> Decision {
        let mut first = None;
        self.run_queue(VecDeque::from([first_arrival]), Some(&mut first));
        first.unwrap_or(Decision::Drop(DropReason::UnknownPort))
    }

    fn run_queue(
        &mut self,
        mut queue: VecDeque<Arrival>,
        mut first: Option<&mut Option<Decision>>,
    ) {
        let mut deliveries = 0;
        while let Some(arrival) = queue.pop_front() {
            let now = self.now;
            let mut outs = Vec::new();
            let (sw, decision) = {
                let (peers, vteps) = (&self.peers, &self.vteps);
                match arrival {
                    Arrival::Port(sw, in_port, wire) => {
                        let switch = &mut self.switches[sw.0];
                        let mut io = collect(&mut outs, sw, peers, vteps);
                        let buffer = switch.worker.frame_buffer(&mut io);
                        let len = wire.len().min(buffer.len());
                        buffer[..len].copy_from_slice(&wire[..len]);
                        let decision = switch.worker.handle_port(now, in_port, wire.len(), &mut io);
                        (sw, Some(decision))
                    }
                    Arrival::Vxlan(sw, src, data, stride) => {
                        let switch = &mut self.switches[sw.0];
                        let mut io = collect(&mut outs, sw, peers, vteps);
                        let buffer = switch.worker.datagram_buffer();
                        let len = data.len().min(buffer.len());
                        buffer[..len].copy_from_slice(&data[..len]);
                        let from = SocketAddr::new(src, IANA_PORT);
                        let decision = switch
                            .worker
                            .handle_datagrams(now, from, len, stride, &mut io);
                        // Its socket is dry unless more datagrams are queued for it.
                        let more = queue
                            .iter()
                            .any(|a| matches!(a, Arrival::Vxlan(s, ..) if *s == sw));
                        if !more {
                            switch.worker.flush(&mut io);
                        }
                        (sw, decision)
                    }
                }
            };
            if let (Some(first), Some(decision)) = (first.as_deref_mut(), decision) {
                first.get_or_insert(decision);
            }
            deliveries += outs.len();
            self.deliver(sw, outs, &mut queue);
            assert!(
                deliveries <= self.hop_budget,
                "frame still in flight after {deliveries} deliveries: a forwarding loop"
            );
        }
    }

    /// Hands what switch `sw` transmitted to hosts, linked switches, peers and its uplink.
    fn deliver(&mut self, sw: SwitchId, outs: Vec<Out>, queue: &mut VecDeque<Arrival>) {
        for out in outs {
            match out {
                Out::Port(port, wire) => match self.peers.get(&(sw, port)) {
                    Some(Peer::Host(h)) => self.hosts[h.0].inbox.push(wire),
                    Some(Peer::Switch(next_sw, next_port)) => {
                        queue.push_back(Arrival::Port(*next_sw, *next_port, wire))
                    }
                    None => {}
                },
                Out::Vxlan(remote, datagrams, stride) => {
                    let (Some(src), Some(next)) =
                        (self.switches[sw.0].vtep, self.vteps.get(&remote.ip()))
                    else {
                        continue;
                    };
                    // As switchd's sender cuts them: one receive batch per UDP_SEGMENT send.
                    let per_batch = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / stride.max(1)).max(1);
                    for batch in datagrams.chunks(per_batch * stride.max(1)) {
                        queue.push_back(Arrival::Vxlan(*next, src, batch.to_vec(), stride));
                    }
                }
                Out::Uplink(wire) => self.switches[sw.0]
                    .uplink
                    .push(wire.get(VNET_HDR_LEN..).unwrap_or_default().to_vec()),
                Out::Dns(upstream, message) => self.switches[sw.0].dns.push((upstream, message)),
            }
        }
    }
}

/// The simulator's [`crate::datapath::Io`] for switch `sw`: keeps what the worker
/// transmits, refusing (as switchd would) ports with nothing plugged in and VTEPs that
/// are not on the underlay.
fn collect<'a>(
    outs: &'a mut Vec<Out>,
    sw: SwitchId,
    peers: &'a HashMap<(SwitchId, PortId), Peer>,
    vteps: &'a HashMap<IpAddr, SwitchId>,
) -> impl FnMut(Transmit<'_>) -> Result<(), DropReason> + 'a {
    move |transmit| {
        match transmit {
            Transmit::Port { port, wire } => {
                if !peers.contains_key(&(sw, port)) || wire.len() > MAX_WIRE_LEN {
                    return Err(DropReason::TxError);
                }
                outs.push(Out::Port(port, wire.to_vec()));
            }
            Transmit::Vxlan {
                remote,
                datagrams,
                stride,
                ..
            } => {
                if !vteps.contains_key(&remote.ip()) {
                    return Err(DropReason::TxError);
                }
                outs.push(Out::Vxlan(remote, datagrams.to_vec(), stride));
            }
            Transmit::Uplink { wire } => outs.push(Out::Uplink(wire.to_vec())),
            Transmit::Dns { upstream, message } => outs.push(Out::Dns(upstream, message.to_vec())),
            // The simulator's clock is the caller's: nothing to wake.
            Transmit::DnsTimers => {}
        }
        Ok(())
    }
}

/// Builds an Ethernet frame, tagged for `vlan` when given, padded to the 60-byte minimum.
pub fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; HEADER_LEN];
    match vlan {
        None => emit_header(&mut out, dst, src, EtherType(0x88b5)),
        Some(vid) => {
            emit_header(&mut out, dst, src, EtherType::VLAN);
            out.extend_from_slice(&Tci::new(0, false, vid).0.to_be_bytes());
            out.extend_from_slice(&0x88b5u16.to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out.resize(out.len().max(60), 0);
    out
}

/// The VLAN id a frame is tagged with, if any.
pub fn tag_of(frame: &[u8]) -> Option<u16> {
    crate::wire::EthernetFrame::new_checked(frame)
        .ok()
        .and_then(|f| f.tci())
        .map(|t| t.vid())
}

/// Shorthand for an access port mode.
pub fn access(vlan: u16) -> PortMode {
    PortMode::Access {
        vlan: VlanId::new(vlan).expect("test VLAN id in 1..=4094"),
    }
}

/// Shorthand for a trunk port mode: `allowed` like `"10,20"`.
pub fn trunk(allowed: &str, native: Option<u16>) -> PortMode {
    PortMode::Trunk {
        allowed: allowed.parse().expect("test VLAN list"),
        native: native.map(|v| VlanId::new(v).expect("test VLAN id in 1..=4094")),
    }
}
