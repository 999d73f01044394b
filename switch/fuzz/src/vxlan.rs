//! `vxlan`: VXLAN datagrams and UDP GRO receive batches of any stride into a switch,
//! through the receive path's merging of TCP segments and its hold across batches.
//!
//! Input: a mode byte, then steps of a selector, four argument bytes and a chunk
//! ([`crate::Input`]). Every chunk is also viewed with [`VxlanHeader::new_checked`],
//! whole and cut at every stride.
//!
//! * Even mode: the simulator's site ([`crate::datapath::site`]); each step is
//!   `inject_vxlan_batch` into A or B (`a0`) from a peer or a stranger (`a1`) with stride
//!   `a2 a3` (0: the chunk is one datagram); the simulator flushes the held frame when the batch is done.
//! * Odd mode: one [`Worker`] driven directly, as switchd's VXLAN thread drives it, so a
//!   merged frame stays held from one batch to the next. Selector % 4: 0 a batch, 1 a
//!   batch and then a flush (the socket ran dry), 2 a frame from local port `a0`
//!   (reading it sends what is held), 3 the clock moves `a0` seconds. Everything the
//!   worker transmits is checked: a frame for a port is a frame (and a GSO frame is one
//!   the kernel could segment), a datagram for a VTEP has a VXLAN header.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use switchyard::datapath::{Datapath, Transmit, Worker, MAX_WIRE_LEN, ROUTER_PORT};
use switchyard::forward::DropReason;
use switchyard::port::PortId;
use switchyard::router::Interface;
use switchyard::sim::{access, trunk};
use switchyard::time::Time;
use switchyard_encap::segment::{self, Offload};
use switchyard_encap::vxlan::{self, IANA_PORT};
use switchyard_encap::{Vni, VxlanHeader};
use switchyard_wire::{EthernetFrame, PacketBuf, VnetHdr, VNET_HDR_LEN};

use crate::datapath::{self as site, small_fdb, vlan, GW_MAC_10, UNDERLAY};
use crate::Input;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte().is_multiple_of(2) {
        through_the_simulator(input);
    } else {
        through_a_worker(input);
    }
}

fn view(chunk: &[u8], stride: usize) {
    for datagram in std::iter::once(chunk).chain(chunk.chunks(stride.max(1))) {
        if let Ok(header) = VxlanHeader::new_checked(datagram) {
            let vni = header.vni();
            assert!(vni.get() <= Vni::MAX);
            assert_eq!(header.inner().len(), datagram.len() - vxlan::HEADER_LEN);
            black_box(vni);
        }
    }
}

fn through_the_simulator(mut input: Input<'_>) {
    let mut site = site::site();
    while !input.is_empty() {
        let _selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        let stride = site::stride(chunk, [args[2], args[3]]);
        view(chunk, stride);
        let sw = site.switches[usize::from(args[0] % 2)];
        let src = UNDERLAY[usize::from(args[1]) % UNDERLAY.len()];
        site.net.inject_vxlan_batch(sw, src, chunk, stride);
        for &host in &site.hosts {
            site.net.take_inbox_wire(host);
        }
        site.net.take_uplink(site.router);
    }
}

/// Local ports 1 (access 10), 2 (access 20), 3 (trunk 10,20); peers 4 and 5; the router.
fn worker() -> Worker {
    let dp = Arc::new(Datapath::new(small_fdb()));
    let switch = dp.switch();
    switch.set_port(PortId(1), access(10));
    switch.set_port(PortId(2), access(20));
    switch.set_port(PortId(3), trunk("10,20", None));
    switch.map_vni(vlan(10), Vni::new(42).unwrap()).unwrap();
    switch.map_vni(vlan(20), Vni::new(43).unwrap()).unwrap();
    switch
        .add_peer(PortId(4), SocketAddr::new(UNDERLAY[1], IANA_PORT))
        .unwrap();
    switch
        .add_peer(PortId(5), SocketAddr::new(UNDERLAY[2], IANA_PORT))
        .unwrap();
    switch.set_port(ROUTER_PORT, trunk("10", None));
    dp.router().set_interface(Interface {
        vlan: vlan(10),
        subnet: "10.1.0.0/24".parse().unwrap(),
        gateway: "10.1.0.1".parse().unwrap(),
        mac: GW_MAC_10,
        uplink: true,
    });
    switch
        .fdb()
        .add_static(vlan(10), GW_MAC_10, ROUTER_PORT)
        .unwrap();
    Worker::new(dp)
}

/// The driver's side: checks everything the worker transmits.
fn check(transmit: Transmit<'_>) -> Result<(), DropReason> {
    match transmit {
        Transmit::Port { wire, .. } => {
            assert!(wire.len() <= MAX_WIRE_LEN);
            let frame = &wire[VNET_HDR_LEN..];
            assert!(
                EthernetFrame::new_checked(frame).is_ok(),
                "a runt for a port"
            );
            let hdr = VnetHdr::new_checked(wire).expect("a vnet header");
            if hdr.is_gso() {
                // What the kernel would do with it: segment it again, untagged.
                let mut untagged = PacketBuf::from_wire(wire, true);
                untagged.set_vlan_tag(None).expect("a frame");
                let hdr = untagged.vnet_hdr().expect("a vnet header");
                let offload = Offload::from_virtio(
                    hdr.flags(),
                    hdr.gso_type(),
                    hdr.gso_size(),
                    hdr.csum_start(),
                    hdr.csum_offset(),
                )
                .expect("a GSO frame the kernel takes");
                let mut out = Vec::new();
                let layout = segment::segment(&offload, untagged.frame(), 0, usize::MAX, &mut out);
                assert!(layout.is_ok(), "a merged frame segments again: {layout:?}");
            }
        }
        Transmit::Vxlan {
            datagrams, stride, ..
        } => {
            assert!(stride > 0);
            for datagram in datagrams.chunks(stride) {
                assert!(VxlanHeader::new_checked(datagram).is_ok(), "a VXLAN header");
            }
        }
        Transmit::Uplink { wire } => assert!(wire.len() > VNET_HDR_LEN),
        // No router has DNS on here.
        Transmit::Dns { .. } | Transmit::DnsTimers => {
            panic!("DNS from a switch without DNS")
        }
    }
    Ok(())
}

fn through_a_worker(mut input: Input<'_>) {
    let mut worker = worker();
    let mut io = check;
    let mut now = Time::from_secs(1);
    while !input.is_empty() {
        let selector = input.byte();
        let args = [input.byte(), input.byte(), input.byte(), input.byte()];
        let chunk = input.chunk();
        match selector % 4 {
            0 | 1 => {
                let stride = site::stride(chunk, [args[2], args[3]]);
                view(chunk, stride);
                let from: IpAddr = UNDERLAY[usize::from(args[1]) % UNDERLAY.len()];
                let buffer = worker.datagram_buffer();
                let len = chunk.len().min(buffer.len());
                buffer[..len].copy_from_slice(&chunk[..len]);
                let from = SocketAddr::new(from, IANA_PORT);
                worker.handle_datagrams(now, from, len, stride, &mut io);
                if selector % 4 == 1 {
                    worker.flush(&mut io);
                }
            }
            2 => {
                let port = PortId(1 + u32::from(args[0] % 3));
                let buffer = worker.frame_buffer(&mut io);
                let wire = [&[0u8; VNET_HDR_LEN][..], chunk].concat();
                let len = wire.len().min(buffer.len());
                buffer[..len].copy_from_slice(&wire[..len]);
                worker.handle_port(now, port, len, &mut io);
            }
            _ => {
                now = now + std::time::Duration::from_secs(u64::from(args[0]));
                worker.datapath().handle_timeout(now);
            }
        }
    }
    worker.flush(&mut io);
}
