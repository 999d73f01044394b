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
//! * Everything else is [`Responder`]'s and [`Forwarder`]'s contract.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use hashbrown::HashMap;

use super::{
    Action, DnsCounters, Forwarder, ForwarderConfig, Names, Outgoing, Record, Responder,
    ResponderConfig, Transport, Verdict,
};
use crate::router::DnsQuery;
use crate::time::Time;
use crate::wire::{MacAddr, VlanId};

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
    fn of(query: &DnsQuery) -> DnsClient {
        DnsClient {
            vlan: query.vlan,
            client_mac: query.client_mac,
            client: query.client,
            gateway: query.gateway,
            gateway_mac: query.gateway_mac,
        }
    }

    /// The frame that carries `message` to the client (see [`DnsQuery::reply_frame`]).
    pub fn reply_frame(&self, message: &[u8]) -> Vec<u8> {
        DnsQuery {
            vlan: self.vlan,
            client_mac: self.client_mac,
            client: self.client,
            gateway: self.gateway,
            gateway_mac: self.gateway_mac,
            message: Vec::new(),
        }
        .reply_frame(message)
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
}

/// The embedded DNS of one switchd.
#[derive(Debug)]
pub struct DnsService {
    names: Names,
    scopes: Scopes,
    responder: Responder,
    forwarder: Forwarder<DnsClient>,
}

impl DnsService {
    /// A service with no names and `upstreams` to forward to; `seed` feeds its ids and
    /// shuffles (switchd takes it from the OS).
    pub fn new(upstreams: Vec<SocketAddr>, seed: u64) -> DnsService {
        DnsService {
            names: Names::default(),
            scopes: Scopes::default(),
            responder: Responder::new(ResponderConfig::default(), seed),
            forwarder: Forwarder::new(
                ForwarderConfig {
                    upstreams,
                    ..ForwarderConfig::default()
                },
                seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15,
            ),
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
        let asker = (query.vlan, *query.client.ip());
        let own;
        let networks: &[String] = match self.scopes.askers.get(&asker) {
            Some(networks) => networks,
            None => {
                own = self.scopes.vlans.get(&query.vlan).cloned();
                own.as_slice()
            }
        };
        let client = DnsClient::of(query);
        match self.responder.handle(
            now,
            &self.names,
            networks,
            *query.client.ip(),
            Transport::Udp,
            &query.message,
        ) {
            Verdict::Reply(message) => Some(DnsStep::Reply { client, message }),
            Verdict::Forward => self
                .forwarder
                .forward(now, client, Transport::Udp, &query.message)
                .map(step),
            Verdict::Drop(_) => None,
        }
    }

    /// A datagram from `from` on the upstream socket: the reply to relay, if it is one.
    pub fn upstream_reply(&mut self, from: SocketAddr, message: &[u8]) -> Option<DnsStep> {
        self.forwarder
            .on_upstream_reply(from, message)
            .map(|(client, message)| DnsStep::Reply { client, message })
    }

    /// Retries and SERVFAILs due at `now`.
    pub fn poll(&mut self, now: Time) -> Vec<DnsStep> {
        self.forwarder
            .poll_timeouts(now)
            .into_iter()
            .map(step)
            .collect()
    }

    pub fn next_timeout(&self) -> Option<Time> {
        self.forwarder.next_timeout()
    }

    /// The responder's and the forwarder's counters, added up.
    pub fn counters(&self) -> DnsCounters {
        let mut counters = self.responder.counters();
        counters += &self.forwarder.counters();
        counters
    }
}

fn step(action: Action<DnsClient>) -> DnsStep {
    match action {
        Action::Send(outgoing) => DnsStep::Send(outgoing),
        Action::Reply { client, bytes } => DnsStep::Reply {
            client,
            message: bytes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::proto::op::{Message, MessageType, Query};
    use crate::dns::proto::rr::{Name, RData, RecordType};

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
        let Some(DnsStep::Reply { client, message }) =
            dns.upstream_reply(upstream, &reply.to_vec().unwrap())
        else {
            panic!("relayed")
        };
        assert_eq!(client.client, "10.0.0.9:40000".parse().unwrap());
        assert_eq!(Message::from_vec(&message).unwrap().metadata.id, 4);
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
}
