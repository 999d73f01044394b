//! switchd's embedded DNS: the pure core.
//!
//! Like Docker's embedded DNS at 127.0.0.11, but served by switchd's router on each
//! network's gateway address, port 53. Containers resolve each other by endpoint name and
//! alias; every other name goes to the host's upstream resolvers. Three parts, each a
//! function of its inputs (time included) to its outputs, with no socket and no clock:
//!
//! * [`Names`]: the records of every network, built whole from [`Record`]s and replaced
//!   whole when endpoints change.
//! * [`Responder`]: one query in, a [`Verdict`] out: a reply, "forward it", or a drop.
//!   It owns the per-source rate limiter and the round-robin shuffle.
//! * [`Forwarder`]: the state machine for forwarded queries: fresh ids, failover between
//!   upstreams, timeouts, SERVFAIL when they all fail, and the checks on what comes back.
//!
//! A driver receives a datagram (or a TCP message without its 2-byte length prefix),
//! calls [`Responder::handle`] with the networks the asker is on, sends a `Reply`, hands a
//! `Forward` to [`Forwarder::forward`], sends what [`Forwarder::on_upstream_reply`] and
//! [`Forwarder::poll_timeouts`] return, and sleeps until [`Forwarder::next_timeout`].
//!
//! # Contract
//!
//! * **Names.** Each endpoint has a *name*, unique within its network, and any number of
//!   *aliases*, which endpoints may share. Names and aliases are DNS labels
//!   ([`check_label`]: 1–63 letters, digits and hyphens, no hyphen first or last) and are
//!   compared without regard to ASCII case; [`Names::new`] leaves out those that are not
//!   labels. A name given to several records of one network answers with every address,
//!   as a shared alias does.
//! * **Scope.** A query is answered from the networks the *asker* is on, which the driver
//!   passes (e.g. the network whose gateway the query was sent to). `NAME` and
//!   `NAME.NETWORK` (the network's name as a domain, compared without regard to case)
//!   both resolve; a trailing dot changes nothing. `NAME` on several of the asker's
//!   networks answers with the addresses from all of them; `NAME.NETWORK` only from that
//!   one.
//! * **What is answered** (authoritative, RA set, the question echoed, an OPT record when
//!   the query had one), for class IN or ANY:
//!   - a known name: type A (or ANY) gets its A records, [`DEFAULT_TTL`] seconds, in an
//!     order shuffled anew for each reply (Docker's round robin); any other type
//!     (AAAA, MX, TXT...) gets NOERROR with no answer (NODATA);
//!   - `D.C.B.A.in-addr.arpa` for an endpoint's address: type PTR (or ANY) gets
//!     `NAME.NETWORK.` (which resolves back to the address: forward-confirmed; `NAME.`
//!     if the network's name is no domain name, e.g. 64 characters); other types get
//!     NODATA;
//!   - a name or address that exists only on networks the asker is not on: NXDOMAIN,
//!     never forwarded (nothing of another network leaks, not even to the upstreams).
//!   - negative answers (NXDOMAIN, NODATA) carry no SOA, so resolvers do not cache
//!     them (RFC 2308): a container that starts a moment later resolves at once.
//! * **What is forwarded**: every other name (including anything under a network's
//!   domain that is no record of it, so a network named `com` does not hide `google.com`),
//!   reverse names of other addresses, and classes other than IN and ANY. The query goes
//!   out unchanged but for its id.
//! * **Malformed input.** Shorter than a DNS header (12 bytes): dropped. A response
//!   (QR set): dropped. Opcode other than QUERY: NOTIMP. Not exactly one question, or a
//!   message that does not decode (two OPT records included): FORMERR. EDNS version
//!   above 0: BADVERS. FORMERR and NOTIMP replies are the 12-byte header only; BADVERS
//!   echoes the question with an OPT record; none is longer than what provoked it.
//!   Nothing panics on any input.
//! * **Sizes.** Over UDP a reply is at most 512 bytes, or the payload size the query's
//!   OPT record advertises, clamped to 512..=[`MAX_UDP_PAYLOAD`] (1232, DNS flag day
//!   2020's size that fits any path without fragments); over TCP, 65535. A reply that
//!   does not fit keeps as many answers as fit and has TC set, so the client retries over
//!   TCP. Replies never include TCP's length prefix.
//! * **Rate limit.** A token bucket per source IPv4 address ([`RateLimit`]; by default
//!   500 queries a second, bursts of 1000), over UDP and TCP alike, taken before anything
//!   else is looked at: a query over the limit is dropped, so switchd cannot be made an
//!   amplifier. At most [`RateLimit::max_sources`] (4096) sources are tracked; a new one
//!   beyond that evicts the source heard from least recently, whose bucket was the
//!   fullest (a source that keeps asking is never the one evicted).
//! * **Forwarding.** See [`Forwarder`]: at most [`ForwarderConfig::max_pending`] (1024)
//!   queries in flight, each with a fresh random id not in use; each try waits
//!   [`ForwarderConfig::timeout`] (2 s) and then goes to the next upstream, up to
//!   [`MAX_TRIES`] upstreams in all; then the client gets SERVFAIL. A reply is relayed
//!   only if it comes from an upstream that query was sent to, carries a pending id,
//!   QR set, and the same question (names compared without regard to case); it goes to
//!   the client with the client's id restored and is otherwise passed on as it came.
//! * **TCP.** [`TcpResponder`] serves DNS over TCP on the same address (RFC 7766):
//!   length-prefixed messages, several per connection, bounded connections and buffers;
//!   see its module for the contract. A forwarded TCP query goes to the forwarder as any
//!   other (switchd sends it upstream over UDP, so a large upstream answer may come back
//!   truncated, TC set: the client sees that as is).
//! * **Counters** ([`DnsCounters`]) only ever increase. The [`Responder`] counts what it
//!   decides, the [`Forwarder`] what happens to forwarded queries, the [`TcpResponder`]
//!   its connections; the driver adds them up (`+=`) to show one set.
//! * **Randomness.** The core has no RNG of its own: each part takes a seed from the
//!   caller (switchd: from the OS) and runs a small xorshift generator. Ids are
//!   unpredictable to anyone who does not see our upstream traffic; they are no defence
//!   against an attacker who does (neither is DNS over UDP).

mod forwarder;
mod header;
mod names;
mod ratelimit;
mod responder;
mod rng;
mod service;
mod tcp;
#[cfg(test)]
mod testutil;

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

pub use forwarder::{Action, Forwarder, ForwarderConfig, Outgoing, MAX_FORWARDED_QUERY, MAX_TRIES};
pub use header::{question_end, Header, HEADER_LEN};
/// hickory-proto, re-exported: DNS messages for drivers and tests without a second copy.
pub use hickory_proto as proto;
pub use names::{Lookup, Names, Record};
pub use ratelimit::RateLimit;
pub use responder::{Responder, ResponderConfig, Verdict};
pub use service::{DnsClient, DnsService, DnsStep, Scopes};
pub use tcp::{
    TcpConnId, TcpFrame, TcpKey, TcpResponder, DEFAULT_MSS, IDLE_TIMEOUT, MAX_AWAITING,
    MAX_BUFFERED, MAX_CONNECTIONS, MAX_MSS, MAX_RETRANSMITS, RETRANSMIT_TIMEOUT,
};

/// TTL of the records the responder answers with, in seconds. Docker uses 600; endpoints
/// come and go with containers and IPAM hands addresses out again, so a shorter cache
/// life sends less traffic to the wrong container.
pub const DEFAULT_TTL: u32 = 60;
/// The largest UDP reply, whatever a query's OPT record advertises.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The largest UDP reply to a query without an OPT record (RFC 1035).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// The longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;

/// How a query arrived: it decides how large a reply may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Why a query got no reply. Each is counted in [`DnsCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than a DNS header (`malformed_dropped`).
    Malformed,
    /// QR set: a response sent to the server's port (`responses_dropped`).
    Response,
    /// The source is over its rate limit (`rate_limited`).
    RateLimited,
}

/// Why a name cannot be an endpoint's name or alias.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a DNS name cannot be empty")]
    Empty,
    #[error("DNS name {0:?} is longer than {MAX_LABEL_LEN} characters")]
    TooLong(String),
    #[error("DNS name {name:?} has {found:?}: use letters, digits and '-'")]
    Character { name: String, found: char },
    #[error("DNS name {0:?} starts or ends with '-'")]
    Hyphen(String),
}

/// Checks that `name` can be an endpoint's name or alias: one DNS label of 1 to 63
/// letters, digits and hyphens, neither first nor last a hyphen (RFC 1123). Names compare
/// without regard to ASCII case.
pub fn check_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::Character {
            name: name.to_string(),
            found,
        });
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong(name.to_string()));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Hyphen(name.to_string()));
    }
    Ok(())
}

/// Monotonic counters of the embedded DNS. The [`Responder`] counts the first group, the
/// [`Forwarder`] the second; `+=` adds one set to another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCounters {
    // The responder.
    /// Replies with answers from [`Names`] (A and PTR).
    pub answered_local: u64,
    /// Names or addresses that exist only on networks the asker is not on.
    pub nxdomain: u64,
    /// Known names asked for a type they do not have.
    pub nodata: u64,
    /// `Forward` verdicts.
    pub forwarded: u64,
    /// Local replies cut to fit, with TC set.
    pub truncated: u64,
    pub formerr: u64,
    pub notimp: u64,
    /// Queries with an EDNS version above 0.
    pub badvers: u64,
    pub rate_limited: u64,
    /// Input shorter than a DNS header (the forwarder counts queries it cannot read too).
    pub malformed_dropped: u64,
    /// Responses (QR set) sent as queries.
    pub responses_dropped: u64,

    // The forwarder.
    /// Queries sent to an upstream, retries included.
    pub upstream_queries: u64,
    /// Upstream replies relayed to a client.
    pub upstream_replies: u64,
    /// Tries that got no reply in time.
    pub upstream_timeouts: u64,
    /// SERVFAIL replies: every upstream failed, no upstream is configured, the pending
    /// table is full, or the query is too long to keep.
    pub servfail: u64,
    /// Queries refused because [`ForwarderConfig::max_pending`] were in flight (also
    /// counted in `servfail`).
    pub pending_full: u64,
    /// A query the same client had already sent (same id and question) and that is still
    /// in flight: not sent again.
    pub duplicates: u64,
    /// Upstream datagrams dropped: from an address the query was not sent to, with an id
    /// nothing is waiting for, not a response, or for another question.
    pub stray_replies: u64,

    // The TCP responder ([`TcpResponder`]).
    /// TCP connections opened (SYNs answered).
    #[serde(default)]
    pub tcp_connections: u64,
    /// Connections evicted to make room for a new one.
    #[serde(default)]
    pub tcp_evicted: u64,
    /// DNS messages read from TCP connections.
    #[serde(default)]
    pub tcp_messages: u64,
    /// Connections forgotten without a proper close: idle, or our data never
    /// acknowledged.
    #[serde(default)]
    pub tcp_timeouts: u64,
}

impl AddAssign<&DnsCounters> for DnsCounters {
    fn add_assign(&mut self, rhs: &DnsCounters) {
        let DnsCounters {
            answered_local,
            nxdomain,
            nodata,
            forwarded,
            truncated,
            formerr,
            notimp,
            badvers,
            rate_limited,
            malformed_dropped,
            responses_dropped,
            upstream_queries,
            upstream_replies,
            upstream_timeouts,
            servfail,
            pending_full,
            duplicates,
            stray_replies,
            tcp_connections,
            tcp_evicted,
            tcp_messages,
            tcp_timeouts,
        } = rhs;
        self.answered_local += answered_local;
        self.nxdomain += nxdomain;
        self.nodata += nodata;
        self.forwarded += forwarded;
        self.truncated += truncated;
        self.formerr += formerr;
        self.notimp += notimp;
        self.badvers += badvers;
        self.rate_limited += rate_limited;
        self.malformed_dropped += malformed_dropped;
        self.responses_dropped += responses_dropped;
        self.upstream_queries += upstream_queries;
        self.upstream_replies += upstream_replies;
        self.upstream_timeouts += upstream_timeouts;
        self.servfail += servfail;
        self.pending_full += pending_full;
        self.duplicates += duplicates;
        self.stray_replies += stray_replies;
        self.tcp_connections += tcp_connections;
        self.tcp_evicted += tcp_evicted;
        self.tcp_messages += tcp_messages;
        self.tcp_timeouts += tcp_timeouts;
    }
}

#[cfg(test)]
mod tests {
    use proto::rr::RecordType;

    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "web", "Web-1", "1db", "x".repeat(63).as_str(), "a-b-c"] {
            assert_eq!(check_label(good), Ok(()), "{good}");
        }
        assert_eq!(check_label(""), Err(NameError::Empty));
        assert_eq!(
            check_label(&"x".repeat(64)),
            Err(NameError::TooLong("x".repeat(64)))
        );
        assert_eq!(
            check_label("-web"),
            Err(NameError::Hyphen("-web".to_string()))
        );
        assert_eq!(
            check_label("web-"),
            Err(NameError::Hyphen("web-".to_string()))
        );
        for (bad, found) in [("my_db", '_'), ("a.b", '.'), ("wéb", 'é'), ("a b", ' ')] {
            assert_eq!(
                check_label(bad),
                Err(NameError::Character {
                    name: bad.to_string(),
                    found
                }),
                "{bad}"
            );
        }
        assert_eq!(
            NameError::Hyphen("-a".into()).to_string(),
            "DNS name \"-a\" starts or ends with '-'"
        );
    }

    /// How a driver uses the three parts: a local name, a forwarded one, and what the
    /// upstream says coming back to the client under its own id.
    #[test]
    fn a_driver_round_trip() {
        use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

        use crate::time::Time;
        use testutil::{a_records, answer, bytes, names, query};

        let names = names(0);
        let mut responder = Responder::new(ResponderConfig::default(), 1);
        let upstream = SocketAddr::from(([192, 0, 2, 53], 53));
        let mut forwarder = Forwarder::<SocketAddrV4>::new(
            ForwarderConfig {
                upstreams: vec![upstream],
                ..ForwarderConfig::default()
            },
            2,
        );
        let client = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 9), 33000);
        let now = Time::from_secs(5);
        let mut serve = |q: &[u8]| {
            let verdict = responder.handle(now, &names, &["red"], *client.ip(), Transport::Udp, q);
            (verdict, responder.counters())
        };

        let (verdict, _) = serve(&bytes(&query(1, "db", RecordType::A)));
        let Verdict::Reply(reply) = verdict else {
            panic!("db is local: {verdict:?}");
        };
        let reply = proto::op::Message::from_vec(&reply).unwrap();
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 1, 0, 3)]);

        let q = bytes(&query(2, "example.com", RecordType::A));
        let (verdict, responder_counters) = serve(&q);
        assert_eq!(verdict, Verdict::Forward);
        let Some(Action::Send(out)) = forwarder.forward(now, client, Transport::Udp, &q) else {
            panic!("sent upstream");
        };
        let upstream_reply = answer(&out.bytes, Ipv4Addr::new(93, 184, 216, 34));
        let (to, relayed) = forwarder
            .on_upstream_reply(upstream, &upstream_reply)
            .unwrap();
        assert_eq!(to, client);
        let relayed = proto::op::Message::from_vec(&relayed).unwrap();
        assert_eq!(relayed.metadata.id, 2);
        assert_eq!(a_records(&relayed), [Ipv4Addr::new(93, 184, 216, 34)]);

        let mut all = responder_counters;
        all += &forwarder.counters();
        assert_eq!(
            (
                all.answered_local,
                all.forwarded,
                all.upstream_queries,
                all.upstream_replies
            ),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn counters_add_up() {
        let mut sum = DnsCounters {
            answered_local: 1,
            servfail: 2,
            ..DnsCounters::default()
        };
        sum += &DnsCounters {
            answered_local: 3,
            stray_replies: 4,
            ..DnsCounters::default()
        };
        assert_eq!(sum.answered_local, 4);
        assert_eq!(sum.servfail, 2);
        assert_eq!(sum.stray_replies, 4);
    }
}
