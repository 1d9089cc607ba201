//! The crate's one error type.
//!
//! Every variant carries the *where*: the data file's name as the caller gave it, and for cell
//! problems the 1-based line (the header is line 1) and the column name, so a message reads like
//! `digits.csv line 14, column "p3": expected a number, found "abc"`. Causes (I/O errors) are
//! kept as `source()` rather than pasted into the message, so the CLI can print the chain.

use std::fmt;

/// Anything that can go wrong loading, validating, splitting or partitioning data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The input holds no header line at all.
    #[error("{file}: the file is empty (no header line)")]
    NoHeader {
        /// Data file name.
        file: String,
    },

    /// The header is present but no data rows follow it.
    #[error("{file}: the header is present but there are no data rows")]
    NoRows {
        /// Data file name.
        file: String,
    },

    /// A column the schema (or the caller) needs is not in the header.
    #[error(
        "{file} line {line}: column \"{column}\" is required by {role} but is not in the header \
         (the header has {header})"
    )]
    MissingColumn {
        /// Data file name.
        file: String,
        /// Line of the header.
        line: u64,
        /// The missing column.
        column: String,
        /// Who needs the column.
        role: ColumnRole,
        /// The header's column names, quoted and truncated if long.
        header: String,
    },

    /// A column the loader reads appears twice in the header, so which one is meant is ambiguous.
    #[error("{file} line {line}: column \"{column}\" appears more than once in the header")]
    DuplicateColumn {
        /// Data file name.
        file: String,
        /// Line of the header.
        line: u64,
        /// The repeated column.
        column: String,
    },

    /// A row has a different number of fields than the header.
    #[error(
        "{file} line {line}: expected {expected} fields (as many as the header), found {found}"
    )]
    WrongFieldCount {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Number of header fields.
        expected: usize,
        /// Number of fields in this row.
        found: usize,
    },

    /// A cell the schema reads is empty (or only whitespace).
    #[error("{file} line {line}, column \"{column}\": empty cell")]
    EmptyCell {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
    },

    /// A numeric column holds something that does not parse as a number.
    #[error("{file} line {line}, column \"{column}\": expected a number, found \"{found}\"")]
    NotANumber {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
        /// The cell as written (truncated if long).
        found: String,
    },

    /// A numeric cell parses, but as NaN or an infinity, which no model can train on.
    #[error("{file} line {line}, column \"{column}\": \"{found}\" is not a finite number")]
    NonFinite {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
        /// The cell as written.
        found: String,
    },

    /// A numeric cell holds a finite number beyond what an `f32` holds (±3.4e38).
    #[error("{file} line {line}, column \"{column}\": \"{found}\" exceeds the f32 range (±3.4e38)")]
    OutOfRange {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
        /// The cell as written.
        found: String,
    },

    /// A label that is not one of the schema's classes.
    #[error(
        "{file} line {line}, column \"{column}\": unknown label \"{found}\"; the schema's classes \
         are {allowed}"
    )]
    UnknownLabel {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Label column name.
        column: String,
        /// The cell as written (truncated if long).
        found: String,
        /// The schema's classes, quoted and truncated if long.
        allowed: String,
    },

    /// A categorical feature value that is not one of the schema's categories.
    #[error(
        "{file} line {line}, column \"{column}\": unknown category \"{found}\"; the schema allows \
         {allowed}"
    )]
    UnknownCategory {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
        /// The cell as written (truncated if long).
        found: String,
        /// The schema's categories, quoted and truncated if long.
        allowed: String,
    },

    /// A text cell (categorical or kept) is not valid UTF-8.
    #[error("{file} line {line}, column \"{column}\": the cell is not valid UTF-8")]
    InvalidUtf8 {
        /// Data file name.
        file: String,
        /// Line of the row.
        line: u64,
        /// Column name.
        column: String,
    },

    /// The CSV reader failed (an I/O error from the underlying reader).
    #[error("{file}: cannot read CSV")]
    Csv {
        /// Data file name.
        file: String,
        /// The reader's error.
        source: csv::Error,
    },

    /// Reading an IDX stream failed with an I/O error other than a short read.
    #[error("{file} ({part}): read failed")]
    Io {
        /// Data file name.
        file: String,
        /// Which of the two IDX streams.
        part: IdxPart,
        /// The reader's error.
        source: std::io::Error,
    },

    /// An IDX stream does not start with the magic number of its kind.
    #[error(
        "{file} ({part}): not an IDX {part} file: magic number is {found:#010x}, expected \
         {expected:#010x}"
    )]
    IdxBadMagic {
        /// Data file name.
        file: String,
        /// Which of the two IDX streams.
        part: IdxPart,
        /// The magic number required.
        expected: u32,
        /// The first four bytes, big-endian.
        found: u32,
    },

    /// An IDX stream ends before the header or the items it declares.
    #[error(
        "{file} ({part}): truncated: expected {expected_bytes} bytes of {what}, found {found_bytes}"
    )]
    IdxTruncated {
        /// Data file name.
        file: String,
        /// Which of the two IDX streams.
        part: IdxPart,
        /// What was being read (`header` or `items`).
        what: &'static str,
        /// Bytes the header promises.
        expected_bytes: u64,
        /// Bytes actually present.
        found_bytes: u64,
    },

    /// An IDX stream has bytes after the items its header declares, so the header is wrong.
    #[error("{file} ({part}): unexpected bytes after the {n_items} items the header declares")]
    IdxTrailingBytes {
        /// Data file name.
        file: String,
        /// Which of the two IDX streams.
        part: IdxPart,
        /// Items the header declares.
        n_items: u64,
    },

    /// The images and labels streams declare different item counts.
    #[error(
        "{file}: the images file holds {n_images} images but the labels file {n_labels} labels"
    )]
    IdxCountMismatch {
        /// Data file name.
        file: String,
        /// Images declared.
        n_images: u64,
        /// Labels declared.
        n_labels: u64,
    },

    /// IDX data whose shape or labels the schema cannot describe.
    #[error("{file}: the IDX data does not fit the schema: {reason}")]
    IdxSchemaMismatch {
        /// Data file name.
        file: String,
        /// What does not fit.
        reason: String,
    },

    /// An IDX label byte that names none of the schema's classes.
    #[error(
        "{file} (labels) item {item}: unknown label \"{found}\"; the schema's classes are {allowed}"
    )]
    IdxUnknownLabel {
        /// Data file name.
        file: String,
        /// 0-based item index (IDX files have no lines).
        item: u64,
        /// The label byte.
        found: u8,
        /// The schema's classes, quoted and truncated if long.
        allowed: String,
    },

    /// The schema contradicts itself (duplicate names, empty class list, empty range …).
    ///
    /// The schema comes from a contract, so the caller names the contract file.
    #[error("invalid schema: {reason}")]
    InvalidSchema {
        /// What is wrong.
        reason: String,
    },

    /// Federated statistics that cannot be used (an aggregate of the wrong length, a count
    /// noise drove to zero, a scaling for other columns).
    #[error("federated statistics: {reason}")]
    Statistics {
        /// What is wrong.
        reason: String,
    },

    /// A partition spec string that does not parse.
    #[error(
        "bad partition \"{spec}\": {reason}; expected one of iid, dirichlet:<alpha>, \
         shards:<shards per client>, column:<name>"
    )]
    BadPartitionSpec {
        /// The spec as given.
        spec: String,
        /// Which part is wrong and why.
        reason: String,
    },

    /// A partition that is well-formed but cannot be carried out on these rows.
    #[error("{file}: cannot partition with {partition}: {reason}")]
    ImpossiblePartition {
        /// Data file name.
        file: String,
        /// The partition, in spec syntax.
        partition: String,
        /// Why not (e.g. fewer rows than clients).
        reason: String,
    },

    /// A label-skew partition asked of a regression table.
    #[error(
        "{file}: partition {partition} needs class labels, but the label column \"{label}\" is \
         numeric (regression)"
    )]
    PartitionNeedsClasses {
        /// Data file name.
        file: String,
        /// The partition, in spec syntax.
        partition: String,
        /// The label column.
        label: String,
    },

    /// A column partition names a column that was not kept when the table was loaded.
    #[error(
        "{file}: partition column \"{column}\" was not kept when the table was loaded (kept \
         columns: {kept})"
    )]
    PartitionColumnNotKept {
        /// Data file name.
        file: String,
        /// The requested column.
        column: String,
        /// The kept columns, quoted, or `none`.
        kept: String,
    },

    /// A train/test split fraction outside `[0, 1]`.
    #[error("{file}: test fraction {value} is not between 0 and 1")]
    BadTestFraction {
        /// Data file name.
        file: String,
        /// The fraction given.
        value: f64,
    },
}

/// Who requires a column, for [`DataError::MissingColumn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// A feature column of the schema.
    Feature,
    /// The schema's label column.
    Label,
    /// A column the caller asked to keep (for a natural partition).
    Kept,
}

impl fmt::Display for ColumnRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnRole::Feature => "the schema as a feature",
            ColumnRole::Label => "the schema as the label",
            ColumnRole::Kept => "the caller as a kept column",
        })
    }
}

/// Which of the two IDX streams an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxPart {
    /// The `idx3-ubyte` images stream.
    Images,
    /// The `idx1-ubyte` labels stream.
    Labels,
}

impl fmt::Display for IdxPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdxPart::Images => "images",
            IdxPart::Labels => "labels",
        })
    }
}

/// Longest cell text quoted in a message; a corrupt file can hold a megabyte "cell".
const MAX_SHOWN_CHARS: usize = 40;

/// Most list items quoted in a message before `… and N more`.
const MAX_SHOWN_ITEMS: usize = 12;

/// A cell as it appears in a message: lossy UTF-8, truncated.
pub(crate) fn shown_cell(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(MAX_SHOWN_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// A list of names as it appears in a message: quoted, comma separated, truncated if long.
pub(crate) fn shown_list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    let mut out = items
        .iter()
        .take(MAX_SHOWN_ITEMS)
        .map(|item| format!("\"{}\"", shown_cell(item.as_ref().as_bytes())))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_SHOWN_ITEMS {
        out.push_str(&format!(" … and {} more", items.len() - MAX_SHOWN_ITEMS));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_and_cells_are_truncated() {
        let classes: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(
            shown_list(&classes),
            "\"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\", \"9\", \"10\", \"11\" \
             … and 8 more"
        );
        assert_eq!(shown_list::<&str>(&[]), "none");
        let long = "x".repeat(100);
        assert_eq!(shown_cell(long.as_bytes()), format!("{}…", "x".repeat(40)));
        assert_eq!(shown_cell(b"\xff1"), "\u{fffd}1");
    }
}
