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
//! The core never touches a file descriptor or a clock. Carrying a decision out (tagging
//! per egress, encapsulating, the router) is the datapath's job (`crate::datapath`).
//!
//! # Threads
//!
//! One [`Switch`] is shared by every forwarding thread and the control thread, with no
//! lock on the forwarding path:
//!
//! * **Ports, VLAN membership and the overlay** (the *topology*) are read-mostly: the
//!   control thread publishes a new version on every change ([`crate::published`]), and
//!   each forwarding thread decides against its own [`View`], refreshed with one atomic
//!   load per frame. Changes are serialized by the publishing lock.
//! * **The FDB** is [`MacTable`]: lock-free lookups; its mutex is taken only to learn a
//!   new or moved address, or to refresh one at most once a second. A learn is checked,
//!   under that mutex, against the *current* topology, and every topology change that
//!   forgets addresses flushes them under the same mutex after publishing: so a thread
//!   deciding on an older view never leaves an entry behind a removed or reconfigured
//!   port.
//! * **Counters** are per-port atomics ([`Counters`]), each direction on a cache line of
//!   its own, so threads forwarding between different ports never write the same line.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use switchyard_encap::vxlan::{VxlanHeader, HEADER_LEN as VXLAN_HEADER_LEN};
use switchyard_encap::Vni;

use crate::capture::{self, CaptureTap, Direction};
use crate::fdb::{FdbConfig, FlushFilter, MacTable};
use crate::port::{PortId, PortMode, PortSecurity, StormLimit};
use crate::published::{Published, Snapshot};
use crate::time::Time;
use crate::trace::{LearnChange, LookupResult, Step};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{EtherType, EthernetFrame, MacAddr, VlanId, VlanSet};

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
    /// Port security: the Ethernet source is not the port's MAC.
    SpoofedMac,
    /// Port security: an IPv4 source that is not one of the port's addresses.
    SpoofedIp,
    /// Port security: ARP whose sender MAC or address is not the port's.
    SpoofedArp,
    /// Storm control: the port flooded more broadcast, multicast or unknown unicast
    /// than its limit allows.
    StormControl,
}

impl DropReason {
    pub const ALL: [DropReason; 24] = [
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
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::StormControl,
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
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::StormControl => "storm_control",
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

/// Packets and bytes of one direction, alone on a cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Line {
    packets: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug)]
#[repr(align(64))]
struct Drops([AtomicU64; DropReason::ALL.len()]);

impl Default for Drops {
    fn default() -> Self {
        Drops(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// One port's live counters, shared by every thread that forwards to or from it.
#[derive(Debug, Default)]
pub struct Counters {
    rx: Line,
    tx: Line,
    drops: Drops,
}

impl Counters {
    #[inline]
    fn count(line: &Line, bytes: usize) {
        line.packets.fetch_add(1, Ordering::Relaxed);
        line.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn count_rx(&self, bytes: usize) {
        Self::count(&self.rx, bytes);
    }

    #[inline]
    pub fn count_tx(&self, bytes: usize) {
        Self::count(&self.tx, bytes);
    }

    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back a frame of `bytes` that [`Counters::count_tx`] counted and the device
    /// refused after all (a driver that sends in batches learns it later): it is a
    /// `TxError` drop instead.
    pub fn refuse_tx(&self, bytes: usize) {
        // Saturating: a port removed and made again under the same id in between has
        // new counters that never counted the frame.
        let take = |counter: &AtomicU64, n: u64| {
            let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        take(&self.tx.packets, 1);
        take(&self.tx.bytes, bytes as u64);
        self.count_drop(DropReason::TxError);
    }

    pub fn snapshot(&self) -> PortCounters {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PortCounters {
            rx_packets: load(&self.rx.packets),
            rx_bytes: load(&self.rx.bytes),
            tx_packets: load(&self.tx.packets),
            tx_bytes: load(&self.tx.bytes),
            drops: DropReason::ALL
                .iter()
                .map(|r| (*r, load(&self.drops.0[r.index()])))
                .filter(|(_, n)| *n > 0)
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

/// The path MTU assumed towards a peer until the OS layer says otherwise.
pub const DEFAULT_PATH_MTU: u32 = 1500;

#[derive(Clone)]
struct Port {
    kind: PortKind,
    mode: PortMode,
    up: bool,
    /// Towards a tunnel port's VTEP.
    path_mtu: u32,
    counters: Arc<Counters>,
    /// What source addresses frames from the port may carry (local ports only).
    security: Option<PortSecurity>,
    /// The limit on what the port floods (local ports only), and its bucket.
    storm: Option<(StormLimit, Arc<TokenBucket>)>,
    /// Live captures of the port's frames (`crate::capture`); empty almost always.
    captures: Vec<Arc<CaptureTap>>,
}

impl Port {
    fn new(kind: PortKind, mode: PortMode) -> Port {
        Port {
            kind,
            mode,
            up: true,
            path_mtu: DEFAULT_PATH_MTU,
            counters: Arc::default(),
            security: None,
            storm: None,
            captures: Vec::new(),
        }
    }
}

/// A token bucket shared by the threads taking frames from one port: milli-tokens in
/// one atomic, refilled lazily from the time of the last refill. Lock-free; under
/// concurrent use it may admit a frame or two more than the limit, never many.
#[derive(Debug)]
pub struct TokenBucket {
    milli_tokens: AtomicU64,
    /// When it was last refilled (ms), or `u64::MAX` before its first use.
    last_ms: AtomicU64,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: StormLimit) -> TokenBucket {
        TokenBucket {
            milli_tokens: AtomicU64::new(u64::from(limit.burst) * 1000),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Takes one token at `now`, if there is one.
    #[inline]
    pub fn allow(&self, now: Time, limit: StormLimit) -> bool {
        let now_ms = now.as_millis();
        let cap = u64::from(limit.burst) * 1000;
        let mut last = self.last_ms.load(Ordering::Relaxed);
        if last == u64::MAX {
            // First use: the bucket starts full, from now.
            let _ = self.last_ms.compare_exchange(
                u64::MAX,
                now_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            last = self.last_ms.load(Ordering::Relaxed);
        }
        if last != u64::MAX
            && now_ms > last
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // pps tokens a second are pps milli-tokens a millisecond.
            let add = (now_ms - last).saturating_mul(u64::from(limit.pps));
            let _ = self
                .milli_tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    Some(t.saturating_add(add).min(cap))
                });
        }
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(1000)
            })
            .is_ok()
    }
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
#[derive(Clone, Default)]
struct Overlay {
    vni_of: BTreeMap<VlanId, Vni>,
    vlan_of: HashMap<Vni, VlanId>,
    peers: HashMap<IpAddr, PortId>,
    accept_inner_tagged: bool,
}

/// Ports, VLAN membership and the overlay: what the control thread changes and the
/// forwarding threads read (one published version at a time).
#[derive(Clone, Default)]
struct Topology {
    ports: BTreeMap<PortId, Port>,
    /// Up ports of each VLAN with their egress tagging, ascending by port id.
    /// Rebuilt whenever a port is added, removed, reconfigured or changes state.
    members: HashMap<VlanId, Vec<Egress>>,
    overlay: Overlay,
}

impl Topology {
    fn tunnel_mode(&self) -> PortMode {
        PortMode::Trunk {
            allowed: self.overlay.vni_of.keys().copied().collect::<VlanSet>(),
            native: None,
        }
    }

    /// Gives every tunnel port the VLANs that currently have a VNI. Returns the tunnel
    /// ports, whose learned addresses the caller flushes.
    fn retune_tunnels(&mut self) -> Vec<PortId> {
        let mode = self.tunnel_mode();
        let mut tunnels = Vec::new();
        for (id, port) in self.ports.iter_mut().filter(|(_, p)| p.is_tunnel()) {
            port.mode = mode.clone();
            tunnels.push(*id);
        }
        self.rebuild_members();
        tunnels
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

    /// Whether `port` is up and carries `vlan` (what learning on it requires).
    fn carries(&self, port: PortId, vlan: VlanId) -> bool {
        self.ports
            .get(&port)
            .is_some_and(|p| p.up && p.mode.is_member(vlan))
    }
}

/// A forwarding thread's view of the switch's ports: the version of the topology it
/// decides with. Refresh it with [`Switch::refresh`] before each frame (one atomic load).
pub struct View {
    snapshot: Snapshot<Topology>,
}

impl View {
    #[inline]
    fn topology(&self) -> &Topology {
        self.snapshot.get()
    }

    /// The counters of `port`, if the view has it.
    #[inline]
    pub fn counters(&self, port: PortId) -> Option<&Counters> {
        self.topology().ports.get(&port).map(|p| &*p.counters)
    }

    /// How a frame of `vlan` leaves through `port` (see [`PortMode::egress_tag`]).
    pub fn egress_tag(&self, port: PortId, vlan: VlanId) -> Option<Option<VlanId>> {
        let port = self.topology().ports.get(&port)?;
        port.mode.egress_tag(vlan)
    }

    /// Whether `port` is a local port (not a tunnel, not unknown).
    pub fn is_local(&self, port: PortId) -> bool {
        self.topology()
            .ports
            .get(&port)
            .is_some_and(|p| !p.is_tunnel())
    }

    /// Where a copy for `egress` goes on the underlay, with which VNI, and the path MTU
    /// towards it, when `egress.port` is a tunnel port.
    #[inline]
    pub fn vxlan_target(&self, egress: &Egress) -> Option<(SocketAddr, Vni, u32)> {
        let topology = self.topology();
        let port = topology.ports.get(&egress.port)?;
        match port.kind {
            PortKind::Tunnel { remote } => Some((
                remote,
                *topology.overlay.vni_of.get(&egress.vlan)?,
                port.path_mtu,
            )),
            PortKind::Local => None,
        }
    }

    /// The tunnel port of the peer at `addr`.
    pub fn peer_port(&self, addr: IpAddr) -> Option<PortId> {
        self.topology().overlay.peers.get(&addr).copied()
    }
}

/// The switch: ports with their VLAN modes, the MAC table, the overlay, and counters.
/// Shared by reference between threads; see the module documentation.
pub struct Switch {
    topology: Published<Topology>,
    fdb: MacTable,
    /// Drops that belong to no port (VXLAN from strangers).
    unattributed: Counters,
}

impl Switch {
    pub fn new(fdb: FdbConfig) -> Switch {
        Switch {
            topology: Published::new(Topology::default()),
            fdb: MacTable::new(fdb),
            unattributed: Counters::default(),
        }
    }

    pub fn fdb(&self) -> &MacTable {
        &self.fdb
    }

    /// A view of the current topology, for a forwarding thread.
    pub fn view(&self) -> View {
        View {
            snapshot: self.topology.snapshot(),
        }
    }

    /// Brings `view` up to date (one atomic load when nothing changed).
    #[inline]
    pub fn refresh(&self, view: &mut View) {
        view.snapshot.refresh(&self.topology);
    }

    /// Adds a local port, up, or reconfigures an existing one (keeping its counters).
    /// Reconfiguring flushes what the port learned, since it may no longer carry those VLANs.
    pub fn set_port(&self, id: PortId, mode: PortMode) {
        let existed = self.topology.update(|t| {
            let existed = match t.ports.get_mut(&id) {
                Some(port) => {
                    port.mode = mode;
                    true
                }
                None => {
                    t.ports.insert(id, Port::new(PortKind::Local, mode));
                    false
                }
            };
            t.rebuild_members();
            existed
        });
        if existed {
            self.flush_learned(id);
        }
    }

    /// Sets what local port `id` lets in (port security) and how much it may flood
    /// (storm control); `None` turns either off. A new limit starts with a full bucket.
    pub fn set_port_policy(
        &self,
        id: PortId,
        security: Option<PortSecurity>,
        storm: Option<StormLimit>,
    ) -> Result<(), NoSuchPort> {
        self.topology.try_update(|t| {
            let port = t.ports.get_mut(&id).ok_or(NoSuchPort(id))?;
            port.security = security;
            if port.storm.as_ref().map(|(limit, _)| *limit) != storm {
                port.storm = storm.map(|limit| (limit, Arc::new(TokenBucket::new(limit))));
            }
            Ok(())
        })
    }

    /// The port security and storm limit of port `id`.
    pub fn port_policy(&self, id: PortId) -> Option<(Option<PortSecurity>, Option<StormLimit>)> {
        let t = self.topology.load();
        let port = t.ports.get(&id)?;
        Some((port.security.clone(), port.storm.as_ref().map(|(l, _)| *l)))
    }

    /// Removes a port (local or tunnel) and every FDB entry, static or learned, that
    /// points at it.
    pub fn remove_port(&self, id: PortId) -> Result<(), NoSuchPort> {
        self.topology.try_update(|t| {
            let port = t.ports.remove(&id).ok_or(NoSuchPort(id))?;
            if let PortKind::Tunnel { remote } = port.kind {
                t.overlay.peers.remove(&remote.ip());
            }
            t.rebuild_members();
            Ok(())
        })?;
        self.fdb.flush(FlushFilter {
            port: Some(id),
            include_static: true,
            ..FlushFilter::default()
        });
        Ok(())
    }

    /// Marks a port up or down. A down port receives nothing; what it learned is flushed.
    pub fn set_port_up(&self, id: PortId, up: bool) -> Result<(), NoSuchPort> {
        let changed = self.topology.try_update(|t| {
            let port = t.ports.get_mut(&id).ok_or(NoSuchPort(id))?;
            let changed = port.up != up;
            port.up = up;
            if changed {
                t.rebuild_members();
            }
            Ok(changed)
        })?;
        if changed && !up {
            self.flush_learned(id);
        }
        Ok(())
    }

    pub fn port_mode(&self, id: PortId) -> Option<PortMode> {
        self.topology.load().ports.get(&id).map(|p| p.mode.clone())
    }

    pub fn port_kind(&self, id: PortId) -> Option<PortKind> {
        self.topology.load().ports.get(&id).map(|p| p.kind)
    }

    pub fn is_port_up(&self, id: PortId) -> bool {
        self.topology.load().ports.get(&id).is_some_and(|p| p.up)
    }

    pub fn port_ids(&self) -> Vec<PortId> {
        self.topology.load().ports.keys().copied().collect()
    }

    pub fn counters(&self, id: PortId) -> Option<PortCounters> {
        self.topology
            .load()
            .ports
            .get(&id)
            .map(|p| p.counters.snapshot())
    }

    /// Drops that belong to no port, such as VXLAN from an address that is not a peer.
    pub fn unattributed_drops(&self) -> BTreeMap<DropReason, u64> {
        self.unattributed.snapshot().drops
    }

    // ---- overlay ----

    /// Carries `vlan` over the overlay as `vni` (replacing an earlier VNI of that VLAN).
    pub fn map_vni(&self, vlan: VlanId, vni: Vni) -> Result<(), OverlayError> {
        let tunnels = self.topology.try_update(|t| {
            if let Some(&other) = t.overlay.vlan_of.get(&vni) {
                if other != vlan {
                    return Err(OverlayError::VniTaken { vni, vlan: other });
                }
            }
            if let Some(old) = t.overlay.vni_of.insert(vlan, vni) {
                t.overlay.vlan_of.remove(&old);
            }
            t.overlay.vlan_of.insert(vni, vlan);
            Ok(t.retune_tunnels())
        })?;
        tunnels.into_iter().for_each(|id| self.flush_learned(id));
        Ok(())
    }

    /// Stops carrying `vlan` over the overlay. Returns the VNI it had.
    pub fn unmap_vlan(&self, vlan: VlanId) -> Option<Vni> {
        let (vni, tunnels) = self
            .topology
            .try_update(|t| {
                let vni = t.overlay.vni_of.remove(&vlan).ok_or(())?;
                t.overlay.vlan_of.remove(&vni);
                Ok::<_, ()>((vni, t.retune_tunnels()))
            })
            .ok()?;
        tunnels.into_iter().for_each(|id| self.flush_learned(id));
        Some(vni)
    }

    /// The VLAN ↔ VNI map, by VLAN.
    pub fn vni_map(&self) -> Vec<(VlanId, Vni)> {
        let t = self.topology.load();
        t.overlay
            .vni_of
            .iter()
            .map(|(vlan, vni)| (*vlan, *vni))
            .collect()
    }

    pub fn vni_of(&self, vlan: VlanId) -> Option<Vni> {
        self.topology.load().overlay.vni_of.get(&vlan).copied()
    }

    /// Whether inner frames carrying an 802.1Q tag are accepted (default: dropped).
    pub fn set_accept_inner_tagged(&self, accept: bool) {
        self.topology
            .update(|t| t.overlay.accept_inner_tagged = accept);
    }

    pub fn accepts_inner_tagged(&self) -> bool {
        self.topology.load().overlay.accept_inner_tagged
    }

    /// Adds the remote VTEP at `remote` as tunnel port `id`.
    pub fn add_peer(&self, id: PortId, remote: SocketAddr) -> Result<(), OverlayError> {
        self.topology.try_update(|t| {
            if t.overlay.peers.contains_key(&remote.ip()) {
                return Err(OverlayError::PeerExists(remote.ip()));
            }
            if t.ports.contains_key(&id) {
                return Err(OverlayError::PortInUse(id));
            }
            let mode = t.tunnel_mode();
            t.ports
                .insert(id, Port::new(PortKind::Tunnel { remote }, mode));
            t.overlay.peers.insert(remote.ip(), id);
            t.rebuild_members();
            Ok(())
        })
    }

    /// Adds remote VTEPs, each `(port, remote, path MTU)`, as one new version of the
    /// topology (a cluster's nodes arrive by the hundred; one version each would copy
    /// the topology once per peer). All or none.
    pub fn add_peers(&self, peers: &[(PortId, SocketAddr, u32)]) -> Result<(), OverlayError> {
        if peers.is_empty() {
            return Ok(());
        }
        self.topology.try_update(|t| {
            let mode = t.tunnel_mode();
            for &(id, remote, path_mtu) in peers {
                if t.overlay.peers.contains_key(&remote.ip()) {
                    return Err(OverlayError::PeerExists(remote.ip()));
                }
                if t.ports.contains_key(&id) {
                    return Err(OverlayError::PortInUse(id));
                }
                let mut port = Port::new(PortKind::Tunnel { remote }, mode.clone());
                port.path_mtu = path_mtu;
                t.ports.insert(id, port);
                t.overlay.peers.insert(remote.ip(), id);
            }
            t.rebuild_members();
            Ok(())
        })
    }

    /// Removes the peers at `addrs` (those that are peers) and what was learned behind
    /// them, as one new version of the topology.
    pub fn remove_peers(&self, addrs: &[IpAddr]) {
        if addrs.is_empty() {
            return;
        }
        let removed = self.topology.update(|t| {
            let removed: Vec<PortId> = addrs
                .iter()
                .filter_map(|addr| t.overlay.peers.remove(addr))
                .collect();
            for id in &removed {
                t.ports.remove(id);
            }
            t.rebuild_members();
            removed
        });
        for id in removed {
            self.fdb.flush(FlushFilter {
                port: Some(id),
                include_static: true,
                ..FlushFilter::default()
            });
        }
    }

    /// Removes the peer at `addr` and what was learned behind it. Returns its port.
    pub fn remove_peer(&self, addr: IpAddr) -> Result<PortId, OverlayError> {
        let id = self.peer_port(addr).ok_or(OverlayError::NoSuchPeer(addr))?;
        let _ = self.remove_port(id);
        Ok(id)
    }

    /// The tunnel port of the peer at `addr`.
    pub fn peer_port(&self, addr: IpAddr) -> Option<PortId> {
        self.topology.load().overlay.peers.get(&addr).copied()
    }

    /// Records the path MTU towards the peer at `addr` (the OS layer learns it).
    pub fn set_path_mtu(&self, addr: IpAddr, path_mtu: u32) -> Result<(), OverlayError> {
        self.topology.try_update(|t| {
            let id = *t
                .overlay
                .peers
                .get(&addr)
                .ok_or(OverlayError::NoSuchPeer(addr))?;
            if let Some(port) = t.ports.get_mut(&id) {
                port.path_mtu = path_mtu;
            }
            Ok(())
        })
    }

    /// The path MTU recorded towards the peer at `addr`.
    pub fn path_mtu(&self, addr: IpAddr) -> Option<u32> {
        let t = self.topology.load();
        let id = t.overlay.peers.get(&addr)?;
        t.ports.get(id).map(|p| p.path_mtu)
    }

    // ---- forwarding ----

    fn flush_learned(&self, id: PortId) {
        self.fdb.flush(FlushFilter {
            port: Some(id),
            ..FlushFilter::default()
        });
    }

    #[inline]
    fn count_drop(&self, view: &View, port: PortId, reason: DropReason) -> Decision {
        match view.counters(port) {
            Some(counters) => counters.count_drop(reason),
            None => self.unattributed.count_drop(reason),
        }
        Decision::Drop(reason)
    }

    /// Decides what to do with `frame`, which arrived on local port `in_port` at `now`,
    /// learning its source address on the way. Counts the frame as received and any drop
    /// by reason.
    #[inline]
    pub fn process(&self, view: &View, now: Time, in_port: PortId, frame: &[u8]) -> Decision {
        let Some(port) = view.topology().ports.get(&in_port) else {
            return Decision::Drop(DropReason::UnknownPort);
        };
        port.counters.count_rx(frame.len());
        if !port.captures.is_empty() {
            capture::offer_all(&port.captures, now, Direction::In, frame);
        }
        match Self::admit(port, frame) {
            Ok((vlan, eth)) => self.forward(view, now, in_port, vlan, eth.src(), eth.dst()),
            Err(reason) => self.count_drop(view, in_port, reason),
        }
    }

    /// The checks a frame from a local port passes before anything is learned from it:
    /// the port is up, the frame parses, its tag fits the port's mode (which gives its
    /// VLAN), it is not double-tagged, and port security lets its sources in.
    #[inline]
    fn admit<'f>(
        port: &Port,
        frame: &'f [u8],
    ) -> Result<(VlanId, EthernetFrame<&'f [u8]>), DropReason> {
        if !port.up {
            return Err(DropReason::NoEgress);
        }
        let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::Malformed)?;
        let vlan = Self::classify(&port.mode, &eth)?;
        if eth.tci().is_some() && eth.payload_ethertype() == EtherType::VLAN {
            return Err(DropReason::DoubleTagged);
        }
        if let Some(security) = &port.security {
            check_sources(security, &eth)?;
        }
        Ok((vlan, eth))
    }

    /// Sources that are never learned and destinations that are never forwarded.
    #[inline]
    fn check_addresses(src: MacAddr, dst: MacAddr) -> Result<(), DropReason> {
        if !src.is_valid_source() {
            Err(DropReason::InvalidSource)
        } else if dst.is_link_local_reserved() {
            Err(DropReason::ReservedMulticast)
        } else {
            Ok(())
        }
    }

    /// Where a unicast frame of `vlan` from `in_port` goes once the FDB said `found`:
    /// one egress, `None` to flood (unknown, or behind a port that is down), or a drop.
    #[inline]
    fn unicast(
        topology: &Topology,
        in_port: PortId,
        vlan: VlanId,
        found: Option<PortId>,
    ) -> Result<Option<Egress>, DropReason> {
        let from_tunnel = topology.ports.get(&in_port).is_some_and(Port::is_tunnel);
        match found {
            Some(out) if out == in_port => Err(DropReason::SameSegment),
            Some(out) => match topology.ports.get(&out) {
                Some(port) if port.up && from_tunnel && port.is_tunnel() => {
                    Err(DropReason::SplitHorizon)
                }
                Some(port) if port.up => match port.mode.egress_tag(vlan) {
                    Some(tag) => Ok(Some(Egress {
                        port: out,
                        vlan,
                        tag: if port.is_tunnel() { None } else { tag },
                    })),
                    // A static entry can point at a port outside the VLAN.
                    None => Err(DropReason::NoEgress),
                },
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Whether a flood of `vlan` from `except` reaches any port.
    fn has_flood_target(topology: &Topology, vlan: VlanId, except: PortId) -> bool {
        let from_tunnel = topology.ports.get(&except).is_some_and(Port::is_tunnel);
        topology.members.get(&vlan).is_some_and(|m| {
            m.iter()
                .any(|e| Self::floods_to(topology, from_tunnel, except, e))
        })
    }

    /// What [`Switch::process`] would decide for `frame` from local port `in_port` at
    /// `now`, with each step of the way appended to `steps`; nothing is learned or
    /// counted, and no storm bucket is drawn from (see [`crate::trace`]).
    pub fn trace(
        &self,
        now: Time,
        in_port: PortId,
        frame: &[u8],
        steps: &mut Vec<Step>,
    ) -> Decision {
        let topology = self.topology.load();
        let drop = |steps: &mut Vec<Step>, reason: DropReason| {
            steps.push(Step::Drop {
                port: Some(in_port),
                reason: reason.as_str().to_string(),
            });
            Decision::Drop(reason)
        };
        let Some(port) = topology.ports.get(&in_port) else {
            return drop(steps, DropReason::UnknownPort);
        };
        steps.push(Step::Ingress {
            port: in_port,
            mode: port.mode.clone(),
            up: port.up,
            port_security: port.security.is_some(),
            storm_limit_pps: port.storm.as_ref().map(|(limit, _)| limit.pps),
        });
        if let Ok(eth) = EthernetFrame::new_checked(frame) {
            steps.push(Step::Parse {
                src: eth.src(),
                dst: eth.dst(),
                tag: eth.tci().map(|tci| tci.vid()),
                summary: crate::trace::summarize_payload(eth.payload_ethertype(), eth.payload()),
            });
        }
        let (vlan, eth) = match Self::admit(port, frame) {
            Ok(admitted) => admitted,
            Err(reason) => return drop(steps, reason),
        };
        steps.push(Step::Classify {
            vlan,
            tagged: eth.tci().is_some_and(|tci| tci.vid() != 0),
        });
        if port.security.is_some() {
            steps.push(Step::PortSecurity);
        }
        let (src, dst) = (eth.src(), eth.dst());
        if let Err(reason) = Self::check_addresses(src, dst) {
            return drop(steps, reason);
        }
        let change = match self.fdb.get(now, vlan, src) {
            None => LearnChange::New,
            Some(entry) if entry.is_static => LearnChange::Static { port: entry.port },
            Some(entry) if entry.port == in_port => LearnChange::Refresh,
            Some(entry) => LearnChange::Move { from: entry.port },
        };
        steps.push(Step::Learn {
            vlan,
            mac: src,
            port: in_port,
            change,
        });
        let flood = |steps: &mut Vec<Step>| {
            steps.push(Step::Flood {
                vlan,
                storm_limit_pps: port.storm.as_ref().map(|(limit, _)| limit.pps),
            });
            if Self::has_flood_target(&topology, vlan, in_port) {
                Decision::Flood {
                    vlan,
                    except: in_port,
                }
            } else {
                drop(steps, DropReason::NoEgress)
            }
        };
        if dst.is_multicast() {
            let result = if dst.is_broadcast() {
                LookupResult::Broadcast
            } else {
                LookupResult::Multicast
            };
            steps.push(Step::Lookup {
                vlan,
                mac: dst,
                result,
            });
            return flood(steps);
        }
        // The source as learning would leave it: a frame to itself is the same segment.
        let found = if dst == src {
            Some(in_port)
        } else {
            self.fdb.lookup(now, vlan, dst)
        };
        steps.push(Step::Lookup {
            vlan,
            mac: dst,
            result: match found {
                Some(port) => LookupResult::Known { port },
                None => LookupResult::Unknown,
            },
        });
        match Self::unicast(&topology, in_port, vlan, found) {
            Ok(Some(egress)) => Decision::Output(egress),
            Ok(None) => flood(steps),
            Err(reason) => drop(steps, reason),
        }
    }

    /// Decides what to do with a VXLAN `datagram` (header and inner frame) that arrived
    /// from the underlay address `src`. The inner frame is `datagram[8..]`.
    pub fn process_vxlan(&self, view: &View, now: Time, src: IpAddr, datagram: &[u8]) -> Decision {
        let topology = view.topology();
        let Some(&in_port) = topology.overlay.peers.get(&src) else {
            self.unattributed.count_drop(DropReason::UnknownVtep);
            return Decision::Drop(DropReason::UnknownVtep);
        };
        let port = topology.ports.get(&in_port);
        if let Some(port) = port {
            port.counters
                .count_rx(datagram.len().saturating_sub(VXLAN_HEADER_LEN));
        }
        let Ok(header) = VxlanHeader::new_checked(datagram) else {
            return self.count_drop(view, in_port, DropReason::BadVxlanHeader);
        };
        if let Some(port) = port.filter(|p| !p.captures.is_empty()) {
            capture::offer_all(&port.captures, now, Direction::In, header.inner());
        }
        let Some(&vlan) = topology.overlay.vlan_of.get(&header.vni()) else {
            return self.count_drop(view, in_port, DropReason::UnmappedVni);
        };
        let Ok(eth) = EthernetFrame::new_checked(header.inner()) else {
            return self.count_drop(view, in_port, DropReason::TruncatedInner);
        };
        if eth.tci().is_some() && !topology.overlay.accept_inner_tagged {
            return self.count_drop(view, in_port, DropReason::InnerTagged);
        }
        if eth.tci().is_some() && eth.payload_ethertype() == EtherType::VLAN {
            return self.count_drop(view, in_port, DropReason::DoubleTagged);
        }
        self.forward(view, now, in_port, vlan, eth.src(), eth.dst())
    }

    /// Learning and the forwarding decision, once the frame's VLAN is known.
    #[inline]
    fn forward(
        &self,
        view: &View,
        now: Time,
        in_port: PortId,
        vlan: VlanId,
        src: MacAddr,
        dst: MacAddr,
    ) -> Decision {
        if let Err(reason) = Self::check_addresses(src, dst) {
            return self.count_drop(view, in_port, reason);
        }
        self.fdb.learn_checked(now, vlan, src, in_port, || {
            self.topology.load().carries(in_port, vlan)
        });
        if dst.is_multicast() {
            return self.flood(view, now, vlan, in_port);
        }
        let found = self.fdb.lookup(now, vlan, dst);
        match Self::unicast(view.topology(), in_port, vlan, found) {
            Ok(Some(egress)) => Decision::Output(egress),
            Ok(None) => self.flood(view, now, vlan, in_port),
            Err(reason) => self.count_drop(view, in_port, reason),
        }
    }

    /// Whether a flood from `from` may use `egress` (not back out of its port, and not
    /// from one tunnel port to another).
    fn floods_to(topology: &Topology, from_tunnel: bool, from: PortId, egress: &Egress) -> bool {
        egress.port != from
            && !(from_tunnel
                && topology
                    .ports
                    .get(&egress.port)
                    .is_some_and(Port::is_tunnel))
    }

    fn flood(&self, view: &View, now: Time, vlan: VlanId, except: PortId) -> Decision {
        let topology = view.topology();
        let ingress = topology.ports.get(&except);
        if let Some((limit, bucket)) = ingress.and_then(|p| p.storm.as_ref()) {
            if !bucket.allow(now, *limit) {
                return self.count_drop(view, except, DropReason::StormControl);
            }
        }
        if Self::has_flood_target(topology, vlan, except) {
            Decision::Flood { vlan, except }
        } else {
            self.count_drop(view, except, DropReason::NoEgress)
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
    /// untagged; [`View::vxlan_target`] says where.
    pub fn egresses_into(&self, view: &View, decision: Decision, out: &mut Vec<Egress>) {
        out.clear();
        match decision {
            Decision::Output(egress) => out.push(egress),
            Decision::Flood { vlan, except } => {
                let topology = view.topology();
                let from_tunnel = topology.ports.get(&except).is_some_and(Port::is_tunnel);
                if let Some(members) = topology.members.get(&vlan) {
                    out.extend(
                        members
                            .iter()
                            .filter(|e| Self::floods_to(topology, from_tunnel, except, e)),
                    );
                }
            }
            Decision::Drop(_) => {}
        }
    }

    /// Counts a frame of `bytes` sent on `port` at `now`, and copies `frame` (what was
    /// sent) to the port's captures, if it has any.
    #[inline]
    pub fn record_tx(&self, view: &View, now: Time, port: PortId, bytes: usize, frame: &[u8]) {
        if let Some(port) = view.topology().ports.get(&port) {
            port.counters.count_tx(bytes);
            if !port.captures.is_empty() {
                capture::offer_all(&port.captures, now, Direction::Out, frame);
            }
        }
    }

    /// Counts a VXLAN `datagram` from the peer at `src` that was merged into a frame
    /// decided for by an earlier datagram of its run (see the datapath's receive path),
    /// and copies its inner frame to the peer port's captures.
    pub fn record_vxlan_rx(&self, view: &View, now: Time, src: IpAddr, datagram: &[u8]) {
        let topology = view.topology();
        let Some(port) = topology
            .overlay
            .peers
            .get(&src)
            .and_then(|id| topology.ports.get(id))
        else {
            return;
        };
        let inner = datagram.get(VXLAN_HEADER_LEN..).unwrap_or_default();
        port.counters.count_rx(inner.len());
        if !port.captures.is_empty() {
            capture::offer_all(&port.captures, now, Direction::In, inner);
        }
    }

    /// Starts copying port `id`'s frames to `tap` (see [`crate::capture`]).
    pub fn add_capture(&self, id: PortId, tap: Arc<CaptureTap>) -> Result<(), NoSuchPort> {
        self.topology.try_update(|t| {
            let port = t.ports.get_mut(&id).ok_or(NoSuchPort(id))?;
            port.captures.push(tap);
            Ok(())
        })
    }

    /// Stops the capture `tap` of port `id` (nothing if the port or the capture is gone).
    pub fn remove_capture(&self, id: PortId, tap: &Arc<CaptureTap>) {
        let has = |t: &Topology| {
            t.ports
                .get(&id)
                .is_some_and(|p| p.captures.iter().any(|c| Arc::ptr_eq(c, tap)))
        };
        if !has(&self.topology.load()) {
            return;
        }
        self.topology.update(|t| {
            if let Some(port) = t.ports.get_mut(&id) {
                port.captures.retain(|c| !Arc::ptr_eq(c, tap));
            }
        });
    }

    /// How many captures port `id` has running.
    pub fn captures(&self, id: PortId) -> usize {
        self.topology
            .load()
            .ports
            .get(&id)
            .map_or(0, |p| p.captures.len())
    }

    /// Counts a frame that could not be sent on `port`.
    #[inline]
    pub fn record_tx_drop(&self, view: &View, port: PortId, reason: DropReason) {
        self.count_drop(view, port, reason);
    }

    /// A frame of `bytes` that [`Switch::record_tx`] counted as sent on `port` and that
    /// the driver's later (batched) send failed: counted as a `TxError` drop instead. A
    /// capture on the port has seen it go out already.
    pub fn record_tx_refused(&self, port: PortId, bytes: usize) {
        if let Some(port) = self.topology.load().ports.get(&port) {
            port.counters.refuse_tx(bytes);
        }
    }

    /// Reclaims aged FDB entries; returns how many. Call at [`Switch::next_timeout`].
    pub fn handle_timeout(&self, now: Time) -> usize {
        self.fdb.expire(now)
    }

    /// When [`Switch::handle_timeout`] next has work, if ever.
    pub fn next_timeout(&self) -> Option<Time> {
        self.fdb.next_expiry()
    }
}

/// Port security's checks of a frame from a port (see [`PortSecurity`]).
#[inline]
fn check_sources<T: AsRef<[u8]>>(
    security: &PortSecurity,
    eth: &EthernetFrame<T>,
) -> Result<(), DropReason> {
    if eth.src() != security.mac {
        return Err(DropReason::SpoofedMac);
    }
    let allowed = |ip: std::net::Ipv4Addr| {
        security.ipv4.is_empty() || ip.is_unspecified() || security.ipv4.contains(&ip)
    };
    match eth.payload_ethertype() {
        EtherType::ARP => {
            use smoltcp::wire::{ArpHardware, ArpPacket};
            let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| DropReason::Malformed)?;
            let ethernet_ipv4 = arp.hardware_type() == ArpHardware::Ethernet
                && arp.hardware_len() == 6
                && arp.protocol_len() == 4;
            let sender_mac = MacAddr::from_slice(arp.source_hardware_addr());
            let sender_ip = <[u8; 4]>::try_from(arp.source_protocol_addr()).ok();
            match (ethernet_ipv4, sender_mac, sender_ip) {
                (true, Some(mac), Some(ip)) if mac == security.mac && allowed(ip.into()) => Ok(()),
                _ => Err(DropReason::SpoofedArp),
            }
        }
        EtherType::IPV4 if !security.ipv4.is_empty() => {
            let ip =
                Ipv4Packet::new_fixed_header(eth.payload()).map_err(|_| DropReason::Malformed)?;
            if allowed(ip.src_addr()) {
                Ok(())
            } else {
                Err(DropReason::SpoofedIp)
            }
        }
        _ => Ok(()),
    }
}
