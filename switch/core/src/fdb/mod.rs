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
//!   They are also kept in an index of their own, so [`MacTable::statics`] lists them
//!   without walking the table.
//! * **Aging.** A dynamic entry not refreshed for `aging` is gone: [`MacTable::lookup`]
//!   stops returning it at once, and [`MacTable::expire`] reclaims it. Times are kept in
//!   whole seconds and refreshes are recorded at most once per second, so an entry can
//!   age out up to a second early.
//! * **Bounds.** At most `max_entries` entries in all (statics included) and at most
//!   `max_per_port` dynamic entries per port. Learning on a port at its cap evicts that
//!   port's least recently seen entry. Learning when the table is full evicts the least
//!   recently seen entry of the port holding the most dynamic entries (ties: the lowest
//!   port id), so a port flooding random source MACs recycles its own entries instead of
//!   pushing everyone else out. If nothing can be evicted (the table holds only statics),
//!   the address is not learned and `refused` counts it.
//! * **Flapping.** A MAC that moves between ports more than `flap_moves` times within
//!   one second is flapping (a loop, or two hosts claiming one address): it stays on the
//!   port it was on, learning it on another port is held back for `flap_hold`
//!   (`Learned::Held`, counted as `flap_held`), and one [`Flap`] is recorded for the log
//!   ([`MacTable::take_flaps`], at most [`MAX_PENDING_FLAPS`] waiting).
//! * **Counters.** learned, moved, aged, evicted, refused, flapped and flap_held only
//!   ever increase.
//! * **Threads.** The table is shared by every forwarding thread (`&self` throughout).
//!   - *Lookups* ([`MacTable::lookup`]) never lock: they read a lock-free index
//!     (`index.rs`, with its own contract: a lookup racing a change sees the old or the
//!     new mapping, and may briefly miss an entry that is being moved; the frame is then
//!     flooded).
//!   - *Learning* takes the table's mutex only when it has something to change: a new
//!     address, a move, or a refresh, which happens at most once a second per entry. A
//!     source seen again within the same second costs one lock-free lookup.
//!   - The mutex protects the slab, the per-port LRU lists, the size and statics
//!     indexes and the counters, and serializes every write to the index.
//! * **Cost.** Lookup is one hash and a few atomic loads. Learn, refresh and move are
//!   O(log ports) under the mutex (list relinks, and the per-port size index that
//!   eviction uses). Eviction when full is O(log ports). Expiry is O(ports + expired).
//!   Memory is fixed by `max_entries`: about 32 bytes of index and 32 of slab per entry.
//!
//! Entries live in a slab; each port keeps its dynamic entries on an intrusive list in
//! least-recently-seen order, which makes eviction and expiry cheap.

mod index;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::port::PortId;
use crate::time::Time;
use crate::wire::{MacAddr, VlanId};
use index::{key, Index, Value};

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
    /// Moves within one second above which a MAC is flapping.
    pub flap_moves: u32,
    /// How long learning a flapping MAC on another port is held back.
    #[serde(with = "secs")]
    pub flap_hold: Duration,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            aging: Duration::from_secs(300),
            max_entries: 128 * 1024,
            max_per_port: 64 * 1024,
            flap_moves: 5,
            flap_hold: Duration::from_secs(10),
        }
    }
}

/// Flap events waiting for [`MacTable::take_flaps`] at most; more are counted only.
pub const MAX_PENDING_FLAPS: usize = 64;

/// A MAC found flapping between two ports (see the contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flap {
    pub vlan: VlanId,
    pub mac: MacAddr,
    /// Where the entry stays.
    pub port: PortId,
    /// Where it kept moving to; learning there is held back.
    pub newcomer: PortId,
}

impl FdbConfig {
    /// The largest `max_entries` accepted: the table's memory is allocated up front.
    pub const MAX_ENTRIES: usize = 16 << 20;

    /// Refuses limits the table cannot honour.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_entries > Self::MAX_ENTRIES {
            return Err(format!(
                "an FDB of {} entries is more than the {} switchd allows (its memory is reserved at start); lower max_entries",
                self.max_entries,
                Self::MAX_ENTRIES
            ));
        }
        if self.aging.as_secs() > u64::from(u32::MAX) {
            return Err("the FDB aging time is too long; give at most 4294967295 seconds".into());
        }
        Ok(())
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

/// What [`MacTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry existed on this port; its age was reset (or had been, this second).
    Refreshed,
    /// The entry pointed at another port and now points here.
    Moved { from: PortId },
    /// A static entry holds this address; it was left alone.
    Static,
    /// Not learned: multicast or zero source, a port that is gone, or a table full of
    /// static entries.
    Refused,
    /// The address is flapping: it stays where it was, and learning it here is held
    /// back for a while.
    Held,
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
    /// Addresses found flapping.
    #[serde(default)]
    pub flapped: u64,
    /// Learns held back because the address was flapping.
    #[serde(default)]
    pub flap_held: u64,
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

struct Slot {
    vlan: VlanId,
    mac: MacAddr,
    port: PortId,
    /// Whole seconds.
    last_seen: u32,
    is_static: bool,
    /// Moves within the second `moved_in` (flap detection).
    moves: u32,
    moved_in: u32,
    /// Learning elsewhere is held back until this second.
    held_until: u32,
    prev: u32,
    next: u32,
}

impl Slot {
    fn new(vlan: VlanId, mac: MacAddr, port: PortId, last_seen: u32, is_static: bool) -> Slot {
        Slot {
            vlan,
            mac,
            port,
            last_seen,
            is_static,
            moves: 0,
            moved_in: 0,
            held_until: 0,
            prev: NIL,
            next: NIL,
        }
    }
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

/// What the mutex protects.
#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    ports: HashMap<PortId, PortEntries>,
    /// Ports with dynamic entries, by how many (for eviction when full).
    by_size: BTreeSet<(usize, Reverse<PortId>)>,
    /// The static entries, by (VLAN, MAC).
    statics: BTreeMap<(VlanId, MacAddr), PortId>,
    counters: FdbCounters,
    flaps: Vec<Flap>,
}

/// The MAC learning table. See the module documentation for its contract.
pub struct MacTable {
    config: FdbConfig,
    index: Index,
    state: Mutex<State>,
    /// Told when a flap is recorded (switchd wakes its control thread to log it).
    on_flap: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

fn secs_of(now: Time) -> u32 {
    u32::try_from(now.as_millis() / 1000).unwrap_or(u32::MAX >> 1) & 0x7fff_ffff
}

impl MacTable {
    pub fn new(config: FdbConfig) -> MacTable {
        MacTable {
            index: Index::new(config.max_entries),
            config,
            state: Mutex::new(State::default()),
            on_flap: std::sync::OnceLock::new(),
        }
    }

    /// Calls `notify` whenever a flap is recorded (once; later calls are ignored).
    pub fn set_flap_notifier(&self, notify: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_flap.set(Box::new(notify));
    }

    /// The flaps recorded since the last call, oldest first.
    pub fn take_flaps(&self) -> Vec<Flap> {
        std::mem::take(&mut self.state().state.flaps)
    }

    pub fn config(&self) -> &FdbConfig {
        &self.config
    }

    /// The writer's side. A thread that panicked while holding it left every structure
    /// consistent between operations, so poison is ignored.
    fn state(&self) -> Writer<'_> {
        Writer {
            config: &self.config,
            index: &self.index,
            state: self.state.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    pub fn counters(&self) -> FdbCounters {
        self.state().state.counters
    }

    /// Entries in the table, including expired ones not yet reclaimed by `expire`.
    pub fn len(&self) -> usize {
        self.state().state.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Learned entries on `port`.
    pub fn dynamic_len(&self, port: PortId) -> usize {
        self.state().dynamic_len(port)
    }

    fn is_expired(&self, last_seen: u32, is_static: bool, now: Time) -> bool {
        !is_static
            && now.as_millis().saturating_sub(u64::from(last_seen) * 1000)
                >= self.config.aging.as_millis() as u64
    }

    /// The port `mac` was last seen on in `vlan`, unless the entry has aged out. Never
    /// locks.
    #[inline]
    pub fn lookup(&self, now: Time, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        let value = self.index.get(key(vlan, mac))?;
        (!self.is_expired(value.last_seen_secs, value.is_static, now)).then_some(value.port)
    }

    /// Records that a frame from `mac` arrived on `port` in `vlan`.
    #[inline]
    pub fn learn(&self, now: Time, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        self.learn_checked(now, vlan, mac, port, || true)
    }

    /// [`MacTable::learn`], where a change is made only if `still_valid` (asked under
    /// the table's mutex) says the port still carries the VLAN: the switch passes a
    /// check against its current ports, so that a thread deciding on an older view
    /// never leaves an entry behind a port that was just removed or reconfigured (the
    /// removal flushes the port under the same mutex, after publishing the change).
    #[inline]
    pub fn learn_checked(
        &self,
        now: Time,
        vlan: VlanId,
        mac: MacAddr,
        port: PortId,
        still_valid: impl FnOnce() -> bool,
    ) -> Learned {
        if !mac.is_valid_source() {
            return Learned::Refused;
        }
        // The common case, lock-free: the same source again, on the same port, this second.
        if let Some(value) = self.index.get(key(vlan, mac)) {
            if value.is_static {
                return Learned::Static;
            }
            if value.port == port && value.last_seen_secs == secs_of(now) {
                return Learned::Refreshed;
            }
        }
        let mut writer = self.state();
        if !still_valid() {
            return Learned::Refused;
        }
        let flapped = writer.state.counters.flapped;
        let learned = writer.learn(now, vlan, mac, port);
        let new_flap = writer.state.counters.flapped != flapped;
        drop(writer);
        if let (true, Some(notify)) = (new_flap, self.on_flap.get()) {
            notify();
        }
        learned
    }

    /// Adds or replaces a static entry for (`vlan`, `mac`).
    pub fn add_static(&self, vlan: VlanId, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        self.state().add_static(vlan, mac, port)
    }

    /// Removes the entry for (`vlan`, `mac`), static or not. Returns the port it pointed at.
    pub fn remove(&self, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        self.state().remove(vlan, mac)
    }

    /// Removes every entry matching `filter`; returns how many.
    pub fn flush(&self, filter: FlushFilter) -> usize {
        self.state().flush(filter)
    }

    /// Reclaims every dynamic entry idle for `aging` or longer; returns how many.
    pub fn expire(&self, now: Time) -> usize {
        self.state().expire(now)
    }

    /// When the next dynamic entry will age out, if there is one.
    pub fn next_expiry(&self) -> Option<Time> {
        let writer = self.state();
        writer
            .state
            .ports
            .values()
            .filter(|entries| entries.dynamic.head != NIL)
            .map(|entries| {
                let slot = &writer.state.slots[entries.dynamic.head as usize];
                Time::from_secs(u64::from(slot.last_seen)) + self.config.aging
            })
            .min()
    }

    /// The live entry for (`vlan`, `mac`), if there is one.
    pub fn get(&self, now: Time, vlan: VlanId, mac: MacAddr) -> Option<FdbEntry> {
        let value = self.index.get(key(vlan, mac))?;
        (!self.is_expired(value.last_seen_secs, value.is_static, now))
            .then(|| entry_of(vlan, mac, value, now))
    }

    /// All live entries, in no particular order.
    pub fn entries(&self, now: Time) -> Vec<FdbEntry> {
        let writer = self.state();
        writer
            .state
            .ports
            .values()
            .flat_map(|entries| [entries.dynamic, entries.statics])
            .flat_map(|list| writer.walk(list))
            .map(|slot| {
                let slot = &writer.state.slots[slot as usize];
                (
                    slot.vlan,
                    slot.mac,
                    slot.port,
                    slot.last_seen,
                    slot.is_static,
                )
            })
            .filter(|(_, _, _, last_seen, is_static)| !self.is_expired(*last_seen, *is_static, now))
            .map(|(vlan, mac, port, last_seen_secs, is_static)| {
                let value = Value {
                    port,
                    last_seen_secs,
                    is_static,
                };
                entry_of(vlan, mac, value, now)
            })
            .collect()
    }

    /// The static entries, sorted by (VLAN, MAC), from their own index.
    pub fn statics(&self) -> Vec<(VlanId, MacAddr, PortId)> {
        self.state()
            .state
            .statics
            .iter()
            .map(|((vlan, mac), port)| (*vlan, *mac, *port))
            .collect()
    }
}

fn entry_of(vlan: VlanId, mac: MacAddr, value: Value, now: Time) -> FdbEntry {
    FdbEntry {
        vlan,
        mac,
        port: value.port,
        is_static: value.is_static,
        age_secs: if value.is_static {
            0
        } else {
            (now.as_millis() / 1000).saturating_sub(u64::from(value.last_seen_secs))
        },
    }
}

/// The table with its mutex held: every change goes through here.
struct Writer<'a> {
    config: &'a FdbConfig,
    index: &'a Index,
    state: MutexGuard<'a, State>,
}

impl Writer<'_> {
    fn dynamic_len(&self, port: PortId) -> usize {
        self.state.ports.get(&port).map_or(0, |p| p.dynamic.len)
    }

    fn is_expired(&self, slot: &Slot, now: Time) -> bool {
        !slot.is_static
            && now
                .as_millis()
                .saturating_sub(u64::from(slot.last_seen) * 1000)
                >= self.config.aging.as_millis() as u64
    }

    fn value_of(slot: &Slot) -> Value {
        Value {
            port: slot.port,
            last_seen_secs: slot.last_seen,
            is_static: slot.is_static,
        }
    }

    fn learn(&mut self, now: Time, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        let Some((at, index)) = self.index.find(key(vlan, mac)) else {
            return self.learn_new(now, vlan, mac, port);
        };
        let slot = &self.state.slots[index as usize];
        if slot.is_static {
            return Learned::Static;
        }
        if self.is_expired(slot, now) {
            // Aged out but not yet reclaimed: as good as absent.
            self.remove(vlan, mac);
            self.state.counters.aged += 1;
            return self.learn_new(now, vlan, mac, port);
        }
        let seen = secs_of(now);
        if slot.port == port {
            if slot.last_seen != seen {
                self.unlink(index);
                self.state.slots[index as usize].last_seen = seen;
                self.link(index);
                self.index
                    .set_value(at, Self::value_of(&self.state.slots[index as usize]));
            }
            return Learned::Refreshed;
        }
        let from = slot.port;
        if slot.held_until > seen {
            self.state.counters.flap_held += 1;
            return Learned::Held;
        }
        let slot = &mut self.state.slots[index as usize];
        if slot.moved_in == seen {
            slot.moves += 1;
        } else {
            slot.moved_in = seen;
            slot.moves = 1;
        }
        if slot.moves > self.config.flap_moves {
            let hold = u32::try_from(self.config.flap_hold.as_secs()).unwrap_or(u32::MAX);
            slot.held_until = seen.saturating_add(hold.max(1));
            slot.moves = 0;
            self.state.counters.flapped += 1;
            self.state.counters.flap_held += 1;
            if self.state.flaps.len() < MAX_PENDING_FLAPS {
                self.state.flaps.push(Flap {
                    vlan,
                    mac,
                    port: from,
                    newcomer: port,
                });
            }
            return Learned::Held;
        }
        self.unlink(index);
        if self.dynamic_len(port) >= self.config.max_per_port {
            self.evict_oldest_of(port);
        }
        let slot = &mut self.state.slots[index as usize];
        slot.port = port;
        slot.last_seen = seen;
        self.link(index);
        // Eviction may have moved entries in the index: find it again.
        if let Some((at, _)) = self.index.find(key(vlan, mac)) {
            self.index
                .set_value(at, Self::value_of(&self.state.slots[index as usize]));
        }
        self.state.counters.moved += 1;
        Learned::Moved { from }
    }

    fn learn_new(&mut self, now: Time, vlan: VlanId, mac: MacAddr, port: PortId) -> Learned {
        if self.config.max_per_port == 0 || self.config.max_entries == 0 {
            self.state.counters.refused += 1;
            return Learned::Refused;
        }
        if self.dynamic_len(port) >= self.config.max_per_port {
            self.evict_oldest_of(port);
        } else if self.state.len >= self.config.max_entries {
            match self.fullest_port() {
                Some(victim) => self.evict_oldest_of(victim),
                None => {
                    self.state.counters.refused += 1;
                    return Learned::Refused;
                }
            }
        }
        self.alloc(Slot::new(vlan, mac, port, secs_of(now), false));
        self.state.counters.learned += 1;
        Learned::New
    }

    fn add_static(&mut self, vlan: VlanId, mac: MacAddr, port: PortId) -> Result<(), FdbError> {
        if !mac.is_valid_source() {
            return Err(FdbError::NotUnicast(mac));
        }
        if let Some((at, index)) = self.index.find(key(vlan, mac)) {
            self.unlink(index);
            let slot = &mut self.state.slots[index as usize];
            slot.port = port;
            slot.is_static = true;
            slot.last_seen = 0;
            self.link(index);
            self.index
                .set_value(at, Self::value_of(&self.state.slots[index as usize]));
            return Ok(());
        }
        if self.state.len >= self.config.max_entries {
            match self.fullest_port() {
                Some(victim) => self.evict_oldest_of(victim),
                None => return Err(FdbError::Full(self.state.len)),
            }
        }
        self.alloc(Slot::new(vlan, mac, port, 0, true));
        Ok(())
    }

    fn remove(&mut self, vlan: VlanId, mac: MacAddr) -> Option<PortId> {
        let (at, index) = self.index.find(key(vlan, mac))?;
        self.index.remove_at(at);
        let port = self.state.slots[index as usize].port;
        self.unlink(index);
        self.state.free.push(index);
        self.state.len -= 1;
        Some(port)
    }

    /// The slots of `list`, oldest first.
    fn walk(&self, list: List) -> Vec<u32> {
        let mut out = Vec::with_capacity(list.len);
        let mut index = list.head;
        while index != NIL {
            out.push(index);
            index = self.state.slots[index as usize].next;
        }
        out
    }

    fn flush(&mut self, filter: FlushFilter) -> usize {
        let lists: Vec<List> = self
            .state
            .ports
            .iter()
            .filter(|(port, _)| filter.port.is_none_or(|p| **port == p))
            .flat_map(|(_, entries)| {
                std::iter::once(entries.dynamic)
                    .chain(filter.include_static.then_some(entries.statics))
            })
            .collect();
        let doomed: Vec<(VlanId, MacAddr)> = lists
            .into_iter()
            .flat_map(|list| self.walk(list))
            .map(|i| &self.state.slots[i as usize])
            .filter(|s| filter.vlan.is_none_or(|v| s.vlan == v))
            .map(|s| (s.vlan, s.mac))
            .collect();
        for (vlan, mac) in &doomed {
            self.remove(*vlan, *mac);
        }
        doomed.len()
    }

    fn expire(&mut self, now: Time) -> usize {
        let mut expired = Vec::new();
        for entries in self.state.ports.values() {
            let mut index = entries.dynamic.head;
            while index != NIL {
                let slot = &self.state.slots[index as usize];
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
        self.state.counters.aged += expired.len() as u64;
        expired.len()
    }

    /// The port with the most dynamic entries (lowest id on ties), if any has one.
    fn fullest_port(&self) -> Option<PortId> {
        self.state.by_size.last().map(|(_, Reverse(port))| *port)
    }

    fn evict_oldest_of(&mut self, port: PortId) {
        let Some(head) = self.state.ports.get(&port).map(|p| p.dynamic.head) else {
            return;
        };
        if head == NIL {
            return;
        }
        let slot = &self.state.slots[head as usize];
        let (vlan, mac) = (slot.vlan, slot.mac);
        self.remove(vlan, mac);
        self.state.counters.evicted += 1;
    }

    fn alloc(&mut self, slot: Slot) {
        let k = key(slot.vlan, slot.mac);
        let value = Self::value_of(&slot);
        let index = match self.state.free.pop() {
            Some(index) => {
                self.state.slots[index as usize] = slot;
                index
            }
            None => {
                self.state.slots.push(slot);
                u32::try_from(self.state.slots.len() - 1).expect("FDB slab exceeds u32 slots")
            }
        };
        self.link(index);
        self.index.insert(k, value, index);
        self.state.len += 1;
    }

    /// Appends the slot at the tail (most recently seen end) of its port's list, and
    /// keeps the size and statics indexes in step.
    fn link(&mut self, index: u32) {
        let state = &mut *self.state;
        let slot = &state.slots[index as usize];
        let (port, is_static, vlan, mac) = (slot.port, slot.is_static, slot.vlan, slot.mac);
        let entries = state.ports.entry(port).or_default();
        let list = if is_static {
            state.statics.insert((vlan, mac), port);
            &mut entries.statics
        } else {
            let len = entries.dynamic.len;
            state.by_size.remove(&(len, Reverse(port)));
            state.by_size.insert((len + 1, Reverse(port)));
            &mut entries.dynamic
        };
        let old_tail = list.tail;
        list.tail = index;
        if old_tail == NIL {
            list.head = index;
        }
        list.len += 1;
        if old_tail != NIL {
            state.slots[old_tail as usize].next = index;
        }
        let slot = &mut state.slots[index as usize];
        slot.prev = old_tail;
        slot.next = NIL;
    }

    fn unlink(&mut self, index: u32) {
        let state = &mut *self.state;
        let slot = &state.slots[index as usize];
        let (prev, next, port, is_static, vlan, mac) = (
            slot.prev,
            slot.next,
            slot.port,
            slot.is_static,
            slot.vlan,
            slot.mac,
        );
        if prev != NIL {
            state.slots[prev as usize].next = next;
        }
        if next != NIL {
            state.slots[next as usize].prev = prev;
        }
        let Some(entries) = state.ports.get_mut(&port) else {
            return;
        };
        let list = if is_static {
            state.statics.remove(&(vlan, mac));
            &mut entries.statics
        } else {
            let len = entries.dynamic.len;
            state.by_size.remove(&(len, Reverse(port)));
            if len > 1 {
                state.by_size.insert((len - 1, Reverse(port)));
            }
            &mut entries.dynamic
        };
        if list.head == index {
            list.head = next;
        }
        if list.tail == index {
            list.tail = prev;
        }
        list.len -= 1;
        if entries.dynamic.len == 0 && entries.statics.len == 0 {
            state.ports.remove(&port);
        }
        let slot = &mut state.slots[index as usize];
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
            ..FdbConfig::default()
        })
    }

    #[test]
    fn learns_and_looks_up_per_vlan() {
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let only = fdb.entries(secs(10_000));
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
        let fdb = table(100, 3);
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
        let fdb = table(6, 100);
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
        let fdb = table(100, 2);
        fdb.learn(secs(0), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(1), vlan(1), mac(2), PortId(1));
        fdb.learn(secs(5), vlan(1), mac(1), PortId(1));
        fdb.learn(secs(6), vlan(1), mac(3), PortId(1));
        assert_eq!(fdb.lookup(secs(6), vlan(1), mac(1)), Some(PortId(1)));
        assert_eq!(fdb.lookup(secs(6), vlan(1), mac(2)), None);
    }

    #[test]
    fn a_table_of_statics_refuses_to_learn() {
        let fdb = table(2, 10);
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
        let fdb = MacTable::new(FdbConfig::default());
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
        let fdb = table(4, 4);
        for round in 0..100u32 {
            fdb.learn(secs(u64::from(round)), vlan(1), mac(round), PortId(1));
        }
        assert_eq!(fdb.len(), 4);
        let slots = fdb.state.lock().unwrap().slots.len();
        assert!(slots <= 5, "slab grew to {slots}");
    }

    #[test]
    fn a_flapping_mac_stays_put_and_is_reported_once() {
        let fdb = MacTable::new(FdbConfig::default());
        let notified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = notified.clone();
        fdb.set_flap_notifier(move || {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        fdb.learn(secs(10), vlan(1), mac(1), PortId(1));
        // Five moves within one second are allowed; the sixth is a flap.
        let mut last = Learned::New;
        for i in 0..6 {
            let port = PortId(if i % 2 == 0 { 2 } else { 1 });
            last = fdb.learn(Time::from_millis(11_000 + i * 10), vlan(1), mac(1), port);
        }
        assert_eq!(last, Learned::Held);
        let stays = fdb.lookup(secs(11), vlan(1), mac(1)).unwrap();
        let flaps = fdb.take_flaps();
        assert_eq!(flaps.len(), 1);
        assert_eq!(flaps[0].port, stays);
        assert_ne!(flaps[0].newcomer, stays);
        assert_eq!(notified.load(std::sync::atomic::Ordering::Relaxed), 1);
        // While held, learning elsewhere changes nothing and reports no new flap.
        let other = flaps[0].newcomer;
        assert_eq!(fdb.learn(secs(15), vlan(1), mac(1), other), Learned::Held);
        assert_eq!(fdb.lookup(secs(15), vlan(1), mac(1)), Some(stays));
        assert!(fdb.take_flaps().is_empty());
        assert_eq!(fdb.counters().flapped, 1);
        assert!(fdb.counters().flap_held >= 2);
        // After the hold (10 s) the address may move again.
        assert_eq!(
            fdb.learn(secs(22), vlan(1), mac(1), other),
            Learned::Moved { from: stays }
        );
    }

    #[test]
    fn moves_spread_over_seconds_are_no_flap() {
        let fdb = MacTable::new(FdbConfig::default());
        for t in 0..40u64 {
            let port = PortId(1 + (t % 2) as u32);
            assert_ne!(fdb.learn(secs(t), vlan(1), mac(1), port), Learned::Held);
        }
        assert_eq!(fdb.counters().flapped, 0);
    }

    #[test]
    fn statics_are_listed_from_their_own_index_in_order() {
        let fdb = MacTable::new(FdbConfig::default());
        fdb.add_static(vlan(2), mac(1), PortId(3)).unwrap();
        fdb.add_static(vlan(1), mac(9), PortId(4)).unwrap();
        fdb.learn(secs(0), vlan(1), mac(5), PortId(4));
        assert_eq!(
            fdb.statics(),
            vec![(vlan(1), mac(9), PortId(4)), (vlan(2), mac(1), PortId(3))]
        );
        fdb.remove(vlan(2), mac(1));
        fdb.learn(secs(1), vlan(1), mac(9), PortId(1));
        assert_eq!(fdb.statics(), vec![(vlan(1), mac(9), PortId(4))]);
        fdb.flush(FlushFilter {
            include_static: true,
            ..FlushFilter::default()
        });
        assert!(fdb.statics().is_empty());
    }

    #[test]
    fn a_source_seen_again_within_the_second_takes_no_lock() {
        let fdb = MacTable::new(FdbConfig::default());
        fdb.learn(Time::from_millis(1_000), vlan(1), mac(1), PortId(1));
        // Hold the writer's mutex: a same-second refresh must still answer.
        let held = fdb.state.lock().unwrap();
        assert_eq!(
            fdb.learn(Time::from_millis(1_900), vlan(1), mac(1), PortId(1)),
            Learned::Refreshed
        );
        assert_eq!(
            fdb.lookup(Time::from_millis(1_900), vlan(1), mac(1)),
            Some(PortId(1))
        );
        drop(held);
        assert_eq!(
            fdb.learn(Time::from_millis(2_000), vlan(1), mac(1), PortId(1)),
            Learned::Refreshed
        );
    }

    #[test]
    fn a_learn_that_is_no_longer_valid_changes_nothing() {
        let fdb = MacTable::new(FdbConfig::default());
        assert_eq!(
            fdb.learn_checked(secs(0), vlan(1), mac(1), PortId(1), || false),
            Learned::Refused
        );
        assert!(fdb.is_empty());
    }

    #[test]
    fn threads_learn_and_look_up_at_once() {
        let fdb = std::sync::Arc::new(table(4096, 1024));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let fdb = fdb.clone();
                std::thread::spawn(move || {
                    for round in 0..2_000u32 {
                        let n = t * 1000 + round % 500;
                        fdb.learn(secs(u64::from(round / 100)), vlan(1), mac(n), PortId(t));
                        assert_eq!(
                            fdb.lookup(secs(u64::from(round / 100)), vlan(1), mac(n)),
                            Some(PortId(t))
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(fdb.len(), 2000);
        for t in 0..4 {
            assert_eq!(fdb.dynamic_len(PortId(t)), 500);
        }
    }

    proptest::proptest! {
        /// Whatever the sequence of operations, the bounds hold and every list agrees
        /// with the index.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec((0u8..5, 0u32..40, 0u32..4, 1u16..4, 0u64..30), 1..300)) {
            let fdb = table(16, 6);
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
                let state = fdb.state.lock().unwrap();
                let mut listed = 0;
                for (port, entries) in &state.ports {
                    proptest::prop_assert!(entries.dynamic.len <= 6);
                    if entries.dynamic.len > 0 {
                        proptest::prop_assert!(state.by_size.contains(&(entries.dynamic.len, Reverse(*port))));
                    }
                    for list in [entries.dynamic, entries.statics] {
                        let mut n = 0;
                        let mut i = list.head;
                        let mut prev = NIL;
                        while i != NIL {
                            let slot = &state.slots[i as usize];
                            proptest::prop_assert_eq!(slot.port, *port);
                            proptest::prop_assert_eq!(slot.prev, prev);
                            proptest::prop_assert_eq!(fdb.index.find(key(slot.vlan, slot.mac)).map(|(_, s)| s), Some(i));
                            if slot.is_static {
                                proptest::prop_assert_eq!(state.statics.get(&(slot.vlan, slot.mac)), Some(port));
                            }
                            prev = i;
                            i = slot.next;
                            n += 1;
                        }
                        proptest::prop_assert_eq!(n, list.len);
                        listed += n;
                    }
                }
                proptest::prop_assert_eq!(state.by_size.len(), state.ports.values().filter(|e| e.dynamic.len > 0).count());
                proptest::prop_assert_eq!(state.statics.len(), state.ports.values().map(|e| e.statics.len).sum::<usize>());
                proptest::prop_assert_eq!(fdb.index.occupied().count(), listed);
                drop(state);
                proptest::prop_assert_eq!(listed, fdb.len());
            }
        }
    }
}
