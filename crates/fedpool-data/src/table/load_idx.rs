//! Loading a [`Table`] from the IDX format of MNIST.
//!
//! An IDX stream is a big-endian `u32` magic number (`0x00000803` for `u8` images with three
//! dimensions, `0x00000801` for `u8` labels with one), one big-endian `u32` per dimension, then
//! the items. See <http://yann.lecun.com/exdb/mnist/>.

use std::io::Read;

use super::{EncodePlan, Labels, Table};
use crate::error::{DataError, IdxPart, shown_list};
use crate::schema::{LabelKind, Schema};

/// Magic number of a `u8` IDX stream with three dimensions (images × rows × columns).
pub(crate) const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of a `u8` IDX stream with one dimension (labels).
pub(crate) const LABELS_MAGIC: u32 = 0x0000_0801;

impl Table {
    /// Reads an IDX images stream and its IDX labels stream (MNIST, Fashion-MNIST).
    ///
    /// The schema must describe exactly the pixels: no `columns`, one `column_ranges` run of
    /// `rows × cols` columns (e.g. prefix `p`, count 784), and a categorical label whose classes
    /// include the decimal text of every label byte (`"0"` … `"9"`, in any order). Pixel `i`
    /// of an image, row-major, becomes column `{prefix}{i}`, matching the CSV exports.
    ///
    /// Errors name `source`, which stream is at fault, and for labels the 0-based item index.
    /// The header's counts are checked against the bytes actually present before anything is
    /// allocated for them, so a corrupt header cannot trigger a huge allocation.
    pub fn from_idx<I: Read, L: Read>(
        images: I,
        labels: L,
        source: &str,
        schema: &Schema,
    ) -> Result<Table, DataError> {
        schema.validate()?;
        let file = source.to_string();
        let mismatch = |reason: String| DataError::IdxSchemaMismatch {
            file: file.clone(),
            reason,
        };
        let LabelKind::Categorical { classes } = &schema.label.kind else {
            return Err(mismatch(format!(
                "IDX labels are classes but the label \"{}\" is numeric",
                schema.label.name
            )));
        };
        let range = match (schema.columns.as_slice(), schema.column_ranges.as_slice()) {
            ([], [range]) => range,
            _ => {
                return Err(mismatch(format!(
                    "the features must be a single column run (e.g. prefix \"p\", count 784), but \
                     the schema has {} named columns and {} runs",
                    schema.columns.len(),
                    schema.column_ranges.len()
                )));
            }
        };

        let mut images = IdxReader::new(images, &file, IdxPart::Images);
        let mut labels = IdxReader::new(labels, &file, IdxPart::Labels);
        let image_dims = images.header(IMAGES_MAGIC, 3)?;
        let label_dims = labels.header(LABELS_MAGIC, 1)?;
        let (n_images, n_rows, n_cols) = (image_dims[0], image_dims[1], image_dims[2]);
        let n_labels = label_dims[0];
        if n_images != n_labels {
            return Err(DataError::IdxCountMismatch {
                file,
                n_images,
                n_labels,
            });
        }
        let n_pixels = n_rows * n_cols;
        if n_pixels != range.count as u64 {
            return Err(mismatch(format!(
                "images are {n_rows}×{n_cols} = {n_pixels} pixels but the schema's run \"{}\" has \
                 {} columns",
                range.prefix, range.count
            )));
        }
        let pixels = images.items(n_images, n_pixels)?;
        let label_bytes = labels.items(n_labels, 1)?;

        // Class index of each possible label byte, by its decimal text.
        let mut class_of_byte = [None; 256];
        for (class_idx, class) in classes.iter().enumerate() {
            // Only canonical text counts: "07" or "+7" is not the byte 7.
            match class.parse::<u8>() {
                Ok(byte) if byte.to_string() == *class => {
                    class_of_byte[usize::from(byte)] = Some(class_idx as u32);
                }
                _ => {}
            }
        }
        let class_labels = label_bytes
            .iter()
            .enumerate()
            .map(|(item, &byte)| {
                class_of_byte[usize::from(byte)].ok_or_else(|| DataError::IdxUnknownLabel {
                    file: file.clone(),
                    item: item as u64,
                    found: byte,
                    allowed: shown_list(classes),
                })
            })
            .collect::<Result<Vec<u32>, DataError>>()?;
        if class_labels.is_empty() {
            return Err(DataError::NoRows { file });
        }

        Ok(Table {
            schema: schema.clone(),
            plan: EncodePlan::new(schema),
            n_rows: class_labels.len(),
            numeric: pixels.iter().map(|&p| f32::from(p)).collect(),
            categorical: Vec::new(),
            labels: Labels::Classes(class_labels),
            kept: Vec::new(),
            file,
        })
    }
}

/// One IDX stream, read with its errors attributed.
struct IdxReader<'a, R> {
    reader: R,
    file: &'a str,
    part: IdxPart,
}

impl<'a, R: Read> IdxReader<'a, R> {
    fn new(reader: R, file: &'a str, part: IdxPart) -> IdxReader<'a, R> {
        IdxReader { reader, file, part }
    }

    /// Reads the magic number and `n_dims` dimension sizes.
    fn header(&mut self, magic: u32, n_dims: usize) -> Result<Vec<u64>, DataError> {
        let header_bytes = 4 * (1 + n_dims) as u64;
        let found = self.read_u32(header_bytes, 0)?;
        if found != magic {
            return Err(DataError::IdxBadMagic {
                file: self.file.to_string(),
                part: self.part,
                expected: magic,
                found,
            });
        }
        (1..=n_dims as u64)
            .map(|i| self.read_u32(header_bytes, 4 * i).map(u64::from))
            .collect()
    }

    /// Reads one big-endian `u32` at byte `offset` of a header of `header_bytes` bytes.
    fn read_u32(&mut self, header_bytes: u64, offset: u64) -> Result<u32, DataError> {
        let mut word = [0u8; 4];
        let n_read = self.read_up_to(&mut word)?;
        if n_read < word.len() {
            return Err(self.truncated("header", header_bytes, offset + n_read as u64));
        }
        Ok(u32::from_be_bytes(word))
    }

    /// Reads `n_items` items of `item_bytes` bytes each and checks nothing follows them.
    fn items(&mut self, n_items: u64, item_bytes: u64) -> Result<Vec<u8>, DataError> {
        // Both factors are below 2^32 and 2^64 respectively; saturating keeps the comparison
        // meaningful instead of wrapping.
        let expected_bytes = n_items.saturating_mul(item_bytes);
        let mut items = Vec::new();
        // `take` + `read_to_end` grows the buffer with the bytes present, never to the size a
        // (possibly corrupt) header claims.
        (&mut self.reader)
            .take(expected_bytes)
            .read_to_end(&mut items)
            .map_err(|source| self.io(source))?;
        if (items.len() as u64) < expected_bytes {
            return Err(self.truncated("items", expected_bytes, items.len() as u64));
        }
        if self.read_up_to(&mut [0u8; 1])? > 0 {
            return Err(DataError::IdxTrailingBytes {
                file: self.file.to_string(),
                part: self.part,
                n_items,
            });
        }
        Ok(items)
    }

    /// Fills as much of `buf` as the stream has; a short count means end of stream.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.io(error)),
            }
        }
        Ok(filled)
    }

    fn truncated(&self, what: &'static str, expected_bytes: u64, found_bytes: u64) -> DataError {
        DataError::IdxTruncated {
            file: self.file.to_string(),
            part: self.part,
            what,
            expected_bytes,
            found_bytes,
        }
    }

    fn io(&self, source: std::io::Error) -> DataError {
        DataError::Io {
            file: self.file.to_string(),
            part: self.part,
            source,
        }
    }
}
