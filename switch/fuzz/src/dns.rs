//! `dns`: switchd's embedded DNS ([`switchyard::dns`]) on arbitrary queries and upstream
//! replies, with two networks (`red`: `web`, `db`, a shared alias `api` and 40 members
//! of `pool`, enough to truncate; `blue`: `cache`), a tight rate limit over a table of 4
//! sources, and a forwarder with 3 upstreams and room for 8 queries.
//!
//! Input: steps of a selector, four argument bytes and a chunk ([`crate::Input`]).
//! Selector % 4: 0 the chunk is a query from 10.1.0.(`a0` % 8) over UDP (`a1` even) or
//! TCP, asking from no network, `red`, `blue` or both (`a2`); what the responder forwards
//! goes to the forwarder. 1 the chunk is a datagram from upstream `a0` % 4 (0: no
//! upstream). 2 an answer to the query sent upstream `a0`-th from last: its header and
//! question with QR set, then the chunk, from upstream `a1` % 4. 3 the clock moves
//! `a0` × 100 ms and timeouts are polled. What the module documents is checked: every
//! reply the core builds decodes, under the query's id, within the size the transport
//! allows; a relayed upstream reply is the upstream's bytes under the client's id;
//! counters never go down; the forwarder holds at most 8 queries.
//!
//! Its seeds in `corpus/dns/` are written by hand with [`crate::record`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::Input;
use switchyard::dns::proto::op::Message;
use switchyard::dns::{
    Action, DnsCounters, Forwarder, ForwarderConfig, Header, Names, RateLimit, Record, Responder,
    ResponderConfig, Transport, Verdict, MAX_UDP_PAYLOAD,
};
use switchyard::time::Time;

const MAX_PENDING: usize = 8;

fn names() -> Names {
    let record = |network: &str, name: &str, aliases: &[&str], addr: [u8; 4]| Record {
        network: network.to_string(),
        name: name.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        addr: Ipv4Addr::from(addr),
    };
    let mut records = vec![
        record("red", "web", &["www", "api"], [10, 1, 0, 2]),
        record("red", "db", &["api"], [10, 1, 0, 3]),
        record("blue", "cache", &["store"], [10, 2, 0, 2]),
    ];
    for n in 0..40 {
        records.push(record("red", &format!("m{n}"), &["pool"], [10, 1, 1, n]));
    }
    Names::new(records)
}

fn upstream(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 53))
}

pub fn run(data: &[u8]) {
    let names = names();
    let mut responder = Responder::new(
        ResponderConfig {
            rate_limit: RateLimit {
                per_second: 50,
                burst: 20,
                max_sources: 4,
            },
            ..ResponderConfig::default()
        },
        1,
    );
    let mut forwarder = Forwarder::<SocketAddrV4>::new(
        ForwarderConfig {
            upstreams: vec![upstream(1), upstream(2), upstream(3)],
            timeout: Duration::from_secs(2),
            max_pending: MAX_PENDING,
        },
        2,
    );
    // The queries sent upstream, latest last, and the client id each is for.
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut ids: Vec<(SocketAddrV4, u16)> = Vec::new();
    let mut now = Time::from_secs(1);
    let mut counters = DnsCounters::default();
    let mut input = Input::new(data);
    while !input.is_empty() {
        let selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        match selector % 4 {
            0 => {
                let source = Ipv4Addr::new(10, 1, 0, args[0] % 8);
                let transport = if args[1].is_multiple_of(2) {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                let networks: &[&str] = match args[2] % 4 {
                    0 => &[],
                    1 => &["red"],
                    2 => &["blue"],
                    _ => &["red", "blue"],
                };
                match responder.handle(now, &names, networks, source, transport, chunk) {
                    Verdict::Reply(reply) => built(chunk, transport, &reply),
                    Verdict::Forward => {
                        let client = SocketAddrV4::new(source, 40000);
                        match forwarder.forward(now, client, transport, chunk) {
                            Some(Action::Send(out)) => {
                                assert_eq!(out.bytes[2..], chunk[2..], "only the id changes");
                                ids.push((client, id_of(chunk)));
                                sent.push(out.bytes);
                            }
                            Some(Action::Reply { bytes, .. }) => built(chunk, transport, &bytes),
                            None => {}
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            1 => {
                let from = upstream(args[0] % 4);
                if let Some((client, relayed)) = forwarder.on_upstream_reply(from, chunk) {
                    relayed_ok(&ids, client, chunk, &relayed);
                }
            }
            2 => {
                if sent.is_empty() {
                    continue;
                }
                let query = &sent[sent.len() - 1 - usize::from(args[0]) % sent.len()];
                let end = switchyard::dns::question_end(query).unwrap_or(query.len());
                let mut reply = query[..end].to_vec();
                reply[2] |= 0x80;
                reply.extend_from_slice(chunk);
                let from = upstream(args[1] % 4);
                if let Some((client, relayed)) = forwarder.on_upstream_reply(from, &reply) {
                    relayed_ok(&ids, client, &reply, &relayed);
                }
            }
            _ => {
                now = now + Duration::from_millis(u64::from(args[0]) * 100);
                for action in forwarder.poll_timeouts(now) {
                    match action {
                        Action::Send(out) => {
                            assert!([upstream(1), upstream(2), upstream(3)].contains(&out.upstream));
                        }
                        Action::Reply { bytes, .. } => {
                            let reply = Message::from_vec(&bytes).expect("a SERVFAIL decodes");
                            assert_eq!(u16::from(reply.metadata.response_code), 2);
                        }
                    }
                }
            }
        }
        assert!(forwarder.pending() <= MAX_PENDING);
        if let Some(deadline) = forwarder.next_timeout() {
            assert!(deadline > now, "every due timeout was polled or is new");
        }
        let mut next = responder.counters();
        next += &forwarder.counters();
        never_down(&counters, &next);
        counters = next;
    }
}

fn id_of(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// A reply the core built for `query`: it decodes, under the query's id, and fits.
fn built(query: &[u8], transport: Transport, reply: &[u8]) {
    let message = Message::from_vec(reply).expect("every reply the core builds decodes");
    assert_eq!(message.metadata.id, id_of(query), "under the query's id");
    assert!(Header::new_checked(reply).is_some_and(|h| h.is_response()));
    if transport == Transport::Udp {
        assert!(reply.len() <= usize::from(MAX_UDP_PAYLOAD));
    }
    assert!(reply.len() <= 65535);
}

/// An upstream reply passed on: the upstream's bytes, under the id of a client that
/// asked.
fn relayed_ok(ids: &[(SocketAddrV4, u16)], client: SocketAddrV4, from: &[u8], relayed: &[u8]) {
    assert_eq!(relayed[2..], from[2..], "passed on as it came");
    assert!(
        ids.contains(&(client, id_of(relayed))),
        "under the id the client used"
    );
}

fn never_down(before: &DnsCounters, after: &DnsCounters) {
    let fields = |c: &DnsCounters| {
        [
            c.answered_local,
            c.nxdomain,
            c.nodata,
            c.forwarded,
            c.truncated,
            c.formerr,
            c.notimp,
            c.badvers,
            c.rate_limited,
            c.malformed_dropped,
            c.responses_dropped,
            c.upstream_queries,
            c.upstream_replies,
            c.upstream_timeouts,
            c.servfail,
            c.pending_full,
            c.duplicates,
            c.stray_replies,
        ]
    };
    for (old, new) in fields(before).into_iter().zip(fields(after)) {
        assert!(new >= old, "counters only ever increase");
    }
}
