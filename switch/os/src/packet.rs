//! Host ports: an existing interface (a NIC, a bond, one end of a veth pair) read and
//! written through an `AF_PACKET` socket, in the same wire format as a TAP port.
//!
//! A [`PacketPort`] is a raw packet socket bound to one interface, for every protocol,
//! with:
//!
//! * `PACKET_VNET_HDR`: every read and write starts with the 10-byte `virtio_net_hdr`,
//!   so TCP/UDP super-frames cross whole both ways (the kernel hands over what GRO or a
//!   local sender built, and segments what switchd writes if the device cannot);
//! * `PACKET_IGNORE_OUTGOING`: frames sent on the interface (by switchd, or by the
//!   host's own stack) are not read back as input;
//! * `PACKET_MR_PROMISC` membership: the interface is promiscuous while the port is
//!   open. The kernel counts memberships and drops this one when the socket closes, so
//!   dropping the port gives the interface back its own promiscuity;
//! * `PACKET_AUXDATA`: Linux takes the 802.1Q tag off every received frame (in the
//!   driver, by rx VLAN offload, or at the start of the receive path) and keeps it as
//!   metadata. [`PacketPort::read`] puts it back, so a trunk port sees its tags.
//!
//! The descriptor is non-blocking: `read` says `WouldBlock` when nothing is queued.
//!
//! When the interface goes down or is deleted, the next `read` fails once with
//! `ENETDOWN` ([`is_link_down`]) and then says `WouldBlock`; writes fail with `ENETDOWN`
//! (down) or `ENXIO` (deleted). A port on an interface that comes back up reads again by
//! itself; an interface deleted and created again has a new index and needs a new
//! port. [`crate::rtnl::LinkWatcher`] tells which happened.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType};
use switchyard::wire::{VnetHdr, TAG_OFFSET, VLAN_TAG_LEN, VNET_HDR_LEN};

use crate::netns::{Netns, NetnsError};
use crate::rtnl::{validate_ifname, InvalidIfname};
use crate::sys;

/// The socket buffers asked for (with `SO_*BUFFORCE`, as root): room for a few dozen
/// 64 KiB super-frames, where the default holds three.
const SOCKET_BUFFER: usize = 4 << 20;

/// Where the tag goes in a read buffer: after the vnet header and the two addresses.
const TAG_AT: usize = VNET_HDR_LEN + TAG_OFFSET;

/// Lays out a wire image the kernel wrote at `buf[skew..skew + n]` (`skew` 0 or 4) at
/// `buf[0..]`, with `vlan` ((TPID, TCI), taken off by the kernel) put back as an 802.1Q
/// tag after the MAC addresses and the vnet header's offsets moved past it. Returns the
/// new length, or `None` when the tagged frame does not fit in `buf`. A frame too short
/// to have addresses is left untagged.
fn restore_tag(buf: &mut [u8], skew: usize, n: usize, vlan: Option<(u16, u16)>) -> Option<usize> {
    let (tpid, tci) = match vlan {
        Some(tag) if n >= TAG_AT => tag,
        _ => {
            if skew != 0 {
                buf.copy_within(skew..skew + n, 0);
            }
            return Some(n);
        }
    };
    debug_assert!(skew == 0 || skew == VLAN_TAG_LEN);
    if skew == VLAN_TAG_LEN {
        // Read 4 bytes in: move the vnet header and the addresses down (22 bytes); the
        // rest of the frame is already where it belongs.
        buf.copy_within(skew..skew + TAG_AT, 0);
    } else {
        if n + VLAN_TAG_LEN > buf.len() {
            return None;
        }
        // Laid out for an untagged frame: move the rest up by the tag's length.
        buf.copy_within(TAG_AT..n, TAG_AT + VLAN_TAG_LEN);
    }
    buf[TAG_AT..TAG_AT + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[TAG_AT + 2..TAG_AT + 4].copy_from_slice(&tci.to_be_bytes());
    if let Ok(mut hdr) = VnetHdr::new_checked(&mut buf[..VNET_HDR_LEN]) {
        hdr.shift_offsets(VLAN_TAG_LEN as i16);
    }
    Some(n + VLAN_TAG_LEN)
}

/// What went wrong opening a host port; each message names the interface and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    InvalidName(#[from] InvalidIfname),
    #[error("no interface named {0} in that namespace; check the name with `ip link`")]
    NoSuchInterface(String),
    #[error("cannot open an AF_PACKET socket ({0}); this needs root (CAP_NET_RAW)")]
    Socket(#[source] io::Error),
    #[error("cannot bind a packet socket to {name} ({source}); is it still there (`ip link show {name}`)?")]
    Bind {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set {option} on the packet socket of {name} ({source}); this needs Linux 4.20 or later and root")]
    Option {
        name: String,
        option: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether a `read` or `write` error means the interface went down or away (`ENETDOWN`,
/// `ENXIO`, `ENODEV`): not a reason to give up on the port.
pub fn is_link_down(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENETDOWN | Errno::ENXIO | Errno::ENODEV)
    )
}

/// What the kernel counted on a port's socket since the last [`PacketPort::statistics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames queued to the socket.
    pub received: u32,
    /// Frames the kernel dropped because the socket's receive queue was full.
    pub dropped: u32,
}

/// An interface opened as a switch port: an `AF_PACKET` socket with vnet headers.
#[derive(Debug)]
pub struct PacketPort {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    /// Whether the last frame read came with a tag: the next read is laid out for one,
    /// so that on a trunk restoring the tag moves 22 bytes, not the whole frame.
    tagged_last: AtomicBool,
    /// Frames dropped because they did not fit the caller's buffer.
    oversized: AtomicU64,
}

impl AsFd for PacketPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PacketPort {
    /// Opens interface `ifname` of the calling thread's namespace as a port.
    pub fn open(ifname: &str) -> Result<PacketPort, PacketError> {
        validate_ifname(ifname)?;
        let no_such = || PacketError::NoSuchInterface(ifname.to_string());
        let ifindex = nix::net::if_::if_nametoindex(ifname).map_err(|_| no_such())?;
        // Protocol 0: the socket receives nothing until it is bound to the interface
        // below, so no frame of another interface is ever queued.
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| PacketError::Socket(e.into()))?;
        let option = |option: &'static str| {
            move |source: io::Error| PacketError::Option {
                name: ifname.to_string(),
                option,
                source,
            }
        };
        sys::packet_set_int(fd.as_fd(), libc::PACKET_VNET_HDR, 1)
            .map_err(option("PACKET_VNET_HDR"))?;
        sys::packet_set_int(fd.as_fd(), libc::PACKET_AUXDATA, 1)
            .map_err(option("PACKET_AUXDATA"))?;
        sys::packet_set_int(fd.as_fd(), libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(option("PACKET_IGNORE_OUTGOING"))?;
        // Best effort: without CAP_NET_ADMIN the kernel's defaults stay.
        if socket::setsockopt(&fd, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
            let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &SOCKET_BUFFER);
        }
        if socket::setsockopt(&fd, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
            let _ = socket::setsockopt(&fd, sockopt::SndBuf, &SOCKET_BUFFER);
        }
        sys::packet_bind(fd.as_fd(), ifindex).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENODEV) {
                no_such()
            } else {
                PacketError::Bind {
                    name: ifname.to_string(),
                    source,
                }
            }
        })?;
        sys::packet_add_promisc(fd.as_fd(), ifindex).map_err(option("PACKET_MR_PROMISC"))?;
        // Binding to an interface that is down leaves ENETDOWN pending; the port just
        // reads nothing until the interface comes up, so clear it.
        let _ = socket::getsockopt(&fd, sockopt::SocketError);
        Ok(PacketPort {
            fd,
            name: ifname.to_string(),
            ifindex,
            tagged_last: AtomicBool::new(false),
            oversized: AtomicU64::new(0),
        })
    }

    /// Opens interface `ifname` of namespace `netns` as a port. The socket keeps working
    /// from any namespace.
    pub fn open_in(netns: &Netns, ifname: &str) -> Result<PacketPort, PacketError> {
        netns.run(|| PacketPort::open(ifname))
    }

    /// The interface's name when the port was opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads one wire image (vnet header + frame) into `buf`, with the VLAN tag the
    /// kernel took off put back after the MAC addresses (and the vnet header's offsets
    /// moved to match). `WouldBlock` when nothing is queued. A frame that does not fit
    /// in `buf` (leave 4 bytes beyond the largest wire image for the tag) is dropped and
    /// counted in [`PacketPort::oversized`].
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let skew = if self.tagged_last.load(Ordering::Relaxed) {
                VLAN_TAG_LEN
            } else {
                0
            };
            if buf.len() < skew + TAG_AT + 2 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "buffer too small for a frame",
                ));
            }
            let got = sys::packet_recv(self.fd.as_fd(), &mut buf[skew..])?;
            if got.full_len > got.len {
                self.oversized.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match restore_tag(buf, skew, got.len, got.vlan) {
                Some(len) => {
                    self.tagged_last.store(len != got.len, Ordering::Relaxed);
                    return Ok(len);
                }
                None => {
                    self.oversized.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Writes one wire image (vnet header + frame, tagged or not). `WouldBlock` when the
    /// socket's send buffer is full; `ENOBUFS` when the device's queue dropped it.
    pub fn write(&self, wire: &[u8]) -> io::Result<usize> {
        nix::unistd::write(&self.fd, wire).map_err(io::Error::from)
    }

    /// Writes several wire images with one `sendmmsg`. Returns how many went (the first
    /// ones); an error only when none did.
    pub fn write_batch(&self, wires: &[&[u8]]) -> io::Result<usize> {
        sys::send_batch(self.fd.as_fd(), wires)
    }

    /// Frames dropped since the port was opened because they were larger than the
    /// buffer given to [`PacketPort::read`].
    pub fn oversized(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    /// The kernel's counts for the socket since the last call (reading resets them):
    /// `dropped` counts frames lost because switchd did not read fast enough.
    pub fn statistics(&self) -> io::Result<PacketStats> {
        let (received, dropped) = sys::packet_statistics(self.fd.as_fd())?;
        Ok(PacketStats { received, dropped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO wire image of a TCP/IPv4 frame as the kernel hands it over with the tag
    /// taken off: vnet header (NEEDS_CSUM, TCPV4, hdr_len 54, gso_size 1448,
    /// csum_start 34, csum_offset 16), addresses, EtherType 0x0800, then 4 more bytes.
    #[rustfmt::skip]
    const UNTAGGED: [u8; 30] = [
        1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0,
        0x02, 0, 0, 0, 0, 0xbb,  0x02, 0, 0, 0, 0, 0xaa,
        0x08, 0x00,
        0x45, 0, 0x05, 0xdc, 0xee, 0xff,
    ];
    #[rustfmt::skip]
    const TAGGED: [u8; 34] = [
        1, 1, 58, 0, 0xa8, 0x05, 38, 0, 16, 0,
        0x02, 0, 0, 0, 0, 0xbb,  0x02, 0, 0, 0, 0, 0xaa,
        0x81, 0x00, 0x60, 0x0a,
        0x08, 0x00,
        0x45, 0, 0x05, 0xdc, 0xee, 0xff,
    ];

    fn read_at(skew: usize, vlan: Option<(u16, u16)>, room: usize) -> (Option<usize>, Vec<u8>) {
        let mut buf = vec![0x99u8; room];
        buf[skew..skew + UNTAGGED.len()].copy_from_slice(&UNTAGGED);
        let len = restore_tag(&mut buf, skew, UNTAGGED.len(), vlan);
        (len, buf)
    }

    #[test]
    fn tag_goes_back_after_the_addresses_from_either_layout() {
        for skew in [0, VLAN_TAG_LEN] {
            let (len, buf) = read_at(skew, Some((0x8100, 0x600a)), 64);
            assert_eq!(len, Some(TAGGED.len()), "skew {skew}");
            assert_eq!(buf[..TAGGED.len()], TAGGED, "skew {skew}");
        }
    }

    #[test]
    fn untagged_frames_are_moved_to_the_front() {
        for skew in [0, VLAN_TAG_LEN] {
            let (len, buf) = read_at(skew, None, 64);
            assert_eq!(len, Some(UNTAGGED.len()));
            assert_eq!(buf[..UNTAGGED.len()], UNTAGGED);
        }
    }

    #[test]
    fn an_8021ad_tpid_is_kept_and_plain_frames_keep_their_offsets() {
        let mut plain = UNTAGGED;
        plain[..VNET_HDR_LEN].fill(0);
        let mut buf = [0u8; 40];
        buf[..plain.len()].copy_from_slice(&plain);
        assert_eq!(
            restore_tag(&mut buf, 0, plain.len(), Some((0x88a8, 100))),
            Some(34)
        );
        assert_eq!(
            buf[..VNET_HDR_LEN],
            [0; VNET_HDR_LEN],
            "offsets not in use stay 0"
        );
        assert_eq!(buf[22..26], [0x88, 0xa8, 0, 100]);
        assert_eq!(buf[26..28], [0x08, 0x00]);
    }

    #[test]
    fn a_tagged_frame_that_does_not_fit_is_refused() {
        let (len, _) = read_at(0, Some((0x8100, 10)), UNTAGGED.len() + 3);
        assert_eq!(len, None);
        let (len, _) = read_at(0, Some((0x8100, 10)), UNTAGGED.len() + 4);
        assert_eq!(len, Some(TAGGED.len()));
    }

    #[test]
    fn runts_are_left_alone() {
        let mut buf = [7u8; 30];
        assert_eq!(restore_tag(&mut buf, 4, 12, Some((0x8100, 10))), Some(12));
        assert_eq!(buf[..12], [7; 12]);
    }

    #[test]
    fn link_down_errors_are_recognised() {
        for errno in [libc::ENETDOWN, libc::ENXIO, libc::ENODEV] {
            assert!(is_link_down(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_link_down(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(!is_link_down(&io::ErrorKind::WouldBlock.into()));
    }
}
