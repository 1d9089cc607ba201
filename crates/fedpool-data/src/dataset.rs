//! An encoded dataset: a dense row-major feature matrix and its targets.

/// Training targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices into the schema's class list.
    Classes {
        /// One class index per row.
        labels: Vec<u32>,
        /// Number of classes the schema defines (not just those present).
        n_classes: usize,
    },
    /// Real-valued targets for regression.
    Real(Vec<f32>),
}

impl Targets {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Real(values) => values.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of the given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> Targets {
        match self {
            Targets::Classes { labels, n_classes } => Targets::Classes {
                labels: rows.iter().map(|&r| labels[r]).collect(),
                n_classes: *n_classes,
            },
            Targets::Real(values) => Targets::Real(rows.iter().map(|&r| values[r]).collect()),
        }
    }
}

/// Encoded rows ready for a model: `features` is `n_rows × n_features`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Row-major feature matrix.
    pub features: Vec<f32>,
    /// Width of one row.
    pub n_features: usize,
    /// One target per row.
    pub targets: Targets,
}

impl Dataset {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.targets.len()
    }

    /// The features of row `row_idx`.
    pub fn row(&self, row_idx: usize) -> &[f32] {
        &self.features[row_idx * self.n_features..(row_idx + 1) * self.n_features]
    }

    /// A new dataset holding the given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(rows.len() * self.n_features);
        for &r in rows {
            features.extend_from_slice(self.row(r));
        }
        Dataset {
            features,
            n_features: self.n_features,
            targets: self.targets.select(rows),
        }
    }
}
