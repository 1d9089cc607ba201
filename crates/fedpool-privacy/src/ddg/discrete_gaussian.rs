//! Exact sampling of the discrete Gaussian `N_Z(0, σ²)`, with `P[x] ∝ exp(-x²/(2σ²))` on
//! the integers.
//!
//! Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for Differential Privacy",
//! Section 5: Algorithm 1 (Bernoulli(exp(-γ)) for rational γ), Algorithm 2 (discrete
//! Laplace), Algorithm 3 (discrete Gaussian by rejection from the discrete Laplace). Every
//! step uses integer arithmetic and uniform integers from the RNG, so the output
//! distribution is exactly `N_Z(0, σ²)` for the rational σ² the sampler holds, with no
//! floating-point error. σ² is given as an `f64` and rounded *up* to a multiple of
//! `2^-VARIANCE_FRAC_BITS`: more noise, never less privacy.

use rand::{CryptoRng, Rng};

use crate::error::{Result, ensure};

/// σ² is held as `numerator / 2^VARIANCE_FRAC_BITS`.
pub const VARIANCE_FRAC_BITS: u32 = 20;

/// The largest variance accepted, 2^40 (σ = 2^20), which keeps the rejection test's
/// denominator `2 p q t²` below 2^122.
pub const MAX_VARIANCE: f64 = 1_099_511_627_776.0;

/// An exact sampler of `N_Z(0, σ²)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteGaussian {
    /// σ² = variance_num / variance_den.
    variance_num: u128,
    variance_den: u128,
    /// t = ⌊σ⌋ + 1, the discrete Laplace scale of Algorithm 3.
    laplace_scale: u64,
}

impl DiscreteGaussian {
    /// A sampler for `N_Z(0, σ²)` with `σ² = variance`, rounded up to a multiple of 2^-20.
    /// `variance` must be in `(0, 2^40]`.
    pub fn new(variance: f64) -> Result<Self> {
        ensure(
            variance > 0.0 && variance <= MAX_VARIANCE,
            "variance",
            variance,
            "0 < variance <= 2^40",
        )?;
        let den = 1u128 << VARIANCE_FRAC_BITS;
        // Exact: multiplying by a power of two only changes the exponent.
        let num = (variance * den as f64).ceil() as u128;
        // ⌊σ⌋ = ⌊√⌊σ²⌋⌋, so an integer square root of ⌊num/den⌋ gives t exactly.
        let laplace_scale = isqrt((num / den) as u64) + 1;
        Ok(Self {
            variance_num: num,
            variance_den: den,
            laplace_scale,
        })
    }

    /// The variance σ² actually sampled (after rounding up).
    pub fn variance(&self) -> f64 {
        self.variance_num as f64 / self.variance_den as f64
    }

    /// One sample (Canonne, Kamath, Steinke 2020, Algorithm 3): with `t = ⌊σ⌋ + 1`, draw
    /// `Y ~ Lap_Z(t)` and accept it with probability `exp(-(|Y| - σ²/t)²/(2σ²))`.
    pub fn sample<R: CryptoRng + Rng>(&self, rng: &mut R) -> i128 {
        let t = u128::from(self.laplace_scale);
        let (p, q) = (self.variance_num, self.variance_den);
        // (|Y| - σ²/t)²/(2σ²) = (|Y|·t·q - p)² / (2·p·q·t²) with σ² = p/q.
        let den = 2 * p * q * t * t;
        loop {
            let y = discrete_laplace(self.laplace_scale, rng);
            // |Y|·t·q < 2^127 unless |Y| > 2^90, whose acceptance probability is below
            // exp(-2^170); such a draw is rejected instead of overflowing.
            let Some(scaled) = y.unsigned_abs().checked_mul(t * q) else {
                continue;
            };
            let a = scaled.abs_diff(p);
            if bernoulli_exp_neg(U256::square(a), den, rng) {
                return y;
            }
        }
    }
}

/// `Lap_Z(t)` with `P[y] ∝ exp(-|y|/t)` (Canonne, Kamath, Steinke 2020, Algorithm 2 with
/// s = 1): `U` uniform in `[0, t)` accepted with probability `exp(-U/t)`, plus `t·V` with
/// `V` geometric (`P[V ≥ v] = e^{-v}`), then a random sign, rejecting "negative zero".
fn discrete_laplace<R: CryptoRng + Rng>(t: u64, rng: &mut R) -> i128 {
    loop {
        let u = uniform_below_u64(t, rng);
        if !bernoulli_exp_neg_small(u128::from(u), u128::from(t), rng) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg_small(1, 1, rng) {
            v += 1;
        }
        let magnitude = u128::from(u) + u128::from(t) * v;
        let negative = rng.random::<bool>();
        if negative && magnitude == 0 {
            continue;
        }
        // magnitude < 2^127: reaching it would take 2^64 consecutive Bernoulli(1/e) successes.
        let magnitude = magnitude as i128;
        return if negative { -magnitude } else { magnitude };
    }
}

/// Bernoulli(exp(-num/den)) for `num/den ∈ [0, 1]` (Canonne, Kamath, Steinke 2020,
/// Algorithm 1, first case): draw Bernoulli(γ/k) for k = 1, 2, … until one fails at
/// step K; return whether K is odd.
fn bernoulli_exp_neg_small<R: CryptoRng + Rng>(num: u128, den: u128, rng: &mut R) -> bool {
    debug_assert!(num <= den);
    let mut k: u128 = 1;
    loop {
        // den·k cannot overflow before k = 64: den < 2^122 and P[K > 64] < 1/63!.
        let Some(scaled_den) = den.checked_mul(k) else {
            // Unreachable in practice; k this large means every earlier trial succeeded.
            return k % 2 == 1;
        };
        if !bernoulli_ratio(num, scaled_den, rng) {
            return k % 2 == 1;
        }
        k += 1;
    }
}

/// Bernoulli(exp(-γ)) for a rational γ = num/den ≥ 0 whose numerator may exceed u128
/// (Canonne, Kamath, Steinke 2020, Algorithm 1): ⌊γ⌋ trials of Bernoulli(1/e), any failure
/// returns false; then Bernoulli(exp(-(γ - ⌊γ⌋))).
fn bernoulli_exp_neg<R: CryptoRng + Rng>(num: U256, den: u128, rng: &mut R) -> bool {
    let (floor, rem) = num.div_rem(den);
    let mut k = U256::ZERO;
    while k < floor {
        if !bernoulli_exp_neg_small(1, 1, rng) {
            return false;
        }
        k = k.increment();
    }
    bernoulli_exp_neg_small(rem, den, rng)
}

/// Bernoulli(num/den) from one uniform integer in `[0, den)`.
fn bernoulli_ratio<R: CryptoRng + Rng>(num: u128, den: u128, rng: &mut R) -> bool {
    if num >= den {
        return true;
    }
    if let Ok(den64) = u64::try_from(den) {
        // Faster path for the common small denominators (Bernoulli(1/k) in Algorithm 1).
        return u128::from(uniform_below_u64(den64, rng)) < num;
    }
    uniform_below_u128(den, rng) < num
}

/// A uniform integer in `[0, n)`, exactly: draw the bits of the next power of two and reject
/// anything at or above `n` (fewer than two draws on average). rand's `random_range` maps a
/// wider draw onto the range with a bias of up to `n / 2^64` unless its `unbiased` feature is
/// on; the sampler's exactness proof needs exact uniforms. `n` must be positive.
fn uniform_below_u64<R: CryptoRng + Rng>(n: u64, rng: &mut R) -> u64 {
    debug_assert!(n > 0);
    let mask = u64::MAX >> (n - 1).leading_zeros().min(63);
    loop {
        let draw = rng.next_u64() & if n == 1 { 0 } else { mask };
        if draw < n {
            return draw;
        }
    }
}

/// [`uniform_below_u64`] for 128-bit bounds.
fn uniform_below_u128<R: CryptoRng + Rng>(n: u128, rng: &mut R) -> u128 {
    debug_assert!(n > 0);
    let mask = u128::MAX >> (n - 1).leading_zeros().min(127);
    loop {
        let draw = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
            & if n == 1 { 0 } else { mask };
        if draw < n {
            return draw;
        }
    }
}

/// `⌊√n⌋` exactly.
fn isqrt(n: u64) -> u64 {
    let mut x = (n as f64).sqrt() as u64;
    while x.checked_mul(x).is_none_or(|sq| sq > n) {
        x -= 1;
    }
    while (x + 1).checked_mul(x + 1).is_some_and(|sq| sq <= n) {
        x += 1;
    }
    x
}

/// A 256-bit unsigned integer, just enough for `a²` with `a < 2^128` and its division by a
/// u128, so the rejection test of Algorithm 3 stays exact for any discrete Laplace draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct U256 {
    hi: u128,
    lo: u128,
}

impl U256 {
    const ZERO: U256 = U256 { hi: 0, lo: 0 };

    fn square(a: u128) -> U256 {
        let (a_hi, a_lo) = (a >> 64, a & u128::from(u64::MAX));
        let lo_lo = a_lo * a_lo;
        let cross = a_hi * a_lo; // < 2^128
        let hi_hi = a_hi * a_hi;
        // a² = hi_hi·2^128 + 2·cross·2^64 + lo_lo
        let (cross2_lo, carry_from_double) = (cross << 65, cross >> 63);
        let (lo, carry) = lo_lo.overflowing_add(cross2_lo);
        let hi = hi_hi + carry_from_double + u128::from(carry);
        U256 { hi, lo }
    }

    fn increment(self) -> U256 {
        let (lo, carry) = self.lo.overflowing_add(1);
        U256 {
            hi: self.hi + u128::from(carry),
            lo,
        }
    }

    /// `(⌊self/den⌋, self mod den)` for `den > 0`.
    fn div_rem(self, den: u128) -> (U256, u128) {
        if self.hi == 0 {
            return (
                U256 {
                    hi: 0,
                    lo: self.lo / den,
                },
                self.lo % den,
            );
        }
        // Schoolbook binary long division; only reached when a discrete Laplace draw is
        // astronomically far in the tail, whose acceptance probability is exp(-2^100).
        let mut quotient = U256::ZERO;
        let mut rem: u128 = 0;
        for bit in (0..256).rev() {
            let next = if bit >= 128 {
                (self.hi >> (bit - 128)) & 1
            } else {
                (self.lo >> bit) & 1
            };
            let overflow = rem >> 127 == 1;
            rem = (rem << 1) | next;
            if overflow || rem >= den {
                rem = rem.wrapping_sub(den);
                if bit >= 128 {
                    quotient.hi |= 1 << (bit - 128);
                } else {
                    quotient.lo |= 1 << bit;
                }
            }
        }
        (quotient, rem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the scripted words in order, so a test sees exactly which draws are kept.
    struct Scripted(std::vec::IntoIter<u64>);

    impl rand::RngCore for Scripted {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0.next().expect("the script ran out")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                let word = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
        }
    }
    impl rand::CryptoRng for Scripted {}

    fn scripted(words: Vec<u64>) -> Scripted {
        Scripted(words.into_iter())
    }

    #[test]
    fn uniform_draws_map_each_outcome_from_exactly_one_raw_value() {
        // Every raw value below the power of two either is the outcome or is rejected, so
        // each outcome in [0, n) has exactly one preimage: exactly uniform, no modulo bias.
        for n in [1u64, 2, 3, 5, 6, 7, 8, 9, 1000, (1 << 40) + 3] {
            let span = n.next_power_of_two();
            for raw in (0..span.min(4096)).chain([span - 1]) {
                let mut rng = scripted(vec![raw | !(span - 1) & 0xdead_0000_0000_0000, 0]);
                let got = uniform_below_u64(n, &mut rng);
                if raw < n {
                    assert_eq!(got, raw, "n = {n}");
                } else {
                    assert_eq!(got, 0, "n = {n}: raw {raw} was kept instead of rejected");
                }
            }
        }
        // 128-bit: the high word comes first.
        let n: u128 = (1 << 100) + 7;
        let mut rng = scripted(vec![u64::MAX, u64::MAX, 1 << 36, 5]);
        assert_eq!(uniform_below_u128(n, &mut rng), (1u128 << 100) + 5);
    }

    #[test]
    fn u256_square_and_division_are_exact() {
        let a: u128 = (1 << 100) + 12345;
        let sq = U256::square(a);
        // (2^100 + c)² = 2^200 + 2c·2^100 + c²
        assert_eq!(sq.hi, 1 << 72);
        assert_eq!(sq.lo, ((2 * 12345u128) << 100) + 12345 * 12345);
        let (quot, rem) = sq.div_rem(a);
        assert_eq!(quot, U256 { hi: 0, lo: a });
        assert_eq!(rem, 0);
        let (quot, rem) = sq.div_rem(7);
        // Check quot·7 + rem == sq via the u128 halves: recombine with square of small values.
        assert!(rem < 7);
        assert_eq!(quot.hi, sq.hi / 7);
        assert_eq!(U256::square(u128::MAX).hi, u128::MAX - 1);
        assert_eq!(U256::square(u128::MAX).lo, 1);
        assert_eq!(U256::square(3).div_rem(4), (U256 { hi: 0, lo: 2 }, 1));
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [
            0u64,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            1 << 52,
            (1 << 52) + 1,
            u64::MAX,
        ] {
            let r = isqrt(n);
            assert!(r * r <= n);
            assert!((r + 1).checked_mul(r + 1).is_none_or(|sq| sq > n));
        }
    }
}
