//! `fedpool data` and `fedpool consent`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fedpool_data::{ColumnKind, LabelKind, SniffedType, sniff_csv};
use fedpool_ledger::{Body, content_hash};
use serde_json::json;

use crate::home::{Home, RegisteredDataset, format_time, now_ms, parse_until_date};
use crate::node::{self, Node};
use crate::owner;

/// `fedpool data …`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Register a local CSV (optionally .gz): its path, columns and fingerprint. The rows stay
    /// where they are.
    Add {
        /// A name to refer to it by.
        name: String,
        /// The CSV file.
        file: PathBuf,
        /// The label column.
        #[arg(long)]
        label: Option<String>,
    },
    /// List registered datasets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `fedpool data …`.
pub fn data(home: Home, command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Add { name, file, label } => {
            let path = std::fs::canonicalize(&file)
                .with_context(|| format!("cannot find data file {}", file.display()))?;
            let bytes = node::read_bytes(&path)?;
            let fingerprint = content_hash(&bytes);
            let source = path.display().to_string();
            let summary = if bytes.starts_with(&[0x1f, 0x8b]) {
                sniff_csv(flate2::read::GzDecoder::new(bytes.as_slice()), &source)?
            } else {
                sniff_csv(bytes.as_slice(), &source)?
            };
            if let Some(label) = &label
                && summary.column(label).is_none()
            {
                let names: Vec<&str> = summary.columns.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "{source}: no column \"{label}\" to use as the label (columns: {})",
                    names.join(", ")
                );
            }
            let n_columns = summary.columns.len();
            let n_rows = summary.n_rows;
            home.save_dataset(RegisteredDataset {
                name: name.clone(),
                path: path.clone(),
                label,
                fingerprint: fingerprint.clone(),
                n_rows,
                columns: summary.columns,
                registered_at_ms: now_ms(),
            })?;
            println!(
                "registered \"{name}\": {n_rows} rows, {n_columns} columns, fingerprint {fingerprint}"
            );
            println!(
                "the rows stay in {}; only the fingerprint is ever shared",
                path.display()
            );
            Ok(())
        }
        DataCommand::List { json } => {
            let datasets = home.datasets()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&datasets)?);
                return Ok(());
            }
            if datasets.is_empty() {
                println!("no datasets registered; add one with `fedpool data add NAME FILE`");
            }
            for d in datasets {
                println!(
                    "{}  {} rows × {} columns  {}  {}",
                    d.name,
                    d.n_rows,
                    d.columns.len(),
                    d.path.display(),
                    d.fingerprint
                );
            }
            Ok(())
        }
    }
}

/// `fedpool consent …`
#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Consent to a model using one of your registered datasets.
    Grant {
        /// Model id, id prefix, or name.
        model: String,
        /// The registered dataset to use.
        #[arg(long)]
        data: String,
        /// Last day (UTC) the consent holds, YYYY-MM-DD.
        #[arg(long)]
        until: Option<String>,
        /// The most ε you accept for this model (your node refuses rounds beyond it).
        #[arg(long)]
        epsilon_cap: Option<f64>,
    },
    /// Decline a model, on the ledger: it no longer waits for you.
    Refuse {
        /// Model id, id prefix, or name.
        model: String,
    },
    /// Withdraw your consent to a model; takes effect at the next round.
    Revoke {
        /// Model id, id prefix, or name.
        model: String,
    },
    /// List your consents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say what your consent policy decides for a model, and why: every rule's verdict.
    Explain {
        /// Model id, id prefix, or name.
        model: String,
    },
    /// Write a consent receipt for a model (Kantara CR v1.1 fields, with the signed ledger
    /// events that prove it): keep it, show it to anyone; `verify-receipt` checks it offline.
    Receipt {
        /// Model id, id prefix, or name.
        model: String,
        /// Write it to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a consent receipt against the signed events it carries (no node or ledger needed).
    VerifyReceipt {
        /// The receipt (JSON).
        file: PathBuf,
    },
}

/// Runs `fedpool consent …`.
pub fn consent(home: Home, command: ConsentCommand) -> Result<()> {
    if let ConsentCommand::VerifyReceipt { file } = &command {
        return verify_receipt(file);
    }
    let mut node = Node::open(home)?;
    let me = node.did();
    match command {
        ConsentCommand::Grant {
            model,
            data,
            until,
            epsilon_cap,
        } => {
            let model = node::find_model(&node.store, &model)?;
            let expires_at_ms = until.as_deref().map(parse_until_date).transpose()?;
            let terms = owner::GrantTerms {
                dataset: data.clone(),
                expires_at_ms,
                epsilon_cap,
            };
            let event = owner::grant(&mut node, &model, &terms)?;
            let Body::ConsentGranted(granted) = event.body() else {
                bail!("the signed event is not a consent; this is a bug");
            };
            println!("{}", event.id());
            eprintln!(
                "consented to \"{}\" with dataset \"{data}\"{}",
                model.body.name,
                expires_at_ms
                    .map(|t| format!(" until {}", format_time(t - 1)))
                    .unwrap_or_default()
            );
            eprintln!(
                "fields that will be used ({}): {}",
                granted.fields.len(),
                abbreviate(&granted.fields, 12)
            );
            Ok(())
        }
        ConsentCommand::Refuse { model } => {
            let model = node::find_model(&node.store, &model)?;
            let event = owner::refuse(&mut node, &model)?;
            println!("{}", event.id());
            eprintln!(
                "refused \"{}\"; it no longer waits for you, and your policy will not decide it",
                model.body.name
            );
            Ok(())
        }
        ConsentCommand::Revoke { model } => {
            let model = node::find_model(&node.store, &model)?;
            for event in owner::revoke(&mut node, &model)? {
                println!("{}", event.id());
            }
            eprintln!(
                "revoked; from the next round your node will decline to train {}",
                model.body.name
            );
            Ok(())
        }
        ConsentCommand::Receipt { model, out } => {
            let model = node::find_model(&node.store, &model)?;
            let receipt = crate::receipt::issue(&node, &model, now_ms())?;
            let text = serde_json::to_string_pretty(&receipt)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "receipt for your consent to \"{}\" ({}) written to {}",
                        model.body.name,
                        receipt.fedpool.status,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        ConsentCommand::VerifyReceipt { .. } => unreachable!("handled before the node opens"),
        ConsentCommand::Explain { model } => {
            let model = node::find_model(&node.store, &model)?;
            let Some(policy) = node.home.policy()? else {
                println!(
                    "no consent policy is set (fedpool policy set POLICY.toml); {} waits for you",
                    model.body.name
                );
                return Ok(());
            };
            let publisher = model.event.author().to_string();
            let explained = policy.policy.explain(&model.contract, &publisher);
            for check in &explained.checks {
                let action = match check.action {
                    fedpool_core::policy::PolicyAction::Grant => "grant",
                    fedpool_core::policy::PolicyAction::Refuse => "refuse",
                };
                match &check.outcome {
                    Ok(reasons) => println!(
                        "rule {:?} ({action}) applies: {}",
                        check.rule,
                        reasons.join("; ")
                    ),
                    Err(why) => println!("rule {:?} ({action}) does not apply: {why}", check.rule),
                }
            }
            match explained.decision() {
                Some(decision) => println!(
                    "=> your policy {} {} by rule {:?}",
                    match decision.action {
                        fedpool_core::policy::PolicyAction::Grant => "grants",
                        fedpool_core::policy::PolicyAction::Refuse => "refuses",
                    },
                    model.body.name,
                    decision.rule
                ),
                None => println!(
                    "=> no rule decides {}; it waits for you (fedpool consent grant)",
                    model.body.name
                ),
            }
            Ok(())
        }
        ConsentCommand::List { json } => {
            let models = node::published_models(&node.store)?;
            let name_of = |id: &fedpool_ledger::ModelId| {
                models
                    .iter()
                    .find(|m| m.id() == id)
                    .map_or_else(|| id.to_string(), |m| m.body.name.clone())
            };
            let datasets = node.home.datasets()?;
            let dataset_of = |fingerprint: &str| {
                datasets
                    .iter()
                    .find(|d| d.fingerprint == fingerprint)
                    .map(|d| d.name.clone())
            };
            let mut rows: Vec<_> = node::consents(&node.store, Some(&me), None, now_ms())?
                .into_iter()
                .map(|c| {
                    json!({
                        "decided_by": c.body.decided_by.as_ref().map(|d| &d.rule),
                        "dataset": dataset_of(&c.body.dataset_fingerprint),
                        "revoked_at_ms": c.revoked_at_ms,
                        "consent_id": c.event.id().to_string(),
                        "model_id": c.body.model_id.to_string(),
                        "model": name_of(&c.body.model_id),
                        "state": c.state,
                        "granted_at_ms": c.event.timestamp_ms(),
                        "expires_at_ms": c.body.expires_at_ms,
                        "epsilon_cap": c.body.epsilon_cap,
                        "dataset_fingerprint": c.body.dataset_fingerprint,
                        "fields": c.body.fields,
                    })
                })
                .collect();
            for event in node.store.events_by_author(&me)? {
                if let fedpool_ledger::Body::ConsentRefused(refusal) = event.body() {
                    rows.push(json!({
                        "decided_by": refusal.decided_by.as_ref().map(|d| &d.rule),
                        "consent_id": event.id().to_string(),
                        "model_id": refusal.model_id.to_string(),
                        "model": name_of(&refusal.model_id),
                        "state": "refused",
                        "refused_at_ms": event.timestamp_ms(),
                    }));
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no consents");
            }
            for r in rows {
                let by = r["decided_by"]
                    .as_str()
                    .map(|rule| format!(", by policy rule {rule:?}"))
                    .unwrap_or_default();
                if r["state"] == "refused" {
                    println!(
                        "{}  refused  {}  {}{by}",
                        r["model"].as_str().unwrap_or(""),
                        r["consent_id"].as_str().unwrap_or(""),
                        format_time(r["refused_at_ms"].as_u64().unwrap_or(0)),
                    );
                    continue;
                }
                let dataset = r["dataset"].as_str().map_or_else(
                    || {
                        let fingerprint = r["dataset_fingerprint"].as_str().unwrap_or("");
                        format!(
                            "an unregistered dataset {}",
                            &fingerprint[..fingerprint.len().min(16)]
                        )
                    },
                    |name| format!("dataset {name}"),
                );
                println!(
                    "{}  {}  {}  {dataset}, granted {}{by}{}{}{}",
                    r["model"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["consent_id"].as_str().unwrap_or(""),
                    format_time(r["granted_at_ms"].as_u64().unwrap_or(0)),
                    r["expires_at_ms"]
                        .as_u64()
                        .map(|t| format!(", until {}", format_time(t - 1)))
                        .unwrap_or_default(),
                    r["revoked_at_ms"]
                        .as_u64()
                        .map(|t| format!(", revoked {}", format_time(t)))
                        .unwrap_or_default(),
                    r["epsilon_cap"]
                        .as_f64()
                        .map(|cap| format!(", ε cap {cap}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// The fields a consent of `dataset` to `model` lets it read, once the dataset is checked as
/// training will read it: every required column present with its type, then every row parsed,
/// so a cell the schema cannot read, or a label the contract does not know, is named with its
/// file, line and column before anything is signed, not found by the node mid-round.
pub fn fields_to_consent(
    model: &node::PublishedModel,
    dataset: &RegisteredDataset,
) -> Result<Vec<String>> {
    // Missing columns are listed all at once from the registered header; a type mismatch is
    // better named by the row that shows it.
    let fits = check_dataset_fits(&model.contract, dataset);
    if let Err(e) = &fits
        && format!("{e:#}").contains("missing column")
    {
        return fits;
    }
    crate::load::DataSource::Csv(dataset.path.clone())
        .load(&model.contract.schema, &[])
        .with_context(|| {
            format!(
                "dataset \"{}\" does not fit the schema of {}",
                dataset.name, model.body.name
            )
        })?;
    fits
}

/// Checks that a dataset has every column a contract requires, with compatible types; returns
/// the fields the model will read.
fn check_dataset_fits(
    contract: &fedpool_core::Contract,
    dataset: &RegisteredDataset,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for column in contract.schema.feature_columns() {
        match dataset.columns.iter().find(|c| c.name == column.name) {
            None => problems.push(format!("missing column \"{}\"", column.name)),
            Some(found) => {
                if matches!(column.kind, ColumnKind::Numeric { .. })
                    && found.kind != SniffedType::Numeric
                {
                    problems.push(format!(
                        "column \"{}\" must be numeric but holds text",
                        column.name
                    ));
                }
            }
        }
    }
    let label = &contract.schema.label;
    match dataset.columns.iter().find(|c| c.name == label.name) {
        None => problems.push(format!("missing label column \"{}\"", label.name)),
        Some(found) => {
            if matches!(label.kind, LabelKind::Numeric) && found.kind != SniffedType::Numeric {
                problems.push(format!(
                    "label \"{}\" must be numeric but holds text",
                    label.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "dataset \"{}\" does not fit model \"{}\": {}",
            dataset.name,
            contract.model_info.name,
            abbreviate(&problems, 8)
        );
    }
    Ok(contract.schema.required_columns())
}

fn abbreviate(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!(
            "{}, … and {} more",
            items[..max].join(", "),
            items.len() - max
        )
    }
}

/// `fedpool consent verify-receipt FILE`
fn verify_receipt(file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let receipt = crate::receipt::verify(&text)
        .with_context(|| format!("{} does not verify", file.display()))?;
    let service = &receipt.services[0];
    println!(
        "OK: {} consented to {} (model {}), published by {} ({}), on {} UTC",
        receipt.pii_principal_id,
        service.service,
        receipt.fedpool.model_id,
        receipt.pii_controllers[0].pii_controller,
        receipt.pii_controllers[0].contact,
        format_time(receipt.consent_timestamp * 1000)
    );
    for purpose in &service.purposes {
        println!("  for: {}", purpose.purpose);
    }
    for excluded in &receipt.fedpool.out_of_scope_uses {
        println!("  never for: {excluded}");
    }
    if let Some(purpose) = service.purposes.first() {
        println!("  fields: {}", purpose.pii_category.join(", "));
        println!("  ends: {}", purpose.termination);
    }
    println!(
        "  status when issued ({} UTC): {}{}",
        format_time(receipt.fedpool.issued_at_ms),
        receipt.fedpool.status,
        receipt
            .fedpool
            .revoked_at_ms
            .map(|at| format!(", revoked on {} UTC", format_time(at)))
            .unwrap_or_default()
    );
    Ok(())
}
