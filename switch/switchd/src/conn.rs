//! One control connection: a byte stream of request lines in, answer lines out, with
//! bounds that keep a misbehaving client from stalling the event loop, spinning it, or
//! growing switchd's memory, and keep room for everyone else.
//!
//! | bound | value | what happens |
//! | --- | --- | --- |
//! | request size | [`MAX_REQUEST`] (1 MiB) | a longer line is refused (`request_too_long`) and the connection closed |
//! | work per turn | [`READ_BUDGET`] (64 KiB) read, [`LINES_PER_TURN`] (32) answered | a connection with more waiting gets another turn after the other work |
//! | answers buffered | [`OUT_HIGH_WATER`] (64 KiB) unsent | above it, nothing more is read *or answered* for that client, and it is not scheduled again until it reads (the socket reports it writable) |
//! | idle time | [`IDLE_TIMEOUT`] (30 s) | a connection that neither completes a request nor takes any answer bytes for that long is closed: an idle one, and one whose answers pile up unread |
//! | connections | `daemon::MAX_CONNS` (256) | at the cap, a new client is let in by closing the connection idle the longest |
//!
//! A connection is only watched for what it can act on: not for input while its answers
//! wait unread, so a client that keeps writing and never reads costs nothing until it
//! reads or times out.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::Interest;

/// Bytes read from one connection per turn.
pub const READ_BUDGET: usize = 64 * 1024;
/// Requests answered per connection per turn.
pub const LINES_PER_TURN: usize = 32;
/// Unsent answer bytes above which a connection is not read from.
pub const OUT_HIGH_WATER: usize = 64 * 1024;
/// The longest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;
/// A connection without a complete request or an answer byte taken for this long is
/// closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is at the other end of a connection, from `SO_PEERCRED` when it was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

impl Peer {
    /// The client of `stream`, if the kernel says.
    pub fn of(stream: &UnixStream) -> Option<Peer> {
        let credentials =
            nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()?;
        Some(Peer {
            uid: credentials.uid(),
            pid: credentials.pid(),
        })
    }
}

pub struct Conn {
    pub stream: UnixStream,
    /// The client, for the log of what it changes.
    pub peer: Option<Peer>,
    inbuf: Vec<u8>,
    /// Start of the unconsumed part of `inbuf` (consumed bytes are dropped once a turn).
    consumed: usize,
    outbuf: Vec<u8>,
    /// The peer closed its end: nothing more to read.
    eof: bool,
    /// The connection failed or was refused: close once the answers are out (or at once).
    closing: bool,
    /// When it was accepted, last completed a request, or last took answer bytes.
    last_progress: Instant,
    /// What the event loop watches it for.
    registered: Interest,
}

impl Conn {
    /// A connection just accepted, registered for [`Interest::READABLE`].
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            peer: Peer::of(&stream),
            stream,
            inbuf: Vec::new(),
            consumed: 0,
            outbuf: Vec::new(),
            eof: false,
            closing: false,
            last_progress: Instant::now(),
            registered: Interest::READABLE,
        }
    }

    /// How long since it last made progress (see [`IDLE_TIMEOUT`]).
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_progress)
    }

    /// When it times out unless it makes progress first.
    pub fn deadline(&self) -> Instant {
        self.last_progress + IDLE_TIMEOUT
    }

    /// Whether another request may be answered now: not while answers pile up unread.
    pub fn may_answer(&self) -> bool {
        !self.closing && self.outbuf.len() < OUT_HIGH_WATER
    }

    /// Whether the connection may read more now: not while a turn's worth of input is
    /// still unanswered, nor while answers pile up unread.
    pub fn wants_input(&self) -> bool {
        let unanswered = self.inbuf.len() - self.consumed >= READ_BUDGET && self.has_line();
        !self.eof && !self.closing && !unanswered && self.outbuf.len() < OUT_HIGH_WATER
    }

    /// Reads what is waiting, up to the budget. Returns true if it stopped at the budget
    /// (more may be waiting, and edge-triggered polling will not say so again).
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let mut read = 0;
        while read < READ_BUDGET {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    read += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closing = true;
                    return false;
                }
            }
        }
        true
    }

    /// The next complete request line, if any, without its newline.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let rest = &self.inbuf[self.consumed..];
        let end = rest.iter().position(|b| *b == b'\n')?;
        let line = rest[..end].to_vec();
        self.consumed += end + 1;
        self.last_progress = Instant::now();
        Some(line)
    }

    /// Whether a complete request line is waiting.
    pub fn has_line(&self) -> bool {
        self.inbuf[self.consumed..].contains(&b'\n')
    }

    /// Drops consumed input; refuses and closes on an over-long request.
    pub fn end_turn(&mut self, overlong_answer: impl FnOnce() -> String) {
        self.inbuf.drain(..self.consumed);
        self.consumed = 0;
        if self.inbuf.len() > MAX_REQUEST && !self.has_line() {
            self.push_answer(&overlong_answer());
            self.inbuf.clear();
            self.closing = true;
        }
    }

    pub fn push_answer(&mut self, line: &str) {
        self.outbuf.extend_from_slice(line.as_bytes());
        self.outbuf.push(b'\n');
    }

    /// Writes as much of the pending answers as the socket takes.
    pub fn flush(&mut self) {
        let mut written = 0;
        while written < self.outbuf.len() {
            match self.stream.write(&self.outbuf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closing = true;
                    self.outbuf.clear();
                    return;
                }
            }
        }
        if written > 0 {
            self.outbuf.drain(..written);
            self.last_progress = Instant::now();
        }
    }

    /// The socket and the answers not yet written, for a request that takes the
    /// connection over (a capture).
    pub fn into_parts(self) -> (UnixStream, Vec<u8>) {
        (self.stream, self.outbuf)
    }

    /// Nothing more will happen on this connection.
    pub fn finished(&self) -> bool {
        (self.closing || (self.eof && !self.has_line())) && self.outbuf.is_empty()
    }

    /// Whether it deserves another turn without waiting for an event.
    pub fn has_more(&self, stopped_at_budget: bool) -> bool {
        self.may_answer() && (self.has_line() || (stopped_at_budget && self.wants_input()))
    }

    /// What to watch the connection for, if that changed since it was last registered.
    /// Input only while it may read; output only while answers wait. Re-registering
    /// re-arms the readiness a connection already has, so doing it every turn for a
    /// client whose unread input is being ignored would spin the event loop.
    pub fn interest_change(&mut self) -> Option<Interest> {
        let wanted = match (self.wants_input(), self.outbuf.is_empty()) {
            (true, false) => Interest::READABLE | Interest::WRITABLE,
            (false, false) => Interest::WRITABLE,
            // Nothing to write: watch for input, or at least for the hang-up.
            (_, true) => Interest::READABLE,
        };
        if wanted == self.registered {
            return None;
        }
        self.registered = wanted;
        Some(wanted)
    }
}
