//! Typed, zero-copy views of the bytes switchyard handles: Ethernet frames, 802.1Q tags,
//! the `virtio_net_hdr` TAPs prepend, IPv4, IPv6, TCP, UDP and ICMPv4 headers, plus the
//! Internet checksum and [`PacketBuf`], the buffer frames live in.
//!
//! Views follow smoltcp's wire module: a struct over any `T: AsRef<[u8]>`, built only by a
//! `new_checked` that validates length once, so getters never panic on short or malformed
//! input; setters exist only where the buffer is mutable. Headers with a variable length
//! (IPv4, IPv6, TCP) also have a `new_fixed_header` that checks only the fixed part, for
//! callers that report each malformation their own way; its getters never panic either.
//! Each module's documentation states exactly what its constructors check.

pub mod checksum;
mod ethernet;
pub mod icmpv4;
mod ip;
pub mod ipv4;
pub mod ipv6;
mod mac;
mod packet;
pub mod tcp;
pub mod udp;
mod vlan;
pub mod vnet;

pub use ethernet::{emit_header, EtherType, EthernetFrame, HEADER_LEN, TAG_OFFSET, VLAN_TAG_LEN};
pub use icmpv4::{Icmpv4Error, Icmpv4Packet, Icmpv4Type};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::Ipv6Packet;
pub use mac::{MacAddr, ParseMacError};
pub use packet::{PacketBuf, HEADROOM};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;
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
    #[error("malformed {layer}: {reason}")]
    Malformed {
        layer: &'static str,
        reason: &'static str,
    },
    #[error("no headroom left in the buffer to push a header")]
    NoHeadroom,
}
