//! How `verify` reads a published contract: the terms its text states and the ε its rounds
//! cost, computed with the same code the publisher and every node use, so a publication or a
//! round that declares anything else is caught.

use std::collections::HashMap;

use fedpool_core::{Contract, Network};
use fedpool_data::StatisticsLayout;
use fedpool_ledger::{ContractRules, ModelTerms, PrivacyStep, RoundPlan};
use fedpool_privacy::{RdpAccountant, RoundMechanism};
use fedpool_protocol::PrivacyTerms;

/// fedpool's [`ContractRules`]: contracts parsed by `fedpool_core::Contract`, rounds accounted
/// by the contract's own mechanism.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContractReader;

/// The terms a contract states, as `publish` declares them and `verify` derives them.
pub fn contract_terms(contract: &Contract) -> ModelTerms {
    ModelTerms {
        required_fields: contract.schema.required_columns(),
        epsilon_budget: contract.privacy.epsilon_budget,
        delta: contract.privacy.delta,
        reward_pool: contract.rewards.pool,
        currency: contract.rewards.currency.clone(),
    }
}

fn parse(contract_toml: &str) -> Result<Contract, String> {
    Contract::from_toml(contract_toml, "the published contract").map_err(|e| e.to_string())
}

impl ContractRules for ContractReader {
    fn terms(&self, contract_toml: &str) -> Result<ModelTerms, String> {
        Ok(contract_terms(&parse(contract_toml)?))
    }

    fn epsilon_total(
        &self,
        contract_toml: &str,
        statistics: Option<&RoundPlan>,
        plans: &[RoundPlan],
    ) -> Result<Option<f64>, String> {
        let contract = parse(contract_toml)?;
        let terms = PrivacyTerms::from_contract(&contract);
        if !terms.adds_noise() {
            return Ok(None);
        }
        let dimension = Network::new(
            &contract.model,
            contract.n_features(),
            contract.schema.n_outputs(),
        )
        .map_err(|e| format!("cannot size the model: {e}"))?
        .n_params();
        // The publisher's accountant, step for step: the statistics phase, then one
        // composition per committed round.
        let mut accountant = RdpAccountant::default();
        if let Some(plan) = statistics {
            let layout = StatisticsLayout::of(&contract.schema)
                .ok_or("the contract has no statistics phase to account")?;
            let mut phase_terms = terms.for_statistics();
            phase_terms.clip_norm = plan.clip_norm;
            let planned = phase_terms.plan_round(
                plan.asked as usize,
                plan.eligible as usize,
                layout.dimension(),
            )?;
            let Some(mechanism) = planned.mechanism else {
                return Err("the contract adds noise but the statistics plan has none".into());
            };
            accountant
                .compose(&mechanism, 1)
                .map_err(|e| format!("cannot account the statistics phase: {e}"))?;
        }
        for plan in plans {
            let mut round_terms = terms.clone();
            round_terms.clip_norm = plan.clip_norm;
            let planned =
                round_terms.plan_round(plan.asked as usize, plan.eligible as usize, dimension)?;
            let Some(mechanism) = planned.mechanism else {
                return Err("the contract adds noise but the round's plan has none".into());
            };
            accountant
                .compose(&mechanism, 1)
                .map_err(|e| format!("cannot account a round: {e}"))?;
        }
        let (epsilon, _) = accountant
            .epsilon(terms.delta)
            .map_err(|e| format!("cannot convert to ε: {e}"))?;
        Ok(Some(epsilon))
    }

    fn uses_federated_statistics(&self, contract_toml: &str) -> bool {
        parse(contract_toml).is_ok_and(|contract| StatisticsLayout::of(&contract.schema).is_some())
    }

    fn node_epsilons(
        &self,
        contract_toml: &str,
        histories: &[Vec<PrivacyStep<'_>>],
    ) -> Vec<Result<Vec<f64>, String>> {
        let terms = match parse(contract_toml) {
            Ok(contract) => PrivacyTerms::from_contract(&contract),
            Err(reason) => return vec![Err(reason); histories.len()],
        };
        if !terms.adds_noise() {
            let reason = "the contract adds no noise, so no node spends privacy on it";
            return vec![Err(reason.to_string()); histories.len()];
        }
        let delta = terms.delta;
        let orders = RdpAccountant::default().orders().to_vec();
        // Thousands of owners of one model record the same few mechanisms.
        let mut curves: HashMap<&str, Result<Vec<f64>, String>> = HashMap::new();
        histories
            .iter()
            .map(|steps| {
                let mut accountant = RdpAccountant::default();
                steps
                    .iter()
                    .map(|step| {
                        let curve = curves.entry(step.mechanism).or_insert_with(|| {
                            serde_json::from_str::<RoundMechanism>(step.mechanism)
                                .map_err(|e| format!("unreadable mechanism: {e}"))
                                .and_then(|m| m.rdp_curve(&orders).map_err(|e| e.to_string()))
                        });
                        let curve = curve.as_ref().map_err(Clone::clone)?;
                        accountant
                            .compose_curve(curve, u64::from(step.rounds))
                            .map_err(|e| e.to_string())?;
                        accountant
                            .epsilon(delta)
                            .map(|(epsilon, _)| epsilon)
                            .map_err(|e| format!("cannot convert to ε: {e}"))
                    })
                    .collect()
            })
            .collect()
    }

    fn check_payout(
        &self,
        contract_toml: &str,
        payout: &fedpool_ledger::RewardsPaid,
    ) -> Vec<(fedpool_ledger::PayoutFault, String)> {
        let Ok(contract) = parse(contract_toml) else {
            // An unreadable contract is flagged where it is published.
            return Vec::new();
        };
        let terms = crate::rewards::PayTerms::of(&contract);
        let scores: Vec<f64> = payout.payouts.iter().map(|line| line.score).collect();
        let fault = |reason: String| {
            vec![(
                fedpool_ledger::PayoutFault::AmountsDoNotFollowScores,
                reason,
            )]
        };
        match crate::rewards::split_amounts(payout.allotment, &scores, &terms.rule) {
            Ok(expected) => {
                let amounts: Vec<u64> = payout.payouts.iter().map(|line| line.amount).collect();
                if amounts != expected.amounts || payout.carried != expected.carried {
                    fault(format!(
                        "pays {amounts:?} and carries {}, but {} split by its scores is {:?} carrying {}",
                        payout.carried, payout.allotment, expected.amounts, expected.carried
                    ))
                } else {
                    Vec::new()
                }
            }
            Err(e) => fault(e.to_string()),
        }
    }
}
