//! The data owner's side: one [`Participant`] per model this node was asked to train, set up
//! from the node's own ledger (its consent, its ε history, the members it trusts) and its own
//! data. Consent is re-read from the ledger and checked by the node's own clock at every
//! request, so a revocation written by `fedpool consent revoke` binds the next round.

use std::collections::HashMap;
use std::sync::Arc;

use fedpool_core::{Contract, Network};
use fedpool_data::Dataset;
use fedpool_ledger::{
    ActiveConsent, Body, Did, Event, EventId, Keypair, ModelId, ModelPublished, Store,
    active_consents,
};
use fedpool_protocol::{
    Directory, Msg, Participant, ParticipantInput, ParticipantOutput, PrivacyTerms, TrainJob,
};
use libp2p::PeerId;

use crate::identity::{PUBLISHER, assign_ids, node_id_of, peer_id_of};
use crate::replay::Replay;
use crate::{DataSource, Error, now_ms};

/// What the node must do for a participant.
pub enum OwnerAction {
    /// Send to the model's publisher.
    Send {
        /// The publisher's peer.
        peer: PeerId,
        /// The model.
        model_id: ModelId,
        /// The message.
        msg: Msg,
    },
    /// Train, off the event loop.
    Train {
        /// The model.
        model_id: ModelId,
        /// The job.
        job: TrainJob,
        /// The model's network.
        network: Arc<Network>,
        /// The owner's rows.
        data: Arc<Dataset>,
    },
}

struct OwnerModel {
    participant: Participant,
    publisher_peer: PeerId,
    /// Set once the node has consented and loaded its data for the model.
    training: Option<(Arc<Network>, Arc<Dataset>)>,
    /// The consent its privacy records name.
    consent: Option<EventId>,
    delta: f64,
    privacy_recorded: usize,
}

/// Every model this node takes part in.
#[derive(Default)]
pub struct Owner {
    models: HashMap<ModelId, OwnerModel>,
    /// A simulation's seeds and round ids (tests only, see [`crate::replay`]).
    replay: Option<Arc<Replay>>,
}

impl Owner {
    /// An owner whose participants draw their training and privacy randomness from a
    /// simulation's seed instead of the operating system (tests only, see [`crate::replay`]).
    pub fn replaying(replay: Option<Arc<Replay>>) -> Owner {
        Owner {
            models: HashMap::new(),
            replay,
        }
    }
}

/// A published model as the node's ledger holds it.
pub fn find_publication(
    store: &Store,
    model_id: &ModelId,
) -> Result<Option<(Did, ModelPublished)>, Error> {
    Ok(store
        .events_by_model(model_id)?
        .into_iter()
        .find_map(|event| match event.body() {
            Body::ModelPublished(p) if &p.model_id == model_id => Some((event.author(), p.clone())),
            _ => None,
        }))
}

/// The consents that let `publisher` ask owners to train `model` now, with their round ids,
/// in owner order (colliding ids resolved by [`assign_ids`]).
pub fn consenting_members(
    events: &[Event],
    model: &ModelPublished,
    publisher: &Did,
    now: u64,
) -> Vec<(fedpool_protocol::NodeId, ActiveConsent)> {
    let consents = active_consents(events, model, publisher, now);
    let owners: Vec<Did> = consents.iter().map(|c| c.owner).collect();
    let ids: HashMap<Did, fedpool_protocol::NodeId> = assign_ids(&owners).into_iter().collect();
    consents
        .into_iter()
        .filter_map(|c| ids.get(&c.owner).map(|id| (*id, c)))
        .collect()
}

/// The secure-aggregation directory of a set of members.
pub fn directory_of(members: &[(fedpool_protocol::NodeId, ActiveConsent)]) -> Directory {
    members
        .iter()
        .filter_map(|(id, c)| c.owner.verifying_key().ok().map(|key| (*id, key)))
        .collect()
}

impl Owner {
    /// Handles a message the model's publisher (authenticated) sent this node.
    pub fn on_message(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        data: &dyn DataSource,
        model_id: &ModelId,
        msg: Msg,
    ) -> Result<Vec<OwnerAction>, Error> {
        let is_request = matches!(msg, Msg::TrainRequest(_));
        if is_request || !self.models.contains_key(model_id) {
            self.refresh(store, keypair, data, model_id)?;
        }
        let Some(model) = self.models.get_mut(model_id) else {
            return Ok(Vec::new());
        };
        model
            .participant
            .handle(ParticipantInput::Tick { now_ms: now_ms() });
        model.participant.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg,
        });
        drain(store, keypair, model_id, model)
    }

    /// Feeds a finished training job back.
    pub fn on_trained(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        model_id: &ModelId,
        round: fedpool_protocol::RoundId,
        outcome: Result<fedpool_core::TrainOutcome, String>,
    ) -> Result<Vec<OwnerAction>, Error> {
        let Some(model) = self.models.get_mut(model_id) else {
            return Ok(Vec::new());
        };
        model
            .participant
            .handle(ParticipantInput::Trained { round, outcome });
        drain(store, keypair, model_id, model)
    }

    /// Lets every participant hear the time (it gives up rounds whose publisher went silent).
    pub fn tick(&mut self, now: u64) {
        for model in self.models.values_mut() {
            model
                .participant
                .handle(ParticipantInput::Tick { now_ms: now });
        }
    }

    /// ε this node has accounted per model.
    pub fn epsilon_spent(&self) -> Vec<(ModelId, f64, usize)> {
        self.models
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.participant.epsilon_spent(),
                    m.participant.rounds_trained(),
                )
            })
            .collect()
    }

    /// Training requests received per model (consented or not).
    pub fn requests_received(&self, model_id: &ModelId) -> usize {
        self.models
            .get(model_id)
            .map_or(0, |m| m.participant.requests_received())
    }

    /// Re-reads the node's consent and the members it trusts from its ledger; sets the
    /// participant up on first use (privacy history restored, data loaded).
    fn refresh(
        &mut self,
        store: &Store,
        keypair: &Keypair,
        data: &dyn DataSource,
        model_id: &ModelId,
    ) -> Result<(), Error> {
        let Some((publisher, publication)) = find_publication(store, model_id)? else {
            return Err(Error::Refused(format!(
                "a request for {model_id}, which this node's ledger has not seen published"
            )));
        };
        let me = keypair.did();
        let events = store.events_by_model(model_id)?;
        let now = now_ms();
        let mut members = consenting_members(&events, &publication, &publisher, now);
        if let Some(replay) = &self.replay {
            members = replay.assign(members);
        }
        let mine = members
            .iter()
            .find(|(_, c)| c.owner == me)
            .map(|(_, c)| c.clone());
        let contract = Contract::from_toml(&publication.contract_toml, "the published contract")
            .map_err(|e| Error::Refused(format!("{model_id}'s contract does not parse: {e}")))?;
        let terms = PrivacyTerms::from_contract(&contract);
        if !self.models.contains_key(model_id) {
            let history = fedpool_runtime::privacy_history(store, model_id, &me)
                .map_err(|e| Error::Refused(format!("cannot read this node's ε history: {e}")))?;
            let replayed = self
                .replay
                .as_ref()
                .and_then(|r| Some((r.round_id(&me)?, r.participant_seed?)));
            let participant = match replayed {
                Some((id, seed)) => Participant::new(id, false, seed)
                    .with_privacy_seed(fedpool_runtime::simulated_privacy_seed(seed)),
                None => Participant::new(node_id_of(&me), false, rand::random()),
            };
            let participant = participant
                .with_privacy(terms.clone(), mine.as_ref().and_then(|c| c.epsilon_cap))
                .and_then(|p| p.restore_privacy(&history))
                .map_err(Error::Refused)?
                .with_identity(keypair.signing_key().clone(), Arc::new(Directory::new()))
                .with_publisher(PUBLISHER);
            self.models.insert(
                model_id.clone(),
                OwnerModel {
                    privacy_recorded: participant.privacy_history().len(),
                    participant,
                    publisher_peer: peer_id_of(&publisher)?,
                    training: None,
                    consent: None,
                    delta: terms.delta,
                },
            );
        }
        let Some(model) = self.models.get_mut(model_id) else {
            return Ok(());
        };
        model.participant.set_consent(mine.is_some());
        model
            .participant
            .set_consent_expiry(mine.as_ref().and_then(|c| c.expires_at_ms));
        model
            .participant
            .set_directory(Arc::new(directory_of(&members)));
        if let Some(consent) = &mine {
            model.consent = Some(consent.consent);
            if model.training.is_none() {
                let fingerprint = events
                    .iter()
                    .find(|e| e.id() == consent.consent)
                    .and_then(|e| match e.body() {
                        Body::ConsentGranted(g) => Some(g.dataset_fingerprint.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let network = Network::new(
                    &contract.model,
                    contract.n_features(),
                    contract.schema.n_outputs(),
                )
                .map_err(|e| Error::Refused(format!("cannot build {model_id}'s model: {e}")))?;
                // Without its data the node cannot train: it declines like a node that failed.
                match data.training_data(&contract, &fingerprint) {
                    Ok(dataset) => model.training = Some((Arc::new(network), Arc::new(dataset))),
                    Err(why) => {
                        tracing::warn!(model = %model_id, %why, "cannot load the consented dataset")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Drains a participant's outputs. Write-ahead: every privacy step it accounted is signed
/// onto the node's own chain before anything it sent leaves the node.
fn drain(
    store: &mut Store,
    keypair: &Keypair,
    model_id: &ModelId,
    model: &mut OwnerModel,
) -> Result<Vec<OwnerAction>, Error> {
    let outputs: Vec<ParticipantOutput> =
        std::iter::from_fn(|| model.participant.poll_output()).collect();
    let history = model.participant.privacy_history();
    if history.len() > model.privacy_recorded {
        let Some(consent) = model.consent else {
            return Err(Error::Refused(
                "the node accounted privacy without a consent; this is a bug".into(),
            ));
        };
        for record in &history[model.privacy_recorded..] {
            let body = fedpool_runtime::privacy_spent(model_id, consent, record, model.delta)
                .map_err(|e| Error::Refused(e.to_string()))?;
            store.append_next(keypair, now_ms(), body)?;
        }
        model.privacy_recorded = history.len();
    }
    let mut actions = Vec::new();
    for output in outputs {
        match output {
            ParticipantOutput::Send { msg, .. } => actions.push(OwnerAction::Send {
                peer: model.publisher_peer,
                model_id: model_id.clone(),
                msg,
            }),
            ParticipantOutput::Train(job) => match &model.training {
                Some((network, data)) => actions.push(OwnerAction::Train {
                    model_id: model_id.clone(),
                    job,
                    network: Arc::clone(network),
                    data: Arc::clone(data),
                }),
                None => {
                    let round = job.round;
                    model.participant.handle(ParticipantInput::Trained {
                        round,
                        outcome: Err("this node cannot load the dataset its consent names".into()),
                    });
                    actions.extend(drain(store, keypair, model_id, model)?);
                }
            },
        }
    }
    Ok(actions)
}
