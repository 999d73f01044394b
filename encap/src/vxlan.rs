//! The VXLAN header (RFC 7348 §5) and the VXLAN network identifier.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|               Reserved                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The I flag must be set; every reserved bit is zero on send and ignored on receive.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The IANA port for VXLAN.
pub const IANA_PORT: u16 = 4789;
/// The port the Linux kernel used before IANA assigned one.
pub const LINUX_LEGACY_PORT: u16 = 8472;

const FLAG_I: u8 = 0x08;

/// A 24-bit VXLAN network identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = 0x00ff_ffff;

    pub const fn new(vni: u32) -> Option<Vni> {
        if vni <= Self::MAX {
            Some(Vni(vni))
        } else {
            None
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vni{}", self.0)
    }
}

/// The text is not a VNI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VNI {0:?}: a VNI is a whole number from 0 to 16777215")]
pub struct ParseVniError(pub String);

impl FromStr for Vni {
    type Err = ParseVniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u32>()
            .ok()
            .and_then(Vni::new)
            .ok_or_else(|| ParseVniError(s.to_string()))
    }
}

impl Serialize for Vni {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Vni {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = u32::deserialize(deserializer)?;
        Vni::new(raw).ok_or_else(|| serde::de::Error::custom(ParseVniError(raw.to_string())))
    }
}

/// Why a datagram is not a usable VXLAN packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    #[error("shorter than a VXLAN header ({0} bytes)")]
    Truncated(usize),
    #[error("the VXLAN I flag is not set")]
    NoVniFlag,
}

/// A view of a VXLAN header and the inner frame after it.
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Checks the length and the I flag; reserved bits are ignored (RFC 7348 §5).
    pub fn new_checked(buffer: T) -> Result<Self, VxlanError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(VxlanError::Truncated(bytes.len()));
        }
        if bytes[0] & FLAG_I == 0 {
            return Err(VxlanError::NoVniFlag);
        }
        Ok(VxlanHeader { buffer })
    }

    pub fn vni(&self) -> Vni {
        let b = self.buffer.as_ref();
        Vni(u32::from_be_bytes([0, b[4], b[5], b[6]]))
    }

    /// The encapsulated Ethernet frame.
    pub fn inner(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// Writes a VXLAN header for `vni` into `buf`: the I flag, the VNI, zero reserved bits.
pub fn emit(buf: &mut [u8; HEADER_LEN], vni: Vni) {
    let [_, a, b, c] = vni.0.to_be_bytes();
    *buf = [FLAG_I, 0, 0, 0, a, b, c, 0];
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_literal_header() {
        let packet = [0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0, 0xde, 0xad];
        let header = VxlanHeader::new_checked(&packet[..]).unwrap();
        assert_eq!(header.vni(), Vni::new(42).unwrap());
        assert_eq!(header.inner(), &[0xde, 0xad]);
    }

    #[test]
    fn ignores_reserved_bits_on_receive() {
        let packet = [0xff, 0xff, 0xff, 0xff, 0x12, 0x34, 0x56, 0xff];
        let header = VxlanHeader::new_checked(&packet[..]).unwrap();
        assert_eq!(header.vni().get(), 0x123456);
        assert!(header.inner().is_empty());
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            VxlanHeader::new_checked(&[0x08u8; 7][..]).err(),
            Some(VxlanError::Truncated(7))
        );
        let no_flag = [0x00, 0, 0, 0, 0, 0, 42, 0];
        assert_eq!(
            VxlanHeader::new_checked(&no_flag[..]).err(),
            Some(VxlanError::NoVniFlag)
        );
    }

    #[test]
    fn emits_zero_reserved_bits() {
        let mut buf = [0xffu8; HEADER_LEN];
        emit(&mut buf, Vni::new(0xabcdef).unwrap());
        assert_eq!(buf, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    }

    #[test]
    fn vni_range_and_text() {
        assert!(Vni::new(Vni::MAX).is_some());
        assert!(Vni::new(Vni::MAX + 1).is_none());
        assert_eq!("42".parse::<Vni>().unwrap().get(), 42);
        assert!("16777216".parse::<Vni>().is_err());
        assert!("x".parse::<Vni>().is_err());
        assert!(serde_json::from_str::<Vni>("16777216").is_err());
        assert_eq!(serde_json::to_string(&Vni::new(7).unwrap()).unwrap(), "7");
    }

    proptest! {
        #[test]
        fn round_trips(vni in 0u32..=Vni::MAX, inner in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut header = [0u8; HEADER_LEN];
            emit(&mut header, Vni::new(vni).unwrap());
            let packet = [&header[..], &inner].concat();
            let view = VxlanHeader::new_checked(&packet[..]).unwrap();
            prop_assert_eq!(view.vni().get(), vni);
            prop_assert_eq!(view.inner(), &inner[..]);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(view) = VxlanHeader::new_checked(&bytes[..]) {
                let _ = (view.vni(), view.inner().len());
            }
        }
    }
}
