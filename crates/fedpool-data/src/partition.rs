//! Seeded federated partitions: which rows each simulated client holds.
//!
//! The label-skew schemes follow the papers the federated-learning literature compares against,
//! so results are comparable: Dirichlet label skew as in Hsu et al. 2019 ("Measuring the Effects
//! of Non-Identical Data Distribution") with the balancing step of NIID-Bench (Li et al. 2022,
//! "Federated Learning on Non-IID Data Silos"), and pathological shards as in McMahan et al. 2017
//! ("Communication-Efficient Learning of Deep Networks from Decentralized Data", §3).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DataError, shown_list};
use crate::table::Table;

/// How rows are dealt to clients. Written as `iid`, `dirichlet:<alpha>`,
/// `shards:<shards per client>` or `column:<name>` on the command line and in contracts.
#[derive(Debug, Clone, PartialEq)]
pub enum Partition {
    /// Shuffle and deal evenly: client sizes differ by at most one row.
    Iid,
    /// Label skew: each class's rows are split over clients in proportions drawn from
    /// `Dir(alpha)`. Small `alpha` (0.1) gives clients few classes; large (100) is near IID.
    Dirichlet {
        /// Concentration, positive and finite.
        alpha: f64,
    },
    /// Pathological label skew: rows sorted by label are cut into `n_clients × shards_per_client`
    /// equal shards and each client gets `shards_per_client` random shards.
    Shards {
        /// Shards per client, at least 1.
        shards_per_client: usize,
    },
    /// Natural partition: one client per distinct value of a column kept at load time (student,
    /// country, school).
    Column {
        /// The kept column's name.
        name: String,
    },
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => f.write_str("iid"),
            // `f64`'s Display prints the shortest text that parses back to the same value.
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partition::Shards { shards_per_client } => write!(f, "shards:{shards_per_client}"),
            Partition::Column { name } => write!(f, "column:{name}"),
        }
    }
}

impl FromStr for Partition {
    type Err = DataError;

    fn from_str(spec: &str) -> Result<Partition, DataError> {
        let bad = |reason: String| DataError::BadPartitionSpec {
            spec: spec.to_string(),
            reason,
        };
        let (kind, parameter) = match spec.split_once(':') {
            Some((kind, parameter)) => (kind, Some(parameter)),
            None => (spec, None),
        };
        match (kind, parameter) {
            ("iid", None) => Ok(Partition::Iid),
            ("iid", Some(parameter)) => Err(bad(format!(
                "iid takes no parameter, found \"{parameter}\""
            ))),
            ("dirichlet", Some(parameter)) => match parameter.parse::<f64>() {
                Ok(alpha) if alpha > 0.0 && alpha.is_finite() => Ok(Partition::Dirichlet { alpha }),
                _ => Err(bad(format!(
                    "the Dirichlet alpha \"{parameter}\" is not a positive finite number"
                ))),
            },
            ("shards", Some(parameter)) => match parameter.parse::<usize>() {
                Ok(shards_per_client) if shards_per_client > 0 => {
                    Ok(Partition::Shards { shards_per_client })
                }
                _ => Err(bad(format!(
                    "the shards per client \"{parameter}\" is not a whole number of at least 1"
                ))),
            },
            ("column", Some(name)) if !name.is_empty() => Ok(Partition::Column {
                name: name.to_string(),
            }),
            ("column", _) => Err(bad("column needs a column name after the colon".to_string())),
            ("dirichlet" | "shards", None) => {
                Err(bad(format!("{kind} needs a parameter after a colon")))
            }
            _ => Err(bad(format!("unknown partition kind \"{kind}\""))),
        }
    }
}

impl Serialize for Partition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Partition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Partition, D::Error> {
        let spec = String::deserialize(deserializer)?;
        spec.parse().map_err(serde::de::Error::custom)
    }
}

/// Redraws allowed before a Dirichlet partition that keeps leaving a client empty gives up.
pub const MAX_DIRICHLET_ATTEMPTS: usize = 1000;

/// Deals `rows` (typically the training rows) to clients; returns each client's rows, ascending.
///
/// Every row of `rows` lands in exactly one client, and every client gets at least one row.
/// `n_clients` sets the number of clients for every kind except [`Partition::Column`], which
/// makes one client per distinct value among `rows` and ignores it: read the client count from
/// the result. Column clients are ordered by value, numbers numerically before other text
/// lexicographically (see [`column_client_values`]).
///
/// `Dirichlet` follows NIID-Bench: per class, proportions are drawn from `Dir(alpha)`, clients
/// already holding their even share `len(rows) / n_clients` take no more rows, and the draw is
/// repeated (at most [`MAX_DIRICHLET_ATTEMPTS`] times) until no client is empty. `Shards` gives
/// each client at most `2 × shards_per_client` labels when shards are no longer than the
/// smallest class. `Dirichlet` and `Shards` need class labels.
///
/// The result depends only on the arguments and the RNG state.
///
/// # Panics
///
/// If a row index is `>= table.n_rows()`: indices come from [`crate::train_test_split`], so that
/// is a caller bug, not bad data.
pub fn partition_rows<R: Rng + ?Sized>(
    partition: &Partition,
    rows: &[usize],
    table: &Table,
    n_clients: usize,
    rng: &mut R,
) -> Result<Vec<Vec<usize>>, DataError> {
    let impossible = |reason: String| DataError::ImpossiblePartition {
        file: table.source().to_string(),
        partition: partition.to_string(),
        reason,
    };
    if rows.is_empty() {
        return Err(impossible("there are no rows to partition".to_string()));
    }
    // Every kind but Column deals to `n_clients` clients, each needing a row.
    let check_dealable = || {
        if n_clients == 0 {
            return Err(impossible("there must be at least one client".to_string()));
        }
        if rows.len() < n_clients {
            return Err(impossible(format!(
                "{} rows cannot give each of {n_clients} clients a row",
                rows.len()
            )));
        }
        Ok(())
    };
    let mut clients = match partition {
        Partition::Iid => {
            check_dealable()?;
            iid(rows, n_clients, rng)
        }
        Partition::Dirichlet { alpha } => {
            check_dealable()?;
            if !(*alpha > 0.0 && alpha.is_finite()) {
                return Err(impossible(
                    "alpha must be a positive finite number".to_string(),
                ));
            }
            let labels = class_labels(partition, table)?;
            dirichlet(rows, labels, n_clients, *alpha, rng).ok_or_else(|| {
                impossible(format!(
                    "{MAX_DIRICHLET_ATTEMPTS} draws all left a client with no rows; use fewer \
                     clients or a larger alpha"
                ))
            })?
        }
        Partition::Shards { shards_per_client } => {
            check_dealable()?;
            let labels = class_labels(partition, table)?;
            let n_shards = n_clients.saturating_mul(*shards_per_client);
            if *shards_per_client == 0 || rows.len() < n_shards {
                return Err(impossible(format!(
                    "{} rows cannot be cut into {n_clients} clients × {shards_per_client} \
                     non-empty shards",
                    rows.len()
                )));
            }
            shards(rows, labels, n_clients, *shards_per_client, rng)
        }
        Partition::Column { name } => column_groups(rows, table, name)?
            .into_iter()
            .map(|(_, rows)| rows)
            .collect(),
    };
    for client in &mut clients {
        client.sort_unstable();
    }
    Ok(clients)
}

/// The distinct values of kept column `name` among `rows`, in the client order of
/// [`Partition::Column`]: client `i` of [`partition_rows`] holds the rows whose value is
/// element `i`.
///
/// # Panics
///
/// If a row index is `>= table.n_rows()`, as for [`partition_rows`].
pub fn column_client_values(
    rows: &[usize],
    table: &Table,
    name: &str,
) -> Result<Vec<String>, DataError> {
    Ok(column_groups(rows, table, name)?
        .into_iter()
        .map(|(value, _)| value.to_string())
        .collect())
}

fn class_labels<'t>(partition: &Partition, table: &'t Table) -> Result<&'t [u32], DataError> {
    table
        .class_labels()
        .ok_or_else(|| DataError::PartitionNeedsClasses {
            file: table.source().to_string(),
            partition: partition.to_string(),
            label: table.schema().label.name.clone(),
        })
}

fn iid<R: Rng + ?Sized>(rows: &[usize], n_clients: usize, rng: &mut R) -> Vec<Vec<usize>> {
    let mut shuffled = rows.to_vec();
    shuffled.shuffle(rng);
    (0..n_clients)
        .map(|client| {
            shuffled[even_cut(rows.len(), n_clients, client)
                ..even_cut(rows.len(), n_clients, client + 1)]
                .to_vec()
        })
        .collect()
}

/// Start of part `part` when `len` items are cut into `n_parts` parts differing by at most one.
fn even_cut(len: usize, n_parts: usize, part: usize) -> usize {
    // u128 so `len × part` cannot overflow.
    (len as u128 * part as u128 / n_parts as u128) as usize
}

/// NIID-Bench's Dirichlet label skew; `None` if every attempt left a client empty.
fn dirichlet<R: Rng + ?Sized>(
    rows: &[usize],
    labels: &[u32],
    n_clients: usize,
    alpha: f64,
    rng: &mut R,
) -> Option<Vec<Vec<usize>>> {
    let by_class = group_by_class(rows, labels);
    let even_share = rows.len() as f64 / n_clients as f64;
    for _ in 0..MAX_DIRICHLET_ATTEMPTS {
        let mut clients: Vec<Vec<usize>> = vec![Vec::new(); n_clients];
        for class_rows in &by_class {
            let mut class_rows = class_rows.clone();
            class_rows.shuffle(rng);
            let drawn = dirichlet_draw(alpha, n_clients, rng);
            // NIID-Bench's balancing: a client already holding its even share gets no more,
            // which keeps sizes bounded without changing which labels are skewed.
            let mut weights: Vec<f64> = drawn
                .iter()
                .zip(&clients)
                .map(|(&p, client)| {
                    if (client.len() as f64) < even_share {
                        p
                    } else {
                        0.0
                    }
                })
                .collect();
            if weights.iter().sum::<f64>() <= 0.0 {
                weights = drawn;
            }
            let total: f64 = weights.iter().sum();
            let mut cumulative = 0.0;
            let mut start = 0;
            for (client_idx, weight) in weights.iter().enumerate() {
                cumulative += weight;
                let end = if client_idx + 1 == n_clients {
                    class_rows.len()
                } else {
                    ((cumulative / total * class_rows.len() as f64) as usize)
                        .clamp(start, class_rows.len())
                };
                clients[client_idx].extend_from_slice(&class_rows[start..end]);
                start = end;
            }
        }
        if clients.iter().all(|client| !client.is_empty()) {
            return Some(clients);
        }
    }
    None
}

/// One draw from the symmetric `Dir(alpha)` over `n` clients, scaled so the largest weight is 1.
///
/// A Dirichlet draw is independent `Gamma(alpha)` draws normalised. For small alpha those
/// underflow to exactly zero (all of them, at alpha = 0.01 and many clients), so each is drawn
/// in log space with the boost `Gamma(alpha) = Gamma(alpha + 1) · U^(1/alpha)` (Marsaglia and
/// Tsang 2000, §6); the shared scale does not matter because callers normalise.
fn dirichlet_draw<R: Rng + ?Sized>(alpha: f64, n: usize, rng: &mut R) -> Vec<f64> {
    let log_weights: Vec<f64> = match Gamma::new(alpha + 1.0, 1.0) {
        Ok(gamma) => (0..n)
            .map(|_| {
                let g: f64 = gamma.sample(rng);
                // `random` is in [0, 1); 1 - u is in (0, 1], so its log is finite.
                let u = 1.0 - rng.random::<f64>();
                g.ln() + u.ln() / alpha
            })
            .collect(),
        // Unreachable for the validated alpha > 0; uniform weights are the safe answer.
        Err(_) => vec![0.0; n],
    };
    let max = log_weights
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    log_weights.iter().map(|l| (l - max).exp()).collect()
}

/// McMahan et al.'s shards: sort by label, cut into equal shards, deal shards at random.
fn shards<R: Rng + ?Sized>(
    rows: &[usize],
    labels: &[u32],
    n_clients: usize,
    shards_per_client: usize,
    rng: &mut R,
) -> Vec<Vec<usize>> {
    let mut sorted = rows.to_vec();
    // Shuffle first so which rows of a class share a shard is random; the stable sort keeps it.
    sorted.shuffle(rng);
    sorted.sort_by_key(|&row| labels[row]);
    let n_shards = n_clients * shards_per_client;
    let mut shard_order: Vec<usize> = (0..n_shards).collect();
    shard_order.shuffle(rng);
    shard_order
        .chunks(shards_per_client)
        .map(|client_shards| {
            client_shards
                .iter()
                .flat_map(|&shard| {
                    let start = even_cut(sorted.len(), n_shards, shard);
                    let end = even_cut(sorted.len(), n_shards, shard + 1);
                    sorted[start..end].iter().copied()
                })
                .collect()
        })
        .collect()
}

/// `rows` grouped by label, classes ascending, rows in their given order; empty classes dropped.
fn group_by_class(rows: &[usize], labels: &[u32]) -> Vec<Vec<usize>> {
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    for &row in rows {
        let class = labels[row] as usize;
        if by_class.len() <= class {
            by_class.resize(class + 1, Vec::new());
        }
        by_class[class].push(row);
    }
    by_class.retain(|rows| !rows.is_empty());
    by_class
}

/// `rows` grouped by their value in kept column `name`, in client order.
fn column_groups<'t>(
    rows: &[usize],
    table: &'t Table,
    name: &str,
) -> Result<Vec<(&'t str, Vec<usize>)>, DataError> {
    let values = table
        .column(name)
        .ok_or_else(|| DataError::PartitionColumnNotKept {
            file: table.source().to_string(),
            column: name.to_string(),
            kept: shown_list(&table.kept_columns()),
        })?;
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for &row in rows {
        groups.entry(values[row].as_str()).or_default().push(row);
    }
    let mut groups: Vec<(&str, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_by(|(a, _), (b, _)| natural_cmp(a, b));
    for (_, rows) in &mut groups {
        rows.sort_unstable();
    }
    Ok(groups)
}

/// Numbers numerically (so student `2` comes before `10`), then other text lexicographically.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let number = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests;
