//! Typed, zero-copy views of the bytes switchyard handles: Ethernet frames, 802.1Q tags and
//! the `virtio_net_hdr` TAPs prepend, plus [`PacketBuf`], the buffer frames live in.
//!
//! Views follow smoltcp's wire module: a struct over any `T: AsRef<[u8]>`, built only by a
//! `new_checked` that validates length once, so getters never panic on short or malformed
//! input; setters exist only where the buffer is mutable.

mod ethernet;
mod mac;
mod packet;
mod vlan;
pub mod vnet;

pub use ethernet::{emit_header, EtherType, EthernetFrame, HEADER_LEN, TAG_OFFSET, VLAN_TAG_LEN};
pub use mac::{MacAddr, ParseMacError};
pub use packet::{PacketBuf, HEADROOM};
pub use vlan::{ParseVlanError, ParseVlanSetError, Tci, VlanId, VlanSet};
pub use vnet::{VnetHdr, VNET_HDR_LEN};

/// Why bytes could not be viewed or edited as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{layer} truncated: need {needed} bytes, got {got}")]
    Truncated {
        layer: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("no headroom left in the buffer to push a header")]
    NoHeadroom,
}
