//! Fixed-point encoding of `f32` updates into Z/2^b so that the sum of every participant's
//! words never wraps.
//!
//! **The bound.** Each value is clipped to [−c, c] and mapped to an integer level
//! q ∈ [−L, L] (L levels per side, so the step is c / L). A participant sends q mod 2^b. The
//! sum over any n ≤ `max_participants` participants lies in [−nL, nL]; choosing
//!
//! ```text
//! L = ⌊(2^(b−1) − 1) / max_participants⌋
//! ```
//!
//! gives nL ≤ 2^(b−1) − 1, so the true sum is the unique representative of the modular sum in
//! [−2^(b−1), 2^(b−1)) and decoding is exact: no overflow whatever the values, signs or dropouts
//! (dropouts only shrink n). With b = 32 (4 bytes per parameter) and 2,000 participants,
//! L = 1,073,741: about 21 bits of resolution per value.
//!
//! **Rounding.** Stochastic rounding with draws from the caller's CSPRNG: x·L/c = f + p with
//! f = ⌊x·L/c⌋ and p ∈ [0, 1) becomes f + 1 with probability p and f otherwise, so
//! E[q] = x·L/c exactly (unbiased), and the error of a sum of n values grows like √n steps
//! rather than n.

use rand::{CryptoRng, Rng, RngCore};

use crate::error::Error;

/// How values are clipped and scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    clip: f32,
    max_participants: usize,
    modulus_bits: u32,
    levels: u32,
}

impl Quantizer {
    /// The finest quantizer whose sums over up to `max_participants` never wrap, with b = 32:
    /// 4 bytes per parameter, the most a `u32` word carries.
    pub fn new(clip: f32, max_participants: usize) -> Result<Quantizer, Error> {
        Quantizer::with_modulus_bits(clip, max_participants, 32)
    }

    /// As [`Quantizer::new`] with an explicit modulus 2^b, b in 2..=32.
    pub fn with_modulus_bits(
        clip: f32,
        max_participants: usize,
        modulus_bits: u32,
    ) -> Result<Quantizer, Error> {
        let invalid = |reason: String| Error::Quantization { reason };
        if !(clip.is_finite() && clip > 0.0) {
            return Err(invalid(format!(
                "clip bound {clip} must be positive and finite"
            )));
        }
        if !(2..=32).contains(&modulus_bits) {
            return Err(invalid(format!(
                "modulus bits {modulus_bits} must be in 2..=32"
            )));
        }
        let half_range = (1u64 << (modulus_bits - 1)) - 1;
        if max_participants == 0 || max_participants as u64 > half_range {
            return Err(invalid(format!(
                "{max_participants} participants cannot share 2^{modulus_bits}: at least one level per side needs n ≤ {half_range}"
            )));
        }
        let levels = (half_range / max_participants as u64) as u32;
        Ok(Quantizer {
            clip,
            max_participants,
            modulus_bits,
            levels,
        })
    }

    /// The clip bound c.
    pub fn clip(&self) -> f32 {
        self.clip
    }

    /// Bits b of the modulus; use the same in the round config.
    pub fn modulus_bits(&self) -> u32 {
        self.modulus_bits
    }

    /// Levels L per side: values are multiples of c / L in [−c, c].
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// The largest number of participants whose sum is guaranteed not to wrap.
    pub fn max_participants(&self) -> usize {
        self.max_participants
    }

    /// The size of one quantization step, c / L.
    pub fn step(&self) -> f64 {
        self.clip as f64 / self.levels as f64
    }

    /// Clips, scales and stochastically rounds `values` into words mod 2^b. Fails on NaN
    /// (infinities clip to ±c).
    pub fn quantize<R: CryptoRng + RngCore>(
        &self,
        values: &[f32],
        rng: &mut R,
    ) -> Result<Vec<u32>, Error> {
        let scale = self.levels as f64 / self.clip as f64;
        let limit = self.levels as i64;
        let word_mask = crate::config::word_mask(self.modulus_bits);
        values
            .iter()
            .enumerate()
            .map(|(position, &value)| {
                if value.is_nan() {
                    return Err(Error::Quantization {
                        reason: format!("value {position} is NaN"),
                    });
                }
                let clipped = value.clamp(-self.clip, self.clip) as f64;
                let scaled = clipped * scale;
                let floor = scaled.floor();
                let fraction = scaled - floor;
                let up = rng.random::<f64>() < fraction;
                let level = (floor as i64 + i64::from(up)).clamp(-limit, limit);
                Ok((level as i32 as u32) & word_mask)
            })
            .collect()
    }

    /// Decodes a sum mod 2^b (of at most `max_participants` quantized vectors) back to `f32`,
    /// reading each word as the centered representative in [−2^(b−1), 2^(b−1)).
    pub fn decode_sum(&self, sum: &[u32]) -> Vec<f32> {
        let step = self.step();
        sum.iter()
            .map(|&word| (self.centered(word) as f64 * step) as f32)
            .collect()
    }

    /// The integer a word mod 2^b stands for, in [−2^(b−1), 2^(b−1)).
    pub fn centered(&self, word: u32) -> i64 {
        let modulus = 1i64 << self.modulus_bits;
        let word = word as i64 & (modulus - 1);
        if word >= modulus / 2 {
            word - modulus
        } else {
            word
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn wrapping_sum(vectors: &[Vec<u32>], bits: u32) -> Vec<u32> {
        let mask = crate::config::word_mask(bits);
        let mut sum = vec![0u32; vectors[0].len()];
        for vector in vectors {
            for (acc, &w) in sum.iter_mut().zip(vector) {
                *acc = acc.wrapping_add(w);
            }
        }
        sum.iter().map(|w| w & mask).collect()
    }

    /// The documented bound, at n = 2,000 with every value at ±c: the modular sum of 2,000
    /// extreme vectors decodes to exactly ±2,000·c (and mixed signs to their exact difference).
    #[test]
    fn two_thousand_participants_at_the_clip_bound_do_not_overflow() {
        let n = 2_000;
        let clip = 0.5f32;
        let quantizer = Quantizer::new(clip, n).unwrap();
        assert_eq!(quantizer.modulus_bits(), 32);
        assert_eq!(quantizer.levels(), 1_073_741);
        assert!(n as u64 * u64::from(quantizer.levels()) < 1u64 << 31);
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let plus = quantizer
            .quantize(&[clip, 10.0, f32::INFINITY], &mut rng)
            .unwrap();
        let minus = quantizer
            .quantize(&[-clip, -10.0, f32::NEG_INFINITY], &mut rng)
            .unwrap();
        for (vectors, expected) in [
            (vec![plus.clone(); n], n as f64 * clip as f64),
            (vec![minus.clone(); n], -(n as f64) * clip as f64),
        ] {
            let sum = wrapping_sum(&vectors, 32);
            for (&word, decoded) in sum.iter().zip(quantizer.decode_sum(&sum)) {
                assert_eq!(
                    quantizer.centered(word),
                    (expected / quantizer.step()).round() as i64
                );
                assert!(
                    (decoded as f64 - expected).abs() < 1e-3,
                    "{decoded} vs {expected}"
                );
            }
        }
        // 1,999 at +c and 1 at −c: exact difference.
        let mut mixed = vec![plus; n - 1];
        mixed.push(minus);
        let sum = wrapping_sum(&mixed, 32);
        let decoded = quantizer.decode_sum(&sum);
        assert!((decoded[0] as f64 - 1_998.0 * clip as f64).abs() < 1e-3);
    }

    #[test]
    fn the_bound_holds_for_every_modulus_and_count_checked() {
        for bits in [2u32, 8, 16, 20, 31, 32] {
            for n in [1usize, 2, 3, 100, 2_000, 65_535] {
                let Ok(quantizer) = Quantizer::with_modulus_bits(1.0, n, bits) else {
                    assert!(n as u64 > (1u64 << (bits - 1)) - 1, "bits {bits} n {n}");
                    continue;
                };
                let worst = n as u64 * quantizer.levels() as u64;
                assert!(worst < 1u64 << (bits - 1), "bits {bits} n {n}");
                assert!(quantizer.levels() >= 1);
            }
        }
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        let quantizer = Quantizer::with_modulus_bits(1.0, 1, 8).unwrap();
        // L = 127: 0.3 sits 0.1 of a step above level 38.
        let value = 0.3f32;
        let exact = value as f64 * 127.0;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let n_draws = 200_000;
        let values = vec![value; n_draws];
        let words = quantizer.quantize(&values, &mut rng).unwrap();
        let levels: Vec<i64> = words.iter().map(|&w| quantizer.centered(w)).collect();
        assert!(levels.iter().all(|&l| l == 38 || l == 39));
        let mean = levels.iter().sum::<i64>() as f64 / n_draws as f64;
        // Bernoulli(0.1) mean: standard error 0.3/√200000 ≈ 0.00067; allow 5 of them.
        assert!((mean - exact).abs() < 0.0034, "mean {mean} vs {exact}");
    }

    #[test]
    fn representable_values_are_exact_and_decoding_is_centered() {
        let quantizer = Quantizer::with_modulus_bits(2.0, 3, 16).unwrap();
        let step = quantizer.step() as f32;
        let values = [0.0, step, -step, 5.0 * step, -2.0];
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let words = quantizer.quantize(&values, &mut rng).unwrap();
        let decoded = quantizer.decode_sum(&words);
        for (a, b) in values.iter().zip(&decoded) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(words.iter().all(|&w| w < 1 << 16));
    }

    #[test]
    fn bad_settings_and_nan_are_errors() {
        assert!(Quantizer::new(0.0, 10).is_err());
        assert!(Quantizer::new(f32::NAN, 10).is_err());
        assert!(Quantizer::new(1.0, 0).is_err());
        assert!(Quantizer::with_modulus_bits(1.0, 10, 33).is_err());
        assert!(Quantizer::with_modulus_bits(1.0, 200, 8).is_err());
        let quantizer = Quantizer::new(1.0, 10).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let error = quantizer.quantize(&[0.0, f32::NAN], &mut rng).unwrap_err();
        assert_eq!(error.to_string(), "quantization: value 1 is NaN");
    }
}
