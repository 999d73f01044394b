//! ICMP for IPv4 (RFC 792): the message view, and the one builder of ICMP errors.
//!
//! ```text
//!  0        8        16                 31
//! +--------+--------+-------------------+
//! |  type  |  code  |     checksum      |
//! +--------+--------+-------------------+
//! |   rest of header (ident + seq,      |
//! |   next-hop MTU, unused...)          |
//! +-------------------------------------+
//! |   data ...                          |
//! ```
//!
//! # Contract
//!
//! [`Icmpv4Packet::new_checked`] checks only that the 8-byte header is there; the
//! checksum is the caller's to verify ([`Icmpv4Packet::verify_checksum`]).
//!
//! [`Icmpv4Error::emit`] is the only place switchyard builds an ICMP error, and
//! [`may_answer`] the only rule for when it may: RFC 1812 §4.3.2.7. No error is sent
//! about (a) an ICMP error message (destination unreachable, source quench, redirect,
//! time exceeded, parameter problem; an ICMP packet too short to show its type counts as
//! one), (b) a fragment other than the first, (c) a packet to the limited broadcast or a
//! multicast address, or sent to a link-layer broadcast or multicast address when the
//! caller knows it, (d) a packet whose source is not a unicast host address (0.0.0.0,
//! 127/8, 224/4, 240/4, 255.255.255.255). Every error quotes the offending packet's header
//! and at least the first 8 bytes of its payload (RFC 792; RFC 1812 §4.3.2.3 allows more,
//! up to 576 bytes in all).

use std::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{IpProtocol, MacAddr, WireError};

/// Byte ranges of the header's fields.
pub mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// The four bytes after the checksum, whose meaning depends on the type.
    pub const REST: Range<usize> = 4..8;
    /// Echo request and reply: identifier and sequence number.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// Destination unreachable, fragmentation needed: the next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = 8;
/// TTL of the ICMP errors [`Icmpv4Error::emit`] builds.
pub const ERROR_TTL: u8 = 64;
/// The largest ICMP error RFC 1812 §4.3.2.3 allows, IP header included.
pub const MAX_ERROR_LEN: usize = 576;

/// An ICMP message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmpv4Type(pub u8);

impl Icmpv4Type {
    pub const ECHO_REPLY: Icmpv4Type = Icmpv4Type(0);
    pub const DEST_UNREACHABLE: Icmpv4Type = Icmpv4Type(3);
    pub const SOURCE_QUENCH: Icmpv4Type = Icmpv4Type(4);
    pub const REDIRECT: Icmpv4Type = Icmpv4Type(5);
    pub const ECHO_REQUEST: Icmpv4Type = Icmpv4Type(8);
    pub const TIME_EXCEEDED: Icmpv4Type = Icmpv4Type(11);
    pub const PARAM_PROBLEM: Icmpv4Type = Icmpv4Type(12);
    pub const TIMESTAMP: Icmpv4Type = Icmpv4Type(13);
    pub const TIMESTAMP_REPLY: Icmpv4Type = Icmpv4Type(14);

    /// One of RFC 1812's ICMP error messages (§4.3.2.7): destination unreachable, source
    /// quench, redirect, time exceeded, parameter problem.
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

impl fmt::Debug for Icmpv4Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ICMP type {}", self.0)
    }
}

/// Codes of destination unreachable (type 3).
pub mod unreachable {
    /// Fragmentation needed and DF set (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
}

/// Codes of time exceeded (type 11).
pub mod time_exceeded {
    /// TTL exceeded in transit.
    pub const TTL_EXPIRED: u8 = 0;
}

/// A view of an ICMP message (header and data).
#[derive(Clone, Copy)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "ICMP header",
                needed: HEADER_LEN,
                got,
            });
        }
        Ok(Icmpv4Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    fn read_u16(&self, range: std::ops::Range<usize>) -> u16 {
        // Every field is inside the 8 bytes new_checked guarantees.
        self.bytes()
            .get(range)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type(self.bytes().get(field::TYPE).copied().unwrap_or_default())
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.bytes().get(field::CODE).copied().unwrap_or_default()
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The four bytes after the checksum.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let mut rest = [0; 4];
        if let Some(bytes) = self.bytes().get(field::REST) {
            rest.copy_from_slice(bytes);
        }
        rest
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQ)
    }

    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.read_u16(field::NEXT_HOP_MTU)
    }

    /// Everything after the header: echo data, or the quote of an error.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.bytes().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Whether the checksum over the whole message is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.bytes()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, msg_type: Icmpv4Type) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::TYPE) {
            *byte = msg_type.0;
        }
    }

    #[inline]
    pub fn set_code(&mut self, code: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::CODE) {
            *byte = code;
        }
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        if let Some(bytes) = self.buffer.as_mut().get_mut(field::CHECKSUM) {
            bytes.copy_from_slice(&checksum.to_be_bytes());
        }
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, rest: [u8; 4]) {
        if let Some(bytes) = self.buffer.as_mut().get_mut(field::REST) {
            bytes.copy_from_slice(&rest);
        }
    }

    /// Computes the checksum over the whole message and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.bytes());
        self.set_checksum(sum);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or_default()
    }
}

/// Why no ICMP error may be sent about a packet (RFC 1812 §4.3.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unanswerable {
    #[error("the packet is an ICMP error message (or too short to tell)")]
    IcmpError,
    #[error("the packet is a fragment other than the first")]
    LaterFragment,
    #[error("the packet was sent to a broadcast or multicast address")]
    NotUnicastDestination,
    #[error("the packet's source is not a unicast host address")]
    NotUnicastSource,
}

/// Whether an ICMP error may be sent about `offending`: the one rule, RFC 1812 §4.3.2.7,
/// as the module documentation lists it. `link_dst` is the Ethernet destination the
/// packet arrived with, when there was one (not for packets from a TUN).
pub fn may_answer<T: AsRef<[u8]>>(
    offending: &Ipv4Packet<T>,
    link_dst: Option<MacAddr>,
) -> Result<(), Unanswerable> {
    if offending.frag_offset() != 0 {
        return Err(Unanswerable::LaterFragment);
    }
    if offending.protocol() == IpProtocol::ICMP {
        match offending.payload().first() {
            Some(&msg_type) if !Icmpv4Type(msg_type).is_error() => {}
            _ => return Err(Unanswerable::IcmpError),
        }
    }
    let dst = offending.dst_addr();
    if dst.is_broadcast() || dst.is_multicast() || link_dst.is_some_and(MacAddr::is_multicast) {
        return Err(Unanswerable::NotUnicastDestination);
    }
    if !ipv4::is_unicast_host(offending.src_addr()) {
        return Err(Unanswerable::NotUnicastSource);
    }
    Ok(())
}

/// How much of the offending packet an ICMP error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quote {
    /// Its header and the first 8 bytes of its payload (RFC 792).
    Minimal,
    /// As much as fits in an error of this many bytes, IP header included (RFC 1812
    /// §4.3.2.3: [`MAX_ERROR_LEN`]), but never less than [`Quote::Minimal`].
    UpTo(usize),
}

/// An ICMP error to build: what it says and where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Error {
    pub msg_type: Icmpv4Type,
    pub code: u8,
    /// The four bytes after the checksum: zero for time exceeded, the next-hop MTU in the
    /// last two for fragmentation needed.
    pub rest: [u8; 4],
    /// The reply's source address.
    pub src: Ipv4Addr,
    /// The reply's destination address: normally the offending packet's source.
    pub dst: Ipv4Addr,
    pub quote: Quote,
}

impl Icmpv4Error {
    /// Fragmentation needed (type 3, code 4) with the next-hop MTU `mtu` (RFC 1191).
    pub const fn frag_needed(src: Ipv4Addr, dst: Ipv4Addr, mtu: u16, quote: Quote) -> Self {
        let mtu = mtu.to_be_bytes();
        Icmpv4Error {
            msg_type: Icmpv4Type::DEST_UNREACHABLE,
            code: unreachable::FRAG_NEEDED,
            rest: [0, 0, mtu[0], mtu[1]],
            src,
            dst,
            quote,
        }
    }

    /// Time exceeded in transit (type 11, code 0).
    pub const fn ttl_expired(src: Ipv4Addr, dst: Ipv4Addr, quote: Quote) -> Self {
        Icmpv4Error {
            msg_type: Icmpv4Type::TIME_EXCEEDED,
            code: time_exceeded::TTL_EXPIRED,
            rest: [0; 4],
            src,
            dst,
            quote,
        }
    }

    /// The bytes of `offending` the error quotes: its packet (padding excluded) cut as
    /// [`Icmpv4Error::quote`] says.
    pub fn quoted<'a, T: AsRef<[u8]>>(&self, offending: &'a Ipv4Packet<T>) -> &'a [u8] {
        let packet = offending.packet();
        let minimal = (offending.header_len() + 8).min(packet.len());
        let len = match self.quote {
            Quote::Minimal => minimal,
            Quote::UpTo(max) => {
                let room = max
                    .min(ipv4::MAX_PACKET_LEN)
                    .saturating_sub(ipv4::HEADER_LEN + HEADER_LEN);
                room.max(minimal).min(packet.len())
            }
        };
        &packet[..len]
    }

    /// Appends to `out` the IPv4 packet carrying this error about `offending` (which should
    /// have passed [`Ipv4Packet::new_checked`]), if [`may_answer`] allows one, and returns
    /// its length. The packet has no options, identification 0, DF clear (an error must be
    /// able to reach the sender whatever the path) and TTL [`ERROR_TTL`].
    pub fn emit<T: AsRef<[u8]>>(
        &self,
        offending: &Ipv4Packet<T>,
        link_dst: Option<MacAddr>,
        out: &mut Vec<u8>,
    ) -> Result<usize, Unanswerable> {
        may_answer(offending, link_dst)?;
        let quote = self.quoted(offending);
        let repr = Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol: IpProtocol::ICMP,
            payload_len: HEADER_LEN + quote.len(),
            ttl: ERROR_TTL,
            dont_frag: false,
        };
        let start = out.len();
        let total = ipv4::HEADER_LEN + repr.payload_len;
        out.resize(start + ipv4::HEADER_LEN, 0);
        // Cannot fail: the room is there and the quote was cut to fit in 65535 bytes.
        let emitted = repr.emit(&mut out[start..]);
        debug_assert!(emitted.is_ok());
        let icmp_at = out.len();
        out.extend_from_slice(&[self.msg_type.0, self.code, 0, 0]);
        out.extend_from_slice(&self.rest);
        out.extend_from_slice(quote);
        let sum = checksum::checksum(&out[icmp_at..]);
        out[icmp_at + field::CHECKSUM.start..icmp_at + field::CHECKSUM.end]
            .copy_from_slice(&sum.to_be_bytes());
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo request, ident 0x1234, seq 7, data "hi".
    const ECHO: [u8; 10] = [0x08, 0x00, 0x7d, 0x5b, 0x12, 0x34, 0x00, 0x07, b'h', b'i'];

    /// 10.0.0.1 → 10.0.0.2, UDP 1234 → 53 carrying "abcdefgh", TTL 1.
    fn udp_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut packet = vec![
            0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0x01, 0x11, 0x00, 0x00, //
        ];
        packet.extend_from_slice(&src);
        packet.extend_from_slice(&dst);
        packet.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00]);
        packet.extend_from_slice(b"abcdefgh");
        Ipv4Packet::new_checked(&mut packet[..])
            .unwrap()
            .fill_checksum();
        packet
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn reads_a_literal_echo_request() {
        let icmp = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.code()),
            (Icmpv4Type::ECHO_REQUEST, 0)
        );
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 7));
        assert_eq!(icmp.rest_of_header(), [0x12, 0x34, 0x00, 0x07]);
        assert_eq!(icmp.data(), b"hi");
        assert_eq!(icmp.checksum(), 0x7d5b);
        assert!(icmp.verify_checksum());
        assert!(Icmpv4Packet::new_checked(&ECHO[..7]).is_err());
    }

    #[test]
    fn turns_a_request_into_a_reply() {
        let mut bytes = ECHO;
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_msg_type(Icmpv4Type::ECHO_REPLY);
        assert!(!icmp.verify_checksum());
        icmp.fill_checksum();
        assert!(icmp.verify_checksum());
        assert_eq!(
            bytes,
            [0x00, 0x00, 0x85, 0x5b, 0x12, 0x34, 0x00, 0x07, b'h', b'i']
        );
        let mut icmp = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        icmp.set_code(3);
        icmp.set_rest_of_header([0, 0, 0x05, 0xdc]);
        icmp.data_mut().copy_from_slice(b"yo");
        assert_eq!(
            (icmp.next_hop_mtu(), icmp.code(), icmp.data()),
            (1500, 3, &b"yo"[..])
        );
    }

    #[test]
    fn error_types() {
        for t in [3, 4, 5, 11, 12] {
            assert!(Icmpv4Type(t).is_error());
        }
        for t in [0, 8, 9, 10, 13, 14, 15, 16, 17, 18, 42] {
            assert!(!Icmpv4Type(t).is_error());
        }
    }

    #[test]
    fn builds_a_literal_frag_needed() {
        let offending = udp_packet([10, 0, 0, 1], [10, 0, 0, 2]);
        let view = Ipv4Packet::new_checked(&offending[..]).unwrap();
        let error = Icmpv4Error::frag_needed(ip("10.0.0.2"), ip("10.0.0.1"), 1400, Quote::Minimal);
        let mut out = vec![0xaa];
        assert_eq!(error.emit(&view, None, &mut out), Ok(56));
        assert_eq!(out.len(), 57);
        let reply = Ipv4Packet::new_checked(&out[1..]).unwrap();
        assert!(reply.verify_checksum());
        assert_eq!(
            (reply.src_addr(), reply.dst_addr()),
            (ip("10.0.0.2"), ip("10.0.0.1"))
        );
        assert_eq!(
            (reply.ttl(), reply.protocol(), reply.dont_frag()),
            (64, IpProtocol::ICMP, false)
        );
        let icmp = Icmpv4Packet::new_checked(reply.payload()).unwrap();
        assert!(icmp.verify_checksum());
        // Type 3, code 4, (checksum), unused, MTU 1400.
        assert_eq!(&reply.payload()[..2], &[3, 4]);
        assert_eq!(&reply.payload()[4..8], &[0, 0, 0x05, 0x78]);
        assert_eq!(icmp.data(), &offending[..28], "header and 8 bytes");
    }

    #[test]
    fn quotes_up_to_576_bytes() {
        let mut big = udp_packet([10, 0, 0, 1], [8, 8, 8, 8]);
        big.resize(3000, 7);
        big[2..4].copy_from_slice(&3000u16.to_be_bytes());
        Ipv4Packet::new_checked(&mut big[..])
            .unwrap()
            .fill_checksum();
        let view = Ipv4Packet::new_checked(&big[..]).unwrap();
        let error = Icmpv4Error::ttl_expired(ip("10.0.0.254"), ip("10.0.0.1"), Quote::UpTo(576));
        let mut out = Vec::new();
        assert_eq!(error.emit(&view, None, &mut out), Ok(576));
        assert_eq!(&out[28..], &big[..548]);
        // A small packet is quoted whole; padding never.
        let mut small = udp_packet([10, 0, 0, 1], [8, 8, 8, 8]);
        small.extend_from_slice(&[0; 10]);
        let view = Ipv4Packet::new_checked(&small[..]).unwrap();
        assert_eq!(error.quoted(&view), &small[..36]);
        let tiny = Icmpv4Error {
            quote: Quote::UpTo(0),
            ..error
        };
        assert_eq!(tiny.quoted(&view), &small[..28], "never less than minimal");
        let huge = Icmpv4Error {
            quote: Quote::UpTo(usize::MAX),
            ..error
        };
        assert_eq!(huge.quoted(&view), &small[..36]);
    }

    #[test]
    fn never_answers_what_rfc_1812_forbids() {
        let error = Icmpv4Error::ttl_expired(ip("10.0.0.254"), ip("10.0.0.1"), Quote::Minimal);
        let refused = |packet: &[u8], link_dst: Option<MacAddr>| {
            let view = Ipv4Packet::new_checked(packet).unwrap();
            let mut out = Vec::new();
            let verdict = error.emit(&view, link_dst, &mut out);
            assert_eq!(verdict.is_err(), out.is_empty());
            verdict.err()
        };
        let good = udp_packet([10, 0, 0, 1], [8, 8, 8, 8]);
        assert_eq!(refused(&good, None), None);
        assert_eq!(refused(&good, Some(MacAddr([2, 0, 0, 0, 0, 1]))), None);

        // (a) ICMP errors, and ICMP too short to show its type; not echo or timestamp.
        for (msg_type, expected) in [
            (3, Some(Unanswerable::IcmpError)),
            (4, Some(Unanswerable::IcmpError)),
            (5, Some(Unanswerable::IcmpError)),
            (11, Some(Unanswerable::IcmpError)),
            (12, Some(Unanswerable::IcmpError)),
            (0, None),
            (8, None),
            (13, None),
            (17, None),
        ] {
            let mut icmp = good.clone();
            icmp[9] = 1;
            icmp[20] = msg_type;
            assert_eq!(refused(&icmp, None), expected, "type {msg_type}");
        }
        let mut empty_icmp = good[..20].to_vec();
        empty_icmp[2..4].copy_from_slice(&20u16.to_be_bytes());
        empty_icmp[9] = 1;
        assert_eq!(refused(&empty_icmp, None), Some(Unanswerable::IcmpError));

        // (b) Later fragments; the first fragment is answered.
        let mut later = good.clone();
        later[6..8].copy_from_slice(&[0x00, 0x01]);
        assert_eq!(refused(&later, None), Some(Unanswerable::LaterFragment));
        let mut first = good.clone();
        first[6] = 0x20;
        assert_eq!(refused(&first, None), None);

        // (c) Broadcast and multicast destinations, at either layer.
        for dst in [[255, 255, 255, 255], [224, 0, 0, 1], [239, 255, 255, 250]] {
            let packet = udp_packet([10, 0, 0, 1], dst);
            assert_eq!(
                refused(&packet, None),
                Some(Unanswerable::NotUnicastDestination)
            );
        }
        for mac in [MacAddr::BROADCAST, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])] {
            assert_eq!(
                refused(&good, Some(mac)),
                Some(Unanswerable::NotUnicastDestination)
            );
        }

        // (d) Sources that are not unicast hosts.
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [240, 0, 0, 1],
            [255; 4],
        ] {
            let packet = udp_packet(src, [8, 8, 8, 8]);
            assert_eq!(
                refused(&packet, None),
                Some(Unanswerable::NotUnicastSource),
                "{src:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            max in 0usize..700,
        ) {
            if let Ok(icmp) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (icmp.msg_type(), icmp.rest_of_header(), icmp.data(), icmp.verify_checksum());
            }
            if let Ok(ip) = Ipv4Packet::new_fixed_header(&bytes[..]) {
                let error = Icmpv4Error::ttl_expired(ip.dst_addr(), ip.src_addr(), Quote::UpTo(max));
                let mut out = Vec::new();
                if let Ok(len) = error.emit(&ip, None, &mut out) {
                    proptest::prop_assert_eq!(len, out.len());
                    let reply = Ipv4Packet::new_checked(&out[..]).unwrap();
                    proptest::prop_assert!(reply.verify_checksum());
                    proptest::prop_assert!(Icmpv4Packet::new_checked(reply.payload()).unwrap().verify_checksum());
                }
            }
        }
    }
}
