//! How `verify` reads a published contract: the terms its text states and the ε its rounds
//! cost, computed with the same code the publisher and every node use, so a publication or a
//! round that declares anything else is caught.

use fedpool_core::{Contract, Network};
use fedpool_ledger::{ContractRules, ModelTerms, RoundPlan};
use fedpool_privacy::RdpAccountant;
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
        // The publisher's accountant, step for step: one composition per committed round.
        let mut accountant = RdpAccountant::default();
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
}
