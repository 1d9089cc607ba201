//! `fedpool init`, `publish`, `models` and `card`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fedpool_ledger::{Keypair, Store, write_key_file};
use serde_json::json;

use crate::home::Home;
use crate::load;
use crate::node::{self, ConsentState, Node};

/// Arguments of `fedpool init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Replace an existing identity (its old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Creates the node's identity and ledger.
pub fn init(home: Home, args: InitArgs) -> Result<()> {
    home.ensure_exists()?;
    let keypair = Keypair::generate()?;
    write_key_file(&home.key_path(), &keypair, args.force)?;
    Store::open(&home.ledger_path(), &node::network()?)?;
    println!("{}", keypair.did());
    eprintln!(
        "identity written to {} (owner-only permissions); ledger at {}",
        home.key_path().display(),
        home.ledger_path().display()
    );
    Ok(())
}

/// Arguments of `fedpool publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The model contract (TOML).
    pub contract: PathBuf,
}

/// Signs and appends `ModelPublished`; prints the model id.
pub fn publish(home: Home, args: PublishArgs) -> Result<()> {
    let contract = load::contract(&args.contract)?;
    let text = std::fs::read_to_string(&args.contract)
        .with_context(|| format!("cannot read {}", args.contract.display()))?;
    let mut node = Node::open(home)?;
    let body = fedpool_runtime::publication(&contract, &text, &node.did());
    if let Some(existing) = node::published_models(&node.store)?
        .into_iter()
        .find(|m| m.id() == &body.model_id)
    {
        println!("{}", existing.id());
        eprintln!(
            "already published at seq {} by {}",
            existing.event.seq(),
            existing.event.author()
        );
        return Ok(());
    }
    let model_id = body.model_id.clone();
    let event = node.append(body)?;
    println!("{model_id}");
    eprintln!(
        "published \"{}\" v{} as event {} (card hash in the event; data owners consent to it)",
        contract.model_info.name,
        contract.model_info.version,
        event.id()
    );
    Ok(())
}

/// Arguments of `fedpool models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Lists published models.
pub fn models(home: Home, args: ModelsArgs) -> Result<()> {
    let node = Node::open(home)?;
    let now = crate::home::now_ms();
    let mut rows = Vec::new();
    for model in node::published_models(&node.store)? {
        let consents = node::consents(&node.store, None, Some(model.id()), now)?;
        let active = consents
            .iter()
            .filter(|c| c.state == ConsentState::Active)
            .count();
        let c = &model.contract;
        rows.push(json!({
            "model_id": model.id().to_string(),
            "name": c.model_info.name,
            "version": c.model_info.version,
            "publisher": model.event.author().to_string(),
            "purpose": c.purpose.intended_uses,
            "population": c.purpose.population,
            "privacy": {
                "clip_norm": c.privacy.clip_norm,
                "noise_multiplier": c.privacy.noise_multiplier,
                "epsilon_budget": c.privacy.epsilon_budget,
                "delta": c.privacy.delta,
                "secure_aggregation": c.privacy.secure_aggregation,
            },
            "rewards": {
                "pool": c.rewards.pool,
                "currency": c.rewards.currency,
                "valuation": c.rewards.valuation,
                "split": c.rewards.split,
            },
            "active_consents": active,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no models published yet");
    }
    for r in &rows {
        let privacy = &r["privacy"];
        let eps = match privacy["epsilon_budget"].as_f64() {
            Some(e) => format!("ε ≤ {e}, δ = {}", privacy["delta"]),
            None => "no DP budget".into(),
        };
        println!(
            "{} v{}  {}",
            r["name"].as_str().unwrap_or(""),
            r["version"].as_str().unwrap_or(""),
            r["model_id"].as_str().unwrap_or("")
        );
        println!("  publisher:  {}", r["publisher"].as_str().unwrap_or(""));
        println!(
            "  purpose:    {}",
            r["purpose"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default()
        );
        println!("  population: {}", r["population"].as_str().unwrap_or(""));
        println!(
            "  privacy:    {eps}, secure aggregation {}",
            if privacy["secure_aggregation"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            }
        );
        println!(
            "  rewards:    {} {} by {}",
            r["rewards"]["pool"],
            r["rewards"]["currency"].as_str().unwrap_or(""),
            r["rewards"]["valuation"].as_str().unwrap_or("")
        );
        println!("  consents:   {} active", r["active_consents"]);
    }
    Ok(())
}

/// Card output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CardFormat {
    /// Plain text.
    Text,
    /// JSON.
    Json,
    /// Markdown.
    Markdown,
    /// A self-contained HTML page.
    Html,
}

/// Arguments of `fedpool card`.
#[derive(Debug, Args)]
pub struct CardArgs {
    /// Model id, id prefix, or name.
    pub model: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CardFormat,
}

/// Prints a model's transparency card.
pub fn card(home: Home, args: CardArgs) -> Result<()> {
    let node = Node::open(home)?;
    let model = node::find_model(&node.store, &args.model)?;
    let card = node::card(&node.store, &model)?;
    match args.format {
        CardFormat::Text => print!("{}", card.to_text()),
        CardFormat::Json => println!("{}", serde_json::to_string_pretty(&card)?),
        CardFormat::Markdown => print!("{}", card.to_markdown()),
        CardFormat::Html => print!("{}", card.to_html()),
    }
    Ok(())
}
