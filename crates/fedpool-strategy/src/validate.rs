//! Checks every strategy runs on its input: shapes up front, finiteness inside the streaming
//! passes so that no update is read twice just to be validated.

use crate::{ClientUpdate, StrategyError};

/// Lanes of the finite probe and of the accumulators in the other kernels: 16 `f32` are two AVX
/// registers or four SSE ones, enough independent chains for the compiler to vectorize without
/// `-ffast-math`-style reassociation.
pub(crate) const LANES: usize = 16;

/// Rejects an empty round and any update whose length differs from the model's.
///
/// This is O(n) and runs before any pass over the data, so a bad length never leaves a
/// half-updated model behind.
pub(crate) fn check_shapes(
    strategy: &'static str,
    global_len: usize,
    updates: &[ClientUpdate<'_>],
) -> Result<(), StrategyError> {
    if updates.is_empty() {
        return Err(StrategyError::NoUpdates { strategy });
    }
    match updates
        .iter()
        .position(|update| update.delta.len() != global_len)
    {
        Some(update_idx) => Err(StrategyError::LengthMismatch {
            strategy,
            update_idx,
            got: updates[update_idx].delta.len(),
            expected: global_len,
        }),
        None => Ok(()),
    }
}

/// True when every value is finite.
///
/// `x - x` is 0 for finite `x` and NaN for NaN and ±inf, and a NaN lane never returns to 0, so
/// summing it into independent lanes detects any non-finite value with one vectorized
/// subtract-add per element and no branch in the loop.
#[expect(clippy::eq_op, reason = "x - x is the finiteness test, not a zero")]
pub(crate) fn all_finite(values: &[f32]) -> bool {
    let mut probe = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (p, &x) in probe.iter_mut().zip(chunk) {
            *p += x - x;
        }
    }
    for (p, &x) in probe.iter_mut().zip(tail) {
        *p += x - x;
    }
    probe.iter().all(|&p| p == 0.0)
}

/// Names the first update (in `update_indices` order) holding a non-finite value inside
/// `start..end`, and its first such position.
///
/// Kernels walk the coordinates block by block in increasing order and call this for the first
/// block that failed their probe, so the position reported is that update's first non-finite
/// position overall.
pub(crate) fn find_non_finite(
    strategy: &'static str,
    updates: &[ClientUpdate<'_>],
    update_indices: impl IntoIterator<Item = usize>,
    start: usize,
    end: usize,
) -> Option<StrategyError> {
    update_indices.into_iter().find_map(|update_idx| {
        let block = updates.get(update_idx)?.delta.get(start..end)?;
        let offset = block.iter().position(|x| !x.is_finite())?;
        Some(StrategyError::NonFinite {
            strategy,
            update_idx,
            param_idx: start + offset,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_detects_every_kind_of_non_finite_at_every_lane() {
        for len in [0, 1, 15, 16, 17, 33, 100] {
            let clean = vec![1.5f32; len];
            assert!(all_finite(&clean), "len {len}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for pos in 0..len {
                    let mut values = clean.clone();
                    values[pos] = bad;
                    assert!(!all_finite(&values), "len {len}, {bad} at {pos}");
                }
            }
        }
        assert!(all_finite(&[f32::MAX, f32::MIN, -0.0, f32::MIN_POSITIVE]));
    }
}
