//! What switchd asks of the cluster store, as values: transactions (compares, then puts
//! and deletes), snapshots and watch events, in etcd v3's terms. switchd's cluster thread
//! runs them against etcd; [`FakeStore`] runs them in memory, for tests of everything
//! above it without etcd.
//!
//! The semantics are etcd's: every key has a create and a mod revision; one transaction
//! is one revision; a watch from revision R delivers every change at R and after, in
//! order, unless R has been compacted away; a key bound to a lease goes when the lease
//! does.

use std::collections::BTreeMap;

/// A comparison of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists with exactly this value.
    Value(String, Vec<u8>),
    /// No key starts with this prefix.
    PrefixEmpty(String),
}

/// A write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Puts `value` at `key`, bound to this node's lease when `leased`.
    Put {
        key: String,
        value: Vec<u8>,
        leased: bool,
    },
    Delete(String),
}

/// If every compare holds, every op is applied, atomically, as one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
}

/// A key and its value as the store holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease the key is bound to (0: none).
    pub lease: i64,
}

/// Every key under a prefix, at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change a watch delivers: `revision` is the change's (the key's new mod revision,
/// or the revision of its deletion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    pub value: Vec<u8>,
    pub revision: i64,
}

/// Why the store could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No answer (down, partitioned, timed out).
    #[error("cluster store unreachable at {at}: {reason}")]
    Unreachable { at: String, reason: String },
    /// The store answered with an error.
    #[error("the cluster store at {at} refused: {reason}")]
    Refused { at: String, reason: String },
}

/// A watch from a revision that has been compacted away: start again from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("revision {requested} has been compacted (oldest kept: {compacted})")]
pub struct Compacted {
    pub requested: i64,
    pub compacted: i64,
}

#[derive(Clone, Debug)]
struct Stored {
    value: Vec<u8>,
    mod_revision: i64,
    lease: i64,
}

/// An in-memory store with etcd's semantics: revisions, leases, a watch history that
/// can be compacted, and an off switch (`down`) that makes every call fail as an
/// unreachable store does.
#[derive(Debug, Default)]
pub struct FakeStore {
    kvs: BTreeMap<String, Stored>,
    revision: i64,
    history: Vec<Event>,
    /// Changes at or before this revision are gone from the history.
    compacted: i64,
    leases: BTreeMap<i64, ()>,
    next_lease: i64,
    /// While true, every call fails with [`StoreError::Unreachable`].
    pub down: bool,
}

impl FakeStore {
    pub fn new() -> FakeStore {
        FakeStore {
            next_lease: 1,
            ..FakeStore::default()
        }
    }

    fn reachable(&self) -> Result<(), StoreError> {
        if self.down {
            return Err(StoreError::Unreachable {
                at: "fake".into(),
                reason: "down".into(),
            });
        }
        Ok(())
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Every key under `prefix`.
    pub fn snapshot(&self, prefix: &str) -> Result<Snapshot, StoreError> {
        self.reachable()?;
        Ok(Snapshot {
            kvs: self
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, stored)| KeyValue {
                    key: key.clone(),
                    value: stored.value.clone(),
                    mod_revision: stored.mod_revision,
                    lease: stored.lease,
                })
                .collect(),
            revision: self.revision,
        })
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.kvs.get(key).map(|s| s.value.as_slice())
    }

    /// Runs `txn`, with `lease` for its leased puts. True if its compares held.
    pub fn txn(&mut self, txn: &Txn, lease: Option<i64>) -> Result<bool, StoreError> {
        self.reachable()?;
        let holds = txn.compares.iter().all(|compare| match compare {
            Compare::Absent(key) => !self.kvs.contains_key(key),
            Compare::Value(key, value) => self.kvs.get(key).is_some_and(|s| s.value == *value),
            Compare::PrefixEmpty(prefix) => !self
                .kvs
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(key, _)| key.starts_with(prefix.as_str())),
        });
        if !holds {
            return Ok(false);
        }
        let leased_without_lease = txn
            .success
            .iter()
            .any(|op| matches!(op, Op::Put { leased: true, .. }))
            && !lease.is_some_and(|l| self.leases.contains_key(&l));
        if leased_without_lease {
            return Err(StoreError::Refused {
                at: "fake".into(),
                reason: "requested lease not found".into(),
            });
        }
        if txn.success.is_empty() {
            return Ok(true);
        }
        self.revision += 1;
        for op in &txn.success {
            match op {
                Op::Put { key, value, leased } => {
                    self.kvs.insert(
                        key.clone(),
                        Stored {
                            value: value.clone(),
                            mod_revision: self.revision,
                            lease: if *leased { lease.unwrap_or(0) } else { 0 },
                        },
                    );
                    self.history.push(Event {
                        kind: EventKind::Put,
                        key: key.clone(),
                        value: value.clone(),
                        revision: self.revision,
                    });
                }
                Op::Delete(key) => {
                    if self.kvs.remove(key).is_some() {
                        self.history.push(Event {
                            kind: EventKind::Delete,
                            key: key.clone(),
                            value: Vec::new(),
                            revision: self.revision,
                        });
                    }
                }
            }
        }
        Ok(true)
    }

    /// A new lease.
    pub fn grant(&mut self) -> Result<i64, StoreError> {
        self.reachable()?;
        let lease = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(lease, ());
        Ok(lease)
    }

    /// Whether `lease` is still alive.
    pub fn lease_alive(&self, lease: i64) -> bool {
        self.leases.contains_key(&lease)
    }

    /// Ends `lease` (it expired, or was revoked): its keys go, in one revision.
    pub fn expire(&mut self, lease: i64) {
        if self.leases.remove(&lease).is_none() {
            return;
        }
        let keys: Vec<String> = self
            .kvs
            .iter()
            .filter(|(_, s)| s.lease == lease)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        self.revision += 1;
        for key in keys {
            self.kvs.remove(&key);
            self.history.push(Event {
                kind: EventKind::Delete,
                key,
                value: Vec::new(),
                revision: self.revision,
            });
        }
    }

    /// Every change under `prefix` at revision `from` and after, as a watch from `from`
    /// delivers them.
    pub fn events_since(&self, prefix: &str, from: i64) -> Result<Vec<Event>, Compacted> {
        if from <= self.compacted {
            return Err(Compacted {
                requested: from,
                compacted: self.compacted,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.revision >= from && e.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    /// Forgets the history up to the current revision, as etcd's compaction does.
    pub fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            leased: false,
        }
    }

    #[test]
    fn compares_decide_and_one_txn_is_one_revision() {
        let mut store = FakeStore::new();
        let create = Txn {
            compares: vec![Compare::Absent("/a".into()), Compare::Absent("/b".into())],
            success: vec![put("/a", "1"), put("/b", "2")],
        };
        assert_eq!(store.txn(&create, None), Ok(true));
        assert_eq!(store.revision(), 1);
        assert_eq!(
            store.txn(&create, None),
            Ok(false),
            "the second create loses"
        );
        assert_eq!(store.revision(), 1, "a failed txn writes nothing");
        let empty = Txn {
            compares: vec![Compare::PrefixEmpty("/a".into())],
            success: vec![],
        };
        assert_eq!(store.txn(&empty, None), Ok(false));
        let matches = Txn {
            compares: vec![Compare::Value("/b".into(), b"2".to_vec())],
            success: vec![Op::Delete("/b".into())],
        };
        assert_eq!(store.txn(&matches, None), Ok(true));
        assert_eq!(store.get("/b"), None);
        store.down = true;
        assert!(matches!(
            store.txn(&create, None),
            Err(StoreError::Unreachable { .. })
        ));
    }

    #[test]
    fn leases_take_their_keys_and_compaction_ends_old_watches() {
        let mut store = FakeStore::new();
        let lease = store.grant().unwrap();
        let leased = Txn {
            compares: vec![],
            success: vec![Op::Put {
                key: "/n/x".into(),
                value: b"v".to_vec(),
                leased: true,
            }],
        };
        assert!(store.txn(&leased, None).is_err(), "no lease, no leased put");
        assert_eq!(store.txn(&leased, Some(lease)), Ok(true));
        store.expire(lease);
        assert_eq!(store.get("/n/x"), None);
        let events = store.events_since("/n/", 1).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, EventKind::Delete);
        store.compact();
        assert!(store.events_since("/n/", 1).is_err());
        assert_eq!(store.events_since("/n/", store.revision() + 1), Ok(vec![]));
    }
}
