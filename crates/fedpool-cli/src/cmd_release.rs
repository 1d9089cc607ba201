//! `fedpool release MODEL`: the publisher signs `ModelReleased` for the model its last
//! committed round produced, and writes the weights (safetensors) and a Markdown model card.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use fedpool_core::Network;
use fedpool_core::model_card::{ReleaseFacts, model_card_markdown};
use fedpool_ledger::{Body, ModelReleased};

use crate::home::Home;
use crate::node::{self, Node};

/// Arguments of `fedpool release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The model (id, id prefix or name); this node must have published and trained it.
    pub model: String,
    /// Where to write `model.safetensors` and `MODEL_CARD.md`.
    #[arg(long, default_value = "release")]
    pub out: PathBuf,
}

/// Releases a trained model.
pub fn release(home: Home, args: ReleaseArgs) -> Result<()> {
    let mut node = Node::open(home)?;
    let model = node::find_model(&node.store, &args.model)?;
    let me = node.did();
    if model.event.author() != me {
        bail!(
            "model {} was published by {}, not by this node ({me}); only its publisher releases it",
            model.id(),
            model.event.author()
        );
    }
    let mut last = None;
    let mut participants = BTreeSet::new();
    for event in node.store.events_by_model(model.id())? {
        match event.body() {
            Body::RoundCommitted(round) if event.author() == me => {
                participants.extend(round.participants.iter().map(|(did, _)| *did));
                if last
                    .as_ref()
                    .is_none_or(|l: &fedpool_ledger::RoundCommitted| round.round > l.round)
                {
                    last = Some(round.clone());
                }
            }
            Body::ModelReleased(released) if event.author() == me => bail!(
                "model {} was already released after {} rounds (event {})",
                model.id(),
                released.rounds,
                event.id()
            ),
            _ => {}
        }
    }
    let Some(last) = last else {
        bail!(
            "model {} has no committed round to release; train it first",
            model.id()
        );
    };
    let contract = &model.contract;
    let network = Network::new(
        &contract.model,
        contract.n_features(),
        contract.schema.n_outputs(),
    )?;
    let params = fedpool_node::publishing::committed_params(
        node.home.dir(),
        model.id(),
        last.round,
        &last.global_model_hash,
        network.n_params(),
    )
    .with_context(|| format!("cannot read the parameters of round {}", last.round))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let weights = fedpool_core::release::to_safetensors(
        &network,
        &params,
        &[
            ("fedpool.model_id", model.id().to_string()),
            ("fedpool.params_hash", last.global_model_hash.clone()),
        ],
    )?;
    let weights_path = args.out.join("model.safetensors");
    std::fs::write(&weights_path, weights)
        .with_context(|| format!("cannot write {}", weights_path.display()))?;
    let consenting: BTreeSet<_> =
        node::consents(&node.store, None, Some(model.id()), crate::home::now_ms())?
            .into_iter()
            .map(|c| c.event.author())
            .collect();
    let facts = ReleaseFacts {
        model_id: model.id().to_string(),
        params_hash: last.global_model_hash.clone(),
        rounds: last.round,
        consenting_owners: consenting.len(),
        contributing_owners: participants.len(),
        evaluation_rows: None,
        metrics: last.metrics.clone(),
        epsilon: (last.epsilon_total > 0.0).then_some(last.epsilon_total),
        delta: last.delta,
        secure_aggregation: contract.privacy.secure_aggregation,
    };
    let card_path = args.out.join("MODEL_CARD.md");
    let terms = fedpool_core::CardTerms::from_contract(contract);
    std::fs::write(&card_path, model_card_markdown(&terms, &facts))
        .with_context(|| format!("cannot write {}", card_path.display()))?;
    let event = node.append(ModelReleased {
        model_id: model.id().clone(),
        final_model_hash: last.global_model_hash.clone(),
        rounds: last.round,
        metrics: last.metrics.clone(),
    })?;
    println!("{}", event.id());
    eprintln!(
        "released {} after {} rounds: {} and {}",
        model.body.name,
        last.round,
        weights_path.display(),
        card_path.display()
    );
    Ok(())
}
