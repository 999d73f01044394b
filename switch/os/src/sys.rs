//! Every `unsafe` block of switchyard lives here: the TUN/TAP ioctls, which neither nix nor
//! any well-kept crate wraps with `IFF_VNET_HDR` and offload support, and the AF_PACKET
//! socket options and control messages of host ports.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TUNGETDEVNETNS` (`_IO('T', 227)`): the network namespace the device of a TUN/TAP
/// descriptor lives in, wherever the descriptor is now.
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// A descriptor of the network namespace the TUN/TAP device behind `fd` lives in
/// (Linux 5.2+; needs CAP_NET_ADMIN).
pub fn tun_device_netns(fd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor (or -1);
    // `fd` is an open TUN/TAP descriptor for the duration of the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETDEVNETNS as _) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `rc` is a descriptor the kernel just opened for us; nothing else owns it.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(rc) })
}

/// `TUNGETIFF`: the current name of the TUN/TAP device behind `fd` (it follows renames
/// and moves to other namespaces).
pub fn tun_get_name(fd: BorrowedFd<'_>) -> io::Result<String> {
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open TUN/TAP descriptor for the call; TUNGETIFF writes exactly
    // one `struct ifreq`, which `ifr` is, and the kernel does not keep the pointer.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let name: Vec<u8> = ifr.ifr_name.iter().map(|c| *c as u8).collect();
    CStr::from_bytes_until_nul(&name)
        .ok()
        .and_then(|c| c.to_str().ok())
        .map(String::from)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the device's name is not a string",
            )
        })
}

/// `TUNSETIFF`: creates the TAP `name` (or attaches to an existing one of that name) with
/// `flags` (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`...). Returns the name the kernel used.
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_int) -> io::Result<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} must be 1 to {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is a plain C struct (arrays and a union of integers and arrays) for
    // which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: `fd` is an open /dev/net/tun descriptor for the duration of the call;
    // TUNSETIFF reads and writes exactly one `struct ifreq`, which `ifr` is, and the
    // kernel does not keep the pointer.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let used: Vec<u8> = ifr.ifr_name.iter().map(|c| *c as u8).collect();
    let used = CStr::from_bytes_until_nul(&used).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "kernel returned an unterminated name",
        )
    })?;
    Ok(used.to_string_lossy().into_owned())
}

/// `TUNSETPERSIST`: whether the TAP outlives the last descriptor attached to it.
pub fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    tun_ioctl_by_value(fd, libc::TUNSETPERSIST, libc::c_ulong::from(persist))
}

/// `TUNSETOFFLOAD`: the offloads the reader (switchd) accepts: with TSO the kernel hands
/// over TCP super-frames of up to 64 KiB instead of segmenting them first.
pub fn tun_set_offload(fd: BorrowedFd<'_>, flags: libc::c_uint) -> io::Result<()> {
    tun_ioctl_by_value(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags))
}

/// A TUN ioctl whose argument is an integer passed by value (not a pointer).
fn tun_ioctl_by_value(
    fd: BorrowedFd<'_>,
    request: libc::Ioctl,
    value: libc::c_ulong,
) -> io::Result<()> {
    // SAFETY: only called with TUNSETPERSIST and TUNSETOFFLOAD, which take their argument
    // by value and touch no user memory; `fd` is an open tun descriptor for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The path MTU the kernel knows for a *connected* IPv6 socket (`IPV6_MTU`; nix wraps
/// only the IPv4 `IP_MTU`).
pub fn ipv6_path_mtu(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `mtu`, a live c_int, and updates
    // `len`; `fd` is an open socket for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// `SO_NO_CHECK` from asm-generic/socket.h (libc exports it for no Linux target).
const SO_NO_CHECK: libc::c_int = 11;

/// `SO_NO_CHECK`: send IPv4 UDP datagrams with a zero (absent) checksum.
pub fn set_udp_no_check(fd: BorrowedFd<'_>, no_check: bool) -> io::Result<()> {
    let value = libc::c_int::from(no_check);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`, a live c_int;
    // `fd` is an open socket for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NO_CHECK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_NETNS_COOKIE` from asm-generic/socket.h (Linux 5.14+; not in libc).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `fd` belongs to: unique among all namespaces
/// since boot, never reused (unlike nsfs inode numbers).
pub fn netns_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (8) bytes into `cookie`, a live u64, and
    // updates `len`; `fd` is an open socket for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

// AF_PACKET host ports (packet.rs). nix creates the socket and reads and writes plain
// buffers, but it has no safe constructor for `sockaddr_ll` (`LinkAddr`), no
// `SOL_PACKET` socket options and no `PACKET_AUXDATA` control message, so those go
// through libc here.

/// `setsockopt(fd, SOL_PACKET, option, &value)` for the integer options
/// (`PACKET_VNET_HDR`, `PACKET_AUXDATA`, `PACKET_IGNORE_OUTGOING`, ...).
pub fn packet_set_int(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`, a live c_int;
    // `fd` is an open socket for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a packet socket to interface `ifindex`, receiving every protocol (`ETH_P_ALL`).
pub fn packet_bind(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    // SAFETY: sockaddr_ll is a plain C struct for which all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: bind reads exactly `size_of::<sockaddr_ll>()` bytes from `addr`, a live
    // sockaddr_ll, and does not keep the pointer; `fd` is an open socket for the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`: the interface is promiscuous while
/// the socket is open. The kernel counts such memberships and drops this one when the
/// socket is closed, so the interface's own promiscuity setting comes back by itself.
pub fn packet_add_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    // SAFETY: packet_mreq is a plain C struct for which all-zero bytes are a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
    // SAFETY: setsockopt reads exactly `size_of::<packet_mreq>()` bytes from `mreq`, a
    // live packet_mreq; `fd` is an open packet socket for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PACKET_STATISTICS`: frames the socket received and frames the kernel dropped for
/// want of room in its receive queue, since the last call (reading resets them).
pub fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `stats`, a live tpacket_stats,
    // and updates `len`; `fd` is an open packet socket for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stats.tp_packets, stats.tp_drops))
}

/// What one [`packet_recv`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRecv {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The datagram's full length; more than `len` when it did not fit (`MSG_TRUNC`).
    pub full_len: usize,
    /// The 802.1Q tag the kernel took off the frame on receive (rx VLAN offload, or the
    /// untagging every Linux receive path does): (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

/// `recvmsg` of one datagram from a packet socket with `PACKET_AUXDATA` on, into `buf`.
pub fn packet_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<PacketRecv> {
    // Room for one cmsghdr + tpacket_auxdata (16 + 20 bytes), u64-aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, both live and
    // exclusively borrowed for the call; the kernel writes at most their lengths and
    // keeps no pointer. MSG_TRUNC makes it return the datagram's full length.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let full_len = n as usize;
    let mut vlan = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, bounded
    // by `msg.msg_controllen`; a PACKET_AUXDATA message carries one tpacket_auxdata,
    // read unaligned because CMSG_DATA guarantees no alignment for it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                let aux =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata);
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    vlan = Some((tpid, aux.tp_vlan_tci));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(PacketRecv {
        len: full_len.min(buf.len()),
        full_len,
        vlan,
    })
}

/// `sendmmsg` of `wires` on a bound packet socket, one datagram each. Returns how many
/// the kernel took (the first ones); an error only when it took none.
pub fn send_batch(fd: BorrowedFd<'_>, wires: &[&[u8]]) -> io::Result<usize> {
    const MAX: usize = 64;
    let mut sent = 0;
    while sent < wires.len() {
        let chunk = &wires[sent..wires.len().min(sent + MAX)];
        let mut iovs: [libc::iovec; MAX] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for (i, wire) in chunk.iter().enumerate() {
            iovs[i].iov_base = wire.as_ptr() as *mut libc::c_void;
            iovs[i].iov_len = wire.len();
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each of the first `chunk.len()` mmsghdrs points at one iovec over a
        // live `&[u8]`; sendmmsg only reads them (the cast to *mut is for the C type) and
        // writes `msg_len` into `msgs`, which is ours; nothing is kept after the call.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if sent == 0 { Err(err) } else { Ok(sent) };
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    Ok(sent)
}
