//! A node's own keys: its registration, its endpoints (both bound to its lease) and the
//! addresses it holds. The controller says what they should be ([`OwnKeys`]); switchd's
//! cluster thread makes the store match, at every (re)registration from a snapshot
//! ([`OwnKeys::resync`]) and after every change ([`OwnKeys::update`]).
//!
//! Addresses are claimed and released by the controller itself, synchronously, because
//! an attach must know it won its address before it goes on; the resync only repairs
//! what a crash or an outage left behind: an address this node holds in the store but
//! no longer uses is released, and one it uses but the store lost is claimed again.

use std::collections::BTreeMap;

use super::keys::{AddressRecord, Key, NodeRecord, PREFIX};
use super::store::{Compare, Op, Snapshot, Txn};

/// etcd refuses transactions of more than `--max-txn-ops` (128 by default) operations.
const OPS_PER_TXN: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnKeys {
    pub node: String,
    pub record: Option<NodeRecord>,
    /// Endpoint keys and values (leased).
    pub endpoints: BTreeMap<String, Vec<u8>>,
    /// Address keys and values (not leased: an address outlives an outage).
    pub addresses: BTreeMap<String, Vec<u8>>,
}

/// What a resync does, and what it cannot repair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resync {
    pub txns: Vec<Txn>,
    /// Addresses this node uses that another node holds in the store.
    pub conflicts: Vec<String>,
}

impl OwnKeys {
    fn node_put(&self) -> Option<Op> {
        let record = self.record.as_ref()?;
        Some(Op::Put {
            key: Key::Node(self.node.clone()).path(),
            value: super::keys::value_of(record),
            leased: true,
        })
    }

    fn is_mine(&self, key: &str) -> bool {
        matches!(Key::parse(key), Some(Key::Endpoint { node, .. }) if node == self.node)
    }

    /// Everything that brings the store from `snapshot` to these keys: the registration
    /// and every endpoint put under the (new) lease, stale endpoints and addresses of this
    /// node deleted, lost addresses claimed again.
    pub fn resync(&self, snapshot: &Snapshot) -> Resync {
        let mut ops: Vec<Op> = self.node_put().into_iter().collect();
        ops.extend(self.endpoints.iter().map(|(key, value)| Op::Put {
            key: key.clone(),
            value: value.clone(),
            leased: true,
        }));
        let stored: BTreeMap<&str, &[u8]> = snapshot
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect();
        ops.extend(
            stored
                .keys()
                .filter(|key| self.is_mine(key) && !self.endpoints.contains_key(**key))
                .map(|key| Op::Delete(key.to_string())),
        );
        let mut txns: Vec<Txn> = ops
            .chunks(OPS_PER_TXN)
            .map(|chunk| Txn {
                compares: Vec::new(),
                success: chunk.to_vec(),
            })
            .collect();
        let mut conflicts = Vec::new();
        let address_prefix = format!("{PREFIX}addresses/");
        for (key, value) in &stored {
            let holder = serde_json::from_slice::<AddressRecord>(value).ok();
            let mine = holder.is_some_and(|h| h.node == self.node);
            if key.starts_with(&address_prefix) && mine && !self.addresses.contains_key(*key) {
                txns.push(Txn {
                    compares: vec![Compare::Value(key.to_string(), value.to_vec())],
                    success: vec![Op::Delete(key.to_string())],
                });
            }
        }
        for (key, value) in &self.addresses {
            match stored.get(key.as_str()) {
                None => txns.push(Txn {
                    compares: vec![Compare::Absent(key.clone())],
                    success: vec![Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                        leased: false,
                    }],
                }),
                Some(held) if *held != value.as_slice() => conflicts.push(key.clone()),
                Some(_) => {}
            }
        }
        Resync { txns, conflicts }
    }

    /// What changes the store from `old`'s endpoints and registration to these.
    pub fn update(&self, old: &OwnKeys) -> Vec<Txn> {
        let mut ops: Vec<Op> = Vec::new();
        if self.record != old.record {
            ops.extend(self.node_put());
        }
        ops.extend(
            self.endpoints
                .iter()
                .filter(|(key, value)| old.endpoints.get(*key) != Some(value))
                .map(|(key, value)| Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                    leased: true,
                }),
        );
        ops.extend(
            old.endpoints
                .keys()
                .filter(|key| !self.endpoints.contains_key(*key))
                .map(|key| Op::Delete(key.clone())),
        );
        ops.chunks(OPS_PER_TXN)
            .map(|chunk| Txn {
                compares: Vec::new(),
                success: chunk.to_vec(),
            })
            .collect()
    }
}
