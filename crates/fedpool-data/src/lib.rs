//! fedpool's data layer: the schema a contract requires, validated loading of CSV and IDX files
//! into [`Table`]s, encoding a node's rows into a [`Dataset`], and seeded federated partitions.
//!
//! Architecture invariant: no file system access. Loaders take any `Read` plus a source name used
//! in error messages; callers open files.
#![deny(missing_docs)]

mod dataset;
mod error;
mod schema;

pub use dataset::{Dataset, Targets};
pub use error::{ColumnRole, DataError, IdxPart};
pub use schema::{ColumnKind, ColumnRange, ColumnSpec, LabelKind, LabelSpec, Scaling, Schema};
