//! fedpool's data layer: the schema a contract requires, validated loading of CSV and IDX files
//! into [`Table`]s, encoding a node's rows into a [`Dataset`], and seeded federated partitions.
//!
//! The flow for a simulation:
//!
//! 1. [`Table::from_csv`] (or [`Table::from_idx`]) parses and validates every row against the
//!    contract's [`Schema`]; a bad cell is a [`DataError`] naming the file, line and column.
//! 2. [`train_test_split`] holds out test rows, stratified by class.
//! 3. [`partition_rows`] deals the training rows to simulated clients by a [`Partition`]
//!    (`iid`, `dirichlet:<alpha>`, `shards:<k>`, `column:<name>`).
//! 4. [`Table::encode`] turns each client's rows into a [`Dataset`], standardising with that
//!    client's own statistics; [`Table::encode_scaled`] standardises with federated statistics
//!    instead ([`StatisticsLayout`]: each node's contribution, and the [`FeatureScaling`]
//!    derived from their sum).
//!
//! ```
//! use fedpool_data::{
//!     ColumnKind, ColumnSpec, LabelKind, LabelSpec, Partition, Scaling, Schema, Table,
//!     partition_rows, train_test_split,
//! };
//! use rand::SeedableRng;
//!
//! let schema = Schema {
//!     label: LabelSpec {
//!         name: "y".into(),
//!         kind: LabelKind::Categorical { classes: vec!["no".into(), "yes".into()] },
//!     },
//!     columns: vec![ColumnSpec {
//!         name: "x".into(),
//!         kind: ColumnKind::Numeric { scaling: Scaling::Standardize { bounds: None } },
//!     }],
//!     column_ranges: vec![],
//!     local_standardize: true,
//! };
//! let csv = "site,x,y\na,1,no\na,2,yes\nb,3,no\nb,4,yes\nc,5,no\nc,6,yes\n";
//! let table = Table::from_csv(csv.as_bytes(), "toy.csv", &schema, &["site"])?;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let (train, test) = train_test_split(&table, 0.5, &mut rng)?;
//! assert_eq!((train.len(), test.len()), (3, 3));
//!
//! let by_site: Partition = "column:site".parse()?;
//! let clients = partition_rows(&by_site, &(0..6).collect::<Vec<_>>(), &table, 0, &mut rng)?;
//! assert_eq!(clients, [vec![0, 1], vec![2, 3], vec![4, 5]]);
//!
//! let client_data = table.encode(&clients[0]);
//! assert_eq!(client_data.features, [-1.0, 1.0]);
//!
//! let bad = Table::from_csv("x,y\n1,no\nabc,yes\n".as_bytes(), "toy.csv", &schema, &[]);
//! assert_eq!(
//!     bad.unwrap_err().to_string(),
//!     "toy.csv line 3, column \"x\": expected a number, found \"abc\"",
//! );
//! # Ok::<(), fedpool_data::DataError>(())
//! ```
//!
//! Architecture invariant: no file system access. Loaders take any `Read` plus a source name used
//! in error messages; callers open files (and decompress them).
#![deny(missing_docs)]

mod dataset;
mod error;
mod partition;
mod schema;
mod sniff;
mod split;
mod statistics;
mod table;
#[cfg(test)]
mod test_support;

pub use dataset::{Dataset, Targets};
pub use error::{ColumnRole, DataError, IdxPart};
pub use partition::{MAX_DIRICHLET_ATTEMPTS, Partition, column_client_values, partition_rows};
pub use schema::{ColumnKind, ColumnRange, ColumnSpec, LabelKind, LabelSpec, Scaling, Schema};
pub use sniff::{CsvSummary, SniffedColumn, SniffedType, sniff_csv};
pub use split::train_test_split;
pub use statistics::{ColumnScaling, FeatureScaling, MIN_BOUNDED_STD, StatisticsLayout};
pub use table::Table;
