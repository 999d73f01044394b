//! `router`: [`Router::from_switch`] and [`Router::from_uplink`] on arbitrary frames and
//! packets, with three interfaces: VLAN 10 (10.1.0.0/24, routed), VLAN 20 (10.2.0.0/24,
//! internal) and VLAN 30 (10.0.0.0/8, routed: it overlaps VLAN 10's, so the longest
//! prefix decides), and a static neighbour.
//!
//! Input: steps of a selector, four argument bytes and a chunk ([`crate::Input`]).
//! Selector % 5: 0 the chunk is a frame from the switch on VLAN 10, 20, 30 or 40 (`a0`),
//! 1 an IP packet from the uplink (`a0` odd: the router may hold it), 2 the clock moves
//! `a0` seconds and the router ages, 3 an interface is replaced (its subnet narrowed to
//! `/a1`), 4 an interface is removed. What the router documents is checked: counters
//! never go down, every packet it originates is well formed, a forwarded packet lost
//! exactly one TTL and kept a good header checksum. TCP segments to a gateway's port 53
//! go through one [`TcpResponder`] (each message answered with itself; its timers run
//! when the clock moves): every frame it sends is well formed, with good IPv4 and TCP
//! checksums, and it never holds more than [`MAX_CONNECTIONS`] connections.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use switchyard::dns::{TcpFrame, TcpResponder, MAX_CONNECTIONS};
use switchyard::router::{DnsSegment, Interface, Router, RouterCounters, RouterOutput, Verdict};
use switchyard::time::Time;
use switchyard_wire::{EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, TcpPacket};

use crate::datapath::vlan;
use crate::Input;

pub fn interfaces() -> [Interface; 3] {
    let iface = |id, subnet: &str, gateway: &str, uplink| Interface {
        vlan: vlan(id),
        subnet: subnet.parse().unwrap(),
        gateway: gateway.parse().unwrap(),
        mac: MacAddr([0x02, 0x53, 0x58, 0, 0, id as u8]),
        uplink,
    };
    [
        iface(10, "10.1.0.0/24", "10.1.0.1", true),
        iface(20, "10.2.0.0/24", "10.2.0.1", false),
        iface(30, "10.0.0.0/8", "10.0.0.1", true),
    ]
}

pub fn run(data: &[u8]) {
    let mut router = Router::new();
    router.set_dns(true);
    for iface in interfaces() {
        router.set_interface(iface);
    }
    router.set_static_neighbor(
        vlan(10),
        Ipv4Addr::new(10, 1, 0, 5),
        MacAddr([0x02, 0x42, 10, 1, 0, 5]),
    );
    let mut now = Time::from_secs(1);
    let mut counters = router.counters();
    let mut out = Vec::new();
    let mut tcp = TcpResponder::new(u64::from(data.first().copied().unwrap_or(0)));
    let mut frames = Vec::new();
    let mut input = Input::new(data);
    while !input.is_empty() {
        let selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        let mut packet = chunk.to_vec();
        match selector % 5 {
            0 => {
                let on = vlan([10, 20, 30, 40][usize::from(args[0] % 4)]);
                let verdict = router.from_switch(now, on, &mut packet, &mut out);
                if verdict == Verdict::ToUplink {
                    forwarded(&chunk[14..], &packet[14..]);
                }
            }
            1 => {
                let can_hold = args[0] % 2 == 1;
                let verdict = router.from_uplink(now, &mut packet, can_hold, &mut out);
                if let Verdict::ToSwitch { .. } = verdict {
                    forwarded(chunk, &packet);
                }
            }
            2 => {
                now = now + Duration::from_secs(u64::from(args[0]));
                router.handle_timeout(now);
                tcp.poll(now, &mut frames);
            }
            3 => {
                let mut iface = interfaces()[usize::from(args[0] % 3)];
                let prefix = iface.subnet.prefix_len().max(args[1] % 31);
                iface.subnet = Ipv4Net::new(iface.gateway, prefix).unwrap().trunc();
                iface.uplink = args[2].is_multiple_of(2);
                router.set_interface(iface);
            }
            _ => {
                router.remove_interface(interfaces()[usize::from(args[0] % 3)].vlan);
            }
        }
        for output in out.drain(..) {
            well_formed(&output);
            if let RouterOutput::DnsTcp(segment) = &output {
                serve_tcp(&mut tcp, now, segment, &mut frames);
            }
        }
        for frame in frames.drain(..) {
            tcp_well_formed(&frame);
        }
        assert!(tcp.connections() <= MAX_CONNECTIONS);
        let next = router.counters();
        never_down(&counters, &next);
        counters = next;
        let _ = (router.neighbors(), router.next_timeout());
    }
}

/// What the DNS service does with a segment, each message answered with itself.
fn serve_tcp(tcp: &mut TcpResponder, now: Time, segment: &DnsSegment, frames: &mut Vec<TcpFrame>) {
    if let Some((id, messages)) = tcp.on_segment(now, segment, frames) {
        for message in messages {
            tcp.queue(id, &message, false);
        }
        tcp.flush(now, id, frames);
    }
}

/// A segment the TCP responder sends: from a router MAC, IPv4 and TCP checksums right.
fn tcp_well_formed(frame: &TcpFrame) {
    well_formed(&RouterOutput::ToSwitch {
        vlan: frame.vlan,
        frame: frame.frame.clone(),
    });
    let ip = Ipv4Packet::new_checked(&frame.frame[14..]).expect("an IPv4 packet");
    assert_eq!(ip.protocol(), IpProtocol::TCP);
    let tcp = TcpPacket::new_checked(ip.payload()).expect("a TCP segment");
    assert_eq!(tcp.src_port(), 53);
    let sum = ip.pseudo_header_sum(ip.payload().len() as u16);
    assert!(tcp.verify_checksum(sum), "a full TCP checksum");
}

/// A forwarded packet: the same but for one TTL less and the header checksum.
fn forwarded(before: &[u8], after: &[u8]) {
    let old = Ipv4Packet::new_checked(before).expect("a forwarded packet was IPv4");
    let new = Ipv4Packet::new_checked(after).expect("and still is");
    assert_eq!(new.ttl(), old.ttl() - 1, "one TTL less");
    assert!(new.verify_checksum(), "the header checksum follows the TTL");
    assert_eq!(before[..8], after[..8]);
    assert_eq!(before[12..], after[12..], "nothing else changes");
}

fn well_formed(output: &RouterOutput) {
    let packet = match output {
        RouterOutput::ToSwitch { frame, .. } => {
            let eth = EthernetFrame::new_checked(&frame[..]).expect("an Ethernet frame");
            assert!(eth.src().is_valid_source(), "from one of the router's MACs");
            if eth.ethertype() != switchyard_wire::EtherType::IPV4 {
                return;
            }
            &frame[14..]
        }
        RouterOutput::ToUplink { packet } => &packet[..],
        RouterOutput::DnsTcp(segment) => {
            assert!(TcpPacket::new_checked(&segment.segment[..]).is_ok());
            assert_eq!(
                TcpPacket::new_checked(&segment.segment[..])
                    .unwrap()
                    .dst_port(),
                53
            );
            return;
        }
        RouterOutput::Dns(query) => {
            // The answer to a query is a frame like any other the router sends.
            let frame = query.reply_frame(&query.message);
            assert!(!frame.is_empty(), "a query's own size always fits");
            return well_formed(&RouterOutput::ToSwitch {
                vlan: query.vlan,
                frame,
            });
        }
    };
    let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 packet");
    assert!(ip.verify_checksum(), "with a good header checksum");
    assert!(ip.ttl() > 0);
}

fn never_down(before: &RouterCounters, after: &RouterCounters) {
    for (reason, count) in &before.drops {
        assert!(after.drops.get(reason).copied().unwrap_or(0) >= *count);
    }
    let pairs = [
        (before.arp_replies_sent, after.arp_replies_sent),
        (before.arp_requests_sent, after.arp_requests_sent),
        (before.echo_replies_sent, after.echo_replies_sent),
        (before.dns_queries, after.dns_queries),
        (before.dns_tcp_segments, after.dns_tcp_segments),
        (before.time_exceeded_sent, after.time_exceeded_sent),
        (before.routed_to_uplink, after.routed_to_uplink),
        (before.routed_to_switch, after.routed_to_switch),
        (before.held, after.held),
        (before.released, after.released),
    ];
    for (old, new) in pairs {
        assert!(new >= old, "counters only ever increase");
    }
}

#[cfg(test)]
mod tests {
    use switchyard_wire::Ipv4Repr;

    use super::*;

    /// A frame from 10.1.0.2:40000 to 10.1.0.1:53 on VLAN 10 with this TCP header and data.
    fn to_dns(seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut tcp = vec![0x9c, 0x40, 0, 53];
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(data);
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 0, 2),
            dst: Ipv4Addr::new(10, 1, 0, 1),
            protocol: IpProtocol::TCP,
            payload_len: tcp.len(),
            ttl: 64,
            dont_frag: true,
        };
        let mut frame = vec![
            0x02, 0x53, 0x58, 0, 0, 10, 0x02, 0x42, 0, 0, 0, 2, 0x08, 0x00,
        ];
        let mut ip = vec![0; 20];
        repr.emit(&mut ip).unwrap();
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        frame
    }

    #[test]
    fn a_tcp_conversation_runs() {
        let mut input = Vec::new();
        input.extend(crate::record(0, &[0, 0, 0, 0], &to_dns(7, 0x02, &[])));
        input.extend(crate::record(
            0,
            &[0, 0, 0, 0],
            &to_dns(8, 0x18, &[0, 2, 1, 2]),
        ));
        input.extend(crate::record(2, &[11, 0, 0, 0], &[]));
        input.extend(crate::record(0, &[0, 0, 0, 0], &to_dns(8, 0x04, &[])));
        run(&input);
    }
}
