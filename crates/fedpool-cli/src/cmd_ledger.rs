//! `fedpool ledger show|verify|export|import`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use fedpool_ledger::{Body, Event, Store, wallet};
use serde_json::json;

use crate::home::{Home, format_time};
use crate::node::{self, Node};
use crate::report::count;

/// `fedpool ledger …`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// List events.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only events about this model (id, prefix or name).
        #[arg(long)]
        model: Option<String>,
        /// Show this ledger file (a kept simulation's, another node's) instead of the node's own.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Check signatures, chains, forks, consent at round time, privacy budgets and payouts.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Verify this ledger file instead of the node's own.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Also check every recorded anchor and settlement against the chain at --rpc, and
        /// report per author the latest height the chain vouches for.
        #[arg(long)]
        anchors: bool,
        /// The chain's JSON-RPC endpoint (with --anchors).
        #[arg(long, default_value = "http://127.0.0.1:8545", requires = "anchors")]
        rpc: String,
    },
    /// Write every event to a portable file.
    Export {
        /// Output file.
        file: PathBuf,
    },
    /// Merge events from a portable file (importing twice is a no-op).
    Import {
        /// Input file.
        file: PathBuf,
    },
}

/// Runs `fedpool ledger …`; `verify` exits 1 on any violation.
pub fn ledger(home: Home, command: LedgerCommand) -> Result<ExitCode> {
    match command {
        LedgerCommand::Show { json, model, file } => {
            let store = match &file {
                // Read as it is, whatever network it belongs to; never created.
                Some(path) => Store::open_existing(path)?,
                None => Store::open(&home.ledger_path(), &node::network()?)?,
            };
            let events = match model {
                Some(query) => store.events_by_model(node::find_model(&store, &query)?.id())?,
                None => store.events()?,
            };
            if json {
                let rows: Vec<_> = events.iter().map(event_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                if events.is_empty() {
                    println!("the ledger is empty");
                }
                for e in &events {
                    println!(
                        "{}  {} #{:<3} {:<16} {}  {}",
                        format_time(e.timestamp_ms()),
                        short(&e.author().to_string()),
                        e.seq(),
                        e.kind().name(),
                        short(&e.id().to_string()),
                        summary(e)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Verify {
            json,
            file,
            anchors,
            rpc,
        } => {
            let path = file.unwrap_or_else(|| home.ledger_path());
            let store = Store::open_existing(&path)?;
            let mut report = store.verify(&fedpool_runtime::ContractReader)?;
            let audit = if anchors {
                let events = store.events()?;
                let audit = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(async {
                        let client = fedpool_chain::ChainClient::connect(
                            &rpc,
                            None,
                            fedpool_chain::Retry::default(),
                        )
                        .await?;
                        fedpool_chain::audit(&client, &events).await
                    })?;
                report.violations.extend(audit.violations.iter().cloned());
                Some(audit)
            } else {
                None
            };
            if json {
                let mut value: serde_json::Value = serde_json::from_str(&report.to_json())?;
                if let Some(audit) = &audit {
                    value["anchors"] = json!({
                        "confirmed": audit.n_anchors_confirmed,
                        "settlements_confirmed": audit.n_settlements_confirmed,
                        "settlements_resent": audit.n_settlements_resent,
                        "other_chain": audit.n_other_chain,
                        "anchored": audit.anchored.iter().map(|(author, h)| json!({
                            "author": author.to_string(),
                            "height": h.seq,
                            "anchor_index": h.anchor_index,
                            "block": h.block_number,
                        })).collect::<Vec<_>>(),
                    });
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if report.is_ok() {
                println!(
                    "OK: {} by {}, {}, {}; every signature, chain, consent, budget and payout checks out",
                    count(report.n_events, "event"),
                    count(report.n_authors, "author"),
                    count(report.n_models, "model"),
                    count(report.n_rounds, "round")
                );
            } else {
                println!(
                    "{} in {}:",
                    count(report.violations.len(), "violation"),
                    count(report.n_events, "event")
                );
                for v in &report.violations {
                    println!("  {v}");
                }
            }
            if let (Some(audit), false) = (&audit, json) {
                println!(
                    "chain: {} and {} confirmed{}{}",
                    count(audit.n_anchors_confirmed, "anchor"),
                    count(audit.n_settlements_confirmed, "settlement"),
                    if audit.n_settlements_resent > 0 {
                        format!(
                            " ({} carried by a resend after the chain lost it)",
                            audit.n_settlements_resent
                        )
                    } else {
                        String::new()
                    },
                    if audit.n_other_chain > 0 {
                        format!(", {} on other chains not checked", audit.n_other_chain)
                    } else {
                        String::new()
                    }
                );
                for (author, height) in &audit.anchored {
                    println!(
                        "  {author} anchored up to seq {} (anchor {}, block {})",
                        height.seq, height.anchor_index, height.block_number
                    );
                }
            }
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        LedgerCommand::Export { file } => {
            let node = Node::open(home)?;
            let n = node.store.export_file(&file)?;
            println!("exported {} to {}", count(n, "event"), file.display());
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Import { file } => {
            let mut node = Node::open(home)?;
            let report = node.store.import_file(&file)?;
            println!(
                "imported {} ({} already present, {} recorded, {} rejected)",
                count(report.n_appended, "new event"),
                report.n_already_present,
                count(report.n_forks, "fork"),
                report.rejected.len()
            );
            for why in &report.rejected {
                println!("  rejected: {why}");
            }
            if !report.rejected.is_empty() {
                anyhow::bail!(
                    "{} of the bundle's events were rejected (listed above); the {} that verified were kept",
                    report.rejected.len(),
                    report.n_appended
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn short(s: &str) -> String {
    if s.len() <= 20 {
        s.to_string()
    } else {
        format!("{}…{}", &s[..14], &s[s.len() - 4..])
    }
}

fn decided_by(decision: Option<&fedpool_ledger::PolicyDecision>) -> String {
    decision.map_or_else(
        || ", by its owner".to_string(),
        |d| format!(", by policy rule {:?}", d.rule),
    )
}

pub(crate) fn summary(e: &Event) -> String {
    match e.body() {
        Body::ModelPublished(m) => {
            format!("{} v{} ({})", m.name, m.version, short(m.model_id.as_str()))
        }
        Body::ConsentGranted(c) => format!(
            "model {} with {} fields{}{}",
            short(c.model_id.as_str()),
            c.fields.len(),
            c.expires_at_ms
                .map(|t| format!(" until {}", format_time(t - 1)))
                .unwrap_or_default(),
            decided_by(c.decided_by.as_ref())
        ),
        Body::ConsentRefused(c) => format!(
            "model {}{}",
            short(c.model_id.as_str()),
            decided_by(c.decided_by.as_ref())
        ),
        Body::ConsentRevoked(r) => format!("consent {}", short(&r.consent.to_string())),
        Body::RoundCommitted(r) => format!(
            "round {} of {}: {}, ε total {:.3}{}",
            r.round,
            short(r.model_id.as_str()),
            count(r.participants.len() as u32, "participant"),
            r.epsilon_total,
            r.metrics
                .first()
                .map(|(k, v)| format!(", {k} {v:.4}"))
                .unwrap_or_default()
        ),
        Body::RewardsPaid(p) => format!(
            "{} paid to {} of {} ({}), {} carried, {}",
            p.payouts.iter().map(|line| line.amount).sum::<u64>(),
            p.payouts.iter().filter(|line| line.amount > 0).count(),
            count(p.payouts.len() as u32, "participant"),
            p.round
                .map_or("final".to_string(), |r| format!("round {r}")),
            p.carried,
            p.method
        ),
        Body::ModelReleased(r) => format!("released after {}", count(r.rounds, "round")),
        Body::PrivacySpent(p) if p.round == 0 => format!(
            "ε {:.3} spent on {} by its statistics phase",
            p.epsilon_total,
            short(p.model_id.as_str()),
        ),
        Body::PrivacySpent(p) => format!(
            "ε {:.3} spent on {} by round {} ({} in this step)",
            p.epsilon_total,
            short(p.model_id.as_str()),
            p.round,
            count(p.rounds, "round"),
        ),
        Body::StatisticsCommitted(s) => format!(
            "statistics of {}: {}, ε total {:.3}, scaling {}",
            short(s.model_id.as_str()),
            count(s.participants.len() as u32, "participant"),
            s.epsilon_total,
            short(&s.scaling_hash)
        ),
        Body::WalletLinked(l) => format!(
            "wallet {} linked on chain {}",
            wallet::format_address(&l.address),
            l.chain_id
        ),
        Body::WalletUnlinked(u) => format!(
            "wallet {} unlinked on chain {}",
            wallet::format_address(&u.address),
            u.chain_id
        ),
        Body::ChainAnchored(a) => format!(
            "{} anchored on chain {} (anchor {}, block {}, tx {})",
            count(a.heads.len() as u32, "chain head"),
            a.chain_id,
            a.anchor_index,
            a.block_number,
            short(&wallet::hex(&a.tx_hash))
        ),
        Body::RewardsSettled(s) => format!(
            "{} settled to {} for {} (batch {}, chain {}, block {}, tx {})",
            s.transfers.iter().map(|t| t.amount).sum::<u64>(),
            count(s.transfers.len() as u32, "wallet"),
            short(s.model_id.as_str()),
            s.nonce,
            s.chain_id,
            s.block_number,
            short(&wallet::hex(&s.tx_hash))
        ),
        Body::SettlementResent(s) => format!(
            "batch {} of {} sent again after the chain lost it (block {}, tx {})",
            s.nonce,
            short(s.model_id.as_str()),
            s.block_number,
            short(&wallet::hex(&s.tx_hash))
        ),
    }
}

pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    json!({
        "id": e.id().to_string(),
        "author": e.author().to_string(),
        "seq": e.seq(),
        "prev": e.prev().map(|p| p.to_string()),
        "timestamp_ms": e.timestamp_ms(),
        "kind": e.kind().name(),
        "body": e.body(),
    })
}
