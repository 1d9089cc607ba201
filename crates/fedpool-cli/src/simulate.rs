//! `fedpool simulate`: federated training of a contract over in-process clients.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedpool_core::{Contract, Metrics};
use fedpool_data::Partition;
use fedpool_runtime::{
    Attack, LedgerChoice, RoundRecord, Simulation, SimulationOptions, SimulationReport,
};
use fedpool_strategy::StrategyConfig;
use serde_json::json;

use crate::load::{self, DataSource};
use crate::report::{self, count};

/// Arguments of `fedpool simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The model contract (TOML).
    pub contract: PathBuf,
    /// Number of simulated clients (a `column:` partition makes one per distinct value).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How rows are split: iid, dirichlet:ALPHA, shards:K or column:NAME.
    #[arg(long, default_value = "iid")]
    pub partition: Partition,
    /// Rounds to run (default: the contract's).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed for every random choice; the same seed gives the same result.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Data: a CSV (optionally .gz), idx:IMAGES,LABELS, or bundled:NAME. Default: the bundled
    /// dataset the contract file is named after.
    #[arg(long)]
    pub data: Option<String>,
    /// Aggregation strategy, overriding the contract's (fedavg, fedprox:0.01, krum:0.2, ...).
    #[arg(long)]
    pub strategy: Option<StrategyConfig>,
    /// Misbehaviour of a share of clients: label-flip:F, noise:F[,STD], scale:F,X, or (for
    /// valuation studies) free-rider:F[,STD], duplicate:F, noisy-labels:F,P. Repeat for
    /// several at once (disjoint shares).
    #[arg(long)]
    pub attack: Vec<Attack>,
    /// Share of clients that consent to the model (the rest refuse and are never asked).
    #[arg(long, default_value_t = 1.0)]
    pub consent_rate: f64,
    /// An owner's consent policy (repeatable): client i holds the (i mod N)-th; each decides
    /// for its owner, on the ledger naming its rule, instead of --consent-rate.
    #[arg(long, conflicts_with = "consent_rate")]
    pub owner_policy: Vec<PathBuf>,
    /// Share of each round's sampled clients that drop out, each at a random stage (training,
    /// or any stage of secure aggregation).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Every consenting owner's own ε cap (recorded in its consent): nodes refuse rounds past
    /// it, whatever the publisher asks.
    #[arg(long)]
    pub owner_epsilon_cap: Option<f64>,
    /// Overrides the contract's noise multiplier z (privacy.noise_multiplier).
    #[arg(long)]
    pub noise_multiplier: Option<f64>,
    /// Overrides the contract's L2 clip norm (privacy.clip_norm).
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Overrides whether updates are securely aggregated (privacy.secure_aggregation).
    #[arg(long)]
    pub secure_aggregation: Option<bool>,
    /// Overrides the contract's ε budget (privacy.epsilon_budget; needs privacy.delta).
    #[arg(long)]
    pub epsilon_budget: Option<f64>,
    /// Keep the simulation's ledger in this SQLite file (default: a temporary one).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Overrides the contract's `training.sampling.min_clients` (the fewest updates a round
    /// needs), e.g. `--clients 1 --min-clients 1` for a centralised baseline.
    #[arg(long)]
    pub min_clients: Option<usize>,
    /// With `--ledger`: replace a file that already exists (a simulation records its own
    /// identities and consents, so it never appends to another ledger).
    #[arg(long, requires = "ledger")]
    pub force: bool,
    /// Value every contributor of every round by the contract's valuation (Shapley values of
    /// its update for held-out accuracy; under secure aggregation, of random groups from their
    /// noised sums) and pay the contract's pool by it; prints the rewards (`--json`: a
    /// `rewards` list).
    #[arg(long)]
    pub value: bool,
    /// Record nothing: no identities, consents, rounds or verification (for measuring
    /// training speed alone).
    #[arg(long, conflicts_with = "ledger")]
    pub no_ledger: bool,
    /// Print one JSON object with the results instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write metrics.csv and a chart of the metric per round into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `fedpool simulate`.
pub fn run(args: SimulateArgs) -> Result<()> {
    if args.rounds == Some(0) {
        anyhow::bail!(
            "--rounds 0 runs nothing: give at least 1, or leave it out for the contract's count"
        );
    }
    let mut contract = load::contract(&args.contract)?;
    if let Some(min_clients) = args.min_clients {
        contract.training.sampling.min_clients = min_clients;
        contract
            .validate(&args.contract.display().to_string())
            .context("--min-clients")?;
    }
    apply_privacy_overrides(&mut contract, &args)?;
    let source = match &args.data {
        Some(arg) => DataSource::parse(arg)?,
        None => DataSource::default_for(&args.contract)?,
    };
    let keep: Vec<&str> = match &args.partition {
        Partition::Column { name } => vec![name.as_str()],
        _ => Vec::new(),
    };
    let table = source.load(&contract.schema, &keep)?;
    let mut options = SimulationOptions::new(args.clients, args.partition.clone(), args.seed);
    options.rounds = args.rounds;
    options.strategy = args.strategy.clone();
    options.attacks = args.attack.clone();
    options.value_contributions = args.value;
    options.consent_rate = args.consent_rate;
    for path in &args.owner_policy {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        options
            .owner_policies
            .push(fedpool_runtime::OwnerPolicy::from_toml(
                &text,
                &path.display().to_string(),
            )?);
    }
    options.dropout = args.dropout;
    options.owner_epsilon_cap = args.owner_epsilon_cap;
    if let Some(path) = &args.ledger
        && path.exists()
    {
        if !args.force {
            anyhow::bail!(
                "{} already exists: a simulation records its own publisher, owners and consents, and appending them to another ledger would break its verification; give a new path, or --force to replace the file",
                path.display()
            );
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("cannot replace {}", file.display()))?;
            }
        }
    }
    options.ledger = match &args.ledger {
        Some(path) => LedgerChoice::At(path.clone()),
        None if args.no_ledger => LedgerChoice::Off,
        None => LedgerChoice::Temporary,
    };
    let mut sim =
        Simulation::prepare(&contract, &table, &options).context("cannot set up the simulation")?;
    let n_rounds = args.rounds.unwrap_or(contract.training.rounds);
    let strategy = args
        .strategy
        .clone()
        .unwrap_or_else(|| contract.training.strategy.clone());
    if !args.json {
        println!(
            "simulating {} on {} ({} partition, {} test rows), {} of {}, seed {}",
            contract
                .model
                .describe(contract.n_features(), contract.schema.n_outputs()),
            count(sim.n_clients(), "client"),
            args.partition,
            sim.n_test_rows(),
            count(n_rounds, "round"),
            strategy,
            args.seed
        );
        println!("  data: {} ({} rows)", source.describe(), table.n_rows());
        if !args.attack.is_empty() && sim.n_attackers() > 0 {
            let attacks: Vec<String> = args.attack.iter().map(ToString::to_string).collect();
            println!(
                "  {} misbehave: {}",
                count(sim.n_attackers(), "client"),
                attacks.join(", ")
            );
        }
        println!("  privacy: {}", describe_privacy(&contract));
        if let Some(layout) = fedpool_data::StatisticsLayout::of(&contract.schema) {
            let names: Vec<&str> = layout.column_names().collect();
            let shown = match names.len() {
                0..=6 => names.join(", "),
                n => format!("{}, … {} more", names[..5].join(", "), n - 5),
            };
            println!(
                "  scaling: federated statistics of {} ({shown}), aggregated before round 1",
                count(names.len(), "column"),
            );
        } else if contract.schema.local_standardize {
            println!(
                "  scaling: each node standardises with its own statistics (local_standardize)"
            );
        }
    }
    let progress = report::round_bar(n_rounds as u64, !args.json);
    let report = sim.run(|record| {
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "{} {:.4}",
                record.metrics.headline_name(),
                record.metrics.headline()
            ));
            bar.inc(1);
        }
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let written = match &args.out {
        Some(dir) => Some(write_outputs(dir, &contract, &sim, &report)?),
        None => None,
    };
    if args.json {
        let output = json_report(&contract, &args, &strategy, &sim, &report);
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        print_summary(&report);
        print_rewards(&contract, &sim, &report);
        if let Some((csv, chart)) = written {
            println!("wrote {} and {}", csv.display(), chart.display());
        }
    }
    if let Some(ledger) = &report.ledger
        && !ledger.verify.is_ok()
    {
        anyhow::bail!(
            "the simulation's ledger failed verification with {} violations",
            ledger.verify.violations.len()
        );
    }
    if !report.rounds.iter().any(|r| r.completed) {
        let why = match (report.rounds.first(), &report.stopped_by_budget) {
            (Some(first), _) => first
                .failure
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
            (None, Some(budget)) => budget.clone(),
            (None, None) => "no round ran".into(),
        };
        anyhow::bail!("no round completed, so the model was never trained: {why}");
    }
    Ok(())
}

/// Applies `--noise-multiplier`, `--clip-norm`, `--secure-aggregation` and `--epsilon-budget`
/// to the contract, which is validated again: the simulation publishes the terms it runs.
fn apply_privacy_overrides(contract: &mut Contract, args: &SimulateArgs) -> Result<()> {
    let p = &mut contract.privacy;
    let mut changed = false;
    if let Some(z) = args.noise_multiplier {
        p.noise_multiplier = z;
        if z == 0.0 {
            // Without noise no ε is spent; a budget would be a claim the run cannot keep.
            p.epsilon_budget = None;
        }
        changed = true;
    }
    if let Some(c) = args.clip_norm {
        p.clip_norm = c;
        changed = true;
    }
    if let Some(secure) = args.secure_aggregation {
        p.secure_aggregation = secure;
        changed = true;
    }
    if let Some(budget) = args.epsilon_budget {
        p.epsilon_budget = Some(budget);
        p.delta.get_or_insert(fedpool_protocol::DEFAULT_DELTA);
        changed = true;
    }
    if changed {
        let source = args.contract.display().to_string();
        contract
            .validate(&source)
            .context("the privacy options make the contract invalid")?;
    }
    Ok(())
}

/// The contract's privacy terms in one line.
pub fn describe_privacy(contract: &Contract) -> String {
    let p = &contract.privacy;
    let mut parts = Vec::new();
    if p.clip_norm > 0.0 {
        parts.push(format!("updates clipped to L2 norm {}", p.clip_norm));
    }
    if p.noise_multiplier > 0.0 {
        parts.push(format!("noise multiplier z = {}", p.noise_multiplier));
        if let Some(budget) = p.epsilon_budget {
            parts.push(format!(
                "budget ε = {budget} at δ = {}",
                p.delta.unwrap_or(fedpool_protocol::DEFAULT_DELTA)
            ));
        }
    }
    if p.secure_aggregation {
        parts.push(format!(
            "secure aggregation (publisher sees only the sum; {:.0}% of members must survive)",
            p.secure_aggregation_threshold * 100.0
        ));
    }
    if parts.is_empty() {
        "none (the publisher sees every update)".into()
    } else {
        parts.join(", ")
    }
}

/// Writes metrics.csv and the chart; returns their paths.
pub fn write_outputs(
    dir: &std::path::Path,
    contract: &Contract,
    sim: &Simulation,
    report: &SimulationReport,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let csv = report::write_metrics_csv(dir, &report.rounds)?;
    let title = format!("{} — {} clients", contract.model_info.name, sim.n_clients());
    let chart = report::write_chart(dir, &title, sim.initial_metrics(), &report.rounds)?;
    report::write_epsilon_chart(
        dir,
        &format!("{} — privacy spent", contract.model_info.name),
        &report.rounds,
        contract.privacy.epsilon_budget,
    )?;
    write_release(dir, contract, sim, report)?;
    Ok((csv, chart))
}

/// The released model beside the metrics: `model.safetensors`, `MODEL_CARD.md`, the
/// transparency card (`card.md`, `card.html`) with the run's status, and with valuation
/// `rewards.csv` and `rewards.png`.
fn write_release(
    dir: &std::path::Path,
    contract: &Contract,
    sim: &Simulation,
    report: &SimulationReport,
) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    let model_id = report
        .ledger
        .as_ref()
        .map_or("(simulation without a ledger)".to_string(), |l| {
            l.model_id.clone()
        });
    let params_hash = fedpool_runtime::ledger::params_hash(&report.global);
    let weights = fedpool_core::release::to_safetensors(
        sim.network(),
        &report.global,
        &[
            ("fedpool.model_id", model_id.clone()),
            ("fedpool.params_hash", params_hash.clone()),
        ],
    )?;
    write("model.safetensors", &weights)?;
    let terms = fedpool_core::CardTerms::from_contract(contract);
    let metrics = fedpool_runtime::ledger::metric_pairs(&report.final_metrics);
    let facts = fedpool_core::model_card::ReleaseFacts {
        model_id: model_id.clone(),
        params_hash,
        rounds: report.rounds.iter().filter(|r| r.completed).count() as u32,
        consenting_owners: sim.n_consenting(),
        contributing_owners: report.n_contributing_clients,
        evaluation_rows: Some(report.n_test_rows),
        metrics: metrics.clone(),
        epsilon: report.epsilon,
        delta: report.delta,
        secure_aggregation: report.secure_aggregation,
    };
    write(
        "MODEL_CARD.md",
        fedpool_core::model_card::model_card_markdown(&terms, &facts).as_bytes(),
    )?;
    let card = fedpool_core::Card {
        model_id,
        card_hash: fedpool_ledger::content_hash(contract.canonical_terms().as_bytes()),
        terms,
        status: fedpool_core::CardStatus {
            active_consents: sim.n_consenting(),
            rounds_done: facts.rounds,
            participants: report.n_contributing_clients,
            epsilon_spent: report.epsilon,
            latest_metrics: metrics,
            released: true,
            paid: report.rewards.as_ref().map_or(0, |r| r.iter().sum()),
        },
    };
    write("card.md", card.to_markdown().as_bytes())?;
    write("card.html", card.to_html().as_bytes())?;
    if let (Some(values), Some(rewards)) = (&report.values, &report.rewards) {
        let mut csv = String::from("client,behaviour,value,reward\n");
        for (client, ((value, reward), behaviour)) in
            values.iter().zip(rewards).zip(sim.behaviours()).enumerate()
        {
            csv.push_str(&format!("{client},\"{behaviour}\",{value},{reward}\n"));
        }
        write("rewards.csv", csv.as_bytes())?;
        let honest: Vec<bool> = sim
            .behaviours()
            .iter()
            .map(|b| *b == fedpool_runtime::Behaviour::Honest)
            .collect();
        report::write_rewards_chart(
            dir,
            &format!("{} — rewards per client", contract.model_info.name),
            rewards,
            &honest,
            &contract.rewards.currency,
        )?;
    }
    Ok(())
}

fn print_summary(report: &SimulationReport) {
    match report.final_metrics {
        Metrics::Classification {
            accuracy,
            log_loss,
            macro_f1,
        } => println!(
            "final test accuracy {accuracy:.4}, log-loss {log_loss:.4}, macro-F1 {macro_f1:.4} after {} in {:.2} s",
            count(report.rounds.len(), "round"),
            report.seconds
        ),
        Metrics::Regression { rmse, mae } => println!(
            "final test RMSE {rmse:.4}, MAE {mae:.4} after {} in {:.2} s",
            count(report.rounds.len(), "round"),
            report.seconds
        ),
    }
    if let Some(statistics) = &report.statistics {
        println!(
            "feature statistics from {}{}",
            count(statistics.n_contributors, "node"),
            statistics
                .epsilon
                .map(|e| format!(", ε {e:.3} of the total below"))
                .unwrap_or_default()
        );
    }
    if let Some(epsilon) = report.epsilon {
        println!("privacy spent: ε = {epsilon:.3} at δ = {}", report.delta);
    }
    if let Some(why) = &report.stopped_by_budget {
        println!("training stopped at the privacy budget: {why}");
    }
    if report.secure_aggregation {
        println!(
            "secure aggregation: the publisher received {} masked vectors and {} plain updates",
            report.masked_inputs_seen, report.plain_updates_seen
        );
    }
    if report.n_dropouts > 0 {
        println!("{} dropped out", count(report.n_dropouts, "sampled client"));
    }
    if report.n_refused > 0 {
        println!(
            "{} refused consent and received {}",
            count(report.n_refused, "client"),
            count(report.n_requests_to_refusers, "training request")
        );
    }
    if let Some(ledger) = &report.ledger {
        let place = if ledger.temporary {
            "temporary ledger".to_string()
        } else {
            format!("ledger {}", ledger.path.display())
        };
        if ledger.verify.is_ok() {
            println!(
                "{place} verified: {}, {}, every participant had consent",
                count(ledger.verify.n_events, "event"),
                count(ledger.verify.n_rounds, "round")
            );
        } else {
            println!("{place} FAILED verification:");
            for v in &ledger.verify.violations {
                println!("  {v}");
            }
        }
    }
    let failed: Vec<&RoundRecord> = report.rounds.iter().filter(|r| !r.completed).collect();
    if !failed.is_empty() {
        println!(
            "{} failed and left the model unchanged:",
            count(failed.len(), "round")
        );
        for record in failed.iter().take(5) {
            println!(
                "  round {}: {}",
                record.round,
                record.failure.as_deref().unwrap_or("unknown reason")
            );
        }
        if failed.len() > 5 {
            println!("  ({} more in --json output)", failed.len() - 5);
        }
    }
}

/// How the rewards were computed, in one line.
fn rewards_method(contract: &Contract, report: &SimulationReport) -> String {
    let Some(recipe) = &report.valuation_recipe else {
        return String::new();
    };
    if report.secure_aggregation {
        return match contract.privacy.secure_aggregation_group_size {
            Some(group_size) => format!(
                "secure aggregation per group: each round's members split at random into groups of at least {group_size}, one secure sum per group, each carrying the contract's full noise (noise multiplier {}); each group valued (Shapley) from its sum alone, each owner's share attributed by least squares over rounds. The values are these estimates; nothing is paid by them, as the card of a secure contract says (under DP noise they are mostly noise: docs/valuation.md)",
                contract.privacy.noise_multiplier,
            ),
            None => "secure aggregation, one sum per round: no contribution can be told from it, so none is valued and nothing is paid by contribution (privacy.secure_aggregation_group_size has rounds summed per group, and estimates made from the groups' sums)".to_string(),
        };
    }
    let valuation = match recipe.method {
        fedpool_runtime::valuation::Method::Shapley => format!(
            "Shapley values of each round's updates for held-out accuracy (FedSV): exact up to {} players, stratified sampling above",
            recipe.exact_up_to
        ),
        fedpool_runtime::valuation::Method::LeaveOneOut => {
            "leave-one-out on held-out accuracy".to_string()
        }
        fedpool_runtime::valuation::Method::DataSize => "rows trained on".to_string(),
    };
    format!(
        "{valuation}; updates at cosine ≥ {} valued as one player; rounds gaining < {} not valued; the pool of {} {} split per round {:?} (floor {}, cap {}), carries paid at the end by total score",
        recipe.duplicate_similarity,
        recipe.min_gain,
        contract.rewards.pool,
        contract.rewards.currency,
        contract.rewards.split,
        contract.rewards.floor,
        contract
            .rewards
            .cap
            .map_or("none".to_string(), |c| c.to_string()),
    )
}

fn print_rewards(contract: &Contract, sim: &Simulation, report: &SimulationReport) {
    let (Some(values), Some(rewards)) = (&report.values, &report.rewards) else {
        return;
    };
    println!(
        "rewards ({} of {} {} paid):",
        rewards.iter().sum::<u64>(),
        contract.rewards.pool,
        contract.rewards.currency
    );
    for (client, ((value, reward), behaviour)) in
        values.iter().zip(rewards).zip(sim.behaviours()).enumerate()
    {
        println!("  client {client:>3}  {reward:>8}  value {value:>8.4}  {behaviour}");
    }
}

fn json_report(
    contract: &Contract,
    args: &SimulateArgs,
    strategy: &StrategyConfig,
    sim: &Simulation,
    report: &SimulationReport,
) -> serde_json::Value {
    let n_clients = sim.n_clients();
    let per_round: Vec<f64> = report
        .rounds
        .iter()
        .map(|r: &RoundRecord| r.metrics.headline())
        .collect();
    let mut output = json!({
        "contract": contract.model_info.name,
        "rounds": report.rounds.len(),
        "clients": n_clients,
        "partition": args.partition.to_string(),
        "strategy": strategy.to_string(),
        "attack": match args.attack.as_slice() {
            [] => serde_json::Value::Null,
            [one] => json!(one.to_string()),
            many => json!(many.iter().map(ToString::to_string).collect::<Vec<_>>()),
        },
        "seed": args.seed,
        "seconds": report.seconds,
        "final_metrics": report.final_metrics,
    });
    output["statistics"] = json!(report.statistics.as_ref().map(|s| json!({
        "contributors": s.n_contributors,
        "epsilon": s.epsilon,
        "scaling": s.scaling.as_ref(),
    })));
    if let (Some(values), Some(rewards)) = (&report.values, &report.rewards) {
        output["rewards"] = json!(
            values
                .iter()
                .zip(rewards)
                .zip(sim.behaviours())
                .enumerate()
                .map(|(client, ((value, reward), behaviour))| json!({
                    "client": client,
                    "behaviour": behaviour.to_string(),
                    "value": value,
                    "reward": reward,
                }))
                .collect::<Vec<_>>()
        );
        output["rewards_method"] = json!(rewards_method(contract, report));
        output["rewards_currency"] = json!(contract.rewards.currency);
    }
    output["consent_rate"] = json!(args.consent_rate);
    output["epsilon"] = json!(report.epsilon);
    output["delta"] = json!(report.delta);
    output["secure_aggregation"] = json!(report.secure_aggregation);
    output["dropouts"] = json!(report.n_dropouts);
    output["dropout_rate"] = json!(args.dropout);
    output["noise_multiplier"] = json!(contract.privacy.noise_multiplier);
    output["clip_norm"] = json!(contract.privacy.clip_norm);
    output["plain_updates_seen"] = json!(report.plain_updates_seen);
    output["masked_inputs_seen"] = json!(report.masked_inputs_seen);
    output["stopped_by_budget"] = json!(report.stopped_by_budget);
    output["failed_rounds"] = json!(
        report
            .rounds
            .iter()
            .filter(|r| !r.completed)
            .map(|r| json!({"round": r.round, "reason": r.failure}))
            .collect::<Vec<_>>()
    );
    output["refused"] = json!(report.n_refused);
    if let Some(ledger) = &report.ledger {
        output["ledger"] = json!({
            "path": if ledger.temporary { None } else { Some(ledger.path.display().to_string()) },
            "model_id": ledger.model_id,
            "verified": ledger.verify.is_ok(),
            "events": ledger.verify.n_events,
            "violations": ledger.verify.violations.len(),
        });
    }
    let name = report.final_metrics.headline_name();
    output[format!("final_{name}")] = json!(report.final_metrics.headline());
    output[format!("{name}_per_round")] = json!(per_round);
    output
}
