//! The data owner's side: one [`Participant`] per model this node was asked to train, set up
//! from the node's own ledger (its consent, its ε history, the members it trusts) and its own
//! data. Consent is re-read from the ledger and checked by the node's own clock at every
//! request, so a revocation written by `fedpool consent revoke` binds the next round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fedpool_core::{Contract, Network, TrainOutcome};
use fedpool_data::{Dataset, FeatureScaling, StatisticsLayout, Table};
use fedpool_ledger::{
    ActiveConsent, Body, Did, Event, EventId, Keypair, ModelId, ModelPublished, Store,
    active_consents,
};
use fedpool_protocol::{
    Directory, Driver, Host, Msg, NodeId, Participant, PrivacyRecord, PrivacyTerms, RoundEvent,
    RoundId, RoundTask, Sequential, TrainJob,
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
    /// Train (or compute the statistics vector), off the event loop: [`OwnerData::run`].
    Train {
        /// The model.
        model_id: ModelId,
        /// The job.
        job: TrainJob,
        /// The owner's rows for the model.
        data: Arc<OwnerData>,
    },
}

/// What an owner trains one model with: the model's network, the consented rows, and the
/// rows encoded with the scaling last used.
pub struct OwnerData {
    network: Network,
    table: Table,
    layout: Option<StatisticsLayout>,
    encoded: Mutex<Option<Encoded>>,
}

/// The owner's rows encoded, and the scaling they were encoded with (`None`: their own).
type Encoded = (Option<Arc<FeatureScaling>>, Arc<Dataset>);

impl OwnerData {
    /// Runs a participant's job: the node's statistics vector, or local training on its rows
    /// standardised with the scaling the request carries (federated statistics) or with its
    /// own (local scaling).
    pub fn run(&self, job: &TrainJob) -> Result<TrainOutcome, String> {
        let all: Vec<usize> = (0..self.table.n_rows()).collect();
        let scaling = match &job.task {
            RoundTask::Statistics => {
                let layout = self
                    .layout
                    .as_ref()
                    .ok_or("this model has no statistics phase")?;
                let delta = layout
                    .node_statistics(&self.table, &all)
                    .map_err(|e| e.to_string())?;
                return Ok(TrainOutcome {
                    delta,
                    n_examples: all.len(),
                    final_loss: 0.0,
                    n_steps: 0,
                });
            }
            RoundTask::Train { scaling } => scaling,
        };
        let data = self.encoded(scaling.as_ref(), &all)?;
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(job.seed);
        fedpool_core::train_local(&self.network, &job.global, &data, &job.local, &mut rng)
            .map_err(|e| e.to_string())
    }

    fn encoded(
        &self,
        scaling: Option<&Arc<FeatureScaling>>,
        rows: &[usize],
    ) -> Result<Arc<Dataset>, String> {
        let mut cache = self.encoded.lock().map_err(|_| "a training job panicked")?;
        if let Some((used, data)) = cache.as_ref()
            && used.as_deref() == scaling.map(AsRef::as_ref)
        {
            return Ok(Arc::clone(data));
        }
        let data = match (scaling, &self.layout) {
            (Some(scaling), Some(_)) => self
                .table
                .encode_scaled(rows, scaling)
                .map_err(|e| e.to_string())?,
            (None, None) => self.table.encode(rows),
            (None, Some(_)) => {
                return Err(
                    "the model standardises with federated statistics, but the request carries no scaling"
                        .into(),
                );
            }
            (Some(_), None) => {
                return Err("the request carries a scaling this model does not use".into());
            }
        };
        let data = Arc::new(data);
        *cache = Some((scaling.cloned(), Arc::clone(&data)));
        Ok(data)
    }
}

struct OwnerModel {
    /// This node's participant, alone in the protocol's driver.
    driver: Driver,
    /// Its address in the model's rounds.
    me: NodeId,
    link: OwnerLink,
    /// How many of the participant's given-up secure rounds the node has logged.
    aborts_logged: usize,
}

/// A round's members by address and identity.
type Roster = Vec<(NodeId, Did)>;

/// What the owner's host needs to carry its participant's outputs out.
struct OwnerLink {
    publisher_peer: PeerId,
    /// Set once the node has consented and loaded its data for the model.
    training: Option<Arc<OwnerData>>,
    /// The consent its privacy records name.
    consent: Option<EventId>,
    delta: f64,
    /// The secure-aggregation directory last built, and the members it was built from.
    directory: Option<(Roster, Arc<Directory>)>,
}

impl OwnerModel {
    fn participant(&self) -> &Participant {
        self.driver
            .participant(self.me)
            .expect("an owner model drives its participant")
    }

    fn participant_mut(&mut self) -> &mut Participant {
        self.driver
            .participant_mut(self.me)
            .expect("an owner model drives its participant")
    }
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
        let me = model.me;
        drive(store, keypair, model_id, model, |driver, host| {
            driver.tick(now_ms(), host)?;
            driver.deliver([(PUBLISHER, me, msg)], &Sequential, host)
        })
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
        let me = model.me;
        drive(store, keypair, model_id, model, |driver, host| {
            driver.trained(vec![(me, round, outcome)], host)
        })
    }

    /// Lets every participant hear the time (it gives up rounds whose publisher went silent).
    pub fn tick(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        now: u64,
    ) -> Result<Vec<OwnerAction>, Error> {
        let mut actions = Vec::new();
        for (model_id, model) in &mut self.models {
            actions.extend(drive(store, keypair, model_id, model, |driver, host| {
                driver.tick(now, host)
            })?);
        }
        Ok(actions)
    }

    /// ε this node has accounted per model.
    pub fn epsilon_spent(&self) -> Vec<(ModelId, f64, usize)> {
        self.models
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    m.participant().epsilon_spent(),
                    m.participant().rounds_trained(),
                )
            })
            .collect()
    }

    /// Training requests received per model (consented or not).
    pub fn requests_received(&self, model_id: &ModelId) -> usize {
        self.models
            .get(model_id)
            .map_or(0, |m| m.participant().requests_received())
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
            let participant = match StatisticsLayout::of(&contract.schema) {
                Some(layout) => participant.with_statistics(layout.dimension()),
                None => participant,
            };
            let me = participant.id();
            let mut driver = Driver::new();
            driver.add_participant(participant);
            self.models.insert(
                model_id.clone(),
                OwnerModel {
                    driver,
                    aborts_logged: 0,
                    me,
                    link: OwnerLink {
                        publisher_peer: peer_id_of(&publisher)?,
                        training: None,
                        consent: None,
                        delta: terms.delta,
                        directory: None,
                    },
                },
            );
        }
        let Some(model) = self.models.get_mut(model_id) else {
            return Ok(());
        };
        // The same members keep the same directory: decompressing a hundred keys at every
        // request showed up in a 100-node profile.
        let roster: Roster = members.iter().map(|(id, c)| (*id, c.owner)).collect();
        let directory = match &model.link.directory {
            Some((known, directory)) if *known == roster => Arc::clone(directory),
            _ => {
                let directory = Arc::new(directory_of(&members));
                model.link.directory = Some((roster, Arc::clone(&directory)));
                directory
            }
        };
        let participant = model.participant_mut();
        participant.set_consent(mine.is_some());
        participant.set_consent_expiry(mine.as_ref().and_then(|c| c.expires_at_ms));
        participant.set_directory(directory);
        if let Some(consent) = &mine {
            model.link.consent = Some(consent.consent);
            if model.link.training.is_none() {
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
                    Ok(table) => {
                        model.link.training = Some(Arc::new(OwnerData {
                            network,
                            table,
                            layout: StatisticsLayout::of(&contract.schema),
                            encoded: Mutex::new(None),
                        }))
                    }
                    Err(why) => {
                        tracing::warn!(model = %model_id, %why, "cannot load the consented dataset")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `step` on the model's driver with the owner's host; a training job the node cannot
/// run (its consented data did not load) fails at once, like a node whose training failed.
fn drive(
    store: &mut Store,
    keypair: &Keypair,
    model_id: &ModelId,
    model: &mut OwnerModel,
    step: impl FnOnce(&mut Driver, &mut OwnerHost<'_>) -> Result<(), Error>,
) -> Result<Vec<OwnerAction>, Error> {
    let mut host = OwnerHost {
        store,
        keypair,
        model_id,
        link: &model.link,
        actions: Vec::new(),
        untrainable: Vec::new(),
    };
    let stepped = step(&mut model.driver, &mut host);
    // The operator hears why this node left a secure round (a member whose consent its
    // ledger has not seen yet, a publisher gone silent, a sum with too little noise): the
    // protocol only keeps the reason.
    let aborts = model.participant().secure_aborts();
    for (round, why) in &aborts[model.aborts_logged.min(aborts.len())..] {
        tracing::warn!(model = %model_id, round = %round, reason = %why, "this node gave up a secure round");
    }
    model.aborts_logged = aborts.len();
    stepped?;
    while !host.untrainable.is_empty() {
        let failed = std::mem::take(&mut host.untrainable)
            .into_iter()
            .map(|round| {
                let why = "this node cannot load the dataset its consent names".to_string();
                (model.me, round, Err(why))
            })
            .collect();
        model.driver.trained(failed, &mut host)?;
    }
    Ok(host.actions)
}

/// Where an owner's participant's outputs go: its privacy steps onto the node's own chain
/// (write-ahead: signed before anything it sent after them leaves the node), its messages to
/// the model's publisher, its training jobs to the node's blocking pool.
struct OwnerHost<'a> {
    store: &'a mut Store,
    keypair: &'a Keypair,
    model_id: &'a ModelId,
    link: &'a OwnerLink,
    actions: Vec<OwnerAction>,
    untrainable: Vec<RoundId>,
}

impl Host for OwnerHost<'_> {
    type Error = Error;

    fn send(&mut self, _from: NodeId, _to: NodeId, msg: Msg) -> Result<(), Error> {
        // A participant only ever talks to its publisher: the peer is the publication's.
        self.actions.push(OwnerAction::Send {
            peer: self.link.publisher_peer,
            model_id: self.model_id.clone(),
            msg,
        });
        Ok(())
    }

    fn train(&mut self, job: TrainJob) -> Result<(), Error> {
        match &self.link.training {
            Some(data) => self.actions.push(OwnerAction::Train {
                model_id: self.model_id.clone(),
                job,
                data: Arc::clone(data),
            }),
            None => self.untrainable.push(job.round),
        }
        Ok(())
    }

    fn event(&mut self, _event: RoundEvent) -> Result<(), Error> {
        // No publisher lives in an owner's driver.
        Ok(())
    }

    fn privacy_accounted(&mut self, _node: NodeId, records: &[PrivacyRecord]) -> Result<(), Error> {
        let Some(consent) = self.link.consent else {
            return Err(Error::Refused(
                "the node accounted privacy without a consent; this is a bug".into(),
            ));
        };
        for record in records {
            let body =
                fedpool_runtime::privacy_spent(self.model_id, consent, record, self.link.delta)
                    .map_err(|e| Error::Refused(e.to_string()))?;
            self.store.append_next(self.keypair, now_ms(), body)?;
        }
        Ok(())
    }
}
