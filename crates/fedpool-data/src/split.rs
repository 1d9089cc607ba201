//! Seeded train/test splits, stratified by class for classification.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::error::DataError;
use crate::table::Table;

/// Splits the table's rows into `(train, test)` row indices, each sorted ascending.
///
/// The test set holds `round(n_rows × test_fraction)` rows. For classification the split is
/// stratified: each class contributes `⌊n_class × test_fraction⌋` test rows, and the rows left
/// over by rounding go to the classes with the largest fractional remainders (ties to the lower
/// class index), so class proportions match in both parts as closely as integers allow. For
/// regression the rows are shuffled and cut. The result depends only on the table and the RNG
/// state.
pub fn train_test_split<R: Rng + ?Sized>(
    table: &Table,
    test_fraction: f64,
    rng: &mut R,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(DataError::BadTestFraction {
            file: table.source().to_string(),
            value: test_fraction,
        });
    }
    Ok(split_rows(
        table.n_rows(),
        table.class_labels(),
        test_fraction,
        rng,
    ))
}

/// The split itself; `test_fraction` is already known to be in `[0, 1]`.
pub(crate) fn split_rows<R: Rng + ?Sized>(
    n_rows: usize,
    class_labels: Option<&[u32]>,
    test_fraction: f64,
    rng: &mut R,
) -> (Vec<usize>, Vec<usize>) {
    let n_test = (n_rows as f64 * test_fraction).round() as usize;
    let mut train = Vec::with_capacity(n_rows - n_test.min(n_rows));
    let mut test = Vec::with_capacity(n_test);
    match class_labels {
        None => {
            let mut rows: Vec<usize> = (0..n_rows).collect();
            rows.shuffle(rng);
            test.extend_from_slice(&rows[..n_test.min(n_rows)]);
            train.extend_from_slice(&rows[n_test.min(n_rows)..]);
        }
        Some(labels) => {
            let by_class = rows_by_class(labels);
            let quotas = stratified_quotas(&by_class, n_test, test_fraction);
            for (mut rows, quota) in by_class.into_iter().zip(quotas) {
                rows.shuffle(rng);
                test.extend_from_slice(&rows[..quota]);
                train.extend_from_slice(&rows[quota..]);
            }
        }
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Row indices of each class, indexed by class, each ascending.
pub(crate) fn rows_by_class(labels: &[u32]) -> Vec<Vec<usize>> {
    let n_classes = labels.iter().max().map_or(0, |&max| max as usize + 1);
    let mut by_class = vec![Vec::new(); n_classes];
    for (row, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(row);
    }
    by_class
}

/// Test rows per class: floors first, then largest remainders, summing to `n_test`.
fn stratified_quotas(by_class: &[Vec<usize>], n_test: usize, test_fraction: f64) -> Vec<usize> {
    let exact: Vec<f64> = by_class
        .iter()
        .map(|rows| rows.len() as f64 * test_fraction)
        .collect();
    let mut quotas: Vec<usize> = by_class
        .iter()
        .zip(&exact)
        .map(|(rows, &e)| (e.floor() as usize).min(rows.len()))
        .collect();
    let mut order: Vec<usize> = (0..by_class.len()).collect();
    // Stable sort keeps ties in class order, so the result is deterministic.
    order.sort_by(|&a, &b| {
        let remainder = |c: usize| exact[c] - exact[c].floor();
        remainder(b).total_cmp(&remainder(a))
    });
    let mut missing = n_test.saturating_sub(quotas.iter().sum());
    for &class in &order {
        if missing == 0 {
            break;
        }
        if quotas[class] < by_class[class].len() {
            quotas[class] += 1;
            missing -= 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::test_support::{class_table, regression_table};

    /// Splits a table with `class_sizes[c]` rows of class `c` and checks the test rows per class.
    fn check(class_sizes: &[usize], test_fraction: f64, expect_test_per_class: &[usize]) {
        let labels: Vec<u32> = class_sizes
            .iter()
            .enumerate()
            .flat_map(|(class, &n)| std::iter::repeat_n(class as u32, n))
            .collect();
        let table = class_table(&labels, class_sizes.len() as u32, &[]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (train, test) = train_test_split(&table, test_fraction, &mut rng).unwrap();
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..labels.len()).collect::<Vec<_>>(),
            "split is a partition"
        );
        assert!(train.is_sorted() && test.is_sorted());
        let per_class: Vec<usize> = (0..class_sizes.len() as u32)
            .map(|class| test.iter().filter(|&&row| labels[row] == class).count())
            .collect();
        assert_eq!(
            per_class, expect_test_per_class,
            "sizes {class_sizes:?}, f {test_fraction}"
        );
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        check(&[100, 50, 10], 0.2, &[20, 10, 2]);
        check(&[10, 10, 10], 0.25, &[3, 3, 2]); // 7.5 → 8 rows; remainders tie, lower classes first
        check(&[5, 3], 0.5, &[3, 1]); // 4 rows: floors 2 + 1, remainder .5 each → class 0
        check(&[1, 1, 1], 0.5, &[1, 1, 0]); // round(1.5) = 2
        check(&[7, 3], 0.0, &[0, 0]);
        check(&[7, 3], 1.0, &[7, 3]);
        check(&[0, 4], 0.5, &[0, 2]);
    }

    #[test]
    fn regression_split_is_a_shuffled_cut() {
        let table = regression_table(10);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (train, test) = train_test_split(&table, 0.3, &mut rng).unwrap();
        assert_eq!((train.len(), test.len()), (7, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            train_test_split(&table, 0.3, &mut rng).unwrap(),
            (train, test)
        );
    }

    #[test]
    fn same_seed_same_split_and_different_seed_differs() {
        let labels: Vec<u32> = (0..200).map(|row| row % 3).collect();
        let table = class_table(&labels, 3, &[]);
        let split = |seed| train_test_split(&table, 0.2, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(split(3).unwrap(), split(3).unwrap());
        assert_ne!(split(3).unwrap(), split(4).unwrap());
    }

    #[test]
    fn fractions_outside_zero_one_are_errors() {
        let table = regression_table(4);
        for bad in [-0.1, 1.5, f64::NAN] {
            let error = train_test_split(&table, bad, &mut ChaCha8Rng::seed_from_u64(0));
            let message = error.unwrap_err().to_string();
            assert_eq!(
                message,
                format!("r.csv: test fraction {bad} is not between 0 and 1")
            );
        }
    }
}
