//! # nsutil
//!
//! Wires network namespaces (containers) to switchd. Shared by the `nsutil` command and
//! the CNI plugin.
//!
//! * [`netns`] — naming namespaces ([`netns::NetnsRef`]: `red`, `/proc/PID/ns/net`,
//!   `pid:PID`), creating and deleting them as `ip netns` does, and running code inside
//!   one on a thread of its own ([`netns::Netns::run`]) so the caller never moves.
//! * [`rtnl`] — a small synchronous rtnetlink client ([`rtnl::Rtnl`]): look up links, set
//!   MAC, MTU, up/down and names, add addresses and default routes idempotently, list
//!   addresses and routes. It talks to the namespace of the thread that opened it.
//! * [`mod@attach`] — the attach/detach workflow: validate, ask switchd for a TAP inside the
//!   namespace, configure it there, and roll back if any step fails.
//!
//! Nothing here runs external commands.

#![forbid(unsafe_code)]

pub mod attach;
pub mod netns;
/// The rtnetlink client lives in the `switchyard` crate, which switchd shares.
pub use switchyard::rtnl;

/// The CIDR type in this crate's API (`AttachOptions::addr`, `Rtnl::add_address`), so
/// callers need not depend on a matching version themselves.
pub use ipnet;

pub use attach::{attach, detach, AttachError, AttachOptions, Attachment};
pub use netns::{Netns, NetnsError, NetnsId, NetnsRef};
pub use rtnl::{Rtnl, RtnlError};
