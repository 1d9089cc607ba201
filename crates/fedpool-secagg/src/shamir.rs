//! Shamir secret sharing of 32-byte secrets over the prime field GF(p), p = 2^61 − 1.
//!
//! The one primitive this crate implements itself (everything else comes from RustCrypto and
//! dalek). A secret is cut into five chunks of at most 56 bits (4 × 7 bytes + 4 bytes), each
//! below p, and each chunk is shared with its own random polynomial of degree t − 1. Shamir's
//! secrecy is information-theoretic in any field larger than the number of shares; what it needs
//! is coefficients uniform over the whole field, which [`random_element`] draws by rejection
//! (unlike the `sharks` crate, whose reduction is biased). The evaluation point of the share held
//! by participant i is i + 1, never 0.

use rand::{CryptoRng, RngCore};

/// The Mersenne prime 2^61 − 1.
pub(crate) const P: u64 = (1 << 61) - 1;
/// Field elements per 32-byte secret.
pub(crate) const CHUNKS: usize = 5;
/// Bytes of a 32-byte secret in each chunk.
const CHUNK_BYTES: [usize; CHUNKS] = [7, 7, 7, 7, 4];

/// One participant's share of one 32-byte secret: the five polynomial values at its point.
/// Each value is below 2^61 − 1.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShareValue(pub(crate) [u64; CHUNKS]);

impl std::fmt::Debug for ShareValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shares are secret material; never print them.
        f.write_str("ShareValue(..)")
    }
}

impl ShareValue {
    /// Bytes of the encoding: five little-endian u64.
    pub const BYTES: usize = 8 * CHUNKS;

    /// The encoding: five little-endian u64.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        for (dst, value) in out.chunks_exact_mut(8).zip(self.0) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// Parses the encoding; `None` if a value is not a field element.
    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Option<ShareValue> {
        let mut values = [0u64; CHUNKS];
        for (value, src) in values.iter_mut().zip(bytes.chunks_exact(8)) {
            *value = u64::from_le_bytes(src.try_into().expect("8-byte chunk"));
            if *value >= P {
                return None;
            }
        }
        Some(ShareValue(values))
    }
}

impl zeroize::Zeroize for ShareValue {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Why shares did not give back a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShamirError {
    /// Fewer shares than the threshold.
    TooFew { have: usize, threshold: usize },
    /// Two shares claim the same evaluation point, or a point is 0.
    BadPoints,
    /// The interpolated chunks do not encode a 32-byte secret (a chunk is out of range), so at
    /// least one share is wrong.
    Inconsistent,
}

/// Splits `secret` into one share per point in `points` (all distinct and nonzero), any
/// `threshold` of which rebuild it and any `threshold − 1` of which reveal nothing.
pub(crate) fn split<R: CryptoRng + RngCore>(
    secret: &[u8; 32],
    threshold: usize,
    points: &[u64],
    rng: &mut R,
) -> Vec<ShareValue> {
    debug_assert!(threshold >= 1 && threshold <= points.len());
    let chunks = secret_to_chunks(secret);
    let mut shares = vec![ShareValue([0; CHUNKS]); points.len()];
    // coefficients[c] = [a_0 = chunk, a_1, …, a_{t−1}] for chunk c.
    let mut coefficients = vec![0u64; threshold];
    for (c, &chunk) in chunks.iter().enumerate() {
        coefficients[0] = chunk;
        for coefficient in &mut coefficients[1..] {
            *coefficient = random_element(rng);
        }
        for (share, &x) in shares.iter_mut().zip(points) {
            share.0[c] = horner(&coefficients, x);
        }
    }
    zeroize::Zeroize::zeroize(&mut coefficients);
    shares
}

/// Rebuilds a secret from `(point, share)` pairs; uses the first `threshold` of them.
pub(crate) fn reconstruct(
    shares: &[(u64, ShareValue)],
    threshold: usize,
) -> Result<[u8; 32], ShamirError> {
    if shares.len() < threshold || threshold == 0 {
        return Err(ShamirError::TooFew {
            have: shares.len(),
            threshold,
        });
    }
    let used = &shares[..threshold];
    let points: Vec<u64> = used.iter().map(|&(x, _)| x).collect();
    let weights = lagrange_at_zero(&points)?;
    let mut chunks = [0u64; CHUNKS];
    for (weight, (_, share)) in weights.iter().zip(used) {
        for (chunk, &y) in chunks.iter_mut().zip(&share.0) {
            *chunk = add(*chunk, mul(*weight, y));
        }
    }
    chunks_to_secret(&chunks).ok_or(ShamirError::Inconsistent)
}

/// λ_i = Π_{j≠i} x_j / (x_j − x_i): the weights that interpolate a polynomial at 0.
fn lagrange_at_zero(points: &[u64]) -> Result<Vec<u64>, ShamirError> {
    let mut sorted = points.to_vec();
    sorted.sort_unstable();
    if sorted.first() == Some(&0) || sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(ShamirError::BadPoints);
    }
    if sorted.last().is_some_and(|&x| x >= P) {
        return Err(ShamirError::BadPoints);
    }
    let mut weights = Vec::with_capacity(points.len());
    for (i, &xi) in points.iter().enumerate() {
        let mut numerator = 1u64;
        let mut denominator = 1u64;
        for (j, &xj) in points.iter().enumerate() {
            if i != j {
                numerator = mul(numerator, xj);
                denominator = mul(denominator, sub(xj, xi));
            }
        }
        weights.push(mul(numerator, inverse(denominator)));
    }
    Ok(weights)
}

fn secret_to_chunks(secret: &[u8; 32]) -> [u64; CHUNKS] {
    let mut chunks = [0u64; CHUNKS];
    let mut offset = 0;
    for (chunk, &len) in chunks.iter_mut().zip(&CHUNK_BYTES) {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&secret[offset..offset + len]);
        *chunk = u64::from_le_bytes(bytes);
        offset += len;
    }
    chunks
}

fn chunks_to_secret(chunks: &[u64; CHUNKS]) -> Option<[u8; 32]> {
    let mut secret = [0u8; 32];
    let mut offset = 0;
    for (&chunk, &len) in chunks.iter().zip(&CHUNK_BYTES) {
        if chunk >> (8 * len) != 0 {
            return None;
        }
        secret[offset..offset + len].copy_from_slice(&chunk.to_le_bytes()[..len]);
        offset += len;
    }
    Some(secret)
}

/// A uniform element of GF(p): 61 random bits, rejecting the single value p (probability 2^−61).
pub(crate) fn random_element<R: CryptoRng + RngCore>(rng: &mut R) -> u64 {
    loop {
        let candidate = rng.next_u64() >> 3;
        if candidate < P {
            return candidate;
        }
    }
}

fn horner(coefficients: &[u64], x: u64) -> u64 {
    coefficients
        .iter()
        .rev()
        .fold(0, |acc, &coefficient| add(mul(acc, x), coefficient))
}

pub(crate) fn add(a: u64, b: u64) -> u64 {
    let sum = a + b; // < 2^62, no overflow
    if sum >= P { sum - P } else { sum }
}

pub(crate) fn sub(a: u64, b: u64) -> u64 {
    if a >= b { a - b } else { a + P - b }
}

pub(crate) fn mul(a: u64, b: u64) -> u64 {
    let product = a as u128 * b as u128; // < 2^122
    // 2^61 ≡ 1 (mod p): fold the high bits onto the low ones.
    let low = (product as u64) & P;
    let high = (product >> 61) as u64;
    add(low, high)
}

fn pow(mut base: u64, mut exponent: u64) -> u64 {
    let mut result = 1;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exponent >>= 1;
    }
    result
}

/// a^(p−2) = a^−1 for a ≠ 0 (Fermat).
pub(crate) fn inverse(a: u64) -> u64 {
    debug_assert!(a != 0);
    pow(a, P - 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn reference_mul(a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % P as u128) as u64
    }

    proptest! {
        #[test]
        fn field_ops_match_u128_reference(a in 0..P, b in 0..P) {
            prop_assert_eq!(mul(a, b), reference_mul(a, b));
            prop_assert_eq!(add(a, b) as u128, (a as u128 + b as u128) % P as u128);
            prop_assert_eq!(add(sub(a, b), b), a);
            if a != 0 {
                prop_assert_eq!(mul(a, inverse(a)), 1);
            }
        }

        #[test]
        fn any_threshold_subset_rebuilds_the_secret(
            secret in any::<[u8; 32]>(),
            n_shares in 2usize..12,
            threshold_seed in any::<usize>(),
            subset_seed in any::<u64>(),
            rng_seed in any::<u64>(),
        ) {
            let threshold = 1 + threshold_seed % n_shares;
            let points: Vec<u64> = (1..=n_shares as u64).map(|i| i * 7).collect();
            let mut rng = ChaCha20Rng::seed_from_u64(rng_seed);
            let shares = split(&secret, threshold, &points, &mut rng);
            let mut pairs: Vec<(u64, ShareValue)> = points.iter().copied().zip(shares).collect();
            // A seeded rotation and reversal picks a different subset and order each case.
            let len = pairs.len();
            pairs.rotate_left((subset_seed as usize) % len);
            if subset_seed & 1 == 1 {
                pairs.reverse();
            }
            prop_assert_eq!(reconstruct(&pairs[..threshold], threshold), Ok(secret));
            prop_assert_eq!(reconstruct(&pairs, threshold), Ok(secret));
        }
    }

    #[test]
    fn fewer_than_threshold_shares_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let shares = split(&[9; 32], 3, &[1, 2, 3], &mut rng);
        let pairs = [(1, shares[0]), (2, shares[1])];
        assert_eq!(
            reconstruct(&pairs, 3),
            Err(ShamirError::TooFew {
                have: 2,
                threshold: 3
            })
        );
    }

    #[test]
    fn duplicate_or_zero_points_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let shares = split(&[9; 32], 2, &[1, 2], &mut rng);
        assert_eq!(
            reconstruct(&[(1, shares[0]), (1, shares[1])], 2),
            Err(ShamirError::BadPoints)
        );
        assert_eq!(
            reconstruct(&[(0, shares[0]), (1, shares[1])], 2),
            Err(ShamirError::BadPoints)
        );
    }

    /// A share replaced by garbage interpolates to chunks uniform in GF(p), which pass the
    /// range check with probability 2^−5 each (2^−29 for the last): about 2^−49 in all. (A
    /// crafted small offset can pass; shares come from authenticated neighbours, and the
    /// server additionally checks a rebuilt masking key against its advertised public key.)
    #[test]
    fn a_garbage_share_is_detected_by_the_chunk_range_check() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let shares = split(&[0xAB; 32], 3, &[1, 2, 3], &mut rng);
        let mut bad = shares[1];
        for value in &mut bad.0 {
            *value = random_element(&mut rng);
        }
        let pairs = [(1, shares[0]), (2, bad), (3, shares[2])];
        assert_eq!(reconstruct(&pairs, 3), Err(ShamirError::Inconsistent));
    }

    /// With t = 2, the share at one point is a_0 + a_1·x with a_1 uniform, so it is uniform
    /// whatever the secret: a chi-square test over its top 4 bits across many splits of the
    /// same secret finds no structure.
    #[test]
    fn a_single_share_below_threshold_looks_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut bins = [0u64; 16];
        let n_samples = 16_000;
        for _ in 0..n_samples {
            let shares = split(&[0u8; 32], 2, &[1, 2], &mut rng);
            bins[(shares[0].0[0] >> 57) as usize] += 1;
        }
        let expected = n_samples as f64 / 16.0;
        let chi_square: f64 = bins
            .iter()
            .map(|&observed| (observed as f64 - expected).powi(2) / expected)
            .sum();
        // 15 degrees of freedom: the 0.999 quantile is 37.7.
        assert!(chi_square < 37.7, "chi-square {chi_square}: {bins:?}");
    }

    #[test]
    fn share_encoding_round_trips_and_rejects_non_field_values() {
        let share = ShareValue([0, 1, P - 1, 42, 7]);
        assert_eq!(ShareValue::from_bytes(&share.to_bytes()), Some(share));
        let mut bytes = share.to_bytes();
        bytes[..8].copy_from_slice(&P.to_le_bytes());
        assert_eq!(ShareValue::from_bytes(&bytes), None);
    }
}
