//! Transparency cards: a contract rendered for the people asked to consent to it, in the sense
//! of Mitchell et al., "Model Cards for Model Reporting" (2019).
//!
//! A card has two parts. The **terms** are the contract's, rendered in words; consent is given
//! to the hash of the contract's structured terms in canonical form
//! ([`Contract::canonical_terms`]), not of these words, so rewording how a card renders never
//! invalidates a consent. The **status** (rounds done, participants, ε spent, metrics) is live
//! and shown beside the terms, and is not part of the hash either.

use std::fmt::Write as _;

use fedpool_data::{ColumnKind, LabelKind, Scaling, StatisticsLayout};
use serde::Serialize;

use crate::contract::{Contract, SplitRule, Task, Valuation};

/// The terms of a card: everything a data owner agrees to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardTerms {
    /// Model name.
    pub name: String,
    /// Contract version.
    pub version: String,
    /// Accountable publisher.
    pub publisher: String,
    /// Description.
    pub description: String,
    /// Intended uses.
    pub intended_uses: Vec<String>,
    /// Ruled-out uses.
    pub out_of_scope_uses: Vec<String>,
    /// Who the model is applied to.
    pub population: String,
    /// Decisions the model informs.
    pub decisions_informed: Vec<String>,
    /// Task in words.
    pub task: String,
    /// Model in words.
    pub model: String,
    /// Every data field the model reads, with its type, in plain words.
    pub fields: Vec<CardField>,
    /// The label column.
    pub label: String,
    /// Training plan in words.
    pub training: String,
    /// Privacy terms in plain words.
    pub privacy: Vec<String>,
    /// Reward terms in plain words.
    pub rewards: Vec<String>,
    /// The unit rewards are paid in.
    pub currency: String,
}

/// One data field the model reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardField {
    /// Column name.
    pub name: String,
    /// What is read from it.
    pub description: String,
}

/// Live training status shown with a card (not part of its hash).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CardStatus {
    /// Consents currently active.
    pub active_consents: usize,
    /// Rounds committed so far.
    pub rounds_done: u32,
    /// Distinct participants so far.
    pub participants: usize,
    /// ε spent so far (None when training is not differentially private).
    pub epsilon_spent: Option<f64>,
    /// Latest metrics, by name.
    pub latest_metrics: Vec<(String, f64)>,
    /// Whether the final model has been released.
    pub released: bool,
    /// Rewards paid so far, in the pool's smallest unit.
    pub paid: u64,
}

/// A transparency card: terms plus status, and identifiers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    /// The model's id (content hash of the contract).
    pub model_id: String,
    /// Hash of the contract's canonical structured terms (consent is given to this).
    pub card_hash: String,
    /// The terms.
    pub terms: CardTerms,
    /// The live status.
    pub status: CardStatus,
}

impl CardTerms {
    /// Derives the terms from a contract.
    pub fn from_contract(contract: &Contract) -> CardTerms {
        let info = &contract.model_info;
        let fields = contract
            .schema
            .feature_columns()
            .into_iter()
            .map(|c| CardField {
                description: match &c.kind {
                    ColumnKind::Numeric { scaling } => match scaling {
                        Scaling::Standardize { .. } if contract.schema.local_standardize => {
                            "a number (standardised on your node with your own statistics)".into()
                        }
                        Scaling::Standardize { bounds: None } => {
                            "a number (standardised with the mean and deviation over all participating nodes)".into()
                        }
                        Scaling::Standardize {
                            bounds: Some([min, max]),
                        } => format!(
                            "a number (standardised with the mean and deviation over all participating nodes; clamped to [{min}, {max}] for those statistics)"
                        ),
                        Scaling::Range { min, max } => format!("a number between {min} and {max}"),
                        Scaling::None => "a number".into(),
                    },
                    ColumnKind::Categorical { categories } => {
                        format!(
                            "one of {} categories: {}",
                            categories.len(),
                            abbreviate(categories, 8)
                        )
                    }
                },
                name: c.name,
            })
            .collect();
        let label = match &contract.schema.label.kind {
            LabelKind::Categorical { classes } => format!(
                "{} (one of {}: {})",
                contract.schema.label.name,
                classes.len(),
                abbreviate(classes, 10)
            ),
            LabelKind::Numeric => format!("{} (a number)", contract.schema.label.name),
        };
        let t = &contract.training;
        let sampling = match (t.sampling.fraction, t.sampling.count) {
            (Some(f), _) => format!("{:.0}% of consenting nodes", f * 100.0),
            (None, Some(n)) => format!("{n} consenting nodes"),
            (None, None) => "consenting nodes".into(),
        };
        let training = format!(
            "{} rounds; each round {} (at least {}) train locally for {} {} and send only a parameter update, combined with {}",
            t.rounds,
            sampling,
            t.sampling.min_clients,
            t.local.local_epochs,
            if t.local.local_epochs == 1 {
                "epoch"
            } else {
                "epochs"
            },
            t.strategy
        );
        CardTerms {
            name: info.name.clone(),
            version: info.version.clone(),
            publisher: info.publisher.clone(),
            description: info.description.clone(),
            intended_uses: contract.purpose.intended_uses.clone(),
            out_of_scope_uses: contract.purpose.out_of_scope_uses.clone(),
            population: contract.purpose.population.clone(),
            decisions_informed: contract.purpose.decisions_informed.clone(),
            task: match contract.task {
                Task::Classification => "classification".into(),
                Task::Regression => "regression".into(),
            },
            model: contract
                .model
                .describe(contract.n_features(), contract.schema.n_outputs()),
            fields,
            label,
            training,
            privacy: privacy_words(contract),
            rewards: reward_words(contract),
            currency: contract.rewards.currency.clone(),
        }
    }

    /// Canonical JSON of the terms: the bytes whose hash is the card hash.
    pub fn canonical_json(&self) -> String {
        // Struct fields serialize in declaration order and contain no maps, so the output is
        // deterministic for equal terms.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn abbreviate(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!(
            "{}, … ({} more)",
            items[..max].join(", "),
            items.len() - max
        )
    }
}

fn privacy_words(contract: &Contract) -> Vec<String> {
    let p = &contract.privacy;
    let layout = StatisticsLayout::of(&contract.schema);
    let mut words = vec![match &layout {
        Some(_) => "Your rows never leave your node; only model updates do, and once, before the first round, summary statistics of some columns.".to_string(),
        None => "Your rows never leave your node; only model updates do.".to_string(),
    }];
    let standardises = contract.schema.feature_columns().iter().any(|c| {
        matches!(
            c.kind,
            ColumnKind::Numeric {
                scaling: Scaling::Standardize { .. }
            }
        )
    });
    match &layout {
        Some(layout) => {
            let names: Vec<String> = layout.column_names().map(str::to_string).collect();
            let n = names.len();
            let travel = if p.secure_aggregation {
                "They travel like an update: clipped, noised and securely aggregated exactly as the rounds below say, so the publisher sees only their sum, and their privacy cost is counted with the rounds'."
            } else {
                "They travel like an update, as the rounds below say: without secure aggregation the publisher sees each node's summaries."
            };
            words.push(format!(
                "Federated statistics: before the first round, your node sends, for {} ({}), the mean and the mean square of its rows (values clamped to each column's public bounds, where the contract gives them), counted as one node whatever its number of rows. {travel} The publisher derives one mean and deviation per column from the sum, records them on the ledger, and every node and the test set standardise with them.",
                if n == 1 { "1 standardised column".to_string() } else { format!("{n} standardised columns") },
                abbreviate(&names, 8)
            ));
        }
        None if standardises => words.push(
            "Numeric columns are standardised on your node with your own rows' mean and deviation: no statistic of your data leaves your node.".into(),
        ),
        None => {}
    }
    if let (true, Some(adaptive)) = (p.clip_norm > 0.0, p.adaptive_clipping) {
        words.push(format!(
            "Each update is clipped to a length (L2 norm) that starts at {} and adapts each round so that about {:.0}% of updates fit; the noise scales with it, so privacy is unchanged. Your node reports only whether its update fitted (securely summed when secure aggregation is on), and that count is noised from the same budget.",
            p.clip_norm,
            adaptive.target_quantile * 100.0
        ));
    } else if p.clip_norm > 0.0 {
        words.push(format!(
            "Each update is clipped to length (L2 norm) {}, so no single node can move the model by more than that.",
            p.clip_norm
        ));
    } else {
        words.push("Updates are not clipped.".into());
    }
    let noised = p.noise_multiplier > 0.0 && p.clip_norm > 0.0;
    match (noised, p.secure_aggregation) {
        (true, true) => words.push(format!(
            "Client-level differential privacy, added by the nodes themselves: your node adds its own share of discrete Gaussian noise before masking its update, and the shares of any {:.0}% of a round's members add up to noise of {} × the clip norm on the sum (the distributed discrete Gaussian), so not even the publisher sees an un-noised sum.",
            p.secure_aggregation_threshold * 100.0,
            p.noise_multiplier
        )),
        (true, false) => words.push(format!(
            "Client-level differential privacy, added by the publisher: Gaussian noise of {} × the clip norm is added to the sum of each round's clipped updates (you trust the publisher to add it; your node still accounts for it).",
            p.noise_multiplier
        )),
        (false, _) => words.push(
            "No differential-privacy noise is added: updates are not differentially private."
                .into(),
        ),
    }
    if noised {
        let sampling = match contract.training.sampling.fraction {
            Some(q) if q < 1.0 => format!(
                "Each round asks every consenting node; your node decides with its own secret coin, with probability {:.0}%, whether its update goes in, and otherwise sends an update of zeros. No one can make it take part more often, and the ledger lists every node asked, so a reader of the model and the ledger cannot tell whether your data was used in a round: against them the ε below holds, counted over every round whether or not your coin chose you (amplification by sampling). ",
                q * 100.0
            ),
            Some(_) => "Every consenting node contributes to every round, so each round is counted in full. ".into(),
            None => "Each round asks a fixed number of the consenting nodes; your node cannot see how many were eligible, so it counts each round in full (no amplification by sampling). ".into(),
        };
        let against_publisher = if p.secure_aggregation {
            "The publisher sees only masked updates, so it cannot tell your zero update from a real one either: the same ε holds against it. The guarantee is for your data replaced by nothing (your noise share stays in the sum either way, zero-out adjacency), and it needs at least the threshold share of a round's members to be honest: the publisher knows the noise shares of members colluding with it. "
        } else {
            "Against the publisher itself there is no differential privacy: it sees each clipped update (and whether yours is the zero update) before adding the noise; only clipping limits what one update reveals to it. "
        };
        words.push(format!(
            "{sampling}{against_publisher}Privacy spent is accounted with Rényi differential privacy over every round, by your own node (which refuses any round past the budget or your cap) and by the publisher, and recorded on the ledger with each round."
        ));
    }
    match (p.epsilon_budget, p.delta) {
        (Some(eps), Some(delta)) => words.push(format!(
            "Total privacy budget ε = {eps}, δ = {delta:e}: training stops before it would be exceeded, and your own node refuses to train past it (or past your own cap)."
        )),
        _ if noised => words.push(
            "No total privacy budget is set: ε grows with every round (your node still refuses to pass your own cap).".into(),
        ),
        _ => words.push("No privacy budget is set.".into()),
    }
    if p.secure_aggregation {
        words.push(format!(
            "Secure aggregation: the publisher only ever sees masked updates and their sum, never yours alone. The sum is released only when at least {:.0}% of a round's members' inputs are in it; members who drop out are removed without revealing their update. Each node signs its session keys with its ledger identity, so the publisher cannot substitute keys.",
            p.secure_aggregation_threshold * 100.0
        ));
        if let Some(group_size) = p.secure_aggregation_group_size {
            let noise = if noised {
                " Each group's sum carries the full noise on its own (your node's noise share is sized for your group, not the round), so revealing the groups' sums costs no more ε than one sum would (each owner is in one group a round: parallel composition); the model carries the noise of every group, so it is less accurate than with one sum a round, the more so the more groups there are."
            } else {
                ""
            };
            words.push(format!(
                "Group sums are revealed: each round, the members are split at random into groups of at least {group_size} (drawn from the publisher's committed seed and every member's own random value, so the publisher cannot choose who shares your group), each group is securely aggregated on its own, and the publisher sees each group's sum, not only the round's. It uses them to estimate contributions. Within a round you hide among your group, not the whole round; the threshold applies to each group, and a publisher that controls other members of your group learns your update with only your own noise share on it.{noise}"
            ));
        }
    } else {
        words.push("No secure aggregation: the publisher sees each node's update.".into());
    }
    words
}

fn reward_words(contract: &Contract) -> Vec<String> {
    let r = &contract.rewards;
    let valuation = match r.valuation {
        Valuation::Shapley => {
            "its Shapley value: the average gain in the held-out accuracy of the round's model that your update brings to every group of the round's other updates (exact up to 12 participants a round, estimated by stratified sampling above). Updates that are near copies of one another (cosine similarity ≥ 0.95) count as one participant and share its value, so copying someone's data earns nothing extra"
        }
        Valuation::LeaveOneOut => {
            "leave-one-out: how much worse the round's model is on held-out data without your update"
        }
        Valuation::DataSize => "the number of rows you trained on",
    };
    let split = match r.split {
        SplitRule::Proportional => {
            "in proportion to positive contribution; zero or negative contributions earn nothing"
        }
        SplitRule::Equal => "equally among the round's participants with a positive contribution",
    };
    if contract.privacy.secure_aggregation && r.pool > 0 {
        // The publisher holds only sums: saying how a contribution is measured would promise
        // what it cannot do.
        let estimates = match contract.privacy.secure_aggregation_group_size {
            Some(_) => {
                "The publisher estimates each owner's contribution from the sums of the random groups each round reveals (Shapley values of the groups, then least squares over rounds of regrouping); the estimates are reported, not paid by: they are estimates of what no one saw, and under differential-privacy noise mostly noise (docs/valuation.md)."
            }
            None => {
                "With one sum per round no contribution can be told apart, so none is estimated."
            }
        };
        return vec![
            format!(
                "The contract names a pool of {} {}, but its rounds are securely aggregated: the publisher never sees your update, so it cannot measure your contribution and pays nothing by contribution.",
                r.pool, r.currency
            ),
            estimates.to_string(),
        ];
    }
    let mut words = vec![
        format!(
            "A pool of {} {} (in whole units, never fractions) is divided evenly over the {} planned rounds.",
            r.pool, r.currency, contract.training.rounds
        ),
        format!("Your contribution to a round is {valuation}."),
        format!(
            "Each round's share is split {split}. A round that raises held-out accuracy by less than half a point is not valued and its share carries over, as does anything no one can be paid; when training ends, everything not yet paid is split by each participant's total contribution."
        ),
    ];
    if r.floor > 0 || r.cap.is_some() {
        words.push(format!(
            "Every participant with a positive contribution gets at least {} of a round's share{}.",
            r.floor,
            r.cap
                .map(|c| format!(" and at most {c}"))
                .unwrap_or_default()
        ));
    }
    words.push(
        "Every payout is signed on the ledger with each participant's score, the valuation method, its seed and the hashes of the updates it valued, so anyone holding those updates and the validation set can recompute it."
            .to_string(),
    );
    words
}

impl Card {
    /// Plain text for terminals.
    pub fn to_text(&self) -> String {
        let t = &self.terms;
        let mut out = String::new();
        let _ = writeln!(out, "{} v{} — transparency card", t.name, t.version);
        let _ = writeln!(out, "publisher:  {}", t.publisher);
        let _ = writeln!(out, "model id:   {}", self.model_id);
        let _ = writeln!(out, "card hash:  {}", self.card_hash);
        if !t.description.is_empty() {
            let _ = writeln!(out, "\n{}", t.description);
        }
        section_text(&mut out, "Intended uses", &t.intended_uses);
        section_text(
            &mut out,
            "Out of scope (will not be used for)",
            &t.out_of_scope_uses,
        );
        let _ = writeln!(out, "\nApplied to: {}", t.population);
        section_text(&mut out, "Decisions informed", &t.decisions_informed);
        let _ = writeln!(out, "\nModel: {} ({})", t.model, t.task);
        let _ = writeln!(out, "Label: {}", t.label);
        let _ = writeln!(out, "\nData fields read ({}):", t.fields.len());
        for f in t.fields.iter().take(20) {
            let _ = writeln!(out, "  - {}: {}", f.name, f.description);
        }
        if t.fields.len() > 20 {
            let _ = writeln!(out, "  … and {} more", t.fields.len() - 20);
        }
        let _ = writeln!(out, "\nTraining: {}", t.training);
        section_text(&mut out, "Privacy", &t.privacy);
        section_text(&mut out, "Rewards", &t.rewards);
        let s = &self.status;
        let _ = writeln!(
            out,
            "\nStatus: {} active consents, {} rounds done, {} participants{}, {} {} paid{}",
            s.active_consents,
            s.rounds_done,
            s.participants,
            s.epsilon_spent
                .map(|e| format!(", ε spent {e:.3}"))
                .unwrap_or_default(),
            s.paid,
            t.currency,
            if s.released { ", released" } else { "" }
        );
        if !s.latest_metrics.is_empty() {
            let metrics: Vec<String> = s
                .latest_metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            let _ = writeln!(out, "Latest metrics: {}", metrics.join(", "));
        }
        out
    }

    /// Markdown, e.g. for a repository or a web page.
    pub fn to_markdown(&self) -> String {
        let t = &self.terms;
        let mut out = String::new();
        let _ = writeln!(out, "# {} v{}\n", t.name, t.version);
        let _ = writeln!(out, "| | |\n| --- | --- |");
        let _ = writeln!(out, "| publisher | {} |", md_cell(&t.publisher));
        let _ = writeln!(out, "| model id | `{}` |", self.model_id);
        let _ = writeln!(out, "| card hash | `{}` |", self.card_hash);
        let _ = writeln!(out, "| model | {} ({}) |", md_cell(&t.model), t.task);
        let _ = writeln!(out, "| label | {} |", md_cell(&t.label));
        let _ = writeln!(out, "| applied to | {} |\n", md_cell(&t.population));
        if !t.description.is_empty() {
            let _ = writeln!(out, "{}\n", t.description);
        }
        section_md(&mut out, "Intended uses", &t.intended_uses);
        section_md(&mut out, "Out of scope", &t.out_of_scope_uses);
        section_md(&mut out, "Decisions informed", &t.decisions_informed);
        let _ = writeln!(out, "## Data fields\n\n| field | read as |\n| --- | --- |");
        for f in &t.fields {
            let _ = writeln!(out, "| `{}` | {} |", f.name, md_cell(&f.description));
        }
        let _ = writeln!(out, "\n## Training\n\n{}\n", t.training);
        section_md(&mut out, "Privacy", &t.privacy);
        section_md(&mut out, "Rewards", &t.rewards);
        let s = &self.status;
        let _ = writeln!(out, "## Status\n");
        let _ = writeln!(out, "- active consents: {}", s.active_consents);
        let _ = writeln!(out, "- rounds done: {}", s.rounds_done);
        let _ = writeln!(out, "- participants: {}", s.participants);
        if let Some(e) = s.epsilon_spent {
            let _ = writeln!(out, "- ε spent: {e:.3}");
        }
        let _ = writeln!(out, "- paid so far: {} {}", s.paid, t.currency);
        for (k, v) in &s.latest_metrics {
            let _ = writeln!(out, "- {k}: {v:.4}");
        }
        out
    }

    /// A self-contained HTML page.
    pub fn to_html(&self) -> String {
        let t = &self.terms;
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — transparency card</title>\
             <style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;line-height:1.45}}\
             table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}\
             code{{font-size:.85em}}</style></head><body>\n",
            esc(&t.name)
        );
        let _ = writeln!(out, "<h1>{} v{}</h1>", esc(&t.name), esc(&t.version));
        let _ = writeln!(out, "<table>");
        for (k, v) in [
            ("publisher", esc(&t.publisher)),
            ("model id", format!("<code>{}</code>", esc(&self.model_id))),
            (
                "card hash",
                format!("<code>{}</code>", esc(&self.card_hash)),
            ),
            ("model", format!("{} ({})", esc(&t.model), esc(&t.task))),
            ("label", esc(&t.label)),
            ("applied to", esc(&t.population)),
        ] {
            let _ = writeln!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        let _ = writeln!(out, "</table>");
        if !t.description.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", esc(&t.description));
        }
        section_html(&mut out, "Intended uses", &t.intended_uses);
        section_html(&mut out, "Out of scope", &t.out_of_scope_uses);
        section_html(&mut out, "Decisions informed", &t.decisions_informed);
        let _ = writeln!(
            out,
            "<h2>Data fields</h2><table><tr><th>field</th><th>read as</th></tr>"
        );
        for f in &t.fields {
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(&f.name),
                esc(&f.description)
            );
        }
        let _ = writeln!(out, "</table><h2>Training</h2><p>{}</p>", esc(&t.training));
        section_html(&mut out, "Privacy", &t.privacy);
        section_html(&mut out, "Rewards", &t.rewards);
        let s = &self.status;
        let mut status = vec![
            format!("active consents: {}", s.active_consents),
            format!("rounds done: {}", s.rounds_done),
            format!("participants: {}", s.participants),
        ];
        if let Some(e) = s.epsilon_spent {
            status.push(format!("ε spent: {e:.3}"));
        }
        status.push(format!("paid so far: {} {}", s.paid, t.currency));
        status.extend(s.latest_metrics.iter().map(|(k, v)| format!("{k}: {v:.4}")));
        section_html(&mut out, "Status", &status);
        let _ = writeln!(out, "</body></html>");
        out
    }
}

fn section_text(out: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(out, "\n{title}:");
    for item in items {
        let _ = writeln!(out, "  - {item}");
    }
}

fn section_md(out: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(out, "## {title}\n");
    for item in items {
        let _ = writeln!(out, "- {item}");
    }
    let _ = writeln!(out);
}

fn section_html(out: &mut String, title: &str, items: &[String]) {
    let _ = writeln!(out, "<h2>{}</h2><ul>", esc(title));
    for item in items {
        let _ = writeln!(out, "<li>{}</li>", esc(item));
    }
    let _ = writeln!(out, "</ul>");
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &str = include_str!("../../../contracts/digits.toml");

    fn card(contract_text: &str) -> Card {
        let contract = Contract::from_toml(contract_text, "digits.toml").unwrap();
        let terms = CardTerms::from_contract(&contract);
        Card {
            model_id: "m".into(),
            card_hash: "h".into(),
            terms,
            status: CardStatus::default(),
        }
    }

    #[test]
    fn the_card_says_whether_statistics_of_the_owners_data_leave_the_node() {
        let adult = include_str!("../../../contracts/adult.toml");
        let federated = card(adult).terms;
        assert!(
            federated.privacy[0].contains("summary statistics"),
            "{:?}",
            federated.privacy
        );
        let phase = &federated.privacy[1];
        assert!(phase.starts_with("Federated statistics"), "{phase}");
        assert!(phase.contains("5 standardised columns (age, education_num, capital_gain, capital_loss, hours_per_week)"), "{phase}");
        let age = &federated.fields[0];
        assert_eq!(age.name, "age");
        assert!(
            age.description.contains("over all participating nodes")
                && age.description.contains("[17, 90]"),
            "{}",
            age.description
        );

        let local =
            card(&adult.replacen("[schema]\n", "[schema]\nlocal_standardize = true\n", 1)).terms;
        assert_eq!(
            local.privacy[0],
            "Your rows never leave your node; only model updates do."
        );
        assert!(
            local.privacy[1].contains("no statistic of your data leaves your node"),
            "{:?}",
            local.privacy
        );
        assert!(
            local.fields[0]
                .description
                .contains("with your own statistics")
        );
        assert_ne!(
            local.canonical_json(),
            federated.canonical_json(),
            "consent names which"
        );

        // Pixels scaled by a known range: no statistics, and nothing to say about them.
        let digits = card(DIGITS).terms;
        assert!(
            !digits.privacy.iter().any(|p| p.contains("statistic")),
            "{:?}",
            digits.privacy
        );
    }

    #[test]
    fn consent_names_the_structured_terms_so_rewording_a_card_changes_no_hash() {
        let contract = Contract::from_toml(DIGITS, "digits.toml").unwrap();
        let terms = contract.canonical_terms();
        // The same terms written differently (comments, spacing) hash the same.
        let reformatted = format!("# a comment\n{}", DIGITS.replace(" = ", "   =   "));
        let same = Contract::from_toml(&reformatted, "digits.toml").unwrap();
        assert_eq!(same.canonical_terms(), terms);
        // What the owner agrees to changes it.
        let changed =
            Contract::from_toml(&DIGITS.replace("rounds = 30", "rounds = 31"), "digits.toml")
                .unwrap();
        assert_ne!(changed.canonical_terms(), terms);
        // A card reworded (as a later version may render it) is not an input of the hash:
        // the structured terms do not hold the card's sentences.
        let card = CardTerms::from_contract(&contract);
        for sentence in card.privacy.iter().chain(&card.rewards) {
            assert!(!terms.contains(sentence.as_str()), "{sentence}");
        }
    }

    #[test]
    fn terms_are_deterministic_and_status_free() {
        let a = card(DIGITS);
        let mut b = card(DIGITS);
        b.status.rounds_done = 7;
        assert_eq!(a.terms.canonical_json(), b.terms.canonical_json());
        let changed = DIGITS.replace("rounds = 30", "rounds = 31");
        assert_ne!(
            a.terms.canonical_json(),
            card(&changed).terms.canonical_json()
        );
    }

    #[test]
    fn every_format_states_purpose_fields_and_privacy() {
        let c = card(DIGITS);
        for rendered in [c.to_text(), c.to_markdown(), c.to_html()] {
            assert!(
                rendered.contains("Routing scanned postal forms"),
                "{rendered}"
            );
            assert!(rendered.contains("Identifying or profiling"), "{rendered}");
            assert!(
                rendered.contains("p0:") || rendered.contains("p0`") || rendered.contains(">p0<"),
                "{rendered}"
            );
            assert!(
                rendered.contains("not differentially private"),
                "{rendered}"
            );
        }
    }

    #[test]
    fn html_escapes_contract_text() {
        let evil = DIGITS.replace("fedpool example lab", "<script>alert(1)</script>");
        let html = card(&evil).to_html();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_privacy_paragraph_states_each_guarantee_as_the_threat_model_does() {
        // docs/threat-model.md, "Privacy guarantees, stated plainly": against readers of the
        // model and the ledger, against the publisher with secure aggregation, and none against
        // the publisher in central DP.
        let private = include_str!("../../../contracts/digits_private.toml");
        let secure = card(private).terms.privacy.join(" ");
        for phrase in [
            "own secret coin",
            "ledger lists every node asked",
            "the same ε holds against it",
            "zero-out",
            "members to be honest",
        ] {
            assert!(secure.contains(phrase), "missing {phrase:?}: {secure}");
        }
        let central_contract =
            private.replace("secure_aggregation = true", "secure_aggregation = false");
        let central = card(&central_contract).terms.privacy.join(" ");
        assert!(
            central.contains("Against the publisher itself there is no differential privacy"),
            "{central}"
        );
        assert!(central.contains("own secret coin"), "{central}");
    }

    #[test]
    fn a_securely_aggregated_card_promises_no_payout_by_contribution() {
        let private = include_str!("../../../contracts/digits_private.toml");
        let secure = card(private).terms.rewards.join(" ");
        assert!(
            secure.contains("pays nothing by contribution") && !secure.contains("Shapley value"),
            "{secure}"
        );
        let transparent = card(DIGITS).terms.rewards.join(" ");
        assert!(
            transparent.contains("Shapley value") && transparent.contains("recompute"),
            "{transparent}"
        );
    }

    #[test]
    fn a_grouped_card_says_group_sums_are_revealed_and_what_that_costs() {
        let private = include_str!("../../../contracts/digits_private.toml");
        let one_sum = card(private);
        assert!(!one_sum.terms.privacy.join(" ").contains("Group sums"));
        let grouped_text = private.replace(
            "secure_aggregation = true",
            "secure_aggregation = true\nsecure_aggregation_group_size = 4",
        );
        let grouped = card(&grouped_text);
        let privacy = grouped.terms.privacy.join(" ");
        for phrase in [
            "Group sums are revealed",
            "groups of at least 4",
            "cannot choose who shares your group",
            "you hide among your group",
            "no more ε than one sum",
        ] {
            assert!(privacy.contains(phrase), "missing {phrase:?}: {privacy}");
        }
        let rewards = grouped.terms.rewards.join(" ");
        assert!(
            rewards.contains("random groups") && rewards.contains("pays nothing by contribution"),
            "{rewards}"
        );
        // The group size is a term owners consent to: it changes the card hash.
        let hash = |text: &str| {
            crate::Contract::from_toml(text, "c.toml")
                .unwrap()
                .canonical_terms()
        };
        assert_ne!(hash(private), hash(&grouped_text));
    }
}
