//! `inspect`: what `swctl trace` and `swctl capture` put through switchd's core from
//! outside: a trace request's frame (hex, then any bytes as a frame from any port of a
//! datapath with access, trunk, tunnel and router ports), and the pcapng reader swctl
//! runs on a capture stream.
//!
//! Checked: nothing panics; a trace learns and counts nothing (the FDB and every port's
//! counters are as before) and its copies never exceed the ports there are; every
//! block the reader takes has the length it said; blocks written read back as written.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use switchyard::capture::{pcapng, Direction};
use switchyard::controller::inspect::parse_hex_frame;
use switchyard::datapath::{Datapath, ROUTER_PORT};
use switchyard::router::Interface;
use switchyard::trace::summarize;
use switchyard::wire::{MacAddr, VlanId, VlanSet};
use switchyard::{FdbConfig, PortId, PortMode, Time};
use switchyard_encap::Vni;

use crate::Input;

const PORTS: [PortId; 5] = [ROUTER_PORT, PortId(1), PortId(2), PortId(3), PortId(4)];

fn datapath() -> &'static Arc<Datapath> {
    static DP: OnceLock<Arc<Datapath>> = OnceLock::new();
    DP.get_or_init(|| {
        let vlan = |id| VlanId::new(id).unwrap();
        let dp = Arc::new(Datapath::new(FdbConfig::default()));
        let switch = dp.switch();
        switch.set_port(PortId(1), PortMode::Access { vlan: vlan(10) });
        switch.set_port(PortId(2), PortMode::Access { vlan: vlan(20) });
        let both: VlanSet = [vlan(10), vlan(20)].into_iter().collect();
        switch.set_port(
            PortId(3),
            PortMode::Trunk {
                allowed: both.clone(),
                native: Some(vlan(10)),
            },
        );
        switch.set_port(
            ROUTER_PORT,
            PortMode::Trunk {
                allowed: both,
                native: None,
            },
        );
        for (id, net) in [(10, "10.1.0.0/24"), (20, "10.2.0.0/24")] {
            let subnet: ipnet::Ipv4Net = net.parse().unwrap();
            dp.router().set_interface(Interface {
                vlan: vlan(id),
                subnet,
                gateway: subnet.hosts().next().unwrap(),
                mac: MacAddr([2, 0x53, 0, 0, 0, id as u8]),
                uplink: id == 10,
            });
        }
        switch.map_vni(vlan(10), Vni::new(100).unwrap()).unwrap();
        switch
            .add_peer(
                PortId(4),
                SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 4789)),
            )
            .unwrap();
        // Something learned, so lookups find entries.
        let _ = switch
            .fdb()
            .learn(Time::ZERO, vlan(10), MacAddr([2, 0, 0, 0, 0, 1]), PortId(1));
        dp
    })
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => {
            let text = String::from_utf8_lossy(input.rest()).into_owned();
            if let Ok(frame) = parse_hex_frame(&text) {
                trace(0, &frame);
            }
        }
        1 => {
            let port = input.byte();
            trace(port, input.rest());
        }
        _ => read_blocks(input.rest()),
    }
}

fn trace(port: u8, frame: &[u8]) {
    let dp = datapath();
    let port = PORTS[usize::from(port) % PORTS.len()];
    let now = Time::from_secs(1);
    let counters = |dp: &Datapath| {
        PORTS
            .iter()
            .map(|p| dp.switch().counters(*p))
            .collect::<Vec<_>>()
    };
    let (before, fdb_before) = (counters(dp), dp.switch().fdb().entries(now).len());
    let trace = dp.trace(now, port, frame);
    assert!(trace.copies <= PORTS.len(), "{trace}");
    let _ = trace.to_string();
    let _ = summarize(frame);
    assert_eq!(counters(dp), before, "a trace counts nothing");
    assert_eq!(
        dp.switch().fdb().entries(now).len(),
        fdb_before,
        "a trace learns nothing"
    );
}

fn read_blocks(mut bytes: &[u8]) {
    while let Some(len) = pcapng::block_len(bytes) {
        let Ok(len) = len else { return };
        let Some(block) = bytes.get(..len) else {
            return;
        };
        if let Ok(pcapng::Block::Packet {
            unix_ns,
            direction,
            data,
            ..
        }) = pcapng::parse(block)
        {
            let again = pcapng::enhanced_packet(unix_ns, direction.unwrap_or(Direction::In), &data);
            assert!(matches!(
                pcapng::parse(&again),
                Ok(pcapng::Block::Packet { data: d, .. }) if d == data
            ));
        }
        bytes = &bytes[len..];
    }
}
