//! Describing a local CSV without a schema: its columns, their apparent types and its size.
//!
//! A data owner registers a dataset before any contract exists, so the node needs to know what
//! the file holds (to check a contract's required columns at consent time) without keeping or
//! publishing any row.

use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};
use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The apparent type of a column, judged from every cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SniffedType {
    /// Every non-empty cell parses as a finite number.
    Numeric,
    /// Some cell is not a number.
    Categorical,
}

/// One column of a described CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SniffedColumn {
    /// Header name.
    pub name: String,
    /// Apparent type.
    #[serde(rename = "type")]
    pub kind: SniffedType,
    /// Number of empty cells.
    pub n_empty: usize,
}

/// What a CSV holds, without its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvSummary {
    /// Columns in header order.
    pub columns: Vec<SniffedColumn>,
    /// Data rows (header excluded).
    pub n_rows: usize,
}

impl CsvSummary {
    /// The column with this name, if present.
    pub fn column(&self, name: &str) -> Option<&SniffedColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Reads a whole CSV (header first) and summarises its columns. `source` names the file in
/// errors; ragged rows and empty files are errors.
pub fn sniff_csv<R: Read>(reader: R, source: &str) -> Result<CsvSummary, DataError> {
    let file = source.to_string();
    let mut csv_reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = ByteRecord::new();
    let csv_error = |source| DataError::Csv {
        file: file.clone(),
        source,
    };
    if !csv_reader
        .read_byte_record(&mut record)
        .map_err(csv_error)?
    {
        return Err(DataError::NoHeader { file });
    }
    let mut columns: Vec<SniffedColumn> = record
        .iter()
        .map(|name| SniffedColumn {
            name: String::from_utf8_lossy(name.trim_ascii()).into_owned(),
            kind: SniffedType::Numeric,
            n_empty: 0,
        })
        .collect();
    let mut n_rows = 0usize;
    loop {
        let more = csv_reader
            .read_byte_record(&mut record)
            .map_err(csv_error)?;
        if !more {
            break;
        }
        // Blank lines carry no row.
        if record.len() == 1 && record[0].trim_ascii().is_empty() {
            continue;
        }
        n_rows += 1;
        if record.len() != columns.len() {
            return Err(DataError::WrongFieldCount {
                file,
                line: record.position().map_or(0, |p| p.line()),
                expected: columns.len(),
                found: record.len(),
            });
        }
        for (column, cell) in columns.iter_mut().zip(record.iter()) {
            let cell = cell.trim_ascii();
            if cell.is_empty() {
                column.n_empty += 1;
            } else if column.kind == SniffedType::Numeric && !is_finite_number(cell) {
                column.kind = SniffedType::Categorical;
            }
        }
    }
    if n_rows == 0 {
        return Err(DataError::NoRows { file });
    }
    Ok(CsvSummary { columns, n_rows })
}

fn is_finite_number(cell: &[u8]) -> bool {
    std::str::from_utf8(cell)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_types_empties_and_rows() {
        let csv = "age,colour,score\n30,red,1.5\n41,blue,\n\n29,7,2\n";
        let summary = sniff_csv(csv.as_bytes(), "t.csv").unwrap();
        assert_eq!(summary.n_rows, 3);
        assert_eq!(summary.column("age").unwrap().kind, SniffedType::Numeric);
        assert_eq!(
            summary.column("colour").unwrap().kind,
            SniffedType::Categorical
        );
        let score = summary.column("score").unwrap();
        assert_eq!((score.kind, score.n_empty), (SniffedType::Numeric, 1));
    }

    #[test]
    fn nan_makes_a_column_categorical() {
        let summary = sniff_csv("a\n1\nNaN\n".as_bytes(), "t.csv").unwrap();
        assert_eq!(summary.columns[0].kind, SniffedType::Categorical);
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let err = sniff_csv("".as_bytes(), "t.csv").unwrap_err().to_string();
        assert!(err.contains("t.csv") && err.contains("empty"), "{err}");
        let err = sniff_csv("a,b\n".as_bytes(), "t.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no data rows"), "{err}");
        let err = sniff_csv("a,b\n1,2\n3\n".as_bytes(), "t.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("expected 2 fields"),
            "{err}"
        );
    }
}
