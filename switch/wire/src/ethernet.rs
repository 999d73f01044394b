//! Ethernet II frames with an optional 802.1Q tag.
//!
//! ```text
//!  0      6      12         14
//! +------+------+----------+---------
//! | dst  | src  | type     | payload            untagged
//! +------+------+----------+------+---------+--
//! | dst  | src  | 0x8100   | TCI  | type    | payload   802.1Q tagged
//! +------+------+----------+------+---------+--
//! ```

use std::fmt;

use super::{MacAddr, Tci, WireError};

/// An Ethernet type (or, below 0x0600, an 802.3 length).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
    pub const QINQ: EtherType = EtherType(0x88a8);
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// Offset of the tag (or of the EtherType, when untagged): right after both addresses.
pub const TAG_OFFSET: usize = 12;

/// A read-only view of an Ethernet frame. Constructed only through [`EthernetFrame::new_checked`],
/// so every getter is total: a frame shorter than its header never becomes a view.
#[derive(Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds at least an Ethernet header, and the whole
    /// tag when the EtherType says 802.1Q.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "ethernet",
                needed: HEADER_LEN,
                got: len,
            });
        }
        let frame = EthernetFrame { buffer };
        if frame.ethertype() == EtherType::VLAN && len < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated {
                layer: "802.1Q tag",
                needed: HEADER_LEN + VLAN_TAG_LEN,
                got: len,
            });
        }
        Ok(frame)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_u16(&self, range: std::ops::Range<usize>) -> u16 {
        // In range by construction: new_checked guarantees HEADER_LEN bytes, and the
        // tag fields are only read after checking that the frame is tagged.
        self.bytes()
            .get(range)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.bytes()[field::DST]).unwrap_or_default()
    }

    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.bytes()[field::SRC]).unwrap_or_default()
    }

    /// The outer EtherType: 0x8100 for a tagged frame.
    pub fn ethertype(&self) -> EtherType {
        EtherType(self.read_u16(field::ETHERTYPE))
    }

    /// The 802.1Q tag, if the frame carries one.
    pub fn tci(&self) -> Option<Tci> {
        (self.ethertype() == EtherType::VLAN).then(|| Tci(self.read_u16(field::TCI)))
    }

    /// The EtherType of the payload, looking past an 802.1Q tag.
    pub fn payload_ethertype(&self) -> EtherType {
        match self.tci() {
            Some(_) => EtherType(self.read_u16(field::INNER_ETHERTYPE)),
            None => self.ethertype(),
        }
    }

    /// Length of the Ethernet header including any 802.1Q tag.
    pub fn header_len(&self) -> usize {
        match self.tci() {
            Some(_) => HEADER_LEN + VLAN_TAG_LEN,
            None => HEADER_LEN,
        }
    }

    /// Everything after the Ethernet header (and tag).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for EthernetFrame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("EthernetFrame");
        s.field("dst", &self.dst()).field("src", &self.src());
        if let Some(tci) = self.tci() {
            s.field("vid", &tci.vid());
        }
        s.field("type", &self.payload_ethertype())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// Writes an untagged Ethernet header into the first [`HEADER_LEN`] bytes of `buf`.
/// Used to build frames in tests and by the simulator.
pub fn emit_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    buf[field::DST].copy_from_slice(&dst.octets());
    buf[field::SRC].copy_from_slice(&src.octets());
    buf[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0xde, 0xad, 0xbe, 0xef,
    ];

    const TAGGED: [u8; 20] = [
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, // dst
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x01, // src
        0x81, 0x00, 0xa0, 0x0a, // 802.1Q, priority 5, vid 10
        0x08, 0x00, // IPv4
        0x45, 0x00,
    ];

    #[test]
    fn reads_untagged_frame() {
        let frame = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert!(frame.dst().is_broadcast());
        assert_eq!(frame.src().to_string(), "02:42:0a:00:00:01");
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.tci(), None);
        assert_eq!(frame.payload_ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn reads_tagged_frame() {
        let frame = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        let tci = frame.tci().unwrap();
        assert_eq!((tci.priority(), tci.vid()), (5, 10));
        assert_eq!(frame.ethertype(), EtherType::VLAN);
        assert_eq!(frame.payload_ethertype(), EtherType::IPV4);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn rejects_short_frames() {
        for len in 0..HEADER_LEN {
            assert!(matches!(
                EthernetFrame::new_checked(&UNTAGGED[..len]),
                Err(WireError::Truncated {
                    layer: "ethernet",
                    ..
                })
            ));
        }
        for len in HEADER_LEN..HEADER_LEN + VLAN_TAG_LEN {
            assert!(matches!(
                EthernetFrame::new_checked(&TAGGED[..len]),
                Err(WireError::Truncated {
                    layer: "802.1Q tag",
                    ..
                })
            ));
        }
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn emits_header() {
        let mut buf = [0u8; 14];
        let src = MacAddr([2, 0, 0, 0, 0, 1]);
        emit_header(&mut buf, MacAddr::BROADCAST, src, EtherType::IPV6);
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!((frame.dst(), frame.src()), (MacAddr::BROADCAST, src));
        assert_eq!(frame.ethertype(), EtherType::IPV6);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst(), frame.src(), frame.tci(), frame.payload_ethertype());
                proptest::prop_assert!(frame.header_len() + frame.payload().len() == bytes.len());
            }
        }
    }
}
