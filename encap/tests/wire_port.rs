//! The parsers switchyard-encap had before it used switchyard-wire's views, kept as the
//! reference the ported code must match on any input, malformed ones included: the same
//! flow hash, the same partial-checksum answer, the same TCP segment boundaries.

use proptest::prelude::*;
use switchyard_encap::checksum;
use switchyard_encap::coalesce::TcpSegment;
use switchyard_encap::flow::flow_hash;
use switchyard_encap::partial::partial_checksum as ported_partial_checksum;

mod before {
    use super::checksum;

    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const URG: u8 = 0x20;
    const CWR: u8 = 0x80;

    struct Fnv(u32);

    impl Fnv {
        fn bytes(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u32::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0193);
            }
        }

        fn finish(self) -> u32 {
            let mut h = self.0;
            h ^= h >> 16;
            h = h.wrapping_mul(0x85eb_ca6b);
            h ^= h >> 13;
            h = h.wrapping_mul(0xc2b2_ae35);
            h ^ (h >> 16)
        }
    }

    pub fn flow_hash(frame: &[u8]) -> u32 {
        let mut h = Fnv(0x811c_9dc5);
        let mut ethertype_at = 12;
        let ethertype = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        if ethertype(ethertype_at) == Some(0x8100) {
            ethertype_at += 4;
        }
        let l3 = ethertype_at + 2;
        match ethertype(ethertype_at) {
            Some(0x0800) => {
                if let Some(ip) = frame.get(l3..l3 + 20) {
                    let header_len = usize::from(ip[0] & 0x0f) * 4;
                    let protocol = ip[9];
                    h.bytes(&[protocol]);
                    h.bytes(&ip[12..20]);
                    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
                    if first_fragment {
                        hash_ports(&mut h, frame, l3 + header_len, protocol);
                    }
                    return h.finish();
                }
            }
            Some(0x86dd) => {
                if let Some(ip) = frame.get(l3..l3 + 40) {
                    let next_header = ip[6];
                    h.bytes(&[next_header]);
                    h.bytes(&ip[8..40]);
                    hash_ports(&mut h, frame, l3 + 40, next_header);
                    return h.finish();
                }
            }
            _ => {}
        }
        h.bytes(frame.get(..14).unwrap_or(frame));
        h.finish()
    }

    fn hash_ports(h: &mut Fnv, frame: &[u8], at: usize, protocol: u8) {
        if protocol == 6 || protocol == 17 {
            if let Some(ports) = frame.get(at..at + 4) {
                h.bytes(ports);
            }
        }
    }

    pub fn partial_checksum(frame: &[u8]) -> Option<(u16, u16)> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let ip = frame.get(14..)?;
        let (l4_at, protocol, pseudo) = match ethertype {
            0x0800 => {
                let header_len = usize::from(*ip.first()? & 0x0f) * 4;
                let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
                let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
                if ip[0] >> 4 != 4
                    || header_len < 20
                    || total_len < header_len
                    || total_len > ip.len()
                    || fragment != 0
                {
                    return None;
                }
                let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                let l4_len = u16::try_from(total_len - header_len).ok()?;
                (
                    header_len,
                    ip[9],
                    checksum::pseudo_header_v4(src, dst, ip[9], l4_len),
                )
            }
            0x86dd => {
                if ip.len() < 40 || ip[0] >> 4 != 6 {
                    return None;
                }
                let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                if 40 + payload_len > ip.len() {
                    return None;
                }
                let src: [u8; 16] = ip[8..24].try_into().ok()?;
                let dst: [u8; 16] = ip[24..40].try_into().ok()?;
                (
                    40,
                    ip[6],
                    checksum::pseudo_header_v6(src, dst, ip[6], payload_len as u32),
                )
            }
            _ => return None,
        };
        let csum_offset: usize = match protocol {
            6 => 16,
            17 => 6,
            _ => return None,
        };
        let at = l4_at + csum_offset;
        let stored = u16::from_be_bytes([*ip.get(at)?, *ip.get(at + 1)?]);
        if stored == 0 && protocol == 17 {
            return None;
        }
        (stored == pseudo).then(|| ((14 + l4_at) as u16, csum_offset as u16))
    }

    pub fn parse(frame: &[u8]) -> Option<(usize, usize)> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let ip = frame.get(14..)?;
        let (ipv6, l4, end, pseudo_of) = match ethertype {
            0x0800 => {
                let ihl = usize::from(*ip.first()? & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
                let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
                if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || fragment != 0 {
                    return None;
                }
                if ip[9] != 6 || checksum::checksum(ip.get(..ihl)?) != 0 {
                    return None;
                }
                let (src, dst): ([u8; 4], [u8; 4]) =
                    (ip[12..16].try_into().ok()?, ip[16..20].try_into().ok()?);
                let len = u16::try_from(total - ihl).ok()?;
                (
                    false,
                    14 + ihl,
                    14 + total,
                    checksum::pseudo_header_v4(src, dst, 6, len),
                )
            }
            0x86dd => {
                if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 6 {
                    return None;
                }
                let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                if 40 + payload_len > ip.len() {
                    return None;
                }
                let (src, dst): ([u8; 16], [u8; 16]) =
                    (ip[8..24].try_into().ok()?, ip[24..40].try_into().ok()?);
                (
                    true,
                    14 + 40,
                    14 + 40 + payload_len,
                    checksum::pseudo_header_v6(src, dst, 6, payload_len as u32),
                )
            }
            _ => return None,
        };
        let tcp = frame.get(l4..end)?;
        let data_offset = usize::from(*tcp.get(12)? >> 4) * 4;
        if data_offset < 20 || data_offset >= tcp.len() {
            return None;
        }
        let flags = tcp[13];
        if flags & (FIN | SYN | RST | URG | CWR) != 0 {
            return None;
        }
        let stored = u16::from_be_bytes([tcp[16], tcp[17]]);
        let valid = checksum::add(pseudo_of, checksum::sum(tcp)) == 0xffff;
        if !valid && stored != pseudo_of {
            return None;
        }
        let _ = (ipv6, u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]));
        // (payload length, header length), as TcpSegment reports them.
        Some((end - (l4 + data_offset), l4 + data_offset))
    }
}

/// Frames worth comparing on: TCP, UDP and ICMP over IPv4 and IPv6, some tagged, with
/// partial or full checksums, then damaged by `flips`, cut at `cut` and padded.
fn frame(kind: u8, payload: usize, flips: &[(usize, u8)], cut: usize, pad: usize) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let data = vec![0x5a; payload];
    let mut out = Vec::new();
    match kind % 6 {
        0 => eth
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 7, 1000)
            .ack(1)
            .write(&mut out, &data),
        1 => eth
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, 7, 1000)
            .write(&mut out, &data),
        2 => eth
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 53)
            .write(&mut out, &data),
        3 => eth
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1000, 53)
            .write(&mut out, &data),
        4 => eth
            .single_vlan(10.try_into().unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 7, 1000)
            .write(&mut out, &data),
        _ => eth
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut out, &data),
    }
    .unwrap();
    // Half the time, the checksum an offloading sender leaves: the pseudo-header sum.
    if kind & 0x80 != 0 && (kind % 6) < 2 {
        let (l4, pseudo) = if kind % 6 == 0 {
            let len = (out.len() - 34) as u16;
            (
                34,
                checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, len),
            )
        } else {
            let len = (out.len() - 54) as u32;
            (
                54,
                checksum::pseudo_header_v6([0xfd; 16], [0xfe; 16], 6, len),
            )
        };
        out[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    }
    for &(at, value) in flips {
        let at = at % out.len();
        out[at] ^= value;
    }
    out.truncate(cut.min(out.len()));
    out.resize(out.len() + pad, 0);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ported_parsers_answer_as_before(
        kind in any::<u8>(),
        payload in 0usize..40,
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..3),
        cut in 0usize..140,
        pad in 0usize..8,
    ) {
        let frame = frame(kind, payload, &flips, cut, pad);
        prop_assert_eq!(flow_hash(&frame), before::flow_hash(&frame));
        prop_assert_eq!(ported_partial_checksum(&frame), before::partial_checksum(&frame));
        prop_assert_eq!(
            TcpSegment::parse(&frame).map(|s| (s.payload_len(), s.header_len())),
            before::parse(&frame)
        );
    }

    #[test]
    fn ported_parsers_answer_as_before_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        for ethertype in [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]] {
            let mut frame = bytes.clone();
            if let Some(field) = frame.get_mut(12..14) {
                field.copy_from_slice(&ethertype);
            }
            prop_assert_eq!(flow_hash(&frame), before::flow_hash(&frame));
            prop_assert_eq!(ported_partial_checksum(&frame), before::partial_checksum(&frame));
            prop_assert_eq!(
                TcpSegment::parse(&frame).map(|s| (s.payload_len(), s.header_len())),
                before::parse(&frame)
            );
        }
    }
}
