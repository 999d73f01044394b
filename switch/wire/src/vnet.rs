//! The `virtio_net_hdr` that a TAP opened with `IFF_VNET_HDR` puts before every frame.
//!
//! It tells the reader that a frame is a TCP/UDP "super-frame" still to be segmented
//! (`gso_type`, `gso_size`) and that its checksum is partial (`NEEDS_CSUM` with
//! `csum_start`/`csum_offset`). switchyard carries it from TAP to TAP unchanged, except
//! that the offsets into the frame move by 4 when a VLAN tag is pushed or popped.
//!
//! ```text
//!  0       1          2         4          6            8             10
//! +-------+----------+---------+----------+------------+-------------+
//! | flags | gso_type | hdr_len | gso_size | csum_start | csum_offset |
//! +-------+----------+---------+----------+------------+-------------+
//! ```
//! Multi-byte fields are in the host's byte order (little-endian on every host that
//! runs switchd; the TAP is legacy virtio and big-endian hosts would need TUNSETVNETLE).

use super::WireError;

/// Size of the header switchd asks the TAP for (the kernel's default).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end still has to be computed and
/// stored at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Bit OR-ed into `gso_type`: the TCP stream uses ECN (CWR must go on the first segment only).
pub const GSO_ECN: u8 = 0x80;

mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// A view of a `virtio_net_hdr`. Length is checked once at construction.
pub struct VnetHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VnetHdr<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < VNET_HDR_LEN {
            return Err(WireError::Truncated {
                layer: "virtio_net_hdr",
                needed: VNET_HDR_LEN,
                got,
            });
        }
        Ok(VnetHdr { buffer })
    }

    fn u16_at(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_ne_bytes([b[0], b[1]])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Whether the frame is a super-frame the receiver (or the kernel) must segment.
    pub fn is_gso(&self) -> bool {
        self.gso_type() & !GSO_ECN != GSO_NONE
    }

    pub fn needs_csum(&self) -> bool {
        self.flags() & F_NEEDS_CSUM != 0
    }

    /// Length of all headers up to the transport payload, counted from the Ethernet header.
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// Where checksumming starts, counted from the Ethernet header.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHdr<T> {
    fn set_u16_at(&mut self, range: std::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_ne_bytes());
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    pub fn set_gso_type(&mut self, gso_type: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = gso_type;
    }

    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_u16_at(field::HDR_LEN, value);
    }

    pub fn set_gso_size(&mut self, value: u16) {
        self.set_u16_at(field::GSO_SIZE, value);
    }

    pub fn set_csum_start(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_START, value);
    }

    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_OFFSET, value);
    }

    /// Moves the header's frame offsets by `delta` bytes, as when a 4-byte VLAN tag is
    /// pushed (+4) or popped (-4) in front of the network header. Offsets that are not in
    /// use (no `NEEDS_CSUM`, `hdr_len` of 0, which means "unknown") are left alone.
    pub fn shift_offsets(&mut self, delta: i16) {
        if self.needs_csum() {
            let start = self.csum_start().saturating_add_signed(delta);
            self.set_csum_start(start);
        }
        let hdr_len = self.hdr_len();
        if hdr_len != 0 {
            self.set_hdr_len(hdr_len.saturating_add_signed(delta));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tso_header() -> [u8; VNET_HDR_LEN] {
        let mut raw = [0u8; VNET_HDR_LEN];
        let mut hdr = VnetHdr::new_checked(&mut raw[..]).unwrap();
        hdr.set_flags(F_NEEDS_CSUM);
        hdr.set_gso_type(GSO_TCPV4 | GSO_ECN);
        hdr.set_hdr_len(66);
        hdr.set_gso_size(1448);
        hdr.set_csum_start(34);
        hdr.set_csum_offset(16);
        raw
    }

    #[test]
    fn reads_fields_back() {
        let raw = tso_header();
        let hdr = VnetHdr::new_checked(&raw[..]).unwrap();
        assert!(hdr.needs_csum() && hdr.is_gso());
        assert_eq!(hdr.gso_type(), GSO_TCPV4 | GSO_ECN);
        assert_eq!(
            (
                hdr.hdr_len(),
                hdr.gso_size(),
                hdr.csum_start(),
                hdr.csum_offset()
            ),
            (66, 1448, 34, 16)
        );
    }

    #[test]
    fn shifts_offsets_for_a_tag() {
        let mut raw = tso_header();
        let mut hdr = VnetHdr::new_checked(&mut raw[..]).unwrap();
        hdr.shift_offsets(4);
        assert_eq!(
            (hdr.csum_start(), hdr.hdr_len(), hdr.gso_size()),
            (38, 70, 1448)
        );
        hdr.shift_offsets(-4);
        assert_eq!((hdr.csum_start(), hdr.hdr_len()), (34, 66));
    }

    #[test]
    fn leaves_unused_offsets_alone() {
        let mut raw = [0u8; VNET_HDR_LEN];
        let mut hdr = VnetHdr::new_checked(&mut raw[..]).unwrap();
        hdr.set_csum_start(7);
        hdr.shift_offsets(4);
        assert_eq!((hdr.csum_start(), hdr.hdr_len()), (7, 0));
        assert!(!hdr.is_gso());
    }

    #[test]
    fn rejects_short_header() {
        assert!(VnetHdr::new_checked(&[0u8; 9][..]).is_err());
    }
}
