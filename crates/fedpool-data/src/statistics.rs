//! Federated feature statistics: what one node contributes to the standardisation of numeric
//! columns, and the global scaling derived from the sum of every node's contribution.
//!
//! Standardising each node's rows with its own mean and deviation erases the signal under
//! label skew (a node holding mostly one class centres that class onto zero). Before the
//! first round, every asked node sends, per standardised column, its mean and mean square,
//! and a leading 1 that counts it; the vector goes through the same clipping, noise and secure
//! aggregation as a model update. Ratios of the summed components give the mean over nodes of
//! their means and mean squares, hence the global mean and deviation. Every node then counts
//! equally, whatever its row count: a node's contribution is bounded (a row-weighted sum is
//! not), which is what lets the statistics be clipped and noised like an update.
//!
//! A column with public bounds `[min, max]` contributes values clamped into the bounds and
//! mapped onto `[0, 1]`, so a node's vector has L2 norm at most 1. A column without bounds
//! contributes raw values: only contracts that neither clip nor mask updates may use it (the
//! contract's validation says so).

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::schema::{ColumnKind, Scaling, Schema};
use crate::table::Table;

/// The smallest deviation a federated estimate may give a bounded column, as a share of its
/// bounds' width. Noise can make an estimated variance tiny or negative, and dividing by a
/// tiny deviation would blow standardised values up; with this floor they stay within about
/// ±20 of the mean, whatever the noise.
pub const MIN_BOUNDED_STD: f64 = 0.05;

/// Which columns a model standardises with federated statistics, in storage order.
#[derive(Debug, Clone, PartialEq)]
pub struct StatisticsLayout {
    columns: Vec<LayoutColumn>,
}

#[derive(Debug, Clone, PartialEq)]
struct LayoutColumn {
    name: String,
    bounds: Option<[f32; 2]>,
}

impl StatisticsLayout {
    /// The layout of `schema`: `None` when it standardises nothing, or only locally.
    pub fn of(schema: &Schema) -> Option<StatisticsLayout> {
        if schema.local_standardize {
            return None;
        }
        let columns: Vec<LayoutColumn> = schema
            .feature_columns()
            .into_iter()
            .filter_map(|column| match column.kind {
                ColumnKind::Numeric {
                    scaling: Scaling::Standardize { bounds },
                } => Some(LayoutColumn {
                    name: column.name,
                    bounds,
                }),
                _ => None,
            })
            .collect();
        (!columns.is_empty()).then_some(StatisticsLayout { columns })
    }

    /// Length of a node's statistics vector: a count, then a mean and a mean square per column.
    pub fn dimension(&self) -> usize {
        1 + 2 * self.columns.len()
    }

    /// Names of the standardised columns, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Columns without public bounds (their contributions have no norm bound).
    pub fn unbounded_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.bounds.is_none())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The global scaling from the sum (or any positive multiple of the sum, such as a mean) of
    /// nodes' statistics vectors.
    pub fn scaling_from_sum(&self, sum: &[f32]) -> Result<FeatureScaling, DataError> {
        let fail = |reason: String| Err(DataError::Statistics { reason });
        if sum.len() != self.dimension() {
            return fail(format!(
                "the aggregate holds {} values, the layout {}",
                sum.len(),
                self.dimension()
            ));
        }
        if let Some(bad) = sum.iter().find(|v| !v.is_finite()) {
            return fail(format!("the aggregate holds {bad}"));
        }
        let count = f64::from(sum[0]);
        // The count is in the same units as the rest, so only ratios matter; a count that
        // noise pushed to (or below) zero leaves nothing to divide by.
        if count <= 0.0 {
            return fail(format!(
                "the aggregated count is {count}: no node's statistics reached the sum"
            ));
        }
        let columns = self
            .columns
            .iter()
            .zip(sum[1..].chunks_exact(2))
            .map(|(column, pair)| {
                let mean = f64::from(pair[0]) / count;
                let mean_square = f64::from(pair[1]) / count;
                let variance = mean_square - mean * mean;
                let (mean, std) = match column.bounds {
                    Some([min, max]) => {
                        let width = f64::from(max) - f64::from(min);
                        let std = variance.max(0.0).sqrt().max(MIN_BOUNDED_STD);
                        (f64::from(min) + mean.clamp(0.0, 1.0) * width, std * width)
                    }
                    // A constant column is centred and left unscaled, as local scaling does.
                    None if variance > 0.0 => (mean, variance.sqrt()),
                    None => (mean, 1.0),
                };
                ColumnScaling {
                    name: column.name.clone(),
                    mean,
                    std,
                }
            })
            .collect();
        Ok(FeatureScaling { columns })
    }

    /// One node's statistics vector over `rows` of `table` (see the module documentation):
    /// `[1, mean₁, mean square₁, …] / √dimension`, each value clamped and mapped onto [0, 1]
    /// when its column has bounds. A node without rows contributes zeros.
    ///
    /// # Errors
    ///
    /// If the table's schema lacks one of the layout's columns (a layout of another schema).
    pub fn node_statistics(&self, table: &Table, rows: &[usize]) -> Result<Vec<f32>, DataError> {
        let stored: Vec<usize> = self
            .columns
            .iter()
            .map(|column| {
                table
                    .numeric_position(&column.name)
                    .ok_or_else(|| DataError::Statistics {
                        reason: format!(
                            "{} has no numeric column \"{}\"",
                            table.source(),
                            column.name
                        ),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut out = vec![0.0f32; self.dimension()];
        if rows.is_empty() {
            return Ok(out);
        }
        let n = rows.len() as f64;
        let norm = (self.dimension() as f64).sqrt();
        out[0] = (1.0 / norm) as f32;
        for (j, (column, &position)) in self.columns.iter().zip(&stored).enumerate() {
            let (mut sum, mut sum_square) = (0.0f64, 0.0f64);
            for &row in rows {
                let value = f64::from(table.numeric_value(row, position));
                let value = match column.bounds {
                    Some([min, max]) => {
                        let (min, max) = (f64::from(min), f64::from(max));
                        (value.clamp(min, max) - min) / (max - min)
                    }
                    None => value,
                };
                sum += value;
                sum_square += value * value;
            }
            out[1 + 2 * j] = (sum / n / norm) as f32;
            out[2 + 2 * j] = (sum_square / n / norm) as f32;
        }
        Ok(out)
    }
}

/// The mean and deviation every node standardises a column with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnScaling {
    /// The column.
    pub name: String,
    /// Subtracted from every value.
    pub mean: f64,
    /// Divides every centred value; positive.
    pub std: f64,
}

/// The scaling of every federated-standardised column, in storage order: what the publisher
/// derives from the statistics phase, signs onto the ledger, and sends with every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureScaling {
    /// One entry per standardised column.
    pub columns: Vec<ColumnScaling>,
}

impl FeatureScaling {
    /// The canonical text recorded on the ledger (its hash is what rounds name): compact JSON,
    /// fields in declaration order, floats in shortest round-trip form.
    pub fn to_canonical_json(&self) -> String {
        // Serialising plain structs of strings and finite floats cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a scaling from its canonical text, checking every mean is finite and every
    /// deviation finite and positive.
    pub fn from_json(text: &str) -> Result<FeatureScaling, DataError> {
        let scaling: FeatureScaling =
            serde_json::from_str(text).map_err(|e| DataError::Statistics {
                reason: format!("unreadable scaling: {e}"),
            })?;
        for column in &scaling.columns {
            if !(column.mean.is_finite() && column.std.is_finite() && column.std > 0.0) {
                return Err(DataError::Statistics {
                    reason: format!(
                        "column \"{}\" has mean {} and deviation {}; both must be finite and the deviation positive",
                        column.name, column.mean, column.std
                    ),
                });
            }
        }
        Ok(scaling)
    }

    /// Checks the scaling covers exactly the columns of `layout`, in order.
    pub fn check_layout(&self, layout: &StatisticsLayout) -> Result<(), DataError> {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        let expected: Vec<&str> = layout.column_names().collect();
        if names == expected {
            Ok(())
        } else {
            Err(DataError::Statistics {
                reason: format!(
                    "the scaling covers columns {names:?}, the schema standardises {expected:?}"
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::schema::{ColumnSpec, LabelKind, LabelSpec};

    /// Two standardised columns (`a` unbounded, `b` bounded to [0, 10]), a range column `r`
    /// and a categorical `c`.
    fn schema(local_standardize: bool) -> Schema {
        let numeric = |name: &str, scaling| ColumnSpec {
            name: name.into(),
            kind: ColumnKind::Numeric { scaling },
        };
        Schema {
            label: LabelSpec {
                name: "y".into(),
                kind: LabelKind::Categorical {
                    classes: vec!["n".into(), "p".into()],
                },
            },
            columns: vec![
                numeric("a", Scaling::Standardize { bounds: None }),
                numeric("r", Scaling::Range { min: 0.0, max: 4.0 }),
                ColumnSpec {
                    name: "c".into(),
                    kind: ColumnKind::Categorical {
                        categories: vec!["u".into(), "v".into()],
                    },
                },
                numeric(
                    "b",
                    Scaling::Standardize {
                        bounds: Some([0.0, 10.0]),
                    },
                ),
            ],
            column_ranges: vec![],
            local_standardize,
        }
    }

    fn table() -> Table {
        // Node 1 holds rows 0..4 (all class n), node 2 rows 4..8 (all class p): label skew.
        let csv = "a,r,c,b,y\n\
                   1,0,u,1,n\n2,1,v,2,n\n3,2,u,3,n\n4,3,v,4,n\n\
                   11,0,u,6,p\n12,1,v,7,p\n13,2,u,8,p\n14,4,v,25,p\n";
        Table::from_csv(csv.as_bytes(), "skew.csv", &schema(false), &[]).unwrap()
    }

    fn sum(vectors: &[Vec<f32>]) -> Vec<f32> {
        let mut out = vec![0.0; vectors[0].len()];
        for v in vectors {
            out.iter_mut().zip(v).for_each(|(o, x)| *o += x);
        }
        out
    }

    #[test]
    fn only_standardised_columns_are_federated_and_local_scaling_federates_nothing() {
        let layout = StatisticsLayout::of(&schema(false)).unwrap();
        assert_eq!(layout.column_names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(layout.dimension(), 5);
        assert_eq!(layout.unbounded_columns(), ["a"]);
        assert_eq!(StatisticsLayout::of(&schema(true)), None);
    }

    #[test]
    fn the_summed_statistics_of_equal_nodes_give_the_global_mean_and_deviation() {
        let table = table();
        let layout = StatisticsLayout::of(table.schema()).unwrap();
        let nodes: Vec<Vec<f32>> = [[0, 1, 2, 3], [4, 5, 6, 7]]
            .iter()
            .map(|rows| layout.node_statistics(&table, rows).unwrap())
            .collect();
        let scaling = layout.scaling_from_sum(&sum(&nodes)).unwrap();
        // `a` over all 8 rows: mean 7.5, population deviation √(1/8 Σ (a − 7.5)²).
        let a: Vec<f64> = vec![1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0];
        let std = (a.iter().map(|x| (x - 7.5).powi(2)).sum::<f64>() / 8.0).sqrt();
        assert!((scaling.columns[0].mean - 7.5).abs() < 1e-5, "{scaling:?}");
        assert!((scaling.columns[0].std - std).abs() < 1e-4, "{scaling:?}");
        // `b` is clamped into [0, 10] for the statistics: 25 counts as 10.
        let b: Vec<f64> = vec![1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 10.0];
        let mean = b.iter().sum::<f64>() / 8.0;
        let std = (b.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 8.0).sqrt();
        assert!((scaling.columns[1].mean - mean).abs() < 1e-4, "{scaling:?}");
        assert!((scaling.columns[1].std - std).abs() < 1e-4, "{scaling:?}");
        // Any positive multiple of the sum (a mean, a secure sum's scale) gives the same.
        let halved: Vec<f32> = sum(&nodes).iter().map(|v| v / 2.0).collect();
        let again = layout.scaling_from_sum(&halved).unwrap();
        assert!((again.columns[0].std - scaling.columns[0].std).abs() < 1e-4);
    }

    #[test]
    fn federated_scaling_keeps_the_signal_that_local_scaling_erases_under_label_skew() {
        let table = table();
        let layout = StatisticsLayout::of(table.schema()).unwrap();
        let (node_n, node_p) = ([0, 1, 2, 3], [4, 5, 6, 7]);
        let nodes: Vec<Vec<f32>> = [node_n, node_p]
            .iter()
            .map(|rows| layout.node_statistics(&table, rows).unwrap())
            .collect();
        let scaling = layout.scaling_from_sum(&sum(&nodes)).unwrap();
        let mean_a = |data: &Dataset| -> f32 {
            let width = data.n_features;
            (0..data.n_rows())
                .map(|r| data.features[r * width])
                .sum::<f32>()
                / 4.0
        };
        // Locally each node centres its own class onto zero; globally the classes stay apart.
        let (local_n, local_p) = (table.encode(&node_n), table.encode(&node_p));
        assert!(mean_a(&local_n).abs() < 1e-6 && mean_a(&local_p).abs() < 1e-6);
        let global_n = table.encode_scaled(&node_n, &scaling).unwrap();
        let global_p = table.encode_scaled(&node_p, &scaling).unwrap();
        assert!(mean_a(&global_n) < -0.9 && mean_a(&global_p) > 0.9);
        // Range and categorical columns encode as before.
        assert_eq!(global_n.features[1..4], local_n.features[1..4]);
    }

    #[test]
    fn a_bounded_nodes_vector_has_norm_at_most_one() {
        let table = table();
        let layout = StatisticsLayout::of(&Schema {
            columns: vec![ColumnSpec {
                name: "b".into(),
                kind: ColumnKind::Numeric {
                    scaling: Scaling::Standardize {
                        bounds: Some([0.0, 5.0]),
                    },
                },
            }],
            ..schema(false)
        })
        .unwrap();
        for rows in [vec![7], vec![4, 5, 6, 7], (0..8).collect()] {
            let v = layout.node_statistics(&table, &rows).unwrap();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(norm <= 1.0 + 1e-6, "{v:?}");
        }
        assert_eq!(layout.node_statistics(&table, &[]).unwrap(), vec![0.0; 3]);
    }

    #[test]
    fn unusable_aggregates_and_scalings_are_errors_that_say_why() {
        let table = table();
        let layout = StatisticsLayout::of(table.schema()).unwrap();
        let err = layout.scaling_from_sum(&[1.0; 3]).unwrap_err().to_string();
        assert!(err.contains("3 values, the layout 5"), "{err}");
        let err = layout
            .scaling_from_sum(&[-0.5, 0.1, 0.1, 0.1, 0.1])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no node's statistics reached the sum"),
            "{err}"
        );
        let err = layout
            .scaling_from_sum(&[1.0, f32::NAN, 0.0, 0.0, 0.0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{err}");
        // Noise can drive a bounded column's variance negative: the deviation is floored.
        let scaling = layout.scaling_from_sum(&[1.0, 3.0, 9.0, 0.5, 0.1]).unwrap();
        assert_eq!(
            scaling.columns[0].std, 1.0,
            "a constant unbounded column is unscaled"
        );
        assert!((scaling.columns[1].std - MIN_BOUNDED_STD * 10.0).abs() < 1e-9);

        let json = scaling.to_canonical_json();
        assert_eq!(FeatureScaling::from_json(&json).unwrap(), scaling);
        let bad = json.replacen("\"std\":1.0", "\"std\":0.0", 1);
        let err = FeatureScaling::from_json(&bad).unwrap_err().to_string();
        assert!(
            err.contains("column \"a\"") && err.contains("positive"),
            "{err}"
        );
        let wrong = FeatureScaling {
            columns: scaling.columns[..1].to_vec(),
        };
        let err = table.encode_scaled(&[0], &wrong).unwrap_err().to_string();
        assert!(
            err.contains("[\"a\"]") && err.contains("[\"a\", \"b\"]"),
            "{err}"
        );
    }
}
