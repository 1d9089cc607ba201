//! The general Poisson-subsampling bound (Zhu & Wang 2019, Theorem 6) and the per-round
//! mechanisms built on it, through the public API.
//!
//! Measured here (q = 0.1, noise multiplier 1, 30 rounds, δ = 1e-5, default orders):
//! exact subsampled Gaussian ε = 4.848; the general bound over the Gaussian curve 6.308
//! (×1.30); the DDG round (d = 8192, c = 1, n = 67, σ = 1, 32 bits) 6.308.

use fedpool_privacy::accountant::{MAX_SUBSAMPLED_ORDER, rdp_subsampled_gaussian};
use fedpool_privacy::ddg::{DdgConfig, DdgParams};
use fedpool_privacy::{
    Error, RdpAccountant, RoundMechanism, epsilon, epsilon_for_rounds, rdp_poisson_subsampled,
};
use proptest::prelude::*;

const DELTA: f64 = 1e-5;
const ROUNDS: u64 = 30;

fn gaussian_curve(sigma: f64) -> impl Fn(f64) -> f64 + Copy {
    move |alpha| alpha / (2.0 * sigma * sigma)
}

/// The DDG configuration of the brief: 8192 coordinates, clip 1, 67 clients, σ = 1, 32 bits.
fn ddg_params() -> DdgParams {
    DdgParams::choose(&DdgConfig::new(8192, 1.0, 67, 1.0, 32)).unwrap()
}

/// ε of `rounds` rounds of the general bound over `base` at sampling rate `q`.
fn general_epsilon(q: f64, base: impl Fn(f64) -> f64 + Copy) -> f64 {
    let mut accountant = RdpAccountant::default();
    accountant
        .compose_rdp_fn(
            |alpha| rdp_poisson_subsampled(q, alpha, base).unwrap(),
            ROUNDS,
        )
        .unwrap();
    accountant.epsilon(DELTA).unwrap().0
}

#[test]
fn q_one_is_the_base_curve_and_q_zero_is_free() {
    let params = ddg_params();
    let ddg = |alpha| params.rdp(alpha);
    let bumpy = |alpha: f64| 0.3 * alpha + (alpha * 7.0).sin().abs();
    for alpha in [1.1, 1.5, 2.0, 2.5, 3.0, 7.0, 63.0, 1024.0, 5000.0] {
        for (name, base) in [
            ("gaussian", &gaussian_curve(1.3) as &dyn Fn(f64) -> f64),
            ("ddg", &ddg),
            ("bumpy", &bumpy),
        ] {
            assert_eq!(
                rdp_poisson_subsampled(1.0, alpha, base).unwrap(),
                base(alpha),
                "{name} α={alpha}"
            );
            assert_eq!(
                rdp_poisson_subsampled(0.0, alpha, base).unwrap(),
                0.0,
                "{name} α={alpha}"
            );
        }
    }
    // q = 0 is free even when the mechanism itself has no guarantee.
    assert_eq!(
        rdp_poisson_subsampled(0.0, 3.0, |_| f64::INFINITY).unwrap(),
        0.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// More sampling never gives a smaller bound, for Gaussian-like and affine (DDG-like)
    /// base curves, at integer and fractional orders.
    #[test]
    fn bound_is_monotone_in_q(
        q_low in 0.0f64..=1.0,
        q_high in 0.0f64..=1.0,
        alpha in 1.05f64..300.0,
        slope in 0.01f64..3.0,
        offset in 0.0f64..2.0,
    ) {
        let (q_low, q_high) = if q_low <= q_high { (q_low, q_high) } else { (q_high, q_low) };
        let base = |a: f64| slope * a + offset;
        let low = rdp_poisson_subsampled(q_low, alpha, base).unwrap();
        let high = rdp_poisson_subsampled(q_high, alpha, base).unwrap();
        prop_assert!(low <= high * (1.0 + 1e-12), "q {} → {}, q {} → {}", q_low, low, q_high, high);
        prop_assert!(high <= base(alpha), "{} > base {}", high, base(alpha));
    }

    /// The general bound is never below the exact subsampled-Gaussian RDP.
    #[test]
    fn bound_dominates_the_exact_gaussian(
        q in 1e-6f64..1.0,
        sigma in 0.3f64..20.0,
        alpha in 2u32..400,
    ) {
        let alpha = f64::from(alpha);
        let exact = rdp_subsampled_gaussian(q, sigma, alpha).unwrap();
        let general = rdp_poisson_subsampled(q, alpha, gaussian_curve(sigma)).unwrap();
        prop_assert!(general >= exact * (1.0 - 1e-12), "{} < {}", general, exact);
    }
}

#[test]
fn monotone_in_q_on_a_grid_for_the_ddg_curve() {
    let params = ddg_params();
    for alpha in [1.5, 2.0, 3.0, 4.5, 10.0, 64.0, 512.0] {
        let mut previous = 0.0;
        for step in 0..=100 {
            let q = f64::from(step) / 100.0;
            let value = rdp_poisson_subsampled(q, alpha, |a| params.rdp(a)).unwrap();
            assert!(value >= previous, "α={alpha} q={q}: {value} < {previous}");
            previous = value;
        }
        assert_eq!(previous, params.rdp(alpha));
    }
}

#[test]
fn general_bound_dominates_exact_gaussian_on_the_grid_and_costs_at_most_70_percent_in_epsilon() {
    for q in [0.01, 0.1, 0.3] {
        for sigma in [0.8, 1.0, 2.0] {
            for alpha in (2..=256).chain([512, 1024]) {
                let alpha = f64::from(alpha);
                let exact = rdp_subsampled_gaussian(q, sigma, alpha).unwrap();
                let general = rdp_poisson_subsampled(q, alpha, gaussian_curve(sigma)).unwrap();
                assert!(
                    general >= exact * (1.0 - 1e-12),
                    "q={q} σ={sigma} α={alpha}: {general} < {exact}"
                );
                // At α = 2 the theorem has no factor-3 terms and is exact for the Gaussian.
                if alpha == 2.0 {
                    assert!(
                        ((general - exact) / exact).abs() < 1e-12,
                        "q={q} σ={sigma}: {general} vs {exact}"
                    );
                }
            }
            let exact = epsilon(q, sigma, ROUNDS, DELTA).unwrap();
            let general = general_epsilon(q, gaussian_curve(sigma));
            // Measured ratios: 1.00 (q=0.3, σ=0.8) to 1.65 (q=0.3, σ=2).
            assert!(
                general >= exact && general <= 1.7 * exact,
                "q={q} σ={sigma}: general {general} vs exact {exact}"
            );
        }
    }
    // The headline: exact 4.848, general 6.308 (a factor 1.30).
    let exact = epsilon(0.1, 1.0, ROUNDS, DELTA).unwrap();
    let general = general_epsilon(0.1, gaussian_curve(1.0));
    assert!((exact - 4.848).abs() < 1e-3, "{exact}");
    assert!((general - 6.308).abs() < 1e-3, "{general}");
}

#[test]
fn ddg_round_is_finite_and_no_cheaper_than_the_gaussian() {
    let params = ddg_params();
    let ddg = RoundMechanism::SubsampledDdg { q: 0.1, params };
    let eps_ddg = epsilon_for_rounds(&ddg, ROUNDS, DELTA).unwrap();
    let eps_exact_gaussian = epsilon(0.1, 1.0, ROUNDS, DELTA).unwrap();
    let eps_general_gaussian = general_epsilon(0.1, gaussian_curve(1.0));
    assert!(eps_ddg.is_finite());
    // Its base curve is at least the Gaussian's (Δ₂ ≥ c/γ), so it can be no cheaper.
    assert!(
        eps_ddg >= eps_general_gaussian && eps_general_gaussian >= eps_exact_gaussian,
        "ddg {eps_ddg}, general gaussian {eps_general_gaussian}, exact {eps_exact_gaussian}"
    );
    // With 32 bits the granularity is ~1e-7 and τ = 0: the DDG is the Gaussian to 1e-6.
    assert!((eps_ddg - 6.308).abs() < 1e-3, "{eps_ddg}");
    // Sampling 10% of the clients really amplifies: 30 unsampled rounds cost ε ≈ 39.8.
    let mut unsampled = RdpAccountant::default();
    unsampled
        .compose_rdp_fn(|alpha| params.rdp(alpha), ROUNDS)
        .unwrap();
    let eps_unsampled = unsampled.epsilon(DELTA).unwrap().0;
    assert!(
        eps_unsampled > 6.0 * eps_ddg,
        "{eps_unsampled} vs {eps_ddg}"
    );
    // And the mechanism's curve is the bound over DdgParams::rdp, order by order.
    for alpha in [1.5, 2.0, 3.0, 10.0, 128.0] {
        assert_eq!(
            ddg.rdp(alpha).unwrap(),
            rdp_poisson_subsampled(0.1, alpha, |a| params.rdp(a)).unwrap()
        );
    }
}

#[test]
fn fractional_orders_use_the_next_integer_and_small_ones_use_two() {
    let base = gaussian_curve(1.0);
    let at = |alpha: f64| rdp_poisson_subsampled(0.1, alpha, base).unwrap();
    assert_eq!(at(2.5), at(3.0));
    assert_eq!(at(2.01), at(3.0));
    assert_eq!(at(1.5), at(2.0));
    assert_eq!(at(1.01), at(2.0));
    assert!(at(3.0) > at(2.0));
}

#[test]
fn infinite_base_values_give_infinity_and_huge_orders_fall_back_to_the_base() {
    // No guarantee from order 4 on (a finite-but-then-infinite curve, like the DDG outside
    // its proved range at some orders).
    let base = |alpha: f64| if alpha > 4.0 { f64::INFINITY } else { alpha };
    assert!(rdp_poisson_subsampled(0.1, 4.0, base).unwrap().is_finite());
    assert_eq!(
        rdp_poisson_subsampled(0.1, 4.5, base).unwrap(),
        f64::INFINITY
    );
    assert_eq!(
        rdp_poisson_subsampled(0.1, 5.0, base).unwrap(),
        f64::INFINITY
    );

    // A DDG with no noise has no guarantee; sampling it with q > 0 does not create one.
    let noiseless = DdgParams::choose(&DdgConfig::new(100, 1.0, 10, 0.0, 16)).unwrap();
    let round = RoundMechanism::SubsampledDdg {
        q: 0.1,
        params: noiseless,
    };
    assert_eq!(round.rdp(3.0).unwrap(), f64::INFINITY);
    assert_eq!(epsilon_for_rounds(&round, 3, DELTA).unwrap(), f64::INFINITY);
    // Zero rounds of it cost nothing (∞ · 0 must not become NaN).
    assert_eq!(epsilon_for_rounds(&round, 0, DELTA).unwrap(), 0.0);

    // Orders up to the cap are amplified, large ones stay finite without overflow …
    let gaussian = gaussian_curve(0.5);
    let cap = f64::from(MAX_SUBSAMPLED_ORDER);
    let at_cap = rdp_poisson_subsampled(0.01, cap, gaussian).unwrap();
    assert!(at_cap.is_finite() && at_cap < gaussian(cap), "{at_cap}");
    // … and above it the unamplified curve is returned, still a valid bound.
    for alpha in [cap + 1.0, 5000.0, 1e6] {
        assert_eq!(
            rdp_poisson_subsampled(0.01, alpha, gaussian).unwrap(),
            gaussian(alpha)
        );
    }
}

#[test]
fn invalid_inputs_are_errors() {
    let base = gaussian_curve(1.0);
    for (q, alpha, name) in [
        (1.5, 2.0, "q"),
        (-0.1, 2.0, "q"),
        (f64::NAN, 2.0, "q"),
        (0.1, 1.0, "alpha"),
        (0.1, f64::INFINITY, "alpha"),
        (0.1, f64::NAN, "alpha"),
    ] {
        match rdp_poisson_subsampled(q, alpha, base) {
            Err(Error::OutOfRange { name: got, .. }) => assert_eq!(got, name, "q={q} α={alpha}"),
            other => panic!("q={q} α={alpha}: {other:?}"),
        }
    }
    for bad in [f64::NAN, -1.0] {
        assert!(matches!(
            rdp_poisson_subsampled(0.1, 3.0, |_| bad),
            Err(Error::OutOfRange {
                name: "base_rdp",
                ..
            })
        ));
    }
    assert!(matches!(
        RoundMechanism::SubsampledGaussian {
            q: 0.1,
            noise_multiplier: -1.0
        }
        .rdp(2.0),
        Err(Error::OutOfRange { name: "sigma", .. })
    ));
    assert!(matches!(
        RoundMechanism::SubsampledDdg {
            q: 1.5,
            params: ddg_params()
        }
        .rdp(2.0),
        Err(Error::OutOfRange { name: "q", .. })
    ));
}

#[test]
fn deserialized_ddg_parameters_are_checked() {
    let round = RoundMechanism::SubsampledDdg {
        q: 0.1,
        params: ddg_params(),
    };
    let json = serde_json::to_value(round).unwrap();
    let back: RoundMechanism = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, round);
    let mut broken = json;
    broken["SubsampledDdg"]["params"]["n_clients"] = 0.into();
    let broken: RoundMechanism = serde_json::from_value(broken).unwrap();
    assert!(matches!(
        broken.rdp(2.0),
        Err(Error::OutOfRange {
            name: "n_clients",
            ..
        })
    ));
    assert!(epsilon_for_rounds(&broken, 1, DELTA).is_err());
}

#[test]
fn the_gaussian_round_is_the_exact_accountant() {
    let round = RoundMechanism::SubsampledGaussian {
        q: 0.1,
        noise_multiplier: 1.0,
    };
    assert_eq!(round.sampling_rate(), 0.1);
    assert_eq!(round.noise_multiplier(), 1.0);
    for alpha in [1.1, 2.0, 2.5, 40.0] {
        assert_eq!(
            round.rdp(alpha).unwrap(),
            rdp_subsampled_gaussian(0.1, 1.0, alpha).unwrap()
        );
    }
    assert_eq!(
        epsilon_for_rounds(&round, ROUNDS, DELTA).unwrap(),
        epsilon(0.1, 1.0, ROUNDS, DELTA).unwrap()
    );
    let mut via_compose = RdpAccountant::default();
    via_compose.compose(&round, 7).unwrap();
    let mut direct = RdpAccountant::default();
    direct.compose_subsampled_gaussian(0.1, 1.0, 7).unwrap();
    assert_eq!(via_compose, direct);

    let params = ddg_params();
    let ddg = RoundMechanism::SubsampledDdg { q: 0.25, params };
    assert_eq!(ddg.sampling_rate(), 0.25);
    assert_eq!(
        ddg.noise_multiplier(),
        params.noise_std() / params.clip_norm()
    );
}

#[test]
fn a_noised_count_composes_with_the_update_as_andrew_et_al_split_the_budget() {
    use fedpool_privacy::CountNoise;
    use fedpool_privacy::clip::update_noise_multiplier;
    use fedpool_privacy::ddg::{DdgConfig, DdgParams};
    let (z, sigma_b, t) = (1.0, 5.0, 80);
    let ddg =
        |noise_std: f64| DdgParams::choose(&DdgConfig::new(8192, 1.0, t, noise_std, 32)).unwrap();
    let alone = RoundMechanism::SubsampledDdg {
        q: 0.1,
        params: ddg(z),
    };
    let z_update = update_noise_multiplier(z, sigma_b).unwrap();
    let split = RoundMechanism::SubsampledDdgWithCount {
        q: 0.1,
        params: ddg(z_update),
        count: CountNoise {
            n_clients: t,
            noise_std: sigma_b,
        },
    };
    let eps_alone = epsilon_for_rounds(&alone, 30, 1e-5).unwrap();
    let eps_split = epsilon_for_rounds(&split, 30, 1e-5).unwrap();
    // Splitting z between the update and the count costs (almost exactly) what z alone does.
    assert!(
        (eps_split - eps_alone).abs() < 0.02 * eps_alone,
        "{eps_split} vs {eps_alone}"
    );
    assert!((split.noise_multiplier() - z).abs() < 1e-6);
    // The same update noise with a count on top costs more than without it.
    let extra = RoundMechanism::SubsampledDdgWithCount {
        q: 0.1,
        params: ddg(z),
        count: CountNoise {
            n_clients: t,
            noise_std: sigma_b,
        },
    };
    assert!(epsilon_for_rounds(&extra, 30, 1e-5).unwrap() > eps_alone);
    // A count without noise is not private.
    let bare = RoundMechanism::SubsampledDdgWithCount {
        q: 0.1,
        params: ddg(z),
        count: CountNoise {
            n_clients: t,
            noise_std: 0.0,
        },
    };
    assert!(epsilon_for_rounds(&bare, 30, 1e-5).unwrap().is_infinite());
}
