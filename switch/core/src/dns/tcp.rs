//! DNS over TCP on a gateway's port 53 (RFC 7766): a small TCP responder, as a state
//! machine with no socket and no clock.
//!
//! A client whose UDP answer came back with TC set asks again over TCP; so do resolvers
//! configured for TCP (`options use-vc`). The router hands every TCP segment to a
//! gateway's port 53 over as a [`DnsSegment`]; [`TcpResponder::on_segment`] returns the
//! frames to send back (SYN-ACK, ACK, RST) and the DNS messages the segment completed;
//! the caller answers them ([`super::Responder`] with [`super::Transport::Tcp`], or the
//! forwarder) and hands the answers to [`TcpResponder::queue`], then
//! [`TcpResponder::flush`] sends them. [`TcpResponder::poll`] runs the timers.
//!
//! # Contract
//!
//! * **What a connection is.** One per (VLAN, client address, client port), opened by a
//!   SYN (without ACK) to the gateway's port 53: it gets a SYN-ACK with an initial
//!   sequence number from the caller's seed (xorshift) and an MSS option of
//!   [`MAX_MSS`]. Only passive opens; no window scaling, SACK, timestamps or urgent data
//!   (the SYN-ACK offers none, so the client uses none). Data on a SYN is not taken (the
//!   client sends it again).
//! * **What comes in.** Data is taken in order only: a segment that starts beyond what
//!   was received is dropped (the client sends it again) and answered with an ACK; one
//!   that overlaps what was received gives its new part. A segment that brings nothing new
//!   (a retransmission: our ACK was lost) is ACKed again, and our unacknowledged data is
//!   sent again at once. Checksums are not checked (the TAP's offload leaves them
//!   partial). Everything received is ACKed, piggybacked on the answer when there is one.
//! * **Messages.** The byte stream is DNS messages, each after a 2-byte length: several
//!   in one segment or one over several segments. Each complete message is handed out;
//!   each answer goes back with its length, in as many segments as the client's MSS
//!   (default [`DEFAULT_MSS`] when its SYN had none, at most [`MAX_MSS`], a 1500-byte
//!   MTU's) and its window ask; the last one has PSH set. Answers go in the order they
//!   are queued (a forwarded answer may overtake a local one asked after it: RFC 7766
//!   allows it, clients match by id).
//! * **Bounds.** At most [`MAX_CONNECTIONS`] connections; a SYN beyond that evicts the
//!   connection idle longest (a RST tells its client). Per connection, at most
//!   [`MAX_BUFFERED`] bytes received and not yet read as messages (the window we
//!   advertise is what is left; more is not taken), at most [`MAX_AWAITING`] forwarded
//!   queries awaiting their answer, and at most 2 × [`MAX_BUFFERED`] bytes of answers not
//!   yet acknowledged: messages are read only while fewer than [`MAX_BUFFERED`] are, and a
//!   forwarded answer that does not fit any more is dropped (the client asks again).
//! * **Closing.** A FIN is ACKed; once the messages that came before it are answered
//!   (forwarded ones included), our FIN follows the last answer, and the connection is
//!   forgotten when the client acknowledges it (no TIME-WAIT: a late segment gets a RST).
//!   A RST in the window forgets the connection at once. A SYN on a closing connection
//!   starts a new one; on an open one it gets an ACK (RFC 5961's challenge ACK).
//!   A connection [`IDLE_TIMEOUT`] without a segment from its client gets our FIN (RFC
//!   7766: the server closes idle connections), and is forgotten after one more
//!   [`IDLE_TIMEOUT`] if it has not closed by then. Segments for no connection get a
//!   RST (but RSTs: they get nothing).
//! * **Our retransmissions.** The frames go into the local switch, which loses frames only
//!   under storm control or a full queue, so they are kept simple but still correct:
//!   data (or a SYN-ACK, or a FIN) not acknowledged [`RETRANSMIT_TIMEOUT`] after it was
//!   sent is sent again from the first unacknowledged byte (go-back-N), with the timeout
//!   doubled each time; after [`MAX_RETRANSMITS`] the connection gets a RST and is
//!   forgotten. The timers run when the caller polls ([`TcpResponder::next_timeout`]);
//!   switchd's DNS thread polls at least every 10 s, so a timer may fire that late when
//!   the connection was opened on another thread. A zero window is not probed: the
//!   client's next window update resumes sending.
//! * **Counters** ([`DnsCounters`]): `tcp_connections`, `tcp_evicted`, `tcp_messages`,
//!   `tcp_timeouts`.
//! * **Nothing panics** on any segment.

use std::net::SocketAddrV4;
use std::time::Duration;

use hashbrown::HashMap;

use super::rng::Rng;
use super::service::DnsClient;
use super::DnsCounters;
use crate::router::{DnsSegment, DNS_PORT};
use crate::time::Time;
use crate::wire::{IpProtocol, TcpFlags, TcpPacket, VlanId};

/// Connections at once; one more evicts the one idle longest.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection without a segment from its client for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes received and not yet read, per connection: one message of the largest size with
/// its length.
pub const MAX_BUFFERED: usize = 65535 + 2;
/// Forwarded queries of one connection awaiting their answers; further messages wait.
pub const MAX_AWAITING: usize = 8;
/// The client's MSS when its SYN has no MSS option (RFC 9293).
pub const DEFAULT_MSS: u16 = 536;
/// The largest segment we send, and the MSS we announce: a 1500-byte MTU less the IPv4
/// and TCP headers.
pub const MAX_MSS: u16 = 1460;
/// How long our data waits for its ACK before it is sent again (doubled each time).
pub const RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(1);
/// Times our data is sent again before the connection is given up.
pub const MAX_RETRANSMITS: u32 = 3;

/// Answers not yet acknowledged, per connection.
const MAX_OUT: usize = 2 * MAX_BUFFERED;
/// The smallest MSS taken from a client (smaller ones are raised to it).
const MIN_MSS: u16 = 64;

/// A frame to send into the switch, untagged, on `vlan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpFrame {
    pub vlan: VlanId,
    pub frame: Vec<u8>,
}

/// The key of a connection: (VLAN, client address and port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpKey {
    pub vlan: VlanId,
    pub client: SocketAddrV4,
}

/// One connection, as the forwarder remembers its client: an answer that comes back after
/// the connection is gone is dropped, even if a new one has the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpConnId {
    pub key: TcpKey,
    serial: u64,
}

#[derive(Debug)]
struct Conn {
    serial: u64,
    peer: DnsClient,
    /// Our SYN was acknowledged.
    established: bool,
    iss: u32,
    /// The first byte (or SYN, or FIN) not acknowledged.
    snd_una: u32,
    /// The next byte to send.
    snd_nxt: u32,
    /// Answers (with their lengths) from `snd_una` on: sent and unacknowledged, then not
    /// sent yet.
    out: Vec<u8>,
    /// Our FIN goes after `out`.
    fin_queued: bool,
    fin_sent: bool,
    fin_acked: bool,
    rcv_nxt: u32,
    fin_received: bool,
    /// Received, not yet read as messages.
    input: Vec<u8>,
    mss: usize,
    /// The client's window (unscaled: we offer no window scaling).
    window: u32,
    last_heard: Time,
    /// An idle FIN was sent at `last_heard` (the next idle timeout forgets the connection).
    idle_closed: bool,
    retransmit_at: Option<Time>,
    retransmits: u32,
    awaiting: usize,
    /// An ACK is owed (data or FIN received, or a segment to acknowledge again).
    ack_due: bool,
}

impl Conn {
    fn id(&self) -> TcpConnId {
        TcpConnId {
            key: key_of(&self.peer),
            serial: self.serial,
        }
    }

    /// What we can still take, as a window.
    fn room(&self) -> u16 {
        MAX_BUFFERED
            .saturating_sub(self.input.len())
            .min(usize::from(u16::MAX)) as u16
    }

    fn frame(&self, seq: u32, flags: TcpFlags, data: &[u8]) -> TcpFrame {
        TcpFrame {
            vlan: self.peer.vlan,
            frame: segment_frame(
                &self.peer,
                seq,
                self.rcv_nxt,
                flags | TcpFlags::ACK,
                self.room(),
                false,
                data,
            ),
        }
    }

    fn syn_ack(&self) -> TcpFrame {
        TcpFrame {
            vlan: self.peer.vlan,
            frame: segment_frame(
                &self.peer,
                self.iss,
                self.rcv_nxt,
                TcpFlags::SYN | TcpFlags::ACK,
                self.room(),
                true,
                &[],
            ),
        }
    }

    fn rst(&self) -> TcpFrame {
        TcpFrame {
            vlan: self.peer.vlan,
            frame: segment_frame(&self.peer, self.snd_nxt, 0, TcpFlags::RST, 0, false, &[]),
        }
    }

    /// The complete messages in `input`, while there is room for their answers.
    fn read_messages(&mut self) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        let mut at = 0;
        // Each may be forwarded: read no more than may await answers.
        while self.awaiting + messages.len() < MAX_AWAITING && self.out.len() < MAX_BUFFERED {
            let Some(len) = self.input.get(at..at + 2) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let Some(message) = self.input.get(at + 2..at + 2 + len) else {
                break;
            };
            messages.push(message.to_vec());
            at += 2 + len;
        }
        self.input.drain(..at);
        messages
    }

    fn has_message(&self) -> bool {
        self.input.get(..2).is_some_and(|len| {
            self.input.len() >= 2 + usize::from(u16::from_be_bytes([len[0], len[1]]))
        })
    }

    /// Sends what is due: unsent answers within the client's window, our FIN, or an ACK.
    fn flush(&mut self, now: Time, frames: &mut Vec<TcpFrame>) {
        if !self.established {
            if self.ack_due {
                frames.push(self.syn_ack());
                self.ack_due = false;
            }
            return;
        }
        if self.fin_received && self.awaiting == 0 && !self.has_message() {
            self.fin_queued = true;
        }
        let mut sent = false;
        let window_end = self.snd_una.wrapping_add(self.window);
        loop {
            let offset = self.snd_nxt.wrapping_sub(self.snd_una) as usize;
            if self.fin_sent || offset >= self.out.len() {
                break;
            }
            let allowed = window_end.wrapping_sub(self.snd_nxt) as i32;
            if allowed <= 0 {
                break;
            }
            let n = (self.out.len() - offset)
                .min(self.mss)
                .min(allowed as usize);
            let last = offset + n == self.out.len();
            let mut flags = if last { TcpFlags::PSH } else { TcpFlags(0) };
            if last && self.fin_queued {
                flags |= TcpFlags::FIN;
            }
            let frame = self.frame(self.snd_nxt, flags, &self.out[offset..offset + n]);
            frames.push(frame);
            self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
            if flags.contains(TcpFlags::FIN) {
                self.fin_sent = true;
                self.snd_nxt = self.snd_nxt.wrapping_add(1);
            }
            sent = true;
        }
        let all_sent = self.snd_nxt.wrapping_sub(self.snd_una) as usize >= self.out.len();
        if self.fin_queued && !self.fin_sent && all_sent {
            frames.push(self.frame(self.snd_nxt, TcpFlags::FIN, &[]));
            self.fin_sent = true;
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            sent = true;
        }
        if sent {
            self.ack_due = false;
            if self.retransmit_at.is_none() {
                self.retransmit_at = Some(now + self.backoff());
            }
        } else if self.ack_due {
            frames.push(self.frame(self.snd_nxt, TcpFlags(0), &[]));
            self.ack_due = false;
        }
    }

    fn backoff(&self) -> Duration {
        RETRANSMIT_TIMEOUT * (1 << self.retransmits.min(8))
    }

    /// Sends everything unacknowledged again, from `snd_una`.
    fn go_back(&mut self, now: Time, frames: &mut Vec<TcpFrame>) {
        if !self.established {
            frames.push(self.syn_ack());
            self.retransmit_at = Some(now + self.backoff());
            return;
        }
        if self.snd_nxt == self.snd_una {
            return;
        }
        self.snd_nxt = self.snd_una;
        if !self.fin_acked {
            self.fin_sent = false;
        }
        self.retransmit_at = None;
        self.flush(now, frames);
    }

    /// Whether there is something sent and not acknowledged.
    fn in_flight(&self) -> bool {
        !self.established || self.snd_nxt != self.snd_una
    }
}

/// The TCP connections to every gateway's port 53. See the module documentation.
#[derive(Debug)]
pub struct TcpResponder {
    conns: HashMap<TcpKey, Conn>,
    rng: Rng,
    next_serial: u64,
    counters: DnsCounters,
}

impl TcpResponder {
    /// A responder whose initial sequence numbers come from `seed`.
    pub fn new(seed: u64) -> TcpResponder {
        TcpResponder {
            conns: HashMap::new(),
            rng: Rng::new(seed),
            next_serial: 0,
            counters: DnsCounters::default(),
        }
    }

    /// Connections open (or closing).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The TCP counters (every other field is 0).
    pub fn counters(&self) -> DnsCounters {
        self.counters.clone()
    }

    /// Whether `id` is still open.
    pub fn is_open(&self, id: TcpConnId) -> bool {
        self.conns
            .get(&id.key)
            .is_some_and(|c| c.serial == id.serial)
    }

    /// Takes a segment from a client at `now`: pushes what to send right away onto
    /// `frames` and returns the connection with the messages the segment completed. The
    /// caller queues their answers and then calls [`TcpResponder::flush`], which sends
    /// them together with the ACK (it must, even without messages: the ACK is owed).
    pub fn on_segment(
        &mut self,
        now: Time,
        segment: &DnsSegment,
        frames: &mut Vec<TcpFrame>,
    ) -> Option<(TcpConnId, Vec<Vec<u8>>)> {
        let tcp = TcpPacket::new_checked(&segment.segment[..]).ok()?;
        let peer = DnsClient::of_segment(segment);
        let key = key_of(&peer);
        let flags = tcp.flags();
        let (seq, ack) = (tcp.seq_number(), tcp.ack_number());
        let payload = tcp.payload();

        let Some(conn) = self.conns.get_mut(&key) else {
            if flags.contains(TcpFlags::RST) {
                return None;
            }
            if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
                return self.open(now, peer, seq, mss_option(tcp.options()), frames);
            }
            frames.push(reset_for(&peer, seq, ack, flags, payload.len()));
            return None;
        };

        if flags.contains(TcpFlags::RST) {
            let offset = seq.wrapping_sub(conn.rcv_nxt);
            if offset < u32::from(u16::MAX) + 1 {
                self.conns.remove(&key);
            }
            return None;
        }
        if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) {
                frames.push(reset_for(&peer, seq, ack, flags, payload.len()));
            } else if !conn.established && seq.wrapping_add(1) == conn.rcv_nxt {
                // Our SYN-ACK was lost.
                frames.push(conn.syn_ack());
                conn.last_heard = now;
            } else if conn.fin_received || conn.fin_sent {
                // A new connection on the port of one that is closing.
                self.conns.remove(&key);
                return self.open(now, peer, seq, mss_option(tcp.options()), frames);
            } else {
                // RFC 5961's challenge ACK: a client that lost the connection resets it.
                frames.push(conn.frame(conn.snd_nxt, TcpFlags(0), &[]));
            }
            return None;
        }
        if !flags.contains(TcpFlags::ACK) {
            return None;
        }
        conn.last_heard = now;
        conn.idle_closed = false;
        conn.peer = peer;

        // The ACK.
        if !conn.established {
            if ack != conn.iss.wrapping_add(1) {
                frames.push(reset_for(&peer, seq, ack, flags, payload.len()));
                return None;
            }
            conn.established = true;
            conn.snd_una = ack;
            conn.snd_nxt = ack;
            conn.retransmit_at = None;
            conn.retransmits = 0;
        } else {
            let acked = ack.wrapping_sub(conn.snd_una);
            let in_flight = conn.snd_nxt.wrapping_sub(conn.snd_una);
            if acked > in_flight && (acked as i32) > 0 {
                // Acknowledges what we never sent.
                conn.ack_due = true;
                conn.flush(now, frames);
                return None;
            }
            if acked > 0 && acked <= in_flight {
                let data = (acked as usize).min(conn.out.len());
                conn.out.drain(..data);
                if conn.fin_sent && acked == in_flight {
                    conn.fin_acked = true;
                }
                conn.snd_una = ack;
                conn.retransmits = 0;
                conn.retransmit_at = (conn.snd_nxt != conn.snd_una).then(|| now + conn.backoff());
            }
        }
        conn.window = u32::from(tcp.window());

        // The data and FIN.
        let fin = flags.contains(TcpFlags::FIN);
        let offset = seq.wrapping_sub(conn.rcv_nxt) as i32;
        let mut duplicate = false;
        if offset > 0 {
            // Out of order: dropped, the client sends it again.
            conn.ack_due |= !payload.is_empty() || fin;
        } else {
            let skip = offset.unsigned_abs() as usize;
            let new = payload.get(skip..).unwrap_or_default();
            let new_fin = fin && !conn.fin_received && skip <= payload.len();
            if (!payload.is_empty() || fin) && new.is_empty() && !new_fin {
                duplicate = true;
                conn.ack_due = true;
            }
            let room = MAX_BUFFERED - conn.input.len();
            let take = new.len().min(room);
            conn.input.extend_from_slice(&new[..take]);
            conn.rcv_nxt = conn.rcv_nxt.wrapping_add(take as u32);
            if take > 0 {
                conn.ack_due = true;
            }
            if new_fin && take == new.len() {
                conn.fin_received = true;
                conn.rcv_nxt = conn.rcv_nxt.wrapping_add(1);
                conn.ack_due = true;
            }
        }
        if conn.fin_received && conn.fin_acked {
            if conn.ack_due {
                frames.push(conn.frame(conn.snd_nxt, TcpFlags(0), &[]));
            }
            self.conns.remove(&key);
            return None;
        }
        if duplicate {
            conn.go_back(now, frames);
        }
        let messages = conn.read_messages();
        self.counters.tcp_messages += messages.len() as u64;
        Some((conn.id(), messages))
    }

    fn open(
        &mut self,
        now: Time,
        peer: DnsClient,
        seq: u32,
        mss: Option<u16>,
        frames: &mut Vec<TcpFrame>,
    ) -> Option<(TcpConnId, Vec<Vec<u8>>)> {
        if self.conns.len() >= MAX_CONNECTIONS {
            let oldest = self
                .conns
                .iter()
                .min_by_key(|(_, c)| (c.last_heard, c.serial))
                .map(|(k, _)| *k);
            if let Some(conn) = oldest.and_then(|k| self.conns.remove(&k)) {
                frames.push(conn.rst());
                self.counters.tcp_evicted += 1;
            }
        }
        let iss = self.rng.next_u64() as u32;
        let mss = mss.unwrap_or(DEFAULT_MSS).clamp(MIN_MSS, MAX_MSS);
        let conn = Conn {
            serial: self.next_serial,
            peer,
            established: false,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            out: Vec::new(),
            fin_queued: false,
            fin_sent: false,
            fin_acked: false,
            rcv_nxt: seq.wrapping_add(1),
            fin_received: false,
            input: Vec::new(),
            mss: usize::from(mss),
            window: 0,
            last_heard: now,
            idle_closed: false,
            retransmit_at: Some(now + RETRANSMIT_TIMEOUT),
            retransmits: 0,
            awaiting: 0,
            ack_due: false,
        };
        self.next_serial += 1;
        frames.push(conn.syn_ack());
        self.counters.tcp_connections += 1;
        self.conns.insert(key_of(&peer), conn);
        None
    }

    /// Queues `answer` (a DNS message, without its length) for `id`; `forwarded` when it
    /// answers a query handed to the forwarder ([`TcpResponder::awaiting`]). False when
    /// the connection is gone, or the answer does not fit (dropped).
    pub fn queue(&mut self, id: TcpConnId, answer: &[u8], forwarded: bool) -> bool {
        let Some(conn) = self
            .conns
            .get_mut(&id.key)
            .filter(|c| c.serial == id.serial)
        else {
            return false;
        };
        if forwarded {
            conn.awaiting = conn.awaiting.saturating_sub(1);
        }
        let Ok(len) = u16::try_from(answer.len()) else {
            return false;
        };
        if conn.out.len() + 2 + answer.len() > MAX_OUT || conn.fin_queued {
            return false;
        }
        conn.out.extend_from_slice(&len.to_be_bytes());
        conn.out.extend_from_slice(answer);
        true
    }

    /// Notes that a message of `id` went to the forwarder: its answer comes later.
    pub fn awaiting(&mut self, id: TcpConnId) {
        if let Some(conn) = self
            .conns
            .get_mut(&id.key)
            .filter(|c| c.serial == id.serial)
        {
            conn.awaiting += 1;
        }
    }

    /// Messages of `id` that can be read now that answers went out (see the bounds).
    pub fn read_messages(&mut self, id: TcpConnId) -> Vec<Vec<u8>> {
        let Some(conn) = self
            .conns
            .get_mut(&id.key)
            .filter(|c| c.serial == id.serial)
        else {
            return Vec::new();
        };
        let messages = conn.read_messages();
        self.counters.tcp_messages += messages.len() as u64;
        messages
    }

    /// Sends what `id` has due: queued answers, our FIN, the ACK owed.
    pub fn flush(&mut self, now: Time, id: TcpConnId, frames: &mut Vec<TcpFrame>) {
        if let Some(conn) = self
            .conns
            .get_mut(&id.key)
            .filter(|c| c.serial == id.serial)
        {
            conn.flush(now, frames);
        }
    }

    /// Runs the timers due at `now`: retransmissions, idle connections.
    pub fn poll(&mut self, now: Time, frames: &mut Vec<TcpFrame>) {
        let mut gone = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if conn.retransmit_at.is_some_and(|at| at <= now) {
                if conn.retransmits >= MAX_RETRANSMITS {
                    frames.push(conn.rst());
                    gone.push(*key);
                    continue;
                }
                conn.retransmits += 1;
                conn.go_back(now, frames);
                if !conn.in_flight() {
                    conn.retransmit_at = None;
                }
            }
            if now >= conn.last_heard + IDLE_TIMEOUT {
                if conn.idle_closed || !conn.established || conn.fin_sent {
                    gone.push(*key);
                    continue;
                }
                conn.fin_queued = true;
                conn.idle_closed = true;
                conn.last_heard = now;
                conn.flush(now, frames);
            }
        }
        for key in gone {
            self.conns.remove(&key);
            self.counters.tcp_timeouts += 1;
        }
    }

    /// When [`TcpResponder::poll`] has something to do next.
    pub fn next_timeout(&self) -> Option<Time> {
        self.conns
            .values()
            .flat_map(|c| [c.retransmit_at, Some(c.last_heard + IDLE_TIMEOUT)])
            .flatten()
            .min()
    }
}

fn key_of(peer: &DnsClient) -> TcpKey {
    TcpKey {
        vlan: peer.vlan,
        client: peer.client,
    }
}

/// The client's MSS option, if its SYN has one.
fn mss_option(mut options: &[u8]) -> Option<u16> {
    while let [kind, rest @ ..] = options {
        match kind {
            0 => return None,
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > options.len() {
                    return None;
                }
                if *kind == 2 && len == 4 {
                    return Some(u16::from_be_bytes([options[2], options[3]]));
                }
                options = &options[len..];
            }
        }
    }
    None
}

/// The RST for a segment that belongs to no connection (RFC 9293 §3.10.7.1).
fn reset_for(peer: &DnsClient, seq: u32, ack: u32, flags: TcpFlags, len: usize) -> TcpFrame {
    let frame = if flags.contains(TcpFlags::ACK) {
        segment_frame(peer, ack, 0, TcpFlags::RST, 0, false, &[])
    } else {
        let mut end = seq.wrapping_add(len as u32);
        if flags.contains(TcpFlags::SYN) {
            end = end.wrapping_add(1);
        }
        if flags.contains(TcpFlags::FIN) {
            end = end.wrapping_add(1);
        }
        segment_frame(peer, 0, end, TcpFlags::RST | TcpFlags::ACK, 0, false, &[])
    };
    TcpFrame {
        vlan: peer.vlan,
        frame,
    }
}

/// The untagged Ethernet frame of a segment from the gateway's port 53 to the client:
/// IPv4 (DF) and TCP with full checksums (the frames go to TAPs without offload). `ack` is
/// written whatever the flags; `mss` adds our MSS option (the SYN-ACK's).
fn segment_frame(
    peer: &DnsClient,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    mss: bool,
    data: &[u8],
) -> Vec<u8> {
    let header_len = crate::wire::tcp::HEADER_LEN + if mss { 4 } else { 0 };
    let mut tcp = Vec::with_capacity(header_len + data.len());
    tcp.extend_from_slice(&DNS_PORT.to_be_bytes());
    tcp.extend_from_slice(&peer.client.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(((header_len / 4) as u8) << 4);
    tcp.push(flags.0);
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    if mss {
        tcp.extend_from_slice(&[2, 4]);
        tcp.extend_from_slice(&MAX_MSS.to_be_bytes());
    }
    tcp.extend_from_slice(data);
    peer.frame(IpProtocol::TCP, tcp)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use smoltcp::wire as smol;

    use super::*;
    use crate::wire::MacAddr;

    const CLIENT_MAC: MacAddr = MacAddr([2, 0x42, 10, 1, 0, 2]);
    const GATEWAY_MAC: MacAddr = MacAddr([2, 0x53, 0, 0, 0, 1]);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const SYN: TcpFlags = TcpFlags::SYN;
    const ACK: TcpFlags = TcpFlags::ACK;
    const FIN: TcpFlags = TcpFlags::FIN;
    const RST: TcpFlags = TcpFlags::RST;
    const PSH: TcpFlags = TcpFlags::PSH;

    fn vlan() -> VlanId {
        VlanId::new(10).unwrap()
    }

    /// A segment from the client's `port` to the gateway's port 53 (checksum left 0: it is
    /// not checked).
    fn segment(
        port: u16,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        options: &[u8],
        data: &[u8],
    ) -> DnsSegment {
        let header_len = 20 + options.len();
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&port.to_be_bytes());
        tcp.extend_from_slice(&53u16.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(((header_len / 4) as u8) << 4);
        tcp.push(flags.0);
        tcp.extend_from_slice(&64240u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(options);
        tcp.extend_from_slice(data);
        DnsSegment {
            vlan: vlan(),
            client_mac: CLIENT_MAC,
            client: SocketAddrV4::new(CLIENT, port),
            gateway: GATEWAY,
            gateway_mac: GATEWAY_MAC,
            segment: tcp,
        }
    }

    /// What a frame we sent says, after smoltcp checked its addresses and checksums.
    #[derive(Debug)]
    struct Sent {
        port: u16,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
        mss: Option<u16>,
        data: Vec<u8>,
    }

    fn sent(frame: &TcpFrame) -> Sent {
        assert_eq!(frame.vlan, vlan());
        let eth = smol::EthernetFrame::new_checked(&frame.frame[..]).unwrap();
        assert_eq!(eth.dst_addr().0, CLIENT_MAC.octets());
        assert_eq!(eth.src_addr().0, GATEWAY_MAC.octets());
        assert_eq!(eth.ethertype(), smol::EthernetProtocol::Ipv4);
        let ip = smol::Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY, CLIENT));
        assert_eq!(ip.next_header(), smol::IpProtocol::Tcp);
        let tcp = smol::TcpPacket::new_checked(ip.payload()).unwrap();
        let (src, dst) = (
            smol::IpAddress::Ipv4(GATEWAY),
            smol::IpAddress::Ipv4(CLIENT),
        );
        assert!(tcp.verify_checksum(&src, &dst), "a full TCP checksum");
        let repr = smol::TcpRepr::parse(
            &tcp,
            &src,
            &dst,
            &smoltcp::phy::ChecksumCapabilities::default(),
        )
        .unwrap();
        assert_eq!(tcp.src_port(), 53);
        let mut flags = TcpFlags(0);
        for (on, flag) in [
            (tcp.syn(), SYN),
            (tcp.ack(), ACK),
            (tcp.fin(), FIN),
            (tcp.rst(), RST),
            (tcp.psh(), PSH),
        ] {
            if on {
                flags |= flag;
            }
        }
        Sent {
            port: tcp.dst_port(),
            seq: tcp.seq_number().0 as u32,
            ack: tcp.ack_number().0 as u32,
            flags,
            window: tcp.window_len(),
            mss: repr.max_seg_size,
            data: tcp.payload().to_vec(),
        }
    }

    /// `message` with its 2-byte length.
    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    /// One client connection driven by hand; every message gets "re:" + the message as
    /// its answer at once.
    struct Client {
        tcp: TcpResponder,
        now: Time,
        port: u16,
        /// Our next sequence number.
        seq: u32,
        /// The server's next sequence number, which we acknowledge.
        ack: u32,
        /// Messages the responder handed out.
        read: Vec<Vec<u8>>,
    }

    impl Client {
        fn new() -> Client {
            Client {
                tcp: TcpResponder::new(7),
                now: Time::from_secs(1),
                port: 40000,
                seq: 1000,
                ack: 0,
                read: Vec::new(),
            }
        }

        /// Sends a segment at our sequence number and returns what came back.
        fn send_at(&mut self, seq: u32, flags: TcpFlags, options: &[u8], data: &[u8]) -> Vec<Sent> {
            let seg = segment(self.port, seq, self.ack, flags, options, data);
            let mut frames = Vec::new();
            if let Some((id, messages)) = self.tcp.on_segment(self.now, &seg, &mut frames) {
                for message in messages {
                    let answer = [b"re:", &message[..message.len().min(65532)]].concat();
                    assert!(self.tcp.queue(id, &answer, false));
                    self.read.push(message);
                }
                self.tcp.flush(self.now, id, &mut frames);
            }
            frames.iter().map(sent).collect()
        }

        fn send(&mut self, flags: TcpFlags, data: &[u8]) -> Vec<Sent> {
            let out = self.send_at(self.seq, flags, &[], data);
            self.seq = self.seq.wrapping_add(data.len() as u32);
            if flags.intersects(SYN | FIN) {
                self.seq = self.seq.wrapping_add(1);
            }
            out
        }

        /// SYN (with `options`), SYN-ACK, ACK.
        fn connect(&mut self, options: &[u8]) {
            let out = self.send_at(self.seq, SYN, options, &[]);
            self.seq += 1;
            let [syn_ack] = out.as_slice() else {
                panic!("{out:?}")
            };
            assert_eq!(syn_ack.flags, SYN | ACK);
            assert_eq!(syn_ack.ack, self.seq);
            assert_eq!(syn_ack.port, self.port);
            assert_eq!(syn_ack.mss, Some(MAX_MSS));
            assert!(syn_ack.data.is_empty());
            self.ack = syn_ack.seq.wrapping_add(1);
            assert!(self.send(ACK, &[]).is_empty(), "nothing to say to an ACK");
        }

        /// Acknowledges everything in `out`.
        fn take(&mut self, out: &[Sent]) {
            for s in out {
                let mut end = s.seq.wrapping_add(s.data.len() as u32);
                if s.flags.contains(FIN) {
                    end = end.wrapping_add(1);
                }
                if end.wrapping_sub(self.ack) as i32 > 0 {
                    self.ack = end;
                }
            }
        }
    }

    #[test]
    fn a_handshake_then_one_message() {
        let mut c = Client::new();
        c.connect(&[2, 4, 0x05, 0xb4]);
        assert_eq!(c.tcp.connections(), 1);
        let out = c.send(PSH | ACK, &framed(b"query"));
        let [answer] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(c.read, [b"query".to_vec()]);
        assert_eq!(answer.flags, PSH | ACK, "the ACK rides on the answer");
        assert_eq!((answer.seq, answer.ack), (c.ack, c.seq));
        assert_eq!(answer.data, framed(b"re:query"));
        assert_eq!(answer.window, MAX_BUFFERED.min(65535) as u16);
        c.take(&out);
        assert!(c.send(ACK, &[]).is_empty());
        assert_eq!(c.tcp.next_timeout(), Some(c.now + IDLE_TIMEOUT));
        let counters = c.tcp.counters();
        assert_eq!((counters.tcp_connections, counters.tcp_messages), (1, 1));
    }

    #[test]
    fn a_lost_syn_ack_is_sent_again() {
        let mut c = Client::new();
        let first = c.send_at(c.seq, SYN, &[], &[]);
        let again = c.send_at(c.seq, SYN, &[], &[]);
        assert_eq!(first.len(), 1);
        assert_eq!(again.len(), 1);
        assert_eq!((first[0].seq, first[0].ack), (again[0].seq, again[0].ack));
        // And on our timer too.
        let mut frames = Vec::new();
        c.tcp.poll(c.now + RETRANSMIT_TIMEOUT, &mut frames);
        assert_eq!(sent(&frames[0]).flags, SYN | ACK);
        assert_eq!(c.tcp.counters().tcp_connections, 1);
    }

    #[test]
    fn two_messages_in_one_segment_and_one_across_three() {
        let mut c = Client::new();
        c.connect(&[]);
        let out = c.send(PSH | ACK, &[framed(b"one"), framed(b"two")].concat());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, [framed(b"re:one"), framed(b"re:two")].concat());
        c.take(&out);

        let whole = framed(b"split message");
        let out = c.send(ACK, &whole[..1]);
        let [ack] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((ack.flags, ack.ack), (ACK, c.seq), "half a length is ACKed");
        assert!(ack.data.is_empty());
        assert_eq!(
            ack.window, 65535,
            "64 KiB + 1 left, as much as a window says"
        );
        assert!(c.send(ACK, &whole[1..5]).iter().all(|s| s.data.is_empty()));
        let out = c.send(PSH | ACK, &whole[5..]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, framed(b"re:split message"));
        assert_eq!(c.read.len(), 3);
    }

    #[test]
    fn fin_is_answered_with_fin_and_the_connection_forgotten() {
        let mut c = Client::new();
        c.connect(&[]);
        let out = c.send(FIN | ACK, &[]);
        let [fin] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((fin.flags, fin.ack), (FIN | ACK, c.seq));
        c.take(&out);
        assert_eq!(c.tcp.connections(), 1, "until our FIN is ACKed");
        assert!(c.send(ACK, &[]).is_empty());
        assert_eq!(c.tcp.connections(), 0);
        // A late segment: RST.
        let out = c.send(ACK, &[]);
        assert_eq!((out[0].flags, out[0].seq), (RST, c.ack));
    }

    #[test]
    fn a_query_then_fin_in_one_segment_gets_its_answer_then_fin() {
        let mut c = Client::new();
        c.connect(&[]);
        let out = c.send(FIN | PSH | ACK, &framed(b"q"));
        let [answer] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(answer.flags, FIN | PSH | ACK);
        assert_eq!(answer.data, framed(b"re:q"));
        assert_eq!(answer.ack, c.seq);
        c.take(&out);
        assert!(c.send(ACK, &[]).is_empty());
        assert_eq!(c.tcp.connections(), 0);
    }

    #[test]
    fn fin_waits_for_a_forwarded_answer() {
        let mut tcp = TcpResponder::new(1);
        let now = Time::from_secs(1);
        let mut frames = Vec::new();
        tcp.on_segment(now, &segment(5000, 9, 0, SYN, &[], &[]), &mut frames);
        let iss = sent(&frames[0]).seq;
        let (id, _) = tcp
            .on_segment(now, &segment(5000, 10, iss + 1, ACK, &[], &[]), &mut frames)
            .unwrap();
        frames.clear();
        let data = framed(b"far");
        let (id2, messages) = tcp
            .on_segment(
                now,
                &segment(5000, 10, iss + 1, FIN | ACK, &[], &data),
                &mut frames,
            )
            .unwrap();
        assert_eq!((id, messages.len()), (id2, 1));
        tcp.awaiting(id);
        tcp.flush(now, id, &mut frames);
        let [ack] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        assert_eq!(sent(ack).flags, ACK, "no FIN while an answer is awaited");
        assert_eq!(sent(ack).ack, 10 + data.len() as u32 + 1);
        frames.clear();
        assert!(tcp.queue(id, b"from upstream", true));
        tcp.flush(now, id, &mut frames);
        let answer = sent(&frames[0]);
        assert_eq!(answer.flags, FIN | PSH | ACK);
        assert_eq!(answer.data, framed(b"from upstream"));
        // Gone: a late answer is dropped.
        tcp.on_segment(
            now,
            &segment(
                5000,
                10 + data.len() as u32 + 1,
                answer.seq + answer.data.len() as u32 + 1,
                ACK,
                &[],
                &[],
            ),
            &mut frames,
        );
        assert_eq!(tcp.connections(), 0);
        assert!(!tcp.queue(id, b"late", true));
        assert!(!tcp.is_open(id));
    }

    #[test]
    fn rst_forgets_the_connection_when_in_the_window() {
        let mut c = Client::new();
        c.connect(&[]);
        assert!(c
            .send_at(c.seq.wrapping_add(1 << 20), RST, &[], &[])
            .is_empty());
        assert_eq!(
            c.tcp.connections(),
            1,
            "a RST outside the window is ignored"
        );
        assert!(c.send(RST, &[]).is_empty());
        assert_eq!(c.tcp.connections(), 0);
        assert!(c.send(RST, &[]).is_empty(), "a RST never gets a RST");
    }

    #[test]
    fn retransmitted_data_is_acked_again_with_what_we_sent() {
        let mut c = Client::new();
        c.connect(&[]);
        let data = framed(b"again");
        let start = c.seq;
        let first = c.send(PSH | ACK, &data);
        assert_eq!(first.len(), 1);
        // Our answer (and its ACK) was lost: the client sends its query again.
        let out = c.send_at(start, PSH | ACK, &[], &data);
        let [again] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((again.seq, again.ack), (first[0].seq, c.seq));
        assert_eq!(
            again.data, first[0].data,
            "our unacknowledged answer, once more"
        );
        assert_eq!(c.read.len(), 1, "the query is not read twice");
        c.take(&out);
        // With the answer acknowledged, a retransmission only gets an ACK.
        assert!(c.send(ACK, &[]).is_empty());
        let out = c.send_at(start, PSH | ACK, &[], &data);
        let [ack] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((ack.flags, ack.ack, ack.data.len()), (ACK, c.seq, 0));
        // Out of order: dropped and ACKed where we are.
        let out = c.send_at(c.seq + 5, PSH | ACK, &[], &data);
        assert_eq!((out[0].ack, out[0].data.len()), (c.seq, 0));
        assert_eq!(c.read.len(), 1);
    }

    #[test]
    fn unacknowledged_answers_are_sent_again_then_given_up() {
        let mut c = Client::new();
        c.connect(&[]);
        let first = c.send(PSH | ACK, &framed(b"q"));
        let mut at = c.now;
        for n in 0..MAX_RETRANSMITS {
            let due = c.tcp.next_timeout().unwrap();
            assert_eq!(due, at + RETRANSMIT_TIMEOUT * (1 << n));
            at = due;
            let mut frames = Vec::new();
            c.tcp.poll(due, &mut frames);
            let [again] = frames.as_slice() else {
                panic!("{frames:?}")
            };
            assert_eq!(sent(again).data, first[0].data);
            assert_eq!(sent(again).seq, first[0].seq);
        }
        // Idle meanwhile: our FIN goes after the answer, then the retransmissions are
        // over: RST.
        let mut last = Vec::new();
        while let Some(due) = c.tcp.next_timeout() {
            c.tcp.poll(due, &mut last);
        }
        let flags: Vec<TcpFlags> = last.iter().map(|f| sent(f).flags).collect();
        assert_eq!(flags, [FIN | ACK, RST]);
        assert_eq!(c.tcp.connections(), 0);
        assert_eq!(c.tcp.counters().tcp_timeouts, 1);
    }

    #[test]
    fn idle_connections_are_closed() {
        let mut c = Client::new();
        c.connect(&[]);
        let idle = c.now + IDLE_TIMEOUT;
        assert_eq!(c.tcp.next_timeout(), Some(idle));
        let mut frames = Vec::new();
        c.tcp
            .poll(Time::from_millis(idle.as_millis() - 1), &mut frames);
        assert!(frames.is_empty());
        c.tcp.poll(idle, &mut frames);
        let [fin] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        assert_eq!(sent(fin).flags, FIN | ACK);
        // The client never answers: forgotten one more timeout later (our FIN was sent
        // again meanwhile).
        frames.clear();
        c.tcp.poll(idle + IDLE_TIMEOUT, &mut frames);
        assert_eq!(c.tcp.connections(), 0);
        assert_eq!(c.tcp.counters().tcp_timeouts, 1);
    }

    #[test]
    fn connections_are_bounded_and_the_one_idle_longest_goes() {
        let mut tcp = TcpResponder::new(3);
        let mut frames = Vec::new();
        for i in 0..MAX_CONNECTIONS as u16 {
            let now = Time::from_millis(u64::from(i));
            tcp.on_segment(now, &segment(10000 + i, 1, 0, SYN, &[], &[]), &mut frames);
        }
        assert_eq!(tcp.connections(), MAX_CONNECTIONS);
        // The first one speaks up: the second is now idle longest.
        let iss = sent(&frames[0]).seq;
        let later = Time::from_secs(5);
        tcp.on_segment(
            later,
            &segment(10000, 2, iss + 1, ACK, &[], &[]),
            &mut frames,
        );
        frames.clear();
        tcp.on_segment(later, &segment(20000, 1, 0, SYN, &[], &[]), &mut frames);
        assert_eq!(tcp.connections(), MAX_CONNECTIONS);
        let out: Vec<Sent> = frames.iter().map(sent).collect();
        assert_eq!((out[0].flags, out[0].port), (RST, 10001), "{out:?}");
        assert_eq!((out[1].flags, out[1].port), (SYN | ACK, 20000));
        assert_eq!(tcp.counters().tcp_evicted, 1);
        assert_eq!(tcp.counters().tcp_connections, MAX_CONNECTIONS as u64 + 1);
    }

    #[test]
    fn an_answer_bigger_than_the_mss_goes_in_several_segments() {
        let mut c = Client::new();
        c.connect(&[]); // no MSS option: 536
        let big = vec![0xab; 1500];
        let out = c.send(PSH | ACK, &framed(&big));
        let sizes: Vec<usize> = out.iter().map(|s| s.data.len()).collect();
        // "re:" + 1500 + 2 bytes of length = 1505.
        assert_eq!(sizes, [536, 536, 433]);
        assert!(out[..2].iter().all(|s| s.flags == ACK));
        assert_eq!(out[2].flags, PSH | ACK);
        let stream: Vec<u8> = out.iter().flat_map(|s| s.data.clone()).collect();
        assert_eq!(stream, framed(&[b"re:", &big[..]].concat()));
        for pair in out.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + pair[0].data.len() as u32);
        }

        // A large MSS is capped at ours.
        let mut c = Client::new();
        c.connect(&[1, 1, 1, 1, 2, 4, 0x23, 0x28]); // NOPs, MSS 9000
        let out = c.send(PSH | ACK, &framed(&big));
        assert_eq!(
            out.iter().map(|s| s.data.len()).collect::<Vec<_>>(),
            [1460, 45]
        );
    }

    #[test]
    fn the_clients_window_is_respected() {
        let mut tcp = TcpResponder::new(3);
        let now = Time::from_secs(1);
        let mut frames = Vec::new();
        tcp.on_segment(now, &segment(7, 1, 0, SYN, &[], &[]), &mut frames);
        let iss = sent(&frames[0]).seq;
        frames.clear();
        let mut ack = segment(7, 2, iss + 1, PSH | ACK, &[], &framed(b"q"));
        ack.segment[14..16].copy_from_slice(&100u16.to_be_bytes());
        let (id, _) = tcp.on_segment(now, &ack, &mut frames).unwrap();
        tcp.queue(id, &[0; 300], false);
        tcp.flush(now, id, &mut frames);
        assert_eq!(
            frames
                .iter()
                .map(|f| sent(f).data.len())
                .collect::<Vec<_>>(),
            [100]
        );
        // The client takes it and opens its window.
        frames.clear();
        tcp.on_segment(now, &segment(7, 5, iss + 101, ACK, &[], &[]), &mut frames);
        tcp.flush(now, id, &mut frames);
        assert_eq!(
            frames
                .iter()
                .map(|f| sent(f).data.len())
                .collect::<Vec<_>>(),
            [202]
        );
    }

    #[test]
    fn input_is_bounded() {
        let mut c = Client::new();
        c.connect(&[]);
        let chunk = vec![0; 1460];
        // Sends `len` bytes of a message of 65535 after its length; the last ACK.
        let send_big = |c: &mut Client, extra: usize| {
            let mut out = c.send(ACK, &[0xff, 0xff]);
            let mut left = 65535 + extra;
            while left > 0 {
                let n = chunk.len().min(left);
                out = c.send(ACK, &chunk[..n]);
                left -= n;
            }
            out
        };
        let answers = send_big(&mut c, 0);
        assert_eq!(c.read.len(), 1, "the whole 65535-byte message");
        // Its answer is not acknowledged: the next message is received but not read, and
        // what goes beyond MAX_BUFFERED is not taken.
        let start = c.seq;
        let out = send_big(&mut c, 100);
        assert_eq!(c.read.len(), 1);
        let ack = out.last().unwrap();
        assert_eq!(ack.ack, start.wrapping_add(MAX_BUFFERED as u32));
        assert_eq!(ack.window, 0);
        // The client takes our answer: the message is read and the window opens.
        c.take(&answers);
        c.seq = start.wrapping_add(MAX_BUFFERED as u32);
        let out = c.send(ACK, &[]);
        assert_eq!(c.read.len(), 2);
        assert_eq!(out[0].window, 65535);
        assert_eq!(out[0].data.len(), 536);
    }

    #[test]
    fn segments_without_a_connection_get_a_reset() {
        let mut tcp = TcpResponder::new(3);
        let mut frames = Vec::new();
        tcp.on_segment(
            Time::ZERO,
            &segment(9, 100, 555, ACK, &[], b"x"),
            &mut frames,
        );
        let rst = sent(&frames[0]);
        assert_eq!((rst.flags, rst.seq), (RST, 555));
        frames.clear();
        tcp.on_segment(
            Time::ZERO,
            &segment(9, 100, 0, FIN, &[], b"xy"),
            &mut frames,
        );
        let rst = sent(&frames[0]);
        assert_eq!((rst.flags, rst.seq, rst.ack), (RST | ACK, 0, 103));
        assert_eq!(tcp.connections(), 0);
        // Garbage is ignored.
        frames.clear();
        let mut short = segment(9, 1, 0, SYN, &[], &[]);
        short.segment.truncate(19);
        assert!(tcp.on_segment(Time::ZERO, &short, &mut frames).is_none());
        assert!(frames.is_empty());
    }

    #[test]
    fn mss_options() {
        assert_eq!(mss_option(&[2, 4, 1, 0]), Some(256));
        assert_eq!(mss_option(&[1, 3, 3, 7, 2, 4, 5, 0xb4]), Some(1460));
        assert_eq!(mss_option(&[0, 2, 4, 1, 0]), None);
        assert_eq!(mss_option(&[3, 0]), None);
        assert_eq!(mss_option(&[2, 4, 1]), None);
        assert_eq!(mss_option(&[2]), None);
        assert_eq!(mss_option(&[]), None);
    }
}
