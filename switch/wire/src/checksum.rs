//! The Internet checksum (RFC 1071) and the pieces IPv4, TCP and UDP build it from.
//!
//! Vocabulary used throughout:
//!
//! * a **sum** is the one's-complement sum of big-endian 16-bit words, folded to 16 bits
//!   and *not* inverted (an odd trailing byte counts as if followed by a zero byte);
//! * a **checksum** is what goes on the wire: the complement of the sum of everything it
//!   covers (with the checksum field itself counted as zero).
//!
//! Sums compose with [`add`], so a checksum can be built from a pseudo-header sum computed
//! once and a sum per payload slice. [`sum`] reads 16 bytes per step into 128-bit
//! accumulators in the machine's byte order and swaps once at the end (RFC 1071 §2(B):
//! the sum is byte-order independent), so it runs at memory speed without `unsafe`.

/// One's-complement sum of `data` as big-endian 16-bit words, folded, not inverted.
///
/// An odd trailing byte is padded with a zero byte, as RFC 1071 specifies. The sum of an
/// empty slice is 0; the sum of anything not all zero is never 0 (it is 0xffff instead).
pub fn sum(data: &[u8]) -> u16 {
    let (mut a, mut b) = (0u128, 0u128);
    let mut chunks = data.chunks_exact(16);
    for chunk in &mut chunks {
        let (lo, hi) = chunk.split_at(8);
        a += u128::from(load_u64(lo));
        b += u128::from(load_u64(hi));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        let (lo, hi) = tail.split_at(8);
        a += u128::from(load_u64(lo));
        b += u128::from(load_u64(hi));
    }
    // At most 2^60 chunks of two words below 2^64 each: neither sum overflows u128.
    let folded = fold_u128(a + b);
    if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    }
}

/// Reads 8 bytes in the machine's byte order; `bytes` is exactly 8 long at every call site.
#[inline(always)]
fn load_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_ne_bytes(word)
}

fn fold_u128(wide: u128) -> u16 {
    // 2^64 ≡ 2^32 ≡ 2^16 ≡ 1 (mod 0xffff): adding the halves keeps the sum's value.
    let (lo, carry) = (wide as u64).overflowing_add((wide >> 64) as u64);
    fold((lo & 0xffff_ffff) + (lo >> 32) + u64::from(carry))
}

/// Folds a sum of 16-bit words accumulated in a `u64` down to 16 bits (end-around carry).
pub const fn fold(wide: u64) -> u16 {
    let mut s = (wide & 0xffff_ffff) + (wide >> 32); // < 2^33
    s = (s & 0xffff) + (s >> 16); // < 2^17 + 2^16
    s = (s & 0xffff) + (s >> 16); // <= 0xffff + 2
    s = (s & 0xffff) + (s >> 16); // <= 0xffff
    s as u16
}

/// One's-complement addition of two sums.
pub const fn add(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// One's-complement subtraction: the sum that, added to `b`, gives `a`.
pub const fn sub(a: u16, b: u16) -> u16 {
    add(a, !b)
}

/// The checksum of `data` alone: the complement of its [`sum`].
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source, destination, zero,
/// protocol, and the transport length (header plus payload).
pub const fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u16 {
    let words = u16::from_be_bytes([src[0], src[1]]) as u64
        + u16::from_be_bytes([src[2], src[3]]) as u64
        + u16::from_be_bytes([dst[0], dst[1]]) as u64
        + u16::from_be_bytes([dst[2], dst[3]]) as u64
        + protocol as u64
        + length as u64;
    fold(words)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer packet length, three zero bytes and the next header value.
pub const fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], protocol: u8, length: u32) -> u16 {
    let mut words = protocol as u64 + (length >> 16) as u64 + (length & 0xffff) as u64;
    let mut i = 0;
    while i < 16 {
        words += u16::from_be_bytes([src[i], src[i + 1]]) as u64;
        words += u16::from_be_bytes([dst[i], dst[i + 1]]) as u64;
        i += 2;
    }
    fold(words)
}

/// Incremental update of a stored checksum when one 16-bit word it covers changes from
/// `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// The result verifies exactly like a checksum recomputed from scratch; the two can
/// differ only in which of the one's-complement zeros (0x0000, 0xffff) they are.
pub const fn update(checksum: u16, old: u16, new: u16) -> u16 {
    !add(add(!checksum, !old), new)
}

/// [`update`] for a 32-bit field (an IPv4 address, a TCP sequence number).
pub const fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update(c, old as u16, new as u16)
}

/// A running sum over a byte stream handed over in pieces of any length.
///
/// A piece that starts at an odd offset in the stream has its bytes in the other half of
/// every 16-bit word; [`Checksum::write`] accounts for that by swapping the piece's sum
/// (RFC 1071 §2(B)), so the pieces may be split anywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u16,
    odd: bool,
}

impl Checksum {
    pub const fn new() -> Checksum {
        Checksum { sum: 0, odd: false }
    }

    /// Starts from a sum (a pseudo-header's, say), at an even offset of the stream.
    pub const fn from_sum(sum: u16) -> Checksum {
        Checksum { sum, odd: false }
    }

    /// Appends the next `data` of the stream.
    pub fn write(&mut self, data: &[u8]) {
        let piece = sum(data);
        let piece = if self.odd { piece.swap_bytes() } else { piece };
        self.sum = add(self.sum, piece);
        self.odd ^= data.len() % 2 == 1;
    }

    /// The sum of everything written so far (folded, not inverted).
    pub const fn sum(&self) -> u16 {
        self.sum
    }

    /// The checksum of everything written so far: the complement of [`Checksum::sum`].
    pub const fn finish(&self) -> u16 {
        !self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 §3 done the slow way: word by word into a wide accumulator.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut pairs = data.chunks_exact(2);
        for pair in &mut pairs {
            acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            acc += u64::from(*last) << 8;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Equality of one's-complement values, where 0x0000 and 0xffff are both zero.
    fn ones_eq(a: u16, b: u16) -> bool {
        a == b || (a == 0 || a == 0xffff) && (b == 0 || b == 0xffff)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn ipv4_header_example() {
        // 192.168.0.1 → 192.168.0.199, UDP, total length 115, DF, TTL 64.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // A correct header sums to 0xffff, checksum field included.
        assert_eq!(sum(&header), 0xffff);
        header[10..12].fill(0);
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x6834);
        // Every length around the 16-byte step, against the reference.
        let data: Vec<u8> = (0u8..=255).map(|i| i.wrapping_mul(151) ^ 0x5a).collect();
        for len in 0..data.len() {
            assert_eq!(sum(&data[..len]), naive_sum(&data[..len]), "length {len}");
        }
    }

    #[test]
    fn carries_wrap_around() {
        // 0xffff words never produce a zero sum, and a long run carries many times.
        assert_eq!(sum(&[0xff; 2]), 0xffff);
        assert_eq!(sum(&[0xff; 65536]), 0xffff);
        assert_eq!(sum(&[0x80, 0x00, 0x80, 0x00]), 0x0001);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(add(0xffff, 0xffff), 0xffff);
        assert_eq!(add(0xfffe, 0x0002), 0x0001);
        assert_eq!(sub(0x0001, 0x0002), 0xfffe);
    }

    #[test]
    fn pseudo_headers() {
        // 10.0.0.1 → 10.0.0.2, TCP, 40 bytes: 0x0a00+0x0001+0x0a00+0x0002+6+40.
        assert_eq!(
            pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, 40),
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 40
        );
        let v4 = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0x12, 0x34];
        assert_eq!(
            pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 0x1234),
            sum(&v4)
        );

        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55,
        ];
        let mut v6 = Vec::new();
        v6.extend_from_slice(&src);
        v6.extend_from_slice(&dst);
        v6.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        v6.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(pseudo_header_v6(src, dst, 6, 0x0001_0203), sum(&v6));
    }

    #[test]
    fn incremental_update_of_a_ttl() {
        // Decrementing the TTL of the IPv4 example header (TTL and protocol share a word).
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let before = checksum(&header);
        header[8] = 0x3f;
        assert_eq!(update(before, 0x4011, 0x3f11), checksum(&header));
        assert_eq!(update(before, 0x4011, 0x3f11), 0xb961);
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data = [1u8, 2, 3, 4, 5, 6, 7];
        let mut c = Checksum::new();
        c.write(&data[..1]);
        c.write(&data[1..4]);
        c.write(&data[4..]);
        assert_eq!(c.sum(), sum(&data));
        assert_eq!(c.finish(), checksum(&data));
        assert_eq!(Checksum::from_sum(0x1234).sum(), 0x1234);
    }

    proptest! {
        #[test]
        fn sum_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(sum(&data), naive_sum(&data));
        }

        #[test]
        fn sum_matches_the_reference_at_every_start(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            start in 0usize..200,
        ) {
            let start = start.min(data.len());
            prop_assert_eq!(sum(&data[start..]), naive_sum(&data[start..]));
        }

        #[test]
        fn pieces_split_anywhere(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut c = Checksum::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                c.write(&data[from..cut]);
                from = cut;
            }
            prop_assert_eq!(c.sum(), naive_sum(&data));
        }

        #[test]
        fn sums_of_even_pieces_add(
            a in proptest::collection::vec(any::<u8>(), 0..500),
            b in proptest::collection::vec(any::<u8>(), 0..500),
        ) {
            let mut a = a;
            if a.len() % 2 == 1 {
                a.pop();
            }
            let whole = [&a[..], &b[..]].concat();
            prop_assert_eq!(add(sum(&a), sum(&b)), naive_sum(&whole));
            prop_assert!(ones_eq(sub(sum(&whole), sum(&b)), sum(&a)));
        }

        #[test]
        fn a_stored_checksum_verifies(data in proptest::collection::vec(any::<u8>(), 2..600)) {
            // Zero the first word, store the checksum there, and the whole sums to 0xffff.
            let mut data = data;
            data[0] = 0;
            data[1] = 0;
            let c = checksum(&data);
            data[..2].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(naive_sum(&data), 0xffff);
        }

        #[test]
        fn incremental_update_matches_recompute(
            data in proptest::collection::vec(any::<u8>(), 8..400),
            at in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            let mut data = data;
            let at = at.index(data.len() / 4) * 4;
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert!(ones_eq(update_u32(before, old, new), checksum(&data)));
            let word = u16::from_be_bytes([data[at], data[at + 1]]);
            let before = checksum(&data);
            data[at..at + 2].copy_from_slice(&(!word).to_be_bytes());
            prop_assert!(ones_eq(update(before, word, !word), checksum(&data)));
        }

        #[test]
        fn pseudo_headers_match_their_bytes(
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            protocol in any::<u8>(),
            length in any::<u32>(),
        ) {
            let v4 = [
                &src[..4], &dst[..4], &[0, protocol], &(length as u16).to_be_bytes()[..],
            ].concat();
            let s4: [u8; 4] = src[..4].try_into().unwrap();
            let d4: [u8; 4] = dst[..4].try_into().unwrap();
            prop_assert_eq!(pseudo_header_v4(s4, d4, protocol, length as u16), naive_sum(&v4));
            let v6 = [&src[..], &dst[..], &length.to_be_bytes()[..], &[0, 0, 0, protocol]].concat();
            prop_assert_eq!(pseudo_header_v6(src, dst, protocol, length), naive_sum(&v6));
        }
    }
}
