//! fedpool's verifiable ledger: `did:key` identities, signed per-author event chains, an
//! embedded SQLite store, and an auditor's `verify`.
//!
//! Every node signs its own append-only chain of [`Event`]s with its Ed25519 [`Keypair`]
//! (named by its [`Did`]). Each event names its author's previous event by [`EventId`], a
//! content hash, so a chain cannot be altered, reordered or truncated in the middle without
//! breaking a link. Events say what happened to a model: it was published, a data owner
//! consented or revoked, a round was committed with the consents it relied on and the privacy
//! it spent, an owner's node recorded the privacy it spent, rewards were paid, the model was
//! released. [`verify_events`] (or
//! [`Store::verify`]) checks all of it and reports every [`Violation`] by [`Rule`].
//!
//! ```
//! use fedpool_ledger::*;
//!
//! let network = NetworkId::new("fedpool-doc")?;
//! let publisher = Keypair::insecure_from_seed(1); // tests only; real nodes use generate()
//! let contract = "name = \"demo\"";
//! let terms = ModelTerms {
//!     required_fields: vec!["age".into()],
//!     epsilon_budget: Some(4.0),
//!     delta: Some(1e-5),
//!     reward_pool: 100,
//!     currency: "points".into(),
//! };
//! /// fedpool-runtime's `ContractReader` parses real contracts; this one knows just one.
//! struct OneContract(ModelTerms);
//! impl ContractRules for OneContract {
//!     fn terms(&self, _: &str) -> Result<ModelTerms, String> {
//!         Ok(self.0.clone())
//!     }
//!     fn epsilon_total(
//!         &self,
//!         _: &str,
//!         _: Option<&RoundPlan>,
//!         _: &[RoundPlan],
//!     ) -> Result<Option<f64>, String> {
//!         Ok(None)
//!     }
//!     fn node_epsilons(
//!         &self,
//!         _: &str,
//!         histories: &[Vec<PrivacyStep<'_>>],
//!     ) -> Vec<Result<Vec<f64>, String>> {
//!         vec![Err("this contract spends no privacy".into()); histories.len()]
//!     }
//! }
//! let published = Event::sign(&network, &publisher, 1, None, 1_000, ModelPublished {
//!     model_id: ModelId::for_publication(&publisher.did(), contract),
//!     name: "demo".into(),
//!     version: "1".into(),
//!     contract_toml: contract.into(),
//!     card_hash: content_hash(b"card"),
//!     terms: terms.clone(),
//! })?;
//! let bytes = published.encode();
//! assert_eq!(Event::decode(&bytes)?, published);
//! let report = verify_events(&network, &[published], &OneContract(terms));
//! assert!(report.violations.is_empty());
//! # Ok::<(), fedpool_ledger::Error>(())
//! ```
//!
//! # Code map
//!
//! - [`identity`]: [`Did`] (`did:key` parse and format), [`Keypair`] (generate, sign),
//!   [`Signature`]; [`keyfile`]: a key pair on disk with owner-only permissions.
//! - [`event`]: [`Event`] (sign, encode, decode, verify the signature), [`EventId`],
//!   [`NetworkId`], and the byte layout of the encoding; [`kinds`]: the bodies.
//! - [`wallet`]: the EIP-191 messages a wallet signs to link or unlink itself, and their
//!   check; [`anchor`]: the Merkle root of chain heads put on a public chain.
//! - [`store`]: the SQLite [`Store`] (append, import, export, queries, verify); [`bundle`]:
//!   the export file format; [`ChainWriter`]: the one way an author signs its next events;
//!   [`active_consents`]: who may be asked to train a model now.
//! - [`verify`]: [`verify_events`], [`VerifyReport`], [`Violation`], [`Rule`].
//!
//! # Architecture invariants
//!
//! - The ledger knows nothing of models, training, networking or the other fedpool crates, and
//!   depends on none of them. A model is an id bound to its publisher and its contract text;
//!   the text is read only through the caller's [`ContractRules`] (the terms it states, the ε
//!   its rounds and owners' recorded mechanisms cost), so verify checks what owners read, not what a publication declares.
//! - Only the [`store`] and [`keyfile`] modules touch the file system. Everything else works
//!   on bytes and values.
//! - No clock is read anywhere in this crate: event construction takes the timestamp as an
//!   argument, and verification compares the timestamps written in events.
//! - Randomness is read only by [`Keypair::generate`], from the operating system's CSPRNG.
//!   Seeded keys exist for tests and simulations only, under an unmistakable name
//!   ([`Keypair::insecure_from_seed`]).
//! - No threads, no async: every call does its work on the caller's thread.
//! - All decoding of untrusted bytes (events, DIDs, event ids, export files, database rows)
//!   returns errors and never panics.
//! - The event encoding is written by hand, versioned, and canonical: one value, one byte
//!   string. No serde format decides what gets signed.
//!
//! # API boundary
//!
//! The public types here are fedpool's ledger format. Changing the encoding means a new
//! [`ENCODING_VERSION`]; changing the database layout means a new
//! [`store::SCHEMA_VERSION`].

#![deny(missing_docs)]

pub mod anchor;
pub mod bundle;
mod consents;
mod encoding;
mod error;
pub mod event;
pub mod identity;
pub mod keyfile;
pub mod kinds;
pub mod store;
pub mod verify;
pub mod wallet;
mod writer;

pub use bundle::{decode_bundle, encode_bundle};
pub use consents::{ActiveConsent, active_consents};
pub use encoding::content_hash;
pub use error::Error;
pub use event::{ENCODING_VERSION, Event, EventId, MAX_EVENT_BYTES, NetworkId};
pub use identity::{Did, Keypair, Signature};
pub use keyfile::{
    read_key_file, read_secret_file, replace_file, write_key_file, write_secret_file,
};
pub use kinds::{
    Body, ChainAnchored, ChainHead, ConsentGranted, ConsentRefused, ConsentRevoked, EventKind,
    ModelId, ModelPublished, ModelReleased, ModelTerms, Payout, PolicyDecision, PrivacySpent,
    RewardsPaid, RewardsSettled, RoundCommitted, RoundPlan, SettlementResent, StatisticsCommitted,
    Transfer, WalletLinked, WalletUnlinked,
};
pub use store::{AppendOutcome, ForkEvidence, ImportReport, Store};
pub use verify::{
    ContractRules, PayoutFault, PrivacyStep, Rule, VerifyReport, Violation, WalletLinks,
    verify_events,
};
pub use writer::ChainWriter;
