//! Evaluation metrics computed from model outputs.

use fedpool_data::Targets;
use serde::{Deserialize, Serialize};

/// Metrics of a model on a labelled set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Metrics {
    /// Classification metrics.
    Classification {
        /// Share of rows whose arg-max class is the label.
        accuracy: f64,
        /// Mean negative log-likelihood of the label under the softmax.
        log_loss: f64,
        /// Unweighted mean over classes of per-class F1 (classes absent from both labels and
        /// predictions are skipped, as scikit-learn does with `zero_division` ignored).
        macro_f1: f64,
    },
    /// Regression metrics.
    Regression {
        /// Root mean squared error.
        rmse: f64,
        /// Mean absolute error.
        mae: f64,
    },
}

impl Metrics {
    /// The headline number: accuracy for classification, RMSE for regression.
    pub fn headline(&self) -> f64 {
        match self {
            Metrics::Classification { accuracy, .. } => *accuracy,
            Metrics::Regression { rmse, .. } => *rmse,
        }
    }

    /// Name of the headline number.
    pub fn headline_name(&self) -> &'static str {
        match self {
            Metrics::Classification { .. } => "accuracy",
            Metrics::Regression { .. } => "rmse",
        }
    }
}

/// Computes metrics from row-major `outputs` (`n × n_outputs`) against `targets`.
///
/// Panics never: an empty set yields zeros.
pub fn evaluate_outputs(outputs: &[f32], targets: &Targets) -> Metrics {
    match targets {
        Targets::Classes { labels, n_classes } => classification(outputs, labels, *n_classes),
        Targets::Real(values) => regression(outputs, values),
    }
}

fn classification(logits: &[f32], labels: &[u32], n_classes: usize) -> Metrics {
    let n = labels.len();
    if n == 0 || n_classes == 0 {
        return Metrics::Classification {
            accuracy: 0.0,
            log_loss: 0.0,
            macro_f1: 0.0,
        };
    }
    let mut correct = 0usize;
    let mut log_loss = 0f64;
    // confusion[(true, predicted)] counts reduce to per-class tp / fp / fn.
    let mut tp = vec![0usize; n_classes];
    let mut fp = vec![0usize; n_classes];
    let mut fneg = vec![0usize; n_classes];
    for (row, &label) in logits.chunks_exact(n_classes).zip(labels) {
        let label = label as usize;
        let (mut best, mut best_val) = (0usize, f32::NEG_INFINITY);
        let mut max = f32::NEG_INFINITY;
        for (i, &v) in row.iter().enumerate() {
            if v > best_val {
                best = i;
                best_val = v;
            }
            max = max.max(v);
        }
        let log_sum: f64 = row
            .iter()
            .map(|&v| ((v - max) as f64).exp())
            .sum::<f64>()
            .ln();
        let log_p = (row.get(label).copied().unwrap_or(f32::NEG_INFINITY) - max) as f64 - log_sum;
        // Clamp like scikit-learn's log_loss so one confident mistake stays finite.
        log_loss -= log_p.max((1e-15f64).ln());
        if best == label {
            correct += 1;
            tp[label] += 1;
        } else {
            fp[best] += 1;
            if label < n_classes {
                fneg[label] += 1;
            }
        }
    }
    let mut f1_sum = 0.0;
    let mut n_present = 0usize;
    for c in 0..n_classes {
        let denom = 2 * tp[c] + fp[c] + fneg[c];
        if denom > 0 {
            f1_sum += 2.0 * tp[c] as f64 / denom as f64;
            n_present += 1;
        }
    }
    Metrics::Classification {
        accuracy: correct as f64 / n as f64,
        log_loss: log_loss / n as f64,
        macro_f1: if n_present == 0 {
            0.0
        } else {
            f1_sum / n_present as f64
        },
    }
}

fn regression(predictions: &[f32], values: &[f32]) -> Metrics {
    let n = values.len();
    if n == 0 {
        return Metrics::Regression {
            rmse: 0.0,
            mae: 0.0,
        };
    }
    let (mut se, mut ae) = (0f64, 0f64);
    for (&p, &y) in predictions.iter().zip(values) {
        let e = (p - y) as f64;
        se += e * e;
        ae += e.abs();
    }
    Metrics::Regression {
        rmse: (se / n as f64).sqrt(),
        mae: ae / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_hand_computation() {
        // Rows predict classes 0, 1, 1; labels are 0, 1, 0.
        let logits = [2.0, 0.0, 0.0, 3.0, 0.0, 1.0];
        let m = evaluate_outputs(
            &logits,
            &Targets::Classes {
                labels: vec![0, 1, 0],
                n_classes: 2,
            },
        );
        let Metrics::Classification {
            accuracy,
            log_loss,
            macro_f1,
        } = m
        else {
            panic!("expected classification metrics, got {m:?}");
        };
        assert!((accuracy - 2.0 / 3.0).abs() < 1e-12);
        // Class 0: tp 1, fn 1, fp 0 → F1 2/3. Class 1: tp 1, fp 1 → F1 2/3.
        assert!((macro_f1 - 2.0 / 3.0).abs() < 1e-12);
        let p = |a: f64, b: f64| a.exp() / (a.exp() + b.exp());
        let expected = -(p(2.0, 0.0).ln() + p(3.0, 0.0).ln() + p(0.0, 1.0).ln()) / 3.0;
        assert!((log_loss - expected).abs() < 1e-6);
    }

    #[test]
    fn regression_metrics_match_hand_computation() {
        let m = evaluate_outputs(&[1.0, 2.0, 4.0], &Targets::Real(vec![1.0, 3.0, 2.0]));
        let Metrics::Regression { rmse, mae } = m else {
            panic!("expected regression metrics, got {m:?}");
        };
        assert!((rmse - (5.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!((mae - 1.0).abs() < 1e-9);
    }
}
