//! Link events: an rtnetlink socket subscribed to `RTNLGRP_LINK`, for an event loop
//! that has to notice a host port's interface going down, coming back, or going away.
//!
//! The socket is non-blocking and [`AsFd`], so it sits in a mio or poll loop; when it is
//! readable, [`LinkWatcher::events`] drains what arrived. An event is the interface's
//! state *now* (the kernel sends `RTM_NEWLINK` for any change, not only up and down), so
//! handle events idempotently.
//!
//! If the kernel drops notifications because the socket's queue was full (`ENOBUFS`),
//! the watcher asks for every link again on the same socket and reports each as an
//! event, plus a `gone` event for every interface it knew that is no longer there: the
//! stream stays complete without the caller noticing the overflow.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, MsgFlags};

use crate::netns::Netns;
use crate::rtnl::{align4, encode, link_from_message, RtnlError};

/// Receive buffer asked for (with `SO_RCVBUFFORCE` as root), so that a burst of link
/// changes (a hundred containers starting) does not overflow it.
const SOCKET_BUFFER: usize = 1 << 20;

/// One interface's state, as a link notification reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifindex: u32,
    pub name: String,
    /// Administratively up and running (`IFF_UP` and `IFF_RUNNING`).
    pub up: bool,
    /// The interface is gone (`RTM_DELLINK`: deleted, or moved to another namespace).
    pub gone: bool,
}

/// A non-blocking rtnetlink socket subscribed to link notifications, in the namespace of
/// the thread that opened it.
pub struct LinkWatcher {
    socket: Socket,
    buf: Vec<u8>,
    /// The interfaces known to exist, by index: what a resync compares against.
    known: HashMap<u32, String>,
    /// The dump in progress after an overflow (or at open).
    resync: Option<Resync>,
    /// Whether the answers to the dump in progress are reported (not for the first).
    report_dump: bool,
    /// Notifications were lost again during a resync: start another when it ends.
    resync_again: bool,
    /// Notifications that arrived during the first dump, for the first `events`.
    pending: Vec<LinkEvent>,
    sequence: u32,
}

/// A dump of every link, asked for to learn what notifications were lost.
struct Resync {
    sequence: u32,
    /// The indexes the dump (or a notification since it began) reported.
    seen: HashSet<u32>,
    /// Whether its first answer arrived: notifications queued before it are older than
    /// the dump and do not prove that a link still exists.
    started: bool,
}

impl std::fmt::Debug for LinkWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatcher")
            .field("known", &self.known.len())
            .field("resyncing", &self.resync.is_some())
            .finish()
    }
}

impl AsFd for LinkWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl LinkWatcher {
    /// Subscribes to link notifications of the calling thread's namespace.
    pub fn open() -> Result<LinkWatcher, RtnlError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(RtnlError::Socket)?;
        socket.bind_auto().map_err(RtnlError::Socket)?;
        socket
            .add_membership(libc::RTNLGRP_LINK)
            .map_err(RtnlError::Socket)?;
        if socket::setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
            let _ = socket::setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER);
        }
        socket.set_non_blocking(true).map_err(RtnlError::Socket)?;
        let mut watcher = LinkWatcher {
            socket,
            buf: vec![0; 64 * 1024],
            known: HashMap::new(),
            resync: None,
            report_dump: false,
            resync_again: false,
            pending: Vec::new(),
            sequence: 0,
        };
        // Learn what exists now (subscribed first, so nothing falls in between); the
        // dump's answers are not reported as events, notifications meanwhile are.
        watcher.start_resync()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut pending = Vec::new();
        while watcher.resync.is_some() && Instant::now() < deadline {
            let mut fds = [PollFd::new(watcher.socket.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(100u16)).map_err(|e| RtnlError::Socket(e.into()))?;
            watcher.drain(&mut pending);
        }
        watcher.pending = pending;
        watcher.report_dump = true;
        Ok(watcher)
    }

    /// Subscribes to link notifications of namespace `netns`. The socket keeps
    /// reporting that namespace's links from any thread.
    pub fn open_in(netns: &Netns) -> Result<LinkWatcher, RtnlError> {
        netns
            .run(|| LinkWatcher::open().map_err(RtnlErrorInNs::from))
            .map_err(|RtnlErrorInNs(err)| err)
    }

    /// What arrived since the last call, oldest first; empty when nothing did.
    pub fn events(&mut self) -> Vec<LinkEvent> {
        let mut events = std::mem::take(&mut self.pending);
        self.drain(&mut events);
        events
    }

    fn drain(&mut self, events: &mut Vec<LinkEvent>) {
        loop {
            let n = match socket::recv(self.socket.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::ENOBUFS) => {
                    // Notifications were lost: ask for everything again (after the dump
                    // in progress, if there is one: a socket runs one dump at a time).
                    if self.resync.is_some() {
                        self.resync_again = true;
                    } else {
                        let _ = self.start_resync();
                    }
                    continue;
                }
                // EAGAIN, or the socket is broken: nothing more now.
                Err(_) => return,
            };
            self.parse(n, events);
        }
    }

    fn parse(&mut self, n: usize, events: &mut Vec<LinkEvent>) {
        let mut offset = 0;
        while offset < n {
            let Ok(header) = NetlinkBuffer::new_checked(&self.buf[offset..n]) else {
                return;
            };
            let length = header.length() as usize;
            let sequence = header.sequence_number();
            let frame = &self.buf[offset..offset + length];
            offset += align4(length.max(1));
            let ours = sequence != 0
                && self
                    .resync
                    .as_ref()
                    .is_some_and(|resync| resync.sequence == sequence);
            if ours {
                if let Some(resync) = self.resync.as_mut() {
                    resync.started = true;
                }
            }
            let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) else {
                continue;
            };
            match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    let link = link_from_message(&link);
                    // A link a notification reports during a resync exists, even if
                    // the dump had passed its place already.
                    if let Some(resync) = self.resync.as_mut().filter(|r| r.started) {
                        resync.seen.insert(link.index);
                    }
                    self.known.insert(link.index, link.name.clone());
                    if ours && !self.report_dump {
                        continue;
                    }
                    events.push(LinkEvent {
                        ifindex: link.index,
                        name: link.name,
                        up: link.up && link.oper_up,
                        gone: false,
                    });
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    let link = link_from_message(&link);
                    let name = self.known.remove(&link.index).unwrap_or_default();
                    events.push(LinkEvent {
                        ifindex: link.index,
                        name: if link.name.is_empty() {
                            name
                        } else {
                            link.name
                        },
                        up: false,
                        gone: true,
                    });
                }
                NetlinkPayload::Done(_) if ours => {
                    if let Some(Resync { seen, .. }) = self.resync.take() {
                        let mut missing: Vec<u32> = self
                            .known
                            .keys()
                            .copied()
                            .filter(|index| !seen.contains(index))
                            .collect();
                        missing.sort_unstable();
                        for ifindex in missing {
                            let name = self.known.remove(&ifindex).unwrap_or_default();
                            events.push(LinkEvent {
                                ifindex,
                                name,
                                up: false,
                                gone: true,
                            });
                        }
                    }
                    if std::mem::take(&mut self.resync_again) {
                        let _ = self.start_resync();
                    }
                }
                NetlinkPayload::Error(_) if ours => {
                    // The kernel refused the dump: give up on this one; the next
                    // overflow asks again.
                    self.resync = None;
                    self.resync_again = false;
                }
                _ => {}
            }
        }
    }

    /// Sends a dump request for every link on the watcher's own socket.
    fn start_resync(&mut self) -> Result<(), RtnlError> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let bytes = encode(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            self.sequence,
        );
        self.socket
            .send(&bytes, 0)
            .map_err(|source| RtnlError::Io {
                what: "listing interfaces".to_string(),
                source,
            })?;
        self.resync = Some(Resync {
            sequence: self.sequence,
            seen: HashSet::new(),
            started: false,
        });
        Ok(())
    }
}

/// [`RtnlError`] carried out of [`Netns::run`], which needs `From<NetnsError>`.
struct RtnlErrorInNs(RtnlError);

impl From<RtnlError> for RtnlErrorInNs {
    fn from(err: RtnlError) -> Self {
        RtnlErrorInNs(err)
    }
}

impl From<crate::netns::NetnsError> for RtnlErrorInNs {
    fn from(err: crate::netns::NetnsError) -> Self {
        RtnlErrorInNs(RtnlError::Socket(io::Error::other(err)))
    }
}
