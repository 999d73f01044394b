//! A small pseudo-random generator (xorshift64*), seeded by the caller: the core has no
//! source of randomness of its own. Good for shuffling answers and picking query ids that
//! no one who cannot see them can guess; not a cryptographic generator.

#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`; any seed works, 0 included (it is mixed first, so nearby
    /// seeds give unrelated sequences).
    pub(crate) fn new(seed: u64) -> Rng {
        // One splitmix64 step: xorshift must not start at 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 16 random bits (the high ones, the best of xorshift64*).
    pub(crate) fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let wide = u128::from(self.next_u64()) * n as u128;
        (wide >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_their_own_sequences() {
        let mut a = Rng::new(0);
        let mut b = Rng::new(1);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        assert!(xs.iter().all(|&x| x != 0));
        let mut again = Rng::new(0);
        assert_eq!(xs, (0..4).map(|_| again.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range_and_shuffle_permutes() {
        let mut rng = Rng::new(7);
        assert_eq!(rng.below(0), 0);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let x = rng.below(5);
            assert!(x < 5);
            seen[x] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }

    #[test]
    fn ids_cover_the_whole_range() {
        let mut rng = Rng::new(42);
        let (mut low, mut high) = (false, false);
        for _ in 0..1000 {
            let id = rng.next_u16();
            low |= id < 0x4000;
            high |= id >= 0xc000;
        }
        assert!(low && high);
    }
}
