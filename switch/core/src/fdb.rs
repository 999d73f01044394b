//! The MAC learning table (forwarding database, FDB).
//!
//! # Contract
//!
//! * **Key.** Entries are keyed by (VLAN, MAC) and map to one port. The same MAC may sit
//!   on different ports in different VLANs.
//! * **Learning.** [`MacTable::learn`] records that a frame from `mac` arrived on `port`
//!   in `vlan`. Multicast and all-zero source addresses are never learned. If the entry
//!   already points elsewhere the MAC has *moved*: the entry follows it.
//! * **Static entries** are added by the operator. Learning never overwrites, moves or
//!   ages them; only [`MacTable::remove`] or a flush that asks for statics removes them.
//! * **Aging.** A dynamic entry not refreshed for `aging` is gone: [`MacTable::lookup`]
//!   stops returning it at once, and [`MacTable::expire`] reclaims it. Refreshes are
//!   recorded at one-second granularity (to keep the per-frame cost to a compare), so an
//!   entry can age out up to a second early.
//! * **Bounds.** At most `max_entries` entries in all (statics included) and at most
//!   `max_per_port` dynamic entries per port. Learning on a port at its cap evicts that
//!   port's least recently seen entry. Learning when the table is full evicts the least
//!   recently seen entry of the port holding the most dynamic entries (ties: the lowest
//!   port id), so a port flooding random source MACs recycles its own entries instead of
//!   pushing everyone else out. If nothing can be evicted (the table holds only statics),
//!   the address is not learned and `refused` counts it.
//! * **Counters.** learned, moved, aged, evicted and refused only ever increase.
//! * **Cost.** Lookup and learn are O(1) (one hash probe; list relinks when a refresh
//!   or move happens). Expiry is O(ports + expired). Eviction when full is O(ports).
//!
//! Entries live in a slab; each port keeps its dynamic entries on an intrusive list in
//! least-recently-seen order, which makes eviction and expiry cheap.

use std::time::Duration;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::port::PortId;
use crate::time::Time;
use crate::wire::{MacAddr, VlanId};

/// Limits and timers of a [`MacTable`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FdbConfig {
    /// Idle time after which a learned entry is forgotten.
    #[serde(with = "secs")]
    pub aging: Duration,
    /// Entries in all, static ones included.
    pub max_entries: usize,
    /// Learned entries per port.
    pub max_per_port: usize,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            aging: Duration::from_secs(300),
            max_entries: 128 * 1024,
            max_per_port: 64 * 1024,
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Refreshes closer together than this do not reorder the LRU lists.
const REFRESH_GRANULARITY: Duration = Duration::from_secs(1);

/// What [`MacTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry existed on this port; its age was reset.
    Refreshed,
    /// The entry pointed at another port and now points here.
    Moved { from: PortId },
    /// A static entry holds this address; it was left alone.
    Static,
    /// Not learned: multicast or zero source, or a table full of static entries.
    Refused,
}

/// A static entry could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error("{0} is a multicast or zero address; only unicast addresses can have FDB entries")]
    NotUnicast(MacAddr),
    #[error("the FDB is full of static entries ({0}); remove some or raise max_entries")]
    Full(usize),
}

/// Monotonic counters of table activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbCounters {
    pub learned: u64,
    pub moved: u64,
    pub aged: u64,
    pub evicted: u64,
    pub refused: u64,
}

/// One entry as reported by [`MacTable::entries`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub vlan: VlanId,
    pub mac: MacAddr,
    pub port: PortId,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Seconds since the address was last seen (0 for static entries).
    pub age_secs: u64,
}

/// Which entries a flush removes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlushFilter {
    pub port: Option<PortId>,
    pub vlan: Option<VlanId>,
    /// Also remove static entries.
    pub include_static: bool,
}

const NIL: u32 = u32::MAX;

fn key(vlan: VlanId, mac: MacAddr) -> u64 {
    (u64::from(vlan.get()) << 48) | mac.to_u64()
}

struct Slot {
    vlan: VlanId,
    mac: MacAddr,
    port: PortId,
    last_seen: Time,
    is_static: bool,
    prev: u32,
    next: u32,
}

/// A doubly linked list of slots, oldest first.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

#[derive(Default)]
struct PortEntries {
    dynamic: List,
    statics: List,
}

/// The MAC learning table. See the module documentation for its contract.
pub struct MacTable {
    config: FdbConfig,
    index: HashMap<u64, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    ports: HashMap<PortId, PortEntries>,
    counters: FdbCounters,
}

impl MacTable {
    pub fn new(config: FdbConfig) -> MacTable {
        MacTable {
            config,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            ports: HashMap::new(),
            counters: FdbCounters::default(),
        }
    }

    pub fn config(&self) -> &FdbConfig {
        &self.config
    }

    pub fn counters(&self) -> FdbCounters {
        self.counters
    }

    /// Entries in the table, including expired ones not yet reclaimed by `expire`.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Learned entries on `port`.
    pub fn dynamic_len(&self, port: PortId) -> usize {
        self.ports.get(&port).map_or(0, |p| p.dynamic.len)
    }

    fn is_expired(&self, slot: &Slot, now: Time) -> bool {
        !slot.is_static && now.since(slot.last_seen) >= self.config.aging
    }

    /// The port `mac` was last seen on in `vlan`, unless the entry has aged out.
    #[inline]
    pub fn lookup(&self, now: Time, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        let slot = &self.slots[*self.index.get(&key(vlan, mac))? as usize];
        (!self.is_expired(slot, now)).then_some(slot.port)
    }

    /// Records that a frame from `mac` arrived on `port` in `vlan`.
    #[inline]
    pub fn learn(&mut self, now: Time, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        if !mac.is_valid_source() {
            return Learned::Refused;
        }
        let Some(&index) = self.index.get(&key(vlan, mac)) else {
            return self.learn_new(now, vlan, mac, port);
        };
        let slot = &self.slots[index as usize];
        if slot.is_static {
            return Learned::Static;
        }
        if self.is_expired(slot, now) {
            // Aged out but not yet reclaimed: as good as absent.
            self.remove(vlan, mac);
            self.counters.aged += 1;
            return self.learn_new(now, vlan, mac, port);
        }
        if slot.port == port {
            if now.since(slot.last_seen) >= REFRESH_GRANULARITY {
                self.unlink(index);
                self.slots[index as usize].last_seen = now;
                self.link_dynamic(index);
            }
            return Learned::Refreshed;
        }
        let from = slot.port;
        self.unlink(index);
        if self.dynamic_len(port) >= self.config.max_per_port {
            self.evict_oldest_of(port);
        }
        let slot = &mut self.slots[index as usize];
        slot.port = port;
        slot.last_seen = now;
        self.link_dynamic(index);
        self.counters.moved += 1;
        Learned::Moved { from }
    }

    fn learn_new(&mut self, now: Time, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        if self.config.max_per_port == 0 || self.config.max_entries == 0 {
            self.counters.refused += 1;
            return Learned::Refused;
        }
        if self.dynamic_len(port) >= self.config.max_per_port {
            self.evict_oldest_of(port);
        } else if self.index.len() >= self.config.max_entries {
            match self.fullest_port() {
                Some(victim) => self.evict_oldest_of(victim),
                None => {
                    self.counters.refused += 1;
                    return Learned::Refused;
                }
            }
        }
        let index = self.alloc(Slot {
            vlan,
            mac,
            port,
            last_seen: now,
            is_static: false,
            prev: NIL,
            next: NIL,
        });
        self.link_dynamic(index);
        self.counters.learned += 1;
        Learned::New
    }

    /// Adds or replaces a static entry for (`vlan`, `mac`).
    pub fn add_static(&mut self, vlan: VlanId, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        if !mac.is_valid_source() {
            return Err(FdbError::NotUnicast(mac));
        }
        if let Some(&index) = self.index.get(&key(vlan, mac)) {
            self.unlink(index);
            let slot = &mut self.slots[index as usize];
            slot.port = port;
            slot.is_static = true;
            self.link(index);
            return Ok(());
        }
        if self.index.len() >= self.config.max_entries {
            match self.fullest_port() {
                Some(victim) => self.evict_oldest_of(victim),
                None => return Err(FdbError::Full(self.index.len())),
            }
        }
        let index = self.alloc(Slot {
            vlan,
            mac,
            port,
            last_seen: Time::ZERO,
            is_static: true,
            prev: NIL,
            next: NIL,
        });
        self.link(index);
        Ok(())
    }

    /// Removes the entry for (`vlan`, `mac`), static or not. Returns the port it pointed at.
    pub fn remove(&mut self, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        let index = self.index.remove(&key(vlan, mac))?;
        let port = self.slots[index as usize].port;
        self.unlink(index);
        self.free.push(index);
        Some(port)
    }

    /// Removes every entry matching `filter`; returns how many.
    pub fn flush(&mut self, filter: FlushFilter) -> usize {
        let doomed: Vec<(VlanId, MacAddr)> = self
            .index
            .values()
            .map(|&i| &self.slots[i as usize])
            .filter(|s| filter.port.is_none_or(|p| s.port == p))
            .filter(|s| filter.vlan.is_none_or(|v| s.vlan == v))
            .filter(|s| filter.include_static || !s.is_static)
            .map(|s| (s.vlan, s.mac))
            .collect();
        for (vlan, mac) in &doomed {
            self.remove(*vlan, *mac);
        }
        doomed.len()
    }

    /// Reclaims every dynamic entry idle for `aging` or longer; returns how many.
    pub fn expire(&mut self, now: Time) -> usize {
        let mut expired = Vec::new();
        for entries in self.ports.values() {
            let mut index = entries.dynamic.head;
            while index != NIL {
                let slot = &self.slots[index as usize];
                if !self.is_expired(slot, now) {
                    break;
                }
                expired.push((slot.vlan, slot.mac));
                index = slot.next;
            }
        }
        for (vlan, mac) in &expired {
            self.remove(*vlan, *mac);
        }
        self.counters.aged += expired.len() as u64;
        expired.len()
    }

    /// When the next dynamic entry will age out, if there is one.
    pub fn next_expiry(&self) -> Option<Time> {
        self.ports
            .values()
            .filter(|entries| entries.dynamic.head != NIL)
            .map(|entries| self.slots[entries.dynamic.head as usize].last_seen + self.config.aging)
            .min()
    }

    /// The live entry for (`vlan`, `mac`), if there is one.
    pub fn get(&self, now: Time, vlan: VlanId, mac: MacAddr) -> Option<FdbEntry> {
        let slot = &self.slots[*self.index.get(&key(vlan, mac))? as usize];
        (!self.is_expired(slot, now)).then(|| self.entry_of(slot, now))
    }

    fn entry_of(&self, slot: &Slot, now: Time) -> FdbEntry {
        FdbEntry {
            vlan: slot.vlan,
            mac: slot.mac,
            port: slot.port,
            is_static: slot.is_static,
            age_secs: if slot.is_static {
                0
            } else {
                now.since(slot.last_seen).as_secs()
            },
        }
    }

    /// All live entries, in no particular order.
    pub fn entries(&self, now: Time) -> impl Iterator<Item = FdbEntry> + '_ {
        self.index
            .values()
            .map(|&i| &self.slots[i as usize])
            .filter(move |slot| !self.is_expired(slot, now))
            .map(move |slot| self.entry_of(slot, now))
    }

    /// The port with the most dynamic entries (lowest id on ties), if any has one.
    fn fullest_port(&self) -> Option<PortId> {
        self.ports
            .iter()
            .filter(|(_, entries)| entries.dynamic.len > 0)
            .max_by(|(a, ea), (b, eb)| ea.dynamic.len.cmp(&eb.dynamic.len).then(b.cmp(a)))
            .map(|(port, _)| *port)
    }

    fn evict_oldest_of(&mut self, port: PortId) {
        let Some(head) = self.ports.get(&port).map(|p| p.dynamic.head) else {
            return;
        };
        if head == NIL {
            return;
        }
        let slot = &self.slots[head as usize];
        let (vlan, mac) = (slot.vlan, slot.mac);
        self.remove(vlan, mac);
        self.counters.evicted += 1;
    }

    fn alloc(&mut self, slot: Slot) -> u32 {
        let k = key(slot.vlan, slot.mac);
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("FDB slab exceeds u32 slots")
            }
        };
        self.index.insert(k, index);
        index
    }

    fn list_of(&mut self, index: u32) -> &mut List {
        let slot = &self.slots[index as usize];
        let (port, is_static) = (slot.port, slot.is_static);
        let entries = self.ports.entry(port).or_default();
        if is_static {
            &mut entries.statics
        } else {
            &mut entries.dynamic
        }
    }

    /// Appends the slot at the tail (most recently seen end) of its port's list.
    fn link(&mut self, index: u32) {
        let list = self.list_of(index);
        let old_tail = list.tail;
        list.tail = index;
        if old_tail == NIL {
            list.head = index;
        }
        list.len += 1;
        if old_tail != NIL {
            self.slots[old_tail as usize].next = index;
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = old_tail;
        slot.next = NIL;
    }

    fn link_dynamic(&mut self, index: u32) {
        debug_assert!(!self.slots[index as usize].is_static);
        self.link(index);
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let port = self.slots[index as usize].port;
        let list = self.list_of(index);
        if list.head == index {
            list.head = next;
        }
        if list.tail == index {
            list.tail = prev;
        }
        list.len -= 1;
        let empty = list.len == 0;
        if empty {
            let entries = &self.ports[&port];
            if entries.dynamic.len == 0 && entries.statics.len == 0 {
                self.ports.remove(&port);
            }
        }
        let slot = &mut self.slots[index as usize];
        slot.prev = NIL;
        slot.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    fn mac(n: u32) -> MacAddr {
        let [a, b, c, d] = n.to_be_bytes();
        MacAddr([0x02, 0, a, b, c, d])
    }

    fn secs(s: u64) -> Time {
        Time::from_secs(s)
    }

    fn table(max_entries: usize, max_per_port: usize) -> MacTable {
        MacTable::new(FdbConfig {
            aging: Duration::from_secs(300),
            max_entries,
            max_per_port,
        })
    }

    #[test]
    fn learns_and_looks_up_per_vlan() {
        let mut fdb = MacTable::new(FdbConfig::default());
        assert_eq!(
            fdb.learn(secs(0), vlan(10), mac(1), PortId(1)),
            Learned::New
        );
        assert_eq!(fdb.lookup(secs(1), vlan(10), mac(1)), Some(PortId(1)));
        assert_eq!(fdb.lookup(secs(1), vlan(20), mac(1)), None);
        assert_eq!(
            fdb.learn(secs(2), vlan(20), mac(1), PortId(2)),
            Learned::New
        );
        assert_eq!(fdb.lookup(secs(2), vlan(10), mac(1)), Some(PortId(1)));
        assert_eq!(fdb.lookup(secs(2), vlan(20), mac(1)), Some(PortId(2)));
        assert_eq!(fdb.counters().learned, 2);
    }

    #[test]
    fn never_learns_group_or_zero_sources() {
        let mut fdb = MacTable::new(FdbConfig::default());
        assert_eq!(
            fdb.learn(secs(0), vlan(1), MacAddr::BROADCAST, PortId(1)),
            Learned::Refused
        );
        let mcast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
        assert_eq!(
            fdb.learn(secs(0), vlan(1), mcast, PortId(1)),
            Learned::Refused
        );
        assert_eq!(
            fdb.learn(secs(0), vlan(1), MacAddr::ZERO, PortId(1)),
            Learned::Refused
        );
        assert!(fdb.is_empty());
        assert!(fdb.add_static(vlan(1), mcast, PortId(1)).is_err());
    }

    #[test]
    fn follows_a_moved_mac() {
        let mut fdb = MacTable::new(FdbConfig::default());
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        assert_eq!(
            fdb.learn(secs(1), vlan(1), mac(1), PortId(2)),
            Learned::Moved { from: PortId(1) }
        );
        assert_eq!(fdb.lookup(secs(1), vlan(1), mac(1)), Some(PortId(2)));
        assert_eq!(
            (fdb.dynamic_len(PortId(1)), fdb.dynamic_len(PortId(2))),
            (0, 1)
        );
        assert_eq!(fdb.counters().moved, 1);
    }

    #[test]
    fn ages_idle_entries_and_keeps_refreshed_ones() {
        let mut fdb = MacTable::new(FdbConfig::default());
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(0), vlan(1), mac(2), PortId(1));
        assert_eq!(fdb.next_expiry(), Some(secs(300)));
        assert_eq!(
            fdb.learn(secs(200), vlan(1), mac(2), PortId(1)),
            Learned::Refreshed
        );
        assert_eq!(fdb.lookup(secs(299), vlan(1), mac(1)), Some(PortId(1)));
        assert_eq!(
            fdb.lookup(secs(300), vlan(1), mac(1)),
            None,
            "lookup hides aged entries"
        );
        assert_eq!(fdb.expire(secs(300)), 1);
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb.next_expiry(), Some(secs(500)));
        assert_eq!(fdb.expire(secs(499)), 0);
        assert_eq!(fdb.expire(secs(500)), 1);
        assert_eq!(fdb.counters().aged, 2);
        assert_eq!(fdb.next_expiry(), None);
    }

    #[test]
    fn relearning_an_aged_entry_elsewhere_is_new_not_a_move() {
        let mut fdb = MacTable::new(FdbConfig::default());
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        assert_eq!(
            fdb.learn(secs(400), vlan(1), mac(1), PortId(2)),
            Learned::New
        );
        assert_eq!(fdb.counters().moved, 0);
        assert_eq!(fdb.counters().aged, 1);
        assert_eq!(fdb.lookup(secs(400), vlan(1), mac(1)), Some(PortId(2)));
        assert_eq!(
            (fdb.dynamic_len(PortId(1)), fdb.dynamic_len(PortId(2))),
            (0, 1)
        );
    }

    #[test]
    fn static_entries_win_over_learning_and_never_age() {
        let mut fdb = MacTable::new(FdbConfig::default());
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        fdb.add_static(vlan(1), mac(1), PortId(9)).unwrap();
        assert_eq!(
            fdb.learn(secs(1), vlan(1), mac(1), PortId(2)),
            Learned::Static
        );
        assert_eq!(fdb.lookup(secs(10_000), vlan(1), mac(1)), Some(PortId(9)));
        assert_eq!(fdb.expire(secs(10_000)), 0);
        assert_eq!(fdb.next_expiry(), None);
        assert_eq!(fdb.dynamic_len(PortId(1)), 0);
        let only = fdb.entries(secs(10_000)).collect::<Vec<_>>();
        assert_eq!(only.len(), 1);
        assert!(only[0].is_static);
        assert_eq!(
            fdb.get(secs(10_000), vlan(1), mac(1)),
            Some(only[0].clone())
        );
        assert_eq!(fdb.remove(vlan(1), mac(1)), Some(PortId(9)));
        assert!(fdb.is_empty());
    }

    #[test]
    fn per_port_cap_recycles_that_ports_oldest() {
        let mut fdb = table(100, 3);
        for n in 0..3 {
            fdb.learn(secs(n), vlan(1), mac(n as u32), PortId(1));
        }
        fdb.learn(secs(3), vlan(1), mac(100), PortId(2));
        fdb.learn(secs(4), vlan(1), mac(3), PortId(1));
        assert_eq!(fdb.dynamic_len(PortId(1)), 3);
        assert_eq!(
            fdb.lookup(secs(4), vlan(1), mac(0)),
            None,
            "oldest of port 1 evicted"
        );
        assert_eq!(fdb.lookup(secs(4), vlan(1), mac(100)), Some(PortId(2)));
        assert_eq!(fdb.counters().evicted, 1);
    }

    #[test]
    fn full_table_evicts_from_the_port_with_most_entries() {
        let mut fdb = table(6, 100);
        for n in 0..4 {
            fdb.learn(secs(n), vlan(1), mac(n as u32), PortId(7));
        }
        fdb.learn(secs(10), vlan(1), mac(50), PortId(1));
        fdb.learn(secs(11), vlan(1), mac(51), PortId(2));
        assert_eq!(fdb.len(), 6);
        // Port 1, whose entry is the oldest of *its* port, must not lose it: port 7 has the most.
        fdb.learn(secs(20), vlan(1), mac(52), PortId(1));
        assert_eq!(fdb.len(), 6);
        assert_eq!(fdb.dynamic_len(PortId(7)), 3);
        assert_eq!(fdb.lookup(secs(20), vlan(1), mac(0)), None);
        assert_eq!(fdb.lookup(secs(20), vlan(1), mac(50)), Some(PortId(1)));
        assert_eq!(fdb.lookup(secs(20), vlan(1), mac(51)), Some(PortId(2)));
    }

    #[test]
    fn refresh_keeps_an_entry_from_eviction() {
        let mut fdb = table(100, 2);
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(1), vlan(1), mac(2), PortId(1));
        fdb.learn(secs(5), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(6), vlan(1), mac(3), PortId(1));
        assert_eq!(fdb.lookup(secs(6), vlan(1), mac(1)), Some(PortId(1)));
        assert_eq!(fdb.lookup(secs(6), vlan(1), mac(2)), None);
    }

    #[test]
    fn a_table_of_statics_refuses_to_learn() {
        let mut fdb = table(2, 10);
        fdb.add_static(vlan(1), mac(1), PortId(1)).unwrap();
        fdb.add_static(vlan(1), mac(2), PortId(1)).unwrap();
        assert_eq!(
            fdb.learn(secs(0), vlan(1), mac(3), PortId(2)),
            Learned::Refused
        );
        assert_eq!(fdb.counters().refused, 1);
        assert_eq!(
            fdb.add_static(vlan(1), mac(3), PortId(1)),
            Err(FdbError::Full(2))
        );
        fdb.add_static(vlan(1), mac(2), PortId(3)).unwrap();
        assert_eq!(fdb.lookup(secs(0), vlan(1), mac(2)), Some(PortId(3)));
    }

    #[test]
    fn flush_by_port_vlan_and_kind() {
        let mut fdb = MacTable::new(FdbConfig::default());
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(0), vlan(2), mac(2), PortId(1));
        fdb.learn(secs(0), vlan(1), mac(3), PortId(2));
        fdb.add_static(vlan(1), mac(4), PortId(1)).unwrap();
        let removed = fdb.flush(FlushFilter {
            port: Some(PortId(1)),
            vlan: Some(vlan(1)),
            include_static: false,
        });
        assert_eq!(removed, 1);
        assert_eq!(fdb.len(), 3);
        assert_eq!(fdb.flush(FlushFilter::default()), 2);
        assert_eq!(fdb.len(), 1);
        let all = FlushFilter {
            include_static: true,
            ..FlushFilter::default()
        };
        assert_eq!(fdb.flush(all), 1);
        assert!(fdb.is_empty());
        assert_eq!(fdb.dynamic_len(PortId(1)), 0);
    }

    #[test]
    fn slots_are_reused() {
        let mut fdb = table(4, 4);
        for round in 0..100u32 {
            fdb.learn(secs(u64::from(round)), vlan(1), mac(round), PortId(1));
        }
        assert_eq!(fdb.len(), 4);
        assert!(fdb.slots.len() <= 5, "slab grew to {}", fdb.slots.len());
    }

    proptest::proptest! {
        /// Whatever the sequence of operations, the bounds hold and every list agrees
        /// with the index.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec((0u8..5, 0u32..40, 0u32..4, 1u16..4, 0u64..30), 1..300)) {
            let mut fdb = table(16, 6);
            let mut now = 0;
            for (op, m, p, v, dt) in ops {
                now += dt;
                let (vlan, mac, port) = (vlan(v), mac(m), PortId(p));
                match op {
                    0 | 1 => { fdb.learn(secs(now), vlan, mac, port); }
                    2 => { let _ = fdb.add_static(vlan, mac, port); }
                    3 => { fdb.remove(vlan, mac); }
                    _ => { fdb.expire(secs(now * 20)); }
                }
                proptest::prop_assert!(fdb.len() <= 16);
                let mut listed = 0;
                for (port, entries) in &fdb.ports {
                    proptest::prop_assert!(entries.dynamic.len <= 6);
                    for list in [entries.dynamic, entries.statics] {
                        let mut n = 0;
                        let mut i = list.head;
                        let mut prev = NIL;
                        while i != NIL {
                            let slot = &fdb.slots[i as usize];
                            proptest::prop_assert_eq!(slot.port, *port);
                            proptest::prop_assert_eq!(slot.prev, prev);
                            proptest::prop_assert_eq!(fdb.index.get(&key(slot.vlan, slot.mac)), Some(&i));
                            prev = i;
                            i = slot.next;
                            n += 1;
                        }
                        proptest::prop_assert_eq!(n, list.len);
                        listed += n;
                    }
                }
                proptest::prop_assert_eq!(listed, fdb.len());
            }
        }
    }
}
