//! A deterministic simulator of hosts and switches, for testing the core without root.
//!
//! Every switch is a real [`Switch`]; its ports lead to in-memory hosts (which keep what
//! they receive in an inbox) or, through links, to ports of other switches. Frames travel
//! through the same [`Switch::process`] and [`Switch::execute`] that switchd uses. The
//! clock is virtual and only moves when [`Network::advance`] is called, so aging tests
//! take no wall time and every run is identical.
//!
//! Switches can also be VTEPs on an in-memory underlay: give each an address with
//! [`Network::set_vtep`] and make them peers with [`Network::add_peer`]. Frames to a
//! tunnel port are encapsulated with the real VXLAN codec and arrive at the peer through
//! [`Switch::process_vxlan`], exactly as switchd hands over what its UDP socket reads.
//!
//! A [`Router`] can sit on a switch port, as switchd's does ([`Network::add_router`]): what
//! the switch sends it goes through [`Router::from_switch`], what it answers comes back
//! into the switch on that port, and what it routes to the host lands in an uplink inbox
//! ([`Network::take_uplink`]); [`Network::send_uplink`] plays the host sending into it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use switchyard_encap::vxlan::{self, IANA_PORT};

use crate::fdb::FdbConfig;
use crate::forward::{Decision, DropReason, Switch};
use crate::port::{PortId, PortMode};
use crate::router::{Router, RouterOutput, Verdict};
use crate::time::Time;
use crate::wire::{emit_header, EtherType, MacAddr, PacketBuf, Tci, VlanId, HEADER_LEN};

/// Index of a switch in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SwitchId(pub usize);

/// Index of a host in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(pub usize);

/// Index of a router in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouterId(pub usize);

#[derive(Clone, Copy, Debug)]
enum Peer {
    Host(HostId),
    Switch(SwitchId, PortId),
    Router(RouterId),
}

/// A router on a switch port, and what it sent up its uplink.
struct SimRouter {
    router: Router,
    at: (SwitchId, PortId),
    uplink: Vec<Vec<u8>>,
    verdicts: Vec<Verdict>,
}

struct Host {
    at: (SwitchId, PortId),
    inbox: Vec<Vec<u8>>,
}

/// A frame on its way into a switch.
enum Arrival {
    /// On a local port.
    Port(SwitchId, PortId, Vec<u8>),
    /// A VXLAN datagram from underlay address `src`.
    Vxlan(SwitchId, IpAddr, Vec<u8>),
}

/// A set of simulated switches, hosts and links with a virtual clock.
pub struct Network {
    now: Time,
    switches: Vec<Switch>,
    next_port: Vec<u32>,
    peers: HashMap<(SwitchId, PortId), Peer>,
    hosts: Vec<Host>,
    routers: Vec<SimRouter>,
    vteps: HashMap<IpAddr, SwitchId>,
    vtep_of: HashMap<SwitchId, IpAddr>,
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
            next_port: Vec::new(),
            peers: HashMap::new(),
            hosts: Vec::new(),
            routers: Vec::new(),
            vteps: HashMap::new(),
            vtep_of: HashMap::new(),
            hop_budget: 10_000,
        }
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn add_switch(&mut self, fdb: FdbConfig) -> SwitchId {
        self.switches.push(Switch::new(fdb));
        self.next_port.push(1);
        SwitchId(self.switches.len() - 1)
    }

    pub fn switch(&self, id: SwitchId) -> &Switch {
        &self.switches[id.0]
    }

    pub fn switch_mut(&mut self, id: SwitchId) -> &mut Switch {
        &mut self.switches[id.0]
    }

    /// Adds a port to switch `sw`, with nothing plugged in yet.
    pub fn add_port(&mut self, sw: SwitchId, mode: PortMode) -> PortId {
        let id = PortId(self.next_port[sw.0]);
        self.next_port[sw.0] += 1;
        self.switches[sw.0].set_port(id, mode);
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

    /// Puts a router on a new port of `sw` in `mode` (a trunk of its interfaces' VLANs).
    pub fn add_router(&mut self, sw: SwitchId, mode: PortMode) -> RouterId {
        let port = self.add_port(sw, mode);
        self.routers.push(SimRouter {
            router: Router::new(),
            at: (sw, port),
            uplink: Vec::new(),
            verdicts: Vec::new(),
        });
        let id = RouterId(self.routers.len() - 1);
        self.peers.insert((sw, port), Peer::Router(id));
        id
    }

    pub fn router_mut(&mut self, id: RouterId) -> &mut Router {
        &mut self.routers[id.0].router
    }

    /// The switch port a router sits on.
    pub fn router_port(&self, id: RouterId) -> (SwitchId, PortId) {
        self.routers[id.0].at
    }

    /// IP packets the router sent up its uplink since the last call.
    pub fn take_uplink(&mut self, id: RouterId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.routers[id.0].uplink)
    }

    /// The router's verdicts since the last call, oldest first.
    pub fn take_verdicts(&mut self, id: RouterId) -> Vec<Verdict> {
        std::mem::take(&mut self.routers[id.0].verdicts)
    }

    /// The host sends `packet` (IPv4) into the router's uplink.
    pub fn send_uplink(&mut self, id: RouterId, packet: &[u8]) -> Verdict {
        let mut packet = packet.to_vec();
        let mut out = Vec::new();
        let now = self.now;
        let sim = &mut self.routers[id.0];
        let verdict = sim.router.from_uplink(now, &mut packet, true, &mut out);
        sim.verdicts.push(verdict);
        let (sw, port) = sim.at;
        let mut arrivals = VecDeque::new();
        if let Verdict::ToSwitch { vlan, dst, src } = verdict {
            let mut frame = vec![0; HEADER_LEN];
            emit_header(&mut frame, dst, src, EtherType::IPV4);
            frame.extend_from_slice(&packet);
            arrivals.push_back(Arrival::Port(sw, port, tagged(&frame, vlan)));
        }
        route_outputs(sim, out, &mut arrivals);
        for arrival in arrivals {
            self.run(arrival);
        }
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
        self.vtep_of.insert(sw, addr);
    }

    /// Makes the VTEP at `remote` a peer of switch `sw` (one direction; call twice for a
    /// pair). Returns the tunnel port.
    pub fn add_peer(&mut self, sw: SwitchId, remote: IpAddr) -> PortId {
        let id = PortId(self.next_port[sw.0]);
        self.next_port[sw.0] += 1;
        self.switches[sw.0]
            .add_peer(id, SocketAddr::new(remote, IANA_PORT))
            .expect("a new peer");
        id
    }

    /// Delivers a VXLAN datagram to switch `sw` as if from underlay address `src`
    /// (which need not be a VTEP of this network: a stranger).
    pub fn inject_vxlan(&mut self, sw: SwitchId, src: IpAddr, datagram: &[u8]) -> Decision {
        self.run(Arrival::Vxlan(sw, src, datagram.to_vec()))
    }

    /// Moves the clock forward and lets every switch age its table.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        for switch in &mut self.switches {
            switch.handle_timeout(self.now);
        }
        for sim in &mut self.routers {
            sim.router.handle_timeout(self.now);
        }
    }

    /// Frames `host` has received since the last call, oldest first.
    pub fn take_inbox(&mut self, host: HostId) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.hosts[host.0].inbox)
    }

    /// `host` transmits `frame`; everything it causes is delivered before this returns.
    /// Returns the decision of the first switch, for tests that want to see it.
    ///
    /// # Panics
    /// If the frame is still bouncing after `hop_budget` deliveries: a forwarding loop.
    pub fn send(&mut self, host: HostId, frame: &[u8]) -> Decision {
        let (sw, port) = self.hosts[host.0].at;
        self.run(Arrival::Port(sw, port, frame.to_vec()))
    }

    fn run(&mut self, first_arrival: Arrival) -> Decision {
        let mut queue = VecDeque::from([first_arrival]);
        let mut first = None;
        let mut deliveries = 0;
        while let Some(arrival) = queue.pop_front() {
            let (sw, decision, mut packet) = match arrival {
                Arrival::Port(sw, in_port, frame) => {
                    let decision = self.switches[sw.0].process(self.now, in_port, &frame);
                    (sw, decision, PacketBuf::from_wire(&frame, false))
                }
                Arrival::Vxlan(sw, src, datagram) => {
                    let decision = self.switches[sw.0].process_vxlan(self.now, src, &datagram);
                    let inner = datagram.get(vxlan::HEADER_LEN..).unwrap_or_default();
                    (sw, decision, PacketBuf::from_wire(inner, false))
                }
            };
            first.get_or_insert(decision);
            let (peers, hosts, vteps) = (&self.peers, &mut self.hosts, &self.vteps);
            let routers = &mut self.routers;
            let now = self.now;
            let my_addr = self.vtep_of.get(&sw).copied();
            self.switches[sw.0].execute(decision, &mut packet, |switch, egress, packet| {
                deliveries += 1;
                if let Some((remote, vni)) = switch.vxlan_target(egress) {
                    let (Some(src), Some(next)) = (my_addr, vteps.get(&remote.ip())) else {
                        return Err(DropReason::TxError);
                    };
                    let mut header = [0u8; vxlan::HEADER_LEN];
                    vxlan::emit(&mut header, vni);
                    queue.push_back(Arrival::Vxlan(
                        *next,
                        src,
                        [&header[..], packet.frame()].concat(),
                    ));
                    return Ok(());
                }
                match peers.get(&(sw, egress.port)) {
                    Some(Peer::Host(h)) => hosts[h.0].inbox.push(packet.wire().to_vec()),
                    Some(Peer::Switch(next_sw, next_port)) => {
                        queue.push_back(Arrival::Port(*next_sw, *next_port, packet.wire().to_vec()))
                    }
                    Some(Peer::Router(r)) => {
                        let sim = &mut routers[r.0];
                        let mut frame = untagged(packet.frame());
                        let mut out = Vec::new();
                        let verdict =
                            sim.router
                                .from_switch(now, egress.vlan, &mut frame, &mut out);
                        sim.verdicts.push(verdict);
                        if verdict == Verdict::ToUplink {
                            sim.uplink
                                .push(frame.get(HEADER_LEN..).unwrap_or_default().to_vec());
                        }
                        route_outputs(sim, out, &mut queue);
                    }
                    None => return Err(DropReason::TxError),
                }
                Ok(())
            });
            assert!(
                deliveries <= self.hop_budget,
                "frame still in flight after {deliveries} deliveries: a forwarding loop"
            );
        }
        first.unwrap_or(Decision::Drop(DropReason::UnknownPort))
    }
}

/// Carries out a router's answers: frames back into its switch port, packets up the uplink.
fn route_outputs(sim: &mut SimRouter, out: Vec<RouterOutput>, queue: &mut VecDeque<Arrival>) {
    let (sw, port) = sim.at;
    for output in out {
        match output {
            RouterOutput::ToSwitch { vlan, frame } => {
                queue.push_back(Arrival::Port(sw, port, tagged(&frame, vlan)))
            }
            RouterOutput::ToUplink { packet } => sim.uplink.push(packet),
        }
    }
}

/// `frame` (untagged) with an 802.1Q tag for `vlan`, as a router on a trunk port sends it.
fn tagged(frame: &[u8], vlan: VlanId) -> Vec<u8> {
    let mut packet = PacketBuf::from_wire(frame, false);
    // A frame too short for a header stays as it is; the switch will drop it as malformed.
    let _ = packet.set_vlan_tag(Some(vlan));
    packet.frame().to_vec()
}

/// `frame` without its 802.1Q tag, as a router reads it.
fn untagged(frame: &[u8]) -> Vec<u8> {
    let mut packet = PacketBuf::from_wire(frame, false);
    let _ = packet.set_vlan_tag(None);
    packet.frame().to_vec()
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
