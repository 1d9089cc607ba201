//! Coordinate-wise robust statistics: the median and the trimmed mean of Yin et al. 2018
//! ("Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", the two
//! aggregation options of its robust distributed gradient descent), and the blocked gather
//! kernel that Bulyan reuses.
//!
//! Both are unweighted: `n_examples` is self-reported, so weighting by it would let one
//! Byzantine client outvote the rest by claiming a huge dataset.

use crate::average::add_assign;
use crate::validate::{all_finite, check_shapes, find_non_finite};
use crate::{AggregateReport, ClientUpdate, Strategy, StrategyError};

/// Coordinate-wise median of the deltas (Yin et al. 2018): `global[j] += median_i Δᵢ[j]`.
/// With an even number of updates the two middle values are averaged.
///
/// It tolerates up to ⌈n/2⌉ − 1 arbitrary updates per coordinate, at the cost of ignoring the
/// example counts.
#[derive(Debug, Clone, Default)]
pub struct FedMedian {
    gather: Coordinatewise,
}

impl FedMedian {
    /// FedMedian has no hyperparameters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Strategy for FedMedian {
    fn name(&self) -> &'static str {
        "fedmedian"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        check_shapes(self.name(), global.len(), updates)?;
        // The median is the trimmed mean that keeps one value (odd n) or two (even n).
        let n_trim = (updates.len() - 1) / 2;
        let selected: Vec<usize> = (0..updates.len()).collect();
        self.gather
            .run(self.name(), updates, &selected, global.len(), |column| {
                trimmed_mean(column, n_trim)
            })?;
        add_assign(global, self.gather.as_slice());
        Ok(AggregateReport {
            n_updates: updates.len(),
            selected,
        })
    }
}

/// Coordinate-wise trimmed mean (Yin et al. 2018): for each coordinate, drop the ⌊βn⌋
/// largest and ⌊βn⌋ smallest values and average the rest.
///
/// It tolerates ⌊βn⌋ arbitrary updates. β = 0 is the plain (unweighted) mean; β → 0.5
/// approaches the median.
#[derive(Debug, Clone)]
pub struct FedTrimmedAvg {
    beta: f64,
    gather: Coordinatewise,
}

impl FedTrimmedAvg {
    /// Default β: trims 20% from each end, tolerating one Byzantine update in five like
    /// [`Krum`](crate::Krum)'s default, and Flower's default too.
    pub const DEFAULT_BETA: f64 = 0.2;

    /// Trimmed mean dropping ⌊`beta`·n⌋ values at each end (β in [0, 0.5)).
    pub fn new(beta: f64) -> Self {
        Self {
            beta,
            gather: Coordinatewise::default(),
        }
    }
}

impl Default for FedTrimmedAvg {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BETA)
    }
}

impl Strategy for FedTrimmedAvg {
    fn name(&self) -> &'static str {
        "fedtrimmedavg"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        check_shapes(self.name(), global.len(), updates)?;
        let n_updates = updates.len();
        let n_trim = fraction_of(self.beta, n_updates);
        // Only an out-of-range β (≥ 0.5, rejected by config validation) can trim everything.
        if n_updates <= 2 * n_trim {
            return Err(StrategyError::TooFewUpdates {
                strategy: self.name(),
                needed: 2 * n_trim + 1,
                got: n_updates,
                n_byzantine: n_trim,
            });
        }
        let selected: Vec<usize> = (0..n_updates).collect();
        self.gather
            .run(self.name(), updates, &selected, global.len(), |column| {
                trimmed_mean(column, n_trim)
            })?;
        add_assign(global, self.gather.as_slice());
        Ok(AggregateReport {
            n_updates,
            selected,
        })
    }
}

/// ⌊fraction · n⌋, robust to the representation error of decimal fractions (0.29 · 100 is
/// 28.999999999999996 in f64, which must count as 29) and to out-of-range fractions (NaN and
/// negatives give 0, values above 1 give at most n).
pub(crate) fn fraction_of(fraction: f64, n: usize) -> usize {
    let count = (fraction * n as f64 + 1e-9).floor();
    // `as` saturates and maps NaN to 0.
    (count as usize).min(n)
}

/// Mean of `column` without its `n_trim` smallest and `n_trim` largest values, found by two
/// selections (expected O(n)) rather than a sort. Summed in f64 so that averaging large finite
/// values cannot overflow. Requires `column.len() > 2 * n_trim`; returns 0 otherwise.
pub(crate) fn trimmed_mean(column: &mut [f32], n_trim: usize) -> f32 {
    let n_keep = column.len().saturating_sub(2 * n_trim);
    if n_keep == 0 {
        return 0.0;
    }
    let kept = if n_trim == 0 {
        &mut column[..]
    } else {
        // After these, column[..n_trim] holds the smallest values and rest[..n_keep] the next
        // n_keep, which leaves the n_trim largest in rest[n_keep..].
        column.select_nth_unstable_by(n_trim, f32::total_cmp);
        let rest = &mut column[n_trim..];
        rest.select_nth_unstable_by(n_keep - 1, f32::total_cmp);
        &mut rest[..n_keep]
    };
    let sum: f64 = kept.iter().map(|&x| f64::from(x)).sum();
    (sum / n_keep as f64) as f32
}

/// Values gathered per block of the coordinate-wise kernel: 16K `f32` (64 KiB) of scratch sit in
/// L2 next to the update blocks being read.
const GATHER_FLOATS: usize = 1 << 14;

/// The blocked gather kernel: for each coordinate, collects the chosen updates' values into a
/// small column and reduces it to one output value.
///
/// Gathering one coordinate at a time would touch one cache line per update per coordinate.
/// Instead a block of coordinates is transposed into scratch (each update's block read
/// sequentially, once), then each coordinate's column is reduced in place; so every update is
/// read once and the selection works on contiguous memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Coordinatewise {
    scratch: Vec<f32>,
    out: Vec<f32>,
}

impl Coordinatewise {
    /// Computes `reduce(column j)` for every coordinate `j < len`, where column j holds
    /// `updates[i].delta[j]` for `i` in `selected`, checking that every value is finite.
    pub(crate) fn run(
        &mut self,
        strategy: &'static str,
        updates: &[ClientUpdate<'_>],
        selected: &[usize],
        len: usize,
        mut reduce: impl FnMut(&mut [f32]) -> f32,
    ) -> Result<(), StrategyError> {
        let n_cols = selected.len();
        if n_cols == 0 {
            return Err(StrategyError::NoUpdates { strategy });
        }
        let block = (GATHER_FLOATS / n_cols).max(1);
        self.out.resize(len, 0.0);
        self.scratch.resize(block * n_cols, 0.0);
        let mut start = 0;
        while start < len {
            let end = (start + block).min(len);
            let scratch = &mut self.scratch[..(end - start) * n_cols];
            for (col_idx, &update_idx) in selected.iter().enumerate() {
                let delta = updates.get(update_idx).map_or(&[][..], |u| u.delta);
                let src = delta.get(start..end).ok_or(StrategyError::LengthMismatch {
                    strategy,
                    update_idx,
                    got: delta.len(),
                    expected: len,
                })?;
                for (row, &x) in scratch.chunks_exact_mut(n_cols).zip(src) {
                    row[col_idx] = x;
                }
            }
            if !all_finite(scratch) {
                let culprits = selected.iter().copied();
                if let Some(err) = find_non_finite(strategy, updates, culprits, start, end) {
                    return Err(err);
                }
            }
            for (out, column) in self.out[start..end]
                .iter_mut()
                .zip(scratch.chunks_exact_mut(n_cols))
            {
                *out = reduce(column);
            }
            start = end;
        }
        Ok(())
    }

    /// The output of the last successful [`Coordinatewise::run`].
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::check;

    #[test]
    fn median_per_coordinate() {
        let cases: Vec<(Vec<&[f32]>, &[f32])> = vec![
            // Odd n: the middle value, chosen per coordinate.
            (vec![&[1.0, 30.0], &[3.0, 10.0], &[2.0, 20.0]], &[2.0, 20.0]),
            // Even n: the mean of the two middle values.
            (vec![&[1.0], &[4.0], &[2.0], &[100.0]], &[3.0]),
            // One update: itself.
            (vec![&[-7.0, 0.5]], &[-7.0, 0.5]),
            // Two updates: their mean.
            (vec![&[1.0], &[2.0]], &[1.5]),
            // An outlier does not move it.
            (vec![&[1.0], &[1e30], &[1.1], &[0.9], &[-1e30]], &[1.0]),
        ];
        for (deltas, want) in cases {
            // The global model is offset by 10 to check that the median is added to it.
            let global = vec![10.0f32; want.len()];
            let want: Vec<f32> = want.iter().map(|w| w + 10.0).collect();
            let updates: Vec<(&[f32], usize)> = deltas.iter().map(|&d| (d, 1)).collect();
            let selected: Vec<usize> = (0..updates.len()).collect();
            check(
                &mut FedMedian::new(),
                &global,
                &updates,
                Ok((&want, &selected)),
            );
        }
    }

    #[test]
    fn trimmed_mean_per_coordinate() {
        let five: Vec<&[f32]> = vec![
            &[1.0, -5.0],
            &[2.0, 5.0],
            &[3.0, 0.0],
            &[4.0, 1.0],
            &[100.0, 2.0],
        ];
        type Case<'a> = (f64, Vec<&'a [f32]>, Result<&'a [f32], StrategyError>);
        let cases: Vec<Case<'_>> = vec![
            // β = 0.2, n = 5: drop one at each end. [2,3,4] → 3; [0,1,2] → 1.
            (0.2, five.clone(), Ok(&[3.0, 1.0])),
            // β = 0: the plain mean. (1+2+3+4+100)/5 = 22; (−5+5+0+1+2)/5 = 0.6.
            (0.0, five.clone(), Ok(&[22.0, 0.6])),
            // β = 0.1, n = 5: ⌊0.5⌋ = 0 trimmed.
            (0.1, five.clone(), Ok(&[22.0, 0.6])),
            // β = 0.4, n = 5: drop two at each end, the median.
            (0.4, five.clone(), Ok(&[3.0, 1.0])),
            // β = 0.3, n = 10: ⌊3.0000000000000004⌋ = 3 even with decimal rounding.
            (
                0.3,
                vec![
                    &[0.0],
                    &[0.0],
                    &[0.0],
                    &[1.0],
                    &[2.0],
                    &[3.0],
                    &[4.0],
                    &[9.0],
                    &[9.0],
                    &[9.0],
                ],
                Ok(&[2.5]),
            ),
            // β = 0.5 (out of range, rejected by config) trims everything from an even n.
            (
                0.5,
                vec![&[1.0], &[2.0]],
                Err(StrategyError::TooFewUpdates {
                    strategy: "fedtrimmedavg",
                    needed: 3,
                    got: 2,
                    n_byzantine: 1,
                }),
            ),
        ];
        for (beta, deltas, want) in cases {
            let updates: Vec<(&[f32], usize)> = deltas.iter().map(|&d| (d, 1)).collect();
            let selected: Vec<usize> = (0..updates.len()).collect();
            let global = vec![0.0f32; deltas[0].len()];
            check(
                &mut FedTrimmedAvg::new(beta),
                &global,
                &updates,
                want.map(|w| (w, &selected[..])),
            );
        }
    }

    #[test]
    fn fraction_of_counts_decimal_fractions_exactly() {
        let cases = [
            (0.29, 100, 29),
            (0.2, 10, 2),
            (0.2, 9, 1),
            (0.1, 30, 3),
            (0.0, 5, 0),
            (-0.5, 5, 0),
            (f64::NAN, 5, 0),
            (2.0, 5, 5),
            (f64::INFINITY, 5, 5),
        ];
        for (fraction, n, want) in cases {
            assert_eq!(fraction_of(fraction, n), want, "{fraction} of {n}");
        }
    }

    #[test]
    fn coordinatewise_spans_blocks_and_reports_errors() {
        // Three updates → blocks of GATHER_FLOATS / 3 coordinates; use several blocks.
        let len = GATHER_FLOATS + 7;
        let a: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..len).map(|i| -(i as f32)).collect();
        let c: Vec<f32> = vec![0.5; len];
        let want: Vec<f32> = (0..len).map(|i| if i == 0 { 0.0 } else { 0.5 }).collect();
        check(
            &mut FedMedian::new(),
            &vec![0.0; len],
            &[(&a, 1), (&b, 1), (&c, 1)],
            Ok((&want, &[0, 1, 2])),
        );

        let mut bad = c.clone();
        bad[len - 1] = f32::NAN;
        for mut s in [
            Box::new(FedMedian::new()) as Box<dyn Strategy>,
            Box::new(FedTrimmedAvg::default()),
        ] {
            let name = s.name();
            check(
                s.as_mut(),
                &vec![0.0; len],
                &[(&a, 1), (&b, 1), (&bad, 1)],
                Err(StrategyError::NonFinite {
                    strategy: name,
                    update_idx: 2,
                    param_idx: len - 1,
                }),
            );
            check(
                s.as_mut(),
                &vec![0.0; len],
                &[(&a, 1), (&b[1..], 1)],
                Err(StrategyError::LengthMismatch {
                    strategy: name,
                    update_idx: 1,
                    got: len - 1,
                    expected: len,
                }),
            );
            check(
                s.as_mut(),
                &[],
                &[],
                Err(StrategyError::NoUpdates { strategy: name }),
            );
        }
    }
}
