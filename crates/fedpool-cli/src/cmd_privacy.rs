//! `fedpool privacy epsilon|sigma`: plan a privacy budget with the Rényi-DP accountant.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

/// `fedpool privacy …`
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
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
