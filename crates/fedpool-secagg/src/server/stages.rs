//! The end of each server stage: check the threshold, then relay keys (1), route shares (2),
//! announce the survivor set (3), send it back with the neighbours' signatures over it (4), or
//! rebuild the secrets and remove the masks (5).

use std::collections::BTreeMap;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use super::{Aggregate, Server, ServerEvent, ServerOutput};
use crate::crypto;
use crate::error::{Error, ParticipantIdx, Party, Scope, SecretKind, Stage};
use crate::msg::{EncryptedShares, ToClient, UnmaskRequest};
use crate::prg::{self, MaskPurpose};
use crate::shamir::{self, ShamirError, ShareValue};

impl Server {
    /// Every participant in `live` must keep at least t neighbours in `holders` (the ones that
    /// can still return its shares), and t must remain overall.
    fn check_threshold<'a>(
        &self,
        stage: Stage,
        live: impl IntoIterator<Item = &'a ParticipantIdx>,
        holders: &dyn Fn(ParticipantIdx) -> bool,
        n_overall: usize,
    ) -> Result<(), Error> {
        let threshold = self.config.threshold();
        if n_overall < threshold {
            return Err(Error::TooFewSurvivors {
                party: Party::Server,
                stage,
                scope: Scope::Overall,
                alive: n_overall,
                threshold,
            });
        }
        for &u in live {
            let alive = self
                .config
                .neighbours(u)
                .iter()
                .filter(|&&v| holders(v))
                .count();
            if alive < threshold {
                return Err(Error::TooFewSurvivors {
                    party: Party::Server,
                    stage,
                    scope: Scope::NeighboursOf(u),
                    alive,
                    threshold,
                });
            }
        }
        Ok(())
    }

    /// End of stage 1: send each participant its advertised neighbours' signed keys.
    pub(super) fn relay_keys(&mut self) -> Result<Option<Stage>, Error> {
        let keys = &self.keys;
        self.check_threshold(
            Stage::AdvertiseKeys,
            keys.keys(),
            &|v| keys.contains_key(&v),
            keys.len(),
        )?;
        for &u in self.keys.keys() {
            let relayed = self
                .config
                .neighbours(u)
                .iter()
                .filter_map(|v| self.keys.get(v).cloned())
                .collect();
            self.outputs.push_back(ServerOutput::Send {
                to: u,
                msg: ToClient::NeighbourKeys(relayed),
            });
        }
        Ok(Some(Stage::ShareKeys))
    }

    /// End of stage 2: route each sealed share pair to its recipient.
    pub(super) fn route_shares(&mut self) -> Result<Option<Stage>, Error> {
        self.shared = self.uploads.keys().copied().collect();
        let shared = &self.shared;
        self.check_threshold(
            Stage::ShareKeys,
            shared.iter(),
            &|v| shared.contains(&v),
            shared.len(),
        )?;
        let mut routed: BTreeMap<ParticipantIdx, Vec<EncryptedShares>> = BTreeMap::new();
        for (&sender, uploads) in std::mem::take(&mut self.uploads).iter() {
            for share in uploads {
                if self.shared.contains(&share.peer) {
                    routed.entry(share.peer).or_default().push(EncryptedShares {
                        peer: sender,
                        ciphertext: share.ciphertext,
                    });
                }
            }
        }
        for &v in &self.shared {
            self.outputs.push_back(ServerOutput::Send {
                to: v,
                msg: ToClient::RoutedShares(routed.remove(&v).unwrap_or_default()),
            });
        }
        Ok(Some(Stage::MaskedInput))
    }

    /// End of stage 3: show every survivor the one set of survivors, for it to sign.
    pub(super) fn announce_survivors(&mut self) -> Result<Option<Stage>, Error> {
        self.dropped = self
            .shared
            .iter()
            .copied()
            .filter(|u| !self.masked_inputs.contains_key(u))
            .collect();
        let survivors = &self.masked_inputs;
        // Survivors need t surviving neighbours to return shares of b_u; dropouts need t
        // surviving neighbours to return shares of s_sk.
        self.check_threshold(
            Stage::MaskedInput,
            survivors.keys().chain(self.dropped.iter()),
            &|v| survivors.contains_key(&v),
            survivors.len(),
        )?;
        // One global set, the same for everyone: each survivor signs it, and a neighbour that
        // is a survivor to one participant is a survivor to all (4 bytes per survivor).
        self.survivor_set = self.masked_inputs.keys().copied().collect();
        for &u in self.masked_inputs.keys() {
            self.outputs.push_back(ServerOutput::Send {
                to: u,
                msg: ToClient::Survivors(self.survivor_set.clone()),
            });
        }
        Ok(Some(Stage::ConsistencyCheck))
    }

    /// End of stage 4: every secret the server must rebuild needs t holders among the
    /// participants that signed; then each signer gets the set and its neighbours' signatures.
    pub(super) fn request_unmasking(&mut self) -> Result<Option<Stage>, Error> {
        let signers = &self.consistency_signatures;
        self.check_threshold(
            Stage::ConsistencyCheck,
            self.survivor_set.iter().chain(self.dropped.iter()),
            &|v| signers.contains_key(&v),
            signers.len(),
        )?;
        // Each signer hears only its own neighbours' signatures: O(k), not O(n).
        for &u in self.consistency_signatures.keys() {
            let signatures = self
                .config
                .neighbours(u)
                .iter()
                .filter_map(|v| self.consistency_signatures.get(v).map(|s| (*v, *s)))
                .collect();
            self.outputs.push_back(ServerOutput::Send {
                to: u,
                msg: ToClient::Unmask(UnmaskRequest {
                    survivors: self.survivor_set.clone(),
                    signatures,
                }),
            });
        }
        Ok(Some(Stage::Unmasking))
    }

    /// End of stage 5: rebuild the secrets, remove the masks, output the sum.
    pub(super) fn unmask(&mut self) -> Result<Option<Stage>, Error> {
        let threshold = self.config.threshold();
        let mut self_mask_shares: BTreeMap<ParticipantIdx, Vec<(u64, ShareValue)>> =
            BTreeMap::new();
        let mut masking_key_shares: BTreeMap<ParticipantIdx, Vec<(u64, ShareValue)>> =
            BTreeMap::new();
        for (responder, response) in std::mem::take(&mut self.unmask_responses) {
            let point = responder.0 as u64 + 1;
            for &(owner, share) in &response.self_mask_shares {
                self_mask_shares
                    .entry(owner)
                    .or_default()
                    .push((point, share));
            }
            for &(owner, share) in &response.masking_key_shares {
                masking_key_shares
                    .entry(owner)
                    .or_default()
                    .push((point, share));
            }
        }

        // Rebuild and check every secret before touching the sum.
        let mut self_seeds = Vec::with_capacity(self.masked_inputs.len());
        for &owner in self.masked_inputs.keys() {
            let shares = self_mask_shares.remove(&owner).unwrap_or_default();
            let seed = rebuild(owner, SecretKind::SelfMaskSeed, &shares, threshold)?;
            self_seeds.push(seed);
        }
        let mut dropped_keys = Vec::with_capacity(self.dropped.len());
        for &owner in &self.dropped {
            let shares = masking_key_shares.remove(&owner).unwrap_or_default();
            let mut bytes = rebuild(owner, SecretKind::MaskingKey, &shares, threshold)?;
            let secret = StaticSecret::from(bytes);
            bytes.zeroize();
            if PublicKey::from(&secret).to_bytes() != self.keys[&owner].masking_pk {
                return Err(Error::BadShares {
                    owner,
                    secret: SecretKind::MaskingKey,
                    detail: "the rebuilt key does not match the advertised public key".into(),
                });
            }
            dropped_keys.push((owner, secret));
        }

        let mut sum = std::mem::take(&mut self.masked_sum);
        for seed in &mut self_seeds {
            prg::subtract_mask(&mut sum, seed, &self.nonces, MaskPurpose::SelfMask);
            seed.zeroize();
        }
        let binding = *self.config.binding();
        for (dropped, secret) in &dropped_keys {
            for &survivor in self.config.neighbours(*dropped) {
                if !self.masked_inputs.contains_key(&survivor) {
                    continue;
                }
                let shared = crypto::agree(secret, &self.keys[&survivor].masking_pk).ok_or(
                    Error::WeakKey {
                        party: Party::Server,
                        stage: Stage::Unmasking,
                        peer: survivor,
                    },
                )?;
                let seed = crypto::pairwise_seed(&binding, &shared, *dropped, survivor);
                // The survivor added PRG(s_uv) if it had the smaller index, else subtracted it.
                if survivor < *dropped {
                    prg::subtract_mask(&mut sum, &seed, &self.nonces, MaskPurpose::Pairwise);
                } else {
                    prg::add_mask(&mut sum, &seed, &self.nonces, MaskPurpose::Pairwise);
                }
            }
        }
        let word_mask = self.config.word_mask();
        if word_mask != u32::MAX {
            for word in &mut sum {
                *word &= word_mask;
            }
        }
        self.outputs
            .push_back(ServerOutput::Event(ServerEvent::Finished(Aggregate {
                sum,
                survivors: self.masked_inputs.keys().copied().collect(),
                dropped: self.dropped.iter().copied().collect(),
            })));
        Ok(None)
    }
}

fn rebuild(
    owner: ParticipantIdx,
    secret: SecretKind,
    shares: &[(u64, ShareValue)],
    threshold: usize,
) -> Result<[u8; 32], Error> {
    shamir::reconstruct(shares, threshold).map_err(|error| match error {
        ShamirError::TooFew { have, threshold } => Error::TooFewShares {
            owner,
            secret,
            have,
            threshold,
        },
        ShamirError::BadPoints => Error::BadShares {
            owner,
            secret,
            detail: "two shares claim the same evaluation point".into(),
        },
        ShamirError::Inconsistent => Error::BadShares {
            owner,
            secret,
            detail: "they interpolate to a value that is not a 32-byte secret".into(),
        },
    })
}
