//! The data schema a model contract requires: which columns, of which type, and the label.
//!
//! The schema is part of the contract, so every node encodes its rows into exactly the same
//! feature layout: categorical columns list their categories up front (one-hot positions are
//! fixed by the contract, never discovered from one node's data) and numeric columns say how
//! they are scaled.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The columns a model needs and how each becomes model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The column holding the training target.
    pub label: LabelSpec,
    /// Feature columns, in the order their encodings appear in the feature vector.
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    /// Runs of numeric columns named `{prefix}{0..count}` (pixels), appended after `columns`.
    #[serde(default)]
    pub column_ranges: Vec<ColumnRange>,
    /// Standardise every node's rows with that node's own mean and deviation, so that no
    /// statistic of its data leaves it, instead of with the federated statistics (the mean
    /// and deviation over every participating node, aggregated before the first round).
    /// Under label skew local scaling centres each node's majority class onto zero and erases
    /// much of the signal: federated statistics are the default.
    #[serde(default)]
    pub local_standardize: bool,
}

/// The target column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// No deny_unknown_fields here: serde does not support it together with `flatten`; the
// flattened `LabelKind` rejects unknown keys instead.
pub struct LabelSpec {
    /// Column name in the CSV header.
    pub name: String,
    /// Classification (with its class names) or regression.
    #[serde(flatten)]
    pub kind: LabelKind,
}

/// Whether the label is a class or a real number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelKind {
    /// One of a fixed list of classes, written in the CSV exactly as listed.
    Categorical {
        /// Class names; class index `i` is `classes[i]`.
        classes: Vec<String>,
    },
    /// A real-valued target (regression).
    Numeric,
}

/// One feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Unknown keys are rejected by the flattened `ColumnKind` (see `LabelSpec`).
pub struct ColumnSpec {
    /// Column name in the CSV header.
    pub name: String,
    /// Type and encoding.
    #[serde(flatten)]
    pub kind: ColumnKind,
}

/// A column's type and how it is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ColumnKind {
    /// A real number.
    Numeric {
        /// How the value is scaled before training.
        #[serde(default)]
        scaling: Scaling,
    },
    /// One of a fixed list of categories, one-hot encoded in the listed order.
    Categorical {
        /// The allowed values.
        categories: Vec<String>,
    },
}

/// How a numeric column is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scaling {
    /// Subtract the mean and divide by the standard deviation: over every participating node
    /// (federated statistics, the default), or over the node's own rows when the schema says
    /// [`Schema::local_standardize`].
    Standardize {
        /// Public bounds `[min, max]` of the column's values. A node's contribution to the
        /// federated statistics clamps values into them (training does not), which bounds what
        /// one node can add: clipped, noised or securely aggregated statistics need them.
        #[serde(default)]
        bounds: Option<[f32; 2]>,
    },
    /// Map a known range `[min, max]` onto `[0, 1]` (pixels, bounded counts).
    Range {
        /// Smallest possible value.
        min: f32,
        /// Largest possible value.
        max: f32,
    },
    /// Use the value as it is.
    None,
}

impl Default for Scaling {
    fn default() -> Scaling {
        Scaling::Standardize { bounds: None }
    }
}

/// A run of numeric columns `{prefix}0 … {prefix}{count-1}` sharing one scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRange {
    /// Name prefix, e.g. `p` for `p0 … p783`.
    pub prefix: String,
    /// Number of columns.
    pub count: usize,
    /// Scaling shared by every column of the run.
    #[serde(default)]
    pub scaling: Scaling,
}

impl Schema {
    /// Every feature column in feature order, with the run shorthand expanded.
    pub fn feature_columns(&self) -> Vec<ColumnSpec> {
        let mut out = self.columns.clone();
        for range in &self.column_ranges {
            for i in 0..range.count {
                out.push(ColumnSpec {
                    name: format!("{}{}", range.prefix, i),
                    kind: ColumnKind::Numeric {
                        scaling: range.scaling,
                    },
                });
            }
        }
        out
    }

    /// Width of the encoded feature vector (one-hot categoricals count one per category).
    pub fn n_features(&self) -> usize {
        self.feature_columns()
            .iter()
            .map(|c| match &c.kind {
                ColumnKind::Numeric { .. } => 1,
                ColumnKind::Categorical { categories } => categories.len(),
            })
            .sum()
    }

    /// Number of model outputs: classes for classification, 1 for regression.
    pub fn n_outputs(&self) -> usize {
        match &self.label.kind {
            LabelKind::Categorical { classes } => classes.len(),
            LabelKind::Numeric => 1,
        }
    }

    /// Names of every column the schema reads (features then label).
    pub fn required_columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self.feature_columns().into_iter().map(|c| c.name).collect();
        names.push(self.label.name.clone());
        names
    }

    /// Checks that the schema is usable: at least one feature, unique column names, non-empty
    /// and duplicate-free class and category lists, and finite ranges with `min < max`.
    ///
    /// The loaders call this first, so a bad contract fails before any data is read rather than
    /// as a division by zero or an ambiguous one-hot position later.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |reason: String| Err(DataError::InvalidSchema { reason });
        let features = self.feature_columns();
        if features.is_empty() {
            return invalid("the schema has no feature columns".to_string());
        }
        let mut seen = HashSet::new();
        for name in features.iter().map(|c| &c.name).chain([&self.label.name]) {
            if name.is_empty() {
                return invalid("a column has an empty name".to_string());
            }
            if !seen.insert(name.as_str()) {
                return invalid(format!("column \"{name}\" is named more than once"));
            }
        }
        if let LabelKind::Categorical { classes } = &self.label.kind {
            if classes.is_empty() {
                return invalid(format!("label \"{}\" lists no classes", self.label.name));
            }
            if let Some(dup) = first_duplicate(classes) {
                return invalid(format!(
                    "label \"{}\" lists class \"{dup}\" twice",
                    self.label.name
                ));
            }
        }
        for column in &features {
            match &column.kind {
                ColumnKind::Categorical { categories } => {
                    if categories.is_empty() {
                        return invalid(format!("column \"{}\" lists no categories", column.name));
                    }
                    if let Some(dup) = first_duplicate(categories) {
                        return invalid(format!(
                            "column \"{}\" lists category \"{dup}\" twice",
                            column.name
                        ));
                    }
                }
                ColumnKind::Numeric { scaling } => {
                    let (what, min, max) = match *scaling {
                        Scaling::Range { min, max } => ("range", min, max),
                        Scaling::Standardize {
                            bounds: Some([min, max]),
                        } => ("bounds", min, max),
                        _ => continue,
                    };
                    if !(min.is_finite() && max.is_finite() && min < max) {
                        return invalid(format!(
                            "column \"{}\" has {what} [{min}, {max}]; it needs finite min < max",
                            column.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = HashSet::new();
    names
        .iter()
        .find(|name| !seen.insert(name.as_str()))
        .map(String::as_str)
}
