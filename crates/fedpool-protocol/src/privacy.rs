//! A model's privacy terms and how one round applies them: clipping, the noise mechanism, its
//! accounting, and whether updates are securely aggregated.
//!
//! Both roles derive a round's [`RoundPrivacy`] from the same [`PrivacyTerms`] (the contract's
//! privacy section, which every node holds because it consented to it). The publisher plans it
//! and sends it with the request; each participant checks the plan against its terms and
//! accounts, in its own `PrivacyLedger`, a mechanism it builds from the contract (never the
//! one the plan declares) before it trains. A publisher that asks for less noise, a coarser
//! encoding, fewer survivors or a lower sampling rate is refused or accounted at the
//! contract's cost, whatever it claims.

use fedpool_core::{AdaptiveClipping, Contract};
use fedpool_privacy::clip::update_noise_multiplier;
use fedpool_privacy::ddg::{DdgConfig, DdgParams};
use fedpool_privacy::{CountNoise, RoundMechanism, add_gaussian_noise, clip_l2};
use rand::{CryptoRng, Rng};

/// Bits per word of a securely aggregated update: 4 bytes per parameter on the wire, and the
/// finest granularity the distributed discrete Gaussian can use.
pub const SECURE_AGGREGATION_BITS: u32 = 32;

/// δ used to report ε when a contract adds noise but states no δ of its own.
pub const DEFAULT_DELTA: f64 = 1e-5;

/// A model's privacy terms, as its contract states them.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyTerms {
    /// L2 norm every update is clipped to; 0 for no clipping.
    pub clip_norm: f64,
    /// Noise standard deviation as a multiple of `clip_norm`; 0 for no noise.
    pub noise_multiplier: f64,
    /// Share of eligible nodes sampled each round (the q of the accountant), when the contract
    /// samples by fraction; `None` when it samples a fixed count (nodes, which cannot see how
    /// many are eligible, then account q = 1).
    pub sampling_rate: Option<f64>,
    /// Total ε the publisher may spend, if capped.
    pub epsilon_budget: Option<f64>,
    /// δ of every ε reported.
    pub delta: f64,
    /// Whether the publisher may only see the sum of updates.
    pub secure_aggregation: bool,
    /// Share of a round's members whose noise must reach the sum (and whose shares rebuild it).
    pub secure_aggregation_threshold: f64,
    /// Adaptive clipping: `clip_norm` is then the starting norm.
    pub adaptive_clipping: Option<AdaptiveClipping>,
    /// Secure rounds aggregate each random group of at least this many members on its own
    /// (see [`crate::SecAggSetup::groups`]); `None`: one sum per round.
    pub secure_aggregation_group_size: Option<usize>,
}

impl PrivacyTerms {
    /// The terms of `contract`'s privacy section.
    pub fn from_contract(contract: &Contract) -> PrivacyTerms {
        let p = &contract.privacy;
        PrivacyTerms {
            clip_norm: p.clip_norm,
            noise_multiplier: p.noise_multiplier,
            sampling_rate: contract.training.sampling.fraction,
            epsilon_budget: p.epsilon_budget,
            delta: p.delta.unwrap_or(DEFAULT_DELTA),
            secure_aggregation: p.secure_aggregation,
            secure_aggregation_threshold: p.secure_aggregation_threshold,
            adaptive_clipping: p.adaptive_clipping,
            secure_aggregation_group_size: p.secure_aggregation_group_size,
        }
    }

    /// No clipping, no noise, no secure aggregation: the plain FedAvg path.
    pub fn none() -> PrivacyTerms {
        PrivacyTerms {
            clip_norm: 0.0,
            noise_multiplier: 0.0,
            sampling_rate: None,
            epsilon_budget: None,
            delta: DEFAULT_DELTA,
            secure_aggregation: false,
            secure_aggregation_threshold: 2.0 / 3.0,
            adaptive_clipping: None,
            secure_aggregation_group_size: None,
        }
    }

    /// The terms of the statistics phase: the contract's, at its starting clip norm, without
    /// adaptive clipping (one release has nothing to adapt to).
    pub fn for_statistics(&self) -> PrivacyTerms {
        PrivacyTerms {
            adaptive_clipping: None,
            ..self.clone()
        }
    }

    /// Whether updates leave the node altered (clipped, noised or masked): then the publisher
    /// aggregates a uniform mean of clipped updates instead of calling its strategy on each.
    pub fn is_active(&self) -> bool {
        self.clip_norm > 0.0 || self.noise_multiplier > 0.0 || self.secure_aggregation
    }

    /// Whether rounds spend privacy budget (there is noise to account).
    pub fn adds_noise(&self) -> bool {
        self.noise_multiplier > 0.0 && self.clip_norm > 0.0
    }

    /// The fewest members whose noise shares must be in a secure sum, for `members` members.
    pub fn min_survivors(&self, members: usize) -> usize {
        ((self.secure_aggregation_threshold * members as f64).ceil() as usize)
            .clamp(1, members.max(1))
    }

    /// The most members one secure sum of a round asking `sampled` nodes can hold: all of them,
    /// or with groups of at least G, 2G − 1 (groups are as many as fit, so none reaches 2G).
    pub fn secure_sum_capacity(&self, sampled: usize) -> usize {
        match self.secure_aggregation_group_size {
            Some(group) => sampled.min(2 * group.max(1) - 1),
            None => sampled,
        }
    }

    /// The fewest members whose noise shares a secure sum of up to `capacity` members must
    /// hold: with groups, those of the smallest group there may be (at most G), so that each
    /// group's sum alone carries the contract's full noise.
    fn secure_min_survivors(&self, capacity: usize) -> usize {
        match self.secure_aggregation_group_size {
            Some(group) => self.min_survivors(capacity.min(group)),
            None => self.min_survivors(capacity),
        }
    }

    /// Private rounds that sample by a fraction q < 1 are *self-selected*: the publisher asks
    /// every eligible node, every node takes part, and each contributes its update only when
    /// its own secret coin (probability q, from its CSPRNG) comes up, and a zero update
    /// otherwise. The sample is then Poisson with rate q whatever the publisher does, and —
    /// under secure aggregation — hidden from the publisher too, which is what amplification
    /// by sampling assumes. `None` when the contract adds no noise or samples a fixed count.
    pub fn self_selection_rate(&self) -> Option<f64> {
        match self.sampling_rate {
            Some(q) if self.adds_noise() && q < 1.0 => Some(q),
            _ => None,
        }
    }

    /// How many contributions a round that asks `asked` nodes expects: `q·asked` when nodes
    /// self-select, else `asked`. Private rounds divide by it (never by the number that
    /// actually contributed, which is not released without noise).
    pub fn expected_contributors(&self, asked: usize) -> f64 {
        match self.self_selection_rate() {
            Some(q) => (q * asked as f64).max(f64::MIN_POSITIVE),
            None => asked as f64,
        }
    }

    /// The noise std σ_b on the count of unclipped updates in a round expecting
    /// `contributors` updates with adaptive clipping: m/20, as Andrew et al. suggest, but
    /// above z so that the update's own noise multiplier stays finite (their Theorem 1).
    /// 0 without noise.
    pub fn count_noise_std(&self, contributors: f64) -> f64 {
        if !self.adds_noise() {
            return 0.0;
        }
        (contributors / 20.0).max(self.noise_multiplier)
    }

    /// The plan of a round that samples `sampled` nodes out of `eligible`, for a model with
    /// `dimension` parameters.
    pub fn plan_round(
        &self,
        sampled: usize,
        eligible: usize,
        dimension: usize,
    ) -> Result<RoundPrivacy, String> {
        let q = match self.self_selection_rate() {
            // The nodes' own coins sample at the contract's rate; the publisher asks everyone.
            Some(q) => q,
            None => {
                // Rounding and `min_clients` can make a round sample more than the contract's
                // share: account whichever rate is higher.
                let actual = if eligible == 0 {
                    1.0
                } else {
                    (sampled as f64 / eligible as f64).min(1.0)
                };
                self.sampling_rate.map_or(actual, |q| q.max(actual))
            }
        };
        if !self.secure_aggregation {
            return Ok(RoundPrivacy {
                clip_norm: self.clip_norm,
                mechanism: self
                    .adds_noise()
                    .then_some(RoundMechanism::SubsampledGaussian {
                        q,
                        noise_multiplier: self.noise_multiplier,
                    }),
                aggregation: Aggregation::Plain,
            });
        }
        let (aggregation, mechanism) = self.secure_plan(
            self.clip_norm,
            self.secure_sum_capacity(sampled),
            dimension,
            q,
        )?;
        Ok(RoundPrivacy {
            clip_norm: self.clip_norm,
            mechanism,
            aggregation,
        })
    }

    /// A secure round whose sums hold up to `members` members, clipping to `clip_norm`: the
    /// encoding every member uses and the mechanism it amounts to. With adaptive clipping the
    /// members also encode their "fitted" bit with a noise share, and the update gets the rest
    /// of the noise budget (Andrew et al. 2021, Theorem 1), as in central DP.
    ///
    /// With groups, each group's sum is a release of this mechanism; the groups are disjoint,
    /// so one owner's update is in one of them, and by parallel composition the round costs
    /// what one sum costs.
    fn secure_plan(
        &self,
        clip_norm: f64,
        members: usize,
        dimension: usize,
        q: f64,
    ) -> Result<(Aggregation, Option<RoundMechanism>), String> {
        let noised = self.adds_noise();
        let min_survivors = self.secure_min_survivors(members);
        let count_noise = self
            .adaptive_clipping
            .map(|_| self.count_noise_std(self.expected_contributors(members)));
        let update_multiplier = match count_noise {
            Some(sigma_b) if noised => update_noise_multiplier(self.noise_multiplier, sigma_b)
                .map_err(|e| e.to_string())?,
            _ if noised => self.noise_multiplier,
            _ => 0.0,
        };
        let (encoding, accounting) = ddg_parameters(
            dimension,
            clip_norm,
            members,
            min_survivors,
            update_multiplier * clip_norm,
        )?;
        let mechanism = match count_noise {
            _ if !noised => None,
            Some(sigma_b) => Some(RoundMechanism::SubsampledDdgWithCount {
                q,
                params: accounting,
                count: CountNoise {
                    n_clients: min_survivors,
                    noise_std: sigma_b,
                },
            }),
            None => Some(RoundMechanism::SubsampledDdg {
                q,
                params: accounting,
            }),
        };
        Ok((
            Aggregation::Secure {
                encoding,
                min_survivors,
                count_noise,
            },
            mechanism,
        ))
    }

    /// Checks a publisher's plan against these terms for a model of `dimension` parameters
    /// and returns the mechanism the node accounts for the round, built from the contract,
    /// never taken from the plan: the contract's noise multiplier, a sampling rate no lower
    /// than the contract's (1 when the contract samples a fixed count, since the node cannot
    /// see how many are eligible), and for secure rounds the encoding the node will actually
    /// use, which must be exactly the one these terms give for the plan's round size.
    pub fn node_mechanism(
        &self,
        plan: &RoundPrivacy,
        dimension: usize,
    ) -> Result<Option<RoundMechanism>, String> {
        if self.adaptive_clipping.is_some() {
            // The norm moves each round; the noise is a multiple of it, so any positive norm
            // gives the same privacy.
            if !(plan.clip_norm > 0.0 && plan.clip_norm.is_finite()) {
                return Err(format!(
                    "the request clips to {}, adaptive clipping needs a positive norm",
                    plan.clip_norm
                ));
            }
        } else if !same(plan.clip_norm, self.clip_norm) {
            return Err(format!(
                "the request clips to {} but the contract says {}",
                plan.clip_norm, self.clip_norm
            ));
        }
        let requested_q = plan.mechanism.map(|m| m.sampling_rate());
        if let Some(q) = requested_q
            && !(q > 0.0 && q <= 1.0)
        {
            return Err(format!("the request's sampling rate {q} is not in (0, 1]"));
        }
        let q = match self.sampling_rate {
            Some(contract_q) => requested_q.map_or(contract_q, |q| q.max(contract_q)),
            None => 1.0,
        };
        let noised = self.adds_noise();
        match &plan.aggregation {
            Aggregation::Plain if self.secure_aggregation => {
                Err("the contract promises secure aggregation; the request has none".into())
            }
            Aggregation::Plain => {
                // The publisher adds the noise: the node cannot check it, but refuses a plan
                // that declares less than the contract.
                match (noised, plan.mechanism) {
                    (false, _) => Ok(None),
                    (true, None) => {
                        Err("the contract adds noise; the request declares none".into())
                    }
                    (true, Some(declared))
                        if declared.noise_multiplier() < self.noise_multiplier * (1.0 - 1e-9) =>
                    {
                        Err(format!(
                            "the request's noise multiplier {} is below the contract's {}",
                            declared.noise_multiplier(),
                            self.noise_multiplier
                        ))
                    }
                    (true, Some(_)) => Ok(Some(RoundMechanism::SubsampledGaussian {
                        q,
                        noise_multiplier: self.noise_multiplier,
                    })),
                }
            }
            Aggregation::Secure { encoding, .. } => {
                let members = encoding.n_clients();
                if members == 0 || members > MAX_MEMBERS {
                    return Err(format!(
                        "the request's round size {members} is outside 1..={MAX_MEMBERS}"
                    ));
                }
                if self.secure_sum_capacity(members) != members {
                    return Err(format!(
                        "the request sizes one secure sum for {members} members, but the contract aggregates groups of at most {}",
                        self.secure_sum_capacity(members)
                    ));
                }
                let (expected, mechanism) =
                    self.secure_plan(plan.clip_norm, members, dimension, q)?;
                if plan.aggregation != expected {
                    return Err(format!(
                        "the request's encoding is not the one the contract gives for {members} members: {}",
                        describe_secure(&plan.aggregation, &expected)
                    ));
                }
                Ok(mechanism)
            }
        }
    }
}

fn describe_secure(got: &Aggregation, expected: &Aggregation) -> String {
    let describe = |a: &Aggregation| match a {
        Aggregation::Secure {
            encoding,
            min_survivors,
            count_noise,
        } => format!(
            "σ = {:.4}, granularity {:.3e}, {} bits, {} must survive, count noise {:?}",
            encoding.noise_std(),
            encoding.granularity(),
            encoding.bits(),
            min_survivors,
            count_noise
        ),
        Aggregation::Plain => "plain".into(),
    };
    format!("got {}; expected {}", describe(got), describe(expected))
}

/// The largest round a node accepts to encode for.
pub const MAX_MEMBERS: usize = 1 << 20;

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The encoding every member uses and the parameters the round is accounted with.
///
/// Encoding: the range is sized for all `members` (so no sum of up to that many wraps) and
/// each member adds `σ²/t` of noise variance, `t = min_survivors`. Accounting: the same
/// granularity with `t` clients of that per-client noise, i.e. the worst case the publisher
/// may release (it refuses to release a sum of fewer than `t`).
fn ddg_parameters(
    dimension: usize,
    clip_norm: f64,
    members: usize,
    min_survivors: usize,
    noise_std: f64,
) -> Result<(DdgParams, DdgParams), String> {
    let members = members.max(1);
    let min_survivors = min_survivors.clamp(1, members);
    let scale_up = (members as f64 / min_survivors as f64).sqrt();
    let config = DdgConfig::new(
        dimension,
        clip_norm,
        members,
        noise_std * scale_up,
        SECURE_AGGREGATION_BITS,
    );
    let encoding = if noise_std == 0.0 {
        // Without noise the sum is bounded outright: a rotation keeps every coordinate within
        // the norm c, rounding adds at most 1, so n members sum to at most n(c/γ + 1) in
        // absolute value. This γ keeps that below 2^31: the sum can never wrap, at any n.
        let n = members as f64;
        let half_modulus = 2f64.powi(SECURE_AGGREGATION_BITS as i32 - 1);
        let granularity = n * clip_norm / (half_modulus - n - 1.0) * (1.0 + 1e-6);
        DdgParams::new(&config, granularity)
    } else {
        // Gaussian noise is unbounded: the granularity keeps the chance that any coordinate
        // wraps below 1e-9 per round (`DdgParams::choose`).
        DdgParams::choose(&config)
    }
    .map_err(|e| format!("no distributed discrete Gaussian parameters fit: {e}"))?;
    let mut accounting_config = DdgConfig::new(
        dimension,
        clip_norm,
        min_survivors,
        noise_std,
        SECURE_AGGREGATION_BITS,
    );
    accounting_config.beta = encoding.beta();
    let accounting = DdgParams::new(&accounting_config, encoding.granularity())
        .map_err(|e| format!("no distributed discrete Gaussian parameters fit: {e}"))?;
    Ok((encoding, accounting))
}

/// How one round is made private, as the publisher plans it and every participant checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPrivacy {
    /// L2 norm each update is clipped to; 0 for none.
    pub clip_norm: f64,
    /// The noise mechanism to account, if the round adds noise.
    pub mechanism: Option<RoundMechanism>,
    /// How updates reach the publisher.
    pub aggregation: Aggregation,
}

impl RoundPrivacy {
    /// No clipping, no noise, plain updates.
    pub fn none() -> RoundPrivacy {
        RoundPrivacy {
            clip_norm: 0.0,
            mechanism: None,
            aggregation: Aggregation::Plain,
        }
    }
}

/// How updates reach the publisher.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregation {
    /// Each update is sent as is (clipped if the round clips); the publisher adds central noise.
    Plain,
    /// Updates are encoded with the distributed discrete Gaussian and securely aggregated: the
    /// publisher only ever sees masked vectors and their sum.
    Secure {
        /// Encoding parameters every member uses (noise share, granularity, modulus 2^32).
        encoding: DdgParams,
        /// Fewest members whose inputs must be in the sum for it to be released.
        min_survivors: usize,
        /// With adaptive clipping: σ_b of the securely summed count of unclipped updates (each
        /// member appends one word, `2b − 1` plus its noise share).
        count_noise: Option<f64>,
    },
}

/// Central DP aggregation of clipped updates (secure aggregation off): the sum of the updates,
/// each clipped to `clip_norm`, plus Gaussian noise of standard deviation
/// `noise_multiplier · clip_norm`, divided by `denominator`, the number of contributions the
/// round expects ([`PrivacyTerms::expected_contributors`]; DP-FedAvg, McMahan et al. 2018,
/// with a fixed per-client weight: dividing by the number that contributed would release that
/// number without noise).
pub fn private_mean<R: CryptoRng + Rng>(
    updates: &[&[f32]],
    clip_norm: f64,
    noise_multiplier: f64,
    denominator: f64,
    rng: &mut R,
) -> Result<Vec<f32>, String> {
    if !(denominator > 0.0 && denominator.is_finite()) {
        return Err(format!(
            "cannot average over {denominator} expected contributions"
        ));
    }
    let Some(first) = updates.first() else {
        return Err("no updates to aggregate".into());
    };
    let mut sum = vec![0.0f32; first.len()];
    let mut clipped = Vec::with_capacity(first.len());
    for update in updates {
        clipped.clear();
        clipped.extend_from_slice(update);
        if clip_norm > 0.0 {
            // A participant clips before sending; clipping again costs one pass and makes the
            // sensitivity bound hold even for a node that did not.
            clip_l2(&mut clipped, clip_norm).map_err(|e| e.to_string())?;
        }
        sum.iter_mut().zip(&clipped).for_each(|(s, &x)| *s += x);
    }
    if noise_multiplier > 0.0 && clip_norm > 0.0 {
        add_gaussian_noise(&mut sum, noise_multiplier, clip_norm, rng)
            .map_err(|e| e.to_string())?;
    }
    let n = denominator as f32;
    sum.iter_mut().for_each(|s| *s /= n);
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use fedpool_privacy::ddg;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    #[test]
    fn without_noise_no_sum_of_members_at_the_clip_bound_wraps_at_any_size() {
        // One dimension is the worst case: the rotation cannot spread the mass.
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let seed = [9u8; 32];
        for n in [2usize, 2_000, 100_000] {
            let (encoding, _) = ddg_parameters(1, 1.0, n, n, 0.0).unwrap();
            for sign in [1.0f32, -1.0] {
                let mut sum = vec![0u32; encoding.padded_dimension()];
                for _ in 0..n {
                    let words = ddg::encode(&[sign], &encoding, &seed, &mut rng).unwrap();
                    ddg::add_modular(&mut sum, &words, SECURE_AGGREGATION_BITS).unwrap();
                }
                let decoded = ddg::decode(&sum, &encoding, &seed).unwrap()[0];
                let expected = sign * n as f32;
                assert!(
                    (decoded - expected).abs() <= 1e-3 * n as f32,
                    "n = {n}: {decoded} vs {expected}"
                );
            }
        }
    }
}
