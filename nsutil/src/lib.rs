//! # nsutil
//!
//! Wires network namespaces (containers) to switchd. Shared by the `nsutil` command and
//! the CNI plugin.
//!
//! * [`netns`] and [`rtnl`] — namespaces and the rtnetlink client, from the OS layer
//!   (`switchyard-os`), which switchd shares.
//! * [`mod@attach`] — the attach/detach workflow: validate, ask switchd for a TAP inside the
//!   namespace, configure it there, and roll back if any step fails.
//!
//! Nothing here runs external commands.

#![forbid(unsafe_code)]

pub mod attach;
pub mod resolv;
/// Namespaces and rtnetlink live in the OS layer, which switchd shares.
pub use switchyard_os::{netns, rtnl};

/// The CIDR type in this crate's API (`AttachOptions::addr`, `Rtnl::add_address`), so
/// callers need not depend on a matching version themselves.
pub use ipnet;

pub use attach::{attach, detach, AttachError, AttachOptions, Attachment};
pub use netns::{Netns, NetnsError, NetnsId, NetnsRef};
pub use rtnl::{Rtnl, RtnlError};
