//! A VLAN-aware host in userspace, for trunk tests on kernels without 802.1Q devices
//! (this machine's kernel has neither `CONFIG_VLAN_8021Q` nor bridge VLAN filtering, so a
//! namespace cannot have `eth0.10`).
//!
//! It owns an `AF_PACKET` socket bound to an interface inside a namespace, sends tagged
//! frames as they are, and reads frames back with their tag: the kernel moves a received
//! tag into packet metadata, which `PACKET_AUXDATA` hands over and this code puts back.

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, NetSlice, PacketBuilder, SlicedPacket,
};
use etherparse::{LinkExtSlice, TransportSlice};

/// A frame as received, with its VLAN (from the tag or the packet metadata).
pub struct Received {
    pub vlan: Option<u16>,
    /// The frame without any tag.
    pub untagged: Vec<u8>,
}

pub struct VlanHost {
    fd: OwnedFd,
    pub mac: [u8; 6],
}

impl VlanHost {
    /// Opens a raw socket on `ifname` inside the namespace at `netns_path`.
    pub fn open(netns_path: &str, ifname: &str, mac: [u8; 6]) -> VlanHost {
        let netns = File::open(netns_path).expect("open namespace");
        let ifname = ifname.to_string();
        let fd = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                let index =
                    nix::net::if_::if_nametoindex(ifname.as_str()).expect("interface in namespace");
                open_packet_socket(index)
            })
            .join()
            .expect("socket thread")
        });
        VlanHost { fd, mac }
    }

    pub fn send(&self, frame: &[u8]) {
        let n = nix::unistd::write(&self.fd, frame).expect("send frame");
        assert_eq!(n, frame.len());
    }

    /// Waits up to `timeout` for a frame that `want` accepts.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        mut want: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(frame) = self.recv_one() {
                if want(&frame) {
                    return Some(frame);
                }
            }
        }
        None
    }

    fn recv_one(&self) -> Option<Received> {
        let mut data = [0u8; 2048];
        // SAFETY (test code): a zeroed msghdr with one iovec over `data` and a control
        // buffer over `control`, both alive for the call.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return None;
        }
        let untagged = data[..n as usize].to_vec();
        let mut vlan = None;
        // SAFETY (test code): walking the control messages the kernel just wrote.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux = &*(libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata);
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        vlan = Some(aux.tp_vlan_tci & 0x0fff);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if vlan.is_none() {
            if let Ok(sliced) = SlicedPacket::from_ethernet(&untagged) {
                if let Some(LinkExtSlice::Vlan(tag)) = sliced.link_exts.first() {
                    vlan = Some(tag.vlan_identifier().value());
                }
            }
        }
        Some(Received { vlan, untagged })
    }

    /// Sends a VLAN-`vid` ARP request for `target` and returns the MAC in the tagged reply.
    pub fn arp(&self, vid: u16, my_ip: Ipv4Addr, target: Ipv4Addr) -> Option<[u8; 6]> {
        let request = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &self.mac,
            &my_ip.octets(),
            &[0; 6],
            &target.octets(),
        )
        .expect("ARP packet");
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(self.mac, [0xff; 6])
            .single_vlan(etherparse::VlanId::try_new(vid).expect("vid"))
            .arp(request)
            .write(&mut frame)
            .expect("build ARP");
        self.send(&frame);
        let reply = self.recv_matching(Duration::from_secs(3), |r| {
            r.vlan == Some(vid)
                && matches!(SlicedPacket::from_ethernet(&r.untagged).ok().and_then(|p| p.net),
                    Some(NetSlice::Arp(arp)) if arp.operation() == ArpOperation::REPLY
                        && arp.sender_protocol_addr() == target.octets())
        })?;
        let mut mac = [0; 6];
        mac.copy_from_slice(&reply.untagged[6..12]);
        Some(mac)
    }

    /// Pings `target` (MAC `dst`) on VLAN `vid`; true if a tagged echo reply comes back.
    pub fn ping(&self, vid: u16, dst: [u8; 6], my_ip: Ipv4Addr, target: Ipv4Addr) -> bool {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(self.mac, dst)
            .single_vlan(etherparse::VlanId::try_new(vid).expect("vid"))
            .ipv4(my_ip.octets(), target.octets(), 64)
            .icmpv4_echo_request(0x5359, 1)
            .write(&mut frame, b"switchyard trunk test")
            .expect("build ICMP");
        self.send(&frame);
        self.recv_matching(Duration::from_secs(3), |r| {
            r.vlan == Some(vid)
                && matches!(SlicedPacket::from_ethernet(&r.untagged).ok(),
                    Some(p) if matches!(&p.net, Some(NetSlice::Ipv4(ip)) if ip.header().source() == target.octets())
                        && matches!(&p.transport, Some(TransportSlice::Icmpv4(_))))
        })
        .is_some()
    }
}

fn open_packet_socket(ifindex: u32) -> OwnedFd {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY (test code): plain socket(2); the result is checked and owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY (test code): bind/setsockopt with pointers to live, correctly sized values.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let on: libc::c_int = 1;
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(rc, 0, "PACKET_AUXDATA: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
    fd
}
