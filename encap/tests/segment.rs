//! Segmentation checked against etherparse: super-frames are built with its
//! `PacketBuilder`, handed over the way a TAP does (partial checksum), segmented, and every
//! resulting frame is parsed back and compared with a frame etherparse builds from scratch.

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, LinkHeader, NetHeaders,
    PacketBuilder, PacketHeaders, TransportHeader,
};
use proptest::prelude::*;
use switchyard_encap::segment::{
    complete_checksum, segment, GsoKind, Layout, Offload, SegmentError,
};

const MAC_SRC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const MAC_DST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const IP4_SRC: [u8; 4] = [10, 1, 2, 3];
const IP4_DST: [u8; 4] = [192, 168, 200, 17];
const IP6_SRC: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const IP6_DST: [u8; 16] = [
    0xfd, 0x00, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0xab, 0xcd, 0, 0x20,
];
const PORT_SRC: u16 = 40_000;
const PORT_DST: u16 = 5201;
const ETH_LEN: usize = 14;

/// TCP flags the super-frame carries.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    fin: bool,
    psh: bool,
    cwr: bool,
    ece: bool,
    urg: bool,
}

/// A super-frame to build.
#[derive(Debug, Clone)]
struct Spec {
    ipv6: bool,
    udp: bool,
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    ip_options: Vec<u8>,
    /// TCP options (a multiple of 4 bytes, at most 40).
    tcp_options: Vec<u8>,
    payload: Vec<u8>,
    ip_id: u16,
    dont_fragment: bool,
    seq: u32,
    flags: Flags,
    segment_size: u16,
    ecn: bool,
}

impl Spec {
    fn tcp4(payload_len: usize, segment_size: u16) -> Spec {
        Spec {
            ipv6: false,
            udp: false,
            ip_options: Vec::new(),
            tcp_options: Vec::new(),
            payload: pattern(payload_len, 7),
            ip_id: 0x1234,
            dont_fragment: true,
            seq: 0x0102_0304,
            flags: Flags {
                psh: true,
                ..Flags::default()
            },
            segment_size,
            ecn: false,
        }
    }

    fn ip_header_len(&self) -> usize {
        if self.ipv6 {
            40
        } else {
            20 + self.ip_options.len()
        }
    }

    fn l4_header_len(&self) -> usize {
        if self.udp {
            8
        } else {
            20 + self.tcp_options.len()
        }
    }

    fn l4_start(&self) -> usize {
        ETH_LEN + self.ip_header_len()
    }

    /// The largest payload the IP length fields can describe with these headers.
    fn max_payload(&self) -> usize {
        let ip_overhead = if self.ipv6 { 0 } else { self.ip_header_len() };
        65535 - ip_overhead - self.l4_header_len()
    }

    fn kind(&self) -> GsoKind {
        match (self.udp, self.ipv6) {
            (true, _) => GsoKind::Udp,
            (false, false) => GsoKind::TcpV4,
            (false, true) => GsoKind::TcpV6,
        }
    }

    fn offload(&self) -> Offload {
        Offload {
            kind: self.kind(),
            ecn: self.ecn,
            segment_size: self.segment_size,
            needs_csum: true,
            csum_start: self.l4_start() as u16,
            csum_offset: if self.udp { 6 } else { 16 },
        }
    }

    /// A complete frame with every checksum right, as etherparse builds it, for an IP ID,
    /// a sequence number, flags and a payload (the super-frame itself or one segment).
    fn build(&self, ip_id: u16, seq: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
        let ip = if self.ipv6 {
            IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0x28,
                    flow_label: Ipv6FlowLabel::try_new(0x9_abcd).unwrap(),
                    payload_length: 0,
                    next_header: IpNumber::TCP,
                    hop_limit: 63,
                    source: IP6_SRC,
                    destination: IP6_DST,
                },
                Default::default(),
            )
        } else {
            let mut header = Ipv4Header::new(0, 64, IpNumber::TCP, IP4_SRC, IP4_DST).unwrap();
            header.identification = ip_id;
            header.dont_fragment = self.dont_fragment;
            header.options = self.ip_options.as_slice().try_into().unwrap();
            IpHeaders::Ipv4(header, Default::default())
        };
        let step = PacketBuilder::ethernet2(MAC_SRC, MAC_DST).ip(ip);
        let mut frame = Vec::new();
        if self.udp {
            step.udp(PORT_SRC, PORT_DST)
                .write(&mut frame, payload)
                .unwrap();
        } else {
            let mut tcp = step
                .tcp(PORT_SRC, PORT_DST, seq, 502)
                .ack(0xa0b0_c0d0)
                .options_raw(&self.tcp_options)
                .unwrap();
            if flags.fin {
                tcp = tcp.fin();
            }
            if flags.psh {
                tcp = tcp.psh();
            }
            if flags.cwr {
                tcp = tcp.cwr();
            }
            if flags.ece {
                tcp = tcp.ece();
            }
            if flags.urg {
                tcp = tcp.urg(3);
            }
            tcp.write(&mut frame, payload).unwrap();
        }
        frame
    }

    /// The super-frame as a TAP hands it over: the transport checksum field holds the
    /// pseudo-header sum (not inverted), to be completed over `csum_start..`.
    fn super_frame(&self) -> Vec<u8> {
        let mut frame = self.build(self.ip_id, self.seq, self.flags, &self.payload);
        let l4 = self.l4_start();
        let l4_len = frame.len() - l4;
        let protocol = if self.udp { 17 } else { 6 };
        let pseudo = if self.ipv6 {
            naive_sum(
                &[
                    &IP6_SRC[..],
                    &IP6_DST[..],
                    &(l4_len as u32).to_be_bytes(),
                    &[0, 0, 0, protocol],
                ]
                .concat(),
            )
        } else {
            naive_sum(
                &[
                    &IP4_SRC[..],
                    &IP4_DST[..],
                    &[0, protocol],
                    &(l4_len as u16).to_be_bytes(),
                ]
                .concat(),
            )
        };
        let field = l4 + if self.udp { 6 } else { 16 };
        frame[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        frame
    }
}

/// Deterministic filler bytes (a seeded xorshift), so large payloads cost nothing to shrink.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// RFC 1071 the slow way, independent of the crate's checksum module.
fn naive_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Segments `spec` and checks everything about the result; returns the layout.
fn segment_and_check(spec: &Spec, prefix_len: usize) -> Layout {
    let frame = spec.super_frame();
    let offload = spec.offload();
    let mut out = vec![0xee; 5]; // stale bytes that must go
    let layout = segment(&offload, &frame, prefix_len, usize::MAX, &mut out)
        .unwrap_or_else(|e| panic!("segment failed: {e}"));

    let mss = usize::from(spec.segment_size);
    let payload_len = spec.payload.len();
    let headers_len = spec.l4_start() + spec.l4_header_len();
    let count = payload_len.div_ceil(mss).max(1);
    assert_eq!(layout.count, count, "segment count");
    assert_eq!(out.len(), layout.total_len(), "layout describes the buffer");
    assert_eq!(out.len(), layout.stride * (count - 1) + layout.last_len);
    assert!(layout.last_len <= layout.stride);
    if count > 1 {
        assert_eq!(layout.stride, prefix_len + headers_len + mss, "stride");
    } else {
        assert_eq!(layout.stride, layout.last_len);
    }
    assert_eq!(
        layout.last_len,
        prefix_len + headers_len + (payload_len - (count - 1) * mss),
        "last record"
    );

    let records: Vec<&[u8]> = layout.records(&out).collect();
    assert_eq!(records.len(), count);
    let mut rebuilt = Vec::with_capacity(payload_len);
    for (i, record) in records.iter().enumerate() {
        let last = i + 1 == count;
        assert_eq!(
            record.len(),
            if last { layout.last_len } else { layout.stride }
        );
        assert!(
            record[..prefix_len].iter().all(|&b| b == 0),
            "prefix is zeroed"
        );
        let seg = &record[prefix_len..];
        let piece = &spec.payload[i * mss..payload_len.min((i + 1) * mss)];
        let seq = spec.seq.wrapping_add((i * mss) as u32);
        let ip_id = spec.ip_id.wrapping_add(i as u16);
        check_segment(spec, seg, piece, ip_id, seq, i == 0, last);

        // Byte for byte what etherparse builds for this segment from scratch.
        let flags = Flags {
            fin: spec.flags.fin && last,
            psh: spec.flags.psh && last,
            cwr: spec.flags.cwr && i == 0,
            ..spec.flags
        };
        let expected = spec.build(ip_id, seq, flags, piece);
        assert!(
            seg == expected.as_slice(),
            "segment {i} differs from etherparse's"
        );
        rebuilt.extend_from_slice(piece);
    }
    assert_eq!(
        rebuilt, spec.payload,
        "the payloads concatenate to the original"
    );
    layout
}

/// Parses one output frame with etherparse and checks its fields and checksums.
fn check_segment(
    spec: &Spec,
    seg: &[u8],
    piece: &[u8],
    ip_id: u16,
    seq: u32,
    first: bool,
    last: bool,
) {
    let parsed = PacketHeaders::from_ethernet_slice(seg).expect("segment parses");
    match parsed.link {
        Some(LinkHeader::Ethernet2(eth)) => {
            assert_eq!((eth.source, eth.destination), (MAC_SRC, MAC_DST));
        }
        other => panic!("not Ethernet II: {other:?}"),
    }
    assert_eq!(parsed.payload.slice(), piece, "segment payload");
    let l4_len = spec.l4_header_len() + piece.len();
    let transport = parsed.transport.expect("transport header");
    match parsed.net.expect("IP header") {
        NetHeaders::Ipv4(ip, _) => {
            assert!(!spec.ipv6);
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert_eq!(
                usize::from(ip.total_len),
                seg.len() - ETH_LEN,
                "IPv4 total length"
            );
            assert_eq!(ip.identification, ip_id, "IPv4 ID");
            assert_eq!(ip.dont_fragment, spec.dont_fragment);
            assert!(!ip.more_fragments && ip.fragment_offset.value() == 0);
            assert_eq!(ip.options.as_slice(), &spec.ip_options[..]);
            match transport {
                TransportHeader::Tcp(tcp) => {
                    check_tcp(spec, &tcp, seq, first, last);
                    assert_eq!(
                        tcp.checksum,
                        tcp.calc_checksum_ipv4(&ip, piece).unwrap(),
                        "TCP checksum"
                    );
                }
                TransportHeader::Udp(udp) => {
                    assert!(spec.udp);
                    assert_eq!(usize::from(udp.length), l4_len, "UDP length");
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv4(&ip, piece).unwrap(),
                        "UDP checksum"
                    );
                    assert_ne!(udp.checksum, 0);
                }
                other => panic!("unexpected transport {other:?}"),
            }
        }
        NetHeaders::Ipv6(ip, _) => {
            assert!(spec.ipv6);
            assert_eq!(
                usize::from(ip.payload_length),
                l4_len,
                "IPv6 payload length"
            );
            match transport {
                TransportHeader::Tcp(tcp) => {
                    check_tcp(spec, &tcp, seq, first, last);
                    assert_eq!(
                        tcp.checksum,
                        tcp.calc_checksum_ipv6(&ip, piece).unwrap(),
                        "TCP checksum"
                    );
                }
                TransportHeader::Udp(udp) => {
                    assert!(spec.udp);
                    assert_eq!(usize::from(udp.length), l4_len, "UDP length");
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv6(&ip, piece).unwrap(),
                        "UDP checksum"
                    );
                    assert_ne!(udp.checksum, 0);
                }
                other => panic!("unexpected transport {other:?}"),
            }
        }
        other => panic!("unexpected network header {other:?}"),
    }
}

fn check_tcp(spec: &Spec, tcp: &etherparse::TcpHeader, seq: u32, first: bool, last: bool) {
    assert!(!spec.udp);
    assert_eq!(tcp.sequence_number, seq, "sequence number");
    assert_eq!(tcp.acknowledgment_number, 0xa0b0_c0d0);
    assert_eq!(
        tcp.fin,
        spec.flags.fin && last,
        "FIN only on the last segment"
    );
    assert_eq!(
        tcp.psh,
        spec.flags.psh && last,
        "PSH only on the last segment"
    );
    assert_eq!(
        tcp.cwr,
        spec.flags.cwr && first,
        "CWR only on the first segment"
    );
    assert_eq!(tcp.ece, spec.flags.ece, "ECE on every segment");
    assert!(tcp.ack && !tcp.syn && !tcp.rst);
    assert_eq!(
        tcp.options.as_slice(),
        &spec.tcp_options[..],
        "TCP options copied"
    );
}

/// Whatever `segment` accepted must be well-formed: the layout describes the buffer, and
/// every frame of a GSO kind parses, with lengths that agree and checksums that verify
/// over the bytes as they are (not as etherparse re-serializes its header structs, which
/// drops reserved bits).
fn check_any_output(
    offload: &Offload,
    frame: &[u8],
    prefix_len: usize,
    out: &[u8],
    layout: &Layout,
) {
    assert!(layout.count >= 1);
    assert!(layout.last_len <= layout.stride);
    assert_eq!(out.len(), layout.total_len());
    let records: Vec<&[u8]> = layout.records(out).collect();
    assert_eq!(records.len(), layout.count);
    if offload.kind == GsoKind::None {
        assert_eq!(layout.count, 1);
        assert_eq!(out.len(), prefix_len + frame.len());
        return;
    }
    let mut payload = 0;
    for record in records {
        assert!(record[..prefix_len].iter().all(|&b| b == 0));
        let seg = &record[prefix_len..];
        assert!(seg.len() <= frame.len());
        let parsed = PacketHeaders::from_ethernet_slice(seg).expect("accepted output parses");
        let piece = parsed.payload.slice();
        assert!(piece.len() <= usize::from(offload.segment_size));
        payload += piece.len();
        let (l4, pseudo) = match parsed.net.expect("IP") {
            NetHeaders::Ipv4(ip, _) => {
                let l4 = ETH_LEN + ip.header_len();
                assert_eq!(naive_sum(&seg[ETH_LEN..l4]), 0xffff, "IPv4 header checksum");
                assert_eq!(usize::from(ip.total_len), seg.len() - ETH_LEN);
                let len = (seg.len() - l4) as u16;
                let pseudo = [
                    &ip.source[..],
                    &ip.destination[..],
                    &[0, ip.protocol.0],
                    &len.to_be_bytes(),
                ]
                .concat();
                (l4, pseudo)
            }
            NetHeaders::Ipv6(ip, _) => {
                let l4 = ETH_LEN + 40;
                assert_eq!(usize::from(ip.payload_length), seg.len() - l4);
                let len = (seg.len() - l4) as u32;
                let pseudo = [
                    &ip.source[..],
                    &ip.destination[..],
                    &len.to_be_bytes(),
                    &[0, 0, 0, ip.next_header.0],
                ]
                .concat();
                (l4, pseudo)
            }
            other => panic!("unexpected network header {other:?}"),
        };
        match parsed.transport.expect("transport") {
            TransportHeader::Tcp(_) => assert!(offload.kind != GsoKind::Udp),
            TransportHeader::Udp(udp) => {
                assert_eq!(offload.kind, GsoKind::Udp);
                assert_eq!(usize::from(udp.length), 8 + piece.len());
                assert_ne!(udp.checksum, 0);
            }
            other => panic!("unexpected transport {other:?}"),
        }
        let whole = [&pseudo[..], &seg[l4..]].concat();
        assert_eq!(naive_sum(&whole), 0xffff, "transport checksum");
    }
    assert!(payload <= frame.len());
}

// ---------------------------------------------------------------------------------------
// Fixed cases

#[test]
fn tcp4_super_frame_of_64k() {
    let mut spec = Spec::tcp4(65_495, 1448);
    spec.tcp_options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP timestamps
    spec.payload.truncate(spec.max_payload());
    spec.flags.fin = true;
    let layout = segment_and_check(&spec, 8);
    assert_eq!(layout.count, spec.payload.len().div_ceil(1448));
}

#[test]
fn tcp6_super_frame() {
    let mut spec = Spec::tcp4(40_000, 1428);
    spec.ipv6 = true;
    spec.flags = Flags {
        fin: true,
        psh: true,
        ece: true,
        cwr: true,
        urg: false,
    };
    spec.ecn = true;
    segment_and_check(&spec, 8);
}

#[test]
fn cwr_only_on_the_first_segment() {
    let mut spec = Spec::tcp4(5000, 1000);
    spec.flags.cwr = true;
    spec.flags.ece = true;
    spec.ecn = true;
    segment_and_check(&spec, 0);
    // Linux clears CWR after the first segment with or without the ECN flag; so do we.
    spec.ecn = false;
    segment_and_check(&spec, 0);
}

#[test]
fn udp_super_frames_over_ipv4_and_ipv6() {
    for ipv6 in [false, true] {
        let mut spec = Spec::tcp4(30_000, 1472);
        spec.udp = true;
        spec.ipv6 = ipv6;
        segment_and_check(&spec, 8);
    }
}

#[test]
fn ipv4_options_are_copied_into_every_segment() {
    let mut spec = Spec::tcp4(9000, 1000);
    spec.ip_options = vec![0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]; // router alert, NOPs, EOL
    segment_and_check(&spec, 0);
    spec.udp = true;
    segment_and_check(&spec, 0);
}

#[test]
fn ids_and_sequence_numbers_wrap() {
    let mut spec = Spec::tcp4(4 * 100, 100);
    spec.ip_id = 0xfffe;
    spec.seq = 0xffff_ff9c; // -100: the third segment starts at 100 again
    let frame = spec.super_frame();
    let mut out = Vec::new();
    let layout = segment(&spec.offload(), &frame, 0, 1500, &mut out).unwrap();
    let ids: Vec<u16> = layout
        .records(&out)
        .map(|r| u16::from_be_bytes([r[18], r[19]]))
        .collect();
    assert_eq!(ids, [0xfffe, 0xffff, 0x0000, 0x0001]);
    let seqs: Vec<u32> = layout
        .records(&out)
        .map(|r| u32::from_be_bytes([r[38], r[39], r[40], r[41]]))
        .collect();
    assert_eq!(seqs, [0xffff_ff9c, 0, 100, 200]);
    segment_and_check(&spec, 0);
}

#[test]
fn ids_increment_without_df_too() {
    let mut spec = Spec::tcp4(3000, 1000);
    spec.dont_fragment = false;
    segment_and_check(&spec, 0);
}

#[test]
fn exact_multiple_of_the_segment_size() {
    let spec = Spec::tcp4(3 * 1448, 1448);
    let layout = segment_and_check(&spec, 8);
    assert_eq!(layout.count, 3);
    assert_eq!(layout.stride, layout.last_len);
}

#[test]
fn small_payload_gives_the_original_frame_back() {
    for (payload_len, udp, ipv6) in [
        (0, false, false),
        (1, false, true),
        (1448, false, false),
        (10, true, false),
        (0, true, true),
    ] {
        let mut spec = Spec::tcp4(payload_len, 1448);
        spec.udp = udp;
        spec.ipv6 = ipv6;
        spec.flags.fin = true;
        let layout = segment_and_check(&spec, 0);
        assert_eq!(layout.count, 1);
        let mut out = Vec::new();
        segment(&spec.offload(), &spec.super_frame(), 0, 1514, &mut out).unwrap();
        let original = spec.build(spec.ip_id, spec.seq, spec.flags, &spec.payload);
        assert_eq!(
            out, original,
            "payload {payload_len}, udp {udp}, ipv6 {ipv6}"
        );
    }
}

#[test]
fn udp_checksum_of_zero_is_sent_as_ffff() {
    // Choose the first segment's last payload word so that its checksum computes to 0.
    let mut spec = Spec::tcp4(8, 4);
    spec.udp = true;
    let segment_len = 12u16;
    let partial = [
        &IP4_SRC[..],
        &IP4_DST[..],
        &[0, 17],
        &segment_len.to_be_bytes(),
        &PORT_SRC.to_be_bytes(),
        &PORT_DST.to_be_bytes(),
        &segment_len.to_be_bytes(),
        &spec.payload[..2],
    ]
    .concat();
    let word = !naive_sum(&partial);
    spec.payload[2..4].copy_from_slice(&word.to_be_bytes());
    segment_and_check(&spec, 0);
    let mut out = Vec::new();
    segment(&spec.offload(), &spec.super_frame(), 0, 1500, &mut out).unwrap();
    assert_eq!(out[40..42], [0xff, 0xff]);
}

#[test]
fn segment_size_one() {
    let mut spec = Spec::tcp4(300, 1);
    segment_and_check(&spec, 3);
    spec.udp = true;
    spec.ipv6 = true;
    segment_and_check(&spec, 3);
}

#[test]
fn plain_frame_with_partial_checksum_is_completed() {
    for (udp, ipv6) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut spec = Spec::tcp4(777, 1448);
        spec.udp = udp;
        spec.ipv6 = ipv6;
        let mut frame = spec.super_frame();
        let original = spec.build(spec.ip_id, spec.seq, spec.flags, &spec.payload);
        let offload = Offload {
            kind: GsoKind::None,
            ..spec.offload()
        };
        let mut out = Vec::new();
        let layout = segment(&offload, &frame, 8, 1514, &mut out).unwrap();
        assert_eq!(
            layout,
            Layout {
                count: 1,
                stride: 8 + frame.len(),
                last_len: 8 + frame.len()
            }
        );
        assert_eq!(&out[8..], &original[..]);

        let start = usize::from(offload.csum_start);
        complete_checksum(&mut frame, start, usize::from(offload.csum_offset)).unwrap();
        assert_eq!(frame, original);
    }
}

#[test]
fn too_big_is_reported_before_anything_is_written() {
    let spec = Spec::tcp4(10_000, 1448);
    let frame = spec.super_frame();
    let mut out = vec![1, 2, 3];
    let needed = 14 + 20 + 20 + 1448;
    assert_eq!(
        segment(&spec.offload(), &frame, 8, needed - 1, &mut out),
        Err(SegmentError::TooBig {
            needed,
            limit: needed - 1
        })
    );
    assert!(out.is_empty());
    assert!(segment(&spec.offload(), &frame, 8, needed, &mut out).is_ok());

    // A short payload only needs room for itself.
    let spec = Spec::tcp4(100, 1448);
    assert!(segment(&spec.offload(), &spec.super_frame(), 8, 154, &mut out).is_ok());
    assert_eq!(
        segment(&spec.offload(), &spec.super_frame(), 8, 153, &mut out),
        Err(SegmentError::TooBig {
            needed: 154,
            limit: 153
        })
    );
}

// ---------------------------------------------------------------------------------------
// Refusals

fn refuse(offload: &Offload, frame: &[u8]) -> SegmentError {
    let mut out = vec![9; 4];
    let err = segment(offload, frame, 8, usize::MAX, &mut out).expect_err("must be refused");
    assert!(out.is_empty(), "nothing written on error");
    err
}

#[test]
fn refuses_inconsistent_frames() {
    let spec = Spec::tcp4(3000, 1000);
    let good = spec.super_frame();
    let offload = spec.offload();

    let zero = Offload {
        segment_size: 0,
        ..offload
    };
    let err = refuse(&zero, &good);
    assert_eq!(err, SegmentError::ZeroSegmentSize("TCP"));
    assert_eq!(err.to_string(), "TCP super-frame: segment size 0");

    let err = refuse(&offload, &good[..good.len() - 1]);
    assert_eq!(
        err,
        SegmentError::Ipv4TotalLen {
            total: 3040,
            available: 3039
        }
    );
    assert_eq!(
        err.to_string(),
        "IPv4 total length 3040 does not match the frame (3039 bytes after the Ethernet header)"
    );

    let mut tagged = good.clone();
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(refuse(&offload, &tagged), SegmentError::EtherType(0x8100));

    let mut fragment = good.clone();
    fragment[20] |= 0x20; // MF
    assert_eq!(
        refuse(&offload, &fragment),
        SegmentError::Ipv4Fragment {
            offset: 0,
            more: true
        }
    );
    let mut fragment = good.clone();
    fragment[21] = 0x10;
    assert_eq!(
        refuse(&offload, &fragment),
        SegmentError::Ipv4Fragment {
            offset: 16,
            more: false
        }
    );

    let mut version = good.clone();
    version[14] = 0x65;
    assert_eq!(
        refuse(&offload, &version),
        SegmentError::IpVersion {
            version: 6,
            ethertype: 0x0800
        }
    );

    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    assert_eq!(
        refuse(&offload, &short_ihl),
        SegmentError::Ipv4HeaderLen(16)
    );

    let mut doff = good.clone();
    doff[34 + 12] = 0x40;
    assert_eq!(refuse(&offload, &doff), SegmentError::TcpHeaderLen(16));

    let tcp_header_cut = &good[..54];
    let mut cut = tcp_header_cut.to_vec();
    cut[16..18].copy_from_slice(&40u16.to_be_bytes());
    cut[34 + 12] = 0xf0; // 60-byte TCP header in a 54-byte frame
    assert!(matches!(
        refuse(&offload, &cut),
        SegmentError::Truncated {
            needed: 94,
            got: 54,
            ..
        }
    ));

    let udp_offload = Offload {
        kind: GsoKind::Udp,
        csum_offset: 6,
        ..offload
    };
    assert_eq!(
        refuse(&udp_offload, &good),
        SegmentError::WrongProtocol {
            kind: "UDP",
            protocol: 6
        }
    );
    let v6_offload = Offload {
        kind: GsoKind::TcpV6,
        ..offload
    };
    assert_eq!(
        refuse(&v6_offload, &good),
        SegmentError::WrongIpVersion {
            kind: "TCPv6",
            ip: "IPv4"
        }
    );

    let moved = Offload {
        csum_start: 30,
        ..offload
    };
    assert_eq!(
        refuse(&moved, &good),
        SegmentError::ChecksumStart {
            start: 30,
            expected: 34
        }
    );
    let udp_field = Offload {
        csum_offset: 6,
        ..offload
    };
    assert_eq!(
        refuse(&udp_field, &good),
        SegmentError::ChecksumOffset {
            protocol: "TCP",
            got: 6,
            expected: 16
        }
    );
    let ecn_udp = Offload {
        ecn: true,
        ..udp_offload
    };
    assert_eq!(refuse(&ecn_udp, &good), SegmentError::EcnOnUdp);
    assert!(matches!(
        refuse(&offload, &good[..10]),
        SegmentError::Truncated { .. }
    ));
    assert!(matches!(
        refuse(&offload, &good[..30]),
        SegmentError::Truncated { .. }
    ));
}

#[test]
fn refuses_inconsistent_udp_and_ipv6_frames() {
    let mut spec = Spec::tcp4(3000, 1000);
    spec.udp = true;
    let good = spec.super_frame();
    let offload = spec.offload();
    let mut udp_len = good.clone();
    udp_len[38..40].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(
        refuse(&offload, &udp_len),
        SegmentError::UdpLen {
            udp: 100,
            available: 3008
        }
    );

    spec.ipv6 = true;
    let good = spec.super_frame();
    let offload = spec.offload();
    let mut ext = good.clone();
    ext[20] = 0; // hop-by-hop options
    assert_eq!(refuse(&offload, &ext), SegmentError::Ipv6NextHeader(0));
    assert_eq!(
        refuse(&offload, &good[..good.len() - 3]),
        SegmentError::Ipv6PayloadLen {
            payload: 3008,
            available: 3005
        }
    );
    let tcp_v4 = Offload {
        kind: GsoKind::TcpV4,
        csum_offset: 16,
        ..offload
    };
    assert_eq!(
        refuse(&tcp_v4, &good),
        SegmentError::WrongIpVersion {
            kind: "TCPv4",
            ip: "IPv6"
        }
    );
    let tcp_v6 = Offload {
        kind: GsoKind::TcpV6,
        csum_offset: 16,
        ..offload
    };
    assert_eq!(
        refuse(&tcp_v6, &good),
        SegmentError::WrongProtocol {
            kind: "TCPv6",
            protocol: 17
        }
    );
}

// ---------------------------------------------------------------------------------------
// Properties

fn spec_strategy(
    payload: std::ops::Range<usize>,
    mss: std::ops::Range<u16>,
) -> impl Strategy<Value = (Spec, usize)> {
    (
        (any::<bool>(), any::<bool>(), 0usize..=10, 0usize..=10),
        (
            payload,
            mss,
            any::<u64>(),
            any::<u16>(),
            any::<u32>(),
            any::<bool>(),
        ),
        (
            any::<[bool; 5]>(),
            any::<bool>(),
            prop::sample::select(vec![0usize, 8, 16]),
        ),
    )
        .prop_map(
            |(
                (ipv6, udp, ip_words, tcp_words),
                (payload_len, mss, seed, ip_id, seq, df),
                (flags, ecn, prefix),
            )| {
                let mut spec = Spec {
                    ipv6,
                    udp,
                    // NOPs then an end-of-list: valid options of any length.
                    ip_options: if ipv6 {
                        Vec::new()
                    } else {
                        vec![1; ip_words * 4]
                    },
                    tcp_options: if udp {
                        Vec::new()
                    } else {
                        vec![1; tcp_words * 4]
                    },
                    payload: Vec::new(),
                    ip_id,
                    dont_fragment: df,
                    seq,
                    flags: Flags {
                        fin: flags[0],
                        psh: flags[1],
                        cwr: flags[2] && !udp,
                        ece: flags[3],
                        urg: flags[4],
                    },
                    segment_size: mss,
                    ecn: ecn && !udp,
                };
                spec.payload = pattern(payload_len.min(spec.max_payload()), seed);
                (spec, prefix)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn segments_any_super_frame((spec, prefix) in spec_strategy(0..70_000, 1..9000)) {
        segment_and_check(&spec, prefix);
    }

    #[test]
    fn segments_realistic_super_frames((spec, prefix) in spec_strategy(0..70_000, 536..1460)) {
        segment_and_check(&spec, prefix);
    }

    #[test]
    fn segments_small_super_frames_finely((spec, prefix) in spec_strategy(0..3000, 1..64)) {
        segment_and_check(&spec, prefix);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(
        frame in prop::collection::vec(any::<u8>(), 0..300),
        flags in any::<u8>(),
        gso_type in prop::sample::select(vec![0u8, 1, 3, 4, 5, 0x81, 0x84, 0x85, 0x80, 0x42]),
        gso_size in prop::sample::select(vec![0u16, 1, 2, 7, 100, 1448, 65535]),
        csum_start in 0u16..320,
        csum_offset in 0u16..24,
        prefix in 0usize..20,
        limit in prop::sample::select(vec![0usize, 60, 200, usize::MAX]),
    ) {
        if let Ok(offload) = Offload::from_virtio(flags, gso_type, gso_size, csum_start, csum_offset) {
            let mut out = Vec::new();
            match segment(&offload, &frame, prefix, limit, &mut out) {
                Ok(layout) => check_any_output(&offload, &frame, prefix, &out, &layout),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
        let mut frame = frame;
        let _ = complete_checksum(&mut frame, usize::from(csum_start), usize::from(csum_offset));
    }

    #[test]
    fn damaged_super_frames_are_refused_or_segmented_correctly(
        (spec, prefix) in spec_strategy(0..2500, 1..600),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        offload_damage in 0u8..8,
        value in any::<u16>(),
    ) {
        let mut frame = spec.super_frame();
        // Damage the headers mostly: that is where the parser has to look.
        let headers = spec.l4_start() + spec.l4_header_len() + 4;
        for (at, byte) in damage {
            let at = at.index(headers.min(frame.len()));
            frame[at] = byte;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        let mut offload = spec.offload();
        match offload_damage {
            0 => offload.segment_size = value,
            1 => offload.csum_start = value % 128,
            2 => offload.csum_offset = value % 32,
            3 => offload.needs_csum = false,
            4 => offload.kind = [GsoKind::None, GsoKind::TcpV4, GsoKind::TcpV6, GsoKind::Udp][usize::from(value % 4)],
            _ => {}
        }
        let mut out = Vec::new();
        match segment(&offload, &frame, prefix, usize::MAX, &mut out) {
            Ok(layout) => check_any_output(&offload, &frame, prefix, &out, &layout),
            Err(_) => prop_assert!(out.is_empty()),
        }
    }
}
