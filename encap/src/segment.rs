//! TCP and UDP segmentation of the super-frames a TAP hands over with offloads on.
//!
//! A TAP opened with `IFF_VNET_HDR` and TSO/USO enabled gives switchd frames of up to
//! 64 KiB with a `virtio_net_hdr` saying how they must be cut ([`Offload`]), and with a
//! *partial* transport checksum (only the pseudo-header sum is in the checksum field).
//! Before such a frame goes into a VXLAN tunnel it must become ordinary packets: that is
//! [`segment`], which does in software what the kernel's `tcp_gso_segment` and
//! `__udp_gso_segment` do, and [`complete_checksum`] for frames that only lack a checksum.
//!
//! The output of [`segment`] is a run of records, each `prefix_len` zero bytes (room for
//! the VXLAN header) followed by one complete Ethernet frame:
//!
//! ```text
//! |<-------- stride -------->|<-------- stride -------->|<---- last_len ---->|
//! | prefix | eth ip tcp data | prefix | eth ip tcp data | prefix | eth ip tcp d |
//! ```
//!
//! Every record but the last is `stride` bytes, so the buffer can go to the kernel in one
//! `sendmsg` with `UDP_SEGMENT = stride` (at most `UDP_MAX_SEGMENTS` records at a time), or
//! one datagram per [`Layout::records`] item.
//!
//! What is checked: an untagged Ethernet II header; IPv4 (options allowed; no fragments)
//! or IPv6 (no extension headers); TCP or UDP as the offload says; every length field
//! agreeing with the frame; the partial-checksum offsets pointing at the transport
//! checksum. Anything else is a [`SegmentError`], before a byte is written.
//!
//! What every segment gets, as in Linux: a copy of the Ethernet, IP and transport headers;
//! IPv4 total length, ID (the super-frame's plus the segment's index, wrapping) and header
//! checksum; IPv6 payload length; TCP sequence number advanced by the payload offset, FIN
//! and PSH on the last segment only, CWR on the first only; UDP length; and a transport
//! checksum computed in full (the value in the super-frame's checksum field is not used),
//! with a UDP checksum of 0 sent as 0xffff.

use std::ops::Range;

use switchyard_wire::ipv4::{self, Ipv4Packet};
use switchyard_wire::ipv6::{self, Ipv6Packet};
use switchyard_wire::tcp::{self, TcpFlags, TcpPacket};
use switchyard_wire::udp::{self, UdpPacket};
use switchyard_wire::vnet as virtio;
use switchyard_wire::{checksum, EtherType, EthernetFrame, IpProtocol};

/// Frames are untagged: the IP header starts right after the Ethernet header.
const ETH_LEN: usize = switchyard_wire::HEADER_LEN;

/// What a super-frame is to be cut into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// An ordinary frame, sent as it is (its checksum completed if it needs one).
    #[default]
    None,
    /// TCP over IPv4, cut every `segment_size` payload bytes (`VIRTIO_NET_HDR_GSO_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    TcpV6,
    /// UDP over IPv4 or IPv6, one datagram per `segment_size` payload bytes
    /// (`VIRTIO_NET_HDR_GSO_UDP_L4`, the kernel's `UDP_SEGMENT`; not the legacy UFO).
    Udp,
}

impl GsoKind {
    /// A short name for messages: `"TCPv4"`, `"TCPv6"`, `"UDP"`, `"plain"`.
    pub const fn name(self) -> &'static str {
        match self {
            GsoKind::None => "plain",
            GsoKind::TcpV4 => "TCPv4",
            GsoKind::TcpV6 => "TCPv6",
            GsoKind::Udp => "UDP",
        }
    }

    const fn protocol(self) -> &'static str {
        match self {
            GsoKind::None => "plain",
            GsoKind::TcpV4 | GsoKind::TcpV6 => "TCP",
            GsoKind::Udp => "UDP",
        }
    }
}

/// The offload state of one frame, as the `virtio_net_hdr` in front of it describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Offload {
    pub kind: GsoKind,
    /// The TCP stream uses ECN (`VIRTIO_NET_HDR_GSO_ECN`): CWR goes on the first segment
    /// only. (Linux clears CWR after the first segment whether or not this is set, and so
    /// does [`segment`]; the flag is kept for what it tells.)
    pub ecn: bool,
    /// Payload bytes per segment (the MSS for TCP); ignored for [`GsoKind::None`].
    pub segment_size: u16,
    /// The transport checksum is partial: the field at `csum_start + csum_offset` holds
    /// the pseudo-header sum, and the checksum over `csum_start..` is still to be done.
    pub needs_csum: bool,
    /// Where checksumming starts, counted from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Where the checksum field is, counted from `csum_start`.
    pub csum_offset: u16,
}

impl Offload {
    /// A frame with nothing left to do.
    pub const NONE: Offload = Offload {
        kind: GsoKind::None,
        ecn: false,
        segment_size: 0,
        needs_csum: false,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the fields of a `virtio_net_hdr` (already converted to host byte order).
    ///
    /// Refuses, as Linux's `virtio_net_hdr_to_skb` does, GSO types other than TCPv4, TCPv6
    /// and UDP_L4 (the legacy UFO type 3 included), the ECN bit on anything but TCP, and a
    /// GSO frame with a segment size of 0. Flags other than `NEEDS_CSUM` (`DATA_VALID`...)
    /// are ignored; `hdr_len` is not needed, [`segment`] finds the headers itself. Unlike
    /// Linux it accepts UDP_L4 without `NEEDS_CSUM`: [`segment`] computes every checksum in
    /// full whatever the checksum field holds.
    pub fn from_virtio(
        flags: u8,
        gso_type: u8,
        gso_size: u16,
        csum_start: u16,
        csum_offset: u16,
    ) -> Result<Offload, SegmentError> {
        let ecn = gso_type & virtio::GSO_ECN != 0;
        let kind = match gso_type & !virtio::GSO_ECN {
            virtio::GSO_NONE if !ecn => GsoKind::None,
            virtio::GSO_TCPV4 => GsoKind::TcpV4,
            virtio::GSO_TCPV6 => GsoKind::TcpV6,
            virtio::GSO_UDP_L4 if !ecn => GsoKind::Udp,
            _ => return Err(SegmentError::UnsupportedGsoType(gso_type)),
        };
        if kind != GsoKind::None && gso_size == 0 {
            return Err(SegmentError::ZeroSegmentSize(kind.protocol()));
        }
        Ok(Offload {
            kind,
            ecn,
            segment_size: gso_size,
            needs_csum: flags & virtio::F_NEEDS_CSUM != 0,
            csum_start,
            csum_offset,
        })
    }
}

/// Where the records are in the buffer [`segment`] filled.
///
/// `out.len() == stride * (count - 1) + last_len`, and `count >= 1`. With one record,
/// `stride == last_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Number of records (frames).
    pub count: usize,
    /// Length of every record but the last: the prefix plus a full-size segment frame.
    pub stride: usize,
    /// Length of the last record, at most `stride`.
    pub last_len: usize,
}

impl Layout {
    /// The length of the buffer the layout describes.
    pub const fn total_len(&self) -> usize {
        self.stride
            .saturating_mul(self.count.saturating_sub(1))
            .saturating_add(self.last_len)
    }

    /// The records of `out` (prefix plus frame each), in order.
    pub fn records<'a>(&self, out: &'a [u8]) -> std::slice::Chunks<'a, u8> {
        let end = self.total_len().min(out.len());
        out[..end].chunks(self.stride.max(1))
    }
}

/// Why a frame could not be segmented or checksummed. Nothing was written to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error(
        "virtio gso_type {0:#04x} is not supported (only TCPv4, TCPv6 and UDP_L4, ECN on TCP only)"
    )]
    UnsupportedGsoType(u8),
    #[error("{0} super-frame: segment size 0")]
    ZeroSegmentSize(&'static str),
    #[error("the ECN flag is set on a UDP super-frame")]
    EcnOnUdp,
    #[error("frame of {got} bytes is too short for the {layer} (needs {needed})")]
    Truncated {
        layer: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("EtherType {0:#06x} is neither IPv4 nor IPv6 (frames must be untagged)")]
    EtherType(u16),
    #[error("IP version {version} under EtherType {ethertype:#06x}")]
    IpVersion { version: u8, ethertype: u16 },
    #[error("IPv4 header length {0} is less than 20 bytes")]
    Ipv4HeaderLen(usize),
    #[error("IPv4 total length {total} does not match the frame ({available} bytes after the Ethernet header)")]
    Ipv4TotalLen { total: usize, available: usize },
    #[error("IPv4 header of {header} bytes does not fit in total length {total}")]
    Ipv4HeaderPastTotal { header: usize, total: usize },
    #[error("IPv4 fragment (offset {offset}, more fragments: {more}) cannot be segmented")]
    Ipv4Fragment { offset: u16, more: bool },
    #[error("IPv6 payload length {payload} does not match the frame ({available} bytes after the IPv6 header)")]
    Ipv6PayloadLen { payload: usize, available: usize },
    #[error("IPv6 next header {0} is not TCP or UDP (extension headers are not supported)")]
    Ipv6NextHeader(u8),
    #[error("{kind} super-frame carries {ip}")]
    WrongIpVersion {
        kind: &'static str,
        ip: &'static str,
    },
    #[error("{kind} super-frame carries IP protocol {protocol}")]
    WrongProtocol { kind: &'static str, protocol: u8 },
    #[error("TCP data offset of {0} bytes is less than 20")]
    TcpHeaderLen(usize),
    #[error("UDP length {udp} does not match the IP payload ({available} bytes)")]
    UdpLen { udp: usize, available: usize },
    #[error("checksum field at {start} + {offset} is outside the {len}-byte frame")]
    ChecksumOutOfFrame {
        start: usize,
        offset: usize,
        len: usize,
    },
    #[error("checksum offset {0} is odd: the field would straddle two 16-bit words")]
    OddChecksumOffset(usize),
    #[error("checksum start {start} is not the transport header (at {expected})")]
    ChecksumStart { start: usize, expected: usize },
    #[error("checksum offset {got} is not the {protocol} checksum field ({expected})")]
    ChecksumOffset {
        protocol: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("a segment frame of {needed} bytes exceeds the limit of {limit}")]
    TooBig { needed: usize, limit: usize },
    #[error("the output of {bytes} bytes cannot be allocated")]
    OutOfMemory { bytes: usize },
}

/// Completes a partial checksum in place: sums `frame[csum_start..]` (whose checksum field
/// holds the pseudo-header sum), and stores the complement at `csum_start + csum_offset`,
/// as Linux's `skb_checksum_help` does (a result of 0 is stored as 0xffff, which TCP reads
/// the same and UDP needs).
///
/// Protocol-agnostic: only the offsets are checked. The field must lie inside the frame
/// and at an even distance from `csum_start`.
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), SegmentError> {
    let field = checksum_field(frame.len(), csum_start, csum_offset)?;
    let value = match !checksum::sum(&frame[csum_start..]) {
        0 => 0xffff,
        value => value,
    };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// Where the checksum field is, after checking that it is in the frame.
fn checksum_field(len: usize, start: usize, offset: usize) -> Result<usize, SegmentError> {
    let out_of_frame = SegmentError::ChecksumOutOfFrame { start, offset, len };
    let field = start.checked_add(offset).ok_or(out_of_frame)?;
    if field.checked_add(2).is_none_or(|end| end > len) {
        return Err(out_of_frame);
    }
    if offset % 2 == 1 {
        return Err(SegmentError::OddChecksumOffset(offset));
    }
    Ok(field)
}

/// Cuts `frame` as `offload` says into records of `prefix_len` zero bytes plus one frame
/// each, written to `out` (cleared first), and returns where they are.
///
/// `frame` is an untagged Ethernet II frame. No resulting frame (without its prefix) may
/// be longer than `max_frame_len`: otherwise [`SegmentError::TooBig`] says how long the
/// longest would be, so the caller can answer with ICMP "fragmentation needed" / "packet
/// too big". A GSO frame whose payload fits in one segment gives one record.
///
/// On error `out` is left empty. The only allocation is `out` growing, once.
pub fn segment(
    offload: &Offload,
    frame: &[u8],
    prefix_len: usize,
    max_frame_len: usize,
    out: &mut Vec<u8>,
) -> Result<Layout, SegmentError> {
    out.clear();
    if frame.len() < ETH_LEN {
        return Err(SegmentError::Truncated {
            layer: "Ethernet header",
            needed: ETH_LEN,
            got: frame.len(),
        });
    }
    if offload.kind == GsoKind::None {
        return copy_one(offload, frame, prefix_len, max_frame_len, out);
    }

    let headers = Headers::parse(offload, frame)?;
    let mss = usize::from(offload.segment_size);
    let payload_len = frame.len() - headers.len;
    let count = payload_len.div_ceil(mss).max(1);
    let longest = headers.len + payload_len.min(mss);
    if longest > max_frame_len {
        return Err(SegmentError::TooBig {
            needed: longest,
            limit: max_frame_len,
        });
    }
    let stride = prefix_len
        .checked_add(longest)
        .ok_or(SegmentError::OutOfMemory { bytes: usize::MAX })?;
    let last_len = prefix_len + headers.len + (payload_len - (count - 1) * mss);
    let total = stride
        .checked_mul(count - 1)
        .and_then(|n| n.checked_add(last_len))
        .ok_or(SegmentError::OutOfMemory { bytes: usize::MAX })?;
    out.try_reserve_exact(total)
        .map_err(|_| SegmentError::OutOfMemory { bytes: total })?;

    let plan = Plan::new(headers, frame, prefix_len);
    for index in 0..count {
        let offset = index * mss;
        let end = payload_len.min(offset + mss);
        plan.write(out, index, offset..end, index + 1 == count);
    }
    debug_assert_eq!(out.len(), total);
    Ok(Layout {
        count,
        stride: if count == 1 { last_len } else { stride },
        last_len,
    })
}

/// [`GsoKind::None`]: one record, the frame with its checksum completed if it needs one.
fn copy_one(
    offload: &Offload,
    frame: &[u8],
    prefix_len: usize,
    max_frame_len: usize,
    out: &mut Vec<u8>,
) -> Result<Layout, SegmentError> {
    let start = usize::from(offload.csum_start);
    let offset = usize::from(offload.csum_offset);
    if offload.needs_csum {
        checksum_field(frame.len(), start, offset)?;
    }
    if frame.len() > max_frame_len {
        return Err(SegmentError::TooBig {
            needed: frame.len(),
            limit: max_frame_len,
        });
    }
    let total = prefix_len
        .checked_add(frame.len())
        .ok_or(SegmentError::OutOfMemory { bytes: usize::MAX })?;
    out.try_reserve_exact(total)
        .map_err(|_| SegmentError::OutOfMemory { bytes: total })?;
    out.resize(prefix_len, 0);
    out.extend_from_slice(frame);
    if offload.needs_csum {
        complete_checksum(&mut out[prefix_len..], start, offset)?;
    }
    Ok(Layout {
        count: 1,
        stride: total,
        last_len: total,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// The validated header layout of a super-frame. Offsets count from the frame's start.
#[derive(Debug)]
struct Headers {
    ipv4: bool,
    transport: Transport,
    /// Start of the transport header.
    l4: usize,
    /// Length of all headers: the payload starts here.
    len: usize,
}

/// The frame is shorter than the `layer` that ends at `needed`.
fn truncated(frame: &[u8], layer: &'static str, needed: usize) -> SegmentError {
    SegmentError::Truncated {
        layer,
        needed,
        got: frame.len(),
    }
}

impl Headers {
    fn parse(offload: &Offload, frame: &[u8]) -> Result<Headers, SegmentError> {
        let kind = offload.kind;
        if offload.segment_size == 0 {
            return Err(SegmentError::ZeroSegmentSize(kind.protocol()));
        }
        if offload.ecn && kind == GsoKind::Udp {
            return Err(SegmentError::EcnOnUdp);
        }
        let transport = match kind {
            GsoKind::Udp => Transport::Udp,
            _ => Transport::Tcp,
        };
        let wanted_proto = match transport {
            Transport::Tcp => IpProtocol::TCP,
            Transport::Udp => IpProtocol::UDP,
        };

        // The caller checked the 14 bytes of an Ethernet header; only a tagged frame too
        // short for its tag fails here, and tagged frames are refused anyway.
        let ethertype =
            EthernetFrame::new_checked(frame).map_or(EtherType::VLAN, |eth| eth.ethertype());
        let ipv4 = match ethertype {
            EtherType::IPV4 => true,
            EtherType::IPV6 => false,
            other => return Err(SegmentError::EtherType(other.0)),
        };
        match (kind, ipv4) {
            (GsoKind::TcpV4, false) => {
                return Err(SegmentError::WrongIpVersion {
                    kind: kind.name(),
                    ip: "IPv6",
                })
            }
            (GsoKind::TcpV6, true) => {
                return Err(SegmentError::WrongIpVersion {
                    kind: kind.name(),
                    ip: "IPv4",
                })
            }
            _ => {}
        }

        let l3 = ETH_LEN;
        let network = frame.get(l3..).unwrap_or_default();
        let l4 = if ipv4 {
            let ip = Ipv4Packet::new_fixed_header(network)
                .map_err(|_| truncated(frame, "IPv4 header", l3 + ipv4::HEADER_LEN))?;
            let version = ip.version();
            if version != 4 {
                return Err(SegmentError::IpVersion {
                    version,
                    ethertype: ethertype.0,
                });
            }
            let header = ip.header_len();
            if header < ipv4::HEADER_LEN {
                return Err(SegmentError::Ipv4HeaderLen(header));
            }
            let (total, available) = (ip.total_len(), network.len());
            if total != available {
                return Err(SegmentError::Ipv4TotalLen { total, available });
            }
            if header > total {
                return Err(SegmentError::Ipv4HeaderPastTotal { header, total });
            }
            if ip.is_fragment() {
                return Err(SegmentError::Ipv4Fragment {
                    offset: ip.frag_offset(),
                    more: ip.more_frags(),
                });
            }
            let protocol = ip.protocol();
            if protocol != wanted_proto {
                return Err(SegmentError::WrongProtocol {
                    kind: kind.name(),
                    protocol: protocol.0,
                });
            }
            l3 + header
        } else {
            let ip = Ipv6Packet::new_fixed_header(network)
                .map_err(|_| truncated(frame, "IPv6 header", l3 + ipv6::HEADER_LEN))?;
            let version = ip.version();
            if version != 6 {
                return Err(SegmentError::IpVersion {
                    version,
                    ethertype: ethertype.0,
                });
            }
            let payload = ip.payload_len();
            let available = network.len() - ipv6::HEADER_LEN;
            if payload != available {
                return Err(SegmentError::Ipv6PayloadLen { payload, available });
            }
            let next = ip.next_header();
            if next != IpProtocol::TCP && next != IpProtocol::UDP {
                return Err(SegmentError::Ipv6NextHeader(next.0));
            }
            if next != wanted_proto {
                return Err(SegmentError::WrongProtocol {
                    kind: kind.name(),
                    protocol: next.0,
                });
            }
            l3 + ipv6::HEADER_LEN
        };

        let transport_bytes = frame.get(l4..).unwrap_or_default();
        let (len, csum_offset) = match transport {
            Transport::Tcp => {
                let tcp = TcpPacket::new_fixed_header(transport_bytes)
                    .map_err(|_| truncated(frame, "TCP header", l4 + tcp::HEADER_LEN))?;
                let header = tcp.header_len();
                if header < tcp::HEADER_LEN {
                    return Err(SegmentError::TcpHeaderLen(header));
                }
                if header > transport_bytes.len() {
                    return Err(truncated(frame, "TCP header with options", l4 + header));
                }
                (l4 + header, tcp::field::CHECKSUM.start)
            }
            Transport::Udp => {
                let udp = UdpPacket::new_checked(transport_bytes)
                    .map_err(|_| truncated(frame, "UDP header", l4 + udp::HEADER_LEN))?;
                let (udp, available) = (udp.len(), transport_bytes.len());
                if udp != available {
                    return Err(SegmentError::UdpLen { udp, available });
                }
                (l4 + udp::HEADER_LEN, udp::field::CHECKSUM.start)
            }
        };

        if offload.needs_csum {
            let start = usize::from(offload.csum_start);
            if start != l4 {
                return Err(SegmentError::ChecksumStart {
                    start,
                    expected: l4,
                });
            }
            let got = usize::from(offload.csum_offset);
            if got != csum_offset {
                return Err(SegmentError::ChecksumOffset {
                    protocol: kind.protocol(),
                    got,
                    expected: csum_offset,
                });
            }
        }
        Ok(Headers {
            ipv4,
            transport,
            l4,
            len,
        })
    }
}

/// What every segment shares, computed once per super-frame.
struct Plan<'a> {
    frame: &'a [u8],
    headers: Headers,
    prefix_len: usize,
    /// IPv4: the header's sum with total length, ID and checksum taken as zero.
    ip_sum: u16,
    /// IPv4: the super-frame's ID.
    ip_id: u16,
    /// Pseudo-header (without its length) plus the transport header, with the length,
    /// sequence number, data-offset/flags word and checksum taken as zero.
    l4_sum: u16,
    /// TCP: the super-frame's sequence number.
    seq: u32,
    /// TCP: the data-offset byte (the high half of the word it shares with the flags),
    /// and the flags.
    tcp_offset_word: u16,
    tcp_flags: TcpFlags,
}

/// `range`, a field's bytes in its header, moved to where the header starts in the frame.
const fn at(start: usize, range: Range<usize>) -> Range<usize> {
    start + range.start..start + range.end
}

impl<'a> Plan<'a> {
    fn new(headers: Headers, frame: &'a [u8], prefix_len: usize) -> Plan<'a> {
        let l3 = ETH_LEN;
        let l4 = headers.l4;
        // The sum of a header minus the 16-bit words rewritten per segment.
        let header_sum = |range: Range<usize>, varying: &[Range<usize>]| {
            varying
                .iter()
                .fold(checksum::sum(&frame[range]), |s, word| {
                    checksum::sub(s, checksum::sum(&frame[word.clone()]))
                })
        };
        let network = &frame[l3..];
        let transport = &frame[l4..];

        // Both views were built over the same bytes by Headers::parse.
        let (ip_sum, ip_id, pseudo) = if headers.ipv4 {
            use ipv4::field;
            let ip_sum = header_sum(
                l3..l4,
                &[
                    at(l3, field::LENGTH.start..field::IDENT.end),
                    at(l3, field::CHECKSUM),
                ],
            );
            Ipv4Packet::new_fixed_header(network).map_or((0, 0, 0), |ip| {
                (ip_sum, ip.ident(), ip.pseudo_header_sum(0))
            })
        } else {
            Ipv6Packet::new_fixed_header(network)
                .map_or((0, 0, 0), |ip| (0, 0, ip.pseudo_header_sum(0)))
        };

        let (l4_header, seq, tcp_offset_word, tcp_flags) = match headers.transport {
            Transport::Tcp => {
                use tcp::field;
                let sum = header_sum(
                    l4..headers.len,
                    &[
                        at(l4, field::SEQ),
                        at(l4, field::DATA_OFFSET..field::FLAGS + 1),
                        at(l4, field::CHECKSUM),
                    ],
                );
                TcpPacket::new_fixed_header(transport).map_or((0, 0, 0, TcpFlags(0)), |tcp| {
                    (
                        sum,
                        tcp.seq_number(),
                        tcp.offset_and_flags() & 0xff00,
                        tcp.flags(),
                    )
                })
            }
            Transport::Udp => (
                header_sum(
                    l4..headers.len,
                    &[at(l4, udp::field::LENGTH), at(l4, udp::field::CHECKSUM)],
                ),
                0,
                0,
                TcpFlags(0),
            ),
        };
        Plan {
            frame,
            headers,
            prefix_len,
            ip_sum,
            ip_id,
            l4_sum: checksum::add(pseudo, l4_header),
            seq,
            tcp_offset_word,
            tcp_flags,
        }
    }

    /// Appends record `index`: the prefix, the headers patched for this segment, and the
    /// super-frame's payload bytes `payload` (counted from the start of the payload).
    fn write(&self, out: &mut Vec<u8>, index: usize, payload: Range<usize>, last: bool) {
        let headers = &self.headers;
        let piece = &self.frame[headers.len + payload.start..headers.len + payload.end];
        let record = out.len();
        out.resize(record + self.prefix_len, 0);
        out.extend_from_slice(&self.frame[..headers.len]);
        out.extend_from_slice(piece);
        let seg = &mut out[record + self.prefix_len..];

        let l3 = ETH_LEN;
        let l4 = headers.l4;
        // Both fit in 16 bits: they are no longer than the super-frame's, which did.
        let l3_len = (seg.len() - l3) as u16;
        let l4_len = (seg.len() - l4) as u16;
        let (network, transport) = seg.split_at_mut(l4);
        let network = &mut network[l3..];

        // Every view below is over a copy of headers that Headers::parse checked.
        if headers.ipv4 {
            if let Ok(mut ip) = Ipv4Packet::new_fixed_header(network) {
                let id = self.ip_id.wrapping_add(index as u16);
                ip.set_total_len(l3_len);
                ip.set_ident(id);
                let ip_sum = checksum::add(checksum::add(self.ip_sum, l3_len), id);
                ip.set_checksum(!ip_sum);
            }
        } else if let Ok(mut ip) = Ipv6Packet::new_fixed_header(network) {
            // No extension headers: the IPv6 payload is the transport segment.
            ip.set_payload_len(l4_len);
        }

        let payload_sum = checksum::sum(piece);
        match headers.transport {
            Transport::Tcp => {
                let Ok(mut tcp) = TcpPacket::new_fixed_header(transport) else {
                    return;
                };
                let seq = self.seq.wrapping_add(payload.start as u32);
                let mut flags = self.tcp_flags;
                if !last {
                    flags &= !(TcpFlags::FIN | TcpFlags::PSH);
                }
                if index > 0 {
                    flags &= !TcpFlags::CWR;
                }
                tcp.set_seq_number(seq);
                tcp.set_flags(flags);
                let varying = u64::from(l4_len)
                    + u64::from(seq >> 16)
                    + u64::from(seq & 0xffff)
                    + u64::from(self.tcp_offset_word | u16::from(flags.0));
                let sum = checksum::add(
                    checksum::add(self.l4_sum, checksum::fold(varying)),
                    payload_sum,
                );
                tcp.set_checksum(!sum);
            }
            Transport::Udp => {
                let Ok(mut udp) = UdpPacket::new_checked(transport) else {
                    return;
                };
                udp.set_len(l4_len);
                // The length counts twice: in the pseudo-header and in the UDP header.
                let varying = checksum::fold(2 * u64::from(l4_len));
                let sum = checksum::add(checksum::add(self.l4_sum, varying), payload_sum);
                let check = match !sum {
                    0 => 0xffff,
                    check => check,
                };
                udp.set_checksum(check);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (10.0.0.1 → 10.0.0.2, UDP) + UDP 1234 → 5678 + "abcd", with the
    /// partial checksum a TAP hands over: the pseudo-header sum 0x1420 in the field.
    const UDP_PARTIAL: [u8; 46] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // IPv4
        10, 0, 0, 1, 10, 0, 0, 2, //
        0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0c, 0x14, 0x20, // UDP, checksum = pseudo sum
        b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn completes_a_literal_udp_checksum() {
        // 0x1420 (pseudo) + 0x04d2 + 0x162e + 0x000c + 0x6162 + 0x6364 = 0xf3f2 → 0x0c0d.
        let mut frame = UDP_PARTIAL;
        complete_checksum(&mut frame, 34, 6).unwrap();
        assert_eq!(frame[40..42], [0x0c, 0x0d]);
        assert_eq!(frame[..40], UDP_PARTIAL[..40]);
        assert_eq!(frame[42..], UDP_PARTIAL[42..]);
    }

    #[test]
    fn completes_a_literal_tcp_checksum() {
        // 20-byte TCP header, no payload; field holds the pseudo-header sum for length 20:
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20 = 0x141d.
        let mut tcp = [
            0x30, 0x39, 0x00, 0x50, // ports 12345 → 80
            0x00, 0x00, 0x00, 0x01, // seq 1
            0x00, 0x00, 0x00, 0x00, // ack 0
            0x50, 0x02, 0xff, 0xff, // data offset 5, SYN, window 65535
            0x14, 0x1d, 0x00, 0x00, // checksum (partial), urgent pointer
        ];
        complete_checksum(&mut tcp, 0, 16).unwrap();
        // 0x141d + 0x3039 + 0x0050 + 0x0001 + 0x5002 + 0xffff = 0x1_94a8 → 0x94a9 → 0x6b56.
        assert_eq!(tcp[16..18], [0x6b, 0x56]);
    }

    #[test]
    fn a_zero_checksum_is_sent_as_ffff() {
        let mut data = [0x00, 0x00, 0xff, 0xff];
        complete_checksum(&mut data, 0, 0).unwrap();
        assert_eq!(data, [0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn refuses_a_checksum_field_outside_the_frame() {
        let mut frame = UDP_PARTIAL;
        let err = complete_checksum(&mut frame, 34, 12).unwrap_err();
        assert_eq!(
            err,
            SegmentError::ChecksumOutOfFrame {
                start: 34,
                offset: 12,
                len: 46
            }
        );
        assert_eq!(
            err.to_string(),
            "checksum field at 34 + 12 is outside the 46-byte frame"
        );
        assert!(complete_checksum(&mut frame, 45, 0).is_err());
        assert!(complete_checksum(&mut frame, 47, 0).is_err());
        assert!(complete_checksum(&mut frame, usize::MAX, 2).is_err());
        assert_eq!(
            complete_checksum(&mut frame, 34, 5),
            Err(SegmentError::OddChecksumOffset(5))
        );
        assert_eq!(frame, UDP_PARTIAL);
    }

    #[test]
    fn reads_virtio_headers() {
        let tso = Offload::from_virtio(1, 0x81, 1448, 34, 16).unwrap();
        assert_eq!(
            tso,
            Offload {
                kind: GsoKind::TcpV4,
                ecn: true,
                segment_size: 1448,
                needs_csum: true,
                csum_start: 34,
                csum_offset: 16
            }
        );
        assert_eq!(
            Offload::from_virtio(3, 4, 1428, 54, 16).unwrap().kind,
            GsoKind::TcpV6
        );
        let uso = Offload::from_virtio(1, 5, 1472, 34, 6).unwrap();
        assert_eq!((uso.kind, uso.ecn), (GsoKind::Udp, false));
        let plain = Offload::from_virtio(0, 0, 0, 0, 0).unwrap();
        assert_eq!(plain, Offload::NONE);
        assert!(!Offload::from_virtio(2, 0, 0, 0, 0).unwrap().needs_csum);
    }

    #[test]
    fn refuses_what_it_cannot_segment() {
        let err = Offload::from_virtio(1, 3, 1472, 34, 6).unwrap_err();
        assert_eq!(err, SegmentError::UnsupportedGsoType(3));
        assert!(err.to_string().contains("gso_type 0x03"));
        for gso_type in [0x80, 0x85, 2, 6, 0x7f, 0xff] {
            assert!(
                Offload::from_virtio(1, gso_type, 1000, 34, 16).is_err(),
                "{gso_type:#x}"
            );
        }
        let err = Offload::from_virtio(1, 1, 0, 34, 16).unwrap_err();
        assert_eq!(err.to_string(), "TCP super-frame: segment size 0");
        let err = Offload::from_virtio(1, 5, 0, 34, 6).unwrap_err();
        assert_eq!(err.to_string(), "UDP super-frame: segment size 0");
    }

    #[test]
    fn plain_frames_are_copied_with_their_checksum_completed() {
        let offload = Offload {
            needs_csum: true,
            csum_start: 34,
            csum_offset: 6,
            ..Offload::NONE
        };
        let mut out = vec![0xaa; 3];
        let layout = segment(&offload, &UDP_PARTIAL, 8, 1500, &mut out).unwrap();
        assert_eq!(
            layout,
            Layout {
                count: 1,
                stride: 54,
                last_len: 54
            }
        );
        assert_eq!(out[..8], [0; 8]);
        let mut expected = UDP_PARTIAL;
        complete_checksum(&mut expected, 34, 6).unwrap();
        assert_eq!(out[8..], expected);
        assert_eq!(layout.records(&out).count(), 1);

        // Without NEEDS_CSUM the frame goes out untouched, whatever it is.
        let arp_like = [0xffu8; 42];
        segment(&Offload::NONE, &arp_like, 0, 1500, &mut out).unwrap();
        assert_eq!(out, arp_like);

        assert_eq!(
            segment(&Offload::NONE, &arp_like, 0, 41, &mut out),
            Err(SegmentError::TooBig {
                needed: 42,
                limit: 41
            })
        );
        assert!(out.is_empty());
        assert!(segment(&Offload::NONE, &arp_like[..13], 0, 1500, &mut out).is_err());
    }

    #[test]
    fn udp_super_frame_of_literal_bytes() {
        // The 4-byte payload cut every 3 bytes: "abc" and "d". By hand: IPv4 sums
        // 0xd934 and 0xd933 (lengths 31 and 29, IDs 1 and 2); UDP sums 0x141f + 0x1b0b +
        // 0xc462 = 0xf38c and 0x141d + 0x1b09 + 0x6400 = 0x9326.
        let offload = Offload::from_virtio(1, 5, 3, 34, 6).unwrap();
        let mut out = Vec::new();
        let layout = segment(&offload, &UDP_PARTIAL, 0, 1500, &mut out).unwrap();
        assert_eq!(
            layout,
            Layout {
                count: 2,
                stride: 45,
                last_len: 43
            }
        );
        let first: &[u8] = &[
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
            0x45, 0x00, 0x00, 0x1f, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x26, 0xcb, // IPv4
            10, 0, 0, 1, 10, 0, 0, 2, //
            0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0b, 0x0c, 0x73, // UDP
            b'a', b'b', b'c',
        ];
        let second: &[u8] = &[
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
            0x45, 0x00, 0x00, 0x1d, 0x00, 0x02, 0x40, 0x00, 0x40, 0x11, 0x26, 0xcc, // IPv4
            10, 0, 0, 1, 10, 0, 0, 2, //
            0x04, 0xd2, 0x16, 0x2e, 0x00, 0x09, 0x6c, 0xd9, // UDP
            b'd',
        ];
        let records: Vec<&[u8]> = layout.records(&out).collect();
        assert_eq!(records, [first, second]);
    }
}
