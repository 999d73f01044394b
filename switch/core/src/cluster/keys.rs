//! The cluster store's key layout and records: everything switchd keeps in etcd, under
//! one versioned prefix. Values are JSON. `docs/cluster.md` has the same table.
//!
//! | key | value | lease | written by |
//! | --- | --- | --- | --- |
//! | `nodes/NODE` | [`NodeRecord`] | the node's | the node |
//! | `networks/NAME` | [`NetworkRecord`] | none | whoever creates or removes it (compare-and-set) |
//! | `vnis/VNI` | network name | none | with the network, in the same transaction |
//! | `vlans/VLAN` | network name | none | with the network, in the same transaction |
//! | `addresses/NETWORK/IP` | [`AddressRecord`] | none | the node that claimed it (compare-and-set) |
//! | `endpoints/NETWORK/NODE/IP` | [`EndpointRecord`] | the node's | the node |
//!
//! Fencing: a node puts only keys that name it (`nodes/NODE`, `endpoints/*/NODE/*`),
//! bound to its own lease, and deletes an address only when the stored value is the one
//! it wrote (compare on the value). The shared keys (networks, VNIs, VLANs, addresses)
//! are created only if absent, in one transaction: two nodes racing for the same one
//! cannot both win, and neither can overwrite the other.

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use switchyard_encap::Vni;

use crate::network::Network;
use crate::wire::{MacAddr, VlanId};

use super::store::{Compare, Op, Txn};

/// Every key switchd writes starts with this (the `v1` changes if the layout does).
pub const PREFIX: &str = "/switchyard/v1/";

/// A node: where its VTEP is. Lives as long as the node's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The VTEP other nodes send VXLAN to (`--cluster-advertise`, the VTEP's port).
    pub vtep: SocketAddr,
    /// When this switchd started (seconds since the Unix epoch).
    pub started: u64,
}

/// A global network, the same on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The internal VLAN, allocated cluster-wide (from the top of the range down, so it
    /// stays clear of the local networks' VLANs, which are allocated from the bottom up).
    pub vlan: VlanId,
    pub vni: Vni,
    pub mtu: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub masquerade: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    pub created: u64,
}

impl NetworkRecord {
    /// The record of a global network switchd made.
    pub fn of(network: &Network, vni: Vni) -> NetworkRecord {
        NetworkRecord {
            name: network.name.clone(),
            id: network.id.clone(),
            subnet: network.subnet,
            gateway: network.gateway,
            vlan: network.vlan,
            vni,
            mtu: network.mtu,
            internal: network.internal,
            masquerade: network.masquerade,
            ip_range: network.ip_range,
            created: network.created,
        }
    }

    /// Whether `network` (a local copy) is this record.
    pub fn describes(&self, network: &Network) -> bool {
        *self == NetworkRecord::of(network, self.vni) && network.vni == Some(self.vni)
    }
}

/// Who holds an address of a global network: a node (which endpoint or reservation
/// there is the node's own business: its IPAM keeps them apart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    pub node: String,
}

/// An endpoint of a global network, as other nodes see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// A key of the layout, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Node(String),
    Network(String),
    Vni(Vni),
    Vlan(VlanId),
    Address {
        network: String,
        ip: Ipv4Addr,
    },
    Endpoint {
        network: String,
        node: String,
        ip: Ipv4Addr,
    },
}

impl Key {
    /// The key's text in the store.
    pub fn path(&self) -> String {
        match self {
            Key::Node(node) => format!("{PREFIX}nodes/{node}"),
            Key::Network(name) => format!("{PREFIX}networks/{name}"),
            Key::Vni(vni) => format!("{PREFIX}vnis/{}", vni.get()),
            Key::Vlan(vlan) => format!("{PREFIX}vlans/{}", vlan.get()),
            Key::Address { network, ip } => format!("{PREFIX}addresses/{network}/{ip}"),
            Key::Endpoint { network, node, ip } => {
                format!("{PREFIX}endpoints/{network}/{node}/{ip}")
            }
        }
    }

    /// Parses a key of the layout; `None` for anything else under the prefix (a newer
    /// layout's keys, or junk), which switchd ignores.
    pub fn parse(path: &str) -> Option<Key> {
        let rest = path.strip_prefix(PREFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let name = |text: &str| validate_name(text).ok().map(|()| text.to_string());
        match parts.as_slice() {
            ["nodes", node] => Some(Key::Node(name(node)?)),
            ["networks", network] => Some(Key::Network(name(network)?)),
            ["vnis", vni] => Vni::new(vni.parse().ok()?).map(Key::Vni),
            ["vlans", vlan] => VlanId::new(vlan.parse().ok()?).map(Key::Vlan),
            ["addresses", network, ip] => Some(Key::Address {
                network: name(network)?,
                ip: ip.parse().ok()?,
            }),
            ["endpoints", network, node, ip] => Some(Key::Endpoint {
                network: name(network)?,
                node: name(node)?,
                ip: ip.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Node and network names go into keys: 1 to 64 of letters, digits, `-`, `_` and `.`,
/// not starting with `.` (so no `/`, no `..`).
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid cluster name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Creates a global network with its VNI and VLAN, all three only if none exists.
pub fn create_network(record: &NetworkRecord) -> Txn {
    let keys = [
        (Key::Network(record.name.clone()), json(record)),
        (Key::Vni(record.vni), json(&record.name)),
        (Key::Vlan(record.vlan), json(&record.name)),
    ];
    Txn {
        compares: keys
            .iter()
            .map(|(key, _)| Compare::Absent(key.path()))
            .collect(),
        success: keys
            .into_iter()
            .map(|(key, value)| Op::Put {
                key: key.path(),
                value,
                leased: false,
            })
            .collect(),
    }
}

/// Removes a global network, its VNI and its VLAN, only if it is the network `record`
/// describes and no address of it is held and no endpoint registered, anywhere.
pub fn remove_network(record: &NetworkRecord) -> Txn {
    let name = &record.name;
    Txn {
        compares: vec![
            Compare::Value(Key::Network(name.clone()).path(), json(record)),
            Compare::PrefixEmpty(format!("{PREFIX}addresses/{name}/")),
            Compare::PrefixEmpty(format!("{PREFIX}endpoints/{name}/")),
        ],
        success: [
            Key::Network(name.clone()),
            Key::Vni(record.vni),
            Key::Vlan(record.vlan),
        ]
        .iter()
        .map(|key| Op::Delete(key.path()))
        .collect(),
    }
}

/// Claims `ip` of `network` for `holder`, only if nobody holds it.
pub fn claim_address(network: &str, ip: Ipv4Addr, holder: &AddressRecord) -> Txn {
    let key = Key::Address {
        network: network.to_string(),
        ip,
    }
    .path();
    Txn {
        compares: vec![Compare::Absent(key.clone())],
        success: vec![Op::Put {
            key,
            value: json(holder),
            leased: false,
        }],
    }
}

/// Releases `ip` of `network`, only if `holder` still holds it (fencing: a node never
/// deletes an address another node claimed since).
pub fn release_address(network: &str, ip: Ipv4Addr, holder: &AddressRecord) -> Txn {
    let key = Key::Address {
        network: network.to_string(),
        ip,
    }
    .path();
    Txn {
        compares: vec![Compare::Value(key.clone(), json(holder))],
        success: vec![Op::Delete(key)],
    }
}

/// The value of a record, as the store holds it.
pub fn value_of<T: Serialize>(record: &T) -> Vec<u8> {
    json(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_junk_is_ignored() {
        let keys = [
            Key::Node("host-1".into()),
            Key::Network("blue".into()),
            Key::Vni(Vni::new(4096).unwrap()),
            Key::Vlan(VlanId::new(4094).unwrap()),
            Key::Address {
                network: "blue".into(),
                ip: Ipv4Addr::new(10, 40, 0, 2),
            },
            Key::Endpoint {
                network: "blue".into(),
                node: "host1".into(),
                ip: Ipv4Addr::new(10, 40, 0, 2),
            },
        ];
        for key in keys {
            assert_eq!(Key::parse(&key.path()), Some(key.clone()), "{}", key.path());
        }
        for junk in [
            "/switchyard/v1/nodes/",
            "/switchyard/v1/nodes/a/b",
            "/switchyard/v1/nodes/..",
            "/switchyard/v1/vnis/-1",
            "/switchyard/v1/vnis/99999999",
            "/switchyard/v1/vlans/4095",
            "/switchyard/v1/addresses/blue/10.0.0",
            "/switchyard/v1/endpoints/blue/h1",
            "/switchyard/v2/nodes/a",
            "/other/nodes/a",
        ] {
            assert_eq!(Key::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn names_that_would_escape_a_key_are_refused() {
        for bad in ["", "a/b", ".hidden", "..", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["host1", "node-2.example", "A_b"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
