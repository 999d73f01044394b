//! A VLAN-aware LAN host that answers: ARP requests and ICMP echo requests for its
//! address on its VLAN, tagged, from a thread of its own, over the same `AF_PACKET`
//! socket as [`VlanHost`] (this kernel has no 802.1Q devices to put an address on).
//! Containers can then ping it, where a [`VlanHost`] only asks. It stops when dropped.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, NetSlice, PacketBuilder,
    SlicedPacket, TransportSlice, VlanId,
};

use crate::common::vlan_host::{Received, VlanHost};

pub struct VlanResponder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VlanResponder {
    /// Answers for `ip` on VLAN `vid` with `mac`, on `ifname` in the namespace at
    /// `netns_path`.
    pub fn start(
        netns_path: &str,
        ifname: &str,
        mac: [u8; 6],
        vid: u16,
        ip: Ipv4Addr,
    ) -> VlanResponder {
        let host = VlanHost::open(netns_path, ifname, mac);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                host.recv_matching(Duration::from_millis(200), |frame| {
                    if let Some(reply) = answer(&host, frame, vid, ip) {
                        host.send(&reply);
                    }
                    false
                });
            }
        });
        VlanResponder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for VlanResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The tagged reply to `frame`, if it is an ARP request or an echo request for `ip` on
/// VLAN `vid`.
fn answer(host: &VlanHost, frame: &Received, vid: u16, ip: Ipv4Addr) -> Option<Vec<u8>> {
    if frame.vlan != Some(vid) {
        return None;
    }
    let packet = SlicedPacket::from_ethernet(&frame.untagged).ok()?;
    let mut src = [0u8; 6];
    src.copy_from_slice(frame.untagged.get(6..12)?);
    let vlan = VlanId::try_new(vid).ok()?;
    let mut out = Vec::new();
    match (&packet.net, &packet.transport) {
        (Some(NetSlice::Arp(arp)), _)
            if arp.operation() == ArpOperation::REQUEST
                && arp.target_protocol_addr() == ip.octets() =>
        {
            let reply = ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation::REPLY,
                &host.mac,
                &ip.octets(),
                arp.sender_hw_addr(),
                arp.sender_protocol_addr(),
            )
            .ok()?;
            PacketBuilder::ethernet2(host.mac, src)
                .single_vlan(vlan)
                .arp(reply)
                .write(&mut out)
                .ok()?;
        }
        (Some(NetSlice::Ipv4(ipv4)), Some(TransportSlice::Icmpv4(icmp)))
            if ipv4.header().destination() == ip.octets() =>
        {
            let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else {
                return None;
            };
            PacketBuilder::ethernet2(host.mac, src)
                .single_vlan(vlan)
                .ipv4(ip.octets(), ipv4.header().source(), 64)
                .icmpv4_echo_reply(echo.id, echo.seq)
                .write(&mut out, icmp.payload())
                .ok()?;
        }
        _ => return None,
    }
    Some(out)
}
