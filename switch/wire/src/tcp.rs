//! TCP headers (RFC 9293).
//!
//! ```text
//!  0                   16                  31
//! +--------------------+--------------------+
//! |    source port     |  destination port  |
//! +--------------------+--------------------+
//! |              sequence number            |
//! +-----------------------------------------+
//! |           acknowledgment number         |
//! +------+------+------+--------------------+
//! |offset| rsvd | flags|       window       |
//! +------+------+------+--------------------+
//! |      checksum      |   urgent pointer   |
//! +--------------------+--------------------+
//! |           options (offset > 5)          |
//! ```
//!
//! # Contract
//!
//! [`TcpPacket::new_checked`] accepts a buffer holding the 20-byte header with a data
//! offset of at least 5 whose header, options included, fits in the buffer; everything
//! after the header is payload (the IP layer decides where the segment ends: build the
//! view over the IP payload, not over a padded frame). [`TcpPacket::new_fixed_header`]
//! checks only the 20 bytes, for callers that report failures their own way; its getters
//! never panic either (`options` and `payload` are cut to the buffer).

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

use super::checksum;
use super::WireError;

/// Byte ranges of the fixed header's fields.
pub mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    /// Data offset (high 4 bits) and reserved bits.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The flags byte of a TCP header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether any of `other`'s flags is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether all of `other`'s flags are set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl Not for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAndAssign for TcpFlags {
    #[inline]
    fn bitand_assign(&mut self, rhs: TcpFlags) {
        self.0 &= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let set: Vec<&str> = (0..8)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| NAMES[bit])
            .collect();
        write!(f, "[{}]", set.join(" "))
    }
}

/// A view of a TCP segment. See the module documentation for what each constructor checks.
#[derive(Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` after checking the header and its options are there.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_fixed_header(buffer)?;
        packet.check()?;
        Ok(packet)
    }

    /// Wraps `buffer` after checking only that it holds the 20-byte fixed header.
    #[inline]
    pub fn new_fixed_header(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "TCP header",
                needed: HEADER_LEN,
                got,
            });
        }
        Ok(TcpPacket { buffer })
    }

    /// The checks [`TcpPacket::new_checked`] adds: data offset ≥ 5, options in the buffer.
    pub fn check(&self) -> Result<(), WireError> {
        let (needed, got) = (self.header_len(), self.bytes().len());
        if needed < HEADER_LEN {
            return Err(WireError::Malformed {
                layer: "TCP",
                reason: "data offset below 20 bytes",
            });
        }
        if needed > got {
            return Err(WireError::Truncated {
                layer: "TCP options",
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
    fn read_u16(&self, range: std::ops::Range<usize>) -> u16 {
        // Every fixed field is inside the 20 bytes both constructors guarantee.
        self.bytes()
            .get(range)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn read_u32(&self, range: std::ops::Range<usize>) -> u32 {
        self.bytes()
            .get(range)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    fn read_u8(&self, at: usize) -> u8 {
        self.bytes().get(at).copied().unwrap_or_default()
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK)
    }

    /// Length of the header, options included: the data offset × 4.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.read_u8(field::DATA_OFFSET) >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.read_u8(field::FLAGS))
    }

    /// The 16-bit word of data offset, reserved bits and flags, as the checksum sees it.
    #[inline]
    pub fn offset_and_flags(&self) -> u16 {
        u16::from_be_bytes([self.read_u8(field::DATA_OFFSET), self.read_u8(field::FLAGS)])
    }

    #[inline]
    pub fn window(&self) -> u16 {
        self.read_u16(field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// The header, options included (cut to the buffer for a fixed-header view).
    #[inline]
    pub fn header(&self) -> &[u8] {
        let bytes = self.bytes();
        &bytes[..self.header_len().min(bytes.len())]
    }

    #[inline]
    pub fn options(&self) -> &[u8] {
        self.header().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(self.header_len()..).unwrap_or_default()
    }

    /// Whether the checksum is right, given the pseudo-header sum for this segment's
    /// length (`Ipv4Packet::pseudo_header_sum`, `Ipv6Packet::pseudo_header_sum`).
    #[inline]
    pub fn verify_checksum(&self, pseudo_header_sum: u16) -> bool {
        checksum::add(pseudo_header_sum, checksum::sum(self.bytes())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    fn write(&mut self, range: std::ops::Range<usize>, bytes: &[u8]) {
        if let Some(field) = self.buffer.as_mut().get_mut(range) {
            field.copy_from_slice(bytes);
        }
    }

    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        self.write(field::SEQ, &seq.to_be_bytes());
    }

    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::FLAGS) {
            *byte = flags.0;
        }
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write(field::CHECKSUM, &checksum.to_be_bytes());
    }

    /// Computes the checksum over the whole buffer (header and payload) and stores it.
    pub fn fill_checksum(&mut self, pseudo_header_sum: u16) {
        self.set_checksum(0);
        let sum = checksum::add(pseudo_header_sum, checksum::sum(self.bytes()));
        self.set_checksum(!sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12345 → 80, seq 1, ack 2, data offset 6 (one MSS option), ACK|PSH, window 512,
    /// checksum 0x1234 (not valid), urgent 0, then "hi".
    const SEGMENT: [u8; 26] = [
        0x30, 0x39, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, //
        0x60, 0x18, 0x02, 0x00, 0x12, 0x34, 0x00, 0x00, //
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        b'h', b'i',
    ];

    #[test]
    fn reads_a_literal_header() {
        let tcp = TcpPacket::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (12345, 80));
        assert_eq!((tcp.seq_number(), tcp.ack_number()), (1, 2));
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.flags(), TcpFlags::ACK | TcpFlags::PSH);
        assert_eq!(tcp.offset_and_flags(), 0x6018);
        assert_eq!(
            (tcp.window(), tcp.checksum(), tcp.urgent()),
            (512, 0x1234, 0)
        );
        assert_eq!(tcp.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(tcp.payload(), b"hi");
        assert_eq!(tcp.header(), &SEGMENT[..24]);
        assert_eq!(format!("{:?}", tcp.flags()), "[PSH ACK]");
    }

    #[test]
    fn flags() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && f.intersects(TcpFlags::ACK | TcpFlags::FIN));
        assert!(!f.intersects(TcpFlags::FIN | TcpFlags::RST));
        let mut g = f;
        g &= !TcpFlags::SYN;
        g |= TcpFlags::FIN;
        assert_eq!(g, TcpFlags(0x11));
        assert_eq!(f & TcpFlags::ACK, TcpFlags::ACK);
    }

    #[test]
    fn checksums() {
        // Pseudo-header 10.0.0.1 → 10.0.0.2, TCP, 26 bytes.
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 26);
        let mut bytes = SEGMENT;
        let mut tcp = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(!tcp.verify_checksum(pseudo));
        tcp.fill_checksum(pseudo);
        assert!(tcp.verify_checksum(pseudo));
        tcp.set_seq_number(0xdead_beef);
        tcp.set_flags(TcpFlags::FIN);
        assert!(!tcp.verify_checksum(pseudo));
        assert_eq!(
            (tcp.seq_number(), tcp.flags()),
            (0xdead_beef, TcpFlags::FIN)
        );
        tcp.set_checksum(0xabcd);
        assert_eq!(&bytes[16..18], &[0xab, 0xcd]);
    }

    #[test]
    fn refuses_short_or_malformed_headers() {
        assert!(matches!(
            TcpPacket::new_checked(&SEGMENT[..19]),
            Err(WireError::Truncated {
                layer: "TCP header",
                ..
            })
        ));
        assert_eq!(
            TcpPacket::new_checked(&SEGMENT[..23]).err(),
            Some(WireError::Truncated {
                layer: "TCP options",
                needed: 24,
                got: 23
            })
        );
        let mut short = SEGMENT;
        short[12] = 0x40;
        assert!(matches!(
            TcpPacket::new_checked(&short[..]),
            Err(WireError::Malformed { layer: "TCP", .. })
        ));
        let fixed = TcpPacket::new_fixed_header(&short[..]).unwrap();
        assert_eq!((fixed.header_len(), fixed.options().len()), (16, 0));
        let fixed = TcpPacket::new_fixed_header(&SEGMENT[..22]).unwrap();
        assert_eq!((fixed.header().len(), fixed.payload().len()), (22, 0));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(tcp) = TcpPacket::new_fixed_header(&bytes[..]) {
                let _ = (tcp.seq_number(), tcp.flags(), tcp.options(), tcp.verify_checksum(0));
                proptest::prop_assert!(tcp.payload().len() <= bytes.len());
                if let Ok(tcp) = TcpPacket::new_checked(&bytes[..]) {
                    proptest::prop_assert_eq!(tcp.header().len() + tcp.payload().len(), bytes.len());
                }
            }
        }
    }
}
