//! Coalescing received TCP segments back into one super-frame: the inverse of
//! [`crate::segment`], and what the kernel's GRO does for a NIC.
//!
//! A VTEP receives a bulk TCP transfer as a stream of ~1.4 KB segments. Handing each to
//! the container's TAP costs a system call, a pass through the receiver's TCP stack and a
//! wake-up per segment. Consecutive segments of one flow are instead merged into one
//! frame of up to 64 KiB, written once, with a `virtio_net_hdr` that describes it as a
//! TCP GSO frame (the receiving kernel treats it as GRO would have).
//!
//! Segments merge only when the result is exactly what the sender's stack could have
//! segmented: the same Ethernet, IP and TCP headers (except IP length, ID and checksum,
//! TCP sequence number and checksum, and PSH on the last segment), contiguous sequence
//! numbers, every segment but the last of the same payload size, no SYN, FIN, RST, URG or
//! CWR, and a transport checksum that is either correct or left partial by an offloading
//! sender. Anything else is delivered as it came.

use std::ops::Range;

use switchyard_wire::ipv4::{self, Ipv4Packet};
use switchyard_wire::ipv6::{self, Ipv6Packet};
use switchyard_wire::tcp::{self, TcpFlags, TcpPacket};
use switchyard_wire::{EtherType, EthernetFrame, IpProtocol};

use crate::segment::{GsoKind, Offload};

/// Frames are untagged: the IP header starts right after the Ethernet header.
const ETH: usize = switchyard_wire::HEADER_LEN;
/// The largest merged IP packet (the IPv4 total-length field's limit).
const MAX_IP_LEN: usize = ipv4::MAX_PACKET_LEN;
/// Flags that keep a segment out of any merge.
const UNMERGEABLE: TcpFlags = TcpFlags(
    TcpFlags::FIN.0 | TcpFlags::SYN.0 | TcpFlags::RST.0 | TcpFlags::URG.0 | TcpFlags::CWR.0,
);

/// Where the parts of one TCP segment are, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    ipv6: bool,
    /// Offset of the TCP header in the frame.
    l4: usize,
    /// Offset of the payload in the frame.
    payload: usize,
    /// Length of the frame that is packet (the rest is Ethernet padding).
    end: usize,
    seq: u32,
    flags: TcpFlags,
}

impl TcpSegment {
    /// Parses `frame` as an untagged Ethernet frame carrying one TCP segment that may be
    /// merged: IPv4 (unfragmented) or IPv6 (no extension headers), no SYN/FIN/RST/URG/CWR,
    /// a non-empty payload, and a checksum that is right or partial.
    #[inline]
    pub fn parse(frame: &[u8]) -> Option<TcpSegment> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let (ipv6, l4, end, pseudo_of) = match eth.ethertype() {
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                if ip.is_fragment() || ip.protocol() != IpProtocol::TCP || !ip.verify_checksum() {
                    return None;
                }
                let (header_len, total) = (ip.header_len(), ip.total_len());
                let len = u16::try_from(total - header_len).ok()?;
                (
                    false,
                    ETH + header_len,
                    ETH + total,
                    ip.pseudo_header_sum(len),
                )
            }
            EtherType::IPV6 => {
                let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
                if ip.next_header() != IpProtocol::TCP {
                    return None;
                }
                let payload_len = ip.payload_len();
                (
                    true,
                    ETH + ipv6::HEADER_LEN,
                    ETH + ipv6::HEADER_LEN + payload_len,
                    ip.pseudo_header_sum(payload_len as u32),
                )
            }
            _ => return None,
        };
        let tcp = TcpPacket::new_checked(frame.get(l4..end)?).ok()?;
        if tcp.payload().is_empty() {
            return None;
        }
        let flags = tcp.flags();
        if flags.intersects(UNMERGEABLE) {
            return None;
        }
        if !tcp.verify_checksum(pseudo_of) && tcp.checksum() != pseudo_of {
            return None;
        }
        Some(TcpSegment {
            ipv6,
            l4,
            payload: l4 + tcp.header_len(),
            end,
            seq: tcp.seq_number(),
            flags,
        })
    }

    /// Bytes of TCP payload.
    pub fn payload_len(&self) -> usize {
        self.end - self.payload
    }

    /// Bytes of headers (Ethernet, IP, TCP) before the payload: what [`continues`]
    /// compares, so what a caller keeps of a segment to compare a later one with.
    pub fn header_len(&self) -> usize {
        self.payload
    }
}

/// Whether `next` (parsed as `n`) continues `prev` (parsed as `p`) so that the two can be
/// one super-frame: same headers where they must be, `next` starting where `prev` ended,
/// `prev` not carrying PSH, and the merged packet (`merged_len` payload bytes so far)
/// still fitting.
pub fn continues(
    prev: &[u8],
    p: &TcpSegment,
    next: &[u8],
    n: &TcpSegment,
    merged_len: usize,
) -> bool {
    if p.ipv6 != n.ipv6
        || p.l4 != n.l4
        || p.payload != n.payload
        || p.flags.intersects(TcpFlags::PSH)
    {
        return false;
    }
    if n.seq != p.seq.wrapping_add(p.payload_len() as u32) || n.payload_len() > p.payload_len() {
        return false;
    }
    if p.payload - ETH + merged_len + n.payload_len() > MAX_IP_LEN {
        return false;
    }
    let same = |range: Range<usize>| prev.get(range.clone()) == next.get(range);
    // A range of header fields, `from` the first's start to the last's end, at `at`.
    let fields = |at: usize, from: Range<usize>, to: Range<usize>| at + from.start..at + to.end;
    // Ethernet header.
    if !same(0..ETH) {
        return false;
    }
    let ip_same = if p.ipv6 {
        use ipv6::field;
        // Version, class, flow label; next header, hop limit, addresses.
        same(fields(ETH, field::VER_TC_FLOW, field::VER_TC_FLOW))
            && same(ETH + field::NEXT_HEADER..ETH + field::DST_ADDR.end)
    } else {
        use ipv4::field;
        // Version, IHL, ToS; flags (not the fragment offset: zero anyway); TTL, protocol;
        // addresses and options. Not length, ID or checksum.
        same(ETH + field::VER_IHL..ETH + field::DSCP_ECN + 1)
            && same(ETH + field::FLAGS_FRAG.start..ETH + field::FLAGS_FRAG.start + 1)
            && same(ETH + field::TTL..ETH + field::PROTOCOL + 1)
            && same(ETH + field::SRC_ADDR.start..p.l4)
    };
    let l4 = p.l4;
    let flags_but_psh = |frame: &[u8]| {
        frame
            .get(l4 + tcp::field::FLAGS)
            .map(|f| f | TcpFlags::PSH.0)
    };
    // Ports; acknowledgment; data offset; window; urgent pointer; options. Flags apart
    // from PSH must match too.
    ip_same
        && same(fields(l4, tcp::field::SRC_PORT, tcp::field::DST_PORT))
        && same(l4 + tcp::field::ACK.start..l4 + tcp::field::DATA_OFFSET + 1)
        && flags_but_psh(prev) == flags_but_psh(next)
        && same(fields(l4, tcp::field::WINDOW, tcp::field::WINDOW))
        && same(l4 + tcp::field::URGENT.start..p.payload)
}

/// Writes into `out` one frame carrying the payloads of `segments` (which must be a run
/// that [`continues`] accepted pair by pair, with their parses) and returns the offload
/// that describes it: TCP GSO with the first segment's payload size, and the checksum
/// left partial for the receiving kernel to complete.
pub fn merge(segments: &[(&[u8], TcpSegment)], out: &mut Vec<u8>) -> Offload {
    let total = merged_len(segments);
    out.clear();
    out.resize(total, 0);
    match merge_into(segments, out) {
        Some((_, offload)) => offload,
        None => unreachable!("the buffer was sized for the merged frame"),
    }
}

/// The length of the frame [`merge`] makes of `segments`.
pub fn merged_len(segments: &[(&[u8], TcpSegment)]) -> usize {
    let Some((_, first)) = segments.first() else {
        return 0;
    };
    first.payload + payload_len(segments)
}

/// Bytes of TCP payload in `segments`, all told.
pub fn payload_len(segments: &[(&[u8], TcpSegment)]) -> usize {
    segments.iter().map(|(_, s)| s.payload_len()).sum()
}

/// [`merge`] into a caller's buffer (the one the frame is then written to the TAP from,
/// so the payload is copied once): returns the frame's length and its offload, or `None`
/// when `out` is too small or `segments` is empty.
pub fn merge_into(segments: &[(&[u8], TcpSegment)], out: &mut [u8]) -> Option<(usize, Offload)> {
    let total = merged_len(segments);
    let (first, f) = *segments.first()?;
    let out = out.get_mut(..total)?;
    out[..f.payload].copy_from_slice(first.get(..f.payload)?);
    copy_payloads(segments, &mut out[f.payload..])?;
    Some((total, finish(out, &f, segments)))
}

/// Extends a frame [`merge_into`] made in `out` (its first `len` bytes; `first` is its
/// first segment's parse) with the payloads of `more`, a run that continues it (each
/// accepted by [`continues`], the first of them against the frame's last segment).
/// Returns the new length and offload, or `None` when `out` is too small (it is left as
/// it was) or `more` is empty.
pub fn append_into(
    out: &mut [u8],
    len: usize,
    first: &TcpSegment,
    more: &[(&[u8], TcpSegment)],
) -> Option<(usize, Offload)> {
    if more.is_empty() || len < first.payload {
        return None;
    }
    let total = len + payload_len(more);
    let out = out.get_mut(..total)?;
    copy_payloads(more, &mut out[len..])?;
    Some((total, finish(out, first, more)))
}

/// Whether a run ending with `last`, `merged_len` payload bytes so far, could still be
/// continued by a segment of the same size: `last` has no PSH and the IP packet has room.
pub fn open_ended(last: &TcpSegment, merged_len: usize) -> bool {
    !last.flags.intersects(TcpFlags::PSH)
        && last.payload - ETH + merged_len + last.payload_len() <= MAX_IP_LEN
}

/// Copies the payloads of `segments` one after the other into `out`, which holds them.
fn copy_payloads(segments: &[(&[u8], TcpSegment)], out: &mut [u8]) -> Option<()> {
    let mut at = 0;
    for (frame, s) in segments {
        let piece = frame.get(s.payload..s.end)?;
        out.get_mut(at..at + piece.len())?.copy_from_slice(piece);
        at += piece.len();
    }
    Some(())
}

/// Sets the merged frame `out`'s lengths, IP checksum, PSH (as the last segment of
/// `added`, the segments just merged in, had it) and partial TCP checksum, and returns its
/// offload. `f` is the frame's first segment's parse.
fn finish(out: &mut [u8], f: &TcpSegment, added: &[(&[u8], TcpSegment)]) -> Offload {
    let total = out.len();
    let ip_len = total - ETH;
    let l4_len = total - f.l4;
    let (ip, segment) = out.split_at_mut(f.l4);
    let ip = &mut ip[ETH..];
    // Both views fit: `out` holds at least the first segment's headers, checked by parse.
    let pseudo = if f.ipv6 {
        Ipv6Packet::new_fixed_header(ip).map_or(0, |mut ip| {
            ip.set_payload_len(l4_len as u16);
            ip.pseudo_header_sum(l4_len as u32)
        })
    } else {
        Ipv4Packet::new_fixed_header(ip).map_or(0, |mut ip| {
            ip.set_total_len(ip_len as u16);
            ip.fill_checksum();
            ip.pseudo_header_sum(l4_len as u16)
        })
    };
    if let Ok(mut tcp) = TcpPacket::new_fixed_header(segment) {
        if let Some((_, last)) = added.last() {
            tcp.set_flags((tcp.flags() & !TcpFlags::PSH) | (last.flags & TcpFlags::PSH));
        }
        tcp.set_checksum(pseudo);
    }
    Offload {
        // The first segment alone is sent as it is; anything longer is a GSO frame.
        kind: if total == f.end {
            GsoKind::None
        } else if f.ipv6 {
            GsoKind::TcpV6
        } else {
            GsoKind::TcpV4
        },
        ecn: false,
        segment_size: f.payload_len() as u16,
        needs_csum: true,
        csum_start: f.l4 as u16,
        csum_offset: tcp::field::CHECKSUM.start as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use crate::segment::{complete_checksum, segment};
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    const PROTO_TCP: u8 = IpProtocol::TCP.0;
    const SYN: u8 = TcpFlags::SYN.0;

    /// A TCP super-frame as a TAP hands it over (checksum partial), and its offload.
    fn super_frame(ipv6: bool, payload: &[u8], mss: u16, psh: bool) -> (Vec<u8>, Offload) {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut out = Vec::new();
        if ipv6 {
            let mut b = builder
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .tcp(40000, 5201, 0xffff_f000, 500)
                .ack(77);
            if psh {
                b = b.psh();
            }
            b.write(&mut out, payload).unwrap();
        } else {
            let mut b = builder
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 5201, 0xffff_f000, 500)
                .ack(77);
            if psh {
                b = b.psh();
            }
            b.write(&mut out, payload).unwrap();
        }
        let l4 = if ipv6 { 54 } else { 34 };
        let offload = Offload {
            kind: if ipv6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
            ecn: false,
            segment_size: mss,
            needs_csum: true,
            csum_start: l4,
            csum_offset: 16,
        };
        (out, offload)
    }

    fn frames_of(records: &[u8], stride: usize) -> Vec<Vec<u8>> {
        records.chunks(stride).map(<[u8]>::to_vec).collect()
    }

    /// The IPv4 segments a sender's stack would make of `payload` bytes at `mss`, PSH on
    /// the last when `psh`.
    fn segments_of(payload: usize, mss: u16, psh: bool) -> Vec<Vec<u8>> {
        let (frame, offload) = super_frame(false, &vec![1u8; payload], mss, psh);
        let mut records = Vec::new();
        let layout = segment(&offload, &frame, 0, 70_000, &mut records).unwrap();
        frames_of(&records, layout.stride)
    }

    /// Segments a super-frame, coalesces the segments, and checks the result is the
    /// same TCP payload, with headers that complete to a valid packet.
    fn round_trip(ipv6: bool, payload: &[u8], mss: u16) {
        let (frame, offload) = super_frame(ipv6, payload, mss, true);
        let mut records = Vec::new();
        let layout = segment(&offload, &frame, 0, 70_000, &mut records).unwrap();
        let frames = frames_of(&records, layout.stride);
        let parsed: Vec<(&[u8], TcpSegment)> = frames
            .iter()
            .map(|f| (f.as_slice(), TcpSegment::parse(f).expect("a segment")))
            .collect();
        for pair in parsed.windows(2) {
            let merged_so_far = 0;
            assert!(continues(
                pair[0].0,
                &pair[0].1,
                pair[1].0,
                &pair[1].1,
                merged_so_far
            ));
        }
        let mut merged = Vec::new();
        let back = merge(&parsed, &mut merged);
        // Into a caller's buffer: the same frame; a buffer one byte short is refused.
        let mut buffer = vec![0u8; merged.len() + 7];
        let (len, into) = merge_into(&parsed, &mut buffer).expect("fits");
        assert_eq!((&buffer[..len], into), (&merged[..], back));
        assert_eq!(merge_into(&parsed, &mut buffer[..merged.len() - 1]), None);
        assert_eq!(merge_into(&[], &mut buffer), None);
        // Split anywhere, merged in two steps (as two receives bring a super-frame): the
        // first part merged, then the rest appended, is the same frame. The rest is
        // checked against a copy of the first part's last headers only.
        for split in 1..parsed.len() {
            let (head, rest) = parsed.split_at(split);
            let (last_frame, last) = head[head.len() - 1];
            let last_header = last_frame[..last.header_len()].to_vec();
            let so_far: usize = head.iter().map(|(_, s)| s.payload_len()).sum();
            assert!(continues(
                &last_header,
                &last,
                rest[0].0,
                &rest[0].1,
                so_far
            ));
            let mut buffer = vec![0u8; merged.len()];
            let (len, _) = merge_into(head, &mut buffer).expect("fits");
            let (len, offload) = append_into(&mut buffer, len, &head[0].1, rest).expect("fits");
            assert_eq!((&buffer[..len], offload), (&merged[..], back));
            // No room: refused.
            let (len, _) = merge_into(head, &mut buffer).expect("fits");
            assert_eq!(
                append_into(&mut buffer[..merged.len() - 1], len, &head[0].1, rest),
                None
            );
        }
        assert_eq!(
            back.segment_size,
            if frames.len() > 1 {
                mss
            } else {
                payload.len() as u16
            }
        );
        complete_checksum(&mut merged, usize::from(back.csum_start), 16).unwrap();
        let sliced = SlicedPacket::from_ethernet(&merged).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP")
        };
        assert_eq!(tcp.payload(), payload);
        assert_eq!(tcp.sequence_number(), 0xffff_f000);
        assert!(tcp.psh());
        // Completed, the merged frame is the super-frame etherparse built (with its full
        // checksum), byte for byte.
        let original = frame;
        assert_eq!(merged.len(), original.len());
        let differs = merged.iter().zip(&original).position(|(a, b)| a != b);
        assert_eq!(
            differs, None,
            "merged frame differs from the super-frame (first differing byte)"
        );
    }

    /// Recomputes the TCP checksum of a frame whose headers a test changed.
    fn refresh_tcp_checksum(frame: &mut [u8], l4: usize) {
        let src: [u8; 4] = frame[26..30].try_into().unwrap();
        let dst: [u8; 4] = frame[30..34].try_into().unwrap();
        let len = (frame.len() - l4) as u16;
        let pseudo = checksum::pseudo_header_v4(src, dst, PROTO_TCP, len);
        frame[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        complete_checksum(frame, l4, 16).unwrap();
    }

    #[test]
    fn segments_merge_back_into_the_super_frame() {
        round_trip(false, &vec![7u8; 64_000], 1398);
        round_trip(true, &vec![9u8; 30_001], 1378);
        round_trip(false, b"tiny", 1398);
    }

    #[test]
    fn a_gap_a_different_flow_or_a_bad_checksum_stops_the_run() {
        let frames = segments_of(4000, 1000, false);
        let parse = |f: &[u8]| TcpSegment::parse(f).unwrap();
        let (a, b, c) = (&frames[0], &frames[1], &frames[2]);
        assert!(continues(a, &parse(a), b, &parse(b), 0));
        assert!(!continues(a, &parse(a), c, &parse(c), 0), "a gap");
        let mut other_port = b.clone();
        other_port[34 + 1] ^= 1;
        refresh_tcp_checksum(&mut other_port, 34);
        assert!(
            !continues(a, &parse(a), &other_port, &parse(&other_port), 0),
            "another flow"
        );
        let mut corrupt = b.clone();
        corrupt[60] ^= 0xff;
        assert_eq!(
            TcpSegment::parse(&corrupt),
            None,
            "a corrupt segment never merges"
        );
        let mut syn = a.clone();
        syn[34 + 13] |= SYN;
        refresh_tcp_checksum(&mut syn, 34);
        assert_eq!(TcpSegment::parse(&syn), None);
    }

    #[test]
    fn a_run_is_open_ended_without_psh_while_a_segment_fits() {
        let frames = segments_of(3000, 1000, true);
        let first = TcpSegment::parse(&frames[0]).unwrap();
        let last = TcpSegment::parse(&frames[2]).unwrap();
        assert!(open_ended(&first, 1000));
        assert!(!open_ended(&last, 3000), "PSH ends the super-frame");
        // IPv4 + TCP headers are 40 bytes here: 64 000 + 1000 more still fit, 64 500 do not.
        assert!(open_ended(&first, 64_000));
        assert!(!open_ended(&first, 64_500));
    }

    proptest! {
        #[test]
        fn merging_inverts_segmenting(len in 1usize..66_000, mss in 536u16..1460, ipv6 in any::<bool>()) {
            round_trip(ipv6, &vec![0x5a; len.min(65_000)], mss);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = TcpSegment::parse(&bytes);
        }
    }
}
