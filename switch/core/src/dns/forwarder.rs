//! The state machine for queries that go to upstream resolvers.
//!
//! [`Forwarder::forward`] takes a client's query and returns what to send to which
//! upstream, under a fresh id; [`Forwarder::on_upstream_reply`] takes what came back and
//! returns it for the client, under the client's id; [`Forwarder::poll_timeouts`] moves
//! tries that got no answer on to the next upstream, and answers SERVFAIL once
//! [`MAX_TRIES`] upstreams have had their turn. The driver owns the sockets and the
//! timer ([`Forwarder::next_timeout`]).
//!
//! * **Ids.** Each query in flight has an id drawn at random (from the caller's seed)
//!   among those not in flight; it keeps it through its retries, so a slow answer from an
//!   upstream tried earlier is still taken.
//! * **Order.** A query starts at the upstream that answered last (at first the first
//!   one), so a dead resolver costs one timeout, not one per query, and goes on to the
//!   next in the list.
//! * **Bounds.** At most `max_pending` (default 1024, at most 16384) queries in flight;
//!   one more gets SERVFAIL at once. A query longer than [`MAX_FORWARDED_QUERY`] is not
//!   kept for retries: SERVFAIL. The same query (same client, id and question) sent again
//!   while in flight is not sent again: its answer will serve both.
//! * **What is taken back.** A datagram from an upstream this query was sent to, with a
//!   pending id, QR set, and the question that was asked (names compared without regard
//!   to case; an error reply without a question is taken too). Anything else is a stray,
//!   dropped and counted. What is taken is passed on as it came, but for the id.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

use hashbrown::HashMap;
use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use serde::{Deserialize, Serialize};

use super::header::{question_end, same_question, Header, HEADER_LEN};
use super::rng::Rng;
use super::{DnsCounters, Transport, MAX_UDP_PAYLOAD};
use crate::time::Time;

/// Upstreams a query is sent to, one after the other, before the client gets SERVFAIL
/// (Docker's embedded DNS tries 3 too). Fewer if fewer are configured.
pub const MAX_TRIES: usize = 3;
/// The longest query that is forwarded (real ones are a few hundred bytes).
pub const MAX_FORWARDED_QUERY: usize = 4096;
/// The most queries in flight that `max_pending` may ask for: a quarter of the ids, so
/// a free one is found in about one draw.
const MAX_PENDING_LIMIT: usize = 16384;

/// The upstreams and limits of a [`Forwarder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForwarderConfig {
    /// The resolvers to forward to, in order of preference (switchd: the host's
    /// `resolv.conf`). Only the first [`MAX_TRIES`] are ever tried for one query.
    pub upstreams: Vec<SocketAddr>,
    /// How long one try waits for its answer before the next upstream is asked.
    pub timeout: Duration,
    /// Queries in flight at once (1 to 16384).
    pub max_pending: usize,
}

impl Default for ForwarderConfig {
    fn default() -> ForwarderConfig {
        ForwarderConfig {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            max_pending: 1024,
        }
    }
}

/// A query to send to an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub upstream: SocketAddr,
    /// The transport the client used: a query that came over TCP goes over TCP, so a
    /// large answer is not truncated again.
    pub transport: Transport,
    /// The client's query with a fresh id (without TCP's length prefix).
    pub bytes: Vec<u8>,
}

/// What the forwarder asks the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<C> {
    /// A query for an upstream.
    Send(Outgoing),
    /// A reply for a client (SERVFAIL, here).
    Reply { client: C, bytes: Vec<u8> },
}

/// The key that recognises a query sent again: the client, its id and its question
/// (the name lowercased).
type ClientKey<C> = (C, u16, Box<[u8]>);

#[derive(Debug)]
struct Pending<C> {
    client: C,
    client_id: u16,
    transport: Transport,
    /// The query under our id.
    query: Vec<u8>,
    /// Where its question ends.
    question_end: usize,
    /// The upstream list's index it started at.
    first: usize,
    /// Upstreams sent to so far, in order.
    tried: Vec<SocketAddr>,
    deadline: Time,
    /// What the client gets if no upstream answers.
    servfail: Vec<u8>,
}

impl<C: Copy> Pending<C> {
    fn key(&self) -> ClientKey<C> {
        client_key(self.client, self.client_id, &self.query, self.question_end)
    }
}

fn client_key<C>(client: C, id: u16, query: &[u8], question_end: usize) -> ClientKey<C> {
    let mut question = query[HEADER_LEN..question_end].to_vec();
    let name_end = question.len().saturating_sub(4);
    question[..name_end].make_ascii_lowercase();
    (client, id, question.into_boxed_slice())
}

/// Forwarded queries in flight, keyed by our id. `C` is the driver's name for a client
/// (its address for UDP, a connection for TCP). See the module documentation.
#[derive(Debug)]
pub struct Forwarder<C> {
    config: ForwarderConfig,
    pending: HashMap<u16, Pending<C>>,
    by_client: HashMap<ClientKey<C>, u16>,
    /// Every pending query by deadline: the timer.
    deadlines: BTreeSet<(Time, u16)>,
    /// The upstream that answered last.
    preferred: usize,
    rng: Rng,
    counters: DnsCounters,
}

impl<C: Copy + Eq + Hash> Forwarder<C> {
    /// A forwarder whose ids come from `seed` (switchd: random from the OS).
    pub fn new(config: ForwarderConfig, seed: u64) -> Forwarder<C> {
        let mut config = config;
        config.max_pending = config.max_pending.clamp(1, MAX_PENDING_LIMIT);
        Forwarder {
            config,
            pending: HashMap::new(),
            by_client: HashMap::new(),
            deadlines: BTreeSet::new(),
            preferred: 0,
            rng: Rng::new(seed),
            counters: DnsCounters::default(),
        }
    }

    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// Replaces the upstreams (the host's `resolv.conf` changed). Queries in flight keep
    /// waiting for the upstreams they were sent to; their retries go to the new list.
    pub fn set_upstreams(&mut self, upstreams: Vec<SocketAddr>) {
        self.config.upstreams = upstreams;
        self.preferred = 0;
    }

    /// The forwarder's counters (the responder's fields are 0).
    pub fn counters(&self) -> DnsCounters {
        self.counters.clone()
    }

    /// Queries in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When [`Forwarder::poll_timeouts`] has something to do next.
    pub fn next_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Takes `query` from `client` (which came over `transport`) at `now`: the query to
    /// send upstream, a SERVFAIL for the client (no upstream, too many in flight, too
    /// long), or nothing (it cannot be read, or is already in flight; counted).
    pub fn forward(
        &mut self,
        now: Time,
        client: C,
        transport: Transport,
        query: &[u8],
    ) -> Option<Action<C>> {
        let Some(header) = Header::new_checked(query) else {
            self.counters.malformed_dropped += 1;
            return None;
        };
        let (Some(question_end), Ok(request)) = (question_end(query), Message::from_vec(query))
        else {
            self.counters.malformed_dropped += 1;
            return None;
        };
        if header.is_response() || header.question_count() != 1 {
            self.counters.malformed_dropped += 1;
            return None;
        }
        let Some(servfail) = servfail(&request) else {
            self.counters.malformed_dropped += 1;
            return None;
        };
        if query.len() > MAX_FORWARDED_QUERY || self.config.upstreams.is_empty() {
            self.counters.servfail += 1;
            return Some(Action::Reply {
                client,
                bytes: servfail,
            });
        }
        let key = client_key(client, header.id(), query, question_end);
        if self.by_client.contains_key(&key) {
            self.counters.duplicates += 1;
            return None;
        }
        if self.pending.len() >= self.config.max_pending {
            self.counters.pending_full += 1;
            self.counters.servfail += 1;
            return Some(Action::Reply {
                client,
                bytes: servfail,
            });
        }
        let id = loop {
            let id = self.rng.next_u16();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut bytes = query.to_vec();
        if let Some(mut ours) = Header::new_checked(&mut bytes[..]) {
            ours.set_id(id);
        }
        let first = self.preferred % self.config.upstreams.len();
        let upstream = self.config.upstreams[first];
        let deadline = now + self.config.timeout;
        self.pending.insert(
            id,
            Pending {
                client,
                client_id: header.id(),
                transport,
                query: bytes.clone(),
                question_end,
                first,
                tried: vec![upstream],
                deadline,
                servfail,
            },
        );
        self.by_client.insert(key, id);
        self.deadlines.insert((deadline, id));
        self.counters.upstream_queries += 1;
        Some(Action::Send(Outgoing {
            upstream,
            transport,
            bytes,
        }))
    }

    /// Takes `reply` from `from`: the client it is for and the reply under the client's
    /// id, or `None` for a stray (counted).
    pub fn on_upstream_reply(&mut self, from: SocketAddr, reply: &[u8]) -> Option<(C, Vec<u8>)> {
        let Some(id) = self.match_reply(from, reply) else {
            self.counters.stray_replies += 1;
            return None;
        };
        let pending = self.remove(id)?;
        if let Some(index) = self.config.upstreams.iter().position(|u| *u == from) {
            self.preferred = index;
        }
        let mut bytes = reply.to_vec();
        if let Some(mut header) = Header::new_checked(&mut bytes[..]) {
            header.set_id(pending.client_id);
        }
        self.counters.upstream_replies += 1;
        Some((pending.client, bytes))
    }

    /// The pending id `reply` answers, if it is a genuine answer from `from`.
    fn match_reply(&self, from: SocketAddr, reply: &[u8]) -> Option<u16> {
        let header = Header::new_checked(reply)?;
        if !header.is_response() {
            return None;
        }
        let pending = self.pending.get(&header.id())?;
        if !pending.tried.contains(&from) {
            return None;
        }
        let answers_it = match header.question_count() {
            0 => header.rcode() != 0,
            1 => question_end(reply).is_some_and(|end| {
                same_question(
                    &reply[HEADER_LEN..end],
                    &pending.query[HEADER_LEN..pending.question_end],
                )
            }),
            _ => false,
        };
        answers_it.then_some(header.id())
    }

    /// Tries whose time is up at `now`: each goes to the next upstream, or, when
    /// [`MAX_TRIES`] (or every configured upstream) had their turn, its client gets
    /// SERVFAIL.
    pub fn poll_timeouts(&mut self, now: Time) -> Vec<Action<C>> {
        let mut actions = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.counters.upstream_timeouts += 1;
            let upstreams = &self.config.upstreams;
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            let tries = pending.tried.len();
            if tries < MAX_TRIES.min(upstreams.len()) {
                let upstream = upstreams[(pending.first + tries) % upstreams.len()];
                pending.tried.push(upstream);
                pending.deadline = now + self.config.timeout;
                self.deadlines.insert((pending.deadline, id));
                self.counters.upstream_queries += 1;
                actions.push(Action::Send(Outgoing {
                    upstream,
                    transport: pending.transport,
                    bytes: pending.query.clone(),
                }));
            } else if let Some(pending) = self.remove(id) {
                self.counters.servfail += 1;
                actions.push(Action::Reply {
                    client: pending.client,
                    bytes: pending.servfail,
                });
            }
        }
        actions
    }

    fn remove(&mut self, id: u16) -> Option<Pending<C>> {
        let pending = self.pending.remove(&id)?;
        self.deadlines.remove(&(pending.deadline, id));
        self.by_client.remove(&pending.key());
        Some(pending)
    }
}

/// SERVFAIL for `request`: its id and question, RD and CD copied, RA set, an OPT record
/// if it had one.
fn servfail(request: &Message) -> Option<Vec<u8>> {
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    reply.metadata.response_code = ResponseCode::ServFail;
    reply.add_query(request.queries.first()?.clone());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply.set_edns(edns);
    }
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use hickory_proto::op::MessageType;
    use hickory_proto::rr::RecordType;
    use proptest::prelude::*;

    use super::*;
    use crate::dns::testutil::{answer, bytes, query, query_edns};

    type Client = SocketAddrV4;

    fn upstream(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 53))
    }

    fn client(n: u8) -> Client {
        SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, n), 40000 + u16::from(n))
    }

    fn forwarder(upstreams: u8) -> Forwarder<Client> {
        Forwarder::new(
            ForwarderConfig {
                upstreams: (1..=upstreams).map(upstream).collect(),
                ..ForwarderConfig::default()
            },
            99,
        )
    }

    const T0: Time = Time::from_secs(10);

    fn send(action: Option<Action<Client>>) -> Outgoing {
        match action {
            Some(Action::Send(out)) => out,
            other => panic!("expected a query upstream, got {other:?}"),
        }
    }

    fn servfail_for(action: &Action<Client>) -> (Client, Message) {
        match action {
            Action::Reply { client, bytes } => (*client, Message::from_vec(bytes).unwrap()),
            other => panic!("expected a reply to the client, got {other:?}"),
        }
    }

    fn id_of(bytes: &[u8]) -> u16 {
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[test]
    fn queries_go_out_under_a_fresh_id_and_come_back_under_the_clients() {
        let mut f = forwarder(2);
        let q = bytes(&query(0x1111, "example.com", RecordType::A));
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        assert_eq!(out.upstream, upstream(1));
        assert_eq!(out.transport, Transport::Udp);
        assert_eq!(out.bytes[2..], q[2..], "only the id changes");
        assert_eq!(f.pending(), 1);
        assert_eq!(f.next_timeout(), Some(T0 + Duration::from_secs(2)));

        let reply = answer(&out.bytes, Ipv4Addr::new(93, 184, 216, 34));
        let (to, relayed) = f.on_upstream_reply(upstream(1), &reply).unwrap();
        assert_eq!(to, client(5));
        assert_eq!(id_of(&relayed), 0x1111);
        assert_eq!(relayed[2..], reply[2..], "passed on as it came");
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_timeout(), None);
        // Once answered, the same reply again is a stray.
        assert!(f.on_upstream_reply(upstream(1), &reply).is_none());
        let c = f.counters();
        assert_eq!(
            (c.upstream_queries, c.upstream_replies, c.stray_replies),
            (1, 1, 1)
        );
    }

    #[test]
    fn ids_in_flight_are_distinct_and_not_the_clients() {
        let mut f = Forwarder::<Client>::new(
            ForwarderConfig {
                upstreams: vec![upstream(1)],
                max_pending: 4000,
                ..ForwarderConfig::default()
            },
            7,
        );
        let mut ids = std::collections::BTreeSet::new();
        let mut same_as_client = 0;
        for n in 0..3000u16 {
            let q = bytes(&query(n, "example.com", RecordType::A));
            let out = send(f.forward(T0, client(1), Transport::Udp, &q));
            ids.insert(id_of(&out.bytes));
            same_as_client += usize::from(id_of(&out.bytes) == n);
        }
        assert_eq!(ids.len(), 3000);
        assert!(
            same_as_client < 5,
            "ids are not the client's: {same_as_client}"
        );
        // Two seeds, two sequences.
        let mut other = Forwarder::<Client>::new(f.config().clone(), 8);
        let q = bytes(&query(0, "example.com", RecordType::A));
        let first = |f: &mut Forwarder<Client>| {
            id_of(&send(f.forward(T0, client(2), Transport::Udp, &q)).bytes)
        };
        let mut fresh = Forwarder::<Client>::new(f.config().clone(), 7);
        assert_ne!(first(&mut fresh), first(&mut other));
    }

    #[test]
    fn strays_are_dropped_and_counted() {
        let mut f = forwarder(2);
        let q = bytes(&query(0x2222, "example.com", RecordType::A));
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        let reply = answer(&out.bytes, Ipv4Addr::new(1, 2, 3, 4));

        // From an address that is no upstream, or an upstream not asked yet.
        assert!(f
            .on_upstream_reply(SocketAddr::from(([10, 1, 0, 66], 53)), &reply)
            .is_none());
        assert!(f.on_upstream_reply(upstream(2), &reply).is_none());
        // Another port of the upstream's address.
        assert!(f
            .on_upstream_reply(SocketAddr::from(([192, 0, 2, 1], 5353)), &reply)
            .is_none());
        // An id nothing waits for.
        let mut wrong_id = reply.clone();
        wrong_id[0] ^= 0x55;
        assert!(f.on_upstream_reply(upstream(1), &wrong_id).is_none());
        // QR clear.
        let mut not_response = reply.clone();
        not_response[2] &= 0x7f;
        assert!(f.on_upstream_reply(upstream(1), &not_response).is_none());
        // Another question (name or type).
        let mut other_type = reply.clone();
        let end = question_end(&reply).unwrap();
        other_type[end - 3] = 28;
        assert!(f.on_upstream_reply(upstream(1), &other_type).is_none());
        let other_name = answer(
            &bytes(&query(id_of(&out.bytes), "example.org", RecordType::A)),
            Ipv4Addr::new(1, 2, 3, 4),
        );
        assert!(f.on_upstream_reply(upstream(1), &other_name).is_none());
        // Too short to be anything.
        assert!(f.on_upstream_reply(upstream(1), &reply[..11]).is_none());
        assert!(f
            .on_upstream_reply(upstream(1), &reply[..HEADER_LEN + 3])
            .is_none());
        assert_eq!(f.counters().stray_replies, 9);
        assert_eq!(f.pending(), 1, "still waiting for the real answer");

        // The real one, with the name in other case (0x20 bit), is taken.
        let mut upper = reply.clone();
        upper[HEADER_LEN + 1..HEADER_LEN + 8].copy_from_slice(b"EXAMPLE");
        let (to, relayed) = f.on_upstream_reply(upstream(1), &upper).unwrap();
        assert_eq!((to, id_of(&relayed)), (client(5), 0x2222));
    }

    #[test]
    fn error_replies_without_a_question_are_taken() {
        let mut f = forwarder(1);
        let q = bytes(&query(0x3333, "example.com", RecordType::A));
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        let id = id_of(&out.bytes);
        let noerror_empty = crate::dns::header::header_only(id, 0, true, 0);
        assert!(f.on_upstream_reply(upstream(1), &noerror_empty).is_none());
        let refused = crate::dns::header::header_only(id, 0, true, 5);
        let (_, relayed) = f.on_upstream_reply(upstream(1), &refused).unwrap();
        assert_eq!(id_of(&relayed), 0x3333);
        assert_eq!(Header::new_checked(&relayed[..]).unwrap().rcode(), 5);
    }

    #[test]
    fn a_timeout_fails_over_to_the_next_upstream_then_servfail() {
        let mut f = forwarder(4);
        let q = bytes(&query_edns(0x4444, "example.com", RecordType::A, 1232));
        let out = send(f.forward(T0, client(5), Transport::Tcp, &q));
        assert_eq!(out.upstream, upstream(1));
        let timeout = Duration::from_secs(2);

        assert!(f.poll_timeouts(T0 + Duration::from_millis(1999)).is_empty());
        let second = f.poll_timeouts(T0 + timeout);
        let [Action::Send(retry)] = &second[..] else {
            panic!("one retry: {second:?}");
        };
        assert_eq!(retry.upstream, upstream(2));
        assert_eq!(retry.bytes, out.bytes, "the same query, the same id");
        assert_eq!(retry.transport, Transport::Tcp);

        let t2 = T0 + timeout * 2;
        assert_eq!(f.next_timeout(), Some(t2));
        let third = f.poll_timeouts(t2);
        let [Action::Send(retry)] = &third[..] else {
            panic!("one retry: {third:?}");
        };
        assert_eq!(retry.upstream, upstream(3));

        // Three upstreams had their turn (the fourth never does): SERVFAIL.
        let last = f.poll_timeouts(T0 + timeout * 3);
        assert_eq!(last.len(), 1);
        let (to, servfail) = servfail_for(&last[0]);
        assert_eq!(to, client(5));
        assert_eq!(servfail.metadata.id, 0x4444);
        assert_eq!(servfail.metadata.message_type, MessageType::Response);
        assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
        assert!(servfail.metadata.recursion_desired && servfail.metadata.recursion_available);
        assert_eq!(servfail.queries, Message::from_vec(&q).unwrap().queries);
        assert!(servfail.edns.is_some(), "an OPT record, as the query had");
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_timeout(), None);
        assert!(f.poll_timeouts(T0 + timeout * 10).is_empty());
        let c = f.counters();
        assert_eq!(
            (c.upstream_queries, c.upstream_timeouts, c.servfail),
            (3, 3, 1)
        );
    }

    #[test]
    fn with_fewer_upstreams_fewer_tries() {
        for n in [1u8, 2] {
            let mut f = forwarder(n);
            let q = bytes(&query(1, "example.com", RecordType::A));
            send(f.forward(T0, client(5), Transport::Udp, &q));
            let mut sent = 1;
            let mut now = T0;
            loop {
                now = now + Duration::from_secs(2);
                let actions = f.poll_timeouts(now);
                match &actions[..] {
                    [Action::Send(_)] => sent += 1,
                    [Action::Reply { .. }] => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(sent, n, "{n} upstream(s), {n} tries");
        }
    }

    #[test]
    fn a_late_answer_from_an_earlier_upstream_is_taken_and_it_becomes_preferred() {
        let mut f = forwarder(3);
        let q = bytes(&query(0x5555, "example.com", RecordType::A));
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        f.poll_timeouts(T0 + Duration::from_secs(2));
        // The second upstream answers: the next query starts there.
        let reply = answer(&out.bytes, Ipv4Addr::new(1, 2, 3, 4));
        assert!(f.on_upstream_reply(upstream(2), &reply).is_some());
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        assert_eq!(out.upstream, upstream(2));
        f.poll_timeouts(T0 + Duration::from_secs(4));
        // Now on upstream 3; the first one it went to may still answer.
        let reply = answer(&out.bytes, Ipv4Addr::new(1, 2, 3, 4));
        let (to, _) = f.on_upstream_reply(upstream(2), &reply).unwrap();
        assert_eq!(to, client(5));
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_timeout(), None, "its retry timer is gone too");
    }

    #[test]
    fn the_pending_table_is_bounded() {
        let mut f = Forwarder::<Client>::new(
            ForwarderConfig {
                upstreams: vec![upstream(1)],
                max_pending: 2,
                ..ForwarderConfig::default()
            },
            1,
        );
        for id in 0..2 {
            let q = bytes(&query(id, "example.com", RecordType::A));
            send(f.forward(T0, client(5), Transport::Udp, &q));
        }
        let q = bytes(&query(9, "example.com", RecordType::A));
        let refused = f.forward(T0, client(5), Transport::Udp, &q).unwrap();
        let (to, servfail) = servfail_for(&refused);
        assert_eq!((to, servfail.metadata.id), (client(5), 9));
        assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(f.pending(), 2);
        let c = f.counters();
        assert_eq!((c.pending_full, c.servfail, c.upstream_queries), (1, 1, 2));
        // Room again once one is answered or given up.
        f.poll_timeouts(T0 + Duration::from_secs(2));
        assert_eq!(f.pending(), 0);
        send(f.forward(T0, client(5), Transport::Udp, &q));
    }

    #[test]
    fn a_query_sent_again_while_in_flight_is_not_sent_twice() {
        let mut f = forwarder(1);
        let q = bytes(&query(0x6666, "example.com", RecordType::A));
        let out = send(f.forward(T0, client(5), Transport::Udp, &q));
        assert_eq!(f.forward(T0, client(5), Transport::Udp, &q), None);
        // The name in other case is the same question.
        let upper = bytes(&query(0x6666, "EXAMPLE.com", RecordType::A));
        assert_eq!(f.forward(T0, client(5), Transport::Udp, &upper), None);
        assert_eq!(f.counters().duplicates, 2);
        // Same id, another type (A and AAAA at once), or another client: its own query.
        let aaaa = bytes(&query(0x6666, "example.com", RecordType::AAAA));
        send(f.forward(T0, client(5), Transport::Udp, &aaaa));
        send(f.forward(T0, client(6), Transport::Udp, &q));
        assert_eq!(f.pending(), 3);
        // Answered, it may be asked again.
        let reply = answer(&out.bytes, Ipv4Addr::new(1, 2, 3, 4));
        assert!(f.on_upstream_reply(upstream(1), &reply).is_some());
        send(f.forward(T0, client(5), Transport::Udp, &q));
    }

    #[test]
    fn without_upstreams_or_with_an_oversized_query_servfail() {
        let mut f = forwarder(0);
        let q = bytes(&query(0x7777, "example.com", RecordType::A));
        let (_, servfail) = servfail_for(&f.forward(T0, client(5), Transport::Udp, &q).unwrap());
        assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
        assert!(servfail.edns.is_none());

        let mut f = forwarder(1);
        // An OPT record padded past MAX_FORWARDED_QUERY: an EDNS option of 4100 bytes.
        let mut big = bytes(&query_edns(0x7778, "example.com", RecordType::A, 1232));
        let pad = 4100u16;
        let rdlen_at = big.len() - 2;
        big[rdlen_at..].copy_from_slice(&(pad + 4).to_be_bytes());
        big.extend_from_slice(&12u16.to_be_bytes());
        big.extend_from_slice(&pad.to_be_bytes());
        big.extend(std::iter::repeat_n(0, usize::from(pad)));
        let action = f.forward(T0, client(5), Transport::Tcp, &big).unwrap();
        let (_, servfail) = servfail_for(&action);
        assert_eq!(servfail.metadata.id, 0x7778);
        assert_eq!(f.pending(), 0);
        assert_eq!(f.counters().servfail, 1);

        // Upstreams appear: forwarding works.
        let mut f = forwarder(0);
        f.set_upstreams(vec![upstream(7)]);
        assert_eq!(
            send(f.forward(T0, client(5), Transport::Udp, &q)).upstream,
            upstream(7)
        );
    }

    #[test]
    fn unreadable_queries_are_dropped() {
        let mut f = forwarder(1);
        let q = bytes(&query(1, "example.com", RecordType::A));
        assert_eq!(f.forward(T0, client(5), Transport::Udp, &q[..5]), None);
        assert_eq!(
            f.forward(T0, client(5), Transport::Udp, &q[..q.len() - 2]),
            None
        );
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(f.forward(T0, client(5), Transport::Udp, &response), None);
        assert_eq!(f.counters().malformed_dropped, 3);
        assert_eq!(f.pending(), 0);
    }

    proptest! {
        #[test]
        fn upstream_replies_never_panic_and_are_relayed_only_when_genuine(
            seed in any::<u64>(),
            random in proptest::collection::vec(any::<u8>(), 0..200),
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..4),
            cut in 0usize..40,
            from in 0u8..4,
        ) {
            let mut f = Forwarder::<Client>::new(
                ForwarderConfig { upstreams: vec![upstream(1), upstream(2)], ..ForwarderConfig::default() },
                seed,
            );
            let names = ["example.com", "a.example.org", "x"];
            let mut sent = Vec::new();
            for (n, name) in names.iter().enumerate() {
                let q = bytes(&query(n as u16, name, RecordType::A));
                sent.push(send(f.forward(T0, client(n as u8), Transport::Udp, &q)).bytes);
            }
            // Random bytes from anyone.
            if let Some((to, relayed)) = f.on_upstream_reply(upstream(from), &random) {
                prop_assert_eq!(from, 1);
                prop_assert_eq!(&relayed[2..], &random[2..]);
                prop_assert_eq!(id_of(&relayed), u16::from(to.ip().octets()[3]));
            }
            // A mutated genuine answer.
            let which = usize::from(from) % sent.len();
            let mut reply = answer(&sent[which], Ipv4Addr::new(1, 2, 3, 4));
            for (at, byte) in flips {
                let len = reply.len();
                reply[at % len] = byte;
            }
            reply.truncate(reply.len() - cut.min(reply.len()));
            let before = f.pending();
            match f.on_upstream_reply(upstream(1), &reply) {
                Some((to, relayed)) => {
                    prop_assert_eq!(&relayed[2..], &reply[2..]);
                    let n = to.ip().octets()[3];
                    prop_assert_eq!(id_of(&relayed), u16::from(n));
                    prop_assert!(Header::new_checked(&relayed[..]).unwrap().is_response());
                    prop_assert_eq!(f.pending(), before - 1);
                }
                None => prop_assert_eq!(f.pending(), before),
            }
            let c = f.counters();
            prop_assert_eq!(c.upstream_replies + c.stray_replies, 2);
        }

        #[test]
        fn random_queries_never_panic(query in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut f = forwarder(2);
            match f.forward(T0, client(1), Transport::Udp, &query) {
                Some(Action::Send(out)) => {
                    prop_assert_eq!(&out.bytes[2..], &query[2..]);
                    prop_assert_eq!(f.pending(), 1);
                }
                Some(Action::Reply { bytes, .. }) => {
                    let reply = Message::from_vec(&bytes).unwrap();
                    prop_assert_eq!(reply.metadata.id, id_of(&query));
                }
                None => prop_assert_eq!(f.pending(), 0),
            }
            for action in f.poll_timeouts(T0 + Duration::from_secs(60)) {
                if let Action::Reply { bytes, .. } = action {
                    prop_assert_eq!(Message::from_vec(&bytes).unwrap().metadata.id, id_of(&query));
                }
            }
        }
    }
}
