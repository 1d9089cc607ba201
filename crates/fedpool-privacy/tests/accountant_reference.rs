//! The RDP accountant against Google's dp-accounting, on the table that
//! `scripts/make_accountant_fixture.py` generated (see that script and the JSON header for
//! the version and command). CI does not run Python; the JSON is committed.

use fedpool_privacy::{PldAccountant, RdpAccountant, default_orders, extended_orders};

const FIXTURE: &str = include_str!("fixtures/rdp_reference.json");

#[derive(Debug, serde::Deserialize)]
struct Fixture {
    dp_accounting_version: String,
    command: String,
    headline: Entry,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Entry {
    q: f64,
    sigma: f64,
    rounds: u64,
    delta: f64,
    /// dp-accounting's RdpAccountant, default orders.
    epsilon_rdp: f64,
    /// dp-accounting restricted to the integer orders of its default grid (exact closed form).
    epsilon_rdp_integer_orders: f64,
    /// Default grid, fractional orders by 40-digit quadrature: the exact value.
    epsilon_rdp_quadrature: f64,
    /// dp-accounting's PLDAccountant.
    epsilon_pld: f64,
}

fn fixture() -> Fixture {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture parses");
    assert!(
        !fixture.dp_accounting_version.is_empty()
            && fixture.command.contains("make_accountant_fixture.py")
    );
    fixture
}

fn ours(entry: &Entry, orders: Vec<f64>) -> (f64, f64) {
    let mut accountant = RdpAccountant::new(orders).unwrap();
    accountant
        .compose_subsampled_gaussian(entry.q, entry.sigma, entry.rounds)
        .unwrap();
    accountant.epsilon(entry.delta).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn describe(entry: &Entry) -> String {
    format!(
        "q={} sigma={} T={} delta={:e}",
        entry.q, entry.sigma, entry.rounds, entry.delta
    )
}

/// Every entry: within 1% of dp-accounting, or tighter than it where dp-accounting's own
/// fractional-order series is off by more than 1% from the exact (quadrature) value; and in
/// all cases within 1e-6 of the exact value and never looser than dp-accounting.
#[test]
fn rdp_epsilon_matches_dp_accounting() {
    let fixture = fixture();
    assert!(
        fixture.entries.len() >= 150,
        "{} entries",
        fixture.entries.len()
    );
    let mut max_rel_vs_dp_accounting: f64 = 0.0;
    let mut max_rel_vs_exact: f64 = 0.0;
    let mut tighter = Vec::new();
    let (mut n_dp_exact, mut max_rel_where_dp_exact) = (0, 0.0f64);
    for entry in &fixture.entries {
        let (eps, _) = ours(entry, default_orders());
        let vs_exact = rel(eps, entry.epsilon_rdp_quadrature);
        assert!(
            vs_exact < 1e-6,
            "{}: ours {eps}, exact {}",
            describe(entry),
            entry.epsilon_rdp_quadrature
        );
        assert!(
            eps <= entry.epsilon_rdp * (1.0 + 1e-9),
            "{}: ours {eps} looser than dp-accounting {}",
            describe(entry),
            entry.epsilon_rdp
        );
        max_rel_vs_exact = max_rel_vs_exact.max(vs_exact);
        let vs_dp = rel(eps, entry.epsilon_rdp);
        if rel(entry.epsilon_rdp, entry.epsilon_rdp_quadrature) < 1e-6 {
            n_dp_exact += 1;
            max_rel_where_dp_exact = max_rel_where_dp_exact.max(vs_dp);
        }
        if vs_dp <= 0.01 {
            max_rel_vs_dp_accounting = max_rel_vs_dp_accounting.max(vs_dp);
        } else {
            // Explained only if dp-accounting itself is that far from the exact value.
            assert!(
                rel(entry.epsilon_rdp, entry.epsilon_rdp_quadrature) > 0.01,
                "{}: ours {eps} vs dp-accounting {} unexplained",
                describe(entry),
                entry.epsilon_rdp
            );
            tighter.push(format!(
                "{}: {:.4} vs {:.4}",
                describe(entry),
                eps,
                entry.epsilon_rdp
            ));
        }
    }
    println!(
        "{} entries; vs dp-accounting: max relative error {max_rel_where_dp_exact:.2e} on the {n_dp_exact} entries \
         where its series is exact, {max_rel_vs_dp_accounting:.2e} on all within 1%; vs exact quadrature \
         {max_rel_vs_exact:.2e}; tighter by >1% on {}:\n{}",
        fixture.entries.len(),
        tighter.len(),
        tighter.join("\n")
    );
}

/// At integer orders dp-accounting uses the exact closed form, as we do: bit-for-bit close.
#[test]
fn integer_orders_match_dp_accounting_exactly() {
    let integer_orders: Vec<f64> = default_orders()
        .into_iter()
        .filter(|a| a.fract() == 0.0)
        .collect();
    for entry in &fixture().entries {
        let (eps, _) = ours(entry, integer_orders.clone());
        assert!(
            rel(eps, entry.epsilon_rdp_integer_orders) < 1e-9,
            "{}: ours {eps}, dp-accounting {}",
            describe(entry),
            entry.epsilon_rdp_integer_orders
        );
    }
}

/// The headline figure of the issue: q = 0.1, σ = 1, T = 30, δ = 1e-5 gives ε ≈ 4.8.
#[test]
fn headline_epsilon() {
    let headline = fixture().headline;
    assert_eq!(
        (headline.q, headline.sigma, headline.rounds, headline.delta),
        (0.1, 1.0, 30, 1e-5)
    );
    let eps = fedpool_privacy::epsilon(0.1, 1.0, 30, 1e-5).unwrap();
    assert!(
        rel(eps, headline.epsilon_rdp) < 1e-9,
        "ours {eps}, dp-accounting {}",
        headline.epsilon_rdp
    );
    assert!((eps - 4.848).abs() < 1e-3, "{eps}");
    let (_, order) = ours(&headline, default_orders());
    assert_eq!(order, 4.0);
}

/// The extended grid is a superset, so never looser; report what it gains.
#[test]
fn extended_orders_are_never_looser() {
    let mut best_gain: (f64, String) = (0.0, String::new());
    for entry in &fixture().entries {
        let (default_eps, _) = ours(entry, default_orders());
        let (extended_eps, _) = ours(entry, extended_orders());
        assert!(extended_eps <= default_eps, "{}", describe(entry));
        let gain = 1.0 - extended_eps / default_eps;
        if gain > best_gain.0 {
            best_gain = (gain, describe(entry));
        }
    }
    println!(
        "largest gain of the extended grid: {:.2}% at {}",
        100.0 * best_gain.0,
        best_gain.1
    );
}

/// RDP is an upper bound on the exact privacy curve, which the PLD accountant approximates:
/// dp-accounting's PLD ε must never exceed our RDP ε by more than its discretisation slack.
#[test]
fn pld_reference_is_below_rdp() {
    for entry in &fixture().entries {
        let (eps, _) = ours(entry, default_orders());
        assert!(
            entry.epsilon_pld <= eps * 1.01 + 1e-3,
            "{}: pld {} rdp {eps}",
            describe(entry),
            entry.epsilon_pld
        );
    }
}

/// Our PLD accountant (pessimistic connect-the-dots, h = 1e-4, as dp-accounting's default)
/// against dp-accounting's `PLDAccountant`, on the entries cheap enough for a debug-build
/// test (σ ≥ 1.5, q ≤ 0.1) and the headline. `examples/pld_reference.rs` runs the whole
/// table (`cargo run --release -p fedpool-privacy --example pld_reference`).
#[test]
fn pld_epsilon_matches_dp_accounting() {
    let fixture = fixture();
    let mut cases: Vec<&Entry> = fixture
        .entries
        .iter()
        .filter(|e| e.sigma >= 1.5 && e.q <= 0.1)
        .collect();
    cases.push(&fixture.headline);
    assert!(cases.len() >= 40);
    let mut max_rel: f64 = 0.0;
    for entry in cases {
        let mut accountant = PldAccountant::default();
        accountant
            .compose_subsampled_gaussian(entry.q, entry.sigma, entry.rounds)
            .unwrap();
        let eps = accountant.epsilon(entry.delta).unwrap();
        let error = rel(eps, entry.epsilon_pld);
        assert!(
            error < 1e-6,
            "{}: ours {eps}, dp-accounting {}",
            describe(entry),
            entry.epsilon_pld
        );
        max_rel = max_rel.max(error);
    }
    println!("PLD: max relative error vs dp-accounting {max_rel:.2e}");
}
