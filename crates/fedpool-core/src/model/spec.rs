//! Which model a contract trains.

use serde::{Deserialize, Serialize};

/// The model family and its shape, as written in a contract's `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Multinomial logistic regression (softmax over a linear map).
    LogisticRegression,
    /// Multi-layer perceptron with ReLU hidden layers.
    Mlp {
        /// Width of each hidden layer, input side first.
        hidden: Vec<usize>,
    },
    /// A small CNN for square single-channel images: two 3×3 conv + ReLU + 2×2 max-pool stages
    /// and a linear classifier. The image side must be a multiple of 4.
    Cnn {
        /// Output channels of the two convolution stages.
        #[serde(default = "default_cnn_channels")]
        channels: [usize; 2],
    },
    /// Ordinary least-squares linear regression (a numeric target).
    LinearRegression,
}

fn default_cnn_channels() -> [usize; 2] {
    [8, 16]
}

impl ModelSpec {
    /// Allowed `kind` values, for error messages.
    pub const KINDS: &'static [&'static str] =
        &["logistic_regression", "mlp", "cnn", "linear_regression"];

    /// True for models whose output is a real number rather than class scores.
    pub fn is_regression(&self) -> bool {
        matches!(self, ModelSpec::LinearRegression)
    }

    /// A short human-readable description, e.g. `MLP 64-128-10`.
    pub fn describe(&self, n_inputs: usize, n_outputs: usize) -> String {
        match self {
            ModelSpec::LogisticRegression => {
                format!("multinomial logistic regression ({n_inputs} inputs, {n_outputs} classes)")
            }
            ModelSpec::Mlp { hidden } => {
                let widths: Vec<String> = std::iter::once(n_inputs)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(n_outputs))
                    .map(|w| w.to_string())
                    .collect();
                format!("MLP {}", widths.join("-"))
            }
            ModelSpec::Cnn { channels } => format!(
                "CNN (conv3x3 {}→{}, max-pool, linear → {n_outputs})",
                channels[0], channels[1]
            ),
            ModelSpec::LinearRegression => format!("linear regression ({n_inputs} inputs)"),
        }
    }
}
