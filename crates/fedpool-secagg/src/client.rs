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
//! non-contributory key agreements, rejects share pairs that do not authenticate, and in stage 4
//! answers one request only, with one share per neighbour: never both the self-mask seed and
//! the masking key of the same participant. Any violation aborts the round for this client.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use crate::config::RoundConfig;
use crate::crypto::{self, SHARE_PAIR_BYTES};
use crate::error::{Error, ParticipantIdx, Party, Scope, Stage};
use crate::msg::{
    AdvertisedKeys, EncryptedShares, ToClient, ToServer, UnmaskRequest, UnmaskResponse,
};
use crate::prg::{self, MaskNonces, MaskPurpose};
use crate::shamir::{self, ShareValue};

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
    /// Waiting for the stage-4 request (survivor and dropout sets).
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

#[derive(Clone, Copy)]
struct NeighbourKeys {
    encryption_pk: [u8; 32],
    masking_pk: [u8; 32],
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
    AwaitingUnmask {
        held: BTreeMap<ParticipantIdx, HeldShares>,
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
        outputs.push_back(ClientOutput::Send(ToServer::AdvertiseKeys(AdvertisedKeys {
            owner: me,
            encryption_pk: own_encryption_pk,
            masking_pk: own_masking_pk,
            signature,
        })));
        Ok(Client {
            nonces: MaskNonces::new(config.binding()),
            config,
            me,
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
            (State::AwaitingUnmask { held }, ToClient::Unmask(request)) => {
                self.unmask(held, request)
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

    /// Stage 2: check the relayed keys, then share b_u and s_sk_u among the neighbours.
    fn share_keys(&mut self, secrets: Secrets, keys: Vec<AdvertisedKeys>) -> Result<State, Error> {
        const STAGE: Stage = Stage::ShareKeys;
        let party = self.party();
        let binding = *self.config.binding();
        let mut neighbours = BTreeMap::new();
        // Every public key seen, with its owner, to catch one key advertised twice.
        let mut seen: BTreeMap<[u8; 32], ParticipantIdx> = BTreeMap::new();
        seen.insert(secrets.own_encryption_pk, self.me);
        seen.insert(secrets.own_masking_pk, self.me);
        for entry in keys {
            let owner = entry.owner;
            if !self.config.contains(owner) || !self.config.are_neighbours(self.me, owner) {
                return Err(self.violation(
                    STAGE,
                    format!("the server relayed keys of {owner}, who is not a neighbour"),
                ));
            }
            if neighbours.contains_key(&owner) {
                return Err(self.violation(
                    STAGE,
                    format!("the server relayed keys of {owner} twice"),
                ));
            }
            let identity = self.config.identity(owner).expect("owner is in the round");
            if !crypto::verify_keys(
                identity,
                &binding,
                owner,
                &entry.encryption_pk,
                &entry.masking_pk,
                &entry.signature,
            ) {
                return Err(Error::ForgedKeys {
                    party,
                    stage: STAGE,
                    owner,
                });
            }
            for key in [entry.encryption_pk, entry.masking_pk] {
                if let Some(&other) = seen.get(&key) {
                    return Err(Error::ReusedKeys {
                        party,
                        stage: STAGE,
                        owner,
                        other,
                    });
                }
                seen.insert(key, owner);
            }
            neighbours.insert(
                owner,
                NeighbourKeys {
                    encryption_pk: entry.encryption_pk,
                    masking_pk: entry.masking_pk,
                },
            );
        }
        let threshold = self.config.threshold();
        if neighbours.len() < threshold {
            // Our secrets could never be rebuilt: stop before releasing anything.
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::NeighboursOf(self.me),
                alive: neighbours.len(),
                threshold,
            });
        }

        let mut self_seed = SelfSeed([0u8; 32]);
        self.rng.fill_bytes(&mut self_seed.0);
        let points: Vec<u64> = neighbours.keys().map(|v| v.0 as u64 + 1).collect();
        let mut masking_sk_bytes = secrets.masking_sk.to_bytes();
        let self_mask_shares = shamir::split(&self_seed.0, threshold, &points, &mut self.rng);
        let masking_key_shares =
            shamir::split(&masking_sk_bytes, threshold, &points, &mut self.rng);
        masking_sk_bytes.zeroize();

        let mut sealed = Vec::with_capacity(neighbours.len());
        let mut plaintext = [0u8; SHARE_PAIR_BYTES];
        for ((&peer, keys), (b_share, s_share)) in neighbours
            .iter()
            .zip(self_mask_shares.iter().zip(&masking_key_shares))
        {
            let shared = crypto::agree(&secrets.encryption_sk, &keys.encryption_pk).ok_or(
                Error::WeakKey {
                    party,
                    stage: STAGE,
                    peer,
                },
            )?;
            let key = crypto::share_key(&binding, &shared, self.me, peer);
            plaintext[..ShareValue::BYTES].copy_from_slice(&b_share.to_bytes());
            plaintext[ShareValue::BYTES..].copy_from_slice(&s_share.to_bytes());
            sealed.push(EncryptedShares {
                peer,
                ciphertext: crypto::seal_shares(&key, &binding, self.me, peer, &plaintext),
            });
        }
        plaintext.zeroize();
        for mut share in self_mask_shares.into_iter().chain(masking_key_shares) {
            share.zeroize();
        }
        self.outputs
            .push_back(ClientOutput::Send(ToServer::ShareKeys(sealed)));
        Ok(State::AwaitingShares {
            secrets,
            self_seed,
            neighbours,
        })
    }

    /// Stage 3: open the shares neighbours sealed for us, then mask and send the input.
    fn mask_input(
        &mut self,
        secrets: Secrets,
        self_seed: SelfSeed,
        neighbours: BTreeMap<ParticipantIdx, NeighbourKeys>,
        routed: Vec<EncryptedShares>,
    ) -> Result<State, Error> {
        const STAGE: Stage = Stage::MaskedInput;
        let party = self.party();
        let binding = *self.config.binding();
        let mut held = BTreeMap::new();
        for entry in &routed {
            let sender = entry.peer;
            let Some(keys) = neighbours.get(&sender) else {
                return Err(self.violation(
                    STAGE,
                    format!("the server routed shares from {sender}, whose keys were not relayed"),
                ));
            };
            if held.contains_key(&sender) {
                return Err(self.violation(
                    STAGE,
                    format!("the server routed shares from {sender} twice"),
                ));
            }
            let shared = crypto::agree(&secrets.encryption_sk, &keys.encryption_pk).ok_or(
                Error::WeakKey {
                    party,
                    stage: STAGE,
                    peer: sender,
                },
            )?;
            let key = crypto::share_key(&binding, &shared, sender, self.me);
            let mut plaintext =
                crypto::open_shares(&key, &binding, sender, self.me, &entry.ciphertext).ok_or(
                    Error::Decryption {
                        party,
                        stage: STAGE,
                        sender,
                    },
                )?;
            let (b_bytes, s_bytes) = plaintext.split_at(ShareValue::BYTES);
            let parsed = ShareValue::from_bytes(b_bytes.try_into().expect("40 bytes"))
                .zip(ShareValue::from_bytes(s_bytes.try_into().expect("40 bytes")));
            plaintext.zeroize();
            let Some((self_mask, masking_key)) = parsed else {
                return Err(self.violation(
                    STAGE,
                    format!("{sender} sealed a share that is not a field element"),
                ));
            };
            held.insert(
                sender,
                HeldShares {
                    self_mask,
                    masking_key,
                },
            );
        }
        let threshold = self.config.threshold();
        if held.len() < threshold {
            // Our pairwise masks would be with fewer than t live neighbours, and our own shares
            // are held by the same few: the server could not unmask the sum, so send nothing.
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::NeighboursOf(self.me),
                alive: held.len(),
                threshold,
            });
        }

        // y_u = x_u + PRG(b_u) + Σ_{v > u} PRG(s_uv) − Σ_{v < u} PRG(s_uv)  (mod 2^b), over the
        // neighbours v whose shares arrived: exactly the set the server knows we masked with.
        let Secrets {
            input: mut masked,
            masking_sk,
            ..
        } = secrets;
        prg::add_mask(&mut masked, &self_seed.0, &self.nonces, MaskPurpose::SelfMask);
        drop(self_seed);
        for &peer in held.keys() {
            let keys = &neighbours[&peer];
            let shared = crypto::agree(&masking_sk, &keys.masking_pk).ok_or(Error::WeakKey {
                party,
                stage: STAGE,
                peer,
            })?;
            let seed = crypto::pairwise_seed(&binding, &shared, self.me, peer);
            if self.me < peer {
                prg::add_mask(&mut masked, &seed, &self.nonces, MaskPurpose::Pairwise);
            } else {
                prg::subtract_mask(&mut masked, &seed, &self.nonces, MaskPurpose::Pairwise);
            }
        }
        let word_mask = self.config.word_mask();
        if word_mask != u32::MAX {
            for word in &mut masked {
                *word &= word_mask;
            }
        }
        self.outputs
            .push_back(ClientOutput::Send(ToServer::MaskedInput(masked)));
        Ok(State::AwaitingUnmask { held })
    }

    /// Stage 4: check the server's survivor and dropout sets against what we saw, then release
    /// one share per neighbour.
    fn unmask(
        &mut self,
        held: BTreeMap<ParticipantIdx, HeldShares>,
        request: UnmaskRequest,
    ) -> Result<State, Error> {
        const STAGE: Stage = Stage::Unmasking;
        let party = self.party();
        let inconsistent = |detail: String| Error::InconsistentSets {
            party,
            stage: STAGE,
            detail,
        };
        let survivors = self.checked_set(&request.survivors, "survivor")?;
        let dropped = self.checked_set(&request.dropped, "dropped")?;
        if let Some(both) = survivors.intersection(&dropped).next() {
            return Err(inconsistent(format!(
                "{both} is listed both as a survivor and as dropped"
            )));
        }
        if !survivors.contains(&self.me) {
            return Err(inconsistent(format!(
                "{} sent its masked input but is not listed as a survivor",
                self.me
            )));
        }
        let threshold = self.config.threshold();
        if survivors.len() < threshold {
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::Overall,
                alive: survivors.len(),
                threshold,
            });
        }
        // A neighbour is in the round's masks exactly when we hold its shares; the server's sets
        // must classify exactly those neighbours, each once.
        for &neighbour in self.config.neighbours(self.me) {
            let listed = survivors.contains(&neighbour) || dropped.contains(&neighbour);
            match (held.contains_key(&neighbour), listed) {
                (true, false) => {
                    return Err(inconsistent(format!(
                        "neighbour {neighbour} completed key sharing but is neither a survivor nor dropped"
                    )));
                }
                (false, true) => {
                    return Err(inconsistent(format!(
                        "neighbour {neighbour} never completed key sharing but is listed"
                    )));
                }
                _ => {}
            }
        }
        let mut response = UnmaskResponse {
            self_mask_shares: Vec::new(),
            masking_key_shares: Vec::new(),
        };
        for (&owner, shares) in &held {
            // Exactly one of the two, by construction of the two disjoint sets.
            if survivors.contains(&owner) {
                response.self_mask_shares.push((owner, shares.self_mask));
            } else {
                response.masking_key_shares.push((owner, shares.masking_key));
            }
        }
        drop(held);
        self.outputs
            .push_back(ClientOutput::Send(ToServer::UnmaskShares(response)));
        self.outputs
            .push_back(ClientOutput::Event(ClientEvent::Finished));
        Ok(State::Finished)
    }

    fn checked_set(
        &self,
        list: &[ParticipantIdx],
        what: &str,
    ) -> Result<BTreeSet<ParticipantIdx>, Error> {
        let mut set = BTreeSet::new();
        for &idx in list {
            if !self.config.contains(idx) {
                return Err(self.violation(
                    Stage::Unmasking,
                    format!("{what} list names {idx}, who is not in the round"),
                ));
            }
            if !set.insert(idx) {
                return Err(Error::InconsistentSets {
                    party: self.party(),
                    stage: Stage::Unmasking,
                    detail: format!("{idx} appears twice in the {what} list"),
                });
            }
        }
        Ok(set)
    }
}

fn describe(state: &State) -> &'static str {
    match state {
        State::AwaitingNeighbourKeys(_) => "waiting for neighbours' keys",
        State::AwaitingShares { .. } => "waiting for routed shares",
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
