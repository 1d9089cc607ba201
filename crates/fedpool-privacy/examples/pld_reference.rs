//! Runs the PLD accountant over the whole reference table and compares it with
//! dp-accounting's `PLDAccountant` (δ = 1e-5 rows). Too slow for the test suite at the full
//! grid (up to a minute per row on two cores); run with
//! `cargo run --release -p fedpool-privacy --example pld_reference`.

use std::time::Instant;

use fedpool_privacy::PldAccountant;

fn main() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/rdp_reference.json"))
            .expect("fixture parses");
    let mut rows: Vec<&serde_json::Value> = fixture["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .collect();
    rows.push(&fixture["headline"]);
    let mut max_rel: f64 = 0.0;
    for row in rows {
        let field = |name: &str| row[name].as_f64().expect(name);
        let (q, sigma, delta) = (field("q"), field("sigma"), field("delta"));
        let rounds = row["rounds"].as_u64().expect("rounds");
        if delta != 1e-5 {
            continue;
        }
        let start = Instant::now();
        let mut accountant = PldAccountant::default();
        let theirs = field("epsilon_pld");
        match accountant.compose_subsampled_gaussian(q, sigma, rounds) {
            Ok(()) => {
                let ours = accountant.epsilon(delta).expect("delta is valid");
                let rel = (ours - theirs).abs() / theirs;
                max_rel = max_rel.max(rel);
                println!(
                    "q={q} sigma={sigma} T={rounds}: pld {ours:.6} (dp-accounting {theirs:.6}, rel {rel:.1e}), rdp {:.6}, {:.2?}",
                    field("epsilon_rdp"),
                    start.elapsed()
                );
            }
            Err(err) => println!("q={q} sigma={sigma} T={rounds}: {err}"),
        }
    }
    println!("max relative difference {max_rel:.2e}");
}
