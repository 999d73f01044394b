//! 802.1Q VLAN identifiers, sets of them, and the tag control information field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A VLAN identifier usable for forwarding: 1..=4094.
///
/// 0 ("priority tagged", no VLAN) and 4095 (reserved) exist on the wire but never name
/// a VLAN, so they cannot be a `VlanId`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VlanId(u16);

impl VlanId {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 4094;
    /// The VLAN of ports nobody configured: 1, as on most switches.
    pub const DEFAULT: VlanId = VlanId(1);

    pub const fn new(id: u16) -> Option<VlanId> {
        if id >= Self::MIN && id <= Self::MAX {
            Some(VlanId(id))
        } else {
            None
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vlan{}", self.0)
    }
}

/// The text is not a VLAN id, or the number is outside 1..=4094.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VLAN id {0:?}: VLAN ids are whole numbers from 1 to 4094")]
pub struct ParseVlanError(pub String);

impl FromStr for VlanId {
    type Err = ParseVlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u16>()
            .ok()
            .and_then(VlanId::new)
            .ok_or_else(|| ParseVlanError(s.to_string()))
    }
}

impl TryFrom<u16> for VlanId {
    type Error = ParseVlanError;

    fn try_from(id: u16) -> Result<Self, Self::Error> {
        VlanId::new(id).ok_or_else(|| ParseVlanError(id.to_string()))
    }
}

impl Serialize for VlanId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for VlanId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = u16::deserialize(deserializer)?;
        VlanId::try_from(id).map_err(serde::de::Error::custom)
    }
}

/// A set of VLAN ids, as a 4096-bit bitmap: constant-time membership for the data path.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VlanSet {
    bits: Box<[u64; 64]>,
}

impl Default for VlanSet {
    fn default() -> Self {
        VlanSet {
            bits: Box::new([0; 64]),
        }
    }
}

impl VlanSet {
    pub fn new() -> VlanSet {
        VlanSet::default()
    }

    pub fn insert(&mut self, vlan: VlanId) {
        let id = usize::from(vlan.get());
        self.bits[id / 64] |= 1 << (id % 64);
    }

    pub fn contains(&self, vlan: VlanId) -> bool {
        let id = usize::from(vlan.get());
        self.bits[id / 64] & (1 << (id % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|word| *word == 0)
    }

    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// Members in ascending order. Walks the set bits only: a port's VLANs are listed
    /// every time the topology is rebuilt.
    pub fn iter(&self) -> impl Iterator<Item = VlanId> + '_ {
        self.bits.iter().enumerate().flat_map(|(at, &word)| {
            let mut left = word;
            std::iter::from_fn(move || {
                let bit = left.trailing_zeros();
                (bit < 64).then(|| {
                    left &= left - 1;
                    at * 64 + bit as usize
                })
            })
            .filter_map(|id| VlanId::new(u16::try_from(id).ok()?))
        })
    }
}

impl FromIterator<VlanId> for VlanSet {
    fn from_iter<I: IntoIterator<Item = VlanId>>(iter: I) -> Self {
        let mut set = VlanSet::new();
        for vlan in iter {
            set.insert(vlan);
        }
        set
    }
}

impl fmt::Display for VlanSet {
    /// Compact ranges: `10,20,30-39`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut members = self.iter().map(VlanId::get).peekable();
        while let Some(start) = members.next() {
            let mut end = start;
            while members.peek() == Some(&(end + 1)) {
                end = members.next().unwrap_or(end);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VlanSet({self})")
    }
}

/// A VLAN list such as `10,20,30-39` is malformed or names an id outside 1..=4094.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid VLAN list {0:?}: expected ids from 1 to 4094 separated by commas, ranges as 30-39"
)]
pub struct ParseVlanSetError(pub String);

impl FromStr for VlanSet {
    type Err = ParseVlanSetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVlanSetError(s.to_string());
        let mut set = VlanSet::new();
        for item in s.split(',') {
            let (start, end) = match item.split_once('-') {
                Some((a, b)) => (a, b),
                None => (item, item),
            };
            let start: VlanId = start.parse().map_err(|_| err())?;
            let end: VlanId = end.parse().map_err(|_| err())?;
            if start > end {
                return Err(err());
            }
            for id in start.get()..=end.get() {
                set.insert(VlanId(id));
            }
        }
        Ok(set)
    }
}

impl Serialize for VlanSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for VlanSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<VlanId>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// The 16-bit tag control information of an 802.1Q tag: priority, drop eligibility and
/// the raw 12-bit VLAN id (which may be 0 or 4095, so it is not a [`VlanId`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tci(pub u16);

impl Tci {
    pub fn new(priority: u8, drop_eligible: bool, vid: u16) -> Tci {
        Tci((u16::from(priority & 0x7) << 13) | (u16::from(drop_eligible) << 12) | (vid & 0x0fff))
    }

    pub fn priority(self) -> u8 {
        (self.0 >> 13) as u8
    }

    pub fn drop_eligible(self) -> bool {
        self.0 & 0x1000 != 0
    }

    /// The raw 12-bit VLAN id field.
    pub fn vid(self) -> u16 {
        self.0 & 0x0fff
    }

    /// The VLAN the tag names, if it names one (not 0, not 4095).
    pub fn vlan(self) -> Option<VlanId> {
        VlanId::new(self.vid())
    }

    pub fn with_vlan(self, vlan: VlanId) -> Tci {
        Tci((self.0 & 0xf000) | vlan.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_id_range() {
        assert_eq!(VlanId::new(0), None);
        assert_eq!(VlanId::new(4095), None);
        assert_eq!(VlanId::new(1).map(VlanId::get), Some(1));
        assert_eq!(VlanId::new(4094).map(VlanId::get), Some(4094));
        assert!("4095".parse::<VlanId>().is_err());
        assert!("ten".parse::<VlanId>().is_err());
        assert_eq!("10".parse::<VlanId>().unwrap().get(), 10);
        assert!(serde_json::from_str::<VlanId>("0").is_err());
    }

    #[test]
    fn vlan_set_parses_lists_and_ranges() {
        let set: VlanSet = "10,20,30-33".parse().unwrap();
        let ids: Vec<u16> = set.iter().map(VlanId::get).collect();
        assert_eq!(ids, vec![10, 20, 30, 31, 32, 33]);
        assert_eq!(set.len(), 6);
        assert_eq!(set.to_string(), "10,20,30-33");
        for bad in ["", "10,", "0", "4095", "20-10", "1-2-3", "a"] {
            assert!(bad.parse::<VlanSet>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn vlan_set_iterates_every_member_in_order() {
        let all: VlanSet = "1-4094".parse().unwrap();
        let ids: Vec<u16> = all.iter().map(VlanId::get).collect();
        assert_eq!(ids, (1..=4094).collect::<Vec<u16>>());
        let some: VlanSet = "1,63-65,127,128,4000-4094".parse().unwrap();
        let naive: Vec<VlanId> = (1..=4094)
            .filter_map(VlanId::new)
            .filter(|v| some.contains(*v))
            .collect();
        assert_eq!(some.iter().collect::<Vec<_>>(), naive);
        assert_eq!(VlanSet::new().iter().count(), 0);
    }

    #[test]
    fn vlan_set_edges() {
        let set: VlanSet = "1,4094".parse().unwrap();
        assert!(set.contains(VlanId::new(1).unwrap()));
        assert!(set.contains(VlanId::new(4094).unwrap()));
        assert!(!set.contains(VlanId::new(2).unwrap()));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, "[1,4094]");
        assert_eq!(serde_json::from_str::<VlanSet>(&json).unwrap(), set);
    }

    #[test]
    fn tci_fields() {
        let tci = Tci::new(5, true, 100);
        assert_eq!(tci.priority(), 5);
        assert!(tci.drop_eligible());
        assert_eq!(tci.vid(), 100);
        let moved = tci.with_vlan(VlanId::new(200).unwrap());
        assert_eq!(
            (moved.priority(), moved.drop_eligible(), moved.vid()),
            (5, true, 200)
        );
        assert_eq!(Tci(0x0fff).vlan(), None);
        assert_eq!(Tci(0x0000).vlan(), None);
    }
}
