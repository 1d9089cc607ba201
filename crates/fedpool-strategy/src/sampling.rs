//! Which clients take part in a round: a uniform sample without replacement from the eligible
//! ones (McMahan et al. 2017, Algorithm 1: "S_t ← random set of max(C·K, 1) clients"), with a
//! floor so that small federations still produce a round.

use serde::{Deserialize, Serialize};

/// How many clients a round asks for, as a contract's `[training.sampling]` table:
///
/// ```toml
/// [training.sampling]
/// fraction = 0.5     # or: count = 10 (exactly one of the two)
/// min_clients = 3
/// ```
///
/// The round size is `round(fraction · n)` or `count`, raised to `min_clients` and capped at
/// the `n` eligible clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSampling {
    /// Fraction of the eligible clients per round, in (0, 1]. Exclusive with `count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Number of clients per round, ≥ 1. Exclusive with `fraction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Fewest clients a round may have, ≥ 1; with fewer eligible, sampling fails. Defaults to 1.
    #[serde(default = "default_min_clients")]
    pub min_clients: usize,
}

fn default_min_clients() -> usize {
    1
}

impl Default for ClientSampling {
    /// Every eligible client, every round.
    fn default() -> Self {
        Self::by_fraction(1.0)
    }
}

/// Why a sampling configuration or a sampling request was rejected. Messages name the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// Neither `fraction` nor `count` is set.
    #[error("sampling: set one of fraction or count")]
    NoSize,
    /// Both `fraction` and `count` are set.
    #[error("sampling: set only one of fraction ({fraction}) and count ({count})")]
    BothSizes {
        /// The fraction given.
        fraction: f64,
        /// The count given.
        count: usize,
    },
    /// `fraction` is outside (0, 1].
    #[error("sampling: fraction = {fraction} is out of range; allowed: (0, 1]")]
    FractionOutOfRange {
        /// The fraction given.
        fraction: f64,
    },
    /// `count` is 0.
    #[error("sampling: count = 0 is out of range; allowed: >= 1")]
    ZeroCount,
    /// `min_clients` is 0.
    #[error("sampling: min_clients = 0 is out of range; allowed: >= 1")]
    ZeroMinClients,
    /// Fewer clients are eligible than `min_clients`.
    #[error(
        "sampling: {available} {} eligible, min_clients is {min_clients}",
        if *available == 1 { "client is" } else { "clients are" }
    )]
    NotEnoughClients {
        /// Distinct eligible clients.
        available: usize,
        /// The configured minimum.
        min_clients: usize,
    },
}

impl ClientSampling {
    /// A fraction of the eligible clients per round, at least one.
    pub fn by_fraction(fraction: f64) -> Self {
        Self {
            fraction: Some(fraction),
            count: None,
            min_clients: 1,
        }
    }

    /// A fixed number of clients per round (fewer if fewer are eligible).
    pub fn by_count(count: usize) -> Self {
        Self {
            fraction: None,
            count: Some(count),
            min_clients: 1,
        }
    }

    /// The same sampling with a different `min_clients`.
    pub fn with_min_clients(self, min_clients: usize) -> Self {
        Self {
            min_clients,
            ..self
        }
    }

    /// Checks that exactly one of `fraction` and `count` is set and every value is in range.
    pub fn validate(&self) -> Result<(), SamplingError> {
        match (self.fraction, self.count) {
            (None, None) => return Err(SamplingError::NoSize),
            (Some(fraction), Some(count)) => {
                return Err(SamplingError::BothSizes { fraction, count });
            }
            (Some(fraction), None) if !(fraction > 0.0 && fraction <= 1.0) => {
                return Err(SamplingError::FractionOutOfRange { fraction });
            }
            (None, Some(0)) => return Err(SamplingError::ZeroCount),
            _ => {}
        }
        if self.min_clients == 0 {
            return Err(SamplingError::ZeroMinClients);
        }
        Ok(())
    }

    /// The round size for `n_available` distinct eligible clients, or the error if there are
    /// fewer than `min_clients`.
    pub fn round_size(&self, n_available: usize) -> Result<usize, SamplingError> {
        self.validate()?;
        if n_available < self.min_clients {
            return Err(SamplingError::NotEnoughClients {
                available: n_available,
                min_clients: self.min_clients,
            });
        }
        let target = match (self.fraction, self.count) {
            // In (0, 1] after validation, so the product is in [0, n] and the cast exact.
            (Some(fraction), _) => (fraction * n_available as f64).round() as usize,
            (None, Some(count)) => count,
            (None, None) => n_available,
        };
        Ok(target.clamp(self.min_clients, n_available))
    }

    /// Picks a round's clients from `available` (eligible client indices), uniformly without
    /// replacement, and returns them sorted.
    ///
    /// Duplicates in `available` count once, and the order of `available` does not matter: the
    /// result depends only on the set of eligible clients and the RNG, so a seeded run is
    /// reproducible whatever order the caller collected its clients in.
    pub fn sample(
        &self,
        available: &[usize],
        rng: &mut impl rand::Rng,
    ) -> Result<Vec<usize>, SamplingError> {
        let mut pool = available.to_vec();
        pool.sort_unstable();
        pool.dedup();
        let size = self.round_size(pool.len())?;
        let mut chosen: Vec<usize> = rand::seq::index::sample(rng, pool.len(), size)
            .into_iter()
            .map(|idx| pool[idx])
            .collect();
        chosen.sort_unstable();
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Samples from `available` with a fixed seed and checks the size (or the error); also that
    /// the result is sorted, distinct and drawn from `available`.
    fn check(sampling: ClientSampling, available: &[usize], expect: Result<usize, SamplingError>) {
        let got = sampling.sample(available, &mut ChaCha8Rng::seed_from_u64(7));
        match expect {
            Ok(size) => {
                let chosen = got.unwrap_or_else(|e| panic!("{sampling:?}: {e}"));
                assert_eq!(chosen.len(), size, "{sampling:?} of {available:?}");
                assert!(
                    chosen.windows(2).all(|w| w[0] < w[1]),
                    "{chosen:?} not sorted and distinct"
                );
                assert!(chosen.iter().all(|c| available.contains(c)));
            }
            Err(err) => assert_eq!(got, Err(err)),
        }
    }

    #[test]
    fn round_sizes() {
        let ten: Vec<usize> = (100..110).collect();
        let cases: Vec<(ClientSampling, &[usize], Result<usize, SamplingError>)> = vec![
            (ClientSampling::by_fraction(0.5), &ten, Ok(5)),
            (ClientSampling::by_fraction(1.0), &ten, Ok(10)),
            // round(0.25 · 10) = round(2.5) = 3 (half away from zero).
            (ClientSampling::by_fraction(0.25), &ten, Ok(3)),
            // round(0.01 · 10) = 0, raised to min_clients.
            (ClientSampling::by_fraction(0.01), &ten, Ok(1)),
            (
                ClientSampling::by_fraction(0.1).with_min_clients(4),
                &ten,
                Ok(4),
            ),
            (ClientSampling::by_count(3), &ten, Ok(3)),
            // More than available: everyone.
            (ClientSampling::by_count(30), &ten, Ok(10)),
            // Duplicates count once.
            (ClientSampling::by_fraction(1.0), &[5, 5, 5, 2], Ok(2)),
            (
                ClientSampling::by_count(3).with_min_clients(3),
                &[1, 2],
                Err(SamplingError::NotEnoughClients {
                    available: 2,
                    min_clients: 3,
                }),
            ),
            (
                ClientSampling::by_fraction(0.5),
                &[],
                Err(SamplingError::NotEnoughClients {
                    available: 0,
                    min_clients: 1,
                }),
            ),
        ];
        for (sampling, available, expect) in cases {
            check(sampling, available, expect);
        }
    }

    #[test]
    fn invalid_configurations() {
        let both = ClientSampling {
            fraction: Some(0.5),
            count: Some(2),
            min_clients: 1,
        };
        let neither = ClientSampling {
            fraction: None,
            count: None,
            min_clients: 1,
        };
        let cases = [
            (
                both,
                SamplingError::BothSizes {
                    fraction: 0.5,
                    count: 2,
                },
            ),
            (neither, SamplingError::NoSize),
            (
                ClientSampling::by_fraction(0.0),
                SamplingError::FractionOutOfRange { fraction: 0.0 },
            ),
            (
                ClientSampling::by_fraction(1.5),
                SamplingError::FractionOutOfRange { fraction: 1.5 },
            ),
            (ClientSampling::by_count(0), SamplingError::ZeroCount),
            (
                ClientSampling::by_count(2).with_min_clients(0),
                SamplingError::ZeroMinClients,
            ),
        ];
        for (sampling, err) in cases {
            assert_eq!(sampling.validate(), Err(err.clone()));
            check(sampling, &[1, 2, 3], Err(err));
        }
        // NaN compares unequal to itself, so check it by message.
        let nan = ClientSampling::by_fraction(f64::NAN)
            .validate()
            .unwrap_err();
        assert_eq!(
            nan.to_string(),
            "sampling: fraction = NaN is out of range; allowed: (0, 1]"
        );
    }

    #[test]
    fn same_seed_same_set_same_sample() {
        let sampling = ClientSampling::by_count(4);
        let forward: Vec<usize> = (0..20).collect();
        let backward: Vec<usize> = (0..20).rev().collect();
        let a = sampling
            .sample(&forward, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        let b = sampling
            .sample(&backward, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!(a, b);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<Vec<usize>> = (0..5)
            .map(|_| sampling.sample(&forward, &mut rng).unwrap())
            .collect();
        assert!(
            draws.windows(2).any(|w| w[0] != w[1]),
            "successive rounds should differ"
        );
    }

    #[test]
    fn every_client_is_equally_likely() {
        // 20 clients, 5 per round, 4000 rounds: each is expected 1000 times with a standard
        // deviation of about 27; 150 is more than five deviations.
        let sampling = ClientSampling::by_count(5);
        let clients: Vec<usize> = (0..20).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut hits = [0usize; 20];
        for _ in 0..4000 {
            for c in sampling.sample(&clients, &mut rng).unwrap() {
                hits[c] += 1;
            }
        }
        for (client, &n) in hits.iter().enumerate() {
            assert!(
                n.abs_diff(1000) < 150,
                "client {client} chosen {n} times (seed 42)"
            );
        }
    }

    #[test]
    fn default_takes_every_client() {
        assert_eq!(ClientSampling::default().validate(), Ok(()));
        check(ClientSampling::default(), &[3, 1, 2], Ok(3));
    }
}
