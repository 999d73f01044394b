//! A node's picture of the cluster store: built from a snapshot, kept current by watch
//! events, and projected into what this node's switch needs ([`Remote`]).
//!
//! Contract:
//! * The view is at one revision: a snapshot's, then each applied batch's. An event at
//!   or before that revision is skipped (a watch restarted from a snapshot may deliver
//!   it again): nothing is applied twice. A transaction's events share one revision and
//!   arrive in one batch.
//! * A record that does not parse (another version's, or junk) is skipped and counted,
//!   never fatal, and replaces what the key held (the view is what a snapshot would
//!   give); keys outside the layout are ignored.
//! * An endpoint whose node has no live registration is not projected: a node's
//!   endpoints vanish with it, even in the instant between its lease ending and the
//!   deletions of its keys arriving.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use serde::de::DeserializeOwned;

use super::keys::{AddressRecord, EndpointRecord, Key, NetworkRecord, NodeRecord};
use super::store::{Event, EventKind, Snapshot};
use crate::wire::MacAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The store revision the view reflects.
    pub revision: i64,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub networks: BTreeMap<String, NetworkRecord>,
    pub addresses: BTreeMap<(String, Ipv4Addr), AddressRecord>,
    /// By (network, node, address).
    pub endpoints: BTreeMap<(String, String, Ipv4Addr), EndpointRecord>,
    /// Records skipped because their value did not parse.
    pub unreadable: u64,
}

/// An endpoint on another node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    pub network: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub name: Option<String>,
    pub aliases: Vec<String>,
}

/// What the cluster means for one node: the other nodes' VTEPs (its tunnel peers), the
/// global networks, the endpoints on other nodes (static FDB entries and ARP answers),
/// and the addresses other nodes hold (which its IPAM must not hand out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub peers: BTreeMap<String, SocketAddr>,
    pub networks: BTreeMap<String, NetworkRecord>,
    pub endpoints: Vec<RemoteEndpoint>,
    /// Addresses other nodes hold, by network.
    pub taken: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Addresses the store says this node holds.
    pub held: BTreeSet<(String, Ipv4Addr)>,
}

impl ClusterView {
    /// The view a snapshot gives.
    pub fn from_snapshot(snapshot: &Snapshot) -> ClusterView {
        let mut view = ClusterView::default();
        for kv in &snapshot.kvs {
            view.put(&kv.key, &kv.value);
        }
        view.revision = snapshot.revision;
        view
    }

    /// Applies a watch response's events in order; returns how many were new (the
    /// others were seen already). One transaction's events share a revision, and etcd
    /// delivers them in one response: a batch is compared against the revision the
    /// view had before it.
    pub fn apply(&mut self, events: &[Event]) -> usize {
        let seen = self.revision;
        let mut applied = 0;
        for event in events {
            if event.revision <= seen {
                continue;
            }
            match event.kind {
                EventKind::Put => self.put(&event.key, &event.value),
                EventKind::Delete => self.delete(&event.key),
            }
            self.revision = self.revision.max(event.revision);
            applied += 1;
        }
        applied
    }

    fn put(&mut self, path: &str, value: &[u8]) {
        let Some(key) = Key::parse(path) else {
            return;
        };
        // What was there goes first: a record overwritten by one that does not parse is
        // gone, as a snapshot would show it.
        self.forget(&key);
        let ok = match key {
            Key::Node(node) => parse(value).map(|r| self.nodes.insert(node, r)).is_some(),
            Key::Network(name) => parse(value)
                .filter(|r: &NetworkRecord| r.name == name)
                .map(|r| self.networks.insert(name, r))
                .is_some(),
            Key::Address { network, ip } => parse(value)
                .map(|r| self.addresses.insert((network, ip), r))
                .is_some(),
            Key::Endpoint { network, node, ip } => parse(value)
                .map(|r| self.endpoints.insert((network, node, ip), r))
                .is_some(),
            // Claims that go with networks: a network's record names its VNI and VLAN.
            Key::Vni(_) | Key::Vlan(_) => true,
        };
        if !ok {
            self.unreadable += 1;
        }
    }

    fn delete(&mut self, path: &str) {
        if let Some(key) = Key::parse(path) {
            self.forget(&key);
        }
    }

    /// Drops what the view holds under `key`.
    fn forget(&mut self, key: &Key) {
        match key {
            Key::Node(node) => {
                self.nodes.remove(node);
            }
            Key::Network(name) => {
                self.networks.remove(name);
            }
            Key::Address { network, ip } => {
                self.addresses.remove(&(network.clone(), *ip));
            }
            Key::Endpoint { network, node, ip } => {
                self.endpoints.remove(&(network.clone(), node.clone(), *ip));
            }
            Key::Vni(_) | Key::Vlan(_) => {}
        }
    }

    /// What the cluster means for node `me` (see [`Remote`]).
    pub fn remote(&self, me: &str) -> Remote {
        let peers = self
            .nodes
            .iter()
            .filter(|(name, _)| name.as_str() != me)
            .map(|(name, node)| (name.clone(), node.vtep))
            .collect();
        let endpoints = self
            .endpoints
            .iter()
            .filter(|((network, node, _), _)| {
                node != me && self.nodes.contains_key(node) && self.networks.contains_key(network)
            })
            .map(|((network, node, ip), record)| RemoteEndpoint {
                network: network.clone(),
                node: node.clone(),
                ip: *ip,
                mac: record.mac,
                name: record.name.clone(),
                aliases: record.aliases.clone(),
            })
            .collect();
        let mut taken: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        let mut held = BTreeSet::new();
        for ((network, ip), holder) in &self.addresses {
            if holder.node != me {
                taken.entry(network.clone()).or_default().insert(*ip);
            } else {
                held.insert((network.clone(), *ip));
            }
        }
        Remote {
            peers,
            networks: self.networks.clone(),
            endpoints,
            taken,
            held,
        }
    }

    /// How many endpoints each node has registered.
    pub fn endpoints_per_node(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for (_, node, _) in self.endpoints.keys() {
            *counts.entry(node.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

fn parse<T: DeserializeOwned>(value: &[u8]) -> Option<T> {
    serde_json::from_slice(value).ok()
}
