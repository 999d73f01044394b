//! The FDB's read index: a fixed-size open-addressing hash table that any number of
//! threads read without locks while one writer at a time changes it.
//!
//! # Contract
//!
//! * **Readers** ([`Index::get`]) never block and never write shared memory: a lookup is
//!   a hash and a few atomic loads. Each bucket carries a sequence number (a seqlock), so
//!   a reader never sees a torn bucket: it gets the key, value and slot as one writer left
//!   them.
//! * **One writer at a time.** Every method but `get` must be called with the owning
//!   table's mutex held ([`super::MacTable`] does this); two concurrent writers would
//!   corrupt the table.
//! * **What a concurrent reader may see.** A lookup racing a change to the same entry
//!   returns the old value or the new one. A lookup racing the removal of *another*
//!   entry may miss an entry that is being moved one bucket back in its probe run
//!   (backward-shift deletion); the switch then floods the frame, as for any unknown
//!   address. It never returns a value that belongs to a different key.
//! * **Capacity** is fixed when the table is made: 4/3 of the most entries it will ever
//!   hold (plus one), so probe runs stay short and there is always an empty bucket to end
//!   a probe. The owner never inserts more than that many entries.
//! * **Hashing** uses a per-table random seed, so an attacker flooding source addresses
//!   cannot aim at long probe runs.

use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::port::PortId;
use crate::wire::{MacAddr, VlanId};

/// A key word: the top bit marks an occupied bucket, then the VLAN (12 bits) and the MAC.
pub(super) fn key(vlan: VlanId, mac: MacAddr) -> u64 {
    (1 << 63) | (u64::from(vlan.get()) << 48) | mac.to_u64()
}

const EMPTY: u64 = 0;
const STATIC_BIT: u64 = 1 << 63;

/// What a bucket says about its (VLAN, MAC): where it is and when it was last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Value {
    pub port: PortId,
    /// Whole seconds on the table's clock.
    pub last_seen_secs: u32,
    pub is_static: bool,
}

impl Value {
    fn encode(self) -> u64 {
        u64::from(self.port.0)
            | (u64::from(self.last_seen_secs & 0x7fff_ffff) << 32)
            | if self.is_static { STATIC_BIT } else { 0 }
    }

    fn decode(word: u64) -> Value {
        Value {
            port: PortId(word as u32),
            last_seen_secs: ((word >> 32) & 0x7fff_ffff) as u32,
            is_static: word & STATIC_BIT != 0,
        }
    }
}

#[derive(Default)]
struct Bucket {
    /// Odd while the writer is changing the bucket.
    seq: AtomicU32,
    /// The table slot of the entry (only the writer reads it).
    slot: AtomicU32,
    key: AtomicU64,
    value: AtomicU64,
}

impl Bucket {
    /// A consistent (key, value, slot) of this bucket.
    #[inline]
    fn read(&self) -> (u64, u64, u32) {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let key = self.key.load(Ordering::Relaxed);
            let value = self.value.load(Ordering::Relaxed);
            let slot = self.slot.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return (key, value, slot);
            }
        }
    }

    /// Replaces the bucket's contents (writer only).
    fn write(&self, key: u64, value: u64, slot: u32) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.key.store(key, Ordering::Relaxed);
        self.value.store(value, Ordering::Relaxed);
        self.slot.store(slot, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

/// The lock-free read index of a MAC table. See the module documentation.
pub(super) struct Index {
    buckets: Box<[Bucket]>,
    hasher: foldhash::fast::RandomState,
}

impl Index {
    /// An index for at most `max_entries` entries.
    pub fn new(max_entries: usize) -> Index {
        let capacity = max_entries
            .saturating_add(max_entries / 3)
            .saturating_add(1)
            .max(16);
        Index {
            buckets: std::iter::repeat_with(Bucket::default)
                .take(capacity)
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        let hash = self.hasher.hash_one(key);
        // Lemire's range reduction: a multiply instead of a division.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// The value for `key`, if it is there. Lock-free; safe to call from any thread.
    #[inline]
    pub fn get(&self, key: u64) -> Option<Value> {
        let mut i = self.home(key);
        for _ in 0..self.buckets.len() {
            let (found, value, _) = self.buckets[i].read();
            if found == key {
                return Some(Value::decode(value));
            }
            if found == EMPTY {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    /// The bucket and slot of `key` (writer only).
    pub fn find(&self, key: u64) -> Option<(usize, u32)> {
        let mut i = self.home(key);
        for _ in 0..self.buckets.len() {
            let (found, _, slot) = self.buckets[i].read();
            if found == key {
                return Some((i, slot));
            }
            if found == EMPTY {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    /// Adds `key`, which must be absent (writer only).
    pub fn insert(&self, key: u64, value: Value, slot: u32) {
        let mut i = self.home(key);
        loop {
            if self.buckets[i].key.load(Ordering::Relaxed) == EMPTY {
                self.buckets[i].write(key, value.encode(), slot);
                return;
            }
            i = self.next(i);
        }
    }

    /// Changes the value in bucket `at` (writer only).
    pub fn set_value(&self, at: usize, value: Value) {
        let bucket = &self.buckets[at];
        let (key, _, slot) = bucket.read();
        bucket.write(key, value.encode(), slot);
    }

    /// Empties bucket `at`, moving later entries of its probe run back so that no probe
    /// ever stops early at the hole (backward-shift deletion; writer only).
    pub fn remove_at(&self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = self.next(j);
            let (key, value, slot) = self.buckets[j].read();
            if key == EMPTY {
                self.buckets[hole].write(EMPTY, 0, 0);
                return;
            }
            let home = self.home(key);
            // The entry at `j` may fill the hole unless its home lies cyclically in
            // (hole, j]: then it would move in front of where its probes start.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                // Copy first, then reuse the source: a reader sees the entry twice for a
                // moment, never zero times at both places for a key that stays.
                self.buckets[hole].write(key, value, slot);
                hole = j;
            }
        }
    }

    /// Every occupied bucket's key, value and slot (writer only; for walks and checks).
    #[cfg(test)]
    pub fn occupied(&self) -> impl Iterator<Item = (u64, Value, u32)> + '_ {
        self.buckets.iter().filter_map(|b| {
            let (key, value, slot) = b.read();
            (key != EMPTY).then(|| (key, Value::decode(value), slot))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn k(n: u32) -> u64 {
        let [a, b, c, d] = n.to_be_bytes();
        key(VlanId::new(1).unwrap(), MacAddr([2, 0, a, b, c, d]))
    }

    fn v(port: u32) -> Value {
        Value {
            port: PortId(port),
            last_seen_secs: port.wrapping_mul(3) & 0x7fff_ffff,
            is_static: port % 2 == 0,
        }
    }

    #[test]
    fn values_round_trip() {
        for value in [v(0), v(7), v(0x7fff_ffff)] {
            assert_eq!(Value::decode(value.encode()), value);
        }
    }

    #[test]
    fn insert_find_remove() {
        let index = Index::new(8);
        for n in 0..8 {
            index.insert(k(n), v(n), n);
        }
        for n in 0..8 {
            assert_eq!(index.get(k(n)), Some(v(n)));
            assert_eq!(index.find(k(n)).map(|(_, slot)| slot), Some(n));
        }
        assert_eq!(index.get(k(99)), None);
        let (at, _) = index.find(k(3)).unwrap();
        index.remove_at(at);
        assert_eq!(index.get(k(3)), None);
        for n in (0..8).filter(|n| *n != 3) {
            assert_eq!(index.get(k(n)), Some(v(n)), "{n} still found");
        }
    }

    proptest::proptest! {
        /// Any mix of inserts and removals leaves exactly the live keys findable.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any_insert(), 0u32..24), 1..400)) {
            let index = Index::new(16);
            let mut model: HashMap<u32, u32> = HashMap::new();
            for (insert, n) in ops {
                match (insert, model.contains_key(&n)) {
                    (true, false) if model.len() < 16 => {
                        index.insert(k(n), v(n), n);
                        model.insert(n, n);
                    }
                    (false, true) => {
                        let (at, _) = index.find(k(n)).unwrap();
                        index.remove_at(at);
                        model.remove(&n);
                    }
                    _ => {}
                }
                for m in 0..24 {
                    proptest::prop_assert_eq!(index.get(k(m)).is_some(), model.contains_key(&m));
                }
                proptest::prop_assert_eq!(index.occupied().count(), model.len());
            }
        }
    }

    fn any_insert() -> impl proptest::strategy::Strategy<Value = bool> {
        proptest::bool::ANY
    }

    #[test]
    fn readers_never_see_another_keys_value() {
        // One writer churns keys while readers check that whatever they find belongs to
        // the key they asked for (each value encodes its key's number).
        let index = std::sync::Arc::new(Index::new(64));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (index, stop) = (index.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for n in 0..64 {
                            if let Some(value) = index.get(k(n)) {
                                assert_eq!(value, v(n), "key {n}");
                                seen += 1;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut live = std::collections::BTreeSet::new();
        for round in 0..20_000u32 {
            let n = round.wrapping_mul(2_654_435_761) % 64;
            if live.contains(&n) {
                let (at, _) = index.find(k(n)).unwrap();
                index.remove_at(at);
                live.remove(&n);
            } else if live.len() < 64 {
                index.insert(k(n), v(n), n);
                live.insert(n);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        for n in 0..64 {
            assert_eq!(index.get(k(n)).is_some(), live.contains(&n));
        }
    }
}
