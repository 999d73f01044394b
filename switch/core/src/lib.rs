//! # switchyard
//!
//! A userspace virtual switch for containers. This crate is its forwarding core and the
//! vocabulary the rest of switchyard shares; the `switchd` binary in this package wraps it
//! in I/O.
//!
//! How the pieces fit:
//!
//! * [`wire`] — the wire layer (`switchyard-wire`): zero-copy views of Ethernet, 802.1Q,
//!   `virtio_net_hdr`, IPv4/IPv6, TCP, UDP and ICMP, checksums, and [`wire::PacketBuf`],
//!   a frame with headroom so tags can be pushed in place.
//! * [`datapath`] — everything a frame goes through, as a sans-IO core: a shared
//!   [`datapath::Datapath`] and a [`datapath::Worker`] per thread, which takes (time,
//!   ingress, frame) and hands [`datapath::Transmit`] actions to the driver's
//!   [`datapath::Io`].
//! * [`forward`] — [`forward::Switch`]: `process(view, now, in_port, frame)` returns a
//!   [`forward::Decision`]; ports, VLANs and the overlay as published versions.
//! * [`fdb`] — the MAC learning table, with its contract (bounds, aging, fair eviction,
//!   lock-free lookups).
//! * [`router`] — [`router::Router`], switchd's IPv4 router: `from_switch` and
//!   `from_uplink` return a verdict and answers (ARP, ICMP).
//! * [`network`] — networks, endpoints and IPAM (Docker's model), with their contract.
//! * [`controller`] — the owner of ports, peers, networks and endpoints: each control
//!   request becomes a change of its model and a plan of side effects, run through small
//!   traits ([`controller::effects`]) that switchd implements and tests fake.
//! * [`control`] — the JSON protocol of switchd's control socket, with stable error codes,
//!   shared by `swctl`, `nsutil` and `switchyard-cni` (the client that speaks it is in
//!   `switchyard-os`).
//! * [`port`] — port ids and VLAN modes (access, trunk).
//! * [`published`] — read-mostly state for many threads without a lock on the read path.
//! * [`sim`] — a deterministic simulator of hosts, switches and routers over in-memory
//!   links with a virtual clock, driving the same datapath, for tests without root.
//!
//! Nothing here performs I/O or reads a clock: time is an argument ([`time::Time`]).
//! The I/O edges (namespaces, TAPs, netlink, the control socket client) are in the
//! `switchyard-os` crate.

#![forbid(unsafe_code)]

pub mod capture;
pub mod cluster;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod dns;
pub mod fdb;
pub mod forward;
pub mod network;
pub mod port;
pub mod portmap;
pub mod published;
pub mod router;
pub mod sim;
pub mod time;
pub mod trace;

/// The wire layer (`switchyard-wire`), re-exported: frames, tags, vnet headers, IP views.
pub use switchyard_wire as wire;

pub use fdb::{FdbConfig, MacTable};
pub use forward::{Decision, DropReason, Egress, Switch};
pub use port::{PortId, PortMode};
pub use time::Time;
