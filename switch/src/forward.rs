//! The forwarding core: a pure function of (time, in-port, frame) to a [`Decision`].
//!
//! [`Switch::process`] classifies the frame into a VLAN by the ingress port's mode, learns
//! its source address, and decides: one egress port for known unicast, a flood of the
//! VLAN for broadcast, multicast and unknown unicast, or a drop with a reason. It never
//! touches a file descriptor or a clock; the layer around it performs the decision (see
//! [`Switch::egresses`]) and reports what it sent back through [`Switch::record_tx`].

use std::collections::BTreeMap;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::fdb::{FdbConfig, FlushFilter, MacTable};
use crate::port::{PortId, PortMode};
use crate::time::Time;
use crate::wire::{EthernetFrame, PacketBuf, VlanId};

/// Why a frame was not forwarded. Counted per ingress port (per egress port for the
/// transmit-side reasons), never returned as an error.
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
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
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
    /// `None`: send untagged; `Some(vlan)`: send with an 802.1Q tag for `vlan`.
    pub tag: Option<VlanId>,
}

/// What to do with one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Known unicast: one copy.
    Output(Egress),
    /// Broadcast, multicast or unknown unicast: every up port of `vlan` but `except`.
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

struct Port {
    mode: PortMode,
    up: bool,
    counters: Counters,
}

/// A request to the core named a port it does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such port: {0}")]
pub struct NoSuchPort(pub PortId);

/// The switch: ports with their VLAN modes, the MAC table, and counters.
pub struct Switch {
    ports: BTreeMap<PortId, Port>,
    /// Up ports of each VLAN with their egress tagging, ascending by port id.
    /// Rebuilt whenever a port is added, removed, reconfigured or changes state.
    members: HashMap<VlanId, Vec<Egress>>,
    fdb: MacTable,
}

impl Switch {
    pub fn new(fdb: FdbConfig) -> Switch {
        Switch {
            ports: BTreeMap::new(),
            members: HashMap::new(),
            fdb: MacTable::new(fdb),
        }
    }

    pub fn fdb(&self) -> &MacTable {
        &self.fdb
    }

    pub fn fdb_mut(&mut self) -> &mut MacTable {
        &mut self.fdb
    }

    /// Adds a port, up, or reconfigures an existing one (keeping its counters).
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
                        mode,
                        up: true,
                        counters: Counters::default(),
                    },
                );
            }
        }
        self.rebuild_members();
    }

    /// Removes a port and every FDB entry, static or learned, that points at it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), NoSuchPort> {
        self.ports.remove(&id).ok_or(NoSuchPort(id))?;
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

    pub fn is_port_up(&self, id: PortId) -> bool {
        self.ports.get(&id).is_some_and(|p| p.up)
    }

    pub fn port_ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    pub fn counters(&self, id: PortId) -> Option<PortCounters> {
        self.ports.get(&id).map(|p| p.counters.snapshot())
    }

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
                    self.members
                        .entry(vlan)
                        .or_default()
                        .push(Egress { port: *id, tag });
                }
            }
        }
    }

    fn count_drop(&mut self, port: PortId, reason: DropReason) -> Decision {
        if let Some(port) = self.ports.get_mut(&port) {
            port.counters.drops[reason.index()] += 1;
        }
        Decision::Drop(reason)
    }

    /// Decides what to do with `frame`, which arrived on `in_port` at `now`, learning its
    /// source address on the way. Counts the frame as received and any drop by reason.
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
        let (src, dst) = (eth.src(), eth.dst());
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
        match self.fdb.lookup(now, vlan, dst) {
            Some(out) if out == in_port => self.count_drop(in_port, DropReason::SameSegment),
            Some(out) => match self.ports.get(&out) {
                Some(port) if port.up => match port.mode.egress_tag(vlan) {
                    Some(tag) => Decision::Output(Egress { port: out, tag }),
                    // A static entry can point at a port outside the VLAN.
                    None => self.count_drop(in_port, DropReason::NoEgress),
                },
                _ => self.flood(vlan, in_port),
            },
            None => self.flood(vlan, in_port),
        }
    }

    fn flood(&mut self, vlan: VlanId, except: PortId) -> Decision {
        let has_other_member = self
            .members
            .get(&vlan)
            .is_some_and(|m| m.iter().any(|e| e.port != except));
        if has_other_member {
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

    /// Every copy a decision asks for, in ascending port order. Empty for a drop.
    pub fn egresses(&self, decision: Decision) -> impl Iterator<Item = Egress> + '_ {
        let (single, flood) = match decision {
            Decision::Output(egress) => (Some(egress), None),
            Decision::Flood { vlan, except } => (None, Some((vlan, except))),
            Decision::Drop(_) => (None, None),
        };
        let flooded = flood.into_iter().flat_map(move |(vlan, except)| {
            self.members
                .get(&vlan)
                .map(|m| m.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(move |e| e.port != except)
                .copied()
        });
        single.into_iter().chain(flooded)
    }

    /// Carries out `decision` for `packet`: for every egress, tags or untags the packet as
    /// that port needs and hands its wire image to `send`, counting what was sent and
    /// what failed. `send` returns false when the port could not take the frame.
    pub fn execute(
        &mut self,
        decision: Decision,
        packet: &mut PacketBuf,
        mut send: impl FnMut(PortId, &[u8]) -> bool,
    ) {
        let mut one = |switch: &mut Switch, egress: Egress| {
            if packet.set_vlan_tag(egress.tag).is_err() {
                switch.count_drop(egress.port, DropReason::Malformed);
            } else if send(egress.port, packet.wire()) {
                switch.record_tx(egress.port, packet.frame().len());
            } else {
                switch.count_drop(egress.port, DropReason::TxError);
            }
        };
        match decision {
            Decision::Output(egress) => one(self, egress),
            Decision::Flood { vlan, except } => {
                // Index rather than iterate: `one` needs the switch mutably for counters.
                let count = self.members.get(&vlan).map_or(0, Vec::len);
                for i in 0..count {
                    let egress = self.members[&vlan][i];
                    if egress.port != except {
                        one(self, egress);
                    }
                }
            }
            Decision::Drop(_) => {}
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
