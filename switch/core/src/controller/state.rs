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
use crate::datapath::ROUTER_PORT;
use crate::network::{Endpoint, Network, Networks, Reservation};
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
    /// What the port is: a TAP switchd made in a container's namespace (absent: the
    /// default, and what every file before host ports holds), an existing interface
    /// switchd reads and writes through a packet socket, or a TAP in switchd's own
    /// namespace for the host itself.
    #[serde(default, skip_serializing_if = "SavedPortKind::is_tap")]
    pub kind: SavedPortKind,
}

/// What a port is attached to (see [`SavedPort::kind`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SavedPortKind {
    /// A TAP switchd created (`nsutil attach`); found again by its interface index.
    #[default]
    Tap,
    /// An existing interface (a NIC, bond, veth) switchd opened a packet socket on
    /// (`swctl port add IFNAME`); found again by its name, and never deleted by switchd.
    Host,
    /// A TAP switchd created in its own namespace (`swctl port add --internal NAME`):
    /// the host's own interface on the switch.
    Internal,
}

impl SavedPortKind {
    pub fn is_tap(&self) -> bool {
        *self == SavedPortKind::Tap
    }

    /// Whether a port of this kind may carry any LAN network's VLAN, beside the
    /// network's parent and endpoints: an internal port is the host's own interface on
    /// the switch, and the host joins the LAN as its containers do.
    pub fn joins_any_lan(self) -> bool {
        self == SavedPortKind::Internal
    }

    /// `tap`, `host` or `internal`, as `swctl port ls` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SavedPortKind::Tap => "tap",
            SavedPortKind::Host => "host",
            SavedPortKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for SavedPortKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// The VTEP enabled at run time (`swctl vxlan enable`): a start without `--vtep`
    /// binds it again. Absent in files of switchds that had only `--vtep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// Which port holds which address on which network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Addresses set aside for owners that have no port yet (Docker's IPAM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Reservation>,
    /// A change of the NAT table was under way when this was saved: the next start
    /// rewrites the table even if no network masquerades (the change may have left
    /// rules behind).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_pending: bool,
}

impl SavedState {
    /// Port ids unique (local ports and peers share one id space), not 0 (the router's
    /// port) and below `next_port_id`; no two ports for one (namespace, interface); no
    /// two peers at one address.
    pub fn check(&self) -> Result<(), String> {
        if self.next_port_id == ROUTER_PORT.0 {
            return Err(format!(
                "next_port_id is {}, the router's port; port ids start at 1",
                ROUTER_PORT.0
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let port_ids = self.ports.iter().map(|p| p.id);
        let peer_ids = self.overlay.peers.iter().map(|p| p.id);
        for id in port_ids.chain(peer_ids) {
            if id == ROUTER_PORT {
                return Err(format!("port id {id} is the router's; port ids start at 1"));
            }
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
        for network in &self.networks {
            if let Some(parent) = network.parent {
                if !self
                    .ports
                    .iter()
                    .any(|p| p.id == parent && p.kind == SavedPortKind::Host)
                {
                    return Err(format!(
                        "LAN network {}'s parent, port {parent}, is not a host port",
                        network.name
                    ));
                }
            }
        }
        Networks::restore(self.networks.clone(), self.endpoints.clone())
            .and_then(|mut n| n.restore_reservations(self.reservations.clone()))
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
            vtep: None,
            networks: Vec::new(),
            endpoints: Vec::new(),
            reservations: Vec::new(),
            nat_pending: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: u32) -> SavedPort {
        SavedPort {
            id: PortId(id),
            label: "red".into(),
            netns: "/run/netns/red".into(),
            netns_dev: 4,
            netns_ino: 4026532001,
            netns_cookie: 4097,
            ifname: "eth0".into(),
            ifindex: 2,
            mode: PortMode::default(),
            mac: None,
            addresses: Vec::new(),
            port_security: None,
            storm_limit_pps: None,
            pending: None,
            kind: SavedPortKind::Tap,
        }
    }

    #[test]
    fn port_id_0_is_the_routers() {
        // Found by the state_file fuzz target: a state file giving a TAP port (or a
        // peer) id 0 loaded, and the port took the router's place in the switch.
        let mut state = SavedState {
            next_port_id: 4,
            ports: vec![port(0), port(2)],
            ..SavedState::default()
        };
        state.ports[1].netns = "/run/netns/blue".into();
        let err = state.check().unwrap_err();
        assert!(err.contains("router"), "{err}");
        assert!(crate::controller::Model::from_saved(&state).is_err());
        state.ports[0].id = PortId(1);
        state.check().unwrap();

        state.overlay.peers.push(SavedPeer {
            id: PortId(0),
            addr: "192.0.2.2:4789".parse().unwrap(),
        });
        assert!(state.check().is_err(), "nor a peer");
        state.overlay.peers.clear();

        let empty = SavedState {
            next_port_id: 0,
            ..SavedState::default()
        };
        assert!(
            empty.check().is_err(),
            "the next port would be the router's"
        );
    }
}
