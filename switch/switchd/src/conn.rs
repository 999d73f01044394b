//! One control connection: a byte stream of request lines in, answer lines out, with
//! bounds that keep a misbehaving client from stalling the event loop or growing
//! switchd's memory.
//!
//! * At most [`READ_BUDGET`] bytes are read and [`LINES_PER_TURN`] requests answered per
//!   turn; a connection with more waiting gets another turn after the other work.
//! * While more than [`OUT_HIGH_WATER`] bytes of answers wait for a client that is not
//!   reading them, or a turn's worth of requests waits unanswered, nothing more is read.
//! * A request line longer than [`MAX_REQUEST`] is refused and the connection closed.

use std::io::{self, Read, Write};

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

pub struct Conn {
    pub stream: UnixStream,
    inbuf: Vec<u8>,
    /// Start of the unconsumed part of `inbuf` (consumed bytes are dropped once a turn).
    consumed: usize,
    outbuf: Vec<u8>,
    /// The peer closed its end: nothing more to read.
    eof: bool,
    /// The connection failed or was refused: close once the answers are out (or at once).
    closing: bool,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            consumed: 0,
            outbuf: Vec::new(),
            eof: false,
            closing: false,
        }
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
        self.outbuf.drain(..written);
    }

    /// Nothing more will happen on this connection.
    pub fn finished(&self) -> bool {
        (self.closing || (self.eof && !self.has_line())) && self.outbuf.is_empty()
    }

    /// Whether it deserves another turn without waiting for an event.
    pub fn has_more(&self, stopped_at_budget: bool) -> bool {
        self.outbuf.len() < OUT_HIGH_WATER
            && (self.has_line() || (stopped_at_budget && self.wants_input()))
    }

    pub fn interest(&self) -> Interest {
        if self.outbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }
}
