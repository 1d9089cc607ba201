//! fedpool's secure aggregation: the server learns the sum of the participants' quantized
//! updates and nothing else, even when participants drop out at any stage.
//!
//! This is SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova 2020, "Secure Single-Server
//! Aggregation with (Poly)Logarithmic Overhead"), in which each participant masks with and
//! shares its secrets among k = O(log n) neighbours of a seeded Harary graph, with all-pairs
//! SecAgg (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
//! Learning") as the special case k = n − 1 ([`Topology::AllPairs`]).
//!
//! Unlike Flower's implementation the server cannot substitute keys: every participant signs its
//! session keys with its long-term Ed25519 identity (its ledger identity, listed in the
//! [`RoundConfig`]), and every participant checks its neighbours' signatures before it shares
//! anything.
//!
//! # Main types
//!
//! - [`RoundConfig`] (from [`RoundSettings`]): participants and identity keys, [`Topology`],
//!   threshold t, modulus 2^b, vector length, session id. [`secagg_plus_parameters`] picks k
//!   and t.
//! - [`Client`] and [`Server`]: sans-IO state machines, `handle(input)` then drain
//!   `poll_output()`, exchanging [`ToServer`] and [`ToClient`] messages (byte encodings with
//!   `encode` / `decode`).
//! - [`Quantizer`]: `f32` ↔ words mod 2^b without overflow of the sum.
//! - [`sim::run_round_in_process`]: drives n clients and a server through a round with a
//!   dropout plan.
//!
//! # Stages
//!
//! | stage | participant → server | server → participant |
//! | --- | --- | --- |
//! | 1 advertise keys | [`ToServer::AdvertiseKeys`]: c_pk, s_pk, Ed25519 signature | [`ToClient::NeighbourKeys`] |
//! | 2 share keys | [`ToServer::ShareKeys`]: Shamir shares of b_u and s_sk_u, sealed per neighbour | [`ToClient::RoutedShares`] |
//! | 3 masked input | [`ToServer::MaskedInput`]: x_u + PRG(b_u) ± Σ PRG(s_uv) mod 2^b | [`ToClient::Survivors`]: the one global survivor set |
//! | 4 consistency check | [`ToServer::ConsistencySignature`]: Ed25519 over the set | [`ToClient::Unmask`]: the set and the neighbours' signatures |
//! | 5 unmasking | [`ToServer::UnmaskShares`]: b-shares of survivors, s_sk-shares of dropouts | — |
//!
//! # Why a lying server learns nothing more than the sum
//!
//! To unmask participant u the server needs b_u (t shares, released only by neighbours that
//! accepted a set *with* u) and, for every neighbour w that u masked with (at least t of them),
//! either s_sk_u or s_sk_w (t shares, released only by neighbours that accepted a set *without*
//! the owner). Each honest participant releases one of the two shares per owner, so a server
//! telling one story cannot get both for u (2t > k). A server telling different stories to
//! different participants is stopped by the consistency check (Bonawitz et al. 2017, round 3):
//! a participant signs the one set it was shown, checks that it is in it, and releases shares
//! only for that set and only after t of its neighbours signed the same set. Suppose the server
//! got b_u from releasers R_u and s_sk_w for every w in H_u. Both hold at least t of u's k
//! neighbours, so some w is in both; w released b_u, so t of w's neighbours signed w's set,
//! which contains w; the releasers of s_sk_w are also w's neighbours and each signed a set
//! without w. An honest participant signs one set per session, so w would have 2t > k distinct
//! neighbours. With c participants colluding with the server in one neighbourhood, the same
//! argument needs c ≥ 2t − k, as for the one-share rule. Tests: `tests/consistency.rs`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use ed25519_dalek::SigningKey;
//! use fedpool_secagg::sim::{run_round_in_process, DropoutPlan, SimOptions, SimRound};
//! use fedpool_secagg::{ParticipantIdx, Quantizer, RoundConfig, RoundSettings, SessionId, Stage, Topology};
//! use rand::SeedableRng;
//!
//! let n = 10;
//! let identities: Vec<SigningKey> = (0..n).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
//! let quantizer = Quantizer::new(1.0, n).unwrap();
//! let config = Arc::new(RoundConfig::new(RoundSettings {
//!     session_id: SessionId([7; 32]),
//!     identities: identities.iter().map(|k| k.verifying_key()).collect(),
//!     topology: Topology::Harary { degree: 4, graph_seed: [1; 32] },
//!     threshold: 3,
//!     modulus_bits: quantizer.modulus_bits(),
//!     vector_len: 2,
//! }).unwrap());
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let inputs: Vec<Vec<u32>> = (0..n)
//!     .map(|_| quantizer.quantize(&[0.25, -0.5], &mut rng).unwrap())
//!     .collect();
//! let plan = DropoutPlan::none().drop_at(ParticipantIdx(3), Stage::MaskedInput);
//! let outcome = run_round_in_process(
//!     SimRound { config, identities, inputs },
//!     &plan,
//!     SimOptions::default(),
//! );
//! let aggregate = outcome.aggregate.unwrap();
//! assert_eq!(aggregate.survivors.len(), 9);
//! let sum = quantizer.decode_sum(&aggregate.sum);
//! assert!((sum[0] - 9.0 * 0.25).abs() < 1e-4 && (sum[1] + 9.0 * 0.5).abs() < 1e-4);
//! ```
//!
//! # Architecture invariants
//!
//! Sans-IO and pure: no sockets, threads, clocks or global state; time arrives as
//! `Tick { now_ms }` and all randomness comes from a caller's CSPRNG. Cryptography only from
//! RustCrypto and dalek crates, except Shamir sharing over GF(2^61 − 1) (`shamir.rs`). The
//! server's view of inputs ([`Server::masked_inputs`]) only ever holds masked vectors.
#![deny(missing_docs)]

mod client;
mod config;
mod crypto;
mod error;
mod graph;
mod msg;
mod params;
mod prg;
mod quantize;
mod server;
mod shamir;
pub mod sim;
mod wire;

pub use client::{Client, ClientEvent, ClientInput, ClientOutput, ClientStatus};
pub use config::{RoundConfig, RoundSettings, SessionId, Topology};
pub use crypto::SHARE_CIPHERTEXT_BYTES;
pub use error::{Error, ParticipantIdx, Party, Scope, SecretKind, Stage};
pub use msg::{AdvertisedKeys, EncryptedShares, ToClient, ToServer, UnmaskRequest, UnmaskResponse};
pub use params::{SecAggPlusParameters, secagg_plus_parameters};
pub use quantize::Quantizer;
pub use server::{
    Aggregate, Rejection, Server, ServerEvent, ServerInput, ServerOutput, StageReport,
};
pub use shamir::ShareValue;
pub use wire::{ADVERTISED_KEYS_BYTES, ENCRYPTED_SHARES_BYTES, OWNED_SHARE_BYTES};

/// Entry points for the crate's own benchmarks; not part of the API.
#[doc(hidden)]
pub mod bench_support {
    /// Adds the pairwise-mask keystream of `seed` to `acc` (one mask of the hot path).
    pub fn fold_mask(acc: &mut [u32], seed: &[u8; 32]) {
        let nonces = crate::prg::MaskNonces::new(&[0; 32]);
        crate::prg::add_mask(acc, seed, &nonces, crate::prg::MaskPurpose::Pairwise);
    }
}
