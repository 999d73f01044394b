//! The 48-bit IEEE 802 MAC address.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads an address from the first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        bytes.get(..6).map(|b| {
            let mut octets = [0; 6];
            octets.copy_from_slice(b);
            MacAddr(octets)
        })
    }

    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Group bit set: multicast, which includes broadcast.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// An address a station may use as its source: not multicast, not all-zero.
    pub fn is_valid_source(self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }

    /// `01:80:C2:00:00:00`–`0F`: the IEEE 802.1D reserved group addresses (STP, LACP,
    /// LLDP, pause, 802.1X). A bridge must not forward these.
    pub fn is_link_local_reserved(self) -> bool {
        let [a, b, c, d, e, f] = self.0;
        [a, b, c, d, e] == [0x01, 0x80, 0xc2, 0x00, 0x00] && f <= 0x0f
    }

    /// The locally-administered unicast address `02:42:a.b.c.d` that Docker derives
    /// from a container's IPv4 address: stable for a given address, unique per subnet.
    pub fn from_ipv4(addr: std::net::Ipv4Addr) -> MacAddr {
        let [a, b, c, d] = addr.octets();
        MacAddr([0x02, 0x42, a, b, c, d])
    }

    /// The address as the low 48 bits of a `u64`, for compact hashing.
    pub fn to_u64(self) -> u64 {
        let [a, b, c, d, e, f] = self.0;
        u64::from_be_bytes([0, 0, a, b, c, d, e, f])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text is not six hex octets separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets such as 02:42:0a:00:00:01")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let separator = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(separator);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(octets))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:42:0A:00:00:01".parse().unwrap();
        assert_eq!(mac.octets(), [0x02, 0x42, 0x0a, 0, 0, 1]);
        assert_eq!(mac.to_string(), "02:42:0a:00:00:01");
        assert_eq!("02-42-0a-00-00-01".parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "02:42:0a:00:00",
            "02:42:0a:00:00:01:02",
            "02:42:0a:00:00:1g",
            "002:42:0a:00:00:01",
            "02::0a:00:00:01",
            "02:42-0a:00:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn classifies_addresses() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::BROADCAST.is_valid_source());
        assert!(!MacAddr::ZERO.is_valid_source());
        let stp = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]);
        assert!(stp.is_link_local_reserved());
        let lldp = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]);
        assert!(lldp.is_link_local_reserved());
        let not_reserved = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x10]);
        assert!(!not_reserved.is_link_local_reserved());
        let ipv6_mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert!(ipv6_mcast.is_multicast() && !ipv6_mcast.is_link_local_reserved());
    }

    #[test]
    fn derives_docker_style_address() {
        let mac = MacAddr::from_ipv4("10.0.0.2".parse().unwrap());
        assert_eq!(mac.to_string(), "02:42:0a:00:00:02");
        assert!(mac.is_valid_source());
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn serde_uses_text() {
        let mac = MacAddr([0x02, 0x42, 0, 0, 0, 9]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:42:00:00:00:09\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
