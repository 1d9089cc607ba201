//! Distance-based Byzantine-robust rules: Krum and Multi-Krum (Blanchard et al. 2017, "Machine
//! Learning with Adversaries: Byzantine Tolerant Gradient Descent"), and the pairwise distances
//! and Krum scoring that Bulyan (`bulyan.rs`) builds on.
//!
//! The number of Byzantine updates tolerated, f, is a fraction of each round's updates
//! (f = ⌊fraction · n⌋), because the number of updates varies from round to round. All three
//! are unweighted: a Byzantine client controls its reported `n_examples`, so weighting by it
//! would hand it the average.

use crate::average::{add_assign, weighted_mean_into};
use crate::robust::fraction_of;
use crate::validate::{LANES, all_finite, check_shapes, find_non_finite};
use crate::{AggregateReport, ClientUpdate, Strategy, StrategyError};

/// Krum (Blanchard et al. 2017): scores each update by the sum of squared distances to its
/// n − f − 2 nearest neighbours and applies the single lowest-scoring update as is.
///
/// Needs n ≥ 2f + 3 (the paper's 2f + 2 < n). Ties go to the lower update index.
#[derive(Debug, Clone)]
pub struct Krum {
    byzantine_fraction: f64,
    distances: PairwiseDistances,
}

impl Krum {
    /// Default Byzantine fraction: one update in five may be arbitrary.
    pub const DEFAULT_BYZANTINE_FRACTION: f64 = 0.2;

    /// Krum tolerating ⌊`byzantine_fraction` · n⌋ Byzantine updates per round (fraction in
    /// [0, 0.5)).
    pub fn new(byzantine_fraction: f64) -> Self {
        Self {
            byzantine_fraction,
            distances: PairwiseDistances::default(),
        }
    }
}

impl Default for Krum {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BYZANTINE_FRACTION)
    }
}

impl Strategy for Krum {
    fn name(&self) -> &'static str {
        "krum"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        let strategy = self.name();
        let n_byzantine = krum_byzantine(strategy, self.byzantine_fraction, global, updates)?;
        self.distances.compute(strategy, updates)?;
        let members: Vec<usize> = (0..updates.len()).collect();
        let best = krum_ranking(&self.distances, &members, n_byzantine)[0].1;
        add_assign(global, updates[best].delta);
        Ok(AggregateReport {
            n_updates: updates.len(),
            selected: vec![best],
        })
    }
}

/// Multi-Krum (Blanchard et al. 2017): scores every update as Krum does and applies the
/// plain mean of the m lowest-scoring ones.
///
/// m defaults to n − f, the paper's choice, which averages as many updates as can be honest;
/// a configured m is clamped to [1, n − f]. m = 1 is Krum. The mean is unweighted, see the
/// module doc.
#[derive(Debug, Clone)]
pub struct MultiKrum {
    byzantine_fraction: f64,
    n_keep: Option<usize>,
    distances: PairwiseDistances,
    mean: Vec<f32>,
}

impl MultiKrum {
    /// Default Byzantine fraction, as for [`Krum`].
    pub const DEFAULT_BYZANTINE_FRACTION: f64 = Krum::DEFAULT_BYZANTINE_FRACTION;

    /// Multi-Krum tolerating ⌊`byzantine_fraction` · n⌋ Byzantine updates and averaging the
    /// `n_keep` best (n − f when `None`).
    pub fn new(byzantine_fraction: f64, n_keep: Option<usize>) -> Self {
        Self {
            byzantine_fraction,
            n_keep,
            distances: PairwiseDistances::default(),
            mean: Vec::new(),
        }
    }
}

impl Default for MultiKrum {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BYZANTINE_FRACTION, None)
    }
}

impl Strategy for MultiKrum {
    fn name(&self) -> &'static str {
        "multikrum"
    }

    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError> {
        let strategy = self.name();
        let n_byzantine = krum_byzantine(strategy, self.byzantine_fraction, global, updates)?;
        self.distances.compute(strategy, updates)?;
        let n_honest = updates.len() - n_byzantine;
        let n_keep = self.n_keep.unwrap_or(n_honest).clamp(1, n_honest);
        let members: Vec<usize> = (0..updates.len()).collect();
        let mut selected: Vec<usize> = krum_ranking(&self.distances, &members, n_byzantine)
            .into_iter()
            .take(n_keep)
            .map(|(_, update_idx)| update_idx)
            .collect();
        selected.sort_unstable();
        let weight = 1.0 / n_keep as f32;
        let weights: Vec<(usize, f32)> = selected.iter().map(|&i| (i, weight)).collect();
        self.mean.resize(global.len(), 0.0);
        weighted_mean_into(strategy, updates, &weights, &mut self.mean)?;
        add_assign(global, &self.mean);
        Ok(AggregateReport {
            n_updates: updates.len(),
            selected,
        })
    }
}

/// Shape checks plus Krum's size requirement n ≥ 2f + 3; returns f.
fn krum_byzantine(
    strategy: &'static str,
    byzantine_fraction: f64,
    global: &[f32],
    updates: &[ClientUpdate<'_>],
) -> Result<usize, StrategyError> {
    check_shapes(strategy, global.len(), updates)?;
    let n_byzantine = fraction_of(byzantine_fraction, updates.len());
    let needed = 2 * n_byzantine + 3;
    if updates.len() < needed {
        return Err(StrategyError::TooFewUpdates {
            strategy,
            needed,
            got: updates.len(),
            n_byzantine,
        });
    }
    Ok(n_byzantine)
}

/// Krum scores of `members` among themselves, best first as `(score, update_idx)`.
///
/// An update's score is the sum of its squared distances to its |members| − f − 2 nearest
/// other members (Blanchard et al. 2017); with fewer members than that, the sum is empty
/// and every score is 0, so the lowest index wins. Never empty when `members` is not.
pub(crate) fn krum_ranking(
    distances: &PairwiseDistances,
    members: &[usize],
    n_byzantine: usize,
) -> Vec<(f64, usize)> {
    let n_neighbours = members.len().saturating_sub(n_byzantine + 2);
    let mut to_others = Vec::with_capacity(members.len());
    let mut ranking: Vec<(f64, usize)> = members
        .iter()
        .map(|&i| {
            to_others.clear();
            to_others.extend(
                members
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| distances.get(i, j)),
            );
            let nearest = if n_neighbours == 0 {
                &mut to_others[..0]
            } else {
                to_others.select_nth_unstable_by(n_neighbours - 1, f64::total_cmp);
                &mut to_others[..n_neighbours]
            };
            (nearest.iter().sum(), i)
        })
        .collect();
    ranking.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranking
}

/// Floats of update data per block of the distance pass: 64K `f32` (256 KiB) of all updates'
/// blocks fit in L2, so the n²/2 pairs of a block are computed from cache and every update is
/// read from memory once.
const PAIR_FLOATS: usize = 1 << 16;

/// All pairwise squared Euclidean distances between a round's updates, computed once per round
/// (n(n − 1)/2 passes over cached blocks) and shared by every Krum scoring. Holds n² f64, so
/// 1,000 updates take 8 MB.
#[derive(Debug, Clone, Default)]
pub(crate) struct PairwiseDistances {
    n: usize,
    squared: Vec<f64>,
}

impl PairwiseDistances {
    /// Computes the distances; also rejects the first non-finite value, while each block is in
    /// cache, so no separate validation pass is needed. Shapes must have been checked.
    pub(crate) fn compute(
        &mut self,
        strategy: &'static str,
        updates: &[ClientUpdate<'_>],
    ) -> Result<(), StrategyError> {
        let n = updates.len();
        let len = updates.first().map_or(0, |u| u.delta.len());
        self.n = n;
        self.squared.clear();
        self.squared.resize(n * n, 0.0);
        // At least a few lane-widths per block, so the inner loop is not all remainder.
        let block = (PAIR_FLOATS / n.max(1)).max(4 * LANES);
        let mut start = 0;
        while start < len {
            let end = (start + block).min(len);
            let blocks: Vec<&[f32]> = updates
                .iter()
                .map(|u| u.delta.get(start..end).unwrap_or(&[]))
                .collect();
            if !blocks.iter().all(|b| all_finite(b))
                && let Some(err) = find_non_finite(strategy, updates, 0..n, start, end)
            {
                return Err(err);
            }
            for (i, a) in blocks.iter().enumerate() {
                for (j, b) in blocks.iter().enumerate().skip(i + 1) {
                    self.squared[i * n + j] += f64::from(squared_distance(a, b));
                }
            }
            start = end;
        }
        for i in 0..n {
            for j in i + 1..n {
                self.squared[j * n + i] = self.squared[i * n + j];
            }
        }
        Ok(())
    }

    /// ‖Δᵢ − Δⱼ‖².
    fn get(&self, i: usize, j: usize) -> f64 {
        self.squared.get(i * self.n + j).copied().unwrap_or(0.0)
    }
}

/// ‖a − b‖² of two blocks, in independent f32 lanes so it vectorizes; a block is short enough
/// (≤ 64K values) that f32 partial sums lose nothing that matters before they go to f64.
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let a_chunks = a.chunks_exact(LANES);
    let b_chunks = b.chunks_exact(LANES);
    let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            let d = x[k] - y[k];
            lanes[k] += d * d;
        }
    }
    for (lane, (x, y)) in lanes.iter_mut().zip(a_tail.iter().zip(b_tail)) {
        let d = x - y;
        *lane += d * d;
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bulyan;
    use crate::test_util::check;

    /// Scalar deltas for the hand-computed cases: one parameter per update.
    fn scalars(values: &[f32]) -> Vec<[f32; 1]> {
        values.iter().map(|&v| [v]).collect()
    }

    fn as_updates(deltas: &[[f32; 1]]) -> Vec<(&[f32], usize)> {
        deltas.iter().map(|d| (&d[..], 1)).collect()
    }

    #[test]
    fn krum_picks_the_most_central_update() {
        // n = 5, f = ⌊0.2·5⌋ = 1, neighbours = 5 − 1 − 2 = 2.
        // Values 0, 1, 2, 3, 100. Scores: 0 → 1+4 = 5; 1 → 1+1 = 2; 2 → 1+1 = 2; 3 → 1+4 = 5;
        // 100 → 97²+98². The tie between 1 and 2 goes to the lower index.
        let deltas = scalars(&[0.0, 1.0, 2.0, 3.0, 100.0]);
        check(
            &mut Krum::default(),
            &[10.0],
            &as_updates(&deltas),
            Ok((&[11.0], &[1])),
        );
        // The outlier is picked by nobody, wherever it sits.
        let deltas = scalars(&[-50.0, 2.0, 2.5, 3.0, 2.2]);
        check(
            &mut Krum::default(),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[2.2], &[4])),
        );
    }

    #[test]
    fn multikrum_averages_the_best_scored() {
        // As above: scores 5, 2, 2, 5, huge. m = n − f = 4 → mean of 0, 1, 2, 3.
        let deltas = scalars(&[0.0, 1.0, 2.0, 3.0, 100.0]);
        check(
            &mut MultiKrum::default(),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[1.5], &[0, 1, 2, 3])),
        );
        // m = 2 → mean of 1 and 2.
        check(
            &mut MultiKrum::new(0.2, Some(2)),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[1.5], &[1, 2])),
        );
        // m = 1 is Krum; m too large is clamped to n − f = 4.
        check(
            &mut MultiKrum::new(0.2, Some(1)),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[1.0], &[1])),
        );
        check(
            &mut MultiKrum::new(0.2, Some(9)),
            &[0.0],
            &as_updates(&deltas),
            Ok((&[1.5], &[0, 1, 2, 3])),
        );
        // Unweighted: a Byzantine-sized n_examples does not matter.
        let updates = [
            (&deltas[0][..], 1),
            (&deltas[1][..], 1_000_000),
            (&deltas[2][..], 1),
            (&deltas[3][..], 1),
            (&deltas[4][..], 1),
        ];
        check(
            &mut MultiKrum::default(),
            &[0.0],
            &updates,
            Ok((&[1.5], &[0, 1, 2, 3])),
        );
    }

    #[test]
    fn too_few_updates() {
        let deltas = scalars(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let cases: Vec<(Box<dyn Strategy>, usize, StrategyError)> = vec![
            // Krum, f = 0: needs 3.
            (
                Box::new(Krum::default()),
                2,
                StrategyError::TooFewUpdates {
                    strategy: "krum",
                    needed: 3,
                    got: 2,
                    n_byzantine: 0,
                },
            ),
            // Krum, f = ⌊0.2·5⌋ = 1: needs 5, has 5 → fine; f = ⌊0.4·5⌋ = 2: needs 7.
            (
                Box::new(Krum::new(0.4)),
                5,
                StrategyError::TooFewUpdates {
                    strategy: "krum",
                    needed: 7,
                    got: 5,
                    n_byzantine: 2,
                },
            ),
            (
                Box::new(MultiKrum::default()),
                1,
                StrategyError::TooFewUpdates {
                    strategy: "multikrum",
                    needed: 3,
                    got: 1,
                    n_byzantine: 0,
                },
            ),
            // Bulyan, f = ⌊0.2·6⌋ = 1: needs 7.
            (
                Box::new(Bulyan::new(0.2)),
                6,
                StrategyError::TooFewUpdates {
                    strategy: "bulyan",
                    needed: 7,
                    got: 6,
                    n_byzantine: 1,
                },
            ),
            (
                Box::new(Bulyan::default()),
                2,
                StrategyError::TooFewUpdates {
                    strategy: "bulyan",
                    needed: 3,
                    got: 2,
                    n_byzantine: 0,
                },
            ),
        ];
        for (mut s, n, err) in cases {
            check(s.as_mut(), &[0.0], &as_updates(&deltas[..n]), Err(err));
        }
    }

    #[test]
    fn distance_rules_reject_bad_updates() {
        let good = [0.0f32; 3];
        let nan = [0.0, f32::NAN, 0.0];
        let constructors: [fn() -> Box<dyn Strategy>; 3] = [
            || Box::new(Krum::new(0.0)),
            || Box::new(MultiKrum::new(0.0, None)),
            || Box::new(Bulyan::new(0.0)),
        ];
        for make in constructors {
            let mut s = make();
            let name = s.name();
            check(
                s.as_mut(),
                &good,
                &[(&good, 1), (&good, 1), (&nan, 1)],
                Err(StrategyError::NonFinite {
                    strategy: name,
                    update_idx: 2,
                    param_idx: 1,
                }),
            );
            check(
                s.as_mut(),
                &good,
                &[(&good, 1), (&good[..2], 1), (&good, 1)],
                Err(StrategyError::LengthMismatch {
                    strategy: name,
                    update_idx: 1,
                    got: 2,
                    expected: 3,
                }),
            );
            check(
                s.as_mut(),
                &good,
                &[],
                Err(StrategyError::NoUpdates { strategy: name }),
            );
        }
    }

    #[test]
    fn distances_span_blocks() {
        // Three updates → blocks of PAIR_FLOATS / 3; d(a, b) = len · 1², d(a, c) = len · 2².
        let len = PAIR_FLOATS + 5;
        let a = vec![0.0f32; len];
        let b = vec![1.0f32; len];
        let c = vec![2.0f32; len];
        let updates = [
            ClientUpdate {
                delta: &a,
                n_examples: 1,
            },
            ClientUpdate {
                delta: &b,
                n_examples: 1,
            },
            ClientUpdate {
                delta: &c,
                n_examples: 1,
            },
        ];
        let mut distances = PairwiseDistances::default();
        distances.compute("t", &updates).unwrap();
        assert_eq!(distances.get(0, 1), len as f64);
        assert_eq!(distances.get(2, 0), 4.0 * len as f64);
        assert_eq!(distances.get(1, 1), 0.0);
    }
}
