//! The forwarding core: a pure function of (time, in-port, frame) to a [`Decision`].
//!
//! [`Switch::process`] takes a frame from a local port (a TAP): it classifies the frame
//! into a VLAN by the port's mode, learns its source address, and decides: one egress
//! port for known unicast, a flood of the VLAN for broadcast, multicast and unknown
//! unicast, or a drop with a reason. [`Switch::process_vxlan`] does the same for a VXLAN
//! datagram from the underlay: it checks that the sender is a configured peer, maps the
//! VNI to a VLAN, and forwards the inner frame as if it came in on that peer's tunnel port.
//!
//! Remote VTEPs are ports too (*tunnel ports*), so the MAC table learns (VLAN, MAC) →
//! the VTEP a MAC sits behind, and flooding replicates to every peer of the VLAN's VNI
//! (head-end replication). A frame that came from a tunnel port is never sent back out
//! of a tunnel port: each VTEP replicates to all peers itself (split horizon).
//!
//! The core never touches a file descriptor or a clock. [`Switch::execute`] carries a
//! decision out through a caller-supplied `send`, tagging or untagging per egress port;
//! for tunnel egress, [`Switch::vxlan_target`] says where and with which VNI.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use switchyard_encap::vxlan::{VxlanHeader, HEADER_LEN as VXLAN_HEADER_LEN};
use switchyard_encap::Vni;

use crate::fdb::{FdbConfig, FlushFilter, MacTable};
use crate::port::{PortId, PortMode};
use crate::time::Time;
use crate::wire::{EtherType, EthernetFrame, MacAddr, PacketBuf, VlanId, VlanSet};

/// Why a frame was not forwarded. Counted per ingress port (per egress port for the
/// transmit-side reasons, and switch-wide when there is no port), never returned as an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than an Ethernet header, or a tag cut off.
    Malformed,
    /// Source address is multicast, broadcast or all-zero.
    InvalidSource,
    /// 01:80:C2:00:00:0x (STP, LACP, LLDP, pause): an 802.1D bridge must not forward these.
    ReservedMulticast,
    /// A VLAN-tagged frame arrived on an access port.
    TaggedOnAccess,
    /// An untagged frame arrived on a trunk port that has no native VLAN.
    UntaggedOnTrunk,
    /// The tag names VLAN 4095, which is reserved.
    InvalidVlan,
    /// The tag names a VLAN the trunk port does not allow.
    VlanNotAllowed,
    /// The destination sits behind the port the frame came in on.
    SameSegment,
    /// Forwarding would have sent the frame only to ports that are down, or to none.
    NoEgress,
    /// The ingress port is unknown to the core (removed while frames were in flight).
    UnknownPort,
    /// Sending on the egress port failed.
    TxError,
    /// VXLAN from an address that is not a configured peer (RFC 7348 §7): never learned
    /// from, never delivered.
    UnknownVtep,
    /// A VXLAN datagram too short for its header, or without the I flag.
    BadVxlanHeader,
    /// A VXLAN datagram for a VNI no VLAN is mapped to.
    UnmappedVni,
    /// The frame inside a VXLAN datagram is shorter than an Ethernet header.
    TruncatedInner,
    /// The frame inside a VXLAN datagram carries its own 802.1Q tag (RFC 7348 §6.1).
    InnerTagged,
    /// A frame from one tunnel port was headed for another: each VTEP replicates itself.
    SplitHorizon,
    /// A second 802.1Q tag sits right after the one the frame was classified by (or
    /// after a priority tag): popping one would expose the other, the classic VLAN-hopping
    /// trick, so such frames are never forwarded.
    DoubleTagged,
    /// After encapsulation the frame would exceed the underlay MTU.
    TooBig,
    /// A TAP handed over an offload (GSO) frame switchd cannot segment.
    BadOffload,
}

impl DropReason {
    pub const ALL: [DropReason; 20] = [
        DropReason::Malformed,
        DropReason::InvalidSource,
        DropReason::ReservedMulticast,
        DropReason::TaggedOnAccess,
        DropReason::UntaggedOnTrunk,
        DropReason::InvalidVlan,
        DropReason::VlanNotAllowed,
        DropReason::SameSegment,
        DropReason::NoEgress,
        DropReason::UnknownPort,
        DropReason::TxError,
        DropReason::UnknownVtep,
        DropReason::BadVxlanHeader,
        DropReason::UnmappedVni,
        DropReason::TruncatedInner,
        DropReason::InnerTagged,
        DropReason::SplitHorizon,
        DropReason::DoubleTagged,
        DropReason::TooBig,
        DropReason::BadOffload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::InvalidSource => "invalid_source",
            DropReason::ReservedMulticast => "reserved_multicast",
            DropReason::TaggedOnAccess => "tagged_on_access",
            DropReason::UntaggedOnTrunk => "untagged_on_trunk",
            DropReason::InvalidVlan => "invalid_vlan",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::SameSegment => "same_segment",
            DropReason::NoEgress => "no_egress",
            DropReason::UnknownPort => "unknown_port",
            DropReason::TxError => "tx_error",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::BadVxlanHeader => "bad_vxlan_header",
            DropReason::UnmappedVni => "unmapped_vni",
            DropReason::TruncatedInner => "truncated_inner",
            DropReason::InnerTagged => "inner_tagged",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::DoubleTagged => "double_tagged",
            DropReason::TooBig => "too_big",
            DropReason::BadOffload => "bad_offload",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where one copy of a frame goes, and how it must be tagged there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Egress {
    pub port: PortId,
    /// The VLAN the frame belongs to (for a tunnel port: which VNI to use).
    pub vlan: VlanId,
    /// `None`: send untagged; `Some(vlan)`: send with an 802.1Q tag for `vlan`.
    pub tag: Option<VlanId>,
}

/// What to do with one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Known unicast: one copy.
    Output(Egress),
    /// Broadcast, multicast or unknown unicast: every up port of `vlan` but `except`
    /// (and, when `except` is a tunnel port, but every tunnel port).
    Flood {
        vlan: VlanId,
        except: PortId,
    },
    Drop(DropReason),
}

/// Per-port traffic counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Drops by reason; reasons that never happened are absent.
    pub drops: BTreeMap<DropReason, u64>,
}

#[derive(Clone, Debug, Default)]
struct Counters {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    fn snapshot(&self) -> PortCounters {
        PortCounters {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            drops: DropReason::ALL
                .iter()
                .filter(|r| self.drops[r.index()] > 0)
                .map(|r| (*r, self.drops[r.index()]))
                .collect(),
        }
    }
}

/// What is behind a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// A local attachment (a TAP): VLANs by its [`PortMode`].
    Local,
    /// A remote VTEP at `remote`: carries every VLAN that has a VNI, untagged inside VXLAN.
    Tunnel { remote: SocketAddr },
}

struct Port {
    kind: PortKind,
    mode: PortMode,
    up: bool,
    counters: Counters,
}

impl Port {
    fn is_tunnel(&self) -> bool {
        matches!(self.kind, PortKind::Tunnel { .. })
    }
}

/// A request to the core named a port it does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such port: {0}")]
pub struct NoSuchPort(pub PortId);

/// An overlay change the core refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    #[error("VNI {vni} is already mapped to VLAN {vlan}; unmap it first")]
    VniTaken { vni: Vni, vlan: VlanId },
    #[error("{0} is already a peer")]
    PeerExists(IpAddr),
    #[error("{0} is not a peer")]
    NoSuchPeer(IpAddr),
    #[error("port {0} is already in use")]
    PortInUse(PortId),
}

/// The VLAN ↔ VNI map and the peers. Pure policy: the sockets live in switchd.
#[derive(Default)]
struct Overlay {
    vni_of: BTreeMap<VlanId, Vni>,
    vlan_of: HashMap<Vni, VlanId>,
    peers: HashMap<IpAddr, PortId>,
    accept_inner_tagged: bool,
}

/// The switch: ports with their VLAN modes, the MAC table, the overlay, and counters.
pub struct Switch {
    ports: BTreeMap<PortId, Port>,
    /// Up ports of each VLAN with their egress tagging, ascending by port id.
    /// Rebuilt whenever a port is added, removed, reconfigured or changes state.
    members: HashMap<VlanId, Vec<Egress>>,
    fdb: MacTable,
    overlay: Overlay,
    /// Drops that belong to no port (VXLAN from strangers).
    unattributed: Counters,
}

impl Switch {
    pub fn new(fdb: FdbConfig) -> Switch {
        Switch {
            ports: BTreeMap::new(),
            members: HashMap::new(),
            fdb: MacTable::new(fdb),
            overlay: Overlay::default(),
            unattributed: Counters::default(),
        }
    }

    pub fn fdb(&self) -> &MacTable {
        &self.fdb
    }

    pub fn fdb_mut(&mut self) -> &mut MacTable {
        &mut self.fdb
    }

    /// Adds a local port, up, or reconfigures an existing one (keeping its counters).
    /// Reconfiguring flushes what the port learned, since it may no longer carry those VLANs.
    pub fn set_port(&mut self, id: PortId, mode: PortMode) {
        match self.ports.get_mut(&id) {
            Some(port) => {
                port.mode = mode;
                self.flush_learned(id);
            }
            None => {
                self.ports.insert(
                    id,
                    Port {
                        kind: PortKind::Local,
                        mode,
                        up: true,
                        counters: Counters::default(),
                    },
                );
            }
        }
        self.rebuild_members();
    }

    /// Removes a port (local or tunnel) and every FDB entry, static or learned, that
    /// points at it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), NoSuchPort> {
        let port = self.ports.remove(&id).ok_or(NoSuchPort(id))?;
        if let PortKind::Tunnel { remote } = port.kind {
            self.overlay.peers.remove(&remote.ip());
        }
        self.fdb.flush(FlushFilter {
            port: Some(id),
            include_static: true,
            ..FlushFilter::default()
        });
        self.rebuild_members();
        Ok(())
    }

    /// Marks a port up or down. A down port receives nothing; what it learned is flushed.
    pub fn set_port_up(&mut self, id: PortId, up: bool) -> Result<(), NoSuchPort> {
        let port = self.ports.get_mut(&id).ok_or(NoSuchPort(id))?;
        if port.up != up {
            port.up = up;
            if !up {
                self.flush_learned(id);
            }
            self.rebuild_members();
        }
        Ok(())
    }

    pub fn port_mode(&self, id: PortId) -> Option<&PortMode> {
        self.ports.get(&id).map(|p| &p.mode)
    }

    pub fn port_kind(&self, id: PortId) -> Option<PortKind> {
        self.ports.get(&id).map(|p| p.kind)
    }

    pub fn is_port_up(&self, id: PortId) -> bool {
        self.ports.get(&id).is_some_and(|p| p.up)
    }

    pub fn port_ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    pub fn counters(&self, id: PortId) -> Option<PortCounters> {
        self.ports.get(&id).map(|p| p.counters.snapshot())
    }

    /// Drops that belong to no port, such as VXLAN from an address that is not a peer.
    pub fn unattributed_drops(&self) -> BTreeMap<DropReason, u64> {
        self.unattributed.snapshot().drops
    }

    // ---- overlay ----

    /// Carries `vlan` over the overlay as `vni` (replacing an earlier VNI of that VLAN).
    pub fn map_vni(&mut self, vlan: VlanId, vni: Vni) -> Result<(), OverlayError> {
        if let Some(&other) = self.overlay.vlan_of.get(&vni) {
            if other != vlan {
                return Err(OverlayError::VniTaken { vni, vlan: other });
            }
        }
        if let Some(old) = self.overlay.vni_of.insert(vlan, vni) {
            self.overlay.vlan_of.remove(&old);
        }
        self.overlay.vlan_of.insert(vni, vlan);
        self.retune_tunnels();
        Ok(())
    }

    /// Stops carrying `vlan` over the overlay. Returns the VNI it had.
    pub fn unmap_vlan(&mut self, vlan: VlanId) -> Option<Vni> {
        let vni = self.overlay.vni_of.remove(&vlan)?;
        self.overlay.vlan_of.remove(&vni);
        self.retune_tunnels();
        Some(vni)
    }

    /// The VLAN ↔ VNI map, by VLAN.
    pub fn vni_map(&self) -> impl Iterator<Item = (VlanId, Vni)> + '_ {
        self.overlay.vni_of.iter().map(|(vlan, vni)| (*vlan, *vni))
    }

    pub fn vni_of(&self, vlan: VlanId) -> Option<Vni> {
        self.overlay.vni_of.get(&vlan).copied()
    }

    /// Whether inner frames carrying an 802.1Q tag are accepted (default: dropped).
    pub fn set_accept_inner_tagged(&mut self, accept: bool) {
        self.overlay.accept_inner_tagged = accept;
    }

    pub fn accepts_inner_tagged(&self) -> bool {
        self.overlay.accept_inner_tagged
    }

    /// Adds the remote VTEP at `remote` as tunnel port `id`.
    pub fn add_peer(&mut self, id: PortId, remote: SocketAddr) -> Result<(), OverlayError> {
        if self.overlay.peers.contains_key(&remote.ip()) {
            return Err(OverlayError::PeerExists(remote.ip()));
        }
        if self.ports.contains_key(&id) {
            return Err(OverlayError::PortInUse(id));
        }
        self.ports.insert(
            id,
            Port {
                kind: PortKind::Tunnel { remote },
                mode: self.tunnel_mode(),
                up: true,
                counters: Counters::default(),
            },
        );
        self.overlay.peers.insert(remote.ip(), id);
        self.rebuild_members();
        Ok(())
    }

    /// Removes the peer at `addr` and what was learned behind it. Returns its port.
    pub fn remove_peer(&mut self, addr: IpAddr) -> Result<PortId, OverlayError> {
        let id = *self
            .overlay
            .peers
            .get(&addr)
            .ok_or(OverlayError::NoSuchPeer(addr))?;
        let _ = self.remove_port(id);
        Ok(id)
    }

    /// The tunnel port of the peer at `addr`.
    pub fn peer_port(&self, addr: IpAddr) -> Option<PortId> {
        self.overlay.peers.get(&addr).copied()
    }

    /// Where a copy for `egress` goes on the underlay, and with which VNI, when
    /// `egress.port` is a tunnel port.
    #[inline]
    pub fn vxlan_target(&self, egress: &Egress) -> Option<(SocketAddr, Vni)> {
        match self.ports.get(&egress.port)?.kind {
            PortKind::Tunnel { remote } => Some((remote, self.vni_of(egress.vlan)?)),
            PortKind::Local => None,
        }
    }

    fn tunnel_mode(&self) -> PortMode {
        PortMode::Trunk {
            allowed: self.overlay.vni_of.keys().copied().collect::<VlanSet>(),
            native: None,
        }
    }

    /// Gives every tunnel port the VLANs that currently have a VNI.
    fn retune_tunnels(&mut self) {
        let mode = self.tunnel_mode();
        let tunnels: Vec<PortId> = self
            .ports
            .iter()
            .filter(|(_, p)| p.is_tunnel())
            .map(|(id, _)| *id)
            .collect();
        for id in tunnels {
            if let Some(port) = self.ports.get_mut(&id) {
                port.mode = mode.clone();
            }
            self.flush_learned(id);
        }
        self.rebuild_members();
    }

    // ---- forwarding ----

    fn flush_learned(&mut self, id: PortId) {
        self.fdb.flush(FlushFilter {
            port: Some(id),
            ..FlushFilter::default()
        });
    }

    fn rebuild_members(&mut self) {
        self.members.clear();
        for (id, port) in self.ports.iter().filter(|(_, p)| p.up) {
            for vlan in port.mode.vlans() {
                if let Some(tag) = port.mode.egress_tag(vlan) {
                    // Inside VXLAN a frame travels untagged; the VNI says its VLAN.
                    let tag = if port.is_tunnel() { None } else { tag };
                    self.members.entry(vlan).or_default().push(Egress {
                        port: *id,
                        vlan,
                        tag,
                    });
                }
            }
        }
    }

    fn count_drop(&mut self, port: PortId, reason: DropReason) -> Decision {
        match self.ports.get_mut(&port) {
            Some(port) => port.counters.drops[reason.index()] += 1,
            None => self.unattributed.drops[reason.index()] += 1,
        }
        Decision::Drop(reason)
    }

    /// Decides what to do with `frame`, which arrived on local port `in_port` at `now`,
    /// learning its source address on the way. Counts the frame as received and any drop
    /// by reason.
    pub fn process(&mut self, now: Time, in_port: PortId, frame: &[u8]) -> Decision {
        let Some(port) = self.ports.get_mut(&in_port) else {
            return Decision::Drop(DropReason::UnknownPort);
        };
        port.counters.rx_packets += 1;
        port.counters.rx_bytes += frame.len() as u64;
        if !port.up {
            return self.count_drop(in_port, DropReason::NoEgress);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return self.count_drop(in_port, DropReason::Malformed);
        };
        let vlan = match Self::classify(&port.mode, &eth) {
            Ok(vlan) => vlan,
            Err(reason) => return self.count_drop(in_port, reason),
        };
        if eth.tci().is_some() && eth.payload_ethertype() == EtherType::VLAN {
            return self.count_drop(in_port, DropReason::DoubleTagged);
        }
        self.forward(now, in_port, vlan, eth.src(), eth.dst())
    }

    /// Decides what to do with a VXLAN `datagram` (header and inner frame) that arrived
    /// from the underlay address `src`. The inner frame is `datagram[8..]`.
    pub fn process_vxlan(&mut self, now: Time, src: IpAddr, datagram: &[u8]) -> Decision {
        let Some(&in_port) = self.overlay.peers.get(&src) else {
            self.unattributed.drops[DropReason::UnknownVtep.index()] += 1;
            return Decision::Drop(DropReason::UnknownVtep);
        };
        let port = self
            .ports
            .get_mut(&in_port)
            .expect("every peer has a tunnel port");
        port.counters.rx_packets += 1;
        port.counters.rx_bytes += datagram.len().saturating_sub(VXLAN_HEADER_LEN) as u64;
        let Ok(header) = VxlanHeader::new_checked(datagram) else {
            return self.count_drop(in_port, DropReason::BadVxlanHeader);
        };
        let Some(&vlan) = self.overlay.vlan_of.get(&header.vni()) else {
            return self.count_drop(in_port, DropReason::UnmappedVni);
        };
        let Ok(eth) = EthernetFrame::new_checked(header.inner()) else {
            return self.count_drop(in_port, DropReason::TruncatedInner);
        };
        if eth.tci().is_some() && !self.overlay.accept_inner_tagged {
            return self.count_drop(in_port, DropReason::InnerTagged);
        }
        if eth.tci().is_some() && eth.payload_ethertype() == EtherType::VLAN {
            return self.count_drop(in_port, DropReason::DoubleTagged);
        }
        self.forward(now, in_port, vlan, eth.src(), eth.dst())
    }

    /// Learning and the forwarding decision, once the frame's VLAN is known.
    fn forward(
        &mut self,
        now: Time,
        in_port: PortId,
        vlan: VlanId,
        src: MacAddr,
        dst: MacAddr,
    ) -> Decision {
        if !src.is_valid_source() {
            return self.count_drop(in_port, DropReason::InvalidSource);
        }
        if dst.is_link_local_reserved() {
            return self.count_drop(in_port, DropReason::ReservedMulticast);
        }
        self.fdb.learn(now, vlan, src, in_port);
        if dst.is_multicast() {
            return self.flood(vlan, in_port);
        }
        let from_tunnel = self.ports.get(&in_port).is_some_and(Port::is_tunnel);
        match self.fdb.lookup(now, vlan, dst) {
            Some(out) if out == in_port => self.count_drop(in_port, DropReason::SameSegment),
            Some(out) => match self.ports.get(&out) {
                Some(port) if port.up && from_tunnel && port.is_tunnel() => {
                    self.count_drop(in_port, DropReason::SplitHorizon)
                }
                Some(port) if port.up => match port.mode.egress_tag(vlan) {
                    Some(tag) => Decision::Output(Egress {
                        port: out,
                        vlan,
                        tag: if port.is_tunnel() { None } else { tag },
                    }),
                    // A static entry can point at a port outside the VLAN.
                    None => self.count_drop(in_port, DropReason::NoEgress),
                },
                _ => self.flood(vlan, in_port),
            },
            None => self.flood(vlan, in_port),
        }
    }

    /// Whether a flood from `from` may use `egress` (not back out of its port, and not
    /// from one tunnel port to another).
    fn floods_to(&self, from_tunnel: bool, from: PortId, egress: &Egress) -> bool {
        egress.port != from
            && !(from_tunnel && self.ports.get(&egress.port).is_some_and(Port::is_tunnel))
    }

    fn flood(&mut self, vlan: VlanId, except: PortId) -> Decision {
        let from_tunnel = self.ports.get(&except).is_some_and(Port::is_tunnel);
        let has_target = self
            .members
            .get(&vlan)
            .is_some_and(|m| m.iter().any(|e| self.floods_to(from_tunnel, except, e)));
        if has_target {
            Decision::Flood { vlan, except }
        } else {
            self.count_drop(except, DropReason::NoEgress)
        }
    }

    /// The VLAN a frame arriving on a port of `mode` belongs to, or why it is refused.
    fn classify<T: AsRef<[u8]>>(
        mode: &PortMode,
        eth: &EthernetFrame<T>,
    ) -> Result<VlanId, DropReason> {
        let tag_vid = eth.tci().map(|tci| tci.vid());
        match (mode, tag_vid) {
            // No tag, or a priority tag (VLAN id 0): the port's untagged VLAN.
            (_, None | Some(0)) => mode.untagged_vlan().ok_or(DropReason::UntaggedOnTrunk),
            (PortMode::Access { .. }, Some(_)) => Err(DropReason::TaggedOnAccess),
            (PortMode::Trunk { allowed, .. }, Some(vid)) => {
                let vlan = VlanId::new(vid).ok_or(DropReason::InvalidVlan)?;
                if allowed.contains(vlan) {
                    Ok(vlan)
                } else {
                    Err(DropReason::VlanNotAllowed)
                }
            }
        }
    }

    /// Every copy `decision` asks for, into `out` (cleared first): the one egress of a
    /// known unicast, or every up port of the VLAN but the ingress one for a flood (and
    /// no tunnel port when the frame came from one). For a tunnel egress the frame goes
    /// untagged; [`Switch::vxlan_target`] says where.
    pub fn egresses_into(&self, decision: Decision, out: &mut Vec<Egress>) {
        out.clear();
        match decision {
            Decision::Output(egress) => out.push(egress),
            Decision::Flood { vlan, except } => {
                let from_tunnel = self.ports.get(&except).is_some_and(Port::is_tunnel);
                if let Some(members) = self.members.get(&vlan) {
                    out.extend(
                        members
                            .iter()
                            .filter(|e| self.floods_to(from_tunnel, except, e)),
                    );
                }
            }
            Decision::Drop(_) => {}
        }
    }

    /// Carries out `decision` for `packet`: for every egress, tags or untags the packet as
    /// that port needs and hands it to `send`, counting what was sent and what failed.
    /// `send` returns the drop reason when the port could not take the frame. (switchd's
    /// forwarding threads do the same in three steps so that no lock is held while they
    /// send; see [`Switch::egresses_into`].)
    pub fn execute(
        &mut self,
        decision: Decision,
        packet: &mut PacketBuf,
        mut send: impl FnMut(&Switch, &Egress, &PacketBuf) -> Result<(), DropReason>,
    ) {
        let mut egresses = Vec::new();
        self.egresses_into(decision, &mut egresses);
        for egress in egresses {
            if packet.set_vlan_tag(egress.tag).is_err() {
                self.count_drop(egress.port, DropReason::Malformed);
                continue;
            }
            match send(self, &egress, packet) {
                Ok(()) => self.record_tx(egress.port, packet.frame().len()),
                Err(reason) => {
                    self.count_drop(egress.port, reason);
                }
            }
        }
    }

    /// Counts a frame of `bytes` sent on `port`.
    pub fn record_tx(&mut self, port: PortId, bytes: usize) {
        if let Some(port) = self.ports.get_mut(&port) {
            port.counters.tx_packets += 1;
            port.counters.tx_bytes += bytes as u64;
        }
    }

    /// Counts a frame that could not be sent on `port`.
    pub fn record_tx_drop(&mut self, port: PortId, reason: DropReason) {
        self.count_drop(port, reason);
    }

    /// Reclaims aged FDB entries; returns how many. Call at [`Switch::next_timeout`].
    pub fn handle_timeout(&mut self, now: Time) -> usize {
        self.fdb.expire(now)
    }

    /// When [`Switch::handle_timeout`] next has work, if ever.
    pub fn next_timeout(&self) -> Option<Time> {
        self.fdb.next_expiry()
    }
}
