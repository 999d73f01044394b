//! IPv6 fixed headers (RFC 8200). Extension headers are not parsed: the next header is
//! whatever follows the 40 bytes, and callers that handle only TCP or UDP check it.
//!
//! ```text
//!  0        4              12                      31
//! +--------+--------------+------------------------+
//! | version| traffic class|       flow label       |
//! +--------+--------------+---------+--------------+
//! |      payload length   | next hdr|  hop limit   |
//! +-----------------------+---------+--------------+
//! |             source address (16 bytes)          |
//! +------------------------------------------------+
//! |          destination address (16 bytes)        |
//! +------------------------------------------------+
//! ```
//!
//! # Contract
//!
//! [`Ipv6Packet::new_checked`] accepts a buffer of at least 40 bytes with version 6 and
//! a payload length that fits (40 + payload length ≤ buffer length); bytes beyond are
//! padding ([`Ipv6Packet::padding`]), not part of [`Ipv6Packet::packet`]. A payload length
//! of 0 is taken as an empty payload (jumbograms are not supported).
//! [`Ipv6Packet::new_fixed_header`] checks only the 40 bytes, for callers that report
//! failures their own way or read what they can; its getters never panic either.

use std::net::Ipv6Addr;

use super::checksum;
use super::{IpProtocol, WireError};

/// Byte ranges of the header's fields.
pub mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet. See the module documentation for what each constructor checks.
#[derive(Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` after checking version and lengths (module documentation).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_fixed_header(buffer)?;
        packet.check()?;
        Ok(packet)
    }

    /// Wraps `buffer` after checking only that it holds the 40-byte header.
    #[inline]
    pub fn new_fixed_header(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "IPv6 header",
                needed: HEADER_LEN,
                got,
            });
        }
        Ok(Ipv6Packet { buffer })
    }

    /// The checks [`Ipv6Packet::new_checked`] adds: version 6, the payload in the buffer.
    pub fn check(&self) -> Result<(), WireError> {
        if self.version() != 6 {
            return Err(WireError::Malformed {
                layer: "IPv6",
                reason: "version is not 6",
            });
        }
        let (needed, got) = (HEADER_LEN + self.payload_len(), self.bytes().len());
        if needed > got {
            return Err(WireError::Truncated {
                layer: "IPv6 packet",
                needed,
                got,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    fn read_u8(&self, at: usize) -> u8 {
        // Every field is inside the 40 bytes both constructors guarantee.
        self.bytes().get(at).copied().unwrap_or_default()
    }

    #[inline]
    fn read_addr(&self, range: std::ops::Range<usize>) -> [u8; 16] {
        let mut octets = [0; 16];
        if let Some(bytes) = self.bytes().get(range) {
            octets.copy_from_slice(bytes);
        }
        octets
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.read_u8(0) >> 4
    }

    /// The payload-length field: bytes after the 40-byte header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        let b = self.bytes();
        b.get(field::LENGTH)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.read_u8(field::NEXT_HEADER))
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.read_u8(field::HOP_LIMIT)
    }

    /// The source address as bytes, as the pseudo-header wants it.
    #[inline]
    pub fn src_octets(&self) -> [u8; 16] {
        self.read_addr(field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_octets(&self) -> [u8; 16] {
        self.read_addr(field::DST_ADDR)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_octets())
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_octets())
    }

    /// The packet without padding: header and payload.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        let bytes = self.bytes();
        &bytes[..(HEADER_LEN + self.payload_len()).min(bytes.len())]
    }

    /// What follows the 40-byte header, up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.packet().get(HEADER_LEN..).unwrap_or_default()
    }

    /// The bytes after the payload: Ethernet padding.
    #[inline]
    pub fn padding(&self) -> &[u8] {
        let end = HEADER_LEN + self.payload_len();
        self.bytes().get(end..).unwrap_or_default()
    }

    /// The sum of the pseudo-header (RFC 8200 §8.1) for this packet's addresses and next
    /// header and an upper-layer length of `l4_len`.
    #[inline]
    pub fn pseudo_header_sum(&self, l4_len: u32) -> u16 {
        checksum::pseudo_header_v6(
            self.src_octets(),
            self.dst_octets(),
            self.next_header().0,
            l4_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        if let Some(field) = self.buffer.as_mut().get_mut(field::LENGTH) {
            field.copy_from_slice(&len.to_be_bytes());
        }
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::HOP_LIMIT) {
            *byte = hop_limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2001:db8::1 → 2001:db8::2, UDP, hop limit 64, an 8-byte empty UDP datagram.
    const UDP6: [u8; 48] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x08, 0x11, 0x40, // version, length 8, UDP, 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // destination
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP 1234 → 53
    ];

    #[test]
    fn reads_a_literal_header() {
        let ip = Ipv6Packet::new_checked(&UDP6[..]).unwrap();
        assert_eq!((ip.version(), ip.payload_len()), (6, 8));
        assert_eq!((ip.next_header(), ip.hop_limit()), (IpProtocol::UDP, 64));
        assert_eq!(ip.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload(), &UDP6[40..]);
        assert_eq!(ip.packet(), &UDP6[..]);
        assert!(ip.padding().is_empty());
        // 2 × 0x2001 + 2 × 0x0db8 + 1 + 2 + 8 (length) + 17 = 0x5b8e.
        assert_eq!(ip.pseudo_header_sum(8), 0x5b8e);
    }

    #[test]
    fn padding_and_truncation() {
        let mut padded = UDP6.to_vec();
        padded.extend_from_slice(&[0; 6]);
        let ip = Ipv6Packet::new_checked(&padded[..]).unwrap();
        assert_eq!((ip.payload(), ip.padding()), (&UDP6[40..], &[0u8; 6][..]));
        assert_eq!(
            Ipv6Packet::new_checked(&UDP6[..47]).err(),
            Some(WireError::Truncated {
                layer: "IPv6 packet",
                needed: 48,
                got: 47
            })
        );
        assert!(Ipv6Packet::new_checked(&UDP6[..39]).is_err());
        let mut v4 = UDP6;
        v4[0] = 0x45;
        assert!(matches!(
            Ipv6Packet::new_checked(&v4[..]),
            Err(WireError::Malformed { .. })
        ));
        let fixed = Ipv6Packet::new_fixed_header(&UDP6[..44]).unwrap();
        assert_eq!((fixed.payload().len(), fixed.padding().len()), (4, 0));
    }

    #[test]
    fn setters() {
        let mut bytes = UDP6;
        let mut ip = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        ip.set_payload_len(4);
        ip.set_hop_limit(1);
        assert_eq!((ip.payload_len(), ip.hop_limit()), (4, 1));
        assert_eq!(ip.padding().len(), 4);
        assert_eq!(&bytes[4..8], &[0, 4, 0x11, 1]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            if let Ok(ip) = Ipv6Packet::new_fixed_header(&bytes[..]) {
                let _ = (ip.src_addr(), ip.dst_addr(), ip.next_header(), ip.pseudo_header_sum(1));
                proptest::prop_assert!(ip.packet().len() + ip.padding().len() <= bytes.len());
                if let Ok(ip) = Ipv6Packet::new_checked(&bytes[..]) {
                    proptest::prop_assert_eq!(ip.payload().len(), ip.payload_len());
                }
            }
        }
    }
}
