//! Many participants with every value at the clip bound: the quantization bound holds in an
//! actual SecAgg+ round with 5% dropouts spread over the stages, and the decoded sum is exact.
//! (The bound itself is also checked arithmetically at n = 2,000 in `quantize.rs`.)

mod support;

use std::sync::Arc;

use fedpool_secagg::sim::{
    ClientSlot, DropoutPlan, Executor, Hooks, SimOptions, SimRound, run_round_with,
};
use fedpool_secagg::{
    ParticipantIdx, Quantizer, RoundConfig, RoundSettings, SessionId, Stage, Topology,
    secagg_plus_parameters,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

/// Participants' work in parallel, as the runtime's driver does.
struct Rayon;

impl Executor for Rayon {
    fn for_each_client(&self, slots: &mut [ClientSlot], work: &(dyn Fn(&mut ClientSlot) + Sync)) {
        slots.par_iter_mut().for_each(work);
    }
}

fn check_clip_bound_round(n: usize) {
    let clip = 1.0f32;
    let vector_len = 4;
    let quantizer = Quantizer::new(clip, n).unwrap();
    let params = secagg_plus_parameters(n, 0.05, 0.0).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
    let identities: Vec<ed25519_dalek::SigningKey> = (0..n)
        .map(|_| ed25519_dalek::SigningKey::from_bytes(&rng.random()))
        .collect();
    let config = Arc::new(
        RoundConfig::new(RoundSettings {
            session_id: SessionId([20; 32]),
            identities: identities.iter().map(|k| k.verifying_key()).collect(),
            topology: Topology::Harary {
                degree: params.degree,
                graph_seed: [3; 32],
            },
            threshold: params.threshold,
            modulus_bits: quantizer.modulus_bits(),
            vector_len,
        })
        .unwrap(),
    );
    // Every value at ±c (or beyond, clipped): words 0 and 1 at +c, word 2 at −c, word 3 at +c
    // for even participants and −c for odd ones.
    let inputs: Vec<Vec<u32>> = (0..n)
        .map(|i| {
            let sign = if i % 2 == 0 { clip } else { -clip };
            quantizer
                .quantize(&[clip, 5.0 * clip, -clip, sign], &mut rng)
                .unwrap()
        })
        .collect();
    // 5% drop (every 20th participant), spread over the four stages.
    let stages = [
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::Unmasking,
    ];
    let plan = (0..n as u32)
        .filter(|i| i % 20 == 7)
        .enumerate()
        .fold(DropoutPlan::none(), |plan, (j, i)| {
            plan.drop_at(ParticipantIdx(i), stages[j % 4])
        });
    let survivors = support::expected_survivors(n, &plan);
    let outcome = run_round_with(
        SimRound {
            config,
            identities,
            inputs: inputs.clone(),
        },
        &plan,
        SimOptions::default(),
        &Rayon,
        Hooks::default(),
    );
    let aggregate = outcome.aggregate.unwrap();
    assert_eq!(aggregate.survivors, survivors);
    assert_eq!(
        aggregate.sum,
        fedpool_secagg::sim::plain_sum(&inputs, &survivors, 32)
    );
    let decoded = quantizer.decode_sum(&aggregate.sum);
    let n_survivors = survivors.len() as f32;
    let n_even = survivors.iter().filter(|p| p.0 % 2 == 0).count() as f32;
    let expected = [
        n_survivors * clip,
        n_survivors * clip,
        -n_survivors * clip,
        (2.0 * n_even - n_survivors) * clip,
    ];
    for (got, want) in decoded.iter().zip(expected) {
        assert!((got - want).abs() < 1e-2, "{got} vs {want}");
    }
}

#[test]
fn three_hundred_participants_at_the_clip_bound_sum_exactly() {
    check_clip_bound_round(300);
}

/// About 10 s of CPU (2,000 × 2k X25519 and k Ed25519 verifications, k = 24).
#[test]
// ~6 s: the workspace builds this crate optimised in the test profile too.
fn two_thousand_participants_at_the_clip_bound_sum_exactly() {
    check_clip_bound_round(2_000);
}
