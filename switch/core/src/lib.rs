//! # switchyard
//!
//! A userspace virtual switch for containers. This crate is its forwarding core and the
//! vocabulary the rest of switchyard shares; the `switchd` binary in this package wraps it
//! in I/O.
//!
//! How the pieces fit:
//!
//! * [`wire`] — zero-copy views of frames (Ethernet, 802.1Q, `virtio_net_hdr`) and
//!   [`wire::PacketBuf`], a frame with headroom so tags can be pushed in place.
//! * [`fdb`] — the MAC learning table, with its contract (bounds, aging, fair eviction).
//! * [`forward`] — [`forward::Switch`], the pure core: `process(now, in_port, frame)` returns
//!   a [`forward::Decision`]; `execute` carries one out through a caller-supplied `send`.
//! * [`port`] — port ids and VLAN modes (access, trunk).
//! * [`network`] — networks, endpoints and IPAM (Docker's model), with their contract.
//! * [`router`] — [`router::Router`], switchd's IPv4 router as a pure core:
//!   `from_switch(now, vlan, frame)` and `from_uplink(now, packet)` return a verdict and
//!   answers (ARP, ICMP), for the gateways of networks.
//! * [`sim`] — a deterministic simulator of hosts, switches and routers over in-memory
//!   links with a virtual clock, for testing the cores without root.
//! * [`control`] — the JSON protocol of switchd's control socket, shared by `swctl`,
//!   `nsutil` and `switchyard-cni` (the client that speaks it is in `switchyard-os`).
//!
//! Nothing here performs I/O or reads a clock: time is an argument ([`time::Time`]).
//! The I/O edges (namespaces, TAPs, netlink, the control socket client) are in the
//! `switchyard-os` crate.

#![forbid(unsafe_code)]

pub mod control;
pub mod controller;
pub mod datapath;
pub mod fdb;
pub mod forward;
pub mod network;
pub mod port;
pub mod published;
pub mod router;
pub mod sim;
pub mod time;

/// The wire layer (`switchyard-wire`), re-exported: frames, tags, vnet headers, IP views.
pub use switchyard_wire as wire;

pub use fdb::{FdbConfig, MacTable};
pub use forward::{Decision, DropReason, Egress, Switch};
pub use port::{PortId, PortMode};
pub use time::Time;
