//! Writes the seed corpora: a handful of small valid inputs per target, built from real
//! frames (etherparse), real control requests and real state files. Run once from
//! `switch/fuzz` with `cargo run --example seeds`; the files are `corpus/TARGET/seed-*`
//! (what a fuzzing run adds to a corpus is not kept in git).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use etherparse::PacketBuilder;
use switchyard::control::{AttachRequest, Request};
use switchyard::controller::{Controller, ControllerConfig};
use switchyard::datapath::Datapath;
use switchyard::network::NetworkConfig;
use switchyard::sim::{access, trunk};
use switchyard_encap::{vxlan, Vni};
use switchyard_fuzz::{control_json, datapath, record};
use switchyard_wire::vnet::{self, VnetHdr, VNET_HDR_LEN};
use switchyard_wire::{MacAddr, VlanId};

const BROADCAST: [u8; 6] = [0xff; 6];

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// The MAC switchd gives a container on a network: 02:42 and its address.
fn mac_of(ip: [u8; 4]) -> [u8; 6] {
    MacAddr::from_ipv4(Ipv4Addr::from(ip)).0
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).unwrap();
}

fn build<B: FnOnce(&mut Vec<u8>)>(f: B) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

fn tcp4(src: [u8; 6], dst: [u8; 6], ips: ([u8; 4], [u8; 4]), seq: u32, payload: &[u8]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(src, dst)
            .ipv4(ips.0, ips.1, 64)
            .tcp(40000, 5201, seq, 64240)
            .ack(1)
            .write(out, payload)
            .unwrap()
    })
}

fn tcp6(src: [u8; 6], dst: [u8; 6], seq: u32, payload: &[u8]) -> Vec<u8> {
    let a = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut b = a;
    b[15] = 2;
    build(|out| {
        PacketBuilder::ethernet2(src, dst)
            .ipv6(a, b, 64)
            .tcp(40000, 5201, seq, 64240)
            .ack(1)
            .write(out, payload)
            .unwrap()
    })
}

fn udp4(src: [u8; 6], dst: [u8; 6], vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    build(|out| match vlan {
        Some(id) => PacketBuilder::ethernet2(src, dst)
            .single_vlan(etherparse::VlanId::try_new(id).unwrap())
            .ipv4([10, 1, 0, 2], [10, 1, 0, 3], 64)
            .udp(5353, 53)
            .write(out, payload)
            .unwrap(),
        None => PacketBuilder::ethernet2(src, dst)
            .ipv4([10, 1, 0, 2], [10, 1, 0, 3], 64)
            .udp(5353, 53)
            .write(out, payload)
            .unwrap(),
    })
}

fn echo(src: [u8; 6], dst: [u8; 6], ips: ([u8; 4], [u8; 4]), ttl: u8) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ethernet2(src, dst)
            .ipv4(ips.0, ips.1, ttl)
            .icmpv4_echo_request(7, 1)
            .write(out, b"switchyard")
            .unwrap()
    })
}

/// An IP packet as the host sends it into the uplink.
fn echo_ip(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ipv4(src, dst, ttl)
            .icmpv4_echo_request(9, 1)
            .write(out, b"ping")
            .unwrap()
    })
}

fn udp_ip(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    build(|out| {
        PacketBuilder::ipv4(src, dst, 64)
            .udp(4000, 53)
            .write(out, b"query")
            .unwrap()
    })
}

fn arp(op: u16, sender: ([u8; 6], [u8; 4]), target: ([u8; 6], [u8; 4])) -> Vec<u8> {
    let dst = if op == 1 { BROADCAST } else { target.0 };
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&sender.0);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&sender.0);
    frame.extend_from_slice(&sender.1);
    frame.extend_from_slice(&target.0);
    frame.extend_from_slice(&target.1);
    frame.resize(60, 0);
    frame
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A TCP/IPv4 frame as a TAP with TSO hands it over: a vnet header saying "cut into
/// `mss`-byte segments and finish the checksum", the checksum field holding the
/// pseudo-header sum.
fn tso_wire(frame: &[u8], mss: u16) -> Vec<u8> {
    let mut frame = frame.to_vec();
    let tcp_len = (frame.len() - 34) as u32;
    let mut sum = 6u32 + tcp_len;
    for pair in frame[26..34].chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[50..52].copy_from_slice(&(sum as u16).to_be_bytes());
    let mut wire = vec![0u8; VNET_HDR_LEN];
    let mut hdr = VnetHdr::new_checked(&mut wire[..]).unwrap();
    hdr.set_flags(vnet::F_NEEDS_CSUM);
    hdr.set_gso_type(vnet::GSO_TCPV4);
    hdr.set_gso_size(mss);
    hdr.set_hdr_len(54);
    hdr.set_csum_start(34);
    hdr.set_csum_offset(16);
    wire.extend_from_slice(&frame);
    wire
}

fn datagram(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut header = [0u8; vxlan::HEADER_LEN];
    vxlan::emit(&mut header, Vni::new(vni).unwrap());
    [&header[..], inner].concat()
}

/// `count` contiguous TCP segments of `size` bytes from behind VTEP B to a host on A,
/// each a VXLAN datagram for VNI 42, back to back: a GRO batch of stride
/// `datagram length`. Returns the batch and its stride.
fn tcp_batch(count: u32, size: usize, first_seq: u32) -> (Vec<u8>, usize) {
    let mut batch = Vec::new();
    let mut stride = 0;
    for i in 0..count {
        let seq = first_seq + i * size as u32;
        let inner = tcp4(
            mac(0x42),
            mac(1),
            ([10, 0, 0, 2], [10, 0, 0, 1]),
            seq,
            &pattern(size),
        );
        let d = datagram(42, &inner);
        stride = d.len();
        batch.extend_from_slice(&d);
    }
    (batch, stride)
}

fn stride_args(selector_args: [u8; 2], stride: usize) -> [u8; 4] {
    let s = (stride as u16).to_le_bytes();
    [selector_args[0], selector_args[1], s[0], s[1]]
}

fn wire_views() {
    let t = "wire_views";
    let tcp = tcp4(
        mac(1),
        mac(2),
        ([10, 0, 0, 1], [10, 0, 0, 2]),
        1000,
        b"hello",
    );
    write(t, "tcp4", &[&[0u8][..], &tcp].concat());
    write(
        t,
        "tcp6",
        &[&[0u8][..], &tcp6(mac(1), mac(2), 7, b"hello")].concat(),
    );
    write(
        t,
        "udp4-tagged",
        &[&[0u8][..], &udp4(mac(1), mac(2), Some(10), b"dns")].concat(),
    );
    let ping = echo(mac(1), mac(2), ([10, 1, 0, 2], [10, 1, 0, 1]), 64);
    write(t, "icmp-echo", &[&[0u8][..], &ping].concat());
    write(
        t,
        "arp",
        &[
            &[0u8][..],
            &arp(1, (mac(1), [10, 1, 0, 2]), ([0; 6], [10, 1, 0, 1])),
        ]
        .concat(),
    );
    // A TSO super-frame with a vnet header, then: push tag 10, rewrite to 20, pop; put
    // a 14-byte header in front and take it off; take the Ethernet header off; reload.
    let tso = tso_wire(
        &tcp4(
            mac(1),
            mac(2),
            ([10, 0, 0, 1], [10, 0, 0, 2]),
            1,
            &pattern(3000),
        ),
        1448,
    );
    let edits: [(u8, u16); 6] = [
        (0, 10),
        (0, 20),
        (0, 0),
        (1, 14 << 8 | 0xab),
        (2, 14),
        (4, 0x8000 | 200),
    ];
    let mut input = vec![1 | (edits.len() as u8) << 1];
    for (kind, arg) in edits {
        input.push(kind);
        input.extend_from_slice(&arg.to_le_bytes());
    }
    input.extend_from_slice(&tso);
    write(t, "tso-edits", &input);
}

fn datapath_seeds() {
    let t = "datapath";
    // Hosts: 0 a0 access 10, 1 a1 access 20, 2 a2 trunk 10,20, 3 a3 trunk 10,20,30
    // native 30, 4 b0 access 10, 5 b1 trunk 10,20 native 10, 6 c0 access 10, 7 c1 access 30.
    let learn = [
        record(
            0,
            &[4, 0, 0, 0],
            &arp(1, (mac(4), [10, 1, 0, 4]), ([0; 6], [10, 1, 0, 2])),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &arp(2, (mac(0), [10, 1, 0, 2]), (mac(4), [10, 1, 0, 4])),
        ),
        record(0, &[6, 0, 0, 0], &udp4(mac(6), mac(0), None, b"from c")),
    ]
    .concat();
    write(t, "learn-across", &learn);
    // A super-frame from a0 to b0 across the overlay (segmented to the path MTU), the
    // same asked for with the GSO step, and one too big for it with DF (frag-needed).
    let big = tcp4(
        mac(0),
        mac(4),
        ([10, 1, 0, 2], [10, 1, 0, 4]),
        1,
        &pattern(6000),
    );
    let gso = [
        learn.clone(),
        record(1, &[0, 0, 0, 0], &tso_wire(&big, 1300)),
        record(2, &[0, 0, 0x14, 0x05], &big),
        record(
            0,
            &[0, 0, 0, 0],
            &tcp4(
                mac(0),
                mac(4),
                ([10, 1, 0, 2], [10, 1, 0, 4]),
                1,
                &pattern(1400),
            ),
        ),
    ]
    .concat();
    write(t, "gso-overlay", &gso);
    // Tagged frames from the trunks, one for the native VLAN untagged.
    let trunks = [
        record(
            0,
            &[2, 0, 0, 0],
            &udp4(mac(2), BROADCAST, Some(20), b"vlan 20"),
        ),
        record(
            0,
            &[3, 0, 0, 0],
            &udp4(mac(3), BROADCAST, None, b"native 30"),
        ),
        record(
            0,
            &[5, 0, 0, 0],
            &udp4(mac(5), BROADCAST, Some(20), b"to a over vxlan"),
        ),
        record(
            0,
            &[1, 0, 0, 0],
            &udp4(mac(1), mac(2), Some(20), b"tagged on access"),
        ),
    ]
    .concat();
    write(t, "trunks", &trunks);
    // The router: ARP for the gateway, a ping to it, a packet to the uplink, one with
    // TTL 1; from the uplink to the static neighbour and to an unknown one (held), then
    // the unknown one answers ARP and the clock moves past the hold time.
    let gw: [u8; 6] = datapath::GW_MAC_10.0;
    let h = mac_of([10, 1, 0, 2]);
    let router = [
        record(
            0,
            &[0, 0, 0, 0],
            &arp(1, (h, [10, 1, 0, 2]), ([0; 6], [10, 1, 0, 1])),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [10, 1, 0, 1]), 64),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [8, 8, 8, 8]), 64),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [8, 8, 8, 8]), 1),
        ),
        record(
            4,
            &[0, 0, 0, 0],
            &echo_ip([192, 168, 1, 1], [10, 1, 0, 5], 64),
        ),
        record(4, &[0, 0, 0, 0], &udp_ip([192, 168, 1, 1], [10, 1, 0, 9])),
        record(
            0,
            &[0, 0, 0, 0],
            &arp(
                2,
                (mac_of([10, 1, 0, 9]), [10, 1, 0, 9]),
                (gw, [10, 1, 0, 1]),
            ),
        ),
        record(5, &[5, 0, 0, 0], &[]),
        record(
            4,
            &[0, 0, 0, 0],
            &echo_ip([192, 168, 1, 1], [10, 1, 0, 1], 64),
        ),
    ]
    .concat();
    write(t, "router", &router);
    // VXLAN from B's address and from a stranger, and a GRO batch of TCP segments.
    let inner = udp4(mac(0x42), BROADCAST, None, b"from behind b");
    let (batch, stride) = tcp_batch(4, 1000, 100);
    let overlay = [
        record(3, &[0, 1, 0, 0], &datagram(42, &inner)),
        record(3, &[0, 2, 0, 0], &datagram(42, &inner)),
        record(3, &stride_args([0, 1], stride), &batch),
        record(
            3,
            &[1, 0, 0, 0],
            &datagram(43, &udp4(mac(0x41), BROADCAST, None, b"vni 43")),
        ),
    ]
    .concat();
    write(t, "vxlan", &overlay);
}

fn vxlan_seeds() {
    let t = "vxlan";
    let (first, stride) = tcp_batch(4, 1000, 100);
    let (second, _) = tcp_batch(3, 1000, 4100);
    // Through a worker: two batches that merge into one held frame, then the socket is
    // dry; a frame from a port; the clock moves.
    let worker = [
        vec![1],
        record(0, &stride_args([0, 1], stride), &first),
        record(1, &stride_args([0, 1], stride), &second),
        record(0, &stride_args([0, 1], stride), &first),
        record(2, &[0, 0, 0, 0], &udp4(mac(1), BROADCAST, None, b"local")),
        record(3, &[30, 0, 0, 0], &[]),
    ]
    .concat();
    write(t, "worker-hold", &worker);
    let inner = udp4(mac(0x42), mac(1), None, b"one datagram");
    let single = [
        vec![1],
        record(1, &[0, 1, 0, 0], &datagram(42, &inner)),
        record(1, &[0, 2, 0, 0], &datagram(43, &inner)),
    ]
    .concat();
    write(t, "worker-single", &single);
    let sim = [
        vec![0],
        record(0, &stride_args([0, 1], stride), &first),
        record(0, &stride_args([1, 0], stride), &second),
        record(0, &[0, 2, 0, 0], &datagram(42, &inner)),
    ]
    .concat();
    write(t, "sim-batches", &sim);
}

fn router_seeds() {
    let t = "router";
    let gw = [0x02, 0x53, 0x58, 0, 0, 10];
    let h = mac_of([10, 1, 0, 2]);
    let steps = [
        record(
            0,
            &[0, 0, 0, 0],
            &arp(1, (h, [10, 1, 0, 2]), ([0; 6], [10, 1, 0, 1])),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [10, 1, 0, 1]), 64),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [8, 8, 8, 8]), 64),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [8, 8, 8, 8]), 1),
        ),
        record(
            0,
            &[0, 0, 0, 0],
            &echo(h, gw, ([10, 1, 0, 2], [10, 2, 0, 5]), 64),
        ),
        record(
            1,
            &[1, 0, 0, 0],
            &echo_ip([192, 168, 1, 1], [10, 1, 0, 5], 64),
        ),
        record(1, &[1, 0, 0, 0], &udp_ip([192, 168, 1, 1], [10, 1, 0, 9])),
        record(1, &[0, 0, 0, 0], &udp_ip([192, 168, 1, 1], [10, 7, 0, 9])),
        record(
            0,
            &[0, 0, 0, 0],
            &arp(
                2,
                (mac_of([10, 1, 0, 9]), [10, 1, 0, 9]),
                (gw, [10, 1, 0, 1]),
            ),
        ),
        record(
            1,
            &[0, 0, 0, 0],
            &echo_ip([192, 168, 1, 1], [10, 1, 0, 1], 1),
        ),
        record(2, &[250, 0, 0, 0], &[]),
        record(3, &[0, 25, 1, 0], &[]),
        record(4, &[2, 0, 0, 0], &[]),
    ]
    .concat();
    write(t, "day", &steps);
}

fn requests() -> Vec<Request> {
    let attach = |netns: &str, network: Option<&str>, mode| {
        Request::Attach(AttachRequest {
            netns: netns.into(),
            ifname: "eth0".into(),
            mode,
            label: None,
            network: network.map(String::from),
            ip: None,
            container_id: network.map(|_| "c0ffee".to_string()),
            ..AttachRequest::default()
        })
    };
    vec![
        Request::NetworkCreate(NetworkConfig {
            name: "blue".into(),
            subnet: Some("10.9.0.0/24".parse().unwrap()),
            masquerade: true,
            vni: Some(Vni::new(77).unwrap()),
            ..NetworkConfig::default()
        }),
        attach("/run/netns/red", Some("blue"), access(1)),
        attach("/run/netns/blue", None, trunk("10,20", Some(30))),
        Request::PortAdd(switchyard::control::PortAddRequest {
            ifname: "eth1".into(),
            mode: Some(trunk("10,20", None)),
            ..Default::default()
        }),
        Request::PortAdd(switchyard::control::PortAddRequest {
            ifname: "host0".into(),
            internal: true,
            mode: Some(access(10)),
            ..Default::default()
        }),
        Request::NetworkCreate(NetworkConfig {
            name: "lan".into(),
            subnet: Some("192.168.0.0/24".parse().unwrap()),
            gateway: Some("192.168.0.1".parse().unwrap()),
            ip_range: Some("192.168.0.128/25".parse().unwrap()),
            parent: Some("eth1".into()),
            vlan: Some(VlanId::new(10).unwrap()),
            aux_addresses: vec!["192.168.0.130".parse().unwrap()],
            ..NetworkConfig::default()
        }),
        Request::PortSet {
            port: "blue/eth0".into(),
            mode: Some(access(20)),
            port_security: Some(false),
            storm_limit_pps: Some(500),
        },
        Request::FdbAdd {
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            vlan: VlanId::new(20).unwrap(),
            port: Some("blue/eth0".into()),
            vtep: None,
        },
        Request::VxlanMap {
            vlan: VlanId::new(20).unwrap(),
            vni: Vni::new(42).unwrap(),
        },
        Request::PeerAdd {
            addr: "192.0.2.2".into(),
        },
        Request::FdbAdd {
            mac: MacAddr([2, 0, 0, 0, 0, 10]),
            vlan: VlanId::new(20).unwrap(),
            port: None,
            vtep: Some("192.0.2.2".parse().unwrap()),
        },
        Request::PortList,
        Request::FdbShow {
            vlan: None,
            port: None,
        },
        Request::Stats,
        Request::NetworkInspect {
            name: "blue".into(),
        },
        Request::RouterShow,
        Request::VxlanShow,
        Request::NetworkRemove {
            name: "blue".into(),
        },
        Request::Detach {
            netns: "/run/netns/red".into(),
            ifname: "eth0".into(),
        },
        Request::NetworkRemove {
            name: "blue".into(),
        },
        Request::PeerDel {
            addr: "192.0.2.2".into(),
        },
        Request::FdbFlush {
            vlan: None,
            port: None,
            include_static: true,
        },
        Request::PortDel {
            port: "blue/eth0".into(),
        },
    ]
}

fn control_seeds() {
    let t = "control_json";
    let lines: Vec<String> = requests()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    write(t, "day", lines.join("\n").as_bytes());
    write(t, "attach", lines[2].as_bytes());
    write(t, "network", lines[..2].join("\n").as_bytes());
    write(t, "status", br#"{"cmd":"status"}"#);
}

fn cni_seeds() {
    let t = "cni_config";
    write(
        t,
        "conf",
        br#"{"cniVersion":"1.1.0","name":"blue","type":"switchyard-cni","subnet":"10.10.0.0/24","gateway":"10.10.0.1","mtu":1450,"vni":42,"masquerade":true}"#,
    );
    write(
        t,
        "conflist",
        br#"{"cniVersion":"1.0.0","name":"blue","plugins":[{"type":"portmap"},{"type":"switchyard-cni","subnet":"10.10.0.0/24","internal":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.10.0.0/24"}]]}}]}"#,
    );
    write(
        t,
        "check",
        br#"{"cniVersion":"0.4.0","name":"blue","type":"switchyard-cni","prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","mac":"02:42:0a:0a:00:02","sandbox":"/run/netns/red"}],"ips":[{"version":"4","address":"10.10.0.2/24","gateway":"10.10.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"10.10.0.1"}],"dns":{"nameservers":["10.10.0.1"]}}}"#,
    );
    write(
        t,
        "gc",
        br#"{"cniVersion":"1.1.0","name":"blue","type":"switchyard-cni","cni.dev/valid-attachments":[{"containerID":"c0ffee","ifname":"eth0"}]}"#,
    );
    write(
        t,
        "v6",
        br#"{"cniVersion":"1.1.0","name":"x","type":"switchyard-cni","subnet":"fd00::/64"}"#,
    );
}

fn state_seeds() {
    let t = "state_file";
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/state-b5cccb8.json");
    write(t, "b5cccb8", &std::fs::read(fixture).unwrap());
    // What a controller saves after the day's requests (the last save, with a network,
    // an endpoint, a peer and static entries), and halfway, with a port still pending.
    let mut fx = control_json::world();
    let dp = Arc::new(Datapath::new(datapath::small_fdb()));
    let config = ControllerConfig {
        boot_id: "boot".into(),
        uplink_name: "switchyard0".into(),
        storm_limit: None,
    };
    let mut controller = Controller::restore(dp, config, Default::default(), &mut fx).unwrap();
    for (i, request) in requests().into_iter().enumerate() {
        let _ = controller.handle(&mut fx, control_json::clock(), request);
        if i == 7 {
            let saved = serde_json::to_vec_pretty(&controller.saved_state()).unwrap();
            write(t, "busy", &saved);
            let mut pending = controller.saved_state();
            pending.ports[0].pending = Some(switchyard::controller::state::Pending::Creating);
            write(t, "pending", &serde_json::to_vec_pretty(&pending).unwrap());
        }
    }
    write(
        t,
        "empty",
        br#"{"version":1,"next_port_id":1,"ports":[],"static_fdb":[]}"#,
    );
}

fn cluster_seeds() {
    use switchyard::cluster::keys::value_of;
    use switchyard::cluster::{AddressRecord, EndpointRecord, NetworkRecord, NodeRecord};
    use switchyard_fuzz::cluster::{address, subnet, vtep};

    let t = "cluster";
    // Steps (switchyard_fuzz::cluster): a0 picks the key's kind (0 node, 1 network, 2
    // VNI, 3 VLAN, 4 address, 5 endpoint), a1 the network (bit 0) and node (>> 1), a2
    // the address, VNI or VLAN, a3 the lease (bit 7: leased, % 3: whose).
    const LEASED: [u8; 3] = [0x80, 0x81, 0x82];
    let json = |selector: u8, args: [u8; 4], value: &[u8]| record(selector, &args, value);
    let node = |n: u8| {
        json(
            1,
            [0, n << 1, 0, LEASED[usize::from(n)]],
            &value_of(&NodeRecord {
                vtep: vtep(n + 1),
                started: 1_796_000_000,
            }),
        )
    };
    let blue = NetworkRecord {
        name: "blue".into(),
        id: format!("{:064x}", 1),
        subnet: subnet(0),
        gateway: address(0, 1),
        vlan: VlanId::new(4094).unwrap(),
        vni: Vni::new(4096).unwrap(),
        mtu: 1450,
        internal: false,
        masquerade: true,
        ip_range: None,
        created: 1_796_000_000,
    };
    // blue as `create_network` writes it: the record, its VNI and its VLAN.
    let network = [
        json(1, [1, 0, 0, 0], &value_of(&blue)),
        json(1, [2, 0, 0, 0], &value_of(&"blue")),
        json(1, [3, 0, 0, 0], &value_of(&"blue")),
    ]
    .concat();
    // Node n's endpoint at 10.40.0.last on blue, with the address claimed first.
    let endpoint = |n: u8, last: u8, name: Option<&str>| {
        let ip = address(0, last);
        [
            json(
                1,
                [4, 0, last, 0],
                &value_of(&AddressRecord {
                    node: format!("h{}", n + 1),
                }),
            ),
            json(
                1,
                [5, n << 1, last, LEASED[usize::from(n)]],
                &value_of(&EndpointRecord {
                    mac: MacAddr::from_ipv4(ip),
                    name: name.map(String::from),
                    aliases: Vec::new(),
                }),
            ),
        ]
        .concat()
    };
    // h1 registers (a resync on the store), h2 joins.
    let register = record(6, &[1, 0, 0, 0], &[]);
    let two_nodes = [register.clone(), node(1)].concat();
    write(t, "two-nodes", &two_nodes);
    // ... with blue, an endpoint of h2's, and h1 attaching to blue (its address claimed).
    let day = [
        two_nodes.clone(),
        network.clone(),
        endpoint(1, 2, Some("web")),
        record(8, &[0, 0, 0, 0], &[]),
        register.clone(),
    ]
    .concat();
    write(t, "network", &day);
    // h2's lease ends (its node and endpoint go at once); it comes back, registers
    // again; h1 detaches.
    let expiry = [
        day.clone(),
        record(4, &[1, 0, 0, 0], &[]),
        record(4, &[1, 0, 0, 0], &[]),
        node(1),
        endpoint(1, 2, Some("web")),
        record(9, &[0, 0, 0, 0], &[]),
    ]
    .concat();
    write(t, "lease-expiry", &expiry);
    // h1's watch lags while h3 joins and the history is compacted: it starts again
    // from a snapshot; then a watch restarted two revisions early.
    let compaction = [
        day.clone(),
        record(7, &[3, 0, 0, 0], &[]),
        node(2),
        endpoint(2, 4, None),
        record(5, &[0, 0, 0, 0], &[]),
        record(7, &[0, 2, 1, 0], &[]),
        record(3, &[5, 4, 4, 0x82], &[]),
    ]
    .concat();
    write(t, "compaction", &compaction);
    // Records read from bytes: h2 and h3 (h3 at another port), red on its /24, an
    // endpoint of h3's with a name, and h1 asking for 10.41.0.5 on red.
    let structured = [
        record(2, &[0, 2, 0, 0x81], &[1, 7]),
        record(2, &[0, 4, 0, 0x82], &[0x12, 0x10, 0x27, 9]),
        record(2, &[1, 1, 0, 0], &[0, 0, 1, 1, 5]),
        record(2, &[5, 5, 4, 0x82], &[2]),
        record(8, &[1, 3, 5, 0], &[]),
        register.clone(),
    ]
    .concat();
    write(t, "records", &structured);
    // Keys outside the layout, a record of a later version, junk, and a resync against
    // a snapshot with a stale endpoint and address of h1's in it.
    let chunk = |bytes: &[u8]| {
        let mut out = (bytes.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    };
    let stale = [
        chunk(b"endpoints/blue/h1/10.40.0.9"),
        chunk(&value_of(&EndpointRecord {
            mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 40, 0, 9)),
            name: None,
            aliases: Vec::new(),
        })),
        chunk(b"addresses/blue/10.40.0.9"),
        chunk(&value_of(&AddressRecord { node: "h1".into() })),
    ]
    .concat();
    let junk = [
        two_nodes,
        record(0, &[14, 0, 0, 0], b"future/thing/1{\"v\":2}"),
        record(0, &[8, 1, 0, 0], b"/other/kx"),
        record(
            1,
            &[0, 4, 0, 0x82],
            b"{\"vtep\":\"192.0.2.3:4789\",\"v\":2}",
        ),
        record(1, &[5, 0, 7, 0], b"{not json"),
        record(3, &[0, 0, 0, 0], b"nodes/../h2"),
        record(6, &[2, 0, 0, 0], &stale),
    ]
    .concat();
    write(t, "junk", &junk);
}

/// `inspect`: a trace request's hex, raw frames from each kind of port, a capture stream.
fn inspect_seeds() {
    let t = "inspect";
    let broadcast = udp4(mac(1), [0xff; 6], None, b"to all");
    let hex: String = broadcast.iter().map(|b| format!("{b:02x}")).collect();
    write(t, "hex", &[b"\x00".as_slice(), hex.as_bytes()].concat());
    let to_gateway = udp_ip([10, 1, 0, 5], [10, 1, 0, 1]);
    for (name, port, frame) in [
        ("access", 1u8, broadcast.clone()),
        ("trunk", 3, udp4(mac(3), mac(1), Some(20), b"tagged")),
        ("router", 1, to_gateway),
        ("tunnel", 4, broadcast.clone()),
    ] {
        write(t, name, &[&[1u8, port][..], &frame].concat());
    }
    let stream = [
        switchyard::capture::pcapng::section_header("seeds"),
        switchyard::capture::pcapng::interface_description("red/eth0"),
        switchyard::capture::pcapng::enhanced_packet(
            1,
            switchyard::capture::Direction::In,
            &broadcast,
        ),
        switchyard::capture::pcapng::interface_statistics(2, 1, 0, "the count was reached"),
    ]
    .concat();
    write(t, "pcapng", &[&[2u8][..], &stream].concat());
}

fn main() {
    inspect_seeds();
    wire_views();
    datapath_seeds();
    vxlan_seeds();
    router_seeds();
    control_seeds();
    cni_seeds();
    state_seeds();
    cluster_seeds();
}
