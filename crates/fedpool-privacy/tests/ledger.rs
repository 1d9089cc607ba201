//! The per-model privacy ledger a data owner's node keeps, and the free functions.

use fedpool_privacy::ddg::{DdgConfig, DdgParams};
use fedpool_privacy::{
    BudgetError, BudgetLimit, Error, PrivacyLedger, RdpAccountant, RoundMechanism, RoundRecord,
    epsilon, epsilon_for_rounds, sigma_for,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Spent ε never decreases, whatever rounds are recorded, and each record states the
    /// total after it.
    #[test]
    fn spent_epsilon_never_decreases(
        rounds in prop::collection::vec((0.0f64..=1.0, 0.3f64..6.0), 1..10),
        delta_exp in 3i32..9,
    ) {
        let delta = 10f64.powi(-delta_exp);
        let mut ledger = PrivacyLedger::new(1e6, delta, None).unwrap();
        let mut previous = ledger.epsilon_spent();
        prop_assert_eq!(previous, 0.0);
        for &(q, sigma) in &rounds {
            let preview = ledger.record_round(q, sigma).unwrap();
            let spent = ledger.epsilon_spent();
            prop_assert!(spent >= previous, "{} < {}", spent, previous);
            prop_assert_eq!(preview.epsilon_spent, previous);
            prop_assert_eq!(preview.epsilon_after, spent);
            prop_assert_eq!(ledger.history().last().unwrap().epsilon_after, spent);
            previous = spent;
        }
        prop_assert_eq!(ledger.history().len(), rounds.len());
    }

    /// The noise multiplier `sigma_for` returns meets the target and is nearly the smallest.
    #[test]
    fn sigma_for_meets_the_target(q in 0.005f64..1.0, rounds in 1u64..200, target in 0.5f64..10.0) {
        let sigma = sigma_for(q, rounds, target, 1e-5).unwrap();
        prop_assert!(epsilon(q, sigma, rounds, 1e-5).unwrap() <= target);
        prop_assert!(epsilon(q, sigma * (1.0 - 1e-5), rounds, 1e-5).unwrap() > target * (1.0 - 1e-3));
    }
}

#[test]
fn can_participate_previews_exactly_what_record_round_records() {
    let mut ledger = PrivacyLedger::new(10.0, 1e-5, None).unwrap();
    for _ in 0..5 {
        let preview = ledger.can_participate(0.1, 1.0).unwrap();
        let recorded = ledger.record_round(0.1, 1.0).unwrap();
        assert_eq!(preview, recorded);
        assert_eq!(ledger.epsilon_spent(), preview.epsilon_after);
    }
    // Five rounds here equal five rounds composed at once.
    let mut accountant = RdpAccountant::default();
    accountant.compose_subsampled_gaussian(0.1, 1.0, 5).unwrap();
    let composed = accountant.epsilon(1e-5).unwrap().0;
    assert!((composed - ledger.epsilon_spent()).abs() < 1e-12);
}

#[test]
fn refuses_the_round_that_would_exceed_the_contract_budget() {
    // 30 rounds at q = 0.1, σ = 1 reach ε ≈ 4.85; a budget of 4 stops somewhere before.
    let mut ledger = PrivacyLedger::new(4.0, 1e-5, None).unwrap();
    let mut n_rounds = 0;
    let refusal = loop {
        match ledger.can_participate(0.1, 1.0) {
            Ok(preview) => {
                assert!(preview.epsilon_after <= 4.0);
                assert_eq!(preview.limit, BudgetLimit::Contract);
                ledger.record_round(0.1, 1.0).unwrap();
                n_rounds += 1;
            }
            Err(refusal) => break refusal,
        }
    };
    assert!((10..30).contains(&n_rounds), "{n_rounds} rounds");
    match refusal {
        BudgetError::WouldExceed {
            epsilon_after,
            epsilon_limit,
            limit,
            ..
        } => {
            assert!(epsilon_after > 4.0);
            assert_eq!((epsilon_limit, limit), (4.0, BudgetLimit::Contract));
        }
        other => panic!("unexpected {other}"),
    }
    // Refusing did not spend anything.
    assert_eq!(ledger.history().len(), n_rounds);
}

#[test]
fn owner_cap_binds_when_tighter_and_can_be_changed() {
    let mut ledger = PrivacyLedger::new(8.0, 1e-5, Some(1.0)).unwrap();
    assert_eq!(ledger.epsilon_limit(), (1.0, BudgetLimit::OwnerCap));
    // One round at q = 1, σ = 1 costs ε ≈ 4.4 > 1.
    let refusal = ledger.can_participate(1.0, 1.0).unwrap_err();
    assert!(matches!(
        refusal,
        BudgetError::WouldExceed {
            limit: BudgetLimit::OwnerCap,
            ..
        }
    ));
    assert!(refusal.to_string().contains("owner cap"), "{refusal}");
    ledger.set_owner_cap_epsilon(Some(20.0)).unwrap();
    assert_eq!(ledger.epsilon_limit(), (8.0, BudgetLimit::Contract));
    assert!(ledger.can_participate(1.0, 1.0).is_ok());
    ledger.set_owner_cap_epsilon(None).unwrap();
    assert_eq!(ledger.epsilon_limit(), (8.0, BudgetLimit::Contract));
}

#[test]
fn invalid_parameters_name_the_parameter_and_range() {
    let ledger = PrivacyLedger::new(1.0, 1e-5, None).unwrap();
    let err = ledger.can_participate(1.5, 1.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "q = 1.5 is out of range: expected 0 <= q <= 1"
    );
    let err = ledger.can_participate(0.5, -1.0).unwrap_err();
    assert!(matches!(
        err,
        BudgetError::Invalid(Error::OutOfRange { name: "sigma", .. })
    ));
    assert!(matches!(
        PrivacyLedger::new(1.0, 0.0, None),
        Err(Error::OutOfRange { name: "delta", .. })
    ));
    assert!(matches!(
        PrivacyLedger::new(1.0, 1e-5, Some(-1.0)),
        Err(Error::OutOfRange {
            name: "owner_cap_epsilon",
            ..
        })
    ));
    assert!(matches!(
        epsilon(0.1, 1.0, 10, 1.0),
        Err(Error::OutOfRange { name: "delta", .. })
    ));
    assert!(matches!(
        RdpAccountant::new(vec![1.0]),
        Err(Error::OutOfRange { name: "order", .. })
    ));
}

#[test]
fn sigma_for_reports_an_unattainable_target() {
    let err = sigma_for(1.0, 1_000_000, 1e-6, 1e-10).unwrap_err();
    assert!(matches!(err, Error::SigmaUnattainable { .. }), "{err}");
    assert!(err.to_string().contains("no noise multiplier"), "{err}");
    assert!(matches!(
        sigma_for(0.0, 10, 1.0, 1e-5),
        Err(Error::OutOfRange { name: "q", .. })
    ));
    assert!(matches!(
        sigma_for(0.1, 10, 0.0, 1e-5),
        Err(Error::OutOfRange {
            name: "target_epsilon",
            ..
        })
    ));
}

#[test]
fn delta_inverts_epsilon() {
    let mut accountant = RdpAccountant::default();
    accountant
        .compose_subsampled_gaussian(0.05, 1.2, 200)
        .unwrap();
    let (eps, _) = accountant.epsilon(1e-6).unwrap();
    let (delta, _) = accountant.delta(eps).unwrap();
    // The grid minimum is attained at the same order both ways, so the round trip is tight.
    assert!((delta / 1e-6 - 1.0).abs() < 1e-6, "{delta}");
    assert_eq!(
        accountant.delta(0.0).unwrap().0.min(1.0),
        accountant.delta(0.0).unwrap().0
    );
}

#[test]
fn trivial_mechanisms() {
    assert_eq!(epsilon(0.0, 1.0, 100, 1e-5).unwrap(), 0.0);
    assert_eq!(epsilon(0.5, 1.0, 0, 1e-5).unwrap(), 0.0);
    assert_eq!(epsilon(0.5, 0.0, 1, 1e-5).unwrap(), f64::INFINITY);
    // q = 1 is the Gaussian mechanism: RDP α/(2σ²) exactly.
    let mut accountant = RdpAccountant::new(vec![2.0, 10.0]).unwrap();
    accountant.compose_subsampled_gaussian(1.0, 2.0, 3).unwrap();
    assert_eq!(accountant.rdp(), &[3.0 * 2.0 / 8.0, 3.0 * 10.0 / 8.0]);
}

/// A round of the distributed discrete Gaussian sampling 10% of the clients (d = 8192,
/// clip 1, 67 clients, σ = 1, 32 bits).
fn ddg_round() -> RoundMechanism {
    RoundMechanism::SubsampledDdg {
        q: 0.1,
        params: DdgParams::choose(&DdgConfig::new(8192, 1.0, 67, 1.0, 32)).unwrap(),
    }
}

#[test]
fn ddg_rounds_are_refused_once_the_owner_cap_would_be_passed() {
    let ddg = ddg_round();
    // ε after 1, 10, 15, 30 such rounds: 2.33, 4.25, 4.83, 6.31; an owner cap of 4.5 stops
    // after 12.
    let mut ledger = PrivacyLedger::new(10.0, 1e-5, Some(4.5)).unwrap();
    let mut n_rounds = 0;
    let refusal = loop {
        match ledger.can_participate_in(&ddg) {
            Ok(preview) => {
                assert!(preview.epsilon_after <= 4.5);
                assert_eq!(preview.limit, BudgetLimit::OwnerCap);
                let recorded = ledger.record(&ddg).unwrap();
                assert_eq!(recorded, preview);
                n_rounds += 1;
                assert!(n_rounds < 30, "never refused");
            }
            Err(refusal) => break refusal,
        }
    };
    assert!((10..15).contains(&n_rounds), "{n_rounds} rounds");
    match refusal {
        BudgetError::WouldExceed {
            epsilon_spent,
            epsilon_after,
            epsilon_limit,
            limit,
            ..
        } => {
            assert!(epsilon_after > 4.5 && epsilon_spent <= 4.5);
            assert_eq!((epsilon_limit, limit), (4.5, BudgetLimit::OwnerCap));
        }
        other => panic!("unexpected {other}"),
    }
    // Refusing did not spend anything, and the spend matches composing the rounds at once.
    assert_eq!(ledger.history().len(), n_rounds);
    let composed = epsilon_for_rounds(&ddg, n_rounds as u64, 1e-5).unwrap();
    assert!((composed - ledger.epsilon_spent()).abs() < 1e-12);
    for record in ledger.history() {
        assert_eq!(record.mechanism, Some(ddg));
        assert_eq!(record.mechanism(), ddg);
        assert_eq!((record.q, record.sigma), (0.1, 1.0));
    }
    // The same number of Gaussian rounds with the same noise multiplier is cheaper: the DDG
    // pays for its general amplification bound.
    let gaussian = epsilon(0.1, 1.0, n_rounds as u64, 1e-5).unwrap();
    assert!(gaussian < ledger.epsilon_spent());
}

#[test]
fn one_ledger_accounts_mixed_mechanisms() {
    let ddg = ddg_round();
    let gaussian = RoundMechanism::SubsampledGaussian {
        q: 0.05,
        noise_multiplier: 1.5,
    };
    let mut ledger = PrivacyLedger::new(100.0, 1e-6, None).unwrap();
    ledger.record(&ddg).unwrap();
    ledger.record_round(0.05, 1.5).unwrap();
    ledger.record(&gaussian).unwrap();
    let mut accountant = RdpAccountant::default();
    accountant.compose(&ddg, 1).unwrap();
    accountant.compose(&gaussian, 2).unwrap();
    assert!((accountant.epsilon(1e-6).unwrap().0 - ledger.epsilon_spent()).abs() < 1e-12);
    // record_round is record with the Gaussian mechanism.
    assert_eq!(ledger.history()[1].mechanism, Some(gaussian));
    assert_eq!(ledger.history()[1].mechanism, ledger.history()[2].mechanism);
    // An invalid mechanism is an error and records nothing.
    let bad = RoundMechanism::SubsampledDdg {
        q: -0.5,
        params: DdgParams::choose(&DdgConfig::new(10, 1.0, 2, 1.0, 16)).unwrap(),
    };
    assert!(matches!(
        ledger.can_participate_in(&bad),
        Err(BudgetError::Invalid(Error::OutOfRange { name: "q", .. }))
    ));
    assert!(ledger.record(&bad).is_err());
    assert_eq!(ledger.history().len(), 3);
}

#[test]
fn ledgers_round_trip_through_serde_and_old_records_still_load() {
    let mut ledger = PrivacyLedger::new(10.0, 1e-5, Some(5.0)).unwrap();
    ledger.record(&ddg_round()).unwrap();
    ledger.record_round(0.1, 1.0).unwrap();
    let json = serde_json::to_string(&ledger).unwrap();
    let back: PrivacyLedger = serde_json::from_str(&json).unwrap();
    // serde_json's default float parsing can be one ulp off, so compare to a tolerance.
    assert!((back.epsilon_spent() - ledger.epsilon_spent()).abs() < 1e-12);
    assert_eq!(back.history().len(), 2);
    for (got, want) in back.history().iter().zip(ledger.history()) {
        assert!((got.epsilon_after - want.epsilon_after).abs() < 1e-12);
        assert_eq!((got.q, got.sigma), (want.q, want.sigma));
        match (got.mechanism, want.mechanism) {
            (
                Some(RoundMechanism::SubsampledDdg { params: a, .. }),
                Some(RoundMechanism::SubsampledDdg { params: b, .. }),
            ) => assert!((a.rdp(2.0) - b.rdp(2.0)).abs() < 1e-12),
            (a, b) => assert_eq!(a, b),
        }
    }

    // A record written before the `mechanism` field existed.
    let old: RoundRecord =
        serde_json::from_str(r#"{"q":0.1,"sigma":1.0,"epsilon_after":0.5}"#).unwrap();
    assert_eq!(old.mechanism, None);
    assert_eq!(
        old.mechanism(),
        RoundMechanism::SubsampledGaussian {
            q: 0.1,
            noise_multiplier: 1.0
        }
    );
    // And such a record serializes as before.
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"q":0.1,"sigma":1.0,"epsilon_after":0.5}"#
    );
}
