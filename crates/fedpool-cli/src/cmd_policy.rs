//! `fedpool policy set|show`: the owner's consent policy (`fedpool_core::policy`), kept in the
//! home; `fedpool consent explain MODEL` says what it decides.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use fedpool_core::policy::Policy;

use crate::home::Home;

/// `fedpool policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file and make it this node's consent policy.
    Set {
        /// The policy (TOML: `dataset`, then `[[rule]]` tables).
        policy: PathBuf,
    },
    /// Print this node's consent policy.
    Show,
}

/// Runs `fedpool policy …`.
pub fn policy(home: Home, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Set { policy } => {
            let text = std::fs::read_to_string(&policy)
                .with_context(|| format!("cannot read {}", policy.display()))?;
            let parsed = Policy::from_toml(&text, &policy.display().to_string())?;
            if let Some(dataset) = &parsed.dataset {
                // A grant needs a registered dataset to name.
                home.dataset(dataset)?;
            }
            home.save_policy(&text)?;
            println!(
                "policy set: {} rules ({})",
                parsed.rules.len(),
                parsed
                    .rules
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        PolicyCommand::Show => match std::fs::read_to_string(home.policy_path()) {
            Ok(text) => print!("{text}"),
            Err(_) => println!("no consent policy is set"),
        },
    }
    Ok(())
}
