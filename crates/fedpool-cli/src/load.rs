//! Opening contracts and datasets from disk (or from the datasets bundled in the binary).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedpool_core::Contract;
use fedpool_data::{Schema, Table};
use flate2::read::GzDecoder;

/// Small CC BY datasets shipped inside the binary, so `fedpool demo` runs anywhere.
const BUNDLED: &[(&str, &[u8])] = &[
    ("digits", include_bytes!("../../../data/digits/digits.csv")),
    (
        "breast_cancer",
        include_bytes!("../../../data/breast_cancer/breast_cancer.csv"),
    ),
    ("adult", include_bytes!("../../../data/adult/adult.csv.gz")),
];

/// Names of the bundled datasets.
pub fn bundled_names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(name, _)| *name).collect()
}

/// Reads and validates a contract file.
pub fn contract(path: &Path) -> Result<Contract> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read contract {}", path.display()))?;
    Ok(Contract::from_toml(&text, &path.display().to_string())?)
}

/// Where a simulation's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A CSV file, optionally gzip-compressed (`.gz`).
    Csv(PathBuf),
    /// An IDX image file and its IDX label file (MNIST format), optionally gzip-compressed.
    Idx { images: PathBuf, labels: PathBuf },
    /// A dataset bundled in the binary.
    Bundled(&'static str),
}

impl DataSource {
    /// Parses `--data`: `PATH`, `idx:IMAGES,LABELS` or `bundled:NAME`.
    pub fn parse(arg: &str) -> Result<DataSource> {
        if let Some(name) = arg.strip_prefix("bundled:") {
            return bundled(name);
        }
        if let Some(pair) = arg.strip_prefix("idx:") {
            let Some((images, labels)) = pair.split_once(',') else {
                bail!(
                    "--data idx: expects idx:IMAGES,LABELS (two files separated by a comma), got \"{arg}\""
                );
            };
            return Ok(DataSource::Idx {
                images: images.into(),
                labels: labels.into(),
            });
        }
        Ok(DataSource::Csv(arg.into()))
    }

    /// The default data for a contract file with no `--data`: the bundled dataset its file
    /// name starts with (`contracts/digits-mlp.toml` → `digits`).
    pub fn default_for(contract_path: &Path) -> Result<DataSource> {
        let stem = contract_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let mut names = bundled_names();
        // Longest first, so `breast_cancer` wins over any shorter prefix.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        match names.into_iter().find(|name| stem.starts_with(name)) {
            Some(name) => bundled(name),
            None => bail!(
                "no --data given and contract file {} is not named after a bundled dataset ({}); pass --data PATH",
                contract_path.display(),
                bundled_names().join(", ")
            ),
        }
    }

    /// Loads the rows, validated against `schema`, keeping `keep_columns` for partitioning.
    pub fn load(&self, schema: &Schema, keep_columns: &[&str]) -> Result<Table> {
        match self {
            DataSource::Csv(path) => {
                let source = path.display().to_string();
                let reader = open(path)?;
                Ok(Table::from_csv(reader, &source, schema, keep_columns)?)
            }
            DataSource::Idx { images, labels } => {
                let source = images.display().to_string();
                Ok(Table::from_idx(
                    open(images)?,
                    open(labels)?,
                    &source,
                    schema,
                )?)
            }
            DataSource::Bundled(name) => {
                let bytes = BUNDLED
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, b)| *b)
                    .unwrap_or_default();
                let source = format!("bundled:{name}");
                let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
                    Box::new(GzDecoder::new(bytes))
                } else {
                    Box::new(bytes)
                };
                Ok(Table::from_csv(reader, &source, schema, keep_columns)?)
            }
        }
    }

    /// The CSV text of a CSV or bundled source (gunzipped), for handing rows out to
    /// separate nodes.
    pub fn csv_text(&self) -> Result<String> {
        let mut reader: Box<dyn Read> = match self {
            DataSource::Csv(path) => open(path)?,
            DataSource::Bundled(name) => {
                let bytes = BUNDLED
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, b)| *b)
                    .unwrap_or_default();
                if bytes.starts_with(&[0x1f, 0x8b]) {
                    Box::new(GzDecoder::new(bytes))
                } else {
                    Box::new(bytes)
                }
            }
            DataSource::Idx { .. } => {
                bail!("IDX data cannot be split into per-node CSV files; convert it to CSV first")
            }
        };
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .with_context(|| format!("{} is not UTF-8 text", self.describe()))?;
        Ok(text)
    }

    /// A short description for output.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Csv(path) => path.display().to_string(),
            DataSource::Idx { images, .. } => images.display().to_string(),
            DataSource::Bundled(name) => format!("bundled:{name}"),
        }
    }
}

fn bundled(name: &str) -> Result<DataSource> {
    match BUNDLED.iter().find(|(n, _)| *n == name) {
        Some((n, _)) => Ok(DataSource::Bundled(n)),
        None => bail!(
            "no bundled dataset \"{name}\"; bundled datasets are {}",
            bundled_names().join(", ")
        ),
    }
}

/// Opens a file, transparently gunzipping it when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file =
        File::open(path).with_context(|| format!("cannot open data file {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let is_gzip = {
        use std::io::BufRead;
        let head = reader
            .fill_buf()
            .with_context(|| format!("cannot read data file {}", path.display()))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    Ok(if is_gzip {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}
