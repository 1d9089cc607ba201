//! `fedpool privacy epsilon|sigma|contract`: plan a privacy budget with the Rényi-DP
//! accountant, by hand or for a contract's terms.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

/// `fedpool privacy …`
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// What a contract's rounds cost each owner: ε after every round for its privacy terms
    /// (central Gaussian or distributed discrete Gaussian under secure aggregation), exactly
    /// as nodes and the publisher account them.
    Contract {
        /// The model contract (TOML).
        contract: std::path::PathBuf,
        /// Owners eligible (consenting) each round; sets the round size.
        #[arg(long, default_value_t = 1000)]
        owners: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// ε spent by T rounds of the Poisson-subsampled Gaussian mechanism.
    Epsilon {
        /// Sampling rate: the share of clients in a round.
        #[arg(long)]
        q: f64,
        /// Noise multiplier z (noise std = z × clip norm).
        #[arg(long)]
        sigma: f64,
        /// Number of rounds.
        #[arg(long)]
        rounds: u64,
        /// δ of the (ε, δ) guarantee.
        #[arg(long)]
        delta: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The smallest noise multiplier that keeps T rounds within (ε, δ).
    Sigma {
        /// Sampling rate: the share of clients in a round.
        #[arg(long)]
        q: f64,
        /// Number of rounds.
        #[arg(long)]
        rounds: u64,
        /// Target ε.
        #[arg(long)]
        epsilon: f64,
        /// δ of the (ε, δ) guarantee.
        #[arg(long)]
        delta: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `fedpool privacy …`.
pub fn privacy(command: PrivacyCommand) -> Result<()> {
    match command {
        PrivacyCommand::Contract {
            contract,
            owners,
            json,
        } => contract_cost(&contract, owners, json)?,
        PrivacyCommand::Epsilon {
            q,
            sigma,
            rounds,
            delta,
            json,
        } => {
            let epsilon = fedpool_privacy::epsilon(q, sigma, rounds, delta)
                .context("cannot compute ε for these parameters")?;
            if json {
                println!(
                    "{}",
                    json!({"epsilon": epsilon, "q": q, "sigma": sigma, "rounds": rounds, "delta": delta})
                );
            } else {
                println!(
                    "ε = {epsilon:.4} at δ = {delta:e} after {rounds} rounds (q = {q}, σ = {sigma}; RDP, Mironov et al. 2019, converted as in Canonne et al. 2020)"
                );
            }
        }
        PrivacyCommand::Sigma {
            q,
            rounds,
            epsilon,
            delta,
            json,
        } => {
            let sigma = fedpool_privacy::sigma_for(q, rounds, epsilon, delta)
                .context("cannot find a noise multiplier for this budget")?;
            if json {
                println!(
                    "{}",
                    json!({"sigma": sigma, "q": q, "rounds": rounds, "epsilon": epsilon, "delta": delta})
                );
            } else {
                println!(
                    "σ = {sigma:.4} keeps {rounds} rounds at q = {q} within ε = {epsilon}, δ = {delta:e}"
                );
            }
        }
    }
    Ok(())
}

/// ε per round of a contract for `owners` eligible owners.
fn contract_cost(path: &std::path::Path, owners: usize, json: bool) -> Result<()> {
    let contract = crate::load::contract(path)?;
    let terms = fedpool_protocol::PrivacyTerms::from_contract(&contract);
    let network = fedpool_core::Network::new(
        &contract.model,
        contract.n_features(),
        contract.schema.n_outputs(),
    )?;
    let sampled = contract
        .training
        .sampling
        .round_size(owners)
        .with_context(|| format!("cannot sample a round from {owners} owners"))?;
    // Self-selected rounds ask every owner; each contributes by its own coin.
    let sampled = if terms.self_selection_rate().is_some() {
        owners
    } else {
        sampled
    };
    let plan = terms
        .plan_round(sampled, owners, network.n_params())
        .map_err(anyhow::Error::msg)?;
    let Some(mechanism) = plan.mechanism else {
        anyhow::bail!(
            "{} adds no noise (privacy.noise_multiplier = {}, clip_norm = {}): its rounds are not differentially private",
            path.display(),
            contract.privacy.noise_multiplier,
            contract.privacy.clip_norm
        );
    };
    let rounds = contract.training.rounds as u64;
    // One composition per round, read after each: the curve the nodes' ledgers follow.
    let mut accountant = fedpool_privacy::RdpAccountant::default();
    let per_round: Vec<f64> = (1..=rounds)
        .map(|_| {
            accountant.compose(&mechanism, 1)?;
            Ok(accountant.epsilon(terms.delta)?.0)
        })
        .collect::<Result<_, fedpool_privacy::Error>>()
        .context("cannot account the contract's rounds")?;
    let total = per_round.last().copied().unwrap_or(0.0);
    if !total.is_finite() {
        let why = match mechanism {
            fedpool_privacy::RoundMechanism::SubsampledGaussian { .. } => {
                "the Gaussian mechanism's bound has no finite value at this sampling rate and noise"
                    .to_string()
            }
            _ => format!(
                "under secure aggregation each of the {:.0} expected contributors adds its share of discrete Gaussian noise, and the distributed discrete Gaussian's bound (Kairouz et al. 2021) loosens with their number until it gives none",
                terms.expected_contributors(sampled)
            ),
        };
        anyhow::bail!(
            "{} gives no finite ε for {owners} owners: {why}; ask fewer owners per round (training.sampling.count) or raise privacy.noise_multiplier",
            path.display()
        );
    }
    let within = contract
        .privacy
        .epsilon_budget
        .map(|budget| per_round.iter().take_while(|&&e| e <= budget).count());
    let kind = match mechanism {
        fedpool_privacy::RoundMechanism::SubsampledGaussian { .. } => {
            "central Gaussian (Mironov, Talwar, Zhang 2019)"
        }
        fedpool_privacy::RoundMechanism::SubsampledDdg { .. }
        | fedpool_privacy::RoundMechanism::SubsampledDdgWithCount { .. } => {
            "distributed discrete Gaussian under secure aggregation (Kairouz et al. 2021), sampled (Zhu & Wang 2019)"
        }
    };
    if json {
        println!(
            "{}",
            json!({
                "contract": contract.model_info.name,
                "owners": owners,
                "asked_per_round": sampled,
                "expected_contributions_per_round": terms.expected_contributors(sampled),
                "self_selected": terms.self_selection_rate().is_some(),
                "q": mechanism.sampling_rate(),
                "noise_multiplier": mechanism.noise_multiplier(),
                "delta": terms.delta,
                "secure_aggregation": contract.privacy.secure_aggregation,
                "rounds": rounds,
                "epsilon": total,
                "epsilon_per_round": per_round,
                "epsilon_budget": contract.privacy.epsilon_budget,
                "rounds_within_budget": within,
            })
        );
        return Ok(());
    }
    if terms.self_selection_rate().is_some() {
        println!(
            "{}: all {owners} owners asked each round, each contributing by its own coin (q = {:.4}), z = {}, {kind}",
            contract.model_info.name,
            mechanism.sampling_rate(),
            contract.privacy.noise_multiplier
        );
    } else {
        println!(
            "{}: {sampled} of {owners} owners per round (q = {:.4}), z = {}, {kind}",
            contract.model_info.name,
            mechanism.sampling_rate(),
            contract.privacy.noise_multiplier
        );
    }
    for (round, epsilon) in per_round.iter().enumerate() {
        let round = round + 1;
        if round == 1 || round % 5 == 0 || round as u64 == rounds {
            println!("  after round {round:>3}: ε = {epsilon:.3}");
        }
    }
    println!(
        "ε = {total:.3} at δ = {:e} after all {rounds} rounds",
        terms.delta
    );
    if let (Some(budget), Some(within)) = (contract.privacy.epsilon_budget, within) {
        println!("budget ε = {budget}: the publisher can run {within} of the {rounds} rounds");
    }
    Ok(())
}
