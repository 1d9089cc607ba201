//! Loading a [`Table`] from CSV.

use std::collections::{HashMap, VecDeque};
use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};

use super::{EncodePlan, KeptColumn, Labels, Table};
use crate::error::{ColumnRole, DataError, shown_cell, shown_list};
use crate::schema::{ColumnKind, LabelKind, Schema};

impl Table {
    /// Parses CSV with a header line and validates every row against `schema`.
    ///
    /// Columns may come in any order and columns the schema does not name are ignored, except
    /// those in `keep_columns`, whose raw values are kept (see [`Table::column`]) for natural
    /// partitions; a kept column may also be a feature or the label. Cells are trimmed of
    /// surrounding ASCII whitespace. `source` is the file name used in errors; every error names
    /// it, the 1-based line (header = line 1) and the column.
    ///
    /// Numeric cells are parsed from bytes without allocating, so a 60,000 × 784 pixel file
    /// loads in seconds in release builds.
    pub fn from_csv<R: Read>(
        reader: R,
        source: &str,
        schema: &Schema,
        keep_columns: &[&str],
    ) -> Result<Table, DataError> {
        schema.validate()?;
        let file = source.to_string();
        let plan = EncodePlan::new(schema);
        let mut csv_reader = ReaderBuilder::new()
            .has_headers(false)
            // Row length is checked here so the error can name the file and line.
            .flexible(true)
            .from_reader(LineTracker::new(reader));

        let mut record = ByteRecord::new();
        let has_header =
            csv_reader
                .read_byte_record(&mut record)
                .map_err(|source| DataError::Csv {
                    file: file.clone(),
                    source,
                })?;
        if !has_header {
            return Err(DataError::NoHeader { file });
        }
        let header_line = line_of(&mut csv_reader, &record);
        let header: Vec<String> = record
            .iter()
            .map(|name| String::from_utf8_lossy(name.trim_ascii()).into_owned())
            .collect();
        let layout = Layout::new(schema, keep_columns, &header, &file, header_line)?;

        let mut numeric = Vec::new();
        let mut categorical = Vec::new();
        let mut class_labels: Vec<u32> = Vec::new();
        let mut real_labels: Vec<f32> = Vec::new();
        let mut kept: Vec<KeptColumn> = layout
            .kept_names
            .iter()
            .map(|name| KeptColumn {
                name: name.clone(),
                values: Vec::new(),
            })
            .collect();
        let mut n_rows = 0usize;
        loop {
            let more =
                csv_reader
                    .read_byte_record(&mut record)
                    .map_err(|source| DataError::Csv {
                        file: file.clone(),
                        source,
                    })?;
            if !more {
                break;
            }
            let line = line_of(&mut csv_reader, &record);
            if record.len() != header.len() {
                return Err(DataError::WrongFieldCount {
                    file,
                    line,
                    expected: header.len(),
                    found: record.len(),
                });
            }
            let numeric_start = numeric.len();
            numeric.resize(numeric_start + plan.n_numeric, 0.0f32);
            let categorical_start = categorical.len();
            categorical.resize(categorical_start + plan.n_categorical, 0u32);
            for (position, (raw, action)) in record.iter().zip(&layout.by_position).enumerate() {
                let cell = raw.trim_ascii();
                let at = || CellAt {
                    file: &file,
                    line,
                    column: &header[position],
                };
                match *action {
                    Action::Skip => {}
                    Action::Numeric(j) => {
                        numeric[numeric_start + j] = match small_unsigned(cell) {
                            Some(value) => value,
                            None => parse_cell(cell, at())?,
                        };
                    }
                    Action::Categorical(c) => {
                        categorical[categorical_start + c] =
                            layout.categorical[c].lookup(cell, at(), false)?;
                    }
                    Action::LabelClass => {
                        class_labels.push(layout.label_classes.lookup(cell, at(), true)?);
                    }
                    Action::LabelReal => real_labels.push(parse_cell(cell, at())?),
                }
            }
            for (column, &position) in kept.iter_mut().zip(&layout.kept_positions) {
                let cell = record.get(position).unwrap_or_default().trim_ascii();
                let text = std::str::from_utf8(cell).map_err(|_| {
                    CellAt {
                        file: &file,
                        line,
                        column: &header[position],
                    }
                    .invalid_utf8()
                })?;
                column.values.push(text.to_string());
            }
            n_rows += 1;
        }
        if n_rows == 0 {
            return Err(DataError::NoRows { file });
        }
        let labels = match &schema.label.kind {
            LabelKind::Categorical { .. } => Labels::Classes(class_labels),
            LabelKind::Numeric => Labels::Real(real_labels),
        };
        Ok(Table {
            file,
            schema: schema.clone(),
            plan,
            n_rows,
            numeric,
            categorical,
            labels,
            kept,
        })
    }
}

/// Which header position feeds which stored value.
struct Layout {
    /// What to do with each header position; walking the record in order keeps the hot loop
    /// free of lookups and reports the leftmost bad cell first.
    by_position: Vec<Action>,
    /// Header position of each kept column (which may also be read as a feature or label).
    kept_positions: Vec<usize>,
    categorical: Vec<CategoryLookup>,
    /// Empty for a numeric label.
    label_classes: CategoryLookup,
    kept_names: Vec<String>,
}

#[derive(Clone, Copy)]
enum Action {
    Skip,
    Numeric(usize),
    Categorical(usize),
    LabelClass,
    LabelReal,
}

impl Layout {
    fn new(
        schema: &Schema,
        keep_columns: &[&str],
        header: &[String],
        file: &str,
        header_line: u64,
    ) -> Result<Layout, DataError> {
        let mut first_position: HashMap<&str, usize> = HashMap::with_capacity(header.len());
        let mut repeated: Vec<&str> = Vec::new();
        for (position, name) in header.iter().enumerate() {
            if first_position.insert(name, position).is_some() {
                repeated.push(name);
            }
        }
        // Only a repeated column we read is ambiguous; repeats among ignored columns are harmless.
        let find = |name: &str, role: ColumnRole| -> Result<usize, DataError> {
            if repeated.contains(&name) {
                return Err(DataError::DuplicateColumn {
                    file: file.to_string(),
                    line: header_line,
                    column: name.to_string(),
                });
            }
            // `insert` above keeps the last position; with no repeats it is the only one.
            first_position
                .get(name)
                .copied()
                .ok_or_else(|| DataError::MissingColumn {
                    file: file.to_string(),
                    line: header_line,
                    column: name.to_string(),
                    role,
                    header: shown_list(header),
                })
        };

        let mut by_position = vec![Action::Skip; header.len()];
        let mut categorical = Vec::new();
        let mut n_numeric = 0;
        for column in schema.feature_columns() {
            let position = find(&column.name, ColumnRole::Feature)?;
            let action = match &column.kind {
                ColumnKind::Numeric { .. } => {
                    n_numeric += 1;
                    Action::Numeric(n_numeric - 1)
                }
                ColumnKind::Categorical { categories } => {
                    categorical.push(CategoryLookup::new(categories));
                    Action::Categorical(categorical.len() - 1)
                }
            };
            by_position[position] = action;
        }
        let label_position = find(&schema.label.name, ColumnRole::Label)?;
        let (action, label_classes) = match &schema.label.kind {
            LabelKind::Categorical { classes } => {
                (Action::LabelClass, CategoryLookup::new(classes))
            }
            LabelKind::Numeric => (Action::LabelReal, CategoryLookup::new(&[])),
        };
        by_position[label_position] = action;
        let mut kept_names: Vec<String> = Vec::new();
        let mut kept_positions = Vec::new();
        for &name in keep_columns {
            if kept_names.iter().any(|kept| kept == name) {
                continue;
            }
            kept_positions.push(find(name, ColumnRole::Kept)?);
            kept_names.push(name.to_string());
        }
        Ok(Layout {
            by_position,
            kept_positions,
            categorical,
            label_classes,
            kept_names,
        })
    }
}

/// Maps a cell's bytes to its index in a schema list of classes or categories.
struct CategoryLookup {
    index: HashMap<Vec<u8>, u32>,
    names: Vec<String>,
}

impl CategoryLookup {
    fn new(names: &[String]) -> CategoryLookup {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_bytes().to_vec(), i as u32))
            .collect();
        CategoryLookup {
            index,
            names: names.to_vec(),
        }
    }

    fn lookup(&self, cell: &[u8], at: CellAt<'_>, is_label: bool) -> Result<u32, DataError> {
        if let Some(&i) = self.index.get(cell) {
            return Ok(i);
        }
        if cell.is_empty() {
            return Err(at.empty());
        }
        let (file, line, column) = (at.file.to_string(), at.line, at.column.to_string());
        let found = shown_cell(cell);
        let allowed = shown_list(&self.names);
        Err(if is_label {
            DataError::UnknownLabel {
                file,
                line,
                column,
                found,
                allowed,
            }
        } else {
            DataError::UnknownCategory {
                file,
                line,
                column,
                found,
                allowed,
            }
        })
    }
}

/// The where of a cell, turned into an error only on failure (no allocation on the happy path).
#[derive(Clone, Copy)]
struct CellAt<'a> {
    file: &'a str,
    line: u64,
    column: &'a str,
}

impl CellAt<'_> {
    fn empty(self) -> DataError {
        DataError::EmptyCell {
            file: self.file.to_string(),
            line: self.line,
            column: self.column.to_string(),
        }
    }

    fn invalid_utf8(self) -> DataError {
        DataError::InvalidUtf8 {
            file: self.file.to_string(),
            line: self.line,
            column: self.column.to_string(),
        }
    }
}

/// The 1-based line on which `record` starts.
fn line_of<R: Read>(reader: &mut csv::Reader<LineTracker<R>>, record: &ByteRecord) -> u64 {
    let start_byte = record
        .position()
        .map_or(u64::MAX, |position| position.byte());
    reader.get_mut().line_at(start_byte)
}

/// Counts lines as the CSV parser reads, because the parser's own line numbers are wrong after
/// blank lines and CRLF endings (csv 1.4 reports the row after `a\r\n` as line 1), and an error
/// pointing at the wrong line sends the user to the wrong place in a large file.
///
/// The parser's record position is the byte after the previous record, which may precede blank
/// lines or the `\n` of a CRLF; a record's line is therefore the line of the first byte at or
/// after that position that is not a line ending. This reader remembers, for each line read
/// ahead of the parser, where its first such byte is; entries are dropped as records pass them,
/// so memory stays proportional to the read-ahead, not the file.
struct LineTracker<R> {
    inner: R,
    /// Bytes read so far.
    n_bytes: u64,
    /// Line of the next byte.
    line: u64,
    /// Whether the current line's first content byte is already recorded.
    line_has_content: bool,
    /// `(offset, line)` of the first content byte of each line not yet passed by a record.
    content_starts: VecDeque<(u64, u64)>,
}

impl<R: Read> LineTracker<R> {
    fn new(inner: R) -> LineTracker<R> {
        LineTracker {
            inner,
            n_bytes: 0,
            line: 1,
            line_has_content: false,
            content_starts: VecDeque::new(),
        }
    }

    /// Line of the first content byte at or after `start_byte`.
    fn line_at(&mut self, start_byte: u64) -> u64 {
        while let Some(&(offset, line)) = self.content_starts.front() {
            if offset >= start_byte {
                return line;
            }
            self.content_starts.pop_front();
        }
        self.line
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n_read = self.inner.read(buf)?;
        let bytes = &buf[..n_read];
        let mut i = 0;
        while i < bytes.len() {
            if !self.line_has_content {
                match bytes[i] {
                    b'\n' => {
                        self.line += 1;
                        i += 1;
                        continue;
                    }
                    b'\r' => {
                        i += 1;
                        continue;
                    }
                    _ => {
                        self.content_starts
                            .push_back((self.n_bytes + i as u64, self.line));
                        self.line_has_content = true;
                    }
                }
            }
            // The rest of a line with content only matters for where it ends.
            match find_newline(&bytes[i..]) {
                Some(newline) => {
                    i += newline + 1;
                    self.line += 1;
                    self.line_has_content = false;
                }
                None => i = bytes.len(),
            }
        }
        self.n_bytes += n_read as u64;
        Ok(n_read)
    }
}

/// Index of the first `\n`, eight bytes at a time (a wide file spends most of its bytes here).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut start = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Zero bytes of `x` are the newlines; this classic test flags a word containing one.
        let x = u64::from_ne_bytes(word) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map(|offset| start + offset)
}

/// Parses a trimmed numeric cell.
fn parse_cell(cell: &[u8], at: CellAt<'_>) -> Result<f32, DataError> {
    match parse_number(cell) {
        Ok(value) => Ok(value),
        Err(NumberError::Empty) => Err(at.empty()),
        Err(NumberError::NotANumber) => Err(DataError::NotANumber {
            file: at.file.to_string(),
            line: at.line,
            column: at.column.to_string(),
            found: shown_cell(cell),
        }),
        Err(NumberError::NonFinite) => Err(DataError::NonFinite {
            file: at.file.to_string(),
            line: at.line,
            column: at.column.to_string(),
            found: shown_cell(cell),
        }),
        Err(NumberError::OutOfRange) => Err(DataError::OutOfRange {
            file: at.file.to_string(),
            line: at.line,
            column: at.column.to_string(),
            found: shown_cell(cell),
        }),
    }
}

/// The value of 1 to 7 ASCII digits.
///
/// Pixel files are almost all short unsigned integers, and the general float parser dominated
/// load time, so those skip it; below 10^7 they are exact in `f32`, so the result is
/// bit-identical to the float parser's.
#[inline(always)]
fn small_unsigned(cell: &[u8]) -> Option<f32> {
    if cell.is_empty() || cell.len() > 7 {
        return None;
    }
    let mut value = 0u32;
    for &byte in cell {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u32::from(digit);
    }
    Some(value as f32)
}

#[derive(Debug, PartialEq)]
pub(crate) enum NumberError {
    Empty,
    NotANumber,
    NonFinite,
    /// A finite number too large for an `f32`.
    OutOfRange,
}

/// Parses a finite `f32` from ASCII bytes.
pub(crate) fn parse_number(cell: &[u8]) -> Result<f32, NumberError> {
    if cell.is_empty() {
        return Err(NumberError::Empty);
    }
    if let Some(value) = small_unsigned(cell) {
        return Ok(value);
    }
    let text = std::str::from_utf8(cell).map_err(|_| NumberError::NotANumber)?;
    let value: f32 = text.parse().map_err(|_| NumberError::NotANumber)?;
    if value.is_finite() {
        Ok(value)
    } else if text.parse::<f64>().is_ok_and(f64::is_finite) {
        Err(NumberError::OutOfRange)
    } else {
        Err(NumberError::NonFinite)
    }
}
