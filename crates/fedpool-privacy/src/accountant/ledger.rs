//! The privacy budget a data owner's node keeps for one model.

use super::{RdpAccountant, RoundMechanism};
use crate::error::{Error, Result, ensure};

/// Which limit bounds a node's spending on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BudgetLimit {
    /// The ε budget written in the model contract.
    Contract,
    /// The data owner's own cap, tighter than the contract's.
    OwnerCap,
}

impl std::fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BudgetLimit::Contract => "contract budget",
            BudgetLimit::OwnerCap => "owner cap",
        })
    }
}

/// What one more round would cost, as answered by [`PrivacyLedger::can_participate_in`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpendPreview {
    /// ε spent by the rounds recorded so far.
    pub epsilon_spent: f64,
    /// ε spent in total if this round happens.
    pub epsilon_after: f64,
    /// The binding limit, `min(contract budget, owner cap)`.
    pub epsilon_limit: f64,
    /// Which of the two limits binds.
    pub limit: BudgetLimit,
    /// The δ every ε here is stated at.
    pub delta: f64,
    /// The RDP order at which `epsilon_after` is attained.
    pub best_order: f64,
}

/// One recorded round.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundRecord {
    /// Poisson sampling rate of the round.
    pub q: f64,
    /// Noise multiplier of the round ([`RoundMechanism::noise_multiplier`]).
    pub sigma: f64,
    /// Total ε spent after this round.
    pub epsilon_after: f64,
    /// The round's mechanism. Always set by [`PrivacyLedger::record`]; absent (`None`) in
    /// records serialized before mechanisms were recorded, all of which were
    /// subsampled-Gaussian rounds described by `q` and `sigma` (see [`Self::mechanism`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<RoundMechanism>,
}

impl RoundRecord {
    /// The round's mechanism, reconstructing the subsampled Gaussian `(q, sigma)` for a
    /// record that predates the `mechanism` field.
    pub fn mechanism(&self) -> RoundMechanism {
        self.mechanism
            .unwrap_or(RoundMechanism::SubsampledGaussian {
                q: self.q,
                noise_multiplier: self.sigma,
            })
    }
}

/// Why a node must not take part in a round.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// The round would push spending past the binding limit.
    #[error(
        "round refused: epsilon would rise from {epsilon_spent:.4} to {epsilon_after:.4}, \
         above the {limit} of {epsilon_limit} (delta = {delta:e})"
    )]
    WouldExceed {
        /// ε spent so far.
        epsilon_spent: f64,
        /// ε after the round.
        epsilon_after: f64,
        /// The binding limit.
        epsilon_limit: f64,
        /// Which limit binds.
        limit: BudgetLimit,
        /// δ of the budget.
        delta: f64,
    },
    /// The round's parameters are invalid.
    #[error(transparent)]
    Invalid(#[from] Error),
}

/// A data owner's privacy budget for one model: the contract's (ε, δ), an optional tighter
/// owner cap on ε, and the history of mechanisms the node's data has been through.
///
/// ε is accounted with Rényi DP ([`RdpAccountant`]), so it grows sublinearly in the number
/// of rounds. Spent ε never decreases: every round adds a non-negative RDP curve and the
/// conversion to ε is monotone in the curve (`tests/ledger.rs` checks this by proptest).
///
/// Each round is a [`RoundMechanism`], so rounds with central Gaussian noise and rounds with
/// the distributed discrete Gaussian under secure aggregation share one budget. A node calls
/// [`Self::can_participate_in`] before training and [`Self::record`] once its update has
/// left; the latter records unconditionally, because the ledger must say what happened, not
/// what was allowed. [`Self::can_participate`] and [`Self::record_round`] are the same for a
/// subsampled-Gaussian round given by `(q, sigma)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrivacyLedger {
    epsilon_budget: f64,
    delta: f64,
    owner_cap_epsilon: Option<f64>,
    accountant: RdpAccountant,
    history: Vec<RoundRecord>,
}

/// The name the product docs use for [`PrivacyLedger`].
pub type BudgetTracker = PrivacyLedger;

impl PrivacyLedger {
    /// A fresh ledger with the contract's budget `(epsilon_budget, delta)` and an optional
    /// owner cap, accounting on the default orders.
    pub fn new(epsilon_budget: f64, delta: f64, owner_cap_epsilon: Option<f64>) -> Result<Self> {
        Self::with_accountant(
            epsilon_budget,
            delta,
            owner_cap_epsilon,
            RdpAccountant::default(),
        )
    }

    /// A ledger that starts from `accountant` (for a custom order grid).
    pub fn with_accountant(
        epsilon_budget: f64,
        delta: f64,
        owner_cap_epsilon: Option<f64>,
        accountant: RdpAccountant,
    ) -> Result<Self> {
        ensure(
            epsilon_budget >= 0.0 && epsilon_budget.is_finite(),
            "epsilon_budget",
            epsilon_budget,
            "0 <= epsilon_budget < inf",
        )?;
        ensure(delta > 0.0 && delta < 1.0, "delta", delta, "0 < delta < 1")?;
        check_cap(owner_cap_epsilon)?;
        Ok(Self {
            epsilon_budget,
            delta,
            owner_cap_epsilon,
            accountant,
            history: Vec::new(),
        })
    }

    /// The contract's ε budget.
    pub fn epsilon_budget(&self) -> f64 {
        self.epsilon_budget
    }

    /// The δ of the budget.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// The owner's cap on ε, if any.
    pub fn owner_cap_epsilon(&self) -> Option<f64> {
        self.owner_cap_epsilon
    }

    /// Sets or clears the owner's cap; it takes effect at the next
    /// [`Self::can_participate_in`].
    pub fn set_owner_cap_epsilon(&mut self, cap: Option<f64>) -> Result<()> {
        check_cap(cap)?;
        self.owner_cap_epsilon = cap;
        Ok(())
    }

    /// The binding limit `min(contract budget, owner cap)` and which one it is.
    pub fn epsilon_limit(&self) -> (f64, BudgetLimit) {
        match self.owner_cap_epsilon {
            Some(cap) if cap < self.epsilon_budget => (cap, BudgetLimit::OwnerCap),
            _ => (self.epsilon_budget, BudgetLimit::Contract),
        }
    }

    /// ε spent so far at the budget's δ (0 before any round).
    pub fn epsilon_spent(&self) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        // `delta` is validated at construction; a ledger deserialized with a bad one counts
        // as fully spent rather than panicking.
        self.accountant
            .epsilon(self.delta)
            .map_or(f64::INFINITY, |(eps, _)| eps)
    }

    /// The rounds recorded so far, oldest first.
    pub fn history(&self) -> &[RoundRecord] {
        &self.history
    }

    /// The accountant holding the composed RDP curve.
    pub fn accountant(&self) -> &RdpAccountant {
        &self.accountant
    }

    /// What a subsampled-Gaussian round with sampling rate `q` and noise multiplier `sigma`
    /// would cost: [`Self::can_participate_in`] with
    /// [`RoundMechanism::SubsampledGaussian`].
    pub fn can_participate(
        &self,
        q: f64,
        sigma: f64,
    ) -> std::result::Result<SpendPreview, BudgetError> {
        self.can_participate_in(&gaussian(q, sigma))
    }

    /// What a round of `mechanism` would cost; refuses with [`BudgetError::WouldExceed`] if
    /// the total would pass the binding limit, and with [`BudgetError::Invalid`] if the
    /// mechanism's parameters are out of range.
    pub fn can_participate_in(
        &self,
        mechanism: &RoundMechanism,
    ) -> std::result::Result<SpendPreview, BudgetError> {
        let preview = self.preview(mechanism)?.0;
        if preview.epsilon_after > preview.epsilon_limit {
            return Err(BudgetError::WouldExceed {
                epsilon_spent: preview.epsilon_spent,
                epsilon_after: preview.epsilon_after,
                epsilon_limit: preview.epsilon_limit,
                limit: preview.limit,
                delta: self.delta,
            });
        }
        Ok(preview)
    }

    /// Records a subsampled-Gaussian round: [`Self::record`] with
    /// [`RoundMechanism::SubsampledGaussian`].
    pub fn record_round(&mut self, q: f64, sigma: f64) -> Result<SpendPreview> {
        self.record(&gaussian(q, sigma))
    }

    /// Records a round of `mechanism` that happened and returns its cost. It records even
    /// past the limit: check with [`Self::can_participate_in`] first. Invalid parameters
    /// are an error and record nothing.
    pub fn record(&mut self, mechanism: &RoundMechanism) -> Result<SpendPreview> {
        self.record_rounds(mechanism, 1)
    }

    /// Records `rounds` rounds of `mechanism` at once (rounds a node was not asked in still
    /// compose under amplification by sampling); one history entry holds them all. Costs the
    /// same as one round, whatever `rounds` is.
    pub fn record_rounds(
        &mut self,
        mechanism: &RoundMechanism,
        rounds: u64,
    ) -> Result<SpendPreview> {
        if rounds == 0 {
            let (epsilon_limit, limit) = self.epsilon_limit();
            let spent = self.epsilon_spent();
            return Ok(SpendPreview {
                epsilon_spent: spent,
                epsilon_after: spent,
                epsilon_limit,
                limit,
                delta: self.delta,
                best_order: f64::NAN,
            });
        }
        let (preview, accountant) = self.preview_steps(mechanism, rounds)?;
        self.accountant = accountant;
        self.history.push(RoundRecord {
            q: mechanism.sampling_rate(),
            sigma: mechanism.noise_multiplier(),
            epsilon_after: preview.epsilon_after,
            mechanism: Some(*mechanism),
        });
        Ok(preview)
    }

    fn preview(&self, mechanism: &RoundMechanism) -> Result<(SpendPreview, RdpAccountant)> {
        self.preview_steps(mechanism, 1)
    }

    fn preview_steps(
        &self,
        mechanism: &RoundMechanism,
        steps: u64,
    ) -> Result<(SpendPreview, RdpAccountant)> {
        let mut accountant = self.accountant.clone();
        accountant.compose(mechanism, steps)?;
        let (epsilon_after, best_order) = accountant.epsilon(self.delta)?;
        let (epsilon_limit, limit) = self.epsilon_limit();
        let preview = SpendPreview {
            epsilon_spent: self.epsilon_spent(),
            epsilon_after,
            epsilon_limit,
            limit,
            delta: self.delta,
            best_order,
        };
        Ok((preview, accountant))
    }
}

fn gaussian(q: f64, sigma: f64) -> RoundMechanism {
    RoundMechanism::SubsampledGaussian {
        q,
        noise_multiplier: sigma,
    }
}

fn check_cap(cap: Option<f64>) -> Result<()> {
    if let Some(cap) = cap {
        ensure(
            cap >= 0.0 && cap.is_finite(),
            "owner_cap_epsilon",
            cap,
            "0 <= owner_cap_epsilon < inf",
        )?;
    }
    Ok(())
}
