//! A node: its home, its identity and its ledger, and the helpers commands share.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fedpool_core::{Card, CardStatus, CardTerms, Contract};
use fedpool_ledger::{
    Body, ConsentGranted, Did, Event, EventId, EventKind, Keypair, ModelId, ModelPublished,
    NetworkId, Store, content_hash, read_key_file,
};

use crate::home::{Home, now_ms};

/// The ledger namespace a node joins unless told otherwise.
pub const DEFAULT_NETWORK: &str = "fedpool-local";

/// The network a node uses: `FEDPOOL_NETWORK`, else the default.
pub fn network() -> Result<NetworkId> {
    let name = std::env::var("FEDPOOL_NETWORK").unwrap_or_else(|_| DEFAULT_NETWORK.to_string());
    NetworkId::new(&name)
        .with_context(|| format!("FEDPOOL_NETWORK=\"{name}\" is not a valid network name"))
}

/// An initialised node: identity and ledger opened.
pub struct Node {
    /// Its home directory.
    pub home: Home,
    /// Its identity.
    pub keypair: Keypair,
    /// Its ledger.
    pub store: Store,
}

impl Node {
    /// Opens the node in `home`, which `fedpool init` must have set up.
    pub fn open(home: Home) -> Result<Node> {
        let key_path = home.key_path();
        if !key_path.exists() {
            bail!(
                "no identity in {}; run `fedpool init` first (or pass --home / set FEDPOOL_HOME)",
                home.dir().display()
            );
        }
        let keypair = read_key_file(&key_path)?;
        let store = Store::open(&home.ledger_path(), &network()?)?;
        Ok(Node {
            home,
            keypair,
            store,
        })
    }

    /// This node's DID.
    pub fn did(&self) -> Did {
        self.keypair.did()
    }

    /// Signs `body` as this node's next event and appends it.
    pub fn append(&mut self, body: impl Into<Body>) -> Result<Event> {
        // Read the head and append in one write transaction: a running node appends to the
        // same chain from another process.
        Ok(self.store.append_next(&self.keypair, now_ms(), body)?)
    }

    /// [`Node::append`], only as seq `seq` (nothing is written if the chain moved on).
    pub fn append_at_seq(&mut self, seq: u64, body: impl Into<Body>) -> Result<Event> {
        Ok(self
            .store
            .append_at_seq(&self.keypair, now_ms(), seq, body)?)
    }
}

/// A published model, found in a ledger.
pub struct PublishedModel {
    /// The publication event.
    pub event: Event,
    /// Its body.
    pub body: ModelPublished,
    /// The contract it carries, parsed.
    pub contract: Contract,
}

impl PublishedModel {
    /// The model id.
    pub fn id(&self) -> &ModelId {
        &self.body.model_id
    }
}

/// Every published model in the ledger whose contract parses, oldest first. A publication
/// whose contract does not parse (anyone can publish anything) is skipped with a warning on
/// stderr naming it, so one bad event cannot make every listing fail.
pub fn published_models(store: &Store) -> Result<Vec<PublishedModel>> {
    published_models_where(store, |_, _| true)
}

/// [`published_models`], parsing only the publications `keep` accepts (a contract is parsed,
/// and a bad one warned about, only for those).
pub fn published_models_where(
    store: &Store,
    mut keep: impl FnMut(&Event, &ModelPublished) -> bool,
) -> Result<Vec<PublishedModel>> {
    let mut models = Vec::new();
    for event in store.events_by_kind(EventKind::ModelPublished)? {
        if let Body::ModelPublished(body) = event.body().clone() {
            if !keep(&event, &body) {
                continue;
            }
            let source = format!("model {}", body.model_id);
            let contract = match Contract::from_toml(&body.contract_toml, &source) {
                Ok(contract) => contract,
                Err(err) => {
                    eprintln!(
                        "warning: skipping model {} published by {} (event {}): its contract does not parse: {err}",
                        body.model_id,
                        event.author(),
                        event.id()
                    );
                    continue;
                }
            };
            models.push(PublishedModel {
                event,
                body,
                contract,
            });
        }
    }
    models.sort_by_key(|m| m.event.timestamp_ms());
    Ok(models)
}

/// Finds a model by id, id prefix, or name.
pub fn find_model(store: &Store, query: &str) -> Result<PublishedModel> {
    let models = published_models(store)?;
    let matches: Vec<usize> = models
        .iter()
        .enumerate()
        .filter(|(_, m)| m.id().as_str() == query || m.body.name == query)
        .map(|(i, _)| i)
        .collect();
    let matches = if matches.is_empty() {
        models
            .iter()
            .enumerate()
            .filter(|(_, m)| query.len() >= 6 && m.id().as_str().starts_with(query))
            .map(|(i, _)| i)
            .collect()
    } else {
        matches
    };
    match matches.as_slice() {
        [i] => Ok(models.into_iter().nth(*i).context("model vanished")?),
        [] => {
            let known: Vec<String> = models.iter().map(|m| m.body.name.clone()).collect();
            if known.is_empty() {
                bail!("no model \"{query}\" in the ledger: no model has been published yet")
            }
            bail!(
                "no model \"{query}\" in the ledger (published: {})",
                known.join(", ")
            )
        }
        _ => bail!(
            "\"{query}\" matches {} models; use the full model id",
            matches.len()
        ),
    }
}

/// A consent as seen at a point in time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// In force.
    Active,
    /// Withdrawn.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// A consent event with its state.
pub struct ConsentRecord {
    /// The `ConsentGranted` event.
    pub event: Event,
    /// Its body.
    pub body: ConsentGranted,
    /// Its state at the time asked.
    pub state: ConsentState,
    /// When its owner revoked it, if they did.
    pub revoked_at_ms: Option<u64>,
}

/// Every consent in the ledger (optionally only one author's / one model's), with its state at
/// `at_ms`.
pub fn consents(
    store: &Store,
    author: Option<&Did>,
    model: Option<&ModelId>,
    at_ms: u64,
) -> Result<Vec<ConsentRecord>> {
    let revoked: Vec<(Did, EventId, u64)> = store
        .events_by_kind(EventKind::ConsentRevoked)?
        .into_iter()
        .filter_map(|e| match e.body() {
            Body::ConsentRevoked(r) => Some((e.author(), r.consent, e.timestamp_ms())),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for event in store.events_by_kind(EventKind::ConsentGranted)? {
        let Body::ConsentGranted(body) = event.body().clone() else {
            continue;
        };
        if author.is_some_and(|a| *a != event.author())
            || model.is_some_and(|m| *m != body.model_id)
        {
            continue;
        }
        let id = event.id();
        let revoked_at_ms = revoked
            .iter()
            .find(|(who, c, _)| *who == event.author() && *c == id)
            .map(|(_, _, at)| *at);
        let state = if revoked_at_ms.is_some() {
            ConsentState::Revoked
        } else if body.expires_at_ms.is_some_and(|t| t <= at_ms) {
            ConsentState::Expired
        } else {
            ConsentState::Active
        };
        out.push(ConsentRecord {
            event,
            body,
            state,
            revoked_at_ms,
        });
    }
    Ok(out)
}

/// The transparency card of a published model, with its live status from the ledger.
pub fn card(store: &Store, model: &PublishedModel) -> Result<Card> {
    let terms = CardTerms::from_contract(&model.contract);
    let card_hash = content_hash(model.contract.canonical_terms().as_bytes());
    if card_hash != model.body.card_hash {
        bail!(
            "model {}: its contract's terms hash to {card_hash}, but the publication names {}; the publisher declared a card hash that is not its contract's",
            model.id(),
            model.body.card_hash
        );
    }
    let mut status = CardStatus {
        active_consents: consents(store, None, Some(model.id()), now_ms())?
            .iter()
            .filter(|c| c.state == ConsentState::Active)
            .count(),
        ..CardStatus::default()
    };
    let mut participants = std::collections::BTreeSet::new();
    for event in store.events_by_model(model.id())? {
        match event.body() {
            Body::RoundCommitted(round) if event.author() == model.event.author() => {
                status.rounds_done = status.rounds_done.max(round.round);
                participants.extend(round.participants.iter().map(|(did, _)| did.to_string()));
                if model.body.terms.epsilon_budget.is_some() || round.epsilon_total > 0.0 {
                    status.epsilon_spent = Some(round.epsilon_total);
                }
                status.latest_metrics = round.metrics.clone();
            }
            Body::ModelReleased(_) if event.author() == model.event.author() => {
                status.released = true
            }
            Body::RewardsPaid(payout) if event.author() == model.event.author() => {
                status.paid += payout.payouts.iter().map(|line| line.amount).sum::<u64>();
            }
            _ => {}
        }
    }
    status.participants = participants.len();
    Ok(Card {
        model_id: model.id().to_string(),
        card_hash,
        terms,
        status,
    })
}

/// Reads a whole file for hashing, naming it on error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
