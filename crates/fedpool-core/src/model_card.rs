//! The Markdown model card a release ships with (the sections of Mitchell et al. 2019), from
//! the contract's terms and what training produced. The training data is described by counts
//! only: how many owners consented and took part, never anything of their rows.

use std::fmt::Write as _;

use serde::Serialize;

use crate::CardTerms;

/// What training produced, as a release states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseFacts {
    /// The model's id on the ledger.
    pub model_id: String,
    /// blake3 of the released parameters (the `ModelReleased` event names it).
    pub params_hash: String,
    /// Rounds trained.
    pub rounds: u32,
    /// Owners who consented.
    pub consenting_owners: usize,
    /// Owners whose updates went into at least one round.
    pub contributing_owners: usize,
    /// Held-out rows the metrics are measured on, when known.
    pub evaluation_rows: Option<usize>,
    /// Final metrics on the held-out set, by name.
    pub metrics: Vec<(String, f64)>,
    /// ε spent (at `delta`), when training was differentially private.
    pub epsilon: Option<f64>,
    /// δ of `epsilon`.
    pub delta: f64,
    /// Whether updates were securely aggregated.
    pub secure_aggregation: bool,
}

/// The model card in Markdown.
pub fn model_card_markdown(terms: &CardTerms, facts: &ReleaseFacts) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Model card: {} v{}\n", terms.name, terms.version);
    let _ = writeln!(out, "## Model details\n");
    let _ = writeln!(out, "- Publisher: {}", terms.publisher);
    let _ = writeln!(out, "- Model: {}", terms.model);
    let _ = writeln!(out, "- Task: {}", terms.task);
    let _ = writeln!(out, "- Trained by federated learning: {}", terms.training);
    let _ = writeln!(out, "- Ledger model id: `{}`", facts.model_id);
    let _ = writeln!(
        out,
        "- Released parameters (blake3): `{}`, in `model.safetensors`",
        facts.params_hash
    );
    if !terms.description.is_empty() {
        let _ = writeln!(out, "\n{}", terms.description);
    }
    let _ = writeln!(out, "\n## Intended use\n");
    for use_ in &terms.intended_uses {
        let _ = writeln!(out, "- {use_}");
    }
    for decision in &terms.decisions_informed {
        let _ = writeln!(out, "- Informs: {decision}");
    }
    let _ = writeln!(out, "\nOut of scope (owners consented on these terms):\n");
    for use_ in &terms.out_of_scope_uses {
        let _ = writeln!(out, "- {use_}");
    }
    let _ = writeln!(out, "\n## Factors\n\nPopulation: {}", terms.population);
    let _ = writeln!(out, "\n## Metrics\n");
    for (name, value) in &facts.metrics {
        let _ = writeln!(out, "- {name}: {value:.4}");
    }
    let _ = match facts.evaluation_rows {
        Some(rows) => writeln!(
            out,
            "\n## Evaluation data\n\n{rows} held-out rows, never trained on."
        ),
        None => writeln!(
            out,
            "\n## Evaluation data\n\nThe publisher's own held-out rows, never trained on."
        ),
    };
    let _ = writeln!(out, "\n## Training data\n");
    let _ = writeln!(
        out,
        "Federated: the rows stayed on their owners' nodes. {} owners consented; {} contributed to at least one of {} rounds. Fields read:",
        facts.consenting_owners, facts.contributing_owners, facts.rounds
    );
    for field in &terms.fields {
        let _ = writeln!(out, "- {}: {}", field.name, field.description);
    }
    let _ = writeln!(out, "- label: {}", terms.label);
    let _ = writeln!(out, "\n## Quantitative analyses\n");
    let _ = writeln!(
        out,
        "Final metrics above, after {} rounds; per-round metrics are on the ledger's `round-committed` events.",
        facts.rounds
    );
    let _ = writeln!(out, "\n## Ethical considerations\n");
    match facts.epsilon {
        Some(e) => {
            let _ = writeln!(
                out,
                "- Client-level differential privacy: ε = {e:.3} at δ = {} over the whole training.",
                facts.delta
            );
        }
        None => {
            let _ = writeln!(out, "- No differential privacy: updates were not noised.");
        }
    }
    let _ = writeln!(
        out,
        "- Secure aggregation: {}.",
        if facts.secure_aggregation {
            "the publisher saw only sums of updates"
        } else {
            "off; the publisher saw each update"
        }
    );
    for line in &terms.privacy {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n## Caveats and recommendations\n");
    let _ = writeln!(
        out,
        "- Use only as the intended uses above say; the out-of-scope uses are outside what owners consented to."
    );
    let _ = writeln!(
        out,
        "- Metrics are measured on the publisher's held-out rows, which may not represent every owner's data."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Contract;

    #[test]
    fn a_model_card_has_every_section_and_counts_not_rows() {
        let contract = Contract::from_toml(
            include_str!("../../../contracts/digits.toml"),
            "contracts/digits.toml",
        )
        .unwrap();
        let terms = CardTerms::from_contract(&contract);
        let facts = ReleaseFacts {
            model_id: "bafk-model".into(),
            params_hash: "bafk-params".into(),
            rounds: 5,
            consenting_owners: 10,
            contributing_owners: 9,
            evaluation_rows: Some(360),
            metrics: vec![("accuracy".into(), 0.95)],
            epsilon: None,
            delta: 0.0,
            secure_aggregation: false,
        };
        let card = model_card_markdown(&terms, &facts);
        for section in [
            "## Model details",
            "## Intended use",
            "## Factors",
            "## Metrics",
            "## Evaluation data",
            "## Training data",
            "## Quantitative analyses",
            "## Ethical considerations",
            "## Caveats and recommendations",
        ] {
            assert!(card.contains(section), "{section} missing:\n{card}");
        }
        assert!(card.contains("10 owners consented; 9 contributed to at least one of 5 rounds"));
        assert!(card.contains("accuracy: 0.9500"));
    }
}
