//! Shapley values by stratified sampling with a control variate.
//!
//! φᵢ = (1/n) Σₖ μᵢₖ, where μᵢₖ is i's mean marginal gain `v(S ∪ {i}) − v(S)` over the
//! coalitions S of size k without i. In a round, a model's accuracy jumps with the first one
//! or two useful updates and barely moves after: small coalitions carry the value, and
//! permutation sampling estimates them worst (a participant comes first in a walk only by
//! luck). So:
//!
//! 1. every coalition of up to `m` members is evaluated (`m` ≤ 2, as many sizes as half the
//!    budget allows);
//! 2. those values define a surrogate game, `v̂(S)` = the best value of any of S's subsets of
//!    at most `m` members, which equals `v` on the enumerated sizes and saturates as a round's
//!    accuracy does; its Shapley values cost no evaluation of `v` (exact up to
//!    [`crate::shapley::MAX_EXACT`] participants, by many permutations above);
//! 3. only the residual `v − v̂` is sampled, stratum by stratum (sizes m … n−1, in turn): a
//!    drawn coalition S of size k gives every participant outside it one residual marginal
//!    for `n − k + 1` evaluations, and a participant that drew nothing in a stratum takes the
//!    stratum's mean over those that did (0 if none did) — so a null player is 0 only up to
//!    the residual's size, where exact values give it exactly 0.
//!
//! φ = φ(v̂) + φ(v − v̂); the residual is small where the surrogate is good, so few samples
//! estimate it well (a control variate).

use std::collections::HashMap;
use std::sync::Mutex;

use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::shapley::{
    Cached, Estimate, MAX_EXACT, Mask, Valuation, ValueError, check_size, exact, full, sampled,
};

/// Stratified Shapley values of `n` participants with `estimate`'s seed and budget.
pub fn stratified<U: Fn(&[usize]) -> f64 + Sync>(
    n: usize,
    utility: &U,
    estimate: &Estimate,
) -> Result<Valuation, ValueError> {
    check_size(n)?;
    let Estimate::Stratified {
        seed,
        max_evaluations,
    } = *estimate
    else {
        return Err(ValueError::BadParameter(
            "stratified Shapley values need an `Estimate::Stratified`".into(),
        ));
    };
    if n == 0 {
        return Ok(Valuation {
            values: Vec::new(),
            std_errors: Vec::new(),
            grand: 0.0,
            empty: 0.0,
            evaluations: 0,
            permutations: 0,
            estimate: estimate.clone(),
        });
    }
    if max_evaluations < n + 2 {
        return Err(ValueError::BadParameter(format!(
            "stratified sampling of {n} participants needs at least {} evaluations, got {max_evaluations}",
            n + 2
        )));
    }
    if n <= MAX_EXACT && max_evaluations >= 1 << n {
        // The budget covers every subset: nothing to estimate.
        let mut exact = exact(n, utility)?;
        exact.estimate = estimate.clone();
        return Ok(exact);
    }
    let cached = Cached {
        utility,
        cache: Mutex::new(HashMap::new()),
    };
    // Sizes enumerated: singletons always, pairs when they fit in half the budget.
    let m = if 2 + n + binomial(n, 2) <= max_evaluations / 2 {
        2
    } else {
        1
    };
    let mut enumerated: Vec<Mask> = (0..=m).flat_map(|size| subsets_of_size(n, size)).collect();
    enumerated.push(full(n));
    enumerated
        .par_iter()
        .map(|&mask| cached.value(mask).map(|_| ()))
        .collect::<Result<(), ValueError>>()?;
    let value = |mask: Mask| cached.value(mask);
    let empty = value(0)?;
    let single: Vec<f64> = (0..n).map(|i| value(1 << i)).collect::<Result<_, _>>()?;
    let pair: Vec<Vec<f64>> = if m == 2 {
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            Ok(single[i])
                        } else {
                            value((1 << i) | (1 << j))
                        }
                    })
                    .collect::<Result<_, _>>()
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let surrogate = |members: &[usize]| -> f64 {
        let mut best = empty;
        for (a, &i) in members.iter().enumerate() {
            best = best.max(single[i]);
            if m == 2 {
                for &j in &members[a + 1..] {
                    best = best.max(pair[i][j]);
                }
            }
        }
        best
    };
    let surrogate_mask = |mask: Mask| -> f64 {
        let members: Vec<usize> = (0..n).filter(|&i| mask & (1 << i) != 0).collect();
        surrogate(&members)
    };
    let base = if n <= MAX_EXACT {
        exact(n, &surrogate)?
    } else {
        sampled(
            n,
            &surrogate,
            &Estimate::Sampled {
                seed: seed ^ 0x5eed,
                truncation: 0.0,
                target_std_error: 1e-4,
                max_permutations: 2000,
                batch: 64,
            },
        )?
    };

    // The residual v − v̂ by strata m … n−1, a coalition at a time, in turn.
    let residual = |mask: Mask| value(mask).map(|v| v - surrogate_mask(mask));
    let strata: Vec<usize> = (m..n).collect();
    let mut sum = vec![vec![0.0f64; n]; n];
    let mut sum_sq = vec![vec![0.0f64; n]; n];
    let mut count = vec![vec![0usize; n]; n];
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // The draws depend only on the seed and the budget, so they are planned first and every
    // subset they need is evaluated in one parallel batch.
    let mut turn = 0usize;
    let mut skipped_in_a_row = 0usize;
    // Each draw is charged its n − k + 1 evaluations whether or not they were cached, so
    // sampling always ends.
    let mut spent = cached.evaluations();
    let mut draws: Vec<(usize, Mask)> = Vec::new();
    while !strata.is_empty() && skipped_in_a_row < strata.len() {
        let k = strata[turn % strata.len()];
        turn += 1;
        if spent + n - k + 1 > max_evaluations {
            skipped_in_a_row += 1;
            continue;
        }
        skipped_in_a_row = 0;
        spent += n - k + 1;
        let coalition: Mask = index::sample(&mut rng, n, k)
            .iter()
            .fold(0, |mask, i| mask | (1 << i));
        draws.push((k, coalition));
    }
    let mut needed: Vec<Mask> = draws
        .iter()
        .flat_map(|&(_, coalition)| {
            std::iter::once(coalition).chain(
                (0..n)
                    .filter(move |&i| coalition & (1 << i) == 0)
                    .map(move |i| coalition | (1 << i)),
            )
        })
        .collect();
    needed.sort_unstable();
    needed.dedup();
    needed
        .par_iter()
        .map(|&mask| cached.value(mask).map(|_| ()))
        .collect::<Result<(), ValueError>>()?;
    for &(k, coalition) in &draws {
        let before = residual(coalition)?;
        for i in (0..n).filter(|&i| coalition & (1 << i) == 0) {
            let marginal = residual(coalition | (1 << i))? - before;
            sum[i][k] += marginal;
            sum_sq[i][k] += marginal * marginal;
            count[i][k] += 1;
        }
    }
    // A stratum a participant drew nothing in takes the stratum's mean over those that did
    // (measured: closer to exact than the participant's own mean over other strata).
    let mut values = base.values.clone();
    let mut variance = vec![0.0f64; n];
    for &k in &strata {
        let drawn: Vec<usize> = (0..n).filter(|&i| count[i][k] > 0).collect();
        if drawn.is_empty() {
            continue;
        }
        let pooled = drawn
            .iter()
            .map(|&i| sum[i][k] / count[i][k] as f64)
            .sum::<f64>()
            / drawn.len() as f64;
        for i in 0..n {
            let c = count[i][k];
            let mean = if c > 0 { sum[i][k] / c as f64 } else { pooled };
            values[i] += mean / n as f64;
            if c > 1 {
                let cf = c as f64;
                let mu = sum[i][k] / cf;
                variance[i] += ((sum_sq[i][k] - cf * mu * mu) / (cf - 1.0)).max(0.0) / cf;
            }
        }
    }
    Ok(Valuation {
        values,
        std_errors: variance.iter().map(|v| v.sqrt() / n as f64).collect(),
        grand: value(full(n))?,
        empty,
        evaluations: cached.evaluations(),
        permutations: 0,
        estimate: estimate.clone(),
    })
}

fn binomial(n: usize, k: usize) -> usize {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for j in 0..k {
        c = c * (n - j) as u128 / (j + 1) as u128;
        if c > usize::MAX as u128 {
            return usize::MAX;
        }
    }
    c as usize
}

/// Every subset of `0..n` with `size` members, as masks in increasing order.
fn subsets_of_size(n: usize, size: usize) -> Vec<Mask> {
    let mut out = Vec::new();
    let mut chosen: Vec<usize> = (0..size).collect();
    if size > n {
        return out;
    }
    loop {
        out.push(chosen.iter().fold(0, |mask: Mask, &i| mask | (1 << i)));
        // Next combination in lexicographic order.
        let mut j = size;
        loop {
            if j == 0 {
                return out;
            }
            j -= 1;
            if chosen[j] < n - size + j {
                chosen[j] += 1;
                for l in j + 1..size {
                    chosen[l] = chosen[l - 1] + 1;
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapley::exact;

    #[test]
    fn subsets_are_enumerated_by_size() {
        assert_eq!(subsets_of_size(4, 2).len(), 6);
        assert_eq!(subsets_of_size(3, 0), vec![0]);
        assert_eq!(binomial(100, 2), 4950);
    }

    #[test]
    fn a_budget_for_every_subset_gives_the_exact_values() {
        // A saturating game: the first two "useful" members bring almost everything.
        let weights = [0.6, 0.5, 0.0, 0.4, 0.1, 0.3, 0.05];
        let utility = |s: &[usize]| {
            let total: f64 = s.iter().map(|&i| weights[i]).sum();
            1.0 - (-3.0 * total).exp()
        };
        let exact = exact(7, &utility).unwrap();
        let all = stratified(
            7,
            &utility,
            &Estimate::Stratified {
                seed: 1,
                max_evaluations: 128,
            },
        )
        .unwrap();
        for (a, b) in exact.values.iter().zip(&all.values) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(all.evaluations, 128);
        let cheap = stratified(
            7,
            &utility,
            &Estimate::Stratified {
                seed: 1,
                max_evaluations: 64,
            },
        )
        .unwrap();
        assert!(cheap.evaluations <= 64, "{}", cheap.evaluations);
        let error: f64 = exact
            .values
            .iter()
            .zip(&cheap.values)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(error < 0.05 * (exact.grand - exact.empty), "{error}");
        assert!(
            cheap.values[2].abs() < 0.01 * (exact.grand - exact.empty),
            "a null player stays near 0: {}",
            cheap.values[2]
        );
    }
}
