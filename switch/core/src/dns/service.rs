//! The embedded DNS as the datapath runs it: the router hands over a query to a gateway
//! ([`DnsQuery`]); the service answers it from the names of the networks the asker is on,
//! or forwards it, and later relays the upstream's reply or a SERVFAIL.
//!
//! # Contract
//!
//! * **Scope.** The asker is known by (VLAN, source address): an endpoint of the network
//!   on that VLAN. It is answered from every network its namespace has an endpoint on
//!   (as Docker's DNS answers for all of a container's networks), which the controller
//!   computes ([`Scopes`]); an unknown asker, from the network of the VLAN only.
//! * **One lock.** The service is behind its own mutex in the datapath, taken only for DNS
//!   packets and timeouts: forwarding threads never wait on it for anything else.
//! * **TCP.** The service owns the [`TcpResponder`]: segments the router hands over
//!   ([`DnsService::segment`]) are answered like datagrams, over [`Transport::Tcp`] (no
//!   truncation); a forwarded one is relayed back on its connection when the upstream
//!   answers, or dropped if the connection is gone by then. switchd's driver sends every
//!   forwarded query over its UDP socket, whatever [`Outgoing::transport`] says, so an
//!   answer too large for UDP reaches a TCP client truncated (TC set), as it came.
//! * Everything else is [`Responder`]'s, [`Forwarder`]'s and [`TcpResponder`]'s contract.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use hashbrown::HashMap;

use super::tcp::{TcpConnId, TcpFrame, TcpResponder};
use super::{
    Action, DnsCounters, Forwarder, ForwarderConfig, Names, Outgoing, RateLimit, Record, Responder,
    ResponderConfig, Transport, Verdict,
};
use crate::router::{ethernet_frame, ipv4_packet, DnsQuery, DnsSegment, DNS_PORT};
use crate::time::Time;
use crate::wire::udp::UdpPacket;
use crate::wire::{EtherType, IpProtocol, Ipv4Packet, MacAddr, TcpPacket, VlanId};

/// Where an answer goes: the query's sender, as the router saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsClient {
    pub vlan: VlanId,
    pub client_mac: MacAddr,
    pub client: SocketAddrV4,
    pub gateway: Ipv4Addr,
    pub gateway_mac: MacAddr,
}

impl DnsClient {
    pub(crate) fn of(query: &DnsQuery) -> DnsClient {
        DnsClient {
            vlan: query.vlan,
            client_mac: query.client_mac,
            client: query.client,
            gateway: query.gateway,
            gateway_mac: query.gateway_mac,
        }
    }

    pub(crate) fn of_segment(segment: &DnsSegment) -> DnsClient {
        DnsClient {
            vlan: segment.vlan,
            client_mac: segment.client_mac,
            client: segment.client,
            gateway: segment.gateway,
            gateway_mac: segment.gateway_mac,
        }
    }

    /// The untagged Ethernet frame that answers the client with `message`: UDP from the
    /// gateway's port 53 to the client's port, checksummed. Empty when `message` cannot
    /// fit in one IPv4 packet.
    pub fn reply_frame(&self, message: &[u8]) -> Vec<u8> {
        let mut udp = Vec::with_capacity(crate::wire::udp::HEADER_LEN + message.len());
        udp.extend_from_slice(&DNS_PORT.to_be_bytes());
        udp.extend_from_slice(&self.client.port().to_be_bytes());
        udp.extend_from_slice(&[0, 0, 0, 0]); // length, checksum: filled by `frame`
        udp.extend_from_slice(message);
        self.frame(IpProtocol::UDP, udp)
    }

    /// The untagged Ethernet frame from the gateway to the client carrying `l4`, a UDP
    /// datagram or TCP segment from port 53 with its checksum (and a UDP length) still to
    /// fill, which this does. Empty when it cannot fit in one IPv4 packet.
    pub(crate) fn frame(&self, protocol: IpProtocol, mut l4: Vec<u8>) -> Vec<u8> {
        let Ok(l4_len) = u16::try_from(l4.len()) else {
            return Vec::new();
        };
        if protocol == IpProtocol::UDP {
            if let Some(length) = l4.get_mut(4..6) {
                length.copy_from_slice(&l4_len.to_be_bytes());
            }
        }
        let mut packet = ipv4_packet(self.gateway, *self.client.ip(), protocol, &l4);
        let Ok(ip) = Ipv4Packet::new_checked(&packet[..]) else {
            return Vec::new();
        };
        let (sum, header_len) = (ip.pseudo_header_sum(l4_len), ip.header_len());
        let l4 = &mut packet[header_len..];
        if protocol == IpProtocol::UDP {
            if let Ok(mut view) = UdpPacket::new_checked(l4) {
                view.fill_checksum(sum);
            }
        } else if let Ok(mut view) = TcpPacket::new_checked(l4) {
            view.fill_checksum(sum);
        }
        ethernet_frame(self.client_mac, self.gateway_mac, EtherType::IPV4, &packet)
    }
}

/// Which networks each asker is on: (VLAN, address) → network names; and the network of
/// each VLAN, for askers that are no endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    pub askers: HashMap<(VlanId, Ipv4Addr), Vec<String>>,
    pub vlans: HashMap<VlanId, String>,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsStep {
    /// Send this answer to the client ([`DnsClient::reply_frame`]).
    Reply { client: DnsClient, message: Vec<u8> },
    /// Send this query to an upstream.
    Send(Outgoing),
    /// Send this frame (a TCP segment to a client, complete) into the switch.
    Frame(TcpFrame),
}

/// Whom a forwarded query's answer goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Asker {
    Udp(DnsClient),
    Tcp(TcpConnId),
}

/// The embedded DNS of one switchd.
#[derive(Debug)]
pub struct DnsService {
    names: Names,
    scopes: Scopes,
    responder: Responder,
    forwarder: Forwarder<Asker>,
    tcp: TcpResponder,
}

impl DnsService {
    /// A service with no names and `upstreams` to forward to; `seed` feeds its ids and
    /// shuffles (switchd takes it from the OS).
    pub fn new(upstreams: Vec<SocketAddr>, seed: u64) -> DnsService {
        DnsService::with_rate_limit(upstreams, RateLimit::default(), seed)
    }

    /// [`DnsService::new`] with another per-source rate limit (`per_second` 0: none).
    pub fn with_rate_limit(
        upstreams: Vec<SocketAddr>,
        rate_limit: RateLimit,
        seed: u64,
    ) -> DnsService {
        DnsService {
            names: Names::default(),
            scopes: Scopes::default(),
            responder: Responder::new(
                ResponderConfig {
                    rate_limit,
                    ..ResponderConfig::default()
                },
                seed,
            ),
            forwarder: Forwarder::new(
                ForwarderConfig {
                    upstreams,
                    ..ForwarderConfig::default()
                },
                seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15,
            ),
            tcp: TcpResponder::new(seed.rotate_left(16) ^ 0x2545_f491_4f6c_dd1d),
        }
    }

    /// Replaces the names and scopes (the controller, whenever endpoints change).
    pub fn set_names(&mut self, records: Vec<Record>, scopes: Scopes) {
        self.names = Names::new(records);
        self.scopes = scopes;
    }

    pub fn set_upstreams(&mut self, upstreams: Vec<SocketAddr>) {
        self.forwarder.set_upstreams(upstreams);
    }

    /// A query the router handed over.
    pub fn query(&mut self, now: Time, query: &DnsQuery) -> Option<DnsStep> {
        let networks = self.networks(query.vlan, *query.client.ip());
        let client = DnsClient::of(query);
        match self.responder.handle(
            now,
            &self.names,
            &networks,
            *query.client.ip(),
            Transport::Udp,
            &query.message,
        ) {
            Verdict::Reply(message) => Some(DnsStep::Reply { client, message }),
            Verdict::Forward => {
                let action = self.forwarder.forward(
                    now,
                    Asker::Udp(client),
                    Transport::Udp,
                    &query.message,
                )?;
                let mut steps = Vec::new();
                self.act(now, action, &mut steps);
                steps.pop()
            }
            Verdict::Drop(_) => None,
        }
    }

    /// A TCP segment the router handed over: the frames to send (SYN-ACK, ACK, answers,
    /// FIN, RST) and queries to send upstream.
    pub fn segment(&mut self, now: Time, segment: &DnsSegment) -> Vec<DnsStep> {
        let mut frames = Vec::new();
        let mut steps = Vec::new();
        if let Some((id, messages)) = self.tcp.on_segment(now, segment, &mut frames) {
            self.answer_tcp(now, id, messages, &mut steps);
            self.tcp.flush(now, id, &mut frames);
        }
        steps.extend(frames.into_iter().map(DnsStep::Frame));
        steps
    }

    /// Answers `messages` read from connection `id` (and those that can be read after
    /// them), queueing local answers and pushing queries for upstreams onto `steps`.
    fn answer_tcp(
        &mut self,
        now: Time,
        id: TcpConnId,
        mut messages: Vec<Vec<u8>>,
        steps: &mut Vec<DnsStep>,
    ) {
        let source = *id.key.client.ip();
        let networks = self.networks(id.key.vlan, source);
        while !messages.is_empty() {
            for message in &messages {
                match self.responder.handle(
                    now,
                    &self.names,
                    &networks,
                    source,
                    Transport::Tcp,
                    message,
                ) {
                    Verdict::Reply(answer) => {
                        self.tcp.queue(id, &answer, false);
                    }
                    Verdict::Forward => {
                        match self
                            .forwarder
                            .forward(now, Asker::Tcp(id), Transport::Tcp, message)
                        {
                            Some(Action::Send(outgoing)) => {
                                self.tcp.awaiting(id);
                                steps.push(DnsStep::Send(outgoing));
                            }
                            Some(Action::Reply { bytes, .. }) => {
                                self.tcp.queue(id, &bytes, false);
                            }
                            None => {}
                        }
                    }
                    Verdict::Drop(_) => {}
                }
            }
            messages = self.tcp.read_messages(id);
        }
    }

    /// The networks an asker is answered from.
    fn networks(&self, vlan: VlanId, source: Ipv4Addr) -> Vec<String> {
        match self.scopes.askers.get(&(vlan, source)) {
            Some(networks) => networks.clone(),
            None => self.scopes.vlans.get(&vlan).cloned().into_iter().collect(),
        }
    }

    /// A datagram from `from` on the upstream socket: the reply to relay, if it is one
    /// (for a TCP client, the segments that carry it).
    pub fn upstream_reply(&mut self, now: Time, from: SocketAddr, message: &[u8]) -> Vec<DnsStep> {
        let mut steps = Vec::new();
        if let Some((client, bytes)) = self.forwarder.on_upstream_reply(from, message) {
            self.act(now, Action::Reply { client, bytes }, &mut steps);
        }
        steps
    }

    /// What the driver does for one of the forwarder's actions.
    fn act(&mut self, now: Time, action: Action<Asker>, steps: &mut Vec<DnsStep>) {
        match action {
            Action::Send(outgoing) => steps.push(DnsStep::Send(outgoing)),
            Action::Reply {
                client: Asker::Udp(client),
                bytes,
            } => steps.push(DnsStep::Reply {
                client,
                message: bytes,
            }),
            Action::Reply {
                client: Asker::Tcp(id),
                bytes,
            } => {
                // Dropped if the connection is gone (or its answers do not fit).
                self.tcp.queue(id, &bytes, true);
                let messages = self.tcp.read_messages(id);
                self.answer_tcp(now, id, messages, steps);
                let mut frames = Vec::new();
                self.tcp.flush(now, id, &mut frames);
                steps.extend(frames.into_iter().map(DnsStep::Frame));
            }
        }
    }

    /// Retries, SERVFAILs and TCP timers due at `now`.
    pub fn poll(&mut self, now: Time) -> Vec<DnsStep> {
        let mut steps = Vec::new();
        for action in self.forwarder.poll_timeouts(now) {
            self.act(now, action, &mut steps);
        }
        let mut frames = Vec::new();
        self.tcp.poll(now, &mut frames);
        steps.extend(frames.into_iter().map(DnsStep::Frame));
        steps
    }

    pub fn next_timeout(&self) -> Option<Time> {
        match (self.forwarder.next_timeout(), self.tcp.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// TCP connections open.
    pub fn tcp_connections(&self) -> usize {
        self.tcp.connections()
    }

    /// The responder's and the forwarder's counters, added up.
    pub fn counters(&self) -> DnsCounters {
        let mut counters = self.responder.counters();
        counters += &self.forwarder.counters();
        counters += &self.tcp.counters();
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::proto::op::{Message, MessageType, Query};
    use crate::dns::proto::rr::{Name, RData, RecordType};
    use crate::wire::MacAddr;

    fn query_for(name: &str, id: u16) -> Vec<u8> {
        let mut message =
            Message::new(id, MessageType::Query, crate::dns::proto::op::OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        message.to_vec().unwrap()
    }

    fn asked(vlan: u16, from: &str, message: Vec<u8>) -> DnsQuery {
        DnsQuery {
            vlan: VlanId::new(vlan).unwrap(),
            client_mac: MacAddr([2, 0x42, 10, 0, 0, 2]),
            client: format!("{from}:40000").parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            gateway_mac: MacAddr([2, 0x53, 0, 0, 0, 1]),
            message,
        }
    }

    fn addresses(message: &[u8]) -> Vec<Ipv4Addr> {
        Message::from_vec(message)
            .unwrap()
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn askers_see_the_names_of_every_network_they_are_on() {
        let upstream: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let mut dns = DnsService::new(vec![upstream], 7);
        let record = |network: &str, name: &str, addr: &str| Record {
            network: network.into(),
            name: name.into(),
            aliases: Vec::new(),
            addr: addr.parse().unwrap(),
        };
        let blue = VlanId::new(10).unwrap();
        let red = VlanId::new(20).unwrap();
        let mut scopes = Scopes::default();
        scopes.vlans.insert(blue, "blue".into());
        scopes.vlans.insert(red, "red".into());
        // 10.0.0.2 on blue has a leg on red too.
        scopes.askers.insert(
            (blue, "10.0.0.2".parse().unwrap()),
            vec!["blue".into(), "red".into()],
        );
        dns.set_names(
            vec![
                record("blue", "web", "10.0.0.3"),
                record("red", "db", "10.1.0.3"),
            ],
            scopes,
        );
        let now = Time::ZERO;
        let Some(DnsStep::Reply { message, client }) =
            dns.query(now, &asked(10, "10.0.0.2", query_for("db.", 1)))
        else {
            panic!("db is on one of the asker's networks")
        };
        assert_eq!(
            addresses(&message),
            ["10.1.0.3".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(client.client, "10.0.0.2:40000".parse().unwrap());
        // Another container of blue only: db is elsewhere, NXDOMAIN, not forwarded.
        let Some(DnsStep::Reply { message, .. }) =
            dns.query(now, &asked(10, "10.0.0.9", query_for("db.", 2)))
        else {
            panic!("answered")
        };
        let reply = Message::from_vec(&message).unwrap();
        assert_eq!(
            reply.metadata.response_code,
            crate::dns::proto::op::ResponseCode::NXDomain
        );
        let Some(DnsStep::Reply { message, .. }) =
            dns.query(now, &asked(10, "10.0.0.9", query_for("web.blue.", 3)))
        else {
            panic!("answered")
        };
        assert_eq!(
            addresses(&message),
            ["10.0.0.3".parse::<Ipv4Addr>().unwrap()]
        );

        // Anything else goes upstream, and the upstream's reply back to the asker.
        let Some(DnsStep::Send(out)) =
            dns.query(now, &asked(10, "10.0.0.9", query_for("example.org.", 4)))
        else {
            panic!("forwarded")
        };
        assert_eq!(out.upstream, upstream);
        let mut reply = Message::from_vec(&out.bytes).unwrap();
        reply.metadata.message_type = MessageType::Response;
        let relayed = dns.upstream_reply(now, upstream, &reply.to_vec().unwrap());
        let [DnsStep::Reply { client, message }] = relayed.as_slice() else {
            panic!("relayed")
        };
        assert_eq!(client.client, "10.0.0.9:40000".parse().unwrap());
        assert_eq!(Message::from_vec(message).unwrap().metadata.id, 4);
        // A silent upstream: SERVFAIL once the tries are over.
        let Some(DnsStep::Send(_)) =
            dns.query(now, &asked(10, "10.0.0.9", query_for("silent.org.", 5)))
        else {
            panic!("forwarded")
        };
        let later = dns.next_timeout().expect("a timer");
        let steps = dns.poll(later);
        let Some(DnsStep::Reply { message, .. }) = steps.last() else {
            panic!("{steps:?}")
        };
        assert_eq!(
            Message::from_vec(message).unwrap().metadata.response_code,
            crate::dns::proto::op::ResponseCode::ServFail
        );
        let counters = dns.counters();
        assert_eq!(counters.answered_local, 2);
        assert_eq!(counters.nxdomain, 1);
        assert_eq!(counters.forwarded, 2);
    }

    /// A TCP segment from 10.0.0.2:`port` to the gateway's port 53.
    fn tcp_segment(port: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> DnsSegment {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&port.to_be_bytes());
        tcp.extend_from_slice(&53u16.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(data);
        DnsSegment {
            vlan: VlanId::new(10).unwrap(),
            client_mac: MacAddr([2, 0x42, 10, 0, 0, 2]),
            client: SocketAddrV4::new("10.0.0.2".parse().unwrap(), port),
            gateway: "10.0.0.1".parse().unwrap(),
            gateway_mac: MacAddr([2, 0x53, 0, 0, 0, 1]),
            segment: tcp,
        }
    }

    /// (seq, flags, data) of each frame among `steps`.
    fn segments(steps: &[DnsStep]) -> Vec<(u32, u8, Vec<u8>)> {
        use smoltcp::wire as smol;
        steps
            .iter()
            .filter_map(|step| match step {
                DnsStep::Frame(frame) => Some(frame),
                _ => None,
            })
            .map(|frame| {
                let eth = smol::EthernetFrame::new_checked(&frame.frame[..]).unwrap();
                let ip = smol::Ipv4Packet::new_checked(eth.payload()).unwrap();
                let tcp = smol::TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum(
                    &smol::IpAddress::Ipv4(ip.src_addr()),
                    &smol::IpAddress::Ipv4(ip.dst_addr())
                ));
                let flags = ip.payload()[13];
                (tcp.seq_number().0 as u32, flags, tcp.payload().to_vec())
            })
            .collect()
    }

    fn framed(message: &[u8]) -> Vec<u8> {
        [&(message.len() as u16).to_be_bytes()[..], message].concat()
    }

    /// The DNS messages in a TCP byte stream.
    fn unframe(mut stream: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        while stream.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
            out.push(Message::from_vec(&stream[2..2 + len]).unwrap());
            stream = &stream[2 + len..];
        }
        out
    }

    #[test]
    fn queries_over_tcp_are_answered_on_their_connection() {
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        let upstream: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let mut dns = DnsService::new(vec![upstream], 9);
        let blue = VlanId::new(10).unwrap();
        let mut scopes = Scopes::default();
        scopes.vlans.insert(blue, "blue".into());
        let mut records = vec![Record {
            network: "blue".into(),
            name: "web".into(),
            aliases: Vec::new(),
            addr: "10.0.0.3".parse().unwrap(),
        }];
        // Enough members of one alias that the answer needs two segments, and truncation
        // over UDP.
        for n in 0..120u8 {
            records.push(Record {
                network: "blue".into(),
                name: format!("m{n}"),
                aliases: vec!["many".into()],
                addr: Ipv4Addr::new(10, 0, 1, n),
            });
        }
        dns.set_names(records, scopes);
        let now = Time::from_secs(1);

        let steps = dns.segment(now, &tcp_segment(41000, 100, 0, SYN, &[]));
        let [(iss, flags, _)] = segments(&steps)[..] else {
            panic!("{steps:?}")
        };
        assert_eq!(flags, SYN | ACK);
        let ours = iss + 1;
        assert!(dns
            .segment(now, &tcp_segment(41000, 101, ours, ACK, &[]))
            .is_empty());
        assert_eq!(dns.tcp_connections(), 1);

        // Two queries in one segment: a local name and one for upstream.
        let data = [
            framed(&query_for("web.", 1)),
            framed(&query_for("example.org.", 2)),
        ]
        .concat();
        let steps = dns.segment(now, &tcp_segment(41000, 101, ours, ACK | 0x08, &data));
        let Some(DnsStep::Send(out)) = steps.iter().find(|s| matches!(s, DnsStep::Send(_))) else {
            panic!("{steps:?}")
        };
        assert_eq!(out.transport, Transport::Tcp);
        let sent = segments(&steps);
        let answers = unframe(&sent[0].2);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].metadata.id, 1);
        assert_eq!(
            addresses(&answers[0].to_vec().unwrap()),
            ["10.0.0.3".parse::<Ipv4Addr>().unwrap()]
        );
        let mut next = ours + sent[0].2.len() as u32;

        // The upstream's answer goes back on the connection.
        let mut reply = Message::from_vec(&out.bytes).unwrap();
        reply.metadata.message_type = MessageType::Response;
        let steps = dns.upstream_reply(now, upstream, &reply.to_vec().unwrap());
        let sent = segments(&steps);
        assert_eq!(sent.len(), 1, "{steps:?}");
        assert_eq!(sent[0].0, next);
        assert_eq!(unframe(&sent[0].2)[0].metadata.id, 2);
        next += sent[0].2.len() as u32;

        // A big answer: not truncated, in segments of 536 (no MSS option).
        let seq = 101 + data.len() as u32;
        let big = framed(&query_for("many.", 3));
        let steps = dns.segment(now, &tcp_segment(41000, seq, next, ACK, &big));
        let sent = segments(&steps);
        assert!(sent.len() > 2, "{sent:?}");
        assert!(sent.iter().all(|(_, _, data)| data.len() <= 536));
        let stream: Vec<u8> = sent.iter().flat_map(|(_, _, d)| d.clone()).collect();
        let answer = &unframe(&stream)[0];
        assert!(!answer.metadata.truncation);
        assert_eq!(answer.answers.len(), 120);
        // Over UDP the same question is truncated.
        let Some(DnsStep::Reply { message, .. }) =
            dns.query(now, &asked(10, "10.0.0.2", query_for("many.", 4)))
        else {
            panic!("answered")
        };
        assert!(Message::from_vec(&message).unwrap().metadata.truncation);

        let counters = dns.counters();
        assert_eq!((counters.tcp_connections, counters.tcp_messages), (1, 3));
    }
}
