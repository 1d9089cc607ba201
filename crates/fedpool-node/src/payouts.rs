//! A network publisher's rewards: each plainly aggregated round's updates valued on the
//! publisher's evaluation set by the same recipe the simulation uses, the round's share of the
//! pool paid by the scores, and once the contract's rounds are done everything left paid by
//! total score. What has been paid is read back from the publisher's own `RewardsPaid` events
//! every time, so a restarted publisher neither pays twice nor loses a carry.
//!
//! Securely aggregated rounds are not valued: the publisher holds only their sum.

use std::collections::BTreeMap;

use fedpool_core::{Contract, Network};
use fedpool_data::Dataset;
use fedpool_ledger::{Body, Did, Keypair, ModelId, Payout, RewardsPaid, Store};
use fedpool_protocol::{NodeId, RoundId, UpdateMsg};
use fedpool_runtime::ledger::params_hash;
use fedpool_runtime::rewards::{PaidSoFar, PayTerms, Payment, Treasury};
use fedpool_runtime::valuation::{self, Method, RoundUpdate, ValuationRecipe};

use crate::{Error, now_ms};

/// One model's payouts while its publisher trains it.
pub struct RunPayouts {
    model_id: ModelId,
    terms: PayTerms,
    method: Method,
    /// The seed of the recipe's sampling: fixed per model.
    seed: u64,
    /// The global model before the round in progress.
    before: Vec<f32>,
    /// This round's plain updates as received, by member.
    updates: BTreeMap<NodeId, (RoundId, Vec<f32>, usize)>,
}

/// What a payout did, for the `train` caller.
pub struct Paid {
    /// Units paid by this payout.
    pub amount: u64,
    /// Units carried to the next.
    pub carried: u64,
}

impl RunPayouts {
    /// Payouts for `contract`, or `None` when it has no pool or aggregates securely.
    pub fn new(model_id: &ModelId, contract: &Contract, initial: &[f32]) -> Option<RunPayouts> {
        let terms = PayTerms::of(contract);
        if terms.pool == 0 || contract.privacy.secure_aggregation {
            return None;
        }
        let id_hash = blake3::hash(model_id.as_str().as_bytes());
        let seed = u64::from_le_bytes(id_hash.as_bytes()[..8].try_into().unwrap_or_default());
        Some(RunPayouts {
            model_id: model_id.clone(),
            terms,
            method: Method::of(contract),
            seed,
            before: initial.to_vec(),
            updates: BTreeMap::new(),
        })
    }

    /// A round started from `global`.
    pub fn round_started(&mut self, global: &[f32]) {
        self.before = global.to_vec();
        self.updates.clear();
    }

    /// Keeps a member's plain update (the publisher decides whether it counts).
    pub fn note_update(&mut self, from: NodeId, update: &UpdateMsg) {
        self.updates.insert(
            from,
            (update.round, update.delta.clone(), update.n_examples),
        );
    }

    /// The recipe, fixed per model: the contract's method, the model's seed, the evaluation
    /// set's hash.
    fn recipe(&self, validation: &Dataset) -> ValuationRecipe {
        ValuationRecipe::new(
            self.method,
            self.seed,
            valuation::validation_hash(validation),
        )
    }

    /// What the ledger says this publisher has paid for the model.
    fn paid_so_far(&self, store: &Store, me: &Did) -> Result<PaidSoFar, Error> {
        let events = store.events_by_author(me)?;
        Ok(PaidSoFar::of(events.iter().filter_map(
            |e| match e.body() {
                Body::RewardsPaid(paid) if paid.model_id == self.model_id => Some(paid),
                _ => None,
            },
        )))
    }

    /// Values round `round`'s contributors and signs their payout, after the round's
    /// commitment (which names them). `None` when no contributor's update is held.
    pub fn pay_round(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        network: &Network,
        validation: &Dataset,
        round: RoundId,
        contributors: &[(NodeId, Did)],
    ) -> Result<Option<Paid>, Error> {
        let held: Vec<(&Did, &Vec<f32>, usize)> = contributors
            .iter()
            .filter_map(|(node, did)| match self.updates.get(node) {
                Some((r, delta, rows)) if *r == round => Some((did, delta, *rows)),
                _ => None,
            })
            .collect();
        if held.is_empty() {
            return Ok(None);
        }
        let updates: Vec<RoundUpdate> = held
            .iter()
            .map(|(_, delta, rows)| RoundUpdate { delta, rows: *rows })
            .collect();
        let recipe = self.recipe(validation);
        let scored = valuation::value_round(
            network,
            &self.before,
            &updates,
            validation,
            &recipe,
            u64::from(round.0),
        )
        .map_err(|e| Error::Refused(format!("cannot value round {round}: {e}")))?;
        let so_far = self.paid_so_far(store, &keypair.did())?;
        let mut treasury =
            Treasury::resume(self.terms.clone(), held.len(), so_far.paid, so_far.carried);
        let clients: Vec<usize> = (0..held.len()).collect();
        let payment = treasury
            .pay_round(round.0, &clients, &scored.scores)
            .map_err(|e| Error::Refused(format!("cannot split round {round}'s share: {e}")))?;
        let owners: Vec<Did> = held.iter().map(|(did, ..)| **did).collect();
        let hashes: Vec<String> = held
            .iter()
            .map(|(_, delta, _)| params_hash(delta))
            .collect();
        let details = valuation::payout_details(&recipe, &hashes);
        self.sign(store, keypair, &payment, &owners, &scored.method, details)
            .map(Some)
    }

    /// Once `rounds_committed` reaches the contract's rounds, pays everything not yet paid by
    /// each owner's total score (once).
    pub fn pay_final(
        &self,
        store: &mut Store,
        keypair: &Keypair,
        validation: &Dataset,
        rounds_committed: u32,
    ) -> Result<Option<Paid>, Error> {
        if rounds_committed < self.terms.rounds {
            return Ok(None);
        }
        let so_far = self.paid_so_far(store, &keypair.did())?;
        if so_far.finished || so_far.totals.is_empty() {
            return Ok(None);
        }
        let mut treasury = Treasury::resume(
            self.terms.clone(),
            so_far.totals.len(),
            so_far.paid,
            so_far.carried,
        );
        let clients: Vec<usize> = (0..so_far.totals.len()).collect();
        let scores: Vec<f64> = so_far.totals.iter().map(|(_, s)| *s).collect();
        let Some(payment) = treasury
            .pay_final_by(&clients, &scores)
            .map_err(|e| Error::Refused(format!("cannot split the final payout: {e}")))?
        else {
            return Ok(None);
        };
        let owners: Vec<Did> = so_far.totals.iter().map(|(did, _)| *did).collect();
        let details = valuation::payout_details(&self.recipe(validation), &[]);
        self.sign(store, keypair, &payment, &owners, "total-score", details)
            .map(Some)
    }

    fn sign(
        &self,
        store: &mut Store,
        keypair: &Keypair,
        payment: &Payment,
        owners: &[Did],
        method: &str,
        details: String,
    ) -> Result<Paid, Error> {
        let payouts: Vec<Payout> = payment
            .clients
            .iter()
            .zip(&payment.scores)
            .zip(&payment.amounts)
            .map(|((&client, &score), &amount)| Payout {
                owner: owners[client],
                score,
                amount,
            })
            .collect();
        let amount = payment.amounts.iter().sum();
        store.append_next(
            keypair,
            now_ms(),
            RewardsPaid {
                model_id: self.model_id.clone(),
                round: payment.round,
                allotment: payment.allotment,
                payouts,
                carried: payment.carried,
                method: method.to_string(),
                details,
            },
        )?;
        Ok(Paid {
            amount,
            carried: payment.carried,
        })
    }
}
