//! Valuing contributions the publisher cannot see: under secure aggregation only sums are
//! revealed. Each round, participants are split at random into groups of at least the
//! secure-aggregation minimum; each group's sum is what its own secure aggregation reveals;
//! the groups are valued exactly (Shapley over a handful of players, the same utility as
//! [`crate::valuation`]); and over many rounds of random regrouping each participant's
//! per-round value is recovered by least squares over `Σ_{i ∈ group} xᵢ = φ(group)` (group
//! testing). See `docs/valuation.md` for the method, its measured accuracy and its privacy
//! cost.

use fedpool_core::Network;
use fedpool_data::Dataset;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

use crate::Error;
use crate::valuation::{self, Method, RoundUpdate, ValuationRecipe};

/// The smallest group valued from its sum: the secure-aggregation minimum, below which a sum
/// would all but name its members.
pub const MIN_GROUP: usize = fedpool_core::contract::MIN_SECURE_GROUP;

/// Splits participants `0..n` at random into groups of at least `min_group` (as many groups
/// as fit; the remainder spread one each over the first groups). One group if `n` is below
/// twice the minimum.
pub fn random_groups(n: usize, min_group: usize, seed: u64) -> Vec<Vec<usize>> {
    let min_group = min_group.max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha20Rng::seed_from_u64(seed));
    let n_groups = (n / min_group).max(1);
    let mut groups = vec![Vec::new(); n_groups];
    for (position, member) in order.into_iter().enumerate() {
        groups[position % n_groups].push(member);
    }
    groups.iter_mut().for_each(|g| g.sort_unstable());
    groups
}

/// Exact Shapley values of `groups` (indices into `updates`) as players: what the publisher
/// can compute from the groups' sums alone.
pub fn value_groups(
    network: &Network,
    before: &[f32],
    updates: &[RoundUpdate<'_>],
    groups: &[Vec<usize>],
    validation: &Dataset,
    recipe: &ValuationRecipe,
    round_seed: u64,
) -> Result<Vec<f64>, Error> {
    // Each group enters as its own row-weighted mean with its rows: the round's mean then
    // weighs it exactly as it weighs the group's members, so a subset of groups gives the
    // sum of their members' terms.
    let means: Vec<(Vec<f32>, usize)> = groups
        .iter()
        .map(|group| {
            let rows: usize = group.iter().map(|&i| updates[i].rows).sum();
            let mut mean = vec![0.0f32; before.len()];
            for &i in group {
                let weight = updates[i].rows as f32 / rows.max(1) as f32;
                for (m, d) in mean.iter_mut().zip(updates[i].delta) {
                    *m += weight * d;
                }
            }
            (mean, rows)
        })
        .collect();
    value_group_means(network, before, &means, validation, recipe, round_seed)
}

/// Exact Shapley values of groups given as `(mean update, weight)`: what the publisher
/// computes from the sums a securely aggregated round releases, one per group.
pub fn value_group_means(
    network: &Network,
    before: &[f32],
    means: &[(Vec<f32>, usize)],
    validation: &Dataset,
    recipe: &ValuationRecipe,
    round_seed: u64,
) -> Result<Vec<f64>, Error> {
    let group_updates: Vec<RoundUpdate> = means
        .iter()
        .map(|(delta, rows)| RoundUpdate { delta, rows: *rows })
        .collect();
    let mut group_recipe = recipe.clone();
    group_recipe.method = Method::Shapley;
    // Sums of different groups are never copies of one another.
    group_recipe.duplicate_similarity = f64::INFINITY;
    group_recipe.min_gain = f64::NEG_INFINITY;
    let valued = valuation::value_round(
        network,
        before,
        &group_updates,
        validation,
        &group_recipe,
        round_seed,
    )?;
    Ok(valued.scores)
}

/// Equations `Σ_{i ∈ group} sᵢ = value / round's gain`, gathered over rounds, and their
/// least-squares solution: each client's share `sᵢ` of a round's gain, taken as steady across
/// rounds (a round's gain shrinks as training converges; a client's share need not).
#[derive(Debug, Clone)]
pub struct GroupAttribution {
    n_clients: usize,
    /// AᵀA and Aᵀb, accumulated.
    normal: Vec<Vec<f64>>,
    rhs: Vec<f64>,
    /// Per client, the summed gain of the rounds it was valued in.
    gains: Vec<f64>,
}

impl GroupAttribution {
    /// No equations yet, for `n_clients` clients.
    pub fn new(n_clients: usize) -> Self {
        Self {
            n_clients,
            normal: vec![vec![0.0; n_clients]; n_clients],
            rhs: vec![0.0; n_clients],
            gains: vec![0.0; n_clients],
        }
    }

    /// Adds one round: each group (of client indices) and its value. A round whose groups'
    /// values sum to nothing (no gain) says nothing about shares and is skipped.
    pub fn add_round(&mut self, groups: &[Vec<usize>], values: &[f64]) {
        let gain: f64 = values.iter().sum();
        if gain.abs() < 1e-9 {
            return;
        }
        for (group, &value) in groups.iter().zip(values) {
            for &i in group {
                self.gains[i] += gain;
                self.rhs[i] += value / gain;
                for &j in group {
                    self.normal[i][j] += 1.0;
                }
            }
        }
    }

    /// Each client's estimated value summed over the rounds it took part in: its least-squares
    /// share (a small ridge keeps clients never separated solvable) times those rounds' gains.
    pub fn totals(&self) -> Vec<f64> {
        let n = self.n_clients;
        let mut a = self.normal.clone();
        let mut b = self.rhs.clone();
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-6;
        }
        // Gaussian elimination with partial pivoting on the (symmetric, positive definite)
        // normal equations.
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap_or(col);
            a.swap(col, pivot);
            b.swap(col, pivot);
            let p = a[col][col];
            if p.abs() < 1e-12 {
                continue;
            }
            let pivot_row = a[col].clone();
            for row in col + 1..n {
                let factor = a[row][col] / p;
                if factor != 0.0 {
                    for (x, &y) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= factor * y;
                    }
                    b[row] -= factor * b[col];
                }
            }
        }
        let mut x = vec![0.0; n];
        for row in (0..n).rev() {
            let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
            x[row] = if a[row][row].abs() < 1e-12 {
                0.0
            } else {
                (b[row] - tail) / a[row][row]
            };
        }
        x.iter().zip(&self.gains).map(|(s, g)| s * g).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_random_disjoint_and_at_least_the_minimum() {
        let groups = random_groups(10, 3, 7);
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|g| g.len() >= 3));
        let mut all: Vec<usize> = groups.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(groups, random_groups(10, 3, 8));
        assert_eq!(random_groups(4, 3, 1).len(), 1);
    }

    #[test]
    fn least_squares_recovers_additive_values_from_group_sums() {
        let truth = [0.5, 0.0, 0.2, 0.1, -0.05, 0.3];
        let mut attribution = GroupAttribution::new(6);
        let mut expected = [0.0; 6];
        for round in 0..20 {
            // Gains shrink over rounds; shares stay.
            let scale = 1.0 / f64::from(round as u32 + 1);
            let groups = random_groups(6, 2, round);
            let values: Vec<f64> = groups
                .iter()
                .map(|g| g.iter().map(|&i| scale * truth[i]).sum())
                .collect();
            attribution.add_round(&groups, &values);
            for (e, t) in expected.iter_mut().zip(truth) {
                *e += scale * t;
            }
        }
        for (estimate, expected) in attribution.totals().iter().zip(expected) {
            assert!(
                (estimate - expected).abs() < 1e-4,
                "{estimate} vs {expected}"
            );
        }
    }
}
