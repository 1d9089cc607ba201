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
        Ok(State::AwaitingUnmask { held })
    }

    /// Stage 4: check the server's survivor and dropout sets against what we saw, then release
    /// one share per neighbour.
    pub(super) fn unmask(
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
        // A neighbour is in our masks exactly when we hold its shares; the server must classify
        // exactly those neighbours, each once.
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
        // The server needs t of our surviving neighbours to rebuild our self-mask seed; an
        // honest server never asks with fewer, so a smaller set means the round cannot end
        // well and we release nothing.
        let threshold = self.config.threshold();
        if survivors.len() < threshold {
            return Err(Error::TooFewSurvivors {
                party,
                stage: STAGE,
                scope: Scope::NeighboursOf(self.me),
                alive: survivors.len(),
                threshold,
            });
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

    fn checked_set(
        &self,
        list: &[ParticipantIdx],
        what: &str,
    ) -> Result<BTreeSet<ParticipantIdx>, Error> {
        let mut set = BTreeSet::new();
        for &idx in list {
            if !self.config.contains(idx) || !self.config.are_neighbours(self.me, idx) {
                return Err(self.violation(
                    Stage::Unmasking,
                    format!("the {what} list names {idx}, who is not a neighbour"),
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
