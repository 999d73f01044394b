//! Builders the DNS tests share: queries and replies made with hickory-proto.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record as Rr, RecordType};

use super::names::{Names, Record};

/// A query for `name` and `qtype`, RD set.
pub(crate) fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// [`query`] with an OPT record advertising `payload` bytes.
pub(crate) fn query_edns(id: u16, name: &str, qtype: RecordType, payload: u16) -> Message {
    let mut message = query(id, name, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.set_edns(edns);
    message
}

pub(crate) fn bytes(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

/// An upstream's answer to `query` (as sent, id included): one A record.
pub(crate) fn answer(query: &[u8], addr: Ipv4Addr) -> Vec<u8> {
    let request = Message::from_vec(query).unwrap();
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let question = request.queries[0].clone();
    reply.add_answer(Rr::from_rdata(
        question.name().clone(),
        300,
        RData::A(A(addr)),
    ));
    reply.add_query(question);
    bytes(&reply)
}

pub(crate) fn record(network: &str, name: &str, aliases: &[&str], addr: [u8; 4]) -> Record {
    Record {
        network: network.to_string(),
        name: name.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        addr: Ipv4Addr::from(addr),
    }
}

/// Two networks: `red` (web and db, sharing the alias `api`) and `blue` (cache, alias
/// `store`), plus `many` members of the alias `pool` on `red` (10.1.1.0 and up).
pub(crate) fn names(many: u8) -> Names {
    let mut records = vec![
        record("red", "web", &["www", "api"], [10, 1, 0, 2]),
        record("red", "db", &["api"], [10, 1, 0, 3]),
        record("blue", "cache", &["store"], [10, 2, 0, 2]),
    ];
    for n in 0..many {
        records.push(record(
            "red",
            &format!("member{n}"),
            &["pool"],
            [10, 1, 1, n],
        ));
    }
    Names::new(records)
}

/// The addresses of a reply's A records, in order.
pub(crate) fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(A(addr)) => Some(*addr),
            _ => None,
        })
        .collect()
}
