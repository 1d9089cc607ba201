//! [`Table`]: rows parsed and validated against a [`Schema`], not yet encoded.
//!
//! Loading and encoding are separate because encoding depends on *which* rows a node holds:
//! standardisation uses each node's own mean and deviation, so the same table is encoded once
//! per simulated client. The table therefore stores values in the layout encoding reads fastest:
//! row-major numeric values (a selected row is one contiguous slice, copied straight into the
//! row-major output) and row-major category indices.

mod load_csv;
mod load_idx;
#[cfg(test)]
mod tests;

use crate::dataset::{Dataset, Targets};
use crate::error::DataError;
use crate::schema::{ColumnKind, Scaling, Schema};
use crate::statistics::{FeatureScaling, StatisticsLayout};

/// Rows of one data file, validated against a schema.
///
/// Numeric features are `f32`, categorical features category indices, labels class indices
/// (classification) or `f32` (regression). Columns named in `keep_columns` at load time are kept
/// as raw strings for natural partitions (by student, by country …).
#[derive(Clone)]
pub struct Table {
    file: String,
    schema: Schema,
    plan: EncodePlan,
    n_rows: usize,
    /// `n_rows × plan.n_numeric`, row-major, in feature order.
    numeric: Vec<f32>,
    /// `n_rows × plan.n_categorical`, row-major, in feature order.
    categorical: Vec<u32>,
    labels: Labels,
    kept: Vec<KeptColumn>,
}

impl std::fmt::Debug for Table {
    /// A summary: a derived `Debug` would print every cell (188 MB of text for Fashion-MNIST)
    /// into whatever log or panic message formats the table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("source", &self.file)
            .field("n_rows", &self.n_rows)
            .field("n_features", &self.plan.n_features)
            .field("classification", &self.class_labels().is_some())
            .field("kept_columns", &self.kept_columns())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Labels {
    Classes(Vec<u32>),
    Real(Vec<f32>),
}

#[derive(Debug, Clone)]
struct KeptColumn {
    name: String,
    values: Vec<String>,
}

/// Where each stored value goes in the encoded feature vector, derived once from the schema.
#[derive(Debug, Clone)]
struct EncodePlan {
    n_features: usize,
    n_numeric: usize,
    n_categorical: usize,
    /// Scaling of each numeric column, in storage order.
    scalings: Vec<Scaling>,
    /// Name of each numeric column, in storage order.
    numeric_names: Vec<String>,
    /// Maximal runs of numeric columns that are adjacent both in storage and in the output, so
    /// a pixel row is transformed as one slice rather than column by column.
    numeric_runs: Vec<NumericRun>,
    /// Output offset of each categorical column's one-hot block, in storage order.
    categorical_offsets: Vec<usize>,
    /// Number of categories of each categorical column, in storage order.
    categorical_sizes: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct NumericRun {
    stored_start: usize,
    output_start: usize,
    len: usize,
}

impl EncodePlan {
    fn new(schema: &Schema) -> EncodePlan {
        let mut plan = EncodePlan {
            n_features: 0,
            n_numeric: 0,
            n_categorical: 0,
            scalings: Vec::new(),
            numeric_names: Vec::new(),
            numeric_runs: Vec::new(),
            categorical_offsets: Vec::new(),
            categorical_sizes: Vec::new(),
        };
        for column in schema.feature_columns() {
            match column.kind {
                ColumnKind::Numeric { scaling } => {
                    match plan.numeric_runs.last_mut() {
                        Some(run) if run.output_start + run.len == plan.n_features => run.len += 1,
                        _ => plan.numeric_runs.push(NumericRun {
                            stored_start: plan.n_numeric,
                            output_start: plan.n_features,
                            len: 1,
                        }),
                    }
                    plan.scalings.push(scaling);
                    plan.numeric_names.push(column.name);
                    plan.n_numeric += 1;
                    plan.n_features += 1;
                }
                ColumnKind::Categorical { categories } => {
                    plan.categorical_offsets.push(plan.n_features);
                    plan.categorical_sizes.push(categories.len());
                    plan.n_categorical += 1;
                    plan.n_features += categories.len();
                }
            }
        }
        plan
    }
}

impl Table {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The schema the rows were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The data file name given at load time, for messages.
    pub fn source(&self) -> &str {
        &self.file
    }

    /// Class index of every row, or `None` for a regression table.
    pub fn class_labels(&self) -> Option<&[u32]> {
        match &self.labels {
            Labels::Classes(labels) => Some(labels),
            Labels::Real(_) => None,
        }
    }

    /// Real-valued target of every row, or `None` for a classification table.
    pub fn real_targets(&self) -> Option<&[f32]> {
        match &self.labels {
            Labels::Classes(_) => None,
            Labels::Real(values) => Some(values),
        }
    }

    /// Raw values of a column kept at load time (one per row), or `None` if it was not kept.
    pub fn column(&self, name: &str) -> Option<&[String]> {
        self.kept
            .iter()
            .find(|kept| kept.name == name)
            .map(|kept| kept.values.as_slice())
    }

    /// Names of the columns kept at load time, in the order they were requested.
    pub fn kept_columns(&self) -> Vec<&str> {
        self.kept.iter().map(|kept| kept.name.as_str()).collect()
    }

    /// Encodes the given rows, in that order, into a model-ready dataset.
    ///
    /// Features follow [`Schema::feature_columns`] order, `schema.n_features()` wide.
    /// Categorical columns become one-hot blocks in the schema's category order. Numeric
    /// columns are scaled per [`Scaling`]: `Standardize` uses the mean and population standard
    /// deviation of exactly these rows (each node standardises with its own statistics, so no
    /// statistic crosses a node boundary); a column constant on these rows is only centred.
    /// `Range { min, max }` maps `[min, max]` onto `[0, 1]` (values outside the range land
    /// outside `[0, 1]`), and `None` copies.
    ///
    /// # Panics
    ///
    /// If a row index is `>= self.n_rows()`; indices come from this crate's split and partition
    /// functions, so an out-of-range index is a caller bug, not bad data.
    pub fn encode(&self, rows: &[usize]) -> Dataset {
        let (shift, scale) = self.numeric_affine(rows, None);
        self.encode_affine(rows, &shift, &scale)
    }

    /// Encodes the given rows as [`Table::encode`] does, but standardises with `scaling`, the
    /// federated statistics every node and the test set share, instead of these rows' own.
    ///
    /// # Errors
    ///
    /// If `scaling` does not cover exactly the columns this schema standardises with federated
    /// statistics, in order.
    ///
    /// # Panics
    ///
    /// As [`Table::encode`], for a row index out of range.
    pub fn encode_scaled(
        &self,
        rows: &[usize],
        scaling: &FeatureScaling,
    ) -> Result<Dataset, DataError> {
        let layout = StatisticsLayout::of(&self.schema).ok_or_else(|| DataError::Statistics {
            reason: "the schema standardises no column with federated statistics".into(),
        })?;
        scaling.check_layout(&layout)?;
        let (shift, scale) = self.numeric_affine(rows, Some(scaling));
        Ok(self.encode_affine(rows, &shift, &scale))
    }

    /// Stored position of the numeric column `name`.
    pub(crate) fn numeric_position(&self, name: &str) -> Option<usize> {
        self.plan.numeric_names.iter().position(|n| n == name)
    }

    /// The stored value of numeric column `position` in `row`.
    pub(crate) fn numeric_value(&self, row: usize, position: usize) -> f32 {
        self.numeric[row * self.plan.n_numeric + position]
    }

    fn encode_affine(&self, rows: &[usize], shift: &[f32], scale: &[f32]) -> Dataset {
        let plan = &self.plan;
        let width = plan.n_features;
        let mut features = vec![0.0f32; rows.len() * width];
        for (out_row, &row) in features.chunks_exact_mut(width.max(1)).zip(rows) {
            let stored = &self.numeric[row * plan.n_numeric..(row + 1) * plan.n_numeric];
            for run in &plan.numeric_runs {
                let src = run.stored_start..run.stored_start + run.len;
                let out = &mut out_row[run.output_start..run.output_start + run.len];
                for (((out, &value), &shift), &scale) in out
                    .iter_mut()
                    .zip(&stored[src.clone()])
                    .zip(&shift[src.clone()])
                    .zip(&scale[src])
                {
                    *out = (value - shift) * scale;
                }
            }
            let categories =
                &self.categorical[row * plan.n_categorical..(row + 1) * plan.n_categorical];
            for (&category, &offset) in categories.iter().zip(&plan.categorical_offsets) {
                out_row[offset + category as usize] = 1.0;
            }
        }
        let targets = match &self.labels {
            Labels::Classes(labels) => Targets::Classes {
                labels: rows.iter().map(|&row| labels[row]).collect(),
                n_classes: self.schema.n_outputs(),
            },
            Labels::Real(values) => Targets::Real(rows.iter().map(|&row| values[row]).collect()),
        };
        Dataset {
            features,
            n_features: width,
            targets,
        }
    }

    /// Per numeric column `(shift, scale)` such that the encoded value is `(x - shift) * scale`:
    /// standardised columns with `global` (checked against the layout by the caller, so its
    /// entries follow the standardised columns in storage order), or with `rows`' own
    /// statistics.
    fn numeric_affine(
        &self,
        rows: &[usize],
        global: Option<&FeatureScaling>,
    ) -> (Vec<f32>, Vec<f32>) {
        let plan = &self.plan;
        let n_numeric = plan.n_numeric;
        let standardized = || {
            plan.scalings
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Scaling::Standardize { .. }))
                .map(|(j, _)| j)
        };
        let (mean, std) = match global {
            Some(global) => {
                let (mut mean, mut std) = (vec![0.0; n_numeric], vec![0.0; n_numeric]);
                for (j, column) in standardized().zip(&global.columns) {
                    mean[j] = column.mean;
                    std[j] = column.std;
                }
                (mean, std)
            }
            None if standardized().next().is_some() && !rows.is_empty() => self.mean_and_std(rows),
            None => (vec![0.0; n_numeric], vec![0.0; n_numeric]),
        };
        let mut shift = Vec::with_capacity(n_numeric);
        let mut scale = Vec::with_capacity(n_numeric);
        for (j, scaling) in plan.scalings.iter().enumerate() {
            let (s, k) = match *scaling {
                // The sums are exact for a constant column (f32 values summed in f64), so its
                // deviation is exactly zero: centre it and leave it, rather than divide by zero.
                Scaling::Standardize { .. } if std[j] > 0.0 => (mean[j], 1.0 / std[j]),
                Scaling::Standardize { .. } => (mean[j], 1.0),
                Scaling::Range { min, max } => {
                    (f64::from(min), 1.0 / (f64::from(max) - f64::from(min)))
                }
                Scaling::None => (0.0, 1.0),
            };
            shift.push(s as f32);
            scale.push(k as f32);
        }
        (shift, scale)
    }

    /// Mean and population standard deviation of every numeric column over `rows`.
    ///
    /// Two passes (mean, then squared deviations) in f64: the one-pass `E[x²] - E[x]²` loses
    /// every digit on columns like areas in the thousands with small spread.
    fn mean_and_std(&self, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let n_numeric = self.plan.n_numeric;
        let n = rows.len() as f64;
        let mut sum = vec![0.0f64; n_numeric];
        for &row in rows {
            let stored = &self.numeric[row * n_numeric..(row + 1) * n_numeric];
            for (acc, &value) in sum.iter_mut().zip(stored) {
                *acc += f64::from(value);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut sum_sq = vec![0.0f64; n_numeric];
        for &row in rows {
            let stored = &self.numeric[row * n_numeric..(row + 1) * n_numeric];
            for ((acc, &value), &m) in sum_sq.iter_mut().zip(stored).zip(&mean) {
                let d = f64::from(value) - m;
                *acc += d * d;
            }
        }
        let std = sum_sq.iter().map(|s| (s / n).sqrt()).collect();
        (mean, std)
    }
}
