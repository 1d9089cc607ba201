//! Weighted averaging: FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020), and the
//! streaming weighted-mean kernel that the server optimizers and MultiKrum share.

use crate::validate::{all_finite, check_shapes, find_non_finite};
use crate::{AggregateReport, ClientUpdate, Strategy, StrategyError};

/// Federated averaging (McMahan et al. 2017, Algorithm 1): the new model is the global model
/// plus the mean of the client deltas weighted by their example counts,
/// `global += Σ nᵢ Δᵢ / Σ nᵢ`.
///
/// Every update is also checked for length and finiteness, in the same single pass over the data
/// that averages it. The report's `selected` lists the updates with a nonzero example count:
/// the others had no say.
#[derive(Debug, Clone, Default)]
pub struct FedAvg {
    mean: MeanDelta,
}

impl FedAvg {
    /// FedAvg has no hyperparameters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> &'static str {
        "fedavg"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        let selected = self.mean.compute(self.name(), global.len(), updates)?;
        add_assign(global, self.mean.as_slice());
        Ok(AggregateReport {
            n_updates: updates.len(),
            selected,
        })
    }
}

/// FedProx (Li et al. 2020): FedAvg on the server; the difference is on the clients, which add
/// `μ/2 ‖w − w_global‖²` to their local loss so heterogeneous local work drifts less
/// (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", Eq. 2). The server only publishes μ through
/// [`Strategy::proximal_mu`].
#[derive(Debug, Clone)]
pub struct FedProx {
    mu: f32,
    avg: FedAvg,
}

impl FedProx {
    /// Default μ. Li et al. 2020 tune μ over {0.001, 0.01, 0.1, 1} in their experiments; 0.01 is a mild
    /// pull towards the global model that rarely slows homogeneous training.
    pub const DEFAULT_MU: f32 = 0.01;

    /// FedProx with proximal coefficient `mu` (μ ≥ 0; μ = 0 is FedAvg).
    pub fn new(mu: f32) -> Self {
        Self {
            mu,
            avg: FedAvg::new(),
        }
    }
}

impl Default for FedProx {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MU)
    }
}

impl Strategy for FedProx {
    fn name(&self) -> &'static str {
        "fedprox"
    }

    fn proximal_mu(&self) -> f32 {
        self.mu
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        let selected = self.avg.mean.compute(self.name(), global.len(), updates)?;
        add_assign(global, self.avg.mean.as_slice());
        Ok(AggregateReport {
            n_updates: updates.len(),
            selected,
        })
    }
}

/// The example-weighted mean delta of a round, in a buffer kept across rounds so a
/// million-parameter model does not allocate 4 MB every round.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeanDelta {
    buf: Vec<f32>,
}

impl MeanDelta {
    /// Validates `updates` and computes their example-weighted mean; returns the indices of the
    /// updates with a nonzero weight.
    pub(crate) fn compute(
        &mut self,
        strategy: &'static str,
        global_len: usize,
        updates: &[ClientUpdate<'_>],
    ) -> Result<Vec<usize>, StrategyError> {
        check_shapes(strategy, global_len, updates)?;
        let weights = example_weights(strategy, updates)?;
        self.buf.resize(global_len, 0.0);
        weighted_mean_into(strategy, updates, &weights, &mut self.buf)?;
        Ok(weights
            .iter()
            .filter(|&&(_, weight)| weight > 0.0)
            .map(|&(update_idx, _)| update_idx)
            .collect())
    }

    /// The mean computed by the last successful [`MeanDelta::compute`].
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.buf
    }
}

/// Coordinates per block of the weighted-mean kernel: 8192 `f32` are 32 KiB, so the output
/// block stays in L1/L2 while every update streams through it once.
pub(crate) const MEAN_BLOCK: usize = 8192;

/// FedAvg weights `nᵢ / Σ n`, one `(update_idx, weight)` per update, zero weights included so
/// the kernel still checks those updates for NaN.
pub(crate) fn example_weights(
    strategy: &'static str,
    updates: &[ClientUpdate<'_>],
) -> Result<Vec<(usize, f32)>, StrategyError> {
    // Summed in f64: a usize sum could overflow in principle, and f64 keeps the ratio exact
    // enough that the weights add up to 1 within an f32 rounding.
    let total: f64 = updates.iter().map(|u| u.n_examples as f64).sum();
    if total <= 0.0 {
        return Err(StrategyError::ZeroTotalWeight { strategy });
    }
    Ok(updates
        .iter()
        .enumerate()
        .map(|(update_idx, u)| (update_idx, (u.n_examples as f64 / total) as f32))
        .collect())
}

/// Writes `Σ wᵢ · updates[i].delta` into `out`, for `(i, wᵢ)` in `weights`, checking in the same
/// pass that every value read is finite.
///
/// The pass is blocked: for each block of [`MEAN_BLOCK`] coordinates, every update's block is
/// added into the output block, which therefore stays in cache while the updates stream from
/// memory exactly once. The finite check rides on the accumulator: a NaN or infinity in any
/// input makes its output coordinate non-finite (even with weight 0, since `0 · ∞` is NaN), so
/// only a block whose output fails the probe is rescanned to name the culprit.
///
/// The weights are expected to sum to at most about 1, so for finite inputs the exact result is
/// bounded by the largest input; if f32 rounding still overflows a block, it is recomputed in
/// f64.
pub(crate) fn weighted_mean_into(
    strategy: &'static str,
    updates: &[ClientUpdate<'_>],
    weights: &[(usize, f32)],
    out: &mut [f32],
) -> Result<(), StrategyError> {
    let expected = out.len();
    for (block_idx, out_block) in out.chunks_mut(MEAN_BLOCK).enumerate() {
        let start = block_idx * MEAN_BLOCK;
        let end = start + out_block.len();
        let mut first = true;
        // Four updates per sweep of the output block: four input streams in flight at once
        // keep more memory requests outstanding than one, and the output block is loaded and
        // stored a quarter as often.
        let mut groups = weights.chunks_exact(4);
        for group in groups.by_ref() {
            let mut srcs: [&[f32]; 4] = [&[]; 4];
            for (src, &(update_idx, _)) in srcs.iter_mut().zip(group) {
                *src = block_of(strategy, updates, update_idx, start, end, expected)?;
            }
            let ws = [group[0].1, group[1].1, group[2].1, group[3].1];
            axpy4(out_block, ws, srcs, first);
            first = false;
        }
        for &(update_idx, weight) in groups.remainder() {
            let src = block_of(strategy, updates, update_idx, start, end, expected)?;
            if first {
                scale_into(out_block, weight, src);
                first = false;
            } else {
                axpy(out_block, weight, src);
            }
        }
        if first {
            out_block.fill(0.0);
        }
        if !all_finite(out_block) {
            let update_indices = weights.iter().map(|&(update_idx, _)| update_idx);
            if let Some(err) = find_non_finite(strategy, updates, update_indices, start, end) {
                return Err(err);
            }
            weighted_mean_block_f64(updates, weights, start, out_block);
        }
    }
    Ok(())
}

/// `global += delta`, element-wise.
pub(crate) fn add_assign(global: &mut [f32], delta: &[f32]) {
    for (g, &d) in global.iter_mut().zip(delta) {
        *g += d;
    }
}

/// The `start..end` block of one update, or the length error if it is too short (callers check
/// shapes first; this keeps the kernel panic-free regardless).
fn block_of<'a>(
    strategy: &'static str,
    updates: &[ClientUpdate<'a>],
    update_idx: usize,
    start: usize,
    end: usize,
    expected: usize,
) -> Result<&'a [f32], StrategyError> {
    let delta = updates.get(update_idx).map_or(&[][..], |u| u.delta);
    delta.get(start..end).ok_or(StrategyError::LengthMismatch {
        strategy,
        update_idx,
        got: delta.len(),
        expected,
    })
}

// Plain zipped loops with no cross-iteration dependency: LLVM vectorizes them without bounds
// checks, which is all the throughput a memory-bound pass can use.

fn scale_into(acc: &mut [f32], weight: f32, src: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(src) {
        *a = weight * x;
    }
}

/// `acc = Σ wₖ srcₖ` (`overwrite`) or `acc += Σ wₖ srcₖ`, for four sources of `acc`'s length.
fn axpy4(acc: &mut [f32], weights: [f32; 4], srcs: [&[f32]; 4], overwrite: bool) {
    let len = acc.len();
    // Re-slicing to one length lets LLVM drop the bounds checks in the loop.
    let (a, b, c, d) = (
        &srcs[0][..len],
        &srcs[1][..len],
        &srcs[2][..len],
        &srcs[3][..len],
    );
    let [wa, wb, wc, wd] = weights;
    if overwrite {
        for i in 0..len {
            acc[i] = wa * a[i] + wb * b[i] + wc * c[i] + wd * d[i];
        }
    } else {
        for i in 0..len {
            acc[i] += wa * a[i] + wb * b[i] + wc * c[i] + wd * d[i];
        }
    }
}

fn axpy(acc: &mut [f32], weight: f32, src: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(src) {
        *a += weight * x;
    }
}

/// The slow path of [`weighted_mean_into`] for a block of finite inputs whose f32 sum overflowed.
fn weighted_mean_block_f64(
    updates: &[ClientUpdate<'_>],
    weights: &[(usize, f32)],
    start: usize,
    out_block: &mut [f32],
) {
    for (offset, out) in out_block.iter_mut().enumerate() {
        let sum: f64 = weights
            .iter()
            .filter_map(|&(update_idx, weight)| {
                let x = *updates.get(update_idx)?.delta.get(start + offset)?;
                Some(f64::from(weight) * f64::from(x))
            })
            .sum();
        *out = sum as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::check;

    #[test]
    fn fedavg_weights_by_examples() {
        let mut s = FedAvg::new();
        // (1·[1, 2] + 3·[5, -2]) / 4 = [4, -1].
        check(
            &mut s,
            &[10.0, 10.0],
            &[(&[1.0, 2.0], 1), (&[5.0, -2.0], 3)],
            Ok((&[14.0, 9.0], &[0, 1])),
        );
        // One update: its delta is applied as is.
        check(&mut s, &[0.5], &[(&[0.25], 7)], Ok((&[0.75], &[0])));
        // A zero-example update has no say and is not reported as a contributor.
        check(
            &mut s,
            &[0.0],
            &[(&[100.0], 0), (&[2.0], 5)],
            Ok((&[2.0], &[1])),
        );
        // Empty model.
        check(&mut s, &[], &[(&[], 1), (&[], 2)], Ok((&[], &[0, 1])));
    }

    #[test]
    fn fedavg_spans_block_boundaries() {
        // Lengths around the block size exercise the tail block and the f32 lanes.
        for len in [
            MEAN_BLOCK - 1,
            MEAN_BLOCK,
            MEAN_BLOCK + 1,
            3 * MEAN_BLOCK + 17,
        ] {
            let a: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..len).map(|i| -(i as f32) + 4.0).collect();
            // (3a + b) / 4 = (2i + 4) / 4 = i/2 + 1.
            let want: Vec<f32> = (0..len).map(|i| i as f32 / 2.0 + 1.0).collect();
            check(
                &mut FedAvg::new(),
                &vec![0.0; len],
                &[(&a, 3), (&b, 1)],
                Ok((&want, &[0, 1])),
            );
        }
    }

    #[test]
    fn fedavg_recovers_from_f32_overflow_of_finite_inputs() {
        // Two updates at f32::MAX average to f32::MAX; a naive f32 sum would overflow to inf.
        let big = [f32::MAX, -f32::MAX];
        check(
            &mut FedAvg::new(),
            &[0.0, 0.0],
            &[(&big, 1), (&big, 1)],
            Ok((&big, &[0, 1])),
        );
    }

    #[test]
    fn fedprox_aggregates_like_fedavg_and_publishes_mu() {
        let mut s = FedProx::new(0.1);
        assert_eq!(s.proximal_mu(), 0.1);
        assert_eq!(FedAvg::new().proximal_mu(), 0.0);
        check(
            &mut s,
            &[1.0],
            &[(&[1.0], 1), (&[4.0], 2)],
            Ok((&[4.0], &[0, 1])),
        );
    }

    #[test]
    fn averaging_errors() {
        let nan_late = [0.0, 0.0, f32::NAN];
        let inf_early = [f32::NEG_INFINITY, 0.0, 0.0];
        let good = [1.0, 1.0, 1.0];
        type Case<'a> = (Vec<(&'a [f32], usize)>, StrategyError);
        let cases: Vec<Case<'_>> = vec![
            (vec![], StrategyError::NoUpdates { strategy: "fedavg" }),
            (
                vec![(&good, 1), (&good[..2], 1)],
                StrategyError::LengthMismatch {
                    strategy: "fedavg",
                    update_idx: 1,
                    got: 2,
                    expected: 3,
                },
            ),
            (
                vec![(&good, 1), (&nan_late, 1)],
                StrategyError::NonFinite {
                    strategy: "fedavg",
                    update_idx: 1,
                    param_idx: 2,
                },
            ),
            // A zero weight does not hide a NaN.
            (
                vec![(&good, 1), (&nan_late, 0)],
                StrategyError::NonFinite {
                    strategy: "fedavg",
                    update_idx: 1,
                    param_idx: 2,
                },
            ),
            (
                vec![(&nan_late, 1), (&inf_early, 1)],
                StrategyError::NonFinite {
                    strategy: "fedavg",
                    update_idx: 0,
                    param_idx: 2,
                },
            ),
            (
                vec![(&good, 0), (&good, 0)],
                StrategyError::ZeroTotalWeight { strategy: "fedavg" },
            ),
        ];
        for (updates, err) in cases {
            check(&mut FedAvg::new(), &[0.0; 3], &updates, Err(err));
        }
    }

    #[test]
    fn non_finite_is_found_in_a_later_block() {
        let mut bad = vec![0.0f32; 2 * MEAN_BLOCK + 5];
        bad[MEAN_BLOCK + 3] = f32::INFINITY;
        let good = vec![0.0f32; bad.len()];
        check(
            &mut FedAvg::new(),
            &good,
            &[(&good, 1), (&bad, 1)],
            Err(StrategyError::NonFinite {
                strategy: "fedavg",
                update_idx: 1,
                param_idx: MEAN_BLOCK + 3,
            }),
        );
    }
}
