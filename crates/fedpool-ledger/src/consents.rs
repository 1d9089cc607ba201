//! Who may be asked to train a model, as the ledger says: the consents that are active now.
//! The publisher builds each round's roster (and the secure-aggregation directory) from this,
//! never from what it remembers, so a revocation or an expiry on the ledger binds it.

use std::collections::{BTreeMap, HashSet};

use crate::{Body, Did, Event, EventId, ModelPublished};

/// A data owner's consent that holds at a given time.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveConsent {
    /// The owner, whose key also signs its secure-aggregation keys.
    pub owner: Did,
    /// The [`crate::ConsentGranted`] event a round will name for this owner.
    pub consent: EventId,
    /// The most ε the owner accepts for the model.
    pub epsilon_cap: Option<f64>,
    /// When the consent lapses.
    pub expires_at_ms: Option<u64>,
}

/// The consents to `model` (published by `publisher`) that hold at `now_ms`, one per owner
/// (its latest, by timestamp then seq), in owner order: naming this publisher and the
/// published card, allowing every field the model reads, not revoked at or before `now_ms`,
/// and not expired by it. `events` is any set of ledger events (verified or not: only what
/// owners signed about their own consents counts).
pub fn active_consents(
    events: &[Event],
    model: &ModelPublished,
    publisher: &Did,
    now_ms: u64,
) -> Vec<ActiveConsent> {
    let revoked: HashSet<(Did, EventId)> = events
        .iter()
        .filter(|e| e.timestamp_ms() <= now_ms)
        .filter_map(|e| match e.body() {
            Body::ConsentRevoked(r) if r.model_id == model.model_id => {
                Some((e.author(), r.consent))
            }
            _ => None,
        })
        .collect();
    let mut latest: BTreeMap<Did, (&Event, ActiveConsent)> = BTreeMap::new();
    for event in events {
        let Body::ConsentGranted(consent) = event.body() else {
            continue;
        };
        let covers = model
            .terms
            .required_fields
            .iter()
            .all(|field| consent.fields.contains(field));
        let holds = consent.model_id == model.model_id
            && consent.publisher == *publisher
            && consent.card_hash == model.card_hash
            && covers
            && event.timestamp_ms() <= now_ms
            && consent.expires_at_ms.is_none_or(|at| now_ms < at)
            && !revoked.contains(&(event.author(), event.id()));
        if !holds {
            continue;
        }
        let newer = latest.get(&event.author()).is_none_or(|(held, _)| {
            (event.timestamp_ms(), event.seq()) > (held.timestamp_ms(), held.seq())
        });
        if newer {
            latest.insert(
                event.author(),
                (
                    event,
                    ActiveConsent {
                        owner: event.author(),
                        consent: event.id(),
                        epsilon_cap: consent.epsilon_cap,
                        expires_at_ms: consent.expires_at_ms,
                    },
                ),
            );
        }
    }
    latest.into_values().map(|(_, active)| active).collect()
}
