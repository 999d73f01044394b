//! # switchyard-os
//!
//! The operating-system edge of switchyard: everything that needs a file descriptor or a
//! system call, in one implementation that switchd, nsutil and switchyard-cni share.
//!
//! * [`netns`] — naming, opening, identifying (device, inode, cookie), creating and
//!   entering network namespaces; code runs inside one on a short-lived thread.
//! * [`tap`] — persistent TAP devices with a `virtio_net_hdr` and offloads, created
//!   inside a namespace; the uplink's TUN.
//! * [`rtnl`] — a small synchronous rtnetlink client (links, addresses, routes).
//! * [`linkwatch`] — link notifications (up, down, gone) for an event loop.
//! * [`packet`] — host ports: an existing interface read and written through an
//!   `AF_PACKET` socket with vnet headers, promiscuous while open.
//! * [`nft`] — the nftables messages of switchd's NAT table, over netlink.
//! * [`client`] — the blocking client of switchd's control socket.
//! * [`cli`] — what every binary's command line does alike: `--generate-man DIR`, and
//!   clap's usage errors as `PROGRAM: ...` with exit 2.
//! * `sys` — the ioctls and socket options libc and nix lack: the only `unsafe` code
//!   in switchyard, each block with a `// SAFETY:` comment.

#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod linkwatch;
pub mod netns;
pub mod nft;
pub mod packet;
pub mod rtnl;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;

pub use client::{Client, ClientError};
pub use linkwatch::{LinkEvent, LinkWatcher};
pub use netns::{Identity, Netns, NetnsError, NetnsId, NetnsRef};
pub use packet::{PacketError, PacketPort};
pub use rtnl::{Rtnl, RtnlError};
