//! The node's home directory: its identity key, its ledger database and its registry of local
//! datasets. Default `~/.fedpool`, overridden by `FEDPOOL_HOME`, overridden by `--home`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fedpool_data::SniffedColumn;
use serde::{Deserialize, Serialize};

/// A node's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// A dataset registered on this node. Only its description lives here: the rows stay in the
/// file the owner registered and never enter the ledger or any message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredDataset {
    /// Name the owner chose.
    pub name: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The label column, if the owner named one.
    pub label: Option<String>,
    /// Content hash of the file's bytes (what a consent names).
    pub fingerprint: String,
    /// Data rows.
    pub n_rows: usize,
    /// Columns and their apparent types.
    pub columns: Vec<SniffedColumn>,
    /// When it was registered.
    pub registered_at_ms: u64,
}

impl Home {
    /// Resolves the home directory: `--home`, else `FEDPOOL_HOME`, else `~/.fedpool`.
    pub fn resolve(arg: Option<&Path>) -> Result<Home> {
        let dir = match arg {
            Some(dir) => dir.to_path_buf(),
            None => match std::env::var_os("FEDPOOL_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => match std::env::var_os("HOME") {
                    Some(home) => PathBuf::from(home).join(".fedpool"),
                    None => {
                        bail!("cannot find a home directory: set FEDPOOL_HOME or pass --home DIR")
                    }
                },
            },
        };
        Ok(Home { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only permissions) if missing.
    pub fn ensure_exists(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&self.dir)
            .with_context(|| format!("cannot create node home {}", self.dir.display()))
    }

    /// The identity key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    /// The ledger database.
    pub fn ledger_path(&self) -> PathBuf {
        self.dir.join("ledger.db")
    }

    fn datasets_path(&self) -> PathBuf {
        self.dir.join("datasets.json")
    }

    /// Every registered dataset.
    pub fn datasets(&self) -> Result<Vec<RegisteredDataset>> {
        let path = self.datasets_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid dataset registry", path.display()))
    }

    /// The registered dataset called `name`.
    pub fn dataset(&self, name: &str) -> Result<RegisteredDataset> {
        let all = self.datasets()?;
        let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
        all.into_iter().find(|d| d.name == name).with_context(|| {
            if names.is_empty() {
                format!("no dataset \"{name}\" is registered; add one with `fedpool data add {name} FILE`")
            } else {
                format!("no dataset \"{name}\" is registered (registered: {})", names.join(", "))
            }
        })
    }

    /// Adds or replaces a dataset in the registry, atomically (write a temporary file, then
    /// rename), so a crash never leaves a half-written registry.
    pub fn save_dataset(&self, dataset: RegisteredDataset) -> Result<()> {
        self.ensure_exists()?;
        let mut all = self.datasets()?;
        all.retain(|d| d.name != dataset.name);
        all.push(dataset);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let path = self.datasets_path();
        fedpool_ledger::replace_file(&path, serde_json::to_string_pretty(&all)?.as_bytes())
            .with_context(|| format!("cannot save the dataset registry {}", path.display()))
    }
}

impl Home {
    /// Where the owner's consent policy is kept.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// The owner's consent policy, if one is set (re-checked: a hand-edited file is named in
    /// its errors).
    pub fn policy(&self) -> Result<Option<fedpool_runtime::OwnerPolicy>> {
        let path = self.policy_path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(fedpool_runtime::OwnerPolicy::from_toml(
            &text,
            &path.display().to_string(),
        )?))
    }

    /// Keeps `text` (a policy already checked) as the owner's policy, atomically.
    pub fn save_policy(&self, text: &str) -> Result<()> {
        self.ensure_exists()?;
        let path = self.policy_path();
        fedpool_ledger::replace_file(&path, text.as_bytes())
            .with_context(|| format!("cannot save the policy {}", path.display()))
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `YYYY-MM-DD` as the end of that day (UTC), in milliseconds since the epoch: a consent
/// "until 2027-01-31" still holds on the 31st.
pub fn parse_until_date(text: &str) -> Result<u64> {
    let bad =
        || anyhow::anyhow!("--until \"{text}\" is not a date; use YYYY-MM-DD, e.g. 2027-01-31");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (year, month, day): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month[month as usize - 1]
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day) + 1;
    Ok(days as u64 * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats milliseconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn format_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_the_end_of_the_day_and_format_back() {
        assert_eq!(parse_until_date("1970-01-01").unwrap(), 86_400_000);
        let ms = parse_until_date("2027-01-31").unwrap();
        assert_eq!(format_time(ms - 1), "2027-01-31 23:59 UTC");
        assert_eq!(format_time(ms), "2027-02-01 00:00 UTC");
        assert!(parse_until_date("2024-02-29").is_ok());
        for bad in [
            "2023-02-29",
            "2027-13-01",
            "tomorrow",
            "2027-1",
            "1969-12-31",
        ] {
            let err = parse_until_date(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("YYYY-MM-DD"), "{err}");
        }
    }
}
