//! [`PacketBuf`]: one frame (with its `virtio_net_hdr`, when the port has one) in a buffer
//! with headroom, so that an 802.1Q tag can be pushed or popped by moving the 22 bytes in
//! front of it instead of the whole payload.
//!
//! ```text
//! data: [ headroom ........ | vnet hdr (10) | dst | src | [tag] | type | payload ... ]
//!                           ^ start                                                  ^ end
//! ```

use super::vnet::{VnetHdr, VNET_HDR_LEN};
use super::{EtherType, Tci, VlanId, WireError, HEADER_LEN, TAG_OFFSET, VLAN_TAG_LEN};

/// Bytes kept free in front of every frame read from a port: enough to push a VLAN tag,
/// or the outer headers of an IPv6 VXLAN encapsulation (70 bytes), without moving payload.
pub const HEADROOM: usize = 128;

/// An owned frame with headroom. See the module documentation for the layout.
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
    has_vnet_hdr: bool,
    /// Priority and drop-eligible bits of the last tag popped, so that a tag pushed
    /// again (a flood reaching an access port, then a trunk) keeps them.
    popped_priority: u16,
}

impl PacketBuf {
    /// An empty buffer that can take a wire image (vnet header + frame) of `capacity` bytes.
    pub fn with_capacity(capacity: usize, has_vnet_hdr: bool) -> PacketBuf {
        PacketBuf {
            data: vec![0; HEADROOM + capacity].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
            has_vnet_hdr,
            popped_priority: 0,
        }
    }

    /// A buffer holding a copy of `wire` (a vnet header followed by a frame, when
    /// `has_vnet_hdr`; just a frame otherwise).
    pub fn from_wire(wire: &[u8], has_vnet_hdr: bool) -> PacketBuf {
        let mut buf = PacketBuf::with_capacity(wire.len(), has_vnet_hdr);
        let _ = buf.load(wire); // sized for it
        buf
    }

    /// Replaces the contents with a copy of `wire`, reusing the buffer; fails (leaving the
    /// buffer empty) when `wire` is longer than its capacity.
    pub fn load(&mut self, wire: &[u8]) -> Result<(), WireError> {
        let space = self.read_space();
        let capacity = space.len();
        let Some(room) = space.get_mut(..wire.len()) else {
            return Err(WireError::Truncated {
                layer: "buffer",
                needed: wire.len(),
                got: capacity,
            });
        };
        room.copy_from_slice(wire);
        self.set_len(wire.len());
        Ok(())
    }

    /// Resets the buffer and returns the space a port reads its next wire image into;
    /// call [`PacketBuf::set_len`] with the number of bytes read.
    pub fn read_space(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        self.end = HEADROOM;
        self.popped_priority = 0;
        &mut self.data[HEADROOM..]
    }

    /// Marks `len` bytes of the read space as filled (clamped to the space there is).
    pub fn set_len(&mut self, len: usize) {
        self.end = (self.start + len).min(self.data.len());
    }

    pub fn has_vnet_hdr(&self) -> bool {
        self.has_vnet_hdr
    }

    /// What a port writes: the vnet header (if any) and the frame.
    pub fn wire(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn vnet_len(&self) -> usize {
        if self.has_vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// The wire image, writable (to replace a header in place).
    pub fn wire_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// The Ethernet frame, without the vnet header. Empty if the wire image is shorter
    /// than a vnet header.
    pub fn frame(&self) -> &[u8] {
        self.wire().get(self.vnet_len()..).unwrap_or(&[])
    }

    /// The frame, writable (for a router rewriting a header in place).
    pub fn frame_mut(&mut self) -> &mut [u8] {
        let from = (self.start + self.vnet_len()).min(self.end);
        &mut self.data[from..self.end]
    }

    /// Removes the first `len` bytes of the frame (a link header, when a frame goes out
    /// of a TUN device as an IP packet) by moving the vnet header forward over them.
    pub fn strip_front(&mut self, len: usize) -> Result<(), WireError> {
        self.check_vnet_hdr()?;
        let frame_len = self.frame().len();
        if frame_len < len {
            return Err(WireError::Truncated {
                layer: "link header",
                needed: len,
                got: frame_len,
            });
        }
        let vnet_len = self.vnet_len();
        self.data
            .copy_within(self.start..self.start + vnet_len, self.start + len);
        self.start += len;
        if let Some(mut hdr) = self.vnet_hdr_mut() {
            hdr.shift_offsets(-(len as i16));
        }
        Ok(())
    }

    /// Puts `header` in front of the frame (a link header, when an IP packet from a TUN
    /// device becomes a frame), moving only the vnet header into the headroom.
    pub fn push_front(&mut self, header: &[u8]) -> Result<(), WireError> {
        self.check_vnet_hdr()?;
        if self.start < header.len() {
            return Err(WireError::NoHeadroom);
        }
        let vnet_len = self.vnet_len();
        let new_start = self.start - header.len();
        self.data
            .copy_within(self.start..self.start + vnet_len, new_start);
        self.data[new_start + vnet_len..self.start + vnet_len].copy_from_slice(header);
        self.start = new_start;
        if let Some(mut hdr) = self.vnet_hdr_mut() {
            hdr.shift_offsets(header.len() as i16);
        }
        Ok(())
    }

    /// The vnet header the buffer should have is all there: moving it is safe.
    fn check_vnet_hdr(&self) -> Result<(), WireError> {
        let got = self.wire().len();
        if got < self.vnet_len() {
            return Err(WireError::Truncated {
                layer: "virtio_net_hdr",
                needed: VNET_HDR_LEN,
                got,
            });
        }
        Ok(())
    }

    pub fn vnet_hdr(&self) -> Option<VnetHdr<&[u8]>> {
        if !self.has_vnet_hdr {
            return None;
        }
        VnetHdr::new_checked(self.wire()).ok()
    }

    pub fn vnet_hdr_mut(&mut self) -> Option<VnetHdr<&mut [u8]>> {
        if !self.has_vnet_hdr {
            return None;
        }
        VnetHdr::new_checked(&mut self.data[self.start..self.end]).ok()
    }

    /// Makes the frame carry `want` as its 802.1Q tag, or no tag at all for `None`:
    /// pushes, pops or rewrites the tag (keeping its priority bits, also across a pop
    /// and a later push), and moves the vnet
    /// header's offsets by the 4 bytes the tag adds or removes. Only the headers in front
    /// of the tag move; the payload stays where it is.
    pub fn set_vlan_tag(&mut self, want: Option<VlanId>) -> Result<(), WireError> {
        let frame_len = self.frame().len();
        if frame_len < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "ethernet",
                needed: HEADER_LEN,
                got: frame_len,
            });
        }
        let tag_at = self.start + self.vnet_len() + TAG_OFFSET;
        let current = self.data[tag_at..tag_at + 2] == EtherType::VLAN.0.to_be_bytes();
        if current && frame_len < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated {
                layer: "802.1Q tag",
                needed: HEADER_LEN + VLAN_TAG_LEN,
                got: frame_len,
            });
        }
        match (current, want) {
            (false, None) => {}
            (true, Some(vlan)) => {
                let tci_at = tag_at + 2;
                let tci = Tci(u16::from_be_bytes([
                    self.data[tci_at],
                    self.data[tci_at + 1],
                ]));
                self.data[tci_at..tci_at + 2].copy_from_slice(&tci.with_vlan(vlan).0.to_be_bytes());
            }
            (true, None) => {
                let tci = u16::from_be_bytes([self.data[tag_at + 2], self.data[tag_at + 3]]);
                self.popped_priority = tci & 0xf000;
                self.data
                    .copy_within(self.start..tag_at, self.start + VLAN_TAG_LEN);
                self.start += VLAN_TAG_LEN;
                if let Some(mut hdr) = self.vnet_hdr_mut() {
                    hdr.shift_offsets(-(VLAN_TAG_LEN as i16));
                }
            }
            (false, Some(vlan)) => {
                if self.start < VLAN_TAG_LEN {
                    return Err(WireError::NoHeadroom);
                }
                self.data
                    .copy_within(self.start..tag_at, self.start - VLAN_TAG_LEN);
                self.start -= VLAN_TAG_LEN;
                let tag_at = tag_at - VLAN_TAG_LEN;
                self.data[tag_at..tag_at + 2].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
                let tci = Tci(self.popped_priority | vlan.get());
                self.data[tag_at + 2..tag_at + 4].copy_from_slice(&tci.0.to_be_bytes());
                if let Some(mut hdr) = self.vnet_hdr_mut() {
                    hdr.shift_offsets(VLAN_TAG_LEN as i16);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::vnet::{F_NEEDS_CSUM, GSO_TCPV4};
    use super::super::EthernetFrame;
    use super::*;

    const UNTAGGED: [u8; 20] = [
        2, 0, 0, 0, 0, 2, // dst
        2, 0, 0, 0, 0, 1, // src
        0x08, 0x00, // IPv4
        0x45, 0, 0, 20, 0xaa, 0xbb,
    ];

    fn vlan(id: u16) -> VlanId {
        VlanId::new(id).unwrap()
    }

    fn with_vnet(frame: &[u8]) -> Vec<u8> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut view = VnetHdr::new_checked(&mut hdr[..]).unwrap();
        view.set_flags(F_NEEDS_CSUM);
        view.set_gso_type(GSO_TCPV4);
        view.set_csum_start(34);
        view.set_csum_offset(16);
        view.set_hdr_len(54);
        view.set_gso_size(1448);
        [&hdr[..], frame].concat()
    }

    #[test]
    fn load_reuses_the_buffer_and_refuses_what_does_not_fit() {
        let mut buf = PacketBuf::with_capacity(UNTAGGED.len(), false);
        buf.load(&UNTAGGED).unwrap();
        assert_eq!(buf.frame(), &UNTAGGED[..]);
        buf.load(&UNTAGGED[..14]).unwrap();
        assert_eq!(buf.frame(), &UNTAGGED[..14]);
        assert!(buf.load(&[0; 21]).is_err());
        assert!(
            buf.wire().is_empty(),
            "a refused load leaves nothing behind"
        );
    }

    #[test]
    fn a_link_header_comes_off_and_goes_back_on() {
        let wire = with_vnet(&UNTAGGED);
        let mut buf = PacketBuf::from_wire(&wire, true);
        buf.strip_front(14).unwrap();
        assert_eq!(buf.frame(), &UNTAGGED[14..]);
        let hdr = buf.vnet_hdr().unwrap();
        assert_eq!((hdr.csum_start(), hdr.hdr_len()), (20, 40));
        buf.push_front(&UNTAGGED[..14]).unwrap();
        assert_eq!(buf.wire(), &wire[..]);
        assert!(buf.strip_front(100).is_err());
        let mut full = PacketBuf::from_wire(&wire, true);
        assert!(full.push_front(&[0; HEADROOM + 1]).is_err());
        assert_eq!(full.wire(), &wire[..]);
    }

    #[test]
    fn push_then_pop_restores_the_frame() {
        let mut buf = PacketBuf::from_wire(&UNTAGGED, false);
        buf.set_vlan_tag(Some(vlan(10))).unwrap();
        assert_eq!(buf.frame().len(), UNTAGGED.len() + 4);
        assert_eq!(&buf.frame()[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&buf.frame()[16..], &UNTAGGED[12..]);
        let view = EthernetFrame::new_checked(buf.frame()).unwrap();
        assert_eq!(view.tci().and_then(|t| t.vlan()), Some(vlan(10)));
        assert_eq!(
            view.src(),
            EthernetFrame::new_checked(&UNTAGGED[..]).unwrap().src()
        );

        buf.set_vlan_tag(None).unwrap();
        assert_eq!(buf.frame(), &UNTAGGED[..]);
    }

    #[test]
    fn rewrite_keeps_priority() {
        let mut tagged = UNTAGGED[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x0a]);
        tagged.extend_from_slice(&UNTAGGED[12..]);
        let mut buf = PacketBuf::from_wire(&tagged, false);
        buf.set_vlan_tag(Some(vlan(20))).unwrap();
        assert_eq!(&buf.frame()[12..16], &[0x81, 0x00, 0xa0, 0x14]);
        assert_eq!(buf.frame().len(), tagged.len());
    }

    #[test]
    fn priority_survives_a_pop_and_a_push() {
        let mut tagged = UNTAGGED[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0xb0, 0x0a]); // priority 5, DEI, vid 10
        tagged.extend_from_slice(&UNTAGGED[12..]);
        let mut buf = PacketBuf::from_wire(&tagged, false);
        buf.set_vlan_tag(None).unwrap();
        buf.set_vlan_tag(Some(vlan(20))).unwrap();
        assert_eq!(&buf.frame()[12..16], &[0x81, 0x00, 0xb0, 0x14]);
        buf.read_space();
        buf.set_len(0);
        let mut fresh = PacketBuf::from_wire(&UNTAGGED, false);
        fresh.set_vlan_tag(Some(vlan(20))).unwrap();
        assert_eq!(
            &fresh.frame()[12..16],
            &[0x81, 0x00, 0x00, 0x14],
            "an untagged frame gets priority 0"
        );
    }

    #[test]
    fn vnet_offsets_follow_the_tag() {
        let mut buf = PacketBuf::from_wire(&with_vnet(&UNTAGGED), true);
        buf.set_vlan_tag(Some(vlan(7))).unwrap();
        let hdr = buf.vnet_hdr().unwrap();
        assert_eq!(
            (hdr.csum_start(), hdr.hdr_len(), hdr.gso_size()),
            (38, 58, 1448)
        );
        assert_eq!(&buf.frame()[12..16], &[0x81, 0x00, 0x00, 0x07]);
        buf.set_vlan_tag(None).unwrap();
        assert_eq!(buf.wire(), &with_vnet(&UNTAGGED)[..]);
    }

    #[test]
    fn untagged_to_untagged_is_a_no_op() {
        let mut buf = PacketBuf::from_wire(&UNTAGGED, false);
        buf.set_vlan_tag(None).unwrap();
        assert_eq!(buf.frame(), &UNTAGGED[..]);
    }

    #[test]
    fn refuses_short_frames() {
        let mut buf = PacketBuf::from_wire(&UNTAGGED[..13], false);
        assert!(buf.set_vlan_tag(Some(vlan(1))).is_err());
        let mut tagged_stub = UNTAGGED[..12].to_vec();
        tagged_stub.extend_from_slice(&[0x81, 0x00, 0x00]);
        let mut buf = PacketBuf::from_wire(&tagged_stub, false);
        assert!(buf.set_vlan_tag(None).is_err());
        assert_eq!(
            buf.frame(),
            &tagged_stub[..],
            "a refused edit changes nothing"
        );
        let mut buf = PacketBuf::from_wire(&[0u8; 5], true);
        assert_eq!(buf.frame(), &[] as &[u8]);
        assert!(buf.set_vlan_tag(None).is_err());
    }

    #[test]
    fn link_headers_need_the_whole_vnet_header() {
        // Found by the wire_views fuzz target: a buffer holding less than the vnet header
        // it should start with panicked moving that header.
        for wire in [&[][..], &[0u8; 3][..], &[0u8; VNET_HDR_LEN - 1][..]] {
            let mut buf = PacketBuf::from_wire(wire, true);
            assert!(buf.push_front(&[]).is_err());
            assert!(buf.push_front(&UNTAGGED[..14]).is_err());
            assert!(buf.strip_front(0).is_err());
            assert_eq!(buf.wire(), wire, "a refused edit changes nothing");
        }
        let mut big = PacketBuf::with_capacity(64, true);
        big.read_space()[..3].fill(7);
        big.set_len(3);
        assert!(big.push_front(&[1, 2]).is_err());
        assert!(big.strip_front(0).is_err());
        assert_eq!(big.wire(), &[7, 7, 7]);
        let mut empty = PacketBuf::from_wire(&[0u8; VNET_HDR_LEN], true);
        empty.push_front(&[]).unwrap();
        empty.strip_front(0).unwrap();
        assert_eq!(empty.wire(), &[0u8; VNET_HDR_LEN]);
    }

    #[test]
    fn read_space_resets_after_a_push() {
        let mut buf = PacketBuf::with_capacity(64, false);
        buf.read_space()[..UNTAGGED.len()].copy_from_slice(&UNTAGGED);
        buf.set_len(UNTAGGED.len());
        buf.set_vlan_tag(Some(vlan(3))).unwrap();
        let space = buf.read_space().len();
        assert_eq!(space, 64);
        assert!(buf.wire().is_empty());
    }
}
