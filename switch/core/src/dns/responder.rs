//! One query in, one [`Verdict`] out: what the embedded DNS answers itself.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record as Rr, RecordType};
use serde::{Deserialize, Serialize};

use super::header::{error_reply, header_only, Header};
use super::names::{Lookup, Names};
use super::ratelimit::{RateLimit, RateLimiter};
use super::rng::Rng;
use super::{DnsCounters, DropReason, Transport, DEFAULT_TTL, MAX_UDP_PAYLOAD, MIN_UDP_PAYLOAD};
use crate::time::Time;

const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;
const NOTIMP: u8 = 4;
/// The largest DNS message over TCP (its length prefix is 16 bits).
const MAX_TCP_MESSAGE: usize = 65535;

/// What the responder makes of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send these bytes back to the asker, over the transport the query came by.
    Reply(Vec<u8>),
    /// Not a name of ours: hand the query, as it is, to [`super::Forwarder::forward`].
    Forward,
    /// Nothing to send.
    Drop(DropReason),
}

/// How a [`Responder`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponderConfig {
    /// TTL of A and PTR answers, in seconds.
    pub ttl: u32,
    /// The largest UDP reply whatever the client advertises, and the size our OPT
    /// record advertises; at least 512 is used.
    pub max_udp_payload: u16,
    pub rate_limit: RateLimit,
}

impl Default for ResponderConfig {
    fn default() -> ResponderConfig {
        ResponderConfig {
            ttl: DEFAULT_TTL,
            max_udp_payload: MAX_UDP_PAYLOAD,
            rate_limit: RateLimit::default(),
        }
    }
}

/// Answers queries from [`Names`]: its rate limiter, its shuffle and its counters. See
/// the module documentation of [`crate::dns`] for what it answers.
#[derive(Clone, Debug)]
pub struct Responder {
    config: ResponderConfig,
    limiter: RateLimiter,
    rng: Rng,
    counters: DnsCounters,
}

impl Responder {
    /// A responder whose shuffles come from `seed` (switchd: random from the OS).
    pub fn new(config: ResponderConfig, seed: u64) -> Responder {
        Responder {
            config,
            limiter: RateLimiter::new(config.rate_limit),
            rng: Rng::new(seed),
            counters: DnsCounters::default(),
        }
    }

    pub fn config(&self) -> &ResponderConfig {
        &self.config
    }

    /// The responder's counters (the forwarder's fields are 0).
    pub fn counters(&self) -> DnsCounters {
        self.counters.clone()
    }

    /// Decides what to do with `query` (one DNS message, without TCP's length prefix)
    /// that `source` sent over `transport` at `now`, asking from `networks`.
    pub fn handle<N: AsRef<str>>(
        &mut self,
        now: Time,
        names: &Names,
        networks: &[N],
        source: Ipv4Addr,
        transport: Transport,
        query: &[u8],
    ) -> Verdict {
        if !self.limiter.allow(now, source) {
            self.counters.rate_limited += 1;
            return Verdict::Drop(DropReason::RateLimited);
        }
        let Some(header) = Header::new_checked(query) else {
            self.counters.malformed_dropped += 1;
            return Verdict::Drop(DropReason::Malformed);
        };
        if header.is_response() {
            self.counters.responses_dropped += 1;
            return Verdict::Drop(DropReason::Response);
        }
        if header.opcode() != u8::from(OpCode::Query) {
            self.counters.notimp += 1;
            return Verdict::Reply(error_reply(&header, NOTIMP));
        }
        if header.question_count() != 1 {
            self.counters.formerr += 1;
            return Verdict::Reply(error_reply(&header, FORMERR));
        }
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) => {
                self.counters.formerr += 1;
                return Verdict::Reply(error_reply(&header, FORMERR));
            }
        };
        let Some(question) = request.queries.first() else {
            self.counters.formerr += 1;
            return Verdict::Reply(error_reply(&header, FORMERR));
        };
        let limit = self.reply_limit(transport, request.edns.as_ref());
        if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            self.counters.badvers += 1;
            let reply = self.reply(&request, question, ResponseCode::BADVERS, Vec::new());
            return self.encode(reply, limit);
        }
        if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
            self.counters.forwarded += 1;
            return Verdict::Forward;
        }
        let qname = question.name();
        let qtype = question.query_type();
        let labels: Vec<&[u8]> = qname.iter().collect();
        let answers = match reverse_address(&labels) {
            Some(addr) => match names.reverse(networks, addr) {
                Lookup::Local(targets) if wants(qtype, RecordType::PTR) => targets
                    .iter()
                    .filter_map(|target| ptr_target(target))
                    .map(|target| {
                        Rr::from_rdata(qname.clone(), self.config.ttl, RData::PTR(PTR(target)))
                    })
                    .collect(),
                Lookup::Local(_) => Vec::new(),
                Lookup::Elsewhere => return self.nxdomain(&request, question, limit),
                Lookup::Unknown => {
                    self.counters.forwarded += 1;
                    return Verdict::Forward;
                }
            },
            None => match names.lookup_labels(networks, &labels) {
                Lookup::Local(mut addrs) if wants(qtype, RecordType::A) => {
                    self.rng.shuffle(&mut addrs);
                    addrs
                        .into_iter()
                        .map(|addr| {
                            Rr::from_rdata(qname.clone(), self.config.ttl, RData::A(A(addr)))
                        })
                        .collect()
                }
                Lookup::Local(_) => Vec::new(),
                Lookup::Elsewhere => return self.nxdomain(&request, question, limit),
                Lookup::Unknown => {
                    self.counters.forwarded += 1;
                    return Verdict::Forward;
                }
            },
        };
        if answers.is_empty() {
            self.counters.nodata += 1;
        } else {
            self.counters.answered_local += 1;
        }
        let reply = self.reply(&request, question, ResponseCode::NoError, answers);
        self.encode(reply, limit)
    }

    fn nxdomain(&mut self, request: &Message, question: &Query, limit: usize) -> Verdict {
        self.counters.nxdomain += 1;
        let reply = self.reply(request, question, ResponseCode::NXDomain, Vec::new());
        self.encode(reply, limit)
    }

    /// The largest reply the asker takes over `transport`.
    fn reply_limit(&self, transport: Transport, edns: Option<&Edns>) -> usize {
        match transport {
            Transport::Tcp => MAX_TCP_MESSAGE,
            Transport::Udp => {
                let ours = self.config.max_udp_payload.max(MIN_UDP_PAYLOAD);
                let theirs = edns.map_or(MIN_UDP_PAYLOAD, Edns::max_payload);
                usize::from(theirs.clamp(MIN_UDP_PAYLOAD, ours))
            }
        }
    }

    /// An authoritative reply to `request` with its question echoed, RD and CD copied, RA
    /// set, and an OPT record of ours if it had one.
    fn reply(
        &self,
        request: &Message,
        question: &Query,
        rcode: ResponseCode,
        answers: Vec<Rr>,
    ) -> Message {
        let mut reply = Message::response(request.metadata.id, OpCode::Query);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.checking_disabled = request.metadata.checking_disabled;
        reply.metadata.response_code = rcode;
        reply.add_query(question.clone());
        reply.answers = answers;
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(self.config.max_udp_payload.max(MIN_UDP_PAYLOAD));
            reply.set_edns(edns);
        }
        reply
    }

    /// `reply` encoded in at most `limit` bytes: as many answers as fit, TC set if not
    /// all did.
    fn encode(&mut self, reply: Message, limit: usize) -> Verdict {
        let (id, rd) = (reply.metadata.id, reply.metadata.recursion_desired);
        match fit(reply, limit) {
            Some((bytes, truncated)) => {
                if truncated {
                    self.counters.truncated += 1;
                }
                Verdict::Reply(bytes)
            }
            None => {
                // Nothing we build fails to encode; should it, the client hears so.
                self.counters.servfail += 1;
                Verdict::Reply(header_only(id, 0, rd, SERVFAIL))
            }
        }
    }
}

/// `NAME.NETWORK.` as a domain name; `NAME.` if the network's name is not a domain (a
/// label longer than 63 bytes, or an empty one).
fn ptr_target(target: &str) -> Option<Name> {
    Name::from_labels(target.split('.').map(str::as_bytes))
        .or_else(|_| Name::from_labels(target.split('.').take(1).map(str::as_bytes)))
        .ok()
}

fn wants(asked: RecordType, has: RecordType) -> bool {
    asked == has || asked == RecordType::ANY
}

/// The address a reverse name `D.C.B.A.in-addr.arpa` stands for.
fn reverse_address(labels: &[&[u8]]) -> Option<Ipv4Addr> {
    let [d, c, b, a, in_addr, arpa] = labels else {
        return None;
    };
    if !in_addr.eq_ignore_ascii_case(b"in-addr") || !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let octet = |label: &[u8]| -> Option<u8> {
        if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(label).ok()?.parse().ok()
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// Encodes `message` in at most `limit` bytes, keeping as many answers as fit (TC set if
/// not all did); without answers, the OPT record goes too. `None` if it cannot be encoded
/// at all. Returns whether anything was left out.
fn fit(mut message: Message, limit: usize) -> Option<(Vec<u8>, bool)> {
    let full = message.to_vec().ok()?;
    if full.len() <= limit {
        return Some((full, false));
    }
    message.metadata.truncation = true;
    let answers = std::mem::take(&mut message.answers);
    let mut best = message.to_vec().ok()?;
    if best.len() > limit {
        message.edns = None;
        let bare = message.to_vec().ok()?;
        return (bare.len() <= limit).then_some((bare, true));
    }
    // Binary search for the most answers that fit: `fits` answers do, `fails` do not.
    // (Sizes are not simply additive: name compression has limits of its own.)
    let (mut fits, mut fails) = (0, answers.len());
    while fails - fits > 1 {
        let keep = fits + (fails - fits) / 2;
        message.answers = answers[..keep].to_vec();
        let bytes = message.to_vec().ok()?;
        if bytes.len() <= limit {
            (fits, best) = (keep, bytes);
        } else {
            fails = keep;
        }
    }
    Some((best, true))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::MessageType;
    use proptest::prelude::*;

    use super::*;
    use crate::dns::header::HEADER_LEN;
    use crate::dns::testutil::{a_records, bytes, names, query, query_edns, record};

    const ASKER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);
    const RED: &[&str] = &["red"];

    fn responder() -> Responder {
        Responder::new(ResponderConfig::default(), 1)
    }

    fn ask_over(
        r: &mut Responder,
        names: &Names,
        networks: &[&str],
        transport: Transport,
        query: &[u8],
    ) -> Verdict {
        r.handle(Time::from_secs(1), names, networks, ASKER, transport, query)
    }

    fn ask(r: &mut Responder, names: &Names, networks: &[&str], query: &Message) -> Verdict {
        ask_over(r, names, networks, Transport::Udp, &bytes(query))
    }

    fn reply_to(verdict: Verdict) -> (Message, usize) {
        match verdict {
            Verdict::Reply(bytes) => (Message::from_vec(&bytes).unwrap(), bytes.len()),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// `query` as the responder sees it: decoded from the wire (so its names are FQDNs).
    fn asked(query: &Message) -> Message {
        Message::from_vec(&bytes(query)).unwrap()
    }

    fn a(name: &str) -> Message {
        query(0x4242, name, RecordType::A)
    }

    #[test]
    fn names_of_the_askers_network_are_answered() {
        let names = names(0);
        let mut r = responder();
        for name in ["web", "web.red", "WEB.Red", "web.red.", "wEb"] {
            let (reply, _) = reply_to(ask(&mut r, &names, RED, &a(name)));
            assert_eq!(reply.metadata.id, 0x4242);
            assert_eq!(reply.metadata.message_type, MessageType::Response);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.metadata.authoritative && reply.metadata.recursion_available);
            assert!(reply.metadata.recursion_desired, "RD is copied");
            assert!(!reply.metadata.truncation);
            assert_eq!(
                reply.queries,
                asked(&a(name)).queries,
                "the question is echoed as asked"
            );
            assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 1, 0, 2)], "{name}");
            assert_eq!(reply.answers[0].ttl, DEFAULT_TTL);
            let owner = &reply.answers[0].name;
            assert!(
                owner.eq_case(asked(&a(name)).queries[0].name()),
                "as asked: {owner}"
            );
            assert!(reply.edns.is_none(), "no OPT when the query had none");
        }
        assert_eq!(r.counters().answered_local, 5);
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &a("www")));
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn scope_is_the_askers_networks() {
        let names = names(0);
        let mut r = responder();
        // cache lives on blue only: NXDOMAIN for red, never forwarded.
        for name in ["cache", "cache.blue", "store", "Store.BLUE."] {
            let (reply, _) = reply_to(ask(&mut r, &names, RED, &a(name)));
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
            assert!(reply.answers.is_empty() && reply.authorities.is_empty());
            assert_eq!(reply.queries, asked(&a(name)).queries);
        }
        assert_eq!(r.counters().nxdomain, 4);
        // From blue it resolves; web (red's) does not.
        let (reply, _) = reply_to(ask(&mut r, &names, &["blue"], &a("cache")));
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 2, 0, 2)]);
        let (reply, _) = reply_to(ask(&mut r, &names, &["blue"], &a("web.red")));
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        // On both networks, both resolve.
        let (reply, _) = reply_to(ask(&mut r, &names, &["red", "blue"], &a("cache")));
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 2, 0, 2)]);
        // On none: nothing of ours.
        let (reply, _) = reply_to(ask(&mut r, &names, &[], &a("web")));
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn a_name_on_two_of_the_askers_networks_answers_with_both() {
        let names = Names::new([
            record("red", "web", &[], [10, 1, 0, 2]),
            record("blue", "web", &[], [10, 2, 0, 2]),
        ]);
        let mut r = responder();
        let (reply, _) = reply_to(ask(&mut r, &names, &["red", "blue"], &a("web")));
        let mut got = a_records(&reply);
        got.sort();
        assert_eq!(
            got,
            [Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 2, 0, 2)]
        );
        let (reply, _) = reply_to(ask(&mut r, &names, &["red", "blue"], &a("web.blue")));
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 2, 0, 2)]);
    }

    #[test]
    fn other_types_of_known_names_are_nodata() {
        let names = names(0);
        let mut r = responder();
        for qtype in [
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::PTR,
        ] {
            let (reply, _) = reply_to(ask(&mut r, &names, RED, &query(7, "web.red", qtype)));
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{qtype}"
            );
            assert!(reply.answers.is_empty(), "{qtype}");
            assert!(reply.metadata.authoritative);
        }
        assert_eq!(r.counters().nodata, 5);
        assert_eq!(r.counters().answered_local, 0);
        // ANY gets the A records.
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &query(7, "web", RecordType::ANY)));
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 1, 0, 2)]);
    }

    #[test]
    fn everything_else_is_forwarded() {
        let names = names(0);
        let mut r = responder();
        for name in [
            "example.com",
            "nothing",
            "nothing.red",
            "a.web.red",
            "red",
            "web.green",
            "8.8.8.8.in-addr.arpa",
            "0.1.10.in-addr.arpa",
        ] {
            assert_eq!(
                ask(&mut r, &names, RED, &a(name)),
                Verdict::Forward,
                "{name}"
            );
        }
        // Another class (CHAOS version.bind and the like).
        let mut chaos = a("web");
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(ask(&mut r, &names, RED, &chaos), Verdict::Forward);
        assert_eq!(r.counters().forwarded, 9);
    }

    #[test]
    fn reverse_names_of_endpoints() {
        let names = names(0);
        let mut r = responder();
        let ptr = |name: &str| query(9, name, RecordType::PTR);
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &ptr("2.0.1.10.in-addr.arpa.")));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        let RData::PTR(PTR(target)) = &reply.answers[0].data else {
            panic!("a PTR record: {:?}", reply.answers[0]);
        };
        assert_eq!(target.to_ascii(), "web.red.");
        assert!(target.is_fqdn());
        assert_eq!(reply.answers[0].ttl, DEFAULT_TTL);
        // Case does not matter.
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &ptr("3.0.1.10.IN-ADDR.Arpa")));
        assert_eq!(reply.answers.len(), 1);
        // blue's address, asked from red: NXDOMAIN.
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &ptr("2.0.2.10.in-addr.arpa")));
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        // Another type for an endpoint's reverse name: NODATA.
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &a("2.0.1.10.in-addr.arpa")));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        // Not an octet: an ordinary (unknown) name.
        assert_eq!(
            ask(&mut r, &names, RED, &ptr("256.0.1.10.in-addr.arpa")),
            Verdict::Forward
        );
        let counters = r.counters();
        assert_eq!(
            (counters.answered_local, counters.nxdomain, counters.nodata),
            (2, 1, 1)
        );
    }

    #[test]
    fn shared_aliases_answer_every_address_in_shuffled_order() {
        let names = names(12);
        let mut r = responder();
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let (reply, _) = reply_to(ask(&mut r, &names, RED, &a("pool")));
            let got = a_records(&reply);
            let mut sorted = got.clone();
            sorted.sort();
            let all: Vec<Ipv4Addr> = (0..12).map(|n| Ipv4Addr::new(10, 1, 1, n)).collect();
            assert_eq!(sorted, all, "every address, once");
            orders.insert(got);
        }
        assert!(
            orders.len() > 10,
            "the order varies: {} orders",
            orders.len()
        );
        // Two addresses share "api": both come, both orders show up.
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let (reply, _) = reply_to(ask(&mut r, &names, RED, &a("api")));
            assert_eq!(reply.answers.len(), 2);
            firsts.insert(a_records(&reply)[0]);
        }
        assert_eq!(firsts.len(), 2);
    }

    /// Bytes of a reply with `answers` A records to a question for `pool`: the header,
    /// the question (`pool` + root + type + class) and 16 bytes per record (a pointer to
    /// the question's name; hickory stops compressing after about 120 names, and then a
    /// record takes 20).
    fn pool_reply_len(answers: usize, edns: bool) -> usize {
        12 + 10 + 16 * answers + if edns { 11 } else { 0 }
    }

    #[test]
    fn udp_replies_are_truncated_to_512_or_the_advertised_size() {
        let names = names(200);
        let mut r = responder();
        // No OPT: 512 bytes.
        let (reply, len) = reply_to(ask(&mut r, &names, RED, &a("pool")));
        assert!(reply.metadata.truncation);
        assert!(len <= 512);
        assert_eq!(reply.answers.len(), (512 - pool_reply_len(0, false)) / 16);
        assert_eq!(len, pool_reply_len(reply.answers.len(), false));
        assert_eq!(r.counters().truncated, 1);
        // An OPT record advertising 1000: up to 1000, and our OPT comes back.
        let q = query_edns(1, "pool", RecordType::A, 1000);
        let (reply, len) = reply_to(ask(&mut r, &names, RED, &q));
        assert!(reply.metadata.truncation && len <= 1000);
        assert_eq!(reply.answers.len(), (1000 - pool_reply_len(0, true)) / 16);
        assert_eq!(
            reply.edns.as_ref().map(Edns::max_payload),
            Some(MAX_UDP_PAYLOAD)
        );
        // Advertising 65000 gets no more than 1232.
        let q = query_edns(2, "pool", RecordType::A, 65000);
        let (reply, len) = reply_to(ask(&mut r, &names, RED, &q));
        assert!(reply.metadata.truncation && len <= usize::from(MAX_UDP_PAYLOAD));
        assert_eq!(
            reply.answers.len(),
            (usize::from(MAX_UDP_PAYLOAD) - pool_reply_len(0, true)) / 16
        );
        // Advertising less than 512 still gets 512.
        let q = query_edns(3, "pool", RecordType::A, 100);
        let (reply, len) = reply_to(ask(&mut r, &names, RED, &q));
        assert!(reply.metadata.truncation && len <= 512 && len > 400);
        // What fits is not truncated.
        let small = names_with_pool(60);
        let q = query_edns(4, "pool", RecordType::A, 4096);
        let (reply, len) = reply_to(ask(&mut r, &small, RED, &q));
        assert!(!reply.metadata.truncation);
        assert_eq!((reply.answers.len(), len), (60, pool_reply_len(60, true)));
        assert_eq!(r.counters().truncated, 4);
    }

    fn names_with_pool(n: u8) -> Names {
        Names::new((0..n).map(|i| record("red", &format!("m{i}"), &["pool"], [10, 1, 1, i])))
    }

    #[test]
    fn tcp_replies_are_not_truncated() {
        let names = names(200);
        let mut r = responder();
        let (reply, len) = reply_to(ask_over(
            &mut r,
            &names,
            RED,
            Transport::Tcp,
            &bytes(&a("pool")),
        ));
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 200);
        assert!(len > 512);
        // Even beyond 65535 bytes: as many as fit.
        let huge = Names::new((0..4200u32).map(|i| {
            let [_, _, x, y] = i.to_be_bytes();
            record("red", &format!("m{i}"), &["pool"], [10, 9, x, y])
        }));
        let (reply, len) = reply_to(ask_over(
            &mut r,
            &huge,
            RED,
            Transport::Tcp,
            &bytes(&a("pool")),
        ));
        assert!(reply.metadata.truncation);
        assert!(
            len <= 65535 && len + 20 > 65535,
            "as many as fit: {len} bytes"
        );
        assert!(reply.answers.len() > 3000);
    }

    #[test]
    fn malformed_queries_are_dropped_or_get_formerr() {
        let names = names(0);
        let mut r = responder();
        let good = bytes(&a("web"));
        // Not even a header.
        for short in [&good[..0], &good[..1], &good[..11]] {
            assert_eq!(
                ask_over(&mut r, &names, RED, Transport::Udp, short),
                Verdict::Drop(DropReason::Malformed)
            );
        }
        assert_eq!(r.counters().malformed_dropped, 3);
        let formerr = |verdict: Verdict| {
            let Verdict::Reply(reply) = verdict else {
                panic!("expected FORMERR, got {verdict:?}");
            };
            let header = Header::new_checked(&reply[..]).unwrap();
            assert_eq!((header.id(), header.rcode()), (0x4242, FORMERR));
            assert!(header.is_response() && header.recursion_desired());
            assert_eq!(reply.len(), HEADER_LEN);
        };
        // A header and a cut question.
        formerr(ask_over(
            &mut r,
            &names,
            RED,
            Transport::Udp,
            &good[..good.len() - 1],
        ));
        formerr(ask_over(
            &mut r,
            &names,
            RED,
            Transport::Udp,
            &good[..HEADER_LEN],
        ));
        // Two questions, or none.
        let mut two = a("web");
        two.add_query(a("db").queries[0].clone());
        formerr(ask(&mut r, &names, RED, &two));
        let mut none = a("web");
        none.queries.clear();
        formerr(ask(&mut r, &names, RED, &none));
        // Two OPT records.
        let mut twice = bytes(&query_edns(0x4242, "web", RecordType::A, 1232));
        twice.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        twice[11] = 2;
        formerr(ask_over(&mut r, &names, RED, Transport::Udp, &twice));
        assert_eq!(r.counters().formerr, 5);
    }

    #[test]
    fn responses_are_dropped_and_other_opcodes_are_notimp() {
        let names = names(0);
        let mut r = responder();
        let mut response = a("web");
        response.metadata.message_type = MessageType::Response;
        assert_eq!(
            ask(&mut r, &names, RED, &response),
            Verdict::Drop(DropReason::Response)
        );
        assert_eq!(r.counters().responses_dropped, 1);
        for opcode in [OpCode::Status, OpCode::Notify, OpCode::Update] {
            let mut q = a("web");
            q.metadata.op_code = opcode;
            let Verdict::Reply(reply) = ask(&mut r, &names, RED, &q) else {
                panic!("NOTIMP expected");
            };
            let header = Header::new_checked(&reply[..]).unwrap();
            assert_eq!(header.rcode(), NOTIMP);
            assert_eq!(header.opcode(), u8::from(opcode));
            assert_eq!(header.id(), 0x4242);
        }
        assert_eq!(r.counters().notimp, 3);
    }

    #[test]
    fn edns_versions_above_zero_get_badvers() {
        let names = names(0);
        let mut r = responder();
        let mut q = query_edns(5, "web", RecordType::A, 1232);
        if let Some(edns) = q.edns.as_mut() {
            edns.set_version(1);
        }
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &q));
        // BADVERS and BADSIG share code 16; hickory decodes it as BADSIG.
        assert_eq!(u16::from(reply.metadata.response_code), 16);
        assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));
        assert!(reply.answers.is_empty());
        assert_eq!(r.counters().badvers, 1);
    }

    #[test]
    fn sources_over_their_rate_are_dropped() {
        let names = names(0);
        let config = ResponderConfig {
            rate_limit: RateLimit {
                per_second: 10,
                burst: 3,
                max_sources: 16,
            },
            ..ResponderConfig::default()
        };
        let mut r = Responder::new(config, 1);
        let query = bytes(&a("web"));
        let at = |r: &mut Responder, ms: u64, source: Ipv4Addr| {
            r.handle(
                Time::from_millis(ms),
                &names,
                RED,
                source,
                Transport::Udp,
                &query,
            )
        };
        for _ in 0..3 {
            assert!(matches!(at(&mut r, 1000, ASKER), Verdict::Reply(_)));
        }
        assert_eq!(
            at(&mut r, 1000, ASKER),
            Verdict::Drop(DropReason::RateLimited)
        );
        assert!(matches!(
            at(&mut r, 1000, Ipv4Addr::new(10, 1, 0, 10)),
            Verdict::Reply(_)
        ));
        // 100 ms later, one more (10 a second).
        assert!(matches!(at(&mut r, 1100, ASKER), Verdict::Reply(_)));
        assert_eq!(
            at(&mut r, 1100, ASKER),
            Verdict::Drop(DropReason::RateLimited)
        );
        // Over TCP too, and whatever the bytes.
        assert_eq!(
            r.handle(
                Time::from_millis(1100),
                &names,
                RED,
                ASKER,
                Transport::Tcp,
                &[]
            ),
            Verdict::Drop(DropReason::RateLimited)
        );
        let counters = r.counters();
        assert_eq!((counters.rate_limited, counters.answered_local), (3, 5));
        assert_eq!(counters.malformed_dropped, 0);
    }

    #[test]
    fn reverse_names_fall_back_to_the_bare_name() {
        let long = "n".repeat(64);
        let names = Names::new([record(&long, "web", &[], [10, 5, 0, 2])]);
        let mut r = responder();
        let q = query(9, "2.0.5.10.in-addr.arpa", RecordType::PTR);
        let (reply, _) = reply_to(ask(&mut r, &names, &[long.as_str()], &q));
        let RData::PTR(PTR(target)) = &reply.answers[0].data else {
            panic!("a PTR record: {:?}", reply.answers);
        };
        assert_eq!(target.to_ascii(), "web.");
    }

    #[test]
    fn cd_is_copied_and_our_opt_comes_back() {
        let names = names(0);
        let mut r = responder();
        let mut q = query_edns(5, "web", RecordType::A, 4096);
        q.metadata.checking_disabled = true;
        q.metadata.recursion_desired = false;
        let (reply, _) = reply_to(ask(&mut r, &names, RED, &q));
        assert!(reply.metadata.checking_disabled && !reply.metadata.recursion_desired);
        let edns = reply.edns.expect("an OPT record");
        assert_eq!((edns.max_payload(), edns.version()), (MAX_UDP_PAYLOAD, 0));
        assert!(!edns.flags().dnssec_ok);
    }

    /// Valid queries of every kind the responder tells apart, for mutation.
    fn valid_queries() -> Vec<Vec<u8>> {
        vec![
            bytes(&a("web")),
            bytes(&a("pool.red.")),
            bytes(&a("cache.blue")),
            bytes(&a("example.com")),
            bytes(&query(1, "web", RecordType::AAAA)),
            bytes(&query(2, "2.0.1.10.in-addr.arpa", RecordType::PTR)),
            bytes(&query_edns(3, "pool", RecordType::A, 600)),
            bytes(&query_edns(4, "api", RecordType::ANY, 4096)),
        ]
    }

    fn check_reply(query: &[u8], transport: Transport, verdict: &Verdict) {
        if let Verdict::Reply(reply) = verdict {
            let message = Message::from_vec(reply).expect("every reply decodes");
            let id = u16::from_be_bytes([query[0], query[1]]);
            assert_eq!(message.metadata.id, id, "under the query's id");
            assert_eq!(message.metadata.message_type, MessageType::Response);
            if transport == Transport::Udp {
                assert!(reply.len() <= usize::from(MAX_UDP_PAYLOAD));
            }
            assert!(reply.len() <= MAX_TCP_MESSAGE);
        }
    }

    fn unlimited() -> Responder {
        Responder::new(
            ResponderConfig {
                rate_limit: RateLimit {
                    per_second: 0,
                    ..RateLimit::default()
                },
                ..ResponderConfig::default()
            },
            3,
        )
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            query in proptest::collection::vec(any::<u8>(), 0..300),
            tcp in any::<bool>(),
        ) {
            let names = names(40);
            let mut r = unlimited();
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let verdict = ask_over(&mut r, &names, RED, transport, &query);
            check_reply(&query, transport, &verdict);
        }

        #[test]
        fn mutated_queries_never_panic(
            which in 0usize..8,
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..6),
            cut in 0usize..90,
            tcp in any::<bool>(),
        ) {
            let names = names(40);
            let mut r = unlimited();
            let mut query = valid_queries()[which].clone();
            for (at, byte) in flips {
                let len = query.len();
                query[at % len] = byte;
            }
            query.truncate(query.len().max(1) - cut.min(query.len().max(1) - 1));
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let verdict = ask_over(&mut r, &names, &["red", "blue"], transport, &query);
            check_reply(&query, transport, &verdict);
        }
    }
}
