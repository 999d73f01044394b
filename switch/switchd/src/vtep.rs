//! The VTEP: switchd's end of the VXLAN overlay on the underlay network.
//!
//! One UDP socket bound to the VTEP address and port (4789 by default) receives. Sending
//! goes through a small pool of UDP sockets bound to the same address with ports the
//! kernel picks from its ephemeral range: the inner flow's hash picks the socket, so the
//! outer source port is a stable function of the flow, as RFC 7348 §5 recommends for
//! ECMP in the underlay. The kernel builds the outer IP and UDP headers and checksums.
//!
//! What to send is the core's business (`switchyard::datapath`): it encapsulates, and
//! segments and checksums super-frames (the far end may be a kernel VXLAN device that
//! expects real packets). This module only moves datagrams: one `sendmsg` with
//! `UDP_SEGMENT` for a run of them, `recvmsg` with `UDP_GRO` for runs on the way in.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use switchyard::forward::DEFAULT_PATH_MTU;
use switchyard_encap::flow::pick;

use switchyard_os::sys;

/// Sockets in the sending pool: distinct outer source ports for ECMP entropy.
const TX_POOL: usize = 16;

/// Socket buffers for the underlay sockets: well above the default, for bursts.
const SOCKET_BUFFER: usize = 8 << 20;

/// Sets a socket buffer to [`SOCKET_BUFFER`], past `net.core.*mem_max` when switchd may
/// (CAP_NET_ADMIN), else as far as the limit allows.
fn set_buffer<F: AsFd, Force, Plain>(socket: &F, force: Force, plain: Plain)
where
    Force: nix::sys::socket::SetSockOpt<Val = usize>,
    Plain: nix::sys::socket::SetSockOpt<Val = usize>,
{
    if nix::sys::socket::setsockopt(socket, force, &SOCKET_BUFFER).is_err() {
        let _ = nix::sys::socket::setsockopt(socket, plain, &SOCKET_BUFFER);
    }
}

/// A UDP socket bound to `local` with `SO_REUSEPORT`, so that several can share the port.
fn bind_reuseport(local: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType};
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    nix::sys::socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(local))?;
    Ok(UdpSocket::from(fd))
}

/// This switchd's claim on its VTEP address and port in its network namespace: an
/// abstract Unix socket named `switchyard-vtep-ADDR:PORT` (`\0switchyard-vtep-192.0.2.1:4789`).
///
/// Abstract names belong to the network namespace and vanish with the process that bound
/// them, so a crashed switchd leaves nothing stale behind, and switchds in different
/// namespaces never see each other's. A second switchd on the same VTEP finds the name
/// taken and stops, instead of sharing the UDP port through `SO_REUSEPORT` and quietly
/// taking part of the first one's overlay traffic. It connects to learn the holder's pid
/// (`SO_PEERCRED`); the holder accepts and drops such connections (see [`Vtep::claim_fd`]).
struct Claim {
    listener: std::os::unix::net::UnixListener,
}

impl Claim {
    fn name(local: SocketAddr) -> String {
        format!("switchyard-vtep-{local}")
    }

    fn take(local: SocketAddr) -> Result<Claim> {
        use std::os::linux::net::SocketAddrExt;
        let name = Claim::name(local);
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .with_context(|| format!("cannot name the VTEP claim {name:?}"))?;
        match std::os::unix::net::UnixListener::bind_addr(&addr) {
            Ok(listener) => {
                listener
                    .set_nonblocking(true)
                    .context("cannot set up the VTEP claim")?;
                Ok(Claim { listener })
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                let holder = match Claim::holder(&name) {
                    Some(pid) => format!("pid {pid}"),
                    None => "pid unknown".to_string(),
                };
                anyhow::bail!(
                    "VTEP {local} is already used by another switchd ({holder}) in this network namespace; stop it or pick another --vtep"
                )
            }
            Err(err) => {
                Err(err).with_context(|| format!("cannot claim the VTEP {local} for this switchd"))
            }
        }
    }

    /// The pid of the process holding the claim `name`, if it says.
    fn holder(name: &str) -> Option<i32> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .ok()?;
        // Non-blocking: a holder that is stopped, with its backlog full, makes this fail
        // at once rather than hang.
        connect(
            fd.as_raw_fd(),
            &UnixAddr::new_abstract(name.as_bytes()).ok()?,
        )
        .ok()?;
        let credentials = nix::sys::socket::getsockopt(&fd, sockopt::PeerCredentials).ok()?;
        // 0: the holder is in a pid namespace this one cannot see.
        (credentials.pid() > 0).then_some(credentials.pid())
    }
}

/// Fails if another socket holds `local`'s UDP port, sharing (`SO_REUSEPORT`) or not: a
/// program other than switchd, or the kernel's own VXLAN device. Binds once without
/// `SO_REUSEPORT`, which only a free port allows.
fn check_port_free(local: SocketAddr) -> Result<()> {
    match UdpSocket::bind(local) {
        Ok(_probe) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => anyhow::bail!(
            "VTEP {local}: UDP port {} on {} is already in use by another program or a kernel VXLAN device (`ss -ulpn sport = :{}` shows which); stop it or pick another --vtep",
            local.port(),
            local.ip(),
            local.port()
        ),
        Err(err) if err.kind() == io::ErrorKind::AddrNotAvailable => anyhow::bail!(
            "cannot be the VTEP {local}: {} is not an address of this host in this network namespace; give one of its own to --vtep",
            local.ip()
        ),
        Err(err) => Err(err).with_context(|| {
            format!("cannot bind the VXLAN socket to {local}; is the address configured here and the port free?")
        }),
    }
}

/// Most datagrams one `UDP_SEGMENT` send may carry (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes one `UDP_SEGMENT` send may carry: one IP packet's worth, less headers.
const GSO_MAX_BYTES: usize = 65_000;

/// Sends `records` (datagrams of `stride` bytes, the last possibly shorter) to `to`
/// with as few system calls as the kernel allows: one `sendmsg` with `UDP_SEGMENT` per
/// batch, so the kernel (or the NIC) cuts the datagrams.
fn send_segments(
    socket: &UdpSocket,
    records: &[u8],
    stride: usize,
    to: SocketAddr,
) -> io::Result<()> {
    if records.len() <= stride {
        return socket.send_to(records, to).map(drop);
    }
    let addr = SockaddrStorage::from(to);
    let per_batch = GSO_MAX_SEGMENTS.min(GSO_MAX_BYTES / stride).max(1);
    let segment_size =
        u16::try_from(stride).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    for batch in records.chunks(per_batch * stride) {
        let iov = [IoSlice::new(batch)];
        let gso = [ControlMessage::UdpGsoSegments(&segment_size)];
        let cmsgs: &[ControlMessage] = if batch.len() > stride { &gso } else { &[] };
        sendmsg(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::empty(),
            Some(&addr),
        )?;
    }
    Ok(())
}

/// What [`Vtep::recv_batch`] read.
pub struct Batch {
    pub from: SocketAddr,
    /// Bytes read.
    pub len: usize,
    /// Size of each datagram in the run (the last may be shorter); `len` for one datagram.
    pub segment: usize,
}

/// The VTEP's sockets. Shared by all forwarding threads: sending and receiving need no
/// `&mut`.
pub struct Vtep {
    local: SocketAddr,
    /// Held as long as the sockets: no other switchd may take this VTEP meanwhile.
    claim: Claim,
    /// Whether the kernel coalesces received datagrams (UDP_GRO, Linux 5.0+).
    gro: bool,
    /// Receiving sockets on the VTEP port, one per receiving thread (`SO_REUSEPORT`: the
    /// kernel spreads senders' flows over them).
    rx: Vec<UdpSocket>,
    tx: Vec<UdpSocket>,
}

impl Vtep {
    /// Binds the receiving socket at `local` and the sending pool on the same address.
    /// `udp_checksums: false` sends IPv4 without outer UDP checksums (IPv6 always has them).
    /// Refuses a VTEP another switchd or program already uses in this namespace.
    pub fn bind(local: SocketAddr, udp_checksums: bool, receivers: usize) -> Result<Vtep> {
        let claim = Claim::take(local)?;
        check_port_free(local)?;
        let mut rx = Vec::with_capacity(receivers);
        let mut gro = true;
        for _ in 0..receivers.max(1) {
            let socket = bind_reuseport(local).with_context(|| {
                format!("cannot bind the VXLAN socket to {local}; is the address configured here and the port free?")
            })?;
            socket.set_nonblocking(true)?;
            // Room for bursts: a TCP window of segments arrives faster than one read each.
            set_buffer(&socket, sockopt::RcvBufForce, sockopt::RcvBuf);
            // Let the kernel hand over runs of same-sized datagrams of one flow in one read
            // (UDP GRO); switchd merges their TCP segments (see `switchyard_encap::coalesce`).
            gro &= nix::sys::socket::setsockopt(&socket, sockopt::UdpGroSegment, &true).is_ok();
            rx.push(socket);
        }
        let mut tx = Vec::with_capacity(TX_POOL);
        for _ in 0..TX_POOL {
            let socket = UdpSocket::bind(SocketAddr::new(local.ip(), 0))
                .with_context(|| format!("cannot bind a VXLAN sending socket on {}", local.ip()))?;
            socket.set_nonblocking(true)?;
            set_buffer(&socket, sockopt::SndBufForce, sockopt::SndBuf);
            if local.is_ipv4() && !udp_checksums {
                sys::set_udp_no_check(socket.as_fd(), true)
                    .context("cannot turn off UDP checksums")?;
            }
            tx.push(socket);
        }
        Ok(Vtep {
            local,
            claim,
            gro,
            rx,
            tx,
        })
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The claim's listening socket: readable when another switchd asked who holds this
    /// VTEP ([`Vtep::drop_claim_queries`] answers by closing).
    pub fn claim_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.claim.listener.as_fd()
    }

    /// Accepts and closes the connections of switchds that asked who holds this VTEP
    /// (they read our pid from the connection itself), so they never fill the backlog.
    pub fn drop_claim_queries(&self) {
        loop {
            match self.claim.listener.accept() {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// The receiving sockets, one per receiving thread.
    pub fn receivers(&self) -> usize {
        self.rx.len()
    }

    pub fn rx_fd(&self, index: usize) -> std::os::fd::BorrowedFd<'_> {
        self.rx[index].as_fd()
    }

    /// Asks the kernel for the path MTU towards `peer` (a connected probe socket).
    pub fn learn_path_mtu(&self, peer: SocketAddr) -> u32 {
        let probe = || -> io::Result<u32> {
            let socket = UdpSocket::bind(SocketAddr::new(self.local.ip(), 0))?;
            socket.connect(peer)?;
            if peer.is_ipv4() {
                let mtu = nix::sys::socket::getsockopt(&socket, sockopt::IpMtu)?;
                u32::try_from(mtu)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
            } else {
                sys::ipv6_path_mtu(socket.as_fd())
            }
        };
        probe().unwrap_or_else(|err| {
            tracing::warn!(%peer, "cannot learn the path MTU ({err}); assuming {DEFAULT_PATH_MTU}");
            DEFAULT_PATH_MTU
        })
    }

    /// Sends `datagrams` (VXLAN datagrams of `stride` bytes, the last possibly shorter)
    /// to `remote`, from the pool socket that `flow` picks.
    pub fn send(
        &self,
        remote: SocketAddr,
        flow: u32,
        datagrams: &[u8],
        stride: usize,
    ) -> io::Result<()> {
        let socket = &self.tx[pick(flow, self.tx.len())];
        send_segments(socket, datagrams, stride.max(1), remote)
    }

    /// Reads what is waiting into `buf`: one datagram, or with UDP GRO a run of datagrams
    /// from one sender, each `segment` bytes but the last. `None` when nothing waits.
    pub fn recv_batch(&self, index: usize, buf: &mut [u8]) -> io::Result<Option<Batch>> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsgs = nix::cmsg_space!(i32);
        let control = if self.gro { Some(&mut cmsgs[..]) } else { None };
        let msg = match recvmsg::<SockaddrStorage>(
            self.rx[index].as_raw_fd(),
            &mut iov,
            control,
            MsgFlags::empty(),
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let len = msg.bytes;
        let mut segment = len;
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::UdpGroSegments(size) = cmsg {
                    segment = usize::try_from(size).unwrap_or(len).max(1);
                }
            }
        }
        let from = msg
            .address
            .and_then(|a: SockaddrStorage| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                    })
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "datagram without a sender address",
                )
            })?;
        Ok(Some(Batch { from, len, segment }))
    }
}
