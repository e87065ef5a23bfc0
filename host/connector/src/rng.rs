//! A tiny deterministic random generator (SplitMix64).
//!
//! Generated data must be identical across machines and releases (benchmarks compare runs;
//! tests pin values), which general-purpose RNG crates do not promise for their fast
//! generators; SplitMix64 is fixed by its definition, and seeding it per event id costs
//! nothing, which is what the Nexmark generator needs.

/// SplitMix64 state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed ^ 0x6a09_e667_f3bc_c908)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Appends `len` lowercase letters to `out`, eight per random draw.
    #[inline]
    pub(crate) fn letters(&mut self, len: usize, out: &mut Vec<u8>) {
        let mut left = len;
        while left > 0 {
            let r = self.next_u64();
            let mut chunk = [0u8; 8];
            for (i, c) in chunk.iter_mut().enumerate() {
                // Multiply-shift maps a byte to 0..26 without a division.
                *c = b'a' + ((((r >> (8 * i)) & 0xff) * 26) >> 8) as u8;
            }
            let n = left.min(8);
            out.extend_from_slice(&chunk[..n]);
            left -= n;
        }
    }
}
