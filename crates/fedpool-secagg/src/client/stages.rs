//! The participant's three answering stages: share keys (2), mask the input (3) and release
//! shares for unmasking (4). Every check that protects the participant against a malicious
//! server is here.

use std::collections::{BTreeMap, BTreeSet};

use rand::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::{
    Client, ClientEvent, ClientOutput, HeldShares, NeighbourKeys, Secrets, SelfSeed, State,
};
use crate::crypto::{self, SHARE_PAIR_BYTES};
use crate::error::{Error, ParticipantIdx, Scope, Stage};
use crate::msg::{AdvertisedKeys, EncryptedShares, ToServer, UnmaskRequest, UnmaskResponse};
use crate::prg::{self, MaskPurpose};
use crate::shamir::{self, ShareValue};

impl<R: CryptoRng + RngCore> Client<R> {
    /// Stage 2: check the relayed keys, then share b_u and s_sk_u among the neighbours.
    pub(super) fn share_keys(
        &mut self,
        secrets: Secrets,
        keys: Vec<AdvertisedKeys>,
    ) -> Result<State, Error> {
        const STAGE: Stage = Stage::ShareKeys;
        let party = self.party();
        let binding = *self.config.binding();
        let mut relayed: Vec<(ParticipantIdx, [u8; 32], [u8; 32])> = Vec::new();
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
            if relayed
                .iter()
                .any(|(seen_owner, _, _)| *seen_owner == owner)
            {
                return Err(
                    self.violation(STAGE, format!("the server relayed keys of {owner} twice"))
                );
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
            relayed.push((owner, entry.encryption_pk, entry.masking_pk));
        }
        relayed.sort_unstable_by_key(|(owner, _, _)| *owner);
        let threshold = self.config.threshold();
        if relayed.len() < threshold {
            // Our secrets could never be rebuilt: stop before releasing anything.
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::NeighboursOf(self.me),
                alive: relayed.len(),
                threshold,
            });
        }

        let mut self_seed = SelfSeed([0u8; 32]);
        self.rng.fill_bytes(&mut self_seed.0);
        let points: Vec<u64> = relayed.iter().map(|(v, _, _)| v.0 as u64 + 1).collect();
        let mut masking_sk_bytes = secrets.masking_sk.to_bytes();
        let self_mask_shares = shamir::split(&self_seed.0, threshold, &points, &mut self.rng);
        let masking_key_shares =
            shamir::split(&masking_sk_bytes, threshold, &points, &mut self.rng);
        masking_sk_bytes.zeroize();

        let mut sealed = Vec::with_capacity(relayed.len());
        let mut neighbours = BTreeMap::new();
        let mut plaintext = [0u8; SHARE_PAIR_BYTES];
        for (&(peer, encryption_pk, masking_pk), (b_share, s_share)) in relayed
            .iter()
            .zip(self_mask_shares.iter().zip(&masking_key_shares))
        {
            let mut shared =
                crypto::agree(&secrets.encryption_sk, &encryption_pk).ok_or(Error::WeakKey {
                    party,
                    stage: STAGE,
                    peer,
                })?;
            let mut key = crypto::share_key(&binding, &shared, self.me, peer);
            neighbours.insert(
                peer,
                NeighbourKeys {
                    masking_pk,
                    receive_key: crypto::share_key(&binding, &shared, peer, self.me),
                },
            );
            shared.zeroize();
            plaintext[..ShareValue::BYTES].copy_from_slice(&b_share.to_bytes());
            plaintext[ShareValue::BYTES..].copy_from_slice(&s_share.to_bytes());
            sealed.push(EncryptedShares {
                peer,
                ciphertext: crypto::seal_shares(&key, &binding, self.me, peer, &plaintext),
            });
            key.zeroize();
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
    pub(super) fn mask_input(
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
            let mut plaintext = crypto::open_shares(
                &keys.receive_key,
                &binding,
                sender,
                self.me,
                &entry.ciphertext,
            )
            .ok_or(Error::Decryption {
                party,
                stage: STAGE,
                sender,
            })?;
            let (b_bytes, s_bytes) = plaintext.split_at(ShareValue::BYTES);
            let parsed = ShareValue::from_bytes(b_bytes.try_into().expect("40 bytes")).zip(
                ShareValue::from_bytes(s_bytes.try_into().expect("40 bytes")),
            );
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
        prg::add_mask(
            &mut masked,
            &self_seed.0,
            &self.nonces,
            MaskPurpose::SelfMask,
        );
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
        Ok(State::AwaitingSurvivors { held })
    }

    /// Stage 4: check the survivor set the server shows us against what we saw, then sign it.
    /// This is the only set we will ever release shares for in this session.
    pub(super) fn sign_survivors(
        &mut self,
        held: BTreeMap<ParticipantIdx, HeldShares>,
        survivors: Vec<ParticipantIdx>,
    ) -> Result<State, Error> {
        const STAGE: Stage = Stage::ConsistencyCheck;
        let party = self.party();
        let inconsistent = |detail: String| Error::InconsistentSets {
            party,
            stage: STAGE,
            detail,
        };
        if let Some(pair) = survivors.windows(2).find(|w| w[0] >= w[1]) {
            return Err(inconsistent(format!(
                "the survivor set is not strictly increasing ({} then {})",
                pair[0], pair[1]
            )));
        }
        if let Some(&stranger) = survivors.iter().find(|&&v| !self.config.contains(v)) {
            return Err(self.violation(
                STAGE,
                format!("the survivor set names {stranger}, who is not in the round"),
            ));
        }
        // We sent our masked input: a set without us is a lie told to someone.
        if survivors.binary_search(&self.me).is_err() {
            return Err(inconsistent(
                "the survivor set leaves out this participant, which sent its masked input".into(),
            ));
        }
        // A neighbour's input is in the sum only if it masked with us, i.e. its shares reached
        // us: otherwise our pairwise mask with it could never cancel.
        for &neighbour in self.config.neighbours(self.me) {
            if survivors.binary_search(&neighbour).is_ok() && !held.contains_key(&neighbour) {
                return Err(inconsistent(format!(
                    "neighbour {neighbour} never completed key sharing but is listed as a survivor"
                )));
            }
        }
        let signature =
            crypto::sign_survivors(&self.identity, self.config.binding(), self.me, &survivors);
        self.outputs
            .push_back(ClientOutput::Send(ToServer::ConsistencySignature(
                signature,
            )));
        Ok(State::AwaitingUnmask {
            held,
            signed: survivors,
        })
    }

    /// Stage 5: release shares only for the set we signed, and only once t of our neighbours
    /// signed that same set: then no other set can have been accepted anywhere in our
    /// neighbourhood, so no neighbour is a survivor to one of us and dropped to another.
    pub(super) fn unmask(
        &mut self,
        held: BTreeMap<ParticipantIdx, HeldShares>,
        signed: Vec<ParticipantIdx>,
        request: UnmaskRequest,
    ) -> Result<State, Error> {
        const STAGE: Stage = Stage::Unmasking;
        let party = self.party();
        if request.survivors != signed {
            return Err(Error::InconsistentSets {
                party,
                stage: STAGE,
                detail: format!(
                    "the unmasking request names {} survivors, not the {} this participant signed",
                    request.survivors.len(),
                    signed.len()
                ),
            });
        }
        let binding = *self.config.binding();
        let mut signers = BTreeSet::new();
        for (signer, signature) in &request.signatures {
            let signer = *signer;
            if !self.config.contains(signer) || !self.config.are_neighbours(self.me, signer) {
                return Err(self.violation(
                    STAGE,
                    format!("a consistency signature is from {signer}, who is not a neighbour"),
                ));
            }
            if signed.binary_search(&signer).is_err() {
                return Err(self.violation(
                    STAGE,
                    format!("{signer} signed the survivor set but is not in it"),
                ));
            }
            if !signers.insert(signer) {
                return Err(
                    self.violation(STAGE, format!("two consistency signatures from {signer}"))
                );
            }
            let identity = self
                .config
                .identity(signer)
                .expect("signer is in the round");
            if !crypto::verify_survivors(identity, &binding, signer, &signed, signature) {
                return Err(Error::InconsistentSets {
                    party,
                    stage: STAGE,
                    detail: format!(
                        "{signer}'s consistency signature is not over the set this participant signed"
                    ),
                });
            }
        }
        let threshold = self.config.threshold();
        if signers.len() < threshold {
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::NeighboursOf(self.me),
                alive: signers.len(),
                threshold,
            });
        }
        let mut response = UnmaskResponse {
            self_mask_shares: Vec::new(),
            masking_key_shares: Vec::new(),
        };
        for (&owner, shares) in &held {
            // Exactly one of the two per neighbour, by the one set we signed.
            if signed.binary_search(&owner).is_ok() {
                response.self_mask_shares.push((owner, shares.self_mask));
            } else {
                response
                    .masking_key_shares
                    .push((owner, shares.masking_key));
            }
        }
        drop(held);
        self.outputs
            .push_back(ClientOutput::Send(ToServer::UnmaskShares(response)));
        self.outputs
            .push_back(ClientOutput::Event(ClientEvent::Finished));
        Ok(State::Finished)
    }
}
