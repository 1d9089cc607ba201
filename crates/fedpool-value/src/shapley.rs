//! Shapley values of a round's participants.
//!
//! The utility `v(S)` of a subset `S` of participants (by index) is the caller's: in fedpool,
//! the validation accuracy of the global model updated with the aggregate of `S`'s updates
//! (FedSV, Wang et al. 2020), which needs no retraining. φᵢ averages i's marginal gain
//! `v(S ∪ {i}) − v(S)` over the orders in which participants could join; the values sum to
//! `v(N) − v(∅)` (efficiency), and a participant whose update never changes the utility gets 0.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The most participants valued exactly: 2¹² = 4,096 utility evaluations.
pub const MAX_EXACT: usize = 12;

/// The most participants a round may value (subsets are kept as 128-bit masks).
pub const MAX_PARTICIPANTS: usize = 128;

/// Why a valuation could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Exact Shapley values were asked for too many participants.
    #[error("exact Shapley values need at most {MAX_EXACT} participants, the round has {0}")]
    TooManyForExact(usize),
    /// More participants than a subset mask holds.
    #[error("a round may value at most {MAX_PARTICIPANTS} participants, it has {0}")]
    TooManyParticipants(usize),
    /// The utility returned something that is not a number.
    #[error("the utility of a subset of {size} participants is {value}, not a finite number")]
    NotFinite {
        /// The subset's size.
        size: usize,
        /// What the utility returned.
        value: f64,
    },
    /// A sampling parameter is out of range.
    #[error("{0}")]
    BadParameter(String),
}

/// How values were estimated, and with what: recorded beside the scores so that anyone holding
/// the round's updates and the validation set can recompute them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Estimate {
    /// Every subset.
    Exact,
    /// Monte Carlo over permutations.
    Sampled {
        /// Seed of the permutations.
        seed: u64,
        /// A walk stops once the prefix's utility is within this (absolute) of `v(N)`; the
        /// remaining marginals count as 0. 0 walks every permutation to its end.
        truncation: f64,
        /// Sampling stops once every value's standard error is below this.
        target_std_error: f64,
        /// …or after this many permutations.
        max_permutations: usize,
        /// Permutations drawn at a time (each batch is evaluated in parallel).
        batch: usize,
    },
    /// Stratified by coalition size (Castro et al. 2017): φᵢ is the mean over sizes k of i's
    /// mean marginal gain to coalitions of size k. The sizes at both ends (alone, with one
    /// other, all but one or two…) are enumerated exactly while the budget allows — there a
    /// round's accuracy moves most and permutations sample worst — and the middle sizes are
    /// sampled: each drawn coalition gives every participant outside it one marginal.
    Stratified {
        /// Seed of the sampled coalitions.
        seed: u64,
        /// The most distinct subsets evaluated.
        max_evaluations: usize,
    },
    /// `v(N) − v(N ∖ {i})`.
    LeaveOneOut,
}

/// Each participant's value, with its standard error (0 when exact) and the work it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Valuation {
    /// φᵢ, in participant order.
    pub values: Vec<f64>,
    /// The standard error of each estimate (0 for exact and leave-one-out).
    pub std_errors: Vec<f64>,
    /// `v(N)`: the utility of everyone's updates together.
    pub grand: f64,
    /// `v(∅)`: the utility of the model before the round.
    pub empty: f64,
    /// Distinct subsets whose utility was evaluated.
    pub evaluations: usize,
    /// Permutations walked (0 for exact and leave-one-out).
    pub permutations: usize,
    /// How the values were estimated.
    pub estimate: Estimate,
}

pub(crate) type Mask = u128;

pub(crate) fn members(mask: Mask) -> Vec<usize> {
    (0..MAX_PARTICIPANTS)
        .filter(|&i| mask & (1 << i) != 0)
        .collect()
}

/// A utility with its evaluations cached by subset, safe to share between threads.
pub(crate) struct Cached<'a, U> {
    pub(crate) utility: &'a U,
    pub(crate) cache: Mutex<HashMap<Mask, f64>>,
}

impl<U: Fn(&[usize]) -> f64 + Sync> Cached<'_, U> {
    pub(crate) fn value(&self, mask: Mask) -> Result<f64, ValueError> {
        if let Some(&v) = self
            .cache
            .lock()
            .expect("no panic holds the cache")
            .get(&mask)
        {
            return Ok(v);
        }
        let subset = members(mask);
        let v = (self.utility)(&subset);
        if !v.is_finite() {
            return Err(ValueError::NotFinite {
                size: subset.len(),
                value: v,
            });
        }
        self.cache
            .lock()
            .expect("no panic holds the cache")
            .insert(mask, v);
        Ok(v)
    }

    pub(crate) fn evaluations(&self) -> usize {
        self.cache.lock().expect("no panic holds the cache").len()
    }
}

pub(crate) fn check_size(n: usize) -> Result<(), ValueError> {
    if n > MAX_PARTICIPANTS {
        return Err(ValueError::TooManyParticipants(n));
    }
    Ok(())
}

pub(crate) fn full(n: usize) -> Mask {
    if n == MAX_PARTICIPANTS {
        Mask::MAX
    } else {
        (1 << n) - 1
    }
}

/// Exact Shapley values of `n` participants (at most [`MAX_EXACT`]): every subset's utility,
/// evaluated in parallel.
pub fn exact<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
) -> Result<Valuation, ValueError> {
    if n > MAX_EXACT {
        return Err(ValueError::TooManyForExact(n));
    }
    let subsets = 1usize << n;
    let values: Vec<f64> = (0..subsets)
        .into_par_iter()
        .map(|mask| {
            let subset = members(mask as Mask);
            let v = utility(&subset);
            if v.is_finite() {
                Ok(v)
            } else {
                Err(ValueError::NotFinite {
                    size: subset.len(),
                    value: v,
                })
            }
        })
        .collect::<Result<_, _>>()?;
    // Weight of a subset of size s not holding i: s!(n−s−1)!/n!.
    let weight: Vec<f64> = (0..n)
        .map(|s| {
            let mut w = 1.0 / n as f64;
            // 1/(n·C(n−1, s))
            let mut binomial = 1.0;
            for k in 0..s {
                binomial = binomial * (n - 1 - k) as f64 / (k + 1) as f64;
            }
            w /= binomial;
            w
        })
        .collect();
    let mut phi = vec![0.0; n];
    for mask in 0..subsets {
        let size = (mask as u32).count_ones() as usize;
        for (i, phi) in phi.iter_mut().enumerate() {
            if mask & (1 << i) == 0 {
                *phi += weight[size] * (values[mask | (1 << i)] - values[mask]);
            }
        }
    }
    Ok(Valuation {
        std_errors: vec![0.0; n],
        grand: values[subsets - 1],
        empty: values[0],
        values: phi,
        evaluations: subsets,
        permutations: 0,
        estimate: Estimate::Exact,
    })
}

/// Leave-one-out values `v(N) − v(N ∖ {i})`: `n + 1` evaluations.
pub fn leave_one_out<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
) -> Result<Valuation, ValueError> {
    check_size(n)?;
    let cached = Cached {
        utility,
        cache: Mutex::new(HashMap::new()),
    };
    let grand = cached.value(full(n))?;
    let empty = cached.value(0)?;
    let values = (0..n)
        .into_par_iter()
        .map(|i| Ok(grand - cached.value(full(n) & !(1 << i))?))
        .collect::<Result<Vec<f64>, ValueError>>()?;
    Ok(Valuation {
        std_errors: vec![0.0; n],
        grand,
        empty,
        values,
        evaluations: cached.evaluations(),
        permutations: 0,
        estimate: Estimate::LeaveOneOut,
    })
}

/// Shapley values estimated over random permutations (GTG-Shapley's within-round truncation):
/// each walk adds participants in a random order and credits each with its marginal gain, and
/// once the prefix is within `truncation` of `v(N)` the rest of the walk counts 0. Batches of
/// permutations run in parallel; the permutations come from `seed` in a fixed order, so the
/// result is the same on any machine and thread count.
pub fn sampled<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
    estimate: &Estimate,
) -> Result<Valuation, ValueError> {
    check_size(n)?;
    let Estimate::Sampled {
        seed,
        truncation,
        target_std_error,
        max_permutations,
        batch,
    } = *estimate
    else {
        return Err(ValueError::BadParameter(
            "sampled Shapley values need an `Estimate::Sampled`".into(),
        ));
    };
    if !(truncation >= 0.0 && truncation.is_finite()) {
        return Err(ValueError::BadParameter(format!(
            "truncation must be ≥ 0, got {truncation}"
        )));
    }
    if target_std_error.is_nan() || target_std_error <= 0.0 || batch == 0 || max_permutations == 0 {
        return Err(ValueError::BadParameter(format!(
            "sampling needs a positive target standard error, batch and permutation limit; got {target_std_error}, {batch}, {max_permutations}"
        )));
    }
    let cached = Cached {
        utility,
        cache: Mutex::new(HashMap::new()),
    };
    let grand = cached.value(full(n))?;
    let empty = cached.value(0)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // Running sums of each participant's marginals and their squares (Welford is not needed:
    // marginals are bounded by the utility's range).
    let mut sum = vec![0.0f64; n];
    let mut sum_sq = vec![0.0f64; n];
    let mut walked = 0usize;
    let std_errors = |sum: &[f64], sum_sq: &[f64], m: usize| -> Vec<f64> {
        sum.iter()
            .zip(sum_sq)
            .map(|(&s, &q)| {
                if m < 2 {
                    f64::INFINITY
                } else {
                    let mean = s / m as f64;
                    let variance = ((q - m as f64 * mean * mean) / (m - 1) as f64).max(0.0);
                    (variance / m as f64).sqrt()
                }
            })
            .collect()
    };
    while walked < max_permutations {
        let count = batch.min(max_permutations - walked);
        let orders: Vec<Vec<usize>> = (0..count)
            .map(|_| {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut rng);
                order
            })
            .collect();
        let marginals = orders
            .par_iter()
            .map(|order| {
                let mut marginal = vec![0.0f64; n];
                let mut prefix: Mask = 0;
                let mut before = empty;
                for &i in order {
                    if truncation > 0.0 && (grand - before).abs() <= truncation {
                        break;
                    }
                    prefix |= 1 << i;
                    let after = cached.value(prefix)?;
                    marginal[i] = after - before;
                    before = after;
                }
                Ok(marginal)
            })
            .collect::<Result<Vec<Vec<f64>>, ValueError>>()?;
        for marginal in &marginals {
            for ((s, q), &m) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(marginal) {
                *s += m;
                *q += m * m;
            }
        }
        walked += count;
        let errors = std_errors(&sum, &sum_sq, walked);
        if errors.iter().all(|&e| e <= target_std_error) {
            break;
        }
    }
    Ok(Valuation {
        values: sum.iter().map(|s| s / walked as f64).collect(),
        std_errors: std_errors(&sum, &sum_sq, walked),
        grand,
        empty,
        evaluations: cached.evaluations(),
        permutations: walked,
        estimate: estimate.clone(),
    })
}

/// Values by whichever estimator `estimate` names.
pub fn estimate<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
    estimate: &Estimate,
) -> Result<Valuation, ValueError> {
    match estimate {
        Estimate::Exact => exact(n, utility),
        Estimate::Sampled { .. } => sampled(n, utility, estimate),
        Estimate::Stratified { .. } => crate::stratified::stratified(n, utility, estimate),
        Estimate::LeaveOneOut => leave_one_out(n, utility),
    }
}

/// Exact values up to [`MAX_EXACT`] participants, sampled (with `sampling`) above.
pub fn shapley<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
    sampling: &Estimate,
) -> Result<Valuation, ValueError> {
    if n <= MAX_EXACT {
        exact(n, utility)
    } else {
        estimate(n, utility, sampling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weighted voting-like game with a known Shapley value: additive utilities.
    fn additive(weights: &[f64]) -> impl Fn(&[usize]) -> f64 + Sync + '_ {
        move |s: &[usize]| s.iter().map(|&i| weights[i]).sum()
    }

    fn sampling(seed: u64) -> Estimate {
        Estimate::Sampled {
            seed,
            truncation: 0.0,
            target_std_error: 1e-3,
            max_permutations: 4000,
            batch: 64,
        }
    }

    #[test]
    fn an_additive_game_pays_each_its_own_weight_by_every_method() {
        let weights = [0.3, -0.1, 0.0, 0.5, 0.2];
        let u = additive(&weights);
        for valuation in [
            exact(5, &u).unwrap(),
            leave_one_out(5, &u).unwrap(),
            sampled(5, &u, &sampling(1)).unwrap(),
        ] {
            for (v, w) in valuation.values.iter().zip(weights) {
                assert!((v - w).abs() < 1e-9, "{:?}: {v} vs {w}", valuation.estimate);
            }
        }
    }

    #[test]
    fn exact_values_are_efficient_symmetric_and_give_nothing_to_a_null_player() {
        // v(S) = 1 if S holds both 0 and 1 (they are only worth something together), plus 0.5
        // if it holds 2; participant 3 never matters.
        let u = |s: &[usize]| {
            let both = s.contains(&0) && s.contains(&1);
            f64::from(u8::from(both)) + if s.contains(&2) { 0.5 } else { 0.0 }
        };
        let v = exact(4, &u).unwrap();
        assert!((v.values.iter().sum::<f64>() - (v.grand - v.empty)).abs() < 1e-12);
        assert!((v.values[0] - 0.5).abs() < 1e-12 && (v.values[1] - 0.5).abs() < 1e-12);
        assert!((v.values[2] - 0.5).abs() < 1e-12);
        assert_eq!(v.values[3], 0.0);
        assert_eq!(v.evaluations, 16);
        // Leave-one-out misses the pair's shared credit: each alone is worth its whole synergy.
        let loo = leave_one_out(4, &u).unwrap();
        assert!((loo.values[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn sampling_converges_to_the_exact_values_and_is_reproducible() {
        // A non-additive game: diminishing returns in the total weight.
        let weights = [0.9, 0.1, 0.4, 0.4, 0.05, 0.7, 0.2, 0.3];
        let u = |s: &[usize]| {
            let total: f64 = s.iter().map(|&i| weights[i]).sum();
            1.0 - (-total).exp()
        };
        let exact = exact(8, &u).unwrap();
        let a = sampled(8, &u, &sampling(7)).unwrap();
        let b = sampled(8, &u, &sampling(7)).unwrap();
        assert_eq!(a, b, "the same seed gives the same estimate");
        let off: f64 = a
            .values
            .iter()
            .zip(&exact.values)
            .map(|(s, e)| (s - e).abs())
            .sum();
        let total: f64 = exact.values.iter().map(|v| v.abs()).sum();
        assert!(off / total < 0.02, "sampled off by {off} of {total}");
        assert!(a.std_errors.iter().all(|&e| e <= 1e-3) || a.permutations == 4000);
    }

    #[test]
    fn truncation_spares_evaluations_once_the_prefix_has_reached_the_grand_utility() {
        // Saturating: any two participants reach everything.
        let u = |s: &[usize]| (s.len().min(2)) as f64;
        let n = 40;
        let full_walks = sampled(
            n,
            &u,
            &Estimate::Sampled {
                seed: 3,
                truncation: 0.0,
                target_std_error: 1e-9,
                max_permutations: 50,
                batch: 10,
            },
        )
        .unwrap();
        let truncated = sampled(
            n,
            &u,
            &Estimate::Sampled {
                seed: 3,
                truncation: 1e-9,
                target_std_error: 1e-9,
                max_permutations: 50,
                batch: 10,
            },
        )
        .unwrap();
        assert!(truncated.evaluations * 5 < full_walks.evaluations);
        let sum: f64 = truncated.values.iter().sum();
        assert!((sum - 2.0).abs() < 1e-9, "efficiency holds: {sum}");
    }

    #[test]
    fn bad_utilities_and_sizes_are_errors() {
        let nan = |_: &[usize]| f64::NAN;
        assert!(matches!(exact(3, &nan), Err(ValueError::NotFinite { .. })));
        assert_eq!(
            exact(13, &|_: &[usize]| 0.0).unwrap_err(),
            ValueError::TooManyForExact(13)
        );
        assert_eq!(
            leave_one_out(129, &|_: &[usize]| 0.0).unwrap_err(),
            ValueError::TooManyParticipants(129)
        );
    }
}
