//! The participant's side of a round, as a sans-IO state machine.
//!
//! Like quinn-proto's `Connection`, a [`Client`] owns no sockets, threads or clocks: the driver
//! feeds it what the server sent with [`Client::handle`] and drains [`Client::poll_output`]
//! after every input (and once after [`Client::new`], which queues the stage-1 message). All
//! randomness comes from the CSPRNG it was given. A participant never waits on a timer: if the
//! server goes quiet the driver simply drops the client.
//!
//! The client is where the protocol's promises are kept, because the server is not trusted:
//! it checks every neighbour's signed keys against the identity keys in the config, refuses
//! non-contributory key agreements, rejects share pairs that do not authenticate, signs exactly
//! one survivor set (stage 4) and in stage 5 answers one request only, for that set, once t of
//! its neighbours signed the same set, with one share per neighbour: never both the self-mask
//! seed and the masking key of the same participant. Any violation aborts the round for this
//! client.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use crate::config::RoundConfig;
use crate::crypto;
use crate::error::{Error, ParticipantIdx, Party, Stage};
use crate::msg::{AdvertisedKeys, ToClient, ToServer};
use crate::prg::MaskNonces;
use crate::shamir::ShareValue;

mod stages;

/// What the driver feeds a participant.
#[derive(Debug, Clone)]
pub enum ClientInput {
    /// A message from the server arrived.
    Received(ToClient),
}

/// What a participant asks its driver to do or report.
#[derive(Debug, Clone)]
pub enum ClientOutput {
    /// Deliver this message to the server.
    Send(ToServer),
    /// The participant's part of the round ended.
    Event(ClientEvent),
}

/// How a participant's part of the round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// It answered the unmasking request; nothing more is expected of it.
    Finished,
    /// It stopped, for this reason, and will send nothing more.
    Aborted(Error),
}

/// Where a participant is in the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    /// Waiting for the stage-1 relay (neighbours' keys).
    AwaitingNeighbourKeys,
    /// Waiting for the stage-2 relay (shares sealed for it).
    AwaitingShares,
    /// Waiting for the survivor set to sign (end of stage 3).
    AwaitingSurvivors,
    /// Waiting for the unmasking request (the signed set and its neighbours' signatures).
    AwaitingUnmask,
    /// Done.
    Finished,
    /// Stopped on an error.
    Aborted,
}

/// A participant's side of one secure-aggregation round.
pub struct Client<R> {
    config: Arc<RoundConfig>,
    me: ParticipantIdx,
    /// Signs the one survivor set this participant will ever accept in this session.
    identity: SigningKey,
    rng: R,
    nonces: MaskNonces,
    state: State,
    outputs: VecDeque<ClientOutput>,
}

struct Secrets {
    /// The quantized input, later the accumulator of the masked input.
    input: Vec<u32>,
    /// c_sk: decrypts share pairs addressed to us, encrypts ours.
    encryption_sk: StaticSecret,
    /// s_sk: seeds pairwise masks; Shamir-shared so the server can remove our masks if we drop.
    masking_sk: StaticSecret,
    own_encryption_pk: [u8; 32],
    own_masking_pk: [u8; 32],
}

struct NeighbourKeys {
    masking_pk: [u8; 32],
    /// The AEAD key of the neighbour's share pair for us, derived in stage 2 from the same
    /// X25519 result as our key for it (one key agreement per neighbour, not two).
    receive_key: [u8; 32],
}

impl Drop for NeighbourKeys {
    fn drop(&mut self) {
        self.receive_key.zeroize();
    }
}

struct HeldShares {
    self_mask: ShareValue,
    masking_key: ShareValue,
}

impl Drop for HeldShares {
    fn drop(&mut self) {
        self.self_mask.zeroize();
        self.masking_key.zeroize();
    }
}

struct SelfSeed([u8; 32]);

impl Drop for SelfSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

enum State {
    AwaitingNeighbourKeys(Secrets),
    AwaitingShares {
        secrets: Secrets,
        self_seed: SelfSeed,
        neighbours: BTreeMap<ParticipantIdx, NeighbourKeys>,
    },
    AwaitingSurvivors {
        held: BTreeMap<ParticipantIdx, HeldShares>,
    },
    AwaitingUnmask {
        held: BTreeMap<ParticipantIdx, HeldShares>,
        /// The set this participant signed; the only one it will unmask for.
        signed: Vec<ParticipantIdx>,
    },
    Finished,
    Aborted(Error),
}

impl<R: CryptoRng + RngCore> Client<R> {
    /// A participant `me` with its identity key and its quantized input (`vector_len` words,
    /// each below 2^b). Generates the two session key pairs from `rng` and queues the stage-1
    /// advertisement: drain [`Client::poll_output`] next.
    pub fn new(
        config: Arc<RoundConfig>,
        me: ParticipantIdx,
        identity: &SigningKey,
        input: Vec<u32>,
        mut rng: R,
    ) -> Result<Client<R>, Error> {
        let party = Party::Participant(me);
        let invalid = |reason: String| Error::InvalidInput { party, reason };
        let Some(registered) = config.identity(me) else {
            return Err(invalid(format!(
                "index {} is outside the round's {} participants",
                me.0,
                config.n_participants()
            )));
        };
        if identity.verifying_key() != *registered {
            return Err(invalid(
                "the identity key differs from the one registered in the round config".into(),
            ));
        }
        if input.len() != config.vector_len() {
            return Err(invalid(format!(
                "input has {} words, the round expects {}",
                input.len(),
                config.vector_len()
            )));
        }
        let word_mask = config.word_mask();
        if let Some(position) = input.iter().position(|&w| w & !word_mask != 0) {
            return Err(invalid(format!(
                "input word {position} is {} but must be below 2^{}",
                input[position],
                config.modulus_bits()
            )));
        }
        // One RNG drives everything: key bytes come from it and the dalek types are built from
        // bytes, so the dalek crates' own rand_core version never matters.
        let encryption_sk = random_static_secret(&mut rng);
        let masking_sk = random_static_secret(&mut rng);
        let own_encryption_pk = PublicKey::from(&encryption_sk).to_bytes();
        let own_masking_pk = PublicKey::from(&masking_sk).to_bytes();
        let signature = crypto::sign_keys(
            identity,
            config.binding(),
            me,
            &own_encryption_pk,
            &own_masking_pk,
        );
        let mut outputs = VecDeque::new();
        outputs.push_back(ClientOutput::Send(ToServer::AdvertiseKeys(
            AdvertisedKeys {
                owner: me,
                encryption_pk: own_encryption_pk,
                masking_pk: own_masking_pk,
                signature,
            },
        )));
        Ok(Client {
            nonces: MaskNonces::new(config.binding()),
            config,
            me,
            identity: identity.clone(),
            rng,
            state: State::AwaitingNeighbourKeys(Secrets {
                input,
                encryption_sk,
                masking_sk,
                own_encryption_pk,
                own_masking_pk,
            }),
            outputs,
        })
    }

    /// Applies one input. Never blocks; drain [`Client::poll_output`] afterwards.
    pub fn handle(&mut self, input: ClientInput) {
        let ClientInput::Received(msg) = input;
        let state = std::mem::replace(&mut self.state, State::Finished);
        let result = match (state, msg) {
            // Once finished or aborted, a participant answers nothing more; in particular a
            // second unmasking request gets no shares.
            (State::Finished, _) => Ok(State::Finished),
            (State::Aborted(error), _) => Ok(State::Aborted(error)),
            (State::AwaitingNeighbourKeys(secrets), ToClient::NeighbourKeys(keys)) => {
                self.share_keys(secrets, keys)
            }
            (
                State::AwaitingShares {
                    secrets,
                    self_seed,
                    neighbours,
                },
                ToClient::RoutedShares(shares),
            ) => self.mask_input(secrets, self_seed, neighbours, shares),
            (State::AwaitingSurvivors { held }, ToClient::Survivors(survivors)) => {
                self.sign_survivors(held, survivors)
            }
            (State::AwaitingUnmask { held, signed }, ToClient::Unmask(request)) => {
                self.unmask(held, signed, request)
            }
            (state, msg) => Err(self.violation(
                msg.stage(),
                format!(
                    "unexpected message closing stage {} while {}",
                    msg.stage(),
                    describe(&state)
                ),
            )),
        };
        self.state = match result {
            Ok(state) => state,
            Err(error) => {
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Aborted(error.clone())));
                State::Aborted(error)
            }
        };
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// This participant's index.
    pub fn participant(&self) -> ParticipantIdx {
        self.me
    }

    /// Where this participant is in the round.
    pub fn status(&self) -> ClientStatus {
        match self.state {
            State::AwaitingNeighbourKeys(_) => ClientStatus::AwaitingNeighbourKeys,
            State::AwaitingShares { .. } => ClientStatus::AwaitingShares,
            State::AwaitingSurvivors { .. } => ClientStatus::AwaitingSurvivors,
            State::AwaitingUnmask { .. } => ClientStatus::AwaitingUnmask,
            State::Finished => ClientStatus::Finished,
            State::Aborted(_) => ClientStatus::Aborted,
        }
    }

    /// Why this participant aborted, if it did.
    pub fn abort_reason(&self) -> Option<&Error> {
        match &self.state {
            State::Aborted(error) => Some(error),
            _ => None,
        }
    }

    fn party(&self) -> Party {
        Party::Participant(self.me)
    }

    fn violation(&self, stage: Stage, detail: String) -> Error {
        Error::ProtocolViolation {
            party: self.party(),
            stage,
            detail,
        }
    }
}

fn describe(state: &State) -> &'static str {
    match state {
        State::AwaitingNeighbourKeys(_) => "waiting for neighbours' keys",
        State::AwaitingShares { .. } => "waiting for routed shares",
        State::AwaitingSurvivors { .. } => "waiting for the survivor set",
        State::AwaitingUnmask { .. } => "waiting for the unmasking request",
        State::Finished => "finished",
        State::Aborted(_) => "aborted",
    }
}

fn random_static_secret<R: CryptoRng + RngCore>(rng: &mut R) -> StaticSecret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = StaticSecret::from(bytes);
    bytes.zeroize();
    secret
}
