//! `datapath`: the simulator's switches, hosts, router and VTEPs, fed a sequence of
//! frames from every kind of source.
//!
//! The site ([`site`]): switch A is VTEP 192.0.2.1 with hosts on access ports (VLANs 10
//! and 20) and trunks (10,20; 10,20,30 with native 30), the router on a trunk of 10 and 20
//! (VLAN 10 routed to the uplink, VLAN 20 internal), and a trunk cable to switch C (hosts
//! on VLANs 10 and 30). Switch B is VTEP 192.0.2.2 with an access host and a trunk host
//! (native 10), and takes inner-tagged frames from the overlay. A and B are peers
//! carrying VLAN 10 as VNI 42 and 20 as VNI 43, with a 1400-byte path MTU from A to B.
//!
//! Input: steps of a selector, four argument bytes and a chunk ([`crate::Input`]):
//!
//! | selector % 6 | step |
//! | --- | --- |
//! | 0 | host `a0` sends the chunk as a frame |
//! | 1 | host `a0` sends the chunk as a wire image (vnet header + frame) |
//! | 2 | host `a0` sends the chunk with a vnet header asking for GSO: kind `a1`, size `a2 a3` |
//! | 3 | a receive batch of VXLAN datagrams into A or B (`a0`) from a peer or a stranger (`a1`), stride `a2 a3` (0: one datagram) |
//! | 4 | the host sends the chunk (an IP packet) into the router's uplink |
//! | 5 | the clock moves `a0` seconds |
//!
//! Nothing may panic; the simulator's hop budget turns a forwarding loop into a panic.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use switchyard::datapath::{MAX_WIRE_LEN, ROUTER_PORT};
use switchyard::fdb::FdbConfig;
use switchyard::router::Interface;
use switchyard::sim::{access, trunk, HostId, Network, RouterId, SwitchId};
use switchyard_encap::Vni;
use switchyard_wire::vnet::{self, VnetHdr, VNET_HDR_LEN};
use switchyard_wire::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, VlanId};

use crate::Input;

pub const GW_MAC_10: MacAddr = MacAddr([0x02, 0x53, 0x58, 0, 0, 10]);
pub const GW_MAC_20: MacAddr = MacAddr([0x02, 0x53, 0x58, 0, 0, 20]);

/// Underlay addresses: A's, B's, and a stranger's.
pub const UNDERLAY: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
];

/// A small table, so that learning fills it and evicts.
pub fn small_fdb() -> FdbConfig {
    FdbConfig {
        max_entries: 64,
        max_per_port: 16,
        ..FdbConfig::default()
    }
}

pub fn vlan(id: u16) -> VlanId {
    VlanId::new(id).expect("a VLAN id in 1..=4094")
}

pub struct Site {
    pub net: Network,
    /// A, B, C.
    pub switches: [SwitchId; 3],
    pub hosts: Vec<HostId>,
    pub router: RouterId,
}

pub fn site() -> Site {
    let mut net = Network::new();
    let a = net.add_switch(small_fdb());
    let b = net.add_switch(small_fdb());
    let c = net.add_switch(small_fdb());
    net.set_vtep(a, UNDERLAY[0]);
    net.set_vtep(b, UNDERLAY[1]);
    for sw in [a, b] {
        net.switch(sw)
            .map_vni(vlan(10), Vni::new(42).unwrap())
            .unwrap();
        net.switch(sw)
            .map_vni(vlan(20), Vni::new(43).unwrap())
            .unwrap();
    }
    net.add_peer(a, UNDERLAY[1]);
    net.add_peer(b, UNDERLAY[0]);
    net.set_path_mtu(a, UNDERLAY[1], 1400);
    net.switch(b).set_accept_inner_tagged(true);

    let hosts = vec![
        net.add_host(a, access(10)),
        net.add_host(a, access(20)),
        net.add_host(a, trunk("10,20", None)),
        net.add_host(a, trunk("10,20,30", Some(30))),
        net.add_host(b, access(10)),
        net.add_host(b, trunk("10,20", Some(10))),
        net.add_host(c, access(10)),
        net.add_host(c, access(30)),
    ];
    let a_side = net.add_port(a, trunk("10,20,30", None));
    let c_side = net.add_port(c, trunk("10,20,30", None));
    net.link((a, a_side), (c, c_side));

    let router = net.add_router(a, trunk("10,20", None));
    for (id, subnet, gateway, mac, uplink) in [
        (10, "10.1.0.0/24", "10.1.0.1", GW_MAC_10, true),
        (20, "10.2.0.0/24", "10.2.0.1", GW_MAC_20, false),
    ] {
        net.router_mut(router).set_interface(Interface {
            vlan: vlan(id),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            mac,
            uplink,
        });
        // As switchd does: the gateway's MAC is a static entry towards the router.
        net.switch(a)
            .fdb()
            .add_static(vlan(id), mac, ROUTER_PORT)
            .unwrap();
    }
    net.router_mut(router).set_static_neighbor(
        vlan(10),
        Ipv4Addr::new(10, 1, 0, 5),
        MacAddr([0x02, 0x42, 10, 1, 0, 5]),
    );
    Site {
        net,
        switches: [a, b, c],
        hosts,
        router,
    }
}

pub fn run(data: &[u8]) {
    let mut site = site();
    let mut input = Input::new(data);
    while !input.is_empty() {
        let selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        let host = site.hosts[usize::from(args[0]) % site.hosts.len()];
        let net = &mut site.net;
        match selector % 6 {
            0 => {
                net.send(host, chunk);
            }
            1 => {
                net.send_wire(host, chunk);
            }
            2 => {
                let size = u16::from_le_bytes([args[2], args[3]]);
                net.send_wire(host, &offloaded(chunk, args[1], size));
            }
            3 => {
                let sw = site.switches[usize::from(args[0] % 2)];
                let src = UNDERLAY[usize::from(args[1]) % UNDERLAY.len()];
                net.inject_vxlan_batch(sw, src, chunk, stride(chunk, [args[2], args[3]]));
            }
            4 => {
                net.send_uplink(site.router, chunk);
            }
            _ => net.advance(Duration::from_secs(u64::from(args[0]))),
        }
        drain(&mut site);
    }
}

/// The stride of a receive batch: the `u16` given, or (0) the chunk is one datagram.
pub fn stride(chunk: &[u8], arg: [u8; 2]) -> usize {
    match u16::from_le_bytes(arg) {
        0 => chunk.len(),
        stride => usize::from(stride),
    }
}

/// Takes what every host and the uplink received, checking that each is a frame.
fn drain(site: &mut Site) {
    for &host in &site.hosts {
        for wire in site.net.take_inbox_wire(host) {
            assert!(wire.len() <= MAX_WIRE_LEN);
            assert!(
                EthernetFrame::new_checked(&wire[VNET_HDR_LEN..]).is_ok(),
                "a host received a runt: {wire:02x?}"
            );
        }
    }
    site.net.take_uplink(site.router);
    site.net.take_verdicts(site.router);
}

/// `frame` behind a vnet header asking for GSO (`kind` picks TCPv4, TCPv6, UDP, or a
/// raw `gso_type`) of `size`-byte segments, with the checksum offsets of the frame's
/// transport header: what a TAP with TSO/USO hands over.
pub fn offloaded(frame: &[u8], kind: u8, size: u16) -> Vec<u8> {
    let gso_type = match kind % 5 {
        0 => vnet::GSO_TCPV4,
        1 => vnet::GSO_TCPV6,
        2 => vnet::GSO_UDP_L4,
        3 => vnet::GSO_TCPV4 | vnet::GSO_ECN,
        _ => kind,
    };
    let (l4_at, l4) = transport(frame).unwrap_or((34, IpProtocol::TCP));
    let csum_offset = if l4 == IpProtocol::UDP { 6 } else { 16 };
    let mut wire = vec![0u8; VNET_HDR_LEN];
    let mut hdr = VnetHdr::new_checked(&mut wire[..]).expect("10 bytes");
    hdr.set_flags(vnet::F_NEEDS_CSUM);
    hdr.set_gso_type(gso_type);
    hdr.set_gso_size(size);
    hdr.set_hdr_len(l4_at.saturating_add(if l4 == IpProtocol::UDP { 8 } else { 20 }));
    hdr.set_csum_start(l4_at);
    hdr.set_csum_offset(csum_offset);
    wire.extend_from_slice(frame);
    wire
}

/// Where the transport header of an untagged IPv4 or IPv6 frame starts, and its protocol.
fn transport(frame: &[u8]) -> Option<(u16, IpProtocol)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_fixed_header(eth.payload()).ok()?;
            Some((14 + ip.header_len() as u16, ip.protocol()))
        }
        EtherType::IPV6 => Some((54, IpProtocol(*eth.payload().get(6)?))),
        _ => None,
    }
}
