//! The randomized Hadamard rotation `x ↦ H D_ξ x` that flattens a vector before
//! quantization (Kairouz, Liu, Steinke 2021, Algorithm 1 step 2; Lemma 29 there bounds how
//! flat the result is).
//!
//! `D_ξ` is a diagonal of random signs drawn from a seed shared by every client of a round,
//! `H` the Walsh–Hadamard matrix scaled by `1/√d` so that `HᵀH = I`. Both are symmetric
//! and self-inverse, so the inverse rotation is `D_ξ H`.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The random signs of `D_ξ` for a padded dimension `n`, derived deterministically from the
/// round's shared seed (ChaCha20, one bit per coordinate).
pub(crate) fn signs(seed: &[u8; 32], n: usize) -> Vec<bool> {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let word = rng.next_u64();
        for bit in 0..64 {
            if out.len() == n {
                break;
            }
            out.push((word >> bit) & 1 == 1);
        }
    }
    out
}

/// In-place orthonormal fast Walsh–Hadamard transform; `values.len()` must be a power of
/// two. `O(n log n)`, self-inverse.
pub(crate) fn fwht_normalized(values: &mut [f64]) {
    let n = values.len();
    debug_assert!(n.is_power_of_two());
    let mut half = 1;
    while half < n {
        for block in values.chunks_exact_mut(2 * half) {
            let (left, right) = block.split_at_mut(half);
            for (a, b) in left.iter_mut().zip(right.iter_mut()) {
                let (x, y) = (*a, *b);
                *a = x + y;
                *b = x - y;
            }
        }
        half *= 2;
    }
    let scale = 1.0 / (n as f64).sqrt();
    for v in values.iter_mut() {
        *v *= scale;
    }
}

/// `x ← H D_ξ x`.
pub(crate) fn rotate(values: &mut [f64], signs: &[bool]) {
    for (v, &negative) in values.iter_mut().zip(signs) {
        if negative {
            *v = -*v;
        }
    }
    fwht_normalized(values);
}

/// `x ← D_ξ H x`, the inverse of [`rotate`].
pub(crate) fn unrotate(values: &mut [f64], signs: &[bool]) {
    fwht_normalized(values);
    for (v, &negative) in values.iter_mut().zip(signs) {
        if negative {
            *v = -*v;
        }
    }
}
