//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0        4        8                16   19                      31
//! +--------+--------+----------------+----+------------------------+
//! | version|  IHL   |   DSCP / ECN   |         total length        |
//! +--------+--------+----------------+----+------------------------+
//! |         identification           |flags|    fragment offset    |
//! +-----------------+----------------+----+------------------------+
//! |       TTL       |    protocol    |        header checksum      |
//! +-----------------+----------------+-----------------------------+
//! |                         source address                         |
//! +----------------------------------------------------------------+
//! |                       destination address                      |
//! +----------------------------------------------------------------+
//! |                    options (when IHL > 5) ...                  |
//! ```
//!
//! # Contract
//!
//! [`Ipv4Packet::new_checked`] accepts a buffer holding a well-formed header and the whole
//! packet: at least 20 bytes, version 4, IHL ≥ 5, and header length ≤ total length ≤
//! buffer length (so a total length of 0, BIG TCP beyond 64 KiB, is refused). Bytes past
//! the total length are Ethernet padding, never a reason to refuse: [`Ipv4Packet::packet`]
//! and [`Ipv4Packet::payload`] stop at the total length and [`Ipv4Packet::padding`] is the
//! rest. It checks neither the header checksum ([`Ipv4Packet::verify_checksum`]) nor
//! fragmentation ([`Ipv4Packet::is_fragment`]): those are the callers' policy.
//!
//! [`Ipv4Packet::new_fixed_header`] checks only that the 20-byte fixed header is there,
//! for callers that report which of the checks above failed, in their own order
//! ([`Ipv4Packet::check`] runs them all), or that read what they can of a malformed
//! header. Its getters never panic either: the variable-length parts (`header`, `options`,
//! `packet`, `payload`) are cut to what the buffer holds.

use std::net::Ipv4Addr;

use super::checksum;
use super::{IpProtocol, WireError};

/// Byte ranges of the fixed header's fields.
pub mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// The largest IPv4 packet the total-length field can describe.
pub const MAX_PACKET_LEN: usize = 65_535;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 packet. See the module documentation for what each constructor checks.
#[derive(Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` after checking the header and lengths (module documentation).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_fixed_header(buffer)?;
        packet.check()?;
        Ok(packet)
    }

    /// Wraps `buffer` after checking only that it holds the 20-byte fixed header.
    #[inline]
    pub fn new_fixed_header(buffer: T) -> Result<Self, WireError> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                layer: "IPv4 header",
                needed: HEADER_LEN,
                got,
            });
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The checks [`Ipv4Packet::new_checked`] adds to [`Ipv4Packet::new_fixed_header`]:
    /// version 4, IHL ≥ 5, header length ≤ total length ≤ buffer length.
    pub fn check(&self) -> Result<(), WireError> {
        let malformed = |reason| WireError::Malformed {
            layer: "IPv4",
            reason,
        };
        if self.version() != 4 {
            return Err(malformed("version is not 4"));
        }
        let (header_len, total_len) = (self.header_len(), self.total_len());
        if header_len < HEADER_LEN {
            return Err(malformed("header length below 20 bytes"));
        }
        if header_len > total_len {
            return Err(malformed("header longer than the total length"));
        }
        let got = self.bytes().len();
        if total_len > got {
            return Err(WireError::Truncated {
                layer: "IPv4 packet",
                needed: total_len,
                got,
            });
        }
        Ok(())
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
        // Every fixed field is inside the 20 bytes both constructors guarantee.
        self.bytes()
            .get(range)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    fn read_u8(&self, at: usize) -> u8 {
        self.bytes().get(at).copied().unwrap_or_default()
    }

    #[inline]
    fn read_addr(&self, range: std::ops::Range<usize>) -> Ipv4Addr {
        match self.bytes().get(range) {
            Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.read_u8(field::VER_IHL) >> 4
    }

    /// Length of the header, options included: IHL × 4.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.read_u8(field::VER_IHL) & 0x0f) * 4
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.read_u8(field::DSCP_ECN)
    }

    /// The total-length field: header plus payload, padding not included.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(self.read_u16(field::LENGTH))
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// The fragment offset field, in units of 8 bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.read_u16(field::FLAGS_FRAG) & FRAG_OFFSET
    }

    /// A fragment, first or later: More Fragments set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.read_u8(field::TTL)
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.read_u8(field::PROTOCOL))
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        self.read_addr(field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.read_addr(field::DST_ADDR)
    }

    /// The header, options included (cut to the buffer for a fixed-header view).
    #[inline]
    pub fn header(&self) -> &[u8] {
        let bytes = self.bytes();
        &bytes[..self.header_len().min(bytes.len())]
    }

    /// The options: the header past its first 20 bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.header().get(HEADER_LEN..).unwrap_or_default()
    }

    /// Whether the header checksum is right: the header sums to 0xffff.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.header()) == 0xffff
    }

    /// The packet without padding: the first `total_len` bytes.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        let bytes = self.bytes();
        &bytes[..self.total_len().min(bytes.len())]
    }

    /// What follows the header, up to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.packet().get(self.header_len()..).unwrap_or_default()
    }

    /// The bytes after the total length: Ethernet padding.
    #[inline]
    pub fn padding(&self) -> &[u8] {
        self.bytes().get(self.total_len()..).unwrap_or_default()
    }

    /// The sum of the pseudo-header (RFC 793 §3.1, RFC 768) for this packet's addresses
    /// and protocol and a transport length of `l4_len`.
    #[inline]
    pub fn pseudo_header_sum(&self, l4_len: u16) -> u16 {
        checksum::pseudo_header_v4(
            self.src_addr().octets(),
            self.dst_addr().octets(),
            self.protocol().0,
            l4_len,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn write(&mut self, range: std::ops::Range<usize>, bytes: &[u8]) {
        if let Some(field) = self.buffer.as_mut().get_mut(range) {
            field.copy_from_slice(bytes);
        }
    }

    #[inline]
    fn write_u8(&mut self, at: usize, value: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(at) {
            *byte = value;
        }
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.write(field::LENGTH, &len.to_be_bytes());
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.write(field::IDENT, &ident.to_be_bytes());
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.write_u8(field::TTL, ttl);
    }

    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.write_u8(field::PROTOCOL, protocol.0);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.write(field::CHECKSUM, &checksum.to_be_bytes());
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.write(field::SRC_ADDR, &addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.write(field::DST_ADDR, &addr.octets());
    }

    /// Computes the header checksum and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.header());
        self.set_checksum(sum);
    }

    /// Decrements the TTL and updates the header checksum incrementally (RFC 1624), leaving
    /// every other byte alone. False, and nothing changed, when the TTL is already 0.
    pub fn decrement_ttl(&mut self) -> bool {
        let (ttl, protocol) = (self.ttl(), self.protocol().0);
        let Some(new_ttl) = ttl.checked_sub(1) else {
            return false;
        };
        // TTL and protocol share one 16-bit word of the header.
        let old_word = u16::from_be_bytes([ttl, protocol]);
        let new_word = u16::from_be_bytes([new_ttl, protocol]);
        let sum = checksum::update(self.checksum(), old_word, new_word);
        self.set_ttl(new_ttl);
        self.set_checksum(sum);
        true
    }

    /// The payload, mutable (up to the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        let bytes = self.buffer.as_mut();
        let end = end.min(bytes.len());
        bytes.get_mut(start..end).unwrap_or_default()
    }
}

/// The fields of an option-less IPv4 header, for building packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header.
    pub payload_len: usize,
    pub ttl: u8,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`: DSCP/ECN 0,
    /// identification 0, no fragment offset, checksum filled.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let got = buf.len();
        let Some(header) = buf.get_mut(..HEADER_LEN) else {
            return Err(WireError::Truncated {
                layer: "IPv4 header",
                needed: HEADER_LEN,
                got,
            });
        };
        let total =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed {
                layer: "IPv4",
                reason: "packet longer than 65535 bytes",
            })?;
        header.fill(0);
        header[field::VER_IHL] = 0x45;
        header[field::LENGTH].copy_from_slice(&total.to_be_bytes());
        if self.dont_frag {
            header[field::FLAGS_FRAG].copy_from_slice(&FLAG_DF.to_be_bytes());
        }
        header[field::TTL] = self.ttl;
        header[field::PROTOCOL] = self.protocol.0;
        header[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        header[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(header);
        header[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

/// A unicast host address (RFC 1812 §4.3.2.7, §5.3.7): not 0.0.0.0 ("this host"), not
/// loopback (127/8), not multicast (224/4), not reserved (240/4) nor the limited broadcast
/// 255.255.255.255. Whether it is a subnet's broadcast address only its network knows.
pub fn is_unicast_host(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_loopback() || addr.octets()[0] >= 224)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.168.0.1 → 192.168.0.199, UDP, total length 28, DF, TTL 64, 8 bytes of UDP.
    const UDP: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xa6, 0x84, // header
        0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7, // addresses
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP 1234 → 53, empty
    ];

    #[test]
    fn reads_a_literal_header() {
        let ip = Ipv4Packet::new_checked(&UDP[..]).unwrap();
        assert_eq!((ip.version(), ip.header_len(), ip.total_len()), (4, 20, 28));
        assert_eq!(
            (ip.ident(), ip.ttl(), ip.protocol()),
            (0x1234, 64, IpProtocol::UDP)
        );
        assert!(ip.dont_frag() && !ip.more_frags() && !ip.is_fragment());
        assert_eq!(ip.frag_offset(), 0);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(ip.checksum(), 0xa684);
        assert!(ip.verify_checksum());
        assert_eq!(ip.header(), &UDP[..20]);
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload(), &UDP[20..]);
        assert_eq!(ip.packet(), &UDP[..]);
        assert!(ip.padding().is_empty());
        // 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 8 = 0x1_8231 → 0x8232.
        assert_eq!(ip.pseudo_header_sum(8), 0x8232);
    }

    #[test]
    fn padding_is_not_part_of_the_packet() {
        let mut padded = UDP.to_vec();
        padded.extend_from_slice(&[0xee; 18]);
        let ip = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(ip.packet(), &UDP[..]);
        assert_eq!(ip.payload(), &UDP[20..]);
        assert_eq!(ip.padding(), &[0xee; 18]);
    }

    #[test]
    fn fragments() {
        let mut first = UDP;
        first[6] = 0x20; // MF
        let ip = Ipv4Packet::new_checked(&first[..]).unwrap();
        assert!(ip.more_frags() && ip.is_fragment() && !ip.dont_frag());
        assert_eq!(ip.frag_offset(), 0);
        let mut later = UDP;
        later[6..8].copy_from_slice(&[0x00, 0xb9]); // offset 185 (1480 bytes), last
        let ip = Ipv4Packet::new_checked(&later[..]).unwrap();
        assert!(ip.is_fragment() && !ip.more_frags());
        assert_eq!(ip.frag_offset(), 185);
    }

    #[test]
    fn refuses_malformed_headers() {
        let refused = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).err();
        for len in 0..HEADER_LEN {
            assert!(matches!(
                refused(&UDP[..len]),
                Some(WireError::Truncated {
                    layer: "IPv4 header",
                    ..
                })
            ));
        }
        let mut v6 = UDP;
        v6[0] = 0x65;
        let mut short_ihl = UDP;
        short_ihl[0] = 0x44;
        let mut zero_len = UDP;
        zero_len[2..4].fill(0);
        let mut long_ihl = UDP;
        long_ihl[0] = 0x48; // 32-byte header in a 28-byte packet
        for bytes in [v6, short_ihl, zero_len, long_ihl] {
            assert!(
                matches!(
                    refused(&bytes),
                    Some(WireError::Malformed { layer: "IPv4", .. })
                ),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            refused(&UDP[..27]),
            Some(WireError::Truncated {
                layer: "IPv4 packet",
                needed: 28,
                got: 27
            })
        );
        // The fixed-header view takes all of them and still never panics.
        for bytes in [v6, short_ihl, zero_len, long_ihl] {
            let ip = Ipv4Packet::new_fixed_header(&bytes[..]).unwrap();
            assert!(ip.check().is_err());
            let _ = (ip.header(), ip.options(), ip.payload(), ip.padding());
        }
        let ip = Ipv4Packet::new_fixed_header(&long_ihl[..]).unwrap();
        assert_eq!((ip.header().len(), ip.payload()), (28, &[][..]));
    }

    #[test]
    fn options_are_part_of_the_header() {
        let mut with_options = vec![0x46, 0, 0, 28];
        with_options.extend_from_slice(&UDP[4..20]);
        with_options.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]); // NOP NOP NOP EOL
        with_options.extend_from_slice(&[0xaa; 4]);
        let mut ip = Ipv4Packet::new_checked(&mut with_options[..]).unwrap();
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        assert_eq!(ip.payload(), &[0xaa; 4]);
    }

    #[test]
    fn setters_and_checksums() {
        let mut bytes = UDP;
        let mut ip = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert!(ip.decrement_ttl());
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum(), "incremental update");
        let incremental = ip.checksum();
        ip.fill_checksum();
        assert_eq!(ip.checksum(), incremental);
        ip.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        ip.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        ip.set_ident(7);
        ip.set_total_len(28);
        ip.set_protocol(IpProtocol::TCP);
        assert!(!ip.verify_checksum());
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        ip.payload_mut().fill(0x11);
        assert_eq!(&bytes[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!((bytes[9], &bytes[20..]), (6, &[0x11; 8][..]));

        let mut zero = UDP;
        zero[8] = 0;
        let mut ip = Ipv4Packet::new_checked(&mut zero[..]).unwrap();
        assert!(!ip.decrement_ttl());
        assert_eq!(zero, {
            let mut z = UDP;
            z[8] = 0;
            z
        });
    }

    #[test]
    fn emits_a_header() {
        let mut bytes = [0xffu8; 28];
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            protocol: IpProtocol::UDP,
            payload_len: 8,
            ttl: 64,
            dont_frag: true,
        };
        repr.emit(&mut bytes).unwrap();
        let mut expected = UDP;
        expected[4..6].fill(0); // identification 0
        let ip = Ipv4Packet::new_checked(&mut expected[..]).unwrap();
        let mut ip = ip;
        ip.fill_checksum();
        assert_eq!(bytes[..20], expected[..20]);
        assert!(repr.emit(&mut [0; 19]).is_err());
        let huge = Ipv4Repr {
            payload_len: 65_516,
            ..repr
        };
        assert!(huge.emit(&mut bytes).is_err());
        let undf = Ipv4Repr {
            dont_frag: false,
            ..repr
        };
        undf.emit(&mut bytes).unwrap();
        assert!(!Ipv4Packet::new_checked(&bytes[..]).unwrap().dont_frag());
    }

    #[test]
    fn unicast_hosts() {
        for host in ["10.0.0.1", "192.168.1.255", "8.8.8.8", "223.255.255.254"] {
            assert!(is_unicast_host(host.parse().unwrap()), "{host}");
        }
        for other in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "224.0.0.1",
            "239.1.2.3",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_unicast_host(other.parse().unwrap()), "{other}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(ip) = Ipv4Packet::new_fixed_header(&bytes[..]) {
                let _ = (ip.version(), ip.src_addr(), ip.dst_addr(), ip.is_fragment(), ip.verify_checksum());
                let _ = (ip.header(), ip.options(), ip.padding(), ip.pseudo_header_sum(0));
                proptest::prop_assert!(ip.payload().len() <= bytes.len());
                let checked = Ipv4Packet::new_checked(&bytes[..]);
                proptest::prop_assert_eq!(checked.is_ok(), ip.check().is_ok());
                if let Ok(ip) = checked {
                    proptest::prop_assert_eq!(ip.header().len() + ip.payload().len(), ip.total_len());
                    proptest::prop_assert_eq!(ip.packet().len() + ip.padding().len(), bytes.len());
                }
            }
        }
    }
}
