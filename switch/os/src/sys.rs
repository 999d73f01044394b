//! Every `unsafe` block of switchyard lives here: the TUN/TAP ioctls, which neither nix nor
//! any well-kept crate wraps with `IFF_VNET_HDR` and offload support.

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
