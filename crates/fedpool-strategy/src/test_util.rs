//! The one `check` helper every strategy's unit tests go through.

use crate::{ClientUpdate, Strategy, StrategyError};

/// Runs `strategy` on `global` and `updates` (each `(delta, n_examples)`) and compares the new
/// model and the report's `selected` (or the error) with `expect`. On error the model must be
/// untouched.
pub(crate) fn check(
    strategy: &mut dyn Strategy,
    global: &[f32],
    updates: &[(&[f32], usize)],
    expect: Result<(&[f32], &[usize]), StrategyError>,
) {
    let updates: Vec<ClientUpdate<'_>> = updates
        .iter()
        .map(|&(delta, n_examples)| ClientUpdate { delta, n_examples })
        .collect();
    let mut model = global.to_vec();
    let got = strategy.aggregate(&mut model, &updates);
    match expect {
        Ok((want_model, want_selected)) => {
            let report =
                got.unwrap_or_else(|e| panic!("{}: unexpected error {e}", strategy.name()));
            assert_eq!(report.n_updates, updates.len());
            assert_eq!(
                report.selected,
                want_selected,
                "{}: selected",
                strategy.name()
            );
            assert_eq!(model.len(), want_model.len());
            for (idx, (g, w)) in model.iter().zip(want_model).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{}: param {idx}: got {g}, want {w}",
                    strategy.name()
                );
            }
        }
        Err(want) => {
            assert_eq!(got, Err(want));
            assert_eq!(
                model, global,
                "a failed aggregation must leave the model untouched"
            );
        }
    }
}
