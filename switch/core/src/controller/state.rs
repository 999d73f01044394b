//! What switchd keeps across restarts, as data: ports, static FDB entries, the overlay,
//! networks and their endpoints. The controller produces a [`SavedState`] after every
//! change and restores from one at start; writing it to disk (atomically) is the store's
//! business (switchd's `state.rs`).
//!
//! The format is stable: a file written by an earlier switchd of the same `version`
//! loads, and fields added since have defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::control::VniMapping;
use crate::network::{Endpoint, Network, Networks};
use crate::port::{PortId, PortMode};
use crate::wire::{MacAddr, VlanId};

/// The state file's format version.
pub const VERSION: u32 = 1;

/// A port as remembered across restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPort {
    pub id: PortId,
    /// Short name of the namespace, shown in port names (`red` in `red/eth0`).
    pub label: String,
    pub netns: PathBuf,
    /// Identity of the namespace (device and inode of its nsfs file), so a path that
    /// now names a different namespace is noticed.
    pub netns_dev: u64,
    pub netns_ino: u64,
    /// The namespace's cookie (never reused within a boot): what proves, after a
    /// restart, that the path still names the same namespace.
    #[serde(default)]
    pub netns_cookie: u64,
    /// The interface name at attach time; the TAP is found again by `ifindex`.
    pub ifname: String,
    pub ifindex: u32,
    pub mode: PortMode,
    /// The MAC the interface has, when switchd knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The IPv4 addresses the interface has on a plain VLAN, when switchd knows them
    /// (an endpoint's address is its network's business).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::Ipv4Addr>,
    /// Port security as set: `None` is the default (on for an access port whose MAC is
    /// known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// The port's own storm limit (0: none); `None` is switchd's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_limit_pps: Option<u32>,
    /// A change to the port that was begun but not finished when this was saved: the
    /// intent, written before the side effect, so that a restart after a crash can
    /// finish or undo it. Absent once the change is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// A port change under way (see [`SavedPort::pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// Its TAP is being created: it may or may not exist yet; `ifindex` is not known.
    Creating,
    /// Its TAP is being removed: it may or may not still exist.
    Removing,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedFdbEntry {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub port: PortId,
}

/// The overlay's configuration: which VLANs travel as which VNI, and the peers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedOverlay {
    pub map: Vec<VniMapping>,
    pub peers: Vec<SavedPeer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedPeer {
    /// The tunnel port the peer is in the forwarding core.
    pub id: PortId,
    pub addr: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// The boot the namespace cookies belong to.
    #[serde(default)]
    pub boot_id: String,
    pub next_port_id: u32,
    pub ports: Vec<SavedPort>,
    /// Static entries, pointing at local ports or at peers' tunnel ports.
    pub static_fdb: Vec<SavedFdbEntry>,
    #[serde(default, skip_serializing_if = "SavedOverlay::is_empty")]
    pub overlay: SavedOverlay,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// Which port holds which address on which network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// A change of the NAT table was under way when this was saved: the next start
    /// rewrites the table even if no network masquerades (the change may have left
    /// rules behind).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_pending: bool,
}

impl SavedState {
    /// Port ids unique (local ports and peers share one id space) and below
    /// `next_port_id`; no two ports for one (namespace, interface); no two peers at one
    /// address.
    pub fn check(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        let port_ids = self.ports.iter().map(|p| p.id);
        let peer_ids = self.overlay.peers.iter().map(|p| p.id);
        for id in port_ids.chain(peer_ids) {
            if !ids.insert(id) {
                return Err(format!("port id {id} is used twice"));
            }
            if id.0 >= self.next_port_id {
                return Err(format!(
                    "port id {id} is not below next_port_id {}",
                    self.next_port_id
                ));
            }
        }
        let mut endpoints = std::collections::HashSet::new();
        for port in &self.ports {
            if !endpoints.insert((&port.netns, &port.ifname)) {
                return Err(format!(
                    "{}/{} is attached twice",
                    port.netns.display(),
                    port.ifname
                ));
            }
        }
        let mut peers = std::collections::HashSet::new();
        for peer in &self.overlay.peers {
            if !peers.insert(peer.addr.ip()) {
                return Err(format!("peer {} is listed twice", peer.addr));
            }
        }
        for endpoint in &self.endpoints {
            if !self.ports.iter().any(|p| p.id == endpoint.port) {
                return Err(format!(
                    "endpoint {} on network {} belongs to port {}, which does not exist",
                    endpoint.ip, endpoint.network, endpoint.port
                ));
            }
        }
        Networks::restore(self.networks.clone(), self.endpoints.clone())
            .map_err(|err| err.to_string())?;
        Ok(())
    }
}

impl SavedOverlay {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.peers.is_empty()
    }
}

impl Default for SavedState {
    fn default() -> Self {
        SavedState {
            version: VERSION,
            boot_id: String::new(),
            next_port_id: 1,
            ports: Vec::new(),
            static_fdb: Vec::new(),
            overlay: SavedOverlay::default(),
            networks: Vec::new(),
            endpoints: Vec::new(),
            nat_pending: false,
        }
    }
}
