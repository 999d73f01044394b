//! UDP headers (RFC 768).
//!
//! ```text
//!  0                   16                  31
//! +--------------------+--------------------+
//! |    source port     |  destination port  |
//! +--------------------+--------------------+
//! |       length       |      checksum      |
//! +--------------------+--------------------+
//! ```
//!
//! # Contract
//!
//! [`UdpPacket::new_checked`] checks only that the 8-byte header is there. The length
//! field is not compared with the buffer (callers differ on what a mismatch means:
//! segmentation refuses it, checksum detection does not care); [`UdpPacket::len`] reads
//! it and [`UdpPacket::payload`] is everything after the header.

use super::checksum;
use super::WireError;

/// Byte ranges of the header's fields.
pub mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "UDP header",
                needed: HEADER_LEN,
                got,
            });
        }
        Ok(UdpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, range: std::ops::Range<usize>) -> u16 {
        // Every field is inside the 8 bytes new_checked guarantees.
        self.buffer
            .as_ref()
            .get(range)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// The length field: header plus payload, as the sender wrote it.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.read_u16(field::LENGTH))
    }

    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN
    }

    /// The checksum field; 0 means "no checksum" (IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Whether the checksum over the whole buffer is right, given the pseudo-header sum.
    #[inline]
    pub fn verify_checksum(&self, pseudo_header_sum: u16) -> bool {
        checksum::add(pseudo_header_sum, checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    fn write_u16(&mut self, range: std::ops::Range<usize>, value: u16) {
        if let Some(field) = self.buffer.as_mut().get_mut(range) {
            field.copy_from_slice(&value.to_be_bytes());
        }
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        self.write_u16(field::LENGTH, len);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write_u16(field::CHECKSUM, checksum);
    }

    /// Computes the checksum over the whole buffer and stores it, 0 sent as 0xffff (0
    /// would mean "no checksum").
    pub fn fill_checksum(&mut self, pseudo_header_sum: u16) {
        self.set_checksum(0);
        let sum = checksum::add(pseudo_header_sum, checksum::sum(self.buffer.as_ref()));
        self.set_checksum(match !sum {
            0 => 0xffff,
            check => check,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1234 → 5678, length 12, checksum 0x0c0d (10.0.0.1 → 10.0.0.2), "abcd".
    const DATAGRAM: [u8; 12] = [
        0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x0c, 0x0d, b'a', b'b', b'c', b'd',
    ];

    fn pseudo() -> u16 {
        checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 12)
    }

    #[test]
    fn reads_a_literal_header() {
        let udp = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (1234, 5678));
        assert_eq!((udp.len(), udp.checksum()), (12, 0x0c0d));
        assert!(!udp.is_empty());
        assert_eq!(udp.payload(), b"abcd");
        assert!(udp.verify_checksum(pseudo()));
    }

    #[test]
    fn fills_the_checksum() {
        let mut bytes = DATAGRAM;
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.set_checksum(0);
        udp.set_len(12);
        udp.fill_checksum(pseudo());
        assert_eq!(bytes, DATAGRAM);
        // A sum of 0xffff would give a checksum of 0: sent as 0xffff instead.
        let mut zeros = [0u8; 8];
        let mut udp = UdpPacket::new_checked(&mut zeros[..]).unwrap();
        udp.fill_checksum(0xffff);
        assert_eq!(udp.checksum(), 0xffff);
    }

    #[test]
    fn refuses_a_short_header() {
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..7]).err(),
            Some(WireError::Truncated {
                layer: "UDP header",
                needed: 8,
                got: 7
            })
        );
        assert!(UdpPacket::new_checked(&DATAGRAM[..8])
            .unwrap()
            .payload()
            .is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok(udp) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (udp.src_port(), udp.len(), udp.checksum(), udp.verify_checksum(0));
                proptest::prop_assert_eq!(udp.payload().len() + HEADER_LEN, bytes.len());
            }
        }
    }
}
