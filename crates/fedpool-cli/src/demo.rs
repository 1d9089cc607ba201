//! `fedpool demo`: the guided tour on embedded defaults.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fedpool_core::{Contract, Metrics};
use fedpool_data::{Partition, Targets};
use fedpool_runtime::{LedgerChoice, OwnerChoice, OwnerPolicy, Simulation, SimulationOptions};

use crate::load::DataSource;
use crate::report::{count, round_bar};
use crate::simulate::{describe_privacy, write_outputs};

/// The demo's contract, embedded so the demo needs no files.
const DEMO_CONTRACT: &str = include_str!("../../../contracts/digits_private.toml");

/// The transparent contract of the rewards act: its card says the publisher sees each update.
const REWARDS_CONTRACT: &str = include_str!("../../../contracts/digits.toml");

/// The demo owners' consent policies, as `fedpool policy set` takes them; owner `i` holds
/// `OWNER_POLICIES[i % 8]`'s policy.
const OWNER_POLICIES: [(&str, &str); 3] = [
    (
        "private-postal",
        r#"dataset = "mine"
[[rule]]
name = "private-postal"
action = "grant"
purpose_contains = ["postal"]
max_epsilon = 8.0
secure_aggregation = true
"#,
    ),
    (
        "cautious",
        r#"dataset = "mine"
[[rule]]
name = "only-tiny-epsilon"
action = "grant"
max_epsilon = 2.0
"#,
    ),
    (
        "no-scans",
        r#"[[rule]]
name = "never-scanned-forms"
action = "refuse"
population_contains = "scanned"
"#,
    ),
];

/// Which policy each of eight owners in a row holds: most grant, one waits, one refuses.
const POLICY_CYCLE: [usize; 8] = [0, 0, 0, 0, 0, 0, 1, 2];

/// Arguments of `fedpool demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of data owners.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// With --nodes: share of data owners who consent after reading the card (in one process,
    /// each owner's consent policy decides).
    #[arg(long, default_value_t = 0.8)]
    pub consent_rate: f64,
    /// Share of each round's sampled owners that drop out mid-round, at a random stage.
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f64,
    /// Where metrics.csv, the chart and the ledger are written.
    #[arg(long, default_value = "fedpool-demo")]
    pub out: PathBuf,
    /// Run the story across N owner node processes (plus a publisher) on loopback, over
    /// libp2p, instead of in one process.
    #[arg(long)]
    pub nodes: Option<usize>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    if let Some(nodes) = args.nodes {
        return run_network(&args, nodes);
    }
    let contract = Contract::from_toml(DEMO_CONTRACT, "contracts/digits_private.toml")?;
    let source = DataSource::Bundled("digits");
    let table = source.load(&contract.schema, &[])?;
    let alpha = 0.5;
    let ledger_path = args.out.join("ledger.db");
    let mut options =
        SimulationOptions::new(args.clients, Partition::Dirichlet { alpha }, args.seed);
    options.owner_policies = POLICY_CYCLE
        .iter()
        .map(|&i| OwnerPolicy::from_toml(OWNER_POLICIES[i].1, OWNER_POLICIES[i].0))
        .collect::<Result<_, _>>()?;
    options.dropout = args.dropout;
    options.ledger = LedgerChoice::At(ledger_path.clone());

    println!("fedpool demo: consent-first federated learning, simulated on this machine\n");
    let info = &contract.model_info;
    println!("1. A publisher writes a model contract.");
    println!(
        "   \"{}\" v{} by {}",
        info.name, info.version, info.publisher
    );
    println!("   for:      {}", contract.purpose.intended_uses.join("; "));
    println!(
        "   not for:  {}",
        contract.purpose.out_of_scope_uses.join("; ")
    );
    println!("   applied to: {}", contract.purpose.population);
    println!(
        "   model:    {}, {} of {}",
        contract
            .model
            .describe(contract.n_features(), contract.schema.n_outputs()),
        count(contract.training.rounds, "round"),
        contract.training.strategy
    );
    println!("   privacy:  {}", describe_privacy(&contract));

    std::fs::create_dir_all(args.out.join("policies"))
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, text) in OWNER_POLICIES {
        let path = args.out.join("policies").join(format!("{name}.toml"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // A fresh ledger per demo run, so the verification below covers exactly this story.
    fedpool_runtime::remove_ledger_files(&ledger_path);
    let mut sim = Simulation::prepare(&contract, &table, &options)
        .context("cannot set up the demo simulation")?;
    let sizes = sim.client_sizes();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    println!(
        "\n2. {} data owners each keep a private slice of the digits dataset ({} rows in all).",
        sim.n_clients(),
        sizes.iter().sum::<usize>()
    );
    println!(
        "   The split is non-IID (Dirichlet α = {alpha}): owners hold {} to {} rows (median {}),",
        sorted.first().copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    );
    for client_idx in 0..3.min(sim.n_clients()) {
        if let Some(data) = sim.client_data(client_idx) {
            println!(
                "   owner {client_idx}: {}",
                describe_labels(&data.targets, 3)
            );
        }
    }
    println!(
        "   A further {} rows are held out to test the global model.",
        sim.n_test_rows()
    );

    println!(
        "\n   Each owner's node reads the transparency card and applies its owner's consent policy"
    );
    println!("   (fedpool policy set; here three kinds of owner):");
    let mut decided: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    for choice in sim.owner_choices() {
        let key = match choice {
            OwnerChoice::Grant { .. } => "granted",
            OwnerChoice::Refuse { .. } => "refused",
            OwnerChoice::Waits => "wait",
        };
        let entry = decided
            .entry(format!("{key} {}", choice.rule().unwrap_or("")))
            .or_insert((0, choice.describe()));
        entry.0 += 1;
    }
    for (n, description) in decided.values() {
        println!("   {:>4}: {description}", count(*n, "owner"));
    }
    println!(
        "   Every identity is a did:key; the publication, every grant and every refusal are signed events"
    );
    println!("   on the ledger, each automatic one naming the rule that made it.");

    println!(
        "\n3. Training: rows never leave their owner. Each round the publisher samples consenting owners;"
    );
    println!(
        "   each checks its consent and its own privacy accountant, trains locally, clips its update,"
    );
    println!(
        "   adds its share of discrete Gaussian noise and masks it (secure aggregation; keys signed by its did:key)."
    );
    println!(
        "   The publisher only ever holds masked vectors and their sum, then applies {}.",
        contract.training.strategy
    );
    if args.dropout > 0.0 {
        println!(
            "   {:.0}% of the owners sampled each round drop out mid-round, at a random stage.",
            args.dropout * 100.0
        );
    }
    let initial = sim.initial_metrics();
    println!(
        "   before training: test accuracy {:.3}",
        initial.headline()
    );
    let progress = round_bar(contract.training.rounds as u64, true);
    let report = sim.run(|record| {
        let line = match (record.completed, record.epsilon) {
            (true, Some(epsilon)) => format!(
                "   round {:>2}: test accuracy {:.3}  ({} in the sum, {} dropped; ε so far {epsilon:.2})",
                record.round,
                record.metrics.headline(),
                count(record.n_contributors, "owner"),
                record.n_dropouts
            ),
            (true, None) => format!(
                "   round {:>2}: test accuracy {:.3}  ({} updates)",
                record.round,
                record.metrics.headline(),
                record.n_contributors
            ),
            (false, _) => format!(
                "   round {:>2}: failed, model unchanged: {}",
                record.round,
                record.failure.as_deref().unwrap_or("unknown reason")
            ),
        };
        match &progress {
            Some(bar) => {
                if record.round % 5 == 0 || record.round == 1 {
                    bar.println(line);
                }
                bar.inc(1);
            }
            None => {
                if record.round % 5 == 0 || record.round == 1 {
                    println!("{line}");
                }
            }
        }
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    let (csv, chart) = write_outputs(&args.out, &contract, &sim, &report)?;
    println!("\n4. Result");
    if let Metrics::Classification {
        accuracy,
        log_loss,
        macro_f1,
    } = report.final_metrics
    {
        println!(
            "   test accuracy {accuracy:.3} (macro-F1 {macro_f1:.3}, log-loss {log_loss:.3}) after {}, {:.2} s of training",
            count(report.rounds.len(), "round"),
            report.seconds
        );
    }
    let n_waiting = sim
        .owner_choices()
        .iter()
        .filter(|c| **c == OwnerChoice::Waits)
        .count();
    println!(
        "   {} refused and {} still wait for their owners; they received {} (none, by construction).",
        count(report.n_refused - n_waiting, "owner"),
        n_waiting,
        count(report.n_requests_to_refusers, "training request")
    );
    if let Some(epsilon) = report.epsilon {
        println!(
            "   privacy spent: ε = {epsilon:.2} at δ = {} (budget {}); the most any owner's own node accounted: ε = {:.2}",
            report.delta,
            contract
                .privacy
                .epsilon_budget
                .map_or("none".to_string(), |b| b.to_string()),
            report.max_node_epsilon
        );
    }
    if let Some(why) = &report.stopped_by_budget {
        println!("   training stopped at the budget: {why}");
    }
    if report.secure_aggregation {
        println!(
            "   the publisher received {} and {}; {} dropped out and their masks were removed.",
            count(report.masked_inputs_seen, "masked vector"),
            count(report.plain_updates_seen, "plain update"),
            count(report.n_dropouts, "owner")
        );
    }
    if let Some(ledger) = &report.ledger {
        if ledger.verify.is_ok() {
            println!(
                "   ledger verified: {}, {}; every participant of every round had a valid consent.",
                count(ledger.verify.n_events, "signed event"),
                count(ledger.verify.n_rounds, "round")
            );
        } else {
            print_violations(&ledger.verify);
        }
        println!("   ledger:            {}", ledger.path.display());
        println!(
            "   audit it yourself: fedpool ledger verify --file {}",
            ledger.path.display()
        );
    }
    println!("   metrics per round: {}", csv.display());
    println!("   chart:             {}", chart.display());
    println!(
        "   released model:    {} (its hash is the ledger's model-released event's)",
        args.out.join("model.safetensors").display()
    );
    println!(
        "   model card:        {}; transparency card: {} and card.html",
        args.out.join("MODEL_CARD.md").display(),
        args.out.join("card.md").display()
    );
    if let Some(epsilon_chart) = Some(args.out.join("epsilon.png")).filter(|p| p.exists()) {
        println!("   ε per round:       {}", epsilon_chart.display());
    }
    let private_ok = report.ledger.as_ref().is_none_or(|l| l.verify.is_ok());
    let rewards_ok = rewards_act(&args.out.join("rewards"), args.seed)?;
    let policy_args: Vec<String> = POLICY_CYCLE
        .iter()
        .map(|&i| {
            format!(
                "--owner-policy {}",
                args.out
                    .join("policies")
                    .join(format!("{}.toml", OWNER_POLICIES[i].0))
                    .display()
            )
        })
        .collect();
    println!(
        "\nReproduce or vary it: fedpool simulate contracts/digits_private.toml --clients {} --partition dirichlet:{alpha} --dropout {} --seed {} {}",
        args.clients,
        args.dropout,
        args.seed,
        policy_args.join(" ")
    );
    println!(
        "                      fedpool simulate contracts/digits.toml --clients 10 --partition iid --rounds 5 --value --attack noisy-labels:0.2,0.8 --attack free-rider:0.1 --attack duplicate:0.1 --seed {}",
        args.seed
    );
    if !private_ok || !rewards_ok {
        anyhow::bail!("the demo's ledger failed verification");
    }
    Ok(())
}

/// The rewards act: under DP and secure aggregation the publisher sees only a noised sum, so
/// no contribution can be told apart; a transparent contract (its card says the publisher sees
/// each update) pays by measured contribution. Writes its report to `out`; returns whether its
/// ledger verified, scores recomputed.
fn rewards_act(out: &std::path::Path, seed: u64) -> Result<bool> {
    let contract = Contract::from_toml(REWARDS_CONTRACT, "contracts/digits.toml")?;
    let table = DataSource::Bundled("digits").load(&contract.schema, &[])?;
    let rounds = 5;
    let mut options = SimulationOptions::new(10, Partition::Iid, seed);
    options.rounds = Some(rounds);
    options.value_contributions = true;
    options.keep_round_evidence = true;
    options.attacks = ["noisy-labels:0.2,0.8", "free-rider:0.1", "duplicate:0.1"]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let ledger_path = out.join("ledger.db");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    fedpool_runtime::remove_ledger_files(&ledger_path);
    options.ledger = LedgerChoice::At(ledger_path.clone());
    println!("\n5. Rewards by measured contribution.");
    println!(
        "   Under DP and secure aggregation the publisher holds only a noised sum: no owner's contribution"
    );
    println!(
        "   can be told apart (that is the guarantee), and this demo does not split its pool by contribution."
    );
    println!(
        "   A second contract, \"{}\", says on its card that its publisher sees each update and pays its",
        contract.model_info.name
    );
    println!(
        "   pool of {} {} by Shapley value. 10 owners consent; among them 2 with 80% noisy labels, a free rider",
        contract.rewards.pool, contract.rewards.currency
    );
    println!("   sending zeros, and one holding a copy of another owner's rows.");
    let mut sim = Simulation::prepare(&contract, &table, &options)
        .context("cannot set up the rewards simulation")?;
    let report = sim.run(|_| {})?;
    write_outputs(out, &contract, &sim, &report)?;
    let (Some(values), Some(rewards)) = (&report.values, &report.rewards) else {
        anyhow::bail!("the rewards simulation valued nobody; this is a bug");
    };
    println!(
        "   After {}, test accuracy {:.3}; each round valued (FedSV, exact for 10 owners), copies as one:",
        count(report.rounds.len(), "round"),
        report.final_metrics.headline()
    );
    let mut order: Vec<usize> = (0..rewards.len()).collect();
    order.sort_by(|&a, &b| rewards[b].cmp(&rewards[a]).then(a.cmp(&b)));
    for client in order {
        println!(
            "     owner {client}: {:>4} {}  (value {:+.3})  {}",
            rewards[client],
            contract.rewards.currency,
            values[client],
            sim.behaviours()[client]
        );
    }
    let verified = report.ledger.as_ref().is_some_and(|l| l.verify.is_ok());
    if let Some(ledger) = &report.ledger {
        if verified {
            println!(
                "   {} of {} paid; ledger verified: every payout sums to its allotment, goes to a consenting",
                rewards.iter().sum::<u64>(),
                contract.rewards.pool
            );
            println!(
                "   participant, follows the contract's split, and every score recomputes from the updates."
            );
        } else {
            print_violations(&ledger.verify);
        }
        println!("   ledger:            {}", ledger.path.display());
    }
    println!(
        "   rewards:           {} and rewards.png",
        out.join("rewards.csv").display()
    );
    Ok(verified)
}

/// Says a ledger failed verification, and every violation.
fn print_violations(report: &fedpool_ledger::VerifyReport) {
    println!("   ledger verification FAILED:");
    for v in &report.violations {
        println!("     {v}");
    }
}

/// One owner's label mix as text, e.g. `23 rows, mostly digits 3 (12), 7 (8)`.
pub fn describe_labels(targets: &Targets, top: usize) -> String {
    let Targets::Classes { labels, n_classes } = targets else {
        return format!("{} rows", targets.len());
    };
    let mut counts = vec![0usize; *n_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let mut ranked: Vec<(usize, usize)> = counts
        .into_iter()
        .enumerate()
        .filter(|&(_, c)| c > 0)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let parts: Vec<String> = ranked
        .iter()
        .take(top)
        .map(|(class, count)| format!("{class} ({count})"))
        .collect();
    format!(
        "{} {}, {} distinct digits, mostly {}",
        labels.len(),
        if labels.len() == 1 { "row" } else { "rows" },
        ranked.len(),
        parts.join(", ")
    )
}

/// The demo across real processes: `cluster up`, `train`, every ledger compared, `cluster down`.
fn run_network(args: &DemoArgs, nodes: usize) -> Result<()> {
    use fedpool_node::control::{self, ControlRequest};

    let contract = Contract::from_toml(DEMO_CONTRACT, "contracts/digits_private.toml")?;
    let dir = args.out.join("network");
    if dir.join("cluster.json").exists() {
        crate::cmd_cluster::down(&dir)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let contract_path = dir.join("digits_private.toml");
    std::fs::write(&contract_path, DEMO_CONTRACT)?;
    println!(
        "fedpool demo over the network: {nodes} owner processes and a publisher on loopback\n"
    );
    println!(
        "1. The publisher publishes \"{}\"; {} start nodes, each with its own identity and a",
        contract.model_info.name,
        count(nodes, "owner")
    );
    println!(
        "   non-IID share of the digits; the publication reaches them over gossip; each reads the card."
    );
    let cluster = crate::cmd_cluster::up(&crate::cmd_cluster::UpArgs {
        dir: dir.clone(),
        nodes,
        contract: contract_path,
        data: Some("bundled:digits".into()),
        partition: "dirichlet:0.5".into(),
        consent_rate: args.consent_rate,
        seed: args.seed,
        round_timeout: 30,
        json: false,
        replay_simulation: false,
    })?;
    let result = (|| -> Result<()> {
        let owners: Vec<_> = cluster.nodes.iter().filter(|n| n.role == "owner").collect();
        let consenting = owners.iter().filter(|n| n.consented).count();
        println!(
            "   {consenting} consent, {} refuse; every consent is a signed event, replicated to the publisher.",
            owners.len() - consenting
        );
        println!(
            "\n2. Training over libp2p: DP noise shares and secure aggregation, as in the simulation."
        );
        let publisher = &cluster.nodes[0].home;
        let mut failure = None;
        control::call(
            publisher,
            &ControlRequest::Train {
                model: cluster.model.clone(),
                rounds: None,
                eval: Some("eval".into()),
            },
            |line| {
                if let Some(error) = line.get("error") {
                    failure = Some(error.to_string());
                }
                match line["event"].as_str() {
                    Some("completed") => println!(
                        "   round {:>2}: {} contributors, accuracy {:.3}, ε {:.3}",
                        line["round"],
                        line["contributors"],
                        line["accuracy"].as_f64().unwrap_or(f64::NAN),
                        line["epsilon"].as_f64().unwrap_or(0.0)
                    ),
                    Some("failed") => {
                        println!("   round {:>2} failed: {}", line["round"], line["reason"])
                    }
                    Some("budget_exhausted") => {
                        println!("   stopped: the next round would pass the ε budget")
                    }
                    _ => {}
                }
                Ok(())
            },
        )?;
        if let Some(why) = failure {
            anyhow::bail!("training failed: {why}");
        }
        // Give the last events a moment to replicate, then compare every node's ledger.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut digests = std::collections::BTreeSet::new();
        for node in &cluster.nodes {
            control::call(&node.home, &ControlRequest::Status, |status| {
                digests.insert(status["ledger"]["heads_digest"].to_string());
                Ok(())
            })?;
        }
        println!(
            "\n3. {} hold {} (same heads on every node: {}).",
            count(cluster.nodes.len(), "node"),
            count(digests.len(), "ledger"),
            digests.len() == 1
        );
        println!("   Homes, logs and ledgers: {}", dir.display());
        Ok(())
    })();
    let stopped = crate::cmd_cluster::down(&dir)?;
    println!("   {} stopped.", count(stopped, "node"));
    result
}
