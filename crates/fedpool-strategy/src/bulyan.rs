//! Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed Learning in
//! Byzantium"): Krum-based selection followed by a coordinate-wise trimmed mean.
//!
//! Unweighted, like Krum: a Byzantine client controls its reported `n_examples`.

use crate::average::add_assign;
use crate::krum::{PairwiseDistances, krum_ranking};
use crate::robust::{Coordinatewise, fraction_of};
use crate::validate::check_shapes;
use crate::{AggregateReport, ClientUpdate, Strategy, StrategyError};

/// Bulyan (El Mhamdi et al. 2018): picks θ = n − 2f updates by repeated Krum (each round
/// removes the winner and re-scores the rest), then for every coordinate averages the
/// β = θ − 2f selected values closest to their median.
///
/// The second phase bounds what a Byzantine update that survived Krum can do to any single
/// coordinate, which Krum alone does not: the paper shows a Krum-selected update can still move single
/// coordinates far in high dimension. Needs n ≥ 4f + 3. The median of an
/// even count is the mean of the two middle values; ties in distance go to the smaller value.
#[derive(Debug, Clone)]
pub struct Bulyan {
    byzantine_fraction: f64,
    distances: PairwiseDistances,
    gather: Coordinatewise,
}

impl Bulyan {
    /// Default Byzantine fraction: 0.1, not Krum's 0.2. Bulyan needs n ≥ 4f + 3, so the
    /// fraction must stay below 0.25, and at 0.2 common round sizes (5, 6, 10) already fail;
    /// at 0.1 every round of 3 or more updates aggregates (4⌊0.1n⌋ + 3 ≤ n for n ≥ 3).
    pub const DEFAULT_BYZANTINE_FRACTION: f64 = 0.1;

    /// Bulyan tolerating ⌊`byzantine_fraction` · n⌋ Byzantine updates (fraction in [0, 0.25)).
    pub fn new(byzantine_fraction: f64) -> Self {
        Self {
            byzantine_fraction,
            distances: PairwiseDistances::default(),
            gather: Coordinatewise::default(),
        }
    }
}

impl Default for Bulyan {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BYZANTINE_FRACTION)
    }
}

impl Strategy for Bulyan {
    fn name(&self) -> &'static str {
        "bulyan"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        let strategy = self.name();
        check_shapes(strategy, global.len(), updates)?;
        let n_updates = updates.len();
        let n_byzantine = fraction_of(self.byzantine_fraction, n_updates);
        let needed = 4 * n_byzantine + 3;
        if n_updates < needed {
            return Err(StrategyError::TooFewUpdates {
                strategy,
                needed,
                got: n_updates,
                n_byzantine,
            });
        }
        self.distances.compute(strategy, updates)?;
        let n_select = n_updates - 2 * n_byzantine;
        let mut remaining: Vec<usize> = (0..n_updates).collect();
        let mut selected = Vec::with_capacity(n_select);
        for _ in 0..n_select {
            let best = krum_ranking(&self.distances, &remaining, n_byzantine)[0].1;
            remaining.retain(|&i| i != best);
            selected.push(best);
        }
        selected.sort_unstable();
        let n_keep = n_select - 2 * n_byzantine;
        self.gather
            .run(strategy, updates, &selected, global.len(), |column| {
                closest_to_median_mean(column, n_keep)
            })?;
        add_assign(global, self.gather.as_slice());
        Ok(AggregateReport {
            n_updates,
            selected,
        })
    }
}

/// Mean of the `n_keep` values of `column` closest to its median (Bulyan's second phase),
/// found by two selections. Distances and the sum are in f64 so extreme finite values can
/// neither overflow nor round into a tie.
fn closest_to_median_mean(column: &mut [f32], n_keep: usize) -> f32 {
    let n = column.len();
    if n == 0 || n_keep == 0 {
        return 0.0;
    }
    let mid = (n - 1) / 2;
    column.select_nth_unstable_by(mid, f32::total_cmp);
    let lower = f64::from(column[mid]);
    let median = if n % 2 == 1 {
        lower
    } else {
        let upper = column[mid + 1..]
            .iter()
            .copied()
            .min_by(f32::total_cmp)
            .map_or(lower, f64::from);
        (lower + upper) / 2.0
    };
    let n_keep = n_keep.min(n);
    if n_keep < n {
        let distance = |x: f32| (f64::from(x) - median).abs();
        column.select_nth_unstable_by(n_keep - 1, |a, b| {
            distance(*a).total_cmp(&distance(*b)).then(a.total_cmp(b))
        });
    }
    let sum: f64 = column[..n_keep].iter().map(|&x| f64::from(x)).sum();
    (sum / n_keep as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::check;

    /// Scalar deltas for the hand-computed cases: one parameter per update.
    fn scalars(values: &[f32]) -> Vec<[f32; 1]> {
        values.iter().map(|&v| [v]).collect()
    }

    fn as_updates(deltas: &[[f32; 1]]) -> Vec<(&[f32], usize)> {
        deltas.iter().map(|d| (&d[..], 1)).collect()
    }

    #[test]
    fn bulyan_selects_then_trims_around_the_median() {
        // n = 7, f = ⌊0.2·7⌋ = 1 (fraction 0.2), θ = 5, β = 3.
        // Values 0, 1, 2, 3, 4, 50, −60. Repeated Krum (neighbours = |remaining| − 3):
        //   {all 7}, 4 neighbours: 0 → 1+4+9+16 = 30; 1 → 1+1+4+9 = 15; 2 → 1+1+4+4 = 10;
        //   3 → 15; 4 → 30 → pick 2.
        //   {0,1,3,4,50,−60}, 3 neighbours: 0 → 1+9+16 = 26; 1 → 1+4+9 = 14; 3 → 1+4+9 = 14;
        //   4 → 1+9+16 = 26 → pick 1 (lower index).
        //   {0,3,4,50,−60}, 2: 0 → 9+16 = 25; 3 → 1+9 = 10; 4 → 1+16 = 17 → pick 3.
        //   {0,4,50,−60}, 1: 0 → 16; 4 → 16 → pick 0 (index 0).
        //   {4,50,−60}, 0 neighbours: all score 0 → pick 4 (lowest index).
        // Selected {0,1,2,3,4}; median 2; the 3 closest are 1, 2, 3 → mean 2.
        let deltas = scalars(&[0.0, 1.0, 2.0, 3.0, 4.0, 50.0, -60.0]);
        check(
            &mut Bulyan::new(0.2),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[2.0], &[0, 1, 2, 3, 4])),
        );
        // f = 0: θ = n, β = n, the plain mean.
        let deltas = scalars(&[1.0, 2.0, 6.0]);
        check(
            &mut Bulyan::new(0.0),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[3.0], &[0, 1, 2])),
        );
    }

    #[test]
    fn closest_to_median_breaks_ties_towards_the_smaller_value() {
        let cases: [(&[f32], usize, f32); 5] = [
            // Median 2; 1 and 3 are equally close; the smaller wins: (2 + 1) / 2.
            (&[3.0, 1.0, 2.0], 2, 1.5),
            // Even count: median (2 + 4) / 2 = 3; closest two are 2 and 4.
            (&[10.0, 4.0, 2.0, -10.0], 2, 3.0),
            (&[5.0], 1, 5.0),
            (&[1.0, 2.0, 9.0], 3, 4.0),
            // Extreme finite values: f64 keeps the distances apart and the sum finite.
            (&[f32::MAX, f32::MAX, -f32::MAX], 2, f32::MAX),
        ];
        for (values, n_keep, want) in cases {
            let mut column = values.to_vec();
            assert_eq!(
                closest_to_median_mean(&mut column, n_keep),
                want,
                "{values:?} keep {n_keep}"
            );
        }
    }
}
