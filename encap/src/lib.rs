//! # switchyard-encap
//!
//! The pure half of switchyard's VXLAN overlay (RFC 7348): everything that turns an
//! Ethernet frame into what goes on the underlay and back, with no sockets and no clock.
//!
//! * [`vxlan`] — the 8-byte VXLAN header as a zero-copy view, and [`Vni`].
//! * [`checksum`] — the Internet checksum, incremental and pseudo-header forms (it lives
//!   in `switchyard-wire`, beside the header views, and is re-exported here).
//! * [`coalesce`] — merging received TCP segments of one flow back into a super-frame
//!   (the inverse of [`segment`], like the kernel's GRO).
//! * [`flow`] — the inner-flow hash that picks the outer UDP source port.
//! * [`icmp`] — "fragmentation needed" answers for frames too big for the overlay, built
//!   by `switchyard-wire`'s one ICMP-error builder.
//! * [`partial`] — spotting transport checksums left for an offload to finish.
//! * [`segment`] — TCP and UDP segmentation of the super-frames a TAP hands over with
//!   offloads on, with every checksum completed, laid out for one `sendmsg` with
//!   `UDP_SEGMENT` or for one datagram per segment.
//!
//! switchyard's forwarding core decides *where* a frame goes (which VTEP, which VNI);
//! this crate decides *what bytes* go there.

#![forbid(unsafe_code)]

pub use switchyard_wire::checksum;
pub mod coalesce;
pub mod flow;
pub mod icmp;
pub mod partial;
pub mod segment;
pub mod vxlan;

pub use vxlan::{Vni, VxlanHeader};
