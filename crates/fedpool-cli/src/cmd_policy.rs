//! `fedpool policy set|show|apply`: the owner's consent policy (`fedpool_core::policy`), kept in
//! the home, and its automatic decisions on the ledger; `fedpool consent explain MODEL` says
//! what it decides.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedpool_core::policy::{Policy, PolicyAction};
use fedpool_ledger::{Body, Keypair, ModelId, Store};
use fedpool_runtime::OwnerChoice;
use fedpool_runtime::consent_policy::{ConsentTerms, decision_event};
use serde::Serialize;

use crate::cmd_consent::fields_to_consent;
use crate::home::{Home, now_ms};
use crate::node::{self, Node};

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
    /// Let the policy decide every model that waits for you: each grant or refusal is signed
    /// onto the ledger naming its rule; a model no rule decides keeps waiting. A running node
    /// does this by itself when a publication arrives.
    Apply {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What the policy did with one model.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// The model's name.
    pub model: String,
    /// Its id.
    pub model_id: String,
    /// `granted`, `refused` or `waits`.
    pub decision: &'static str,
    /// The rule that decided.
    pub rule: Option<String>,
    /// Why the rule applied (or why nothing was decided).
    pub reasons: Vec<String>,
    /// The ledger event that records the decision.
    pub event: Option<String>,
}

/// Decides, by the home's policy, every model published by someone else that this owner has
/// neither consented to nor refused (and that is not released): a grant covers the policy's
/// dataset, checked as `consent grant` checks it. Nothing happens without a policy.
///
/// `looked_at` holds (model, policy hash) pairs already tried: they are skipped, so a running
/// node reads a dataset once per model and policy, not at every ledger change; a new policy
/// tries every waiting model again.
pub fn apply(
    home: &Home,
    store: &mut Store,
    keypair: &Keypair,
    now: u64,
    looked_at: &mut HashSet<(ModelId, String)>,
) -> Result<Vec<Applied>> {
    let Some(policy) = home.policy()? else {
        return Ok(Vec::new());
    };
    let me = keypair.did();
    // Only publications not yet tried under this policy are looked into (one query per new
    // model), so a node asked at every ledger change does almost nothing when nothing is new.
    let mut failure = None;
    let waiting = node::published_models_where(store, |event, body| {
        let key = (body.model_id.clone(), policy.policy_hash.clone());
        if event.author() == me || looked_at.contains(&key) {
            return false;
        }
        match store.events_by_model(&body.model_id) {
            // Waiting: this owner has neither consented nor refused, and it is not released.
            Ok(events) => {
                looked_at.insert(key);
                !events.iter().any(|e| match e.body() {
                    Body::ConsentGranted(_) | Body::ConsentRefused(_) => e.author() == me,
                    Body::ModelReleased(_) => true,
                    _ => false,
                })
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut applied = Vec::new();
    for model in waiting {
        let mut row = Applied {
            model: model.body.name.clone(),
            model_id: model.id().to_string(),
            decision: "waits",
            rule: None,
            reasons: Vec::new(),
            event: None,
        };
        // A publication whose card hash is not its contract's terms is never decided for the
        // owner: whatever the policy read would not be what the consent names.
        if let Err(e) = node::card(store, &model) {
            row.reasons.push(format!("{e:#}"));
            applied.push(row);
            continue;
        }
        let choice = policy.decide(&model.contract, &model.event.author());
        let mut terms = ConsentTerms {
            model_id: model.id().clone(),
            publisher: model.event.author(),
            card_hash: model.body.card_hash.clone(),
            dataset_fingerprint: String::new(),
            fields: Vec::new(),
            expires_at_ms: None,
            epsilon_cap: None,
        };
        if choice.consents() {
            let fitted = policy
                .policy
                .dataset
                .as_deref()
                .context("the policy names no dataset to grant with")
                .and_then(|name| home.dataset(name))
                .and_then(|dataset| {
                    let fields = fields_to_consent(&model, &dataset)?;
                    Ok((dataset, fields))
                });
            match fitted {
                Ok((dataset, fields)) => {
                    terms.dataset_fingerprint = dataset.fingerprint;
                    terms.fields = fields;
                }
                Err(e) => {
                    row.rule = choice.rule().map(str::to_string);
                    row.reasons.push(format!(
                        "rule grants, but the dataset cannot be used: {e:#}"
                    ));
                    applied.push(row);
                    continue;
                }
            }
        }
        if let OwnerChoice::Grant { reasons, .. } | OwnerChoice::Refuse { reasons, .. } = &choice {
            row.reasons = reasons.clone();
        }
        row.rule = choice.rule().map(str::to_string);
        if let Some(body) = decision_event(&choice, terms) {
            let event = store.append_next(keypair, now, body)?;
            row.decision = if choice.consents() {
                "granted"
            } else {
                "refused"
            };
            row.event = Some(event.id().to_string());
        }
        applied.push(row);
    }
    Ok(applied)
}

/// One line per decision, for the terminal and the node's log.
pub fn describe(row: &Applied) -> String {
    match (&row.rule, row.decision) {
        (Some(rule), "granted" | "refused") => format!(
            "{} {} by rule {rule:?}: {}",
            row.decision,
            row.model,
            row.reasons.join("; ")
        ),
        _ if row.reasons.is_empty() => format!("{} waits for you: no rule decides it", row.model),
        _ => format!("{} waits for you: {}", row.model, row.reasons.join("; ")),
    }
}

/// Checks a policy's text as `policy set` keeps it: it parses (errors name the line and key),
/// and a policy that grants names a registered dataset for its consents to cover.
pub fn check(home: &Home, text: &str, source_name: &str) -> Result<Policy> {
    let parsed = Policy::from_toml(text, source_name)?;
    match &parsed.dataset {
        // A grant needs a registered dataset to name.
        Some(dataset) => {
            home.dataset(dataset)?;
        }
        None => {
            if let Some(rule) = parsed
                .rules
                .iter()
                .find(|r| r.action == PolicyAction::Grant)
            {
                bail!(
                    "{source_name}: rule {:?} grants, so the policy needs `dataset = \"NAME\"` (a dataset registered with `fedpool data add`) for its consents to cover",
                    rule.name
                );
            }
        }
    }
    Ok(parsed)
}

/// Runs `fedpool policy …`.
pub fn policy(home: Home, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Apply { json } => {
            let mut node = Node::open(home)?;
            if node.home.policy()?.is_none() {
                bail!("no consent policy is set; set one with `fedpool policy set POLICY.toml`");
            }
            let applied = apply(
                &node.home,
                &mut node.store,
                &node.keypair,
                now_ms(),
                &mut HashSet::new(),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&applied)?);
            } else if applied.is_empty() {
                println!("no model waits for a decision");
            } else {
                for row in &applied {
                    println!("{}", describe(row));
                }
            }
        }
        PolicyCommand::Set { policy } => {
            let text = std::fs::read_to_string(&policy)
                .with_context(|| format!("cannot read {}", policy.display()))?;
            let parsed = check(&home, &text, &policy.display().to_string())?;
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
