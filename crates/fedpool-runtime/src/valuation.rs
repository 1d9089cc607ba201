//! Valuing a round's contributions from its updates, without retraining (FedSV, Wang et al.
//! 2020): the utility of a subset of the round's contributors is the validation metric of the
//! model before the round plus the subset's terms of the round's row-weighted mean, so the
//! whole round gives the round's aggregate and a zero update is worth nothing.
//!
//! Contributors whose updates point the same way (cosine similarity at least
//! [`ValuationRecipe::duplicate_similarity`]) are one player: a copy of someone's rows trains
//! to nearly the same update, and valuing the copies as one and sharing that value keeps a
//! duplicated dataset from earning twice. Honest clients' updates, even on identically
//! distributed data, stay far below the threshold (measured on digits: at most 0.88 in the
//! first round, about 0.5 after; a copy: 0.996).
//!
//! Everything that fixes the scores is in the [`ValuationRecipe`], recorded with the payout, so
//! anyone holding the round's updates (named by hash on the ledger) and the validation set can
//! recompute them ([`value_round`] is deterministic on any thread count).

use fedpool_core::{Metrics, Network, evaluate_outputs};
use fedpool_data::Dataset;
use fedpool_value::{Estimate, shapley};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Cosine similarity above which two updates are taken as copies of one dataset.
pub const DUPLICATE_SIMILARITY: f64 = 0.95;

/// How a model's rounds are valued: fixed per model, recorded with every payout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuationRecipe {
    /// What a contribution's value is.
    pub method: Method,
    /// The validation metric a subset's model is scored by.
    pub metric: Utility,
    /// Shapley values are exact up to this many players (at most [`shapley::MAX_EXACT`]) and
    /// estimated by `sampling` above.
    pub exact_up_to: usize,
    /// The estimator above `exact_up_to` players (its seed is mixed with the round number, so
    /// every round draws its own permutations).
    pub sampling: Estimate,
    /// Updates at least this similar (cosine) are one player sharing one value; above 1 turns
    /// duplicate detection off.
    pub duplicate_similarity: f64,
    /// blake3 of the validation set's features and targets ([`validation_hash`]).
    pub validation_hash: String,
    /// A round that moves the validation metric by less than this (or makes it worse) is not
    /// valued: its scores are 0 and its share of the pool carries over (GTG-Shapley's
    /// between-round truncation). Shares of a gain of a row or two are noise.
    pub min_gain: f64,
}

/// The validation metric a subset's model is scored by (higher is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Utility {
    /// Accuracy (−RMSE for regression): what a reader understands, but a step function of the
    /// model, so small gains are a row or two of noise.
    #[default]
    Accuracy,
    /// −log-loss (−RMSE for regression): smooth, so small gains are measured.
    LogLoss,
}

/// What a contribution's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Shapley values: exact up to [`shapley::MAX_EXACT`] players, sampled above.
    Shapley,
    /// `v(N) − v(N ∖ {i})`.
    LeaveOneOut,
    /// Rows contributed (a baseline that needs no validation set).
    DataSize,
}

impl Method {
    /// The method a contract's `[rewards] valuation` names.
    pub fn of(contract: &fedpool_core::Contract) -> Method {
        match contract.rewards.valuation {
            fedpool_core::contract::Valuation::Shapley => Method::Shapley,
            fedpool_core::contract::Valuation::LeaveOneOut => Method::LeaveOneOut,
            fedpool_core::contract::Valuation::DataSize => Method::DataSize,
        }
    }
}

impl ValuationRecipe {
    /// The recipe fedpool uses for `method` on a validation set hashing to `validation_hash`:
    /// exact Shapley values up to 12 players; above, stratified sampling with a control
    /// variate within 4,096 evaluations (what exact values of 12 cost); rounds that gain less
    /// than half a point of accuracy are not valued.
    pub fn new(method: Method, seed: u64, validation_hash: String) -> Self {
        Self {
            method,
            metric: Utility::Accuracy,
            exact_up_to: shapley::MAX_EXACT,
            sampling: Estimate::Stratified {
                seed,
                max_evaluations: 1 << shapley::MAX_EXACT,
            },
            duplicate_similarity: DUPLICATE_SIMILARITY,
            validation_hash,
            min_gain: 0.005,
        }
    }

    /// A name for the method, as payouts record it.
    pub fn method_name(&self, n_players: usize) -> &'static str {
        match self.method {
            Method::Shapley if n_players <= self.exact_up_to.min(shapley::MAX_EXACT) => {
                "shapley-exact"
            }
            Method::Shapley => match self.sampling {
                Estimate::Exact => "shapley-exact",
                Estimate::Sampled { .. } => "shapley-permutations",
                Estimate::Stratified { .. } => "shapley-stratified",
                Estimate::LeaveOneOut => "leave-one-out",
            },
            Method::LeaveOneOut => "leave-one-out",
            Method::DataSize => "data-size",
        }
    }
}

/// One contributor's update as the publisher received it (clipped, under central DP).
#[derive(Debug, Clone, Copy)]
pub struct RoundUpdate<'a> {
    /// The update.
    pub delta: &'a [f32],
    /// Rows it was trained on (its weight in the round's mean).
    pub rows: usize,
}

/// One round's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundValuation {
    /// Each contributor's value, in the order the updates were given.
    pub scores: Vec<f64>,
    /// The players: contributors (by index) valued as one because their updates are copies.
    pub players: Vec<Vec<usize>>,
    /// Utility of the whole round and of the model before it.
    pub grand: f64,
    /// See `grand`.
    pub empty: f64,
    /// Distinct subsets evaluated.
    pub evaluations: usize,
    /// Permutations walked (sampled Shapley only).
    pub permutations: usize,
    /// `"shapley-exact"`, `"shapley-sampled"`, `"leave-one-out"` or `"data-size"`.
    pub method: String,
    /// Whether the round was valued: false when it gained less than the recipe's `min_gain`
    /// (every score is then 0).
    pub valued: bool,
}

/// blake3 of a validation set: its features' and targets' bytes, little-endian.
pub fn validation_hash(validation: &Dataset) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(validation.n_rows() as u64).to_le_bytes());
    for x in validation.features.iter() {
        hasher.update(&x.to_le_bytes());
    }
    match &validation.targets {
        fedpool_data::Targets::Classes { labels, n_classes } => {
            hasher.update(&(*n_classes as u64).to_le_bytes());
            for l in labels {
                hasher.update(&l.to_le_bytes());
            }
        }
        fedpool_data::Targets::Real(values) => {
            for v in values {
                hasher.update(&v.to_le_bytes());
            }
        }
    }
    hasher.finalize().to_hex().to_string()
}

/// Values one round. `round_seed` is mixed into the sampling seed (the round number).
pub fn value_round(
    network: &Network,
    before: &[f32],
    updates: &[RoundUpdate<'_>],
    validation: &Dataset,
    recipe: &ValuationRecipe,
    round_seed: u64,
) -> Result<RoundValuation, Error> {
    let players = duplicate_groups(updates, recipe.duplicate_similarity);
    let method = recipe.method_name(players.len()).to_string();
    if recipe.method == Method::DataSize {
        let scores = updates.iter().map(|u| u.rows as f64).collect();
        return Ok(RoundValuation {
            scores,
            players,
            grand: 0.0,
            empty: 0.0,
            evaluations: 0,
            permutations: 0,
            method,
            valued: true,
        });
    }
    let rows: usize = updates.iter().map(|u| u.rows).sum();
    let utility = |subset: &[usize]| -> f64 {
        let mut params = before.to_vec();
        if rows > 0 {
            for &player in subset {
                for &i in &players[player] {
                    let weight = updates[i].rows as f32 / rows as f32;
                    for (p, d) in params.iter_mut().zip(updates[i].delta) {
                        *p += weight * d;
                    }
                }
            }
        }
        match network.predict(&params, &validation.features) {
            Ok(outputs) => match evaluate_outputs(&outputs, &validation.targets) {
                Metrics::Classification { accuracy, .. } if recipe.metric == Utility::Accuracy => {
                    accuracy
                }
                Metrics::Classification { log_loss, .. } => -log_loss,
                Metrics::Regression { rmse, .. } => -rmse,
            },
            Err(_) => f64::NAN,
        }
    };
    let sampling = match &recipe.sampling {
        Estimate::Sampled {
            seed,
            truncation,
            target_std_error,
            max_permutations,
            batch,
        } => Estimate::Sampled {
            seed: seed ^ round_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            truncation: *truncation,
            target_std_error: *target_std_error,
            max_permutations: *max_permutations,
            batch: *batch,
        },
        Estimate::Stratified {
            seed,
            max_evaluations,
        } => Estimate::Stratified {
            seed: seed ^ round_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            max_evaluations: *max_evaluations,
        },
        other => other.clone(),
    };
    let grand = utility(&(0..players.len()).collect::<Vec<_>>());
    let empty = utility(&[]);
    if grand.is_nan() || empty.is_nan() {
        return Err(Error::Setup(
            "cannot value the round: the validation metric is not a number".into(),
        ));
    }
    if grand - empty < recipe.min_gain {
        return Ok(RoundValuation {
            scores: vec![0.0; updates.len()],
            players,
            grand,
            empty,
            evaluations: 2,
            permutations: 0,
            method,
            valued: false,
        });
    }
    let valuation = match recipe.method {
        Method::Shapley if players.len() <= recipe.exact_up_to.min(shapley::MAX_EXACT) => {
            shapley::exact(players.len(), &utility)
        }
        Method::Shapley => shapley::estimate(players.len(), &utility, &sampling),
        Method::LeaveOneOut => shapley::leave_one_out(players.len(), &utility),
        Method::DataSize => unreachable!("returned above"),
    }
    .map_err(|e| Error::Setup(format!("cannot value the round: {e}")))?;
    let mut scores = vec![0.0; updates.len()];
    for (player, value) in players.iter().zip(&valuation.values) {
        for &i in player {
            scores[i] = value / player.len() as f64;
        }
    }
    Ok(RoundValuation {
        scores,
        players,
        grand: valuation.grand,
        empty: valuation.empty,
        evaluations: valuation.evaluations,
        permutations: valuation.permutations,
        method,
        valued: true,
    })
}

/// Groups contributors whose updates have cosine similarity at least `threshold` (transitively),
/// each group in index order, groups ordered by their first member. Zero updates are never
/// grouped: they are alike only in carrying nothing.
pub fn duplicate_groups(updates: &[RoundUpdate<'_>], threshold: f64) -> Vec<Vec<usize>> {
    let n = updates.len();
    let norms: Vec<f64> = updates
        .iter()
        .map(|u| {
            u.delta
                .iter()
                .map(|x| f64::from(*x).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    if threshold <= 1.0 {
        for a in 0..n {
            for b in a + 1..n {
                if norms[a] == 0.0 || norms[b] == 0.0 {
                    continue;
                }
                let dot: f64 = updates[a]
                    .delta
                    .iter()
                    .zip(updates[b].delta)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum();
                if dot / (norms[a] * norms[b]) >= threshold {
                    let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root = vec![usize::MAX; n];
    for i in 0..n {
        let r = root(&mut parent, i);
        if group_of_root[r] == usize::MAX {
            group_of_root[r] = groups.len();
            groups.push(Vec::new());
        }
        groups[group_of_root[r]].push(i);
    }
    groups
}

/// What a payout records for anyone to recompute its scores: the recipe and the hashes of
/// the updates valued, in payout order (JSON).
pub fn payout_details(recipe: &ValuationRecipe, update_hashes: &[String]) -> String {
    serde_json::json!({ "recipe": recipe, "update_hashes": update_hashes }).to_string()
}

#[derive(Deserialize)]
struct PayoutDetails {
    recipe: ValuationRecipe,
    update_hashes: Vec<String>,
}

/// `verify`'s contract rules, plus the evidence to recompute round payouts' scores: the
/// network, the validation set and each valued round's updates.
pub struct ScoreEvidence<'a> {
    /// The model's network.
    pub network: &'a Network,
    /// The validation set the recipe names by hash.
    pub validation: &'a Dataset,
    /// The recipe the publisher announced (a payout naming another is flagged).
    pub recipe: &'a ValuationRecipe,
    /// Each valued round's model before it and updates.
    pub rounds: &'a [crate::RoundEvidence],
}

impl ScoreEvidence<'_> {
    fn recompute(&self, payout: &fedpool_ledger::RewardsPaid) -> Result<(), String> {
        let Some(round) = payout.round else {
            return Ok(());
        };
        let details: PayoutDetails = serde_json::from_str(&payout.details)
            .map_err(|e| format!("its details are not a valuation record: {e}"))?;
        if details.recipe != *self.recipe {
            return Err("it names another valuation recipe than the model's".into());
        }
        if details.recipe.validation_hash != validation_hash(self.validation) {
            return Err("it names another validation set".into());
        }
        let evidence = self
            .rounds
            .iter()
            .find(|r| r.round == round)
            .ok_or_else(|| format!("round {round} has no valued updates"))?;
        let held: Vec<String> = evidence
            .updates
            .iter()
            .map(|(_, delta, _)| crate::ledger::params_hash(delta))
            .collect();
        if held != details.update_hashes {
            return Err(format!(
                "the updates it names are not round {round}'s updates"
            ));
        }
        let updates = evidence.round_updates();
        let recomputed = value_round(
            self.network,
            &evidence.before,
            &updates,
            self.validation,
            &details.recipe,
            u64::from(round),
        )
        .map_err(|e| e.to_string())?;
        if recomputed.scores.len() != payout.payouts.len() {
            return Err(format!(
                "it scores {} participants, the round had {}",
                payout.payouts.len(),
                recomputed.scores.len()
            ));
        }
        for (line, score) in payout.payouts.iter().zip(&recomputed.scores) {
            if (line.score - score).abs() > 1e-9 * score.abs().max(1.0) {
                return Err(format!(
                    "{} is scored {}, the valuation recomputes {score}",
                    line.owner, line.score
                ));
            }
        }
        Ok(())
    }
}

impl fedpool_ledger::ContractRules for ScoreEvidence<'_> {
    fn terms(&self, contract_toml: &str) -> Result<fedpool_ledger::ModelTerms, String> {
        crate::ContractReader.terms(contract_toml)
    }

    fn epsilon_total(
        &self,
        contract_toml: &str,
        statistics: Option<&fedpool_ledger::RoundPlan>,
        plans: &[fedpool_ledger::RoundPlan],
    ) -> Result<Option<f64>, String> {
        crate::ContractReader.epsilon_total(contract_toml, statistics, plans)
    }

    fn uses_federated_statistics(&self, contract_toml: &str) -> bool {
        crate::ContractReader.uses_federated_statistics(contract_toml)
    }

    fn node_epsilons(
        &self,
        contract_toml: &str,
        histories: &[Vec<fedpool_ledger::PrivacyStep<'_>>],
    ) -> Vec<Result<Vec<f64>, String>> {
        crate::ContractReader.node_epsilons(contract_toml, histories)
    }

    fn check_payout(
        &self,
        contract_toml: &str,
        payout: &fedpool_ledger::RewardsPaid,
    ) -> Vec<(fedpool_ledger::PayoutFault, String)> {
        let mut faults = crate::ContractReader.check_payout(contract_toml, payout);
        if let Err(reason) = self.recompute(payout) {
            faults.push((fedpool_ledger::PayoutFault::ScoresDoNotRecompute, reason));
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_group_together_and_zero_updates_never_do() {
        let a = [1.0f32, 0.0, 0.0];
        let a_copy = [0.99f32, 0.01, 0.0];
        let b = [0.0f32, 1.0, 0.0];
        let zero = [0.0f32; 3];
        let updates: Vec<RoundUpdate> = [&a[..], &b, &a_copy, &zero, &zero]
            .iter()
            .map(|d| RoundUpdate { delta: d, rows: 1 })
            .collect();
        assert_eq!(
            duplicate_groups(&updates, DUPLICATE_SIMILARITY),
            vec![vec![0, 2], vec![1], vec![3], vec![4]]
        );
        assert_eq!(duplicate_groups(&updates, 1.5).len(), 5);
    }
}
