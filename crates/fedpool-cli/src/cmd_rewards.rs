//! `fedpool rewards`: what an owner earned, per model and round, derived from the payouts
//! each model's publisher signed on the ledger (a payout signed by anyone else does not count).

use anyhow::{Context, Result};
use clap::Args;
use fedpool_ledger::{Body, Did};
use serde_json::json;

use crate::home::Home;
use crate::node::{self, Node, PublishedModel};

/// Arguments of `fedpool rewards`.
#[derive(Debug, Args)]
pub struct RewardsArgs {
    /// Only this model (id, id prefix or name).
    #[arg(long)]
    pub model: Option<String>,
    /// Whose earnings (a did:key); this node's by default. Payouts are public on the ledger.
    #[arg(long, conflicts_with = "all")]
    pub owner: Option<String>,
    /// Every owner's balance per model instead of one owner's payouts.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One payout line to one owner.
pub(crate) struct Earning {
    pub(crate) owner: Did,
    pub(crate) round: Option<u32>,
    pub(crate) score: f64,
    pub(crate) amount: u64,
    pub(crate) method: String,
    pub(crate) event: String,
}

/// Shows earnings from the ledger.
pub fn rewards(home: Home, args: RewardsArgs) -> Result<()> {
    let node = Node::open(home)?;
    let models = match &args.model {
        Some(query) => vec![node::find_model(&node.store, query)?],
        None => node::published_models(&node.store)?,
    };
    if args.all {
        return all_balances(&node, &models, args.json);
    }
    let owner: Did = match &args.owner {
        Some(text) => text
            .parse()
            .with_context(|| format!("--owner {text} is not a did:key"))?,
        None => node.did(),
    };
    let mut report = Vec::new();
    for model in &models {
        let earnings = earnings(&node, model, Some(&owner))?;
        if !earnings.is_empty() {
            let settled = settled(&node, model, &owner)?;
            report.push((model, earnings, settled));
        }
    }
    if args.json {
        let models: Vec<_> = report
            .iter()
            .map(|(model, earnings, settled)| {
                json!({
                    "model_id": model.id().as_str(),
                    "name": model.body.name,
                    "currency": model.contract.rewards.currency,
                    "balance": earnings.iter().map(|e| e.amount).sum::<u64>(),
                    "settled_on_chain": settled,
                    "payouts": earnings.iter().map(|e| json!({
                        "round": e.round,
                        "score": e.score,
                        "amount": e.amount,
                        "method": e.method,
                        "event": e.event,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "owner": owner.to_string(), "models": models }))?
        );
        return Ok(());
    }
    if report.is_empty() {
        println!("{owner} has no rewards on this ledger");
        return Ok(());
    }
    println!("rewards of {owner}:");
    for (model, earnings, settled) in &report {
        let currency = &model.contract.rewards.currency;
        let balance = earnings.iter().map(|e| e.amount).sum::<u64>();
        println!(
            "{} ({}): {balance} {currency}{}",
            model.body.name,
            short(model.id().as_str()),
            if *settled > 0 {
                format!(
                    " ({settled} paid out as tokens, {} still credit)",
                    balance.saturating_sub(*settled)
                )
            } else {
                String::new()
            }
        );
        for e in earnings {
            let round = e
                .round
                .map_or("final".to_string(), |r| format!("round {r}"));
            println!(
                "  {round:<10} {:>8} {currency}  score {:>8.4}  {}",
                e.amount, e.score, e.method
            );
        }
    }
    Ok(())
}

/// Every owner's balance per model.
fn all_balances(node: &Node, models: &[PublishedModel], json: bool) -> Result<()> {
    let mut out = Vec::new();
    for model in models {
        let mut balances: std::collections::BTreeMap<String, u64> = Default::default();
        for earning in earnings(node, model, None)? {
            *balances.entry(earning.owner.to_string()).or_default() += earning.amount;
        }
        out.push((model, balances));
    }
    if json {
        let models: Vec<_> = out
            .iter()
            .map(|(model, balances)| {
                json!({
                    "model_id": model.id().as_str(),
                    "name": model.body.name,
                    "currency": model.contract.rewards.currency,
                    "pool": model.contract.rewards.pool,
                    "paid": balances.values().sum::<u64>(),
                    "balances": balances.iter().map(|(owner, amount)| json!({
                        "owner": owner,
                        "amount": amount,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "models": models }))?
        );
        return Ok(());
    }
    for (model, balances) in &out {
        let currency = &model.contract.rewards.currency;
        println!(
            "{} ({}): {} of {} {currency} paid to {} owners",
            model.body.name,
            short(model.id().as_str()),
            balances.values().sum::<u64>(),
            model.contract.rewards.pool,
            balances.len()
        );
        for (owner, amount) in balances {
            println!("  {amount:>8} {currency}  {owner}");
        }
    }
    Ok(())
}

/// The payout lines the model's publisher signed, to `owner` or to everyone.
pub(crate) fn earnings(
    node: &Node,
    model: &PublishedModel,
    owner: Option<&Did>,
) -> Result<Vec<Earning>> {
    let mut earnings = Vec::new();
    for event in node.store.events_by_model(model.id())? {
        let Body::RewardsPaid(payout) = event.body() else {
            continue;
        };
        if event.author() != model.event.author() {
            continue;
        }
        for line in &payout.payouts {
            if owner.is_none_or(|o| *o == line.owner) {
                earnings.push(Earning {
                    owner: line.owner,
                    round: payout.round,
                    score: line.score,
                    amount: line.amount,
                    method: payout.method.clone(),
                    event: event.id().to_string(),
                });
            }
        }
    }
    Ok(earnings)
}

/// What the model's publisher has paid `owner` on chain (its `rewards-settled` transfers).
pub(crate) fn settled(node: &Node, model: &PublishedModel, owner: &Did) -> Result<u64> {
    let mut total = 0;
    for event in node.store.events_by_model(model.id())? {
        let Body::RewardsSettled(settlement) = event.body() else {
            continue;
        };
        if event.author() != model.event.author() {
            continue;
        }
        total += settlement
            .transfers
            .iter()
            .filter(|t| t.owner == *owner)
            .map(|t| t.amount)
            .sum::<u64>();
    }
    Ok(total)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(16)]
}
