//! Shared test helpers: build a round from a compact spec, run it, check the result.
#![allow(dead_code)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_secagg::sim::{
    self, ClientOutcome, DropoutPlan, Hooks, RoundOutcome, SimOptions, SimRound, run_round_with,
};
use fedpool_secagg::{
    Error, ParticipantIdx, RoundConfig, RoundSettings, SessionId, Stage, ToClient, ToServer,
    Topology,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A compact description of a round.
#[derive(Debug, Clone)]
pub struct Spec {
    pub n: usize,
    /// `None`: all-pairs; `Some(k)`: Harary of degree k.
    pub degree: Option<usize>,
    pub threshold: usize,
    pub modulus_bits: u32,
    pub vector_len: usize,
    pub seed: u64,
    pub session: [u8; 32],
}

impl Spec {
    pub fn harary(n: usize, degree: usize, threshold: usize) -> Spec {
        Spec {
            n,
            degree: Some(degree),
            threshold,
            modulus_bits: 32,
            vector_len: 37,
            seed: 1,
            session: [0x5e; 32],
        }
    }

    pub fn all_pairs(n: usize, threshold: usize) -> Spec {
        Spec {
            degree: None,
            ..Spec::harary(n, 0, threshold)
        }
    }

    pub fn bits(mut self, modulus_bits: u32) -> Spec {
        self.modulus_bits = modulus_bits;
        self
    }

    pub fn len(mut self, vector_len: usize) -> Spec {
        self.vector_len = vector_len;
        self
    }

    pub fn seed(mut self, seed: u64) -> Spec {
        self.seed = seed;
        self
    }

    pub fn session(mut self, session: [u8; 32]) -> Spec {
        self.session = session;
        self
    }

    pub fn k(&self) -> usize {
        self.degree.unwrap_or(self.n - 1)
    }

    pub fn identities(&self) -> Vec<SigningKey> {
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x1d);
        (0..self.n)
            .map(|_| SigningKey::from_bytes(&rng.random()))
            .collect()
    }

    pub fn config(&self) -> Arc<RoundConfig> {
        let topology = match self.degree {
            None => Topology::AllPairs,
            Some(degree) => Topology::Harary {
                degree,
                graph_seed: [self.seed as u8; 32],
            },
        };
        Arc::new(
            RoundConfig::new(RoundSettings {
                session_id: SessionId(self.session),
                identities: self
                    .identities()
                    .iter()
                    .map(|k| k.verifying_key())
                    .collect(),
                topology,
                threshold: self.threshold,
                modulus_bits: self.modulus_bits,
                vector_len: self.vector_len,
            })
            .unwrap_or_else(|e| panic!("{self:?}: {e}")),
        )
    }

    /// Random words below 2^b, seeded.
    pub fn inputs(&self) -> Vec<Vec<u32>> {
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x1a);
        let mask = if self.modulus_bits == 32 {
            u32::MAX
        } else {
            (1 << self.modulus_bits) - 1
        };
        (0..self.n)
            .map(|_| {
                (0..self.vector_len)
                    .map(|_| rng.random::<u32>() & mask)
                    .collect()
            })
            .collect()
    }

    pub fn round(&self) -> SimRound {
        SimRound {
            config: self.config(),
            identities: self.identities(),
            inputs: self.inputs(),
        }
    }

    pub fn options(&self) -> SimOptions {
        SimOptions {
            seed: self.seed,
            stage_timeout_ms: 1_000,
            wire_roundtrip: true,
        }
    }

    pub fn run(&self, plan: &DropoutPlan) -> RoundOutcome {
        sim::run_round_in_process(self.round(), plan, self.options())
    }

    /// Runs with a malicious server rewriting what it relays.
    pub fn run_tampered(
        &self,
        plan: &DropoutPlan,
        tamper: &mut dyn FnMut(ParticipantIdx, &mut ToClient),
    ) -> RoundOutcome {
        let hooks = Hooks {
            to_client: Some(tamper),
            to_server: None,
        };
        run_round_with(self.round(), plan, self.options(), &sim::Sequential, hooks)
    }

    /// Runs with a malicious participant rewriting what it sends.
    pub fn run_with_bad_participant(
        &self,
        plan: &DropoutPlan,
        tamper: &mut dyn FnMut(ParticipantIdx, &mut ToServer),
    ) -> RoundOutcome {
        let hooks = Hooks {
            to_client: None,
            to_server: Some(tamper),
        };
        run_round_with(self.round(), plan, self.options(), &sim::Sequential, hooks)
    }
}

/// The participants whose inputs must be in the sum: all but those dropped before sending a
/// masked input.
pub fn expected_survivors(n: usize, plan: &DropoutPlan) -> Vec<ParticipantIdx> {
    (0..n as u32)
        .map(ParticipantIdx)
        .filter(|&p| !plan.is_gone(p, Stage::MaskedInput))
        .collect()
}

/// Runs the round and asserts the exact sum of the survivors' inputs; every participant the
/// plan keeps finishes.
pub fn check_exact(spec: &Spec, plan: &DropoutPlan) {
    let outcome = spec.run(plan);
    let aggregate = match &outcome.aggregate {
        Ok(aggregate) => aggregate,
        Err(error) => panic!(
            "seed {}: {spec:?} {plan:?}: round failed: {error}",
            spec.seed
        ),
    };
    let survivors = expected_survivors(spec.n, plan);
    assert_eq!(
        aggregate.survivors, survivors,
        "seed {}: {plan:?}",
        spec.seed
    );
    let expected = sim::plain_sum(&spec.inputs(), &survivors, spec.modulus_bits);
    assert_eq!(
        aggregate.sum, expected,
        "seed {}: {spec:?} {plan:?}",
        spec.seed
    );
    for (i, client) in outcome.clients.iter().enumerate() {
        let idx = ParticipantIdx(i as u32);
        match plan.stage_of(idx) {
            None => assert_eq!(client, &ClientOutcome::Finished, "{idx}"),
            Some(stage) => assert_eq!(client, &ClientOutcome::Dropped(stage), "{idx}"),
        }
    }
    assert_view_is_masked(spec, &outcome);
}

/// The most words of a uniformly masked vector of `len` words mod 2^`bits` that equal the
/// input by chance, except with probability below 1e-12 (union bound:
/// `P[X > a] ≤ C(len, a+1) · 2^−b(a+1)`), so the check never fails on an honest round.
fn chance_matches_bound(len: usize, bits: u32) -> usize {
    let log_p = -f64::from(bits) * std::f64::consts::LN_2;
    let mut log_binomial = 0.0; // ln C(len, j), updated to j = a + 1 below.
    for a in 0..len {
        let j = a + 1;
        log_binomial += ((len - a) as f64 / j as f64).ln();
        if log_binomial + j as f64 * log_p <= (1e-12f64).ln() {
            return a;
        }
    }
    len
}

/// The server's view holds only masked vectors: none equals its sender's input (checked when a
/// chance match is negligible), and each differs from it in almost every word (a mask word is
/// zero with probability 2^−b).
pub fn assert_view_is_masked(spec: &Spec, outcome: &RoundOutcome) {
    let inputs = spec.inputs();
    for (sender, masked) in outcome.server.masked_inputs() {
        let input = &inputs[sender.as_usize()];
        // A whole masked vector equals its input by chance with probability 2^−(len·b): only a
        // failure when that is negligible (a one-word vector at b = 8 matches once in 256).
        if spec.vector_len as u64 * u64::from(spec.modulus_bits) >= 32 {
            assert_ne!(
                masked, input,
                "{sender}'s input reached the server unmasked"
            );
        }
        let equal_words = masked.iter().zip(input).filter(|(a, b)| a == b).count();
        let allowed = chance_matches_bound(spec.vector_len, spec.modulus_bits);
        assert!(
            equal_words <= allowed,
            "{sender}: {equal_words} of {} words unmasked",
            spec.vector_len
        );
    }
}

/// `k − t` participants of one neighbourhood (the neighbours of participant 0): the worst
/// placement for a dropout budget.
pub fn neighbourhood_dropouts(spec: &Spec, count: usize) -> Vec<ParticipantIdx> {
    spec.config()
        .neighbours(ParticipantIdx(0))
        .iter()
        .copied()
        .take(count)
        .collect()
}

pub fn is_abort(error: &Error) -> bool {
    matches!(
        error,
        Error::TooFewSurvivors { .. } | Error::TooFewShares { .. }
    )
}
