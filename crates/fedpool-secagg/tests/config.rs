//! Config and setup validation: every unusable setting is an `InvalidConfig` or
//! `InvalidInput` error with a message saying what is wrong.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_secagg::{
    Client, Error, ParticipantIdx, RoundConfig, RoundSettings, SessionId, Topology,
    secagg_plus_parameters,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn identities(n: usize) -> Vec<SigningKey> {
    (0..n as u32)
        .map(|i| {
            let mut secret = [0x42u8; 32];
            secret[..4].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&secret)
        })
        .collect()
}

fn settings(n: usize, topology: Topology, threshold: usize) -> RoundSettings {
    RoundSettings {
        session_id: SessionId([0; 32]),
        identities: identities(n).iter().map(|k| k.verifying_key()).collect(),
        topology,
        threshold,
        modulus_bits: 32,
        vector_len: 4,
    }
}

fn harary(degree: usize) -> Topology {
    Topology::Harary {
        degree,
        graph_seed: [0; 32],
    }
}

/// `Ok(())` or the error's message.
fn check(settings: RoundSettings, expect: Result<(), &str>) {
    let result = RoundConfig::new(settings)
        .map(|_| ())
        .map_err(|e| e.to_string());
    match (result, expect) {
        (Ok(()), Ok(())) => {}
        (Err(actual), Err(fragment)) => {
            assert!(actual.contains(fragment), "{actual:?} lacks {fragment:?}")
        }
        (actual, expected) => panic!("got {actual:?}, expected {expected:?}"),
    }
}

#[test]
fn config_validation() {
    check(settings(10, harary(4), 3), Ok(()));
    check(settings(10, Topology::AllPairs, 5), Ok(()));
    check(settings(3, Topology::AllPairs, 2), Ok(()));
    check(
        settings(2, Topology::AllPairs, 2),
        Err("at least 3 are needed"),
    );
    check(settings(10, harary(4), 2), Err("2t > k"));
    check(settings(10, harary(4), 5), Err("t <= k"));
    check(settings(10, harary(4), 1), Err("2 <= t"));
    check(settings(10, Topology::AllPairs, 4), Err("k = 9"));
    check(settings(10, harary(5), 3), Err("must be even"));
    check(
        settings(10, harary(10), 6),
        Err("must be even and in 2..10"),
    );
    check(settings(10, harary(0), 1), Err("must be even and in 2..10"));
    let mut bad_bits = settings(10, harary(4), 3);
    bad_bits.modulus_bits = 33;
    check(bad_bits.clone(), Err("modulus of 2^33"));
    bad_bits.modulus_bits = 0;
    check(bad_bits, Err("modulus of 2^0"));
    let mut empty = settings(10, harary(4), 3);
    empty.vector_len = 0;
    check(empty, Err("vector length 0"));
    let mut twice = settings(10, harary(4), 3);
    twice.identities[3] = twice.identities[4];
    check(twice, Err("identity key appears twice"));
}

#[test]
fn the_binding_covers_the_session_and_the_config() {
    let base = RoundConfig::new(settings(10, harary(4), 3)).unwrap();
    let mut other_session = settings(10, harary(4), 3);
    other_session.session_id = SessionId([1; 32]);
    let mut other_threshold = settings(10, harary(6), 4);
    other_threshold.threshold = 4;
    for other in [other_session, other_threshold] {
        assert_ne!(RoundConfig::new(other).unwrap().binding(), base.binding());
    }
    assert_eq!(
        RoundConfig::new(settings(10, harary(4), 3))
            .unwrap()
            .binding(),
        base.binding()
    );
}

#[test]
fn the_parameter_finder_produces_valid_configs() {
    for n in [50, 100, 2_000] {
        let params = secagg_plus_parameters(n, 0.05, 0.0).unwrap();
        RoundConfig::new(settings(n, harary(params.degree), params.threshold))
            .unwrap_or_else(|e| panic!("{n}: {params:?}: {e}"));
    }
}

#[test]
fn client_setup_validation() {
    let config = Arc::new(RoundConfig::new(settings(10, harary(4), 3)).unwrap());
    let keys = identities(10);
    let rng = || ChaCha20Rng::seed_from_u64(0);
    let new = |idx: u32, key: &SigningKey, input: Vec<u32>| {
        Client::new(Arc::clone(&config), ParticipantIdx(idx), key, input, rng())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(new(0, &keys[0], vec![0; 4]), Ok(()));
    assert_eq!(
        new(0, &keys[1], vec![0; 4]),
        Err("participant 0 at setup: the identity key differs from the one registered in the round config".into())
    );
    assert_eq!(
        new(10, &keys[0], vec![0; 4]),
        Err("participant 10 at setup: index 10 is outside the round's 10 participants".into())
    );
    assert_eq!(
        new(0, &keys[0], vec![0; 3]),
        Err("participant 0 at setup: input has 3 words, the round expects 4".into())
    );
    let mut narrow = settings(10, harary(4), 3);
    narrow.modulus_bits = 8;
    let narrow = Arc::new(RoundConfig::new(narrow).unwrap());
    let error = Client::new(
        narrow,
        ParticipantIdx(0),
        &keys[0],
        vec![0, 256, 0, 0],
        rng(),
    )
    .err()
    .unwrap();
    assert!(matches!(error, Error::InvalidInput { .. }));
    assert_eq!(
        error.to_string(),
        "participant 0 at setup: input word 1 is 256 but must be below 2^8"
    );
}
