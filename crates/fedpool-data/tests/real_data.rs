//! Sanity checks on the real fixture data sets in the repository's `data/` folder.

use fedpool_data::{
    ColumnKind, ColumnRange, ColumnSpec, LabelKind, LabelSpec, Partition, Scaling, Schema, Table,
    Targets, partition_rows, train_test_split,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const DIGITS_CSV: &str = include_str!("../../../data/digits/digits.csv");
const BREAST_CANCER_CSV: &str = include_str!("../../../data/breast_cancer/breast_cancer.csv");

fn classes(n: usize) -> LabelKind {
    LabelKind::Categorical {
        classes: (0..n).map(|c| c.to_string()).collect(),
    }
}

fn digits_schema() -> Schema {
    Schema {
        label: LabelSpec {
            name: "label".into(),
            kind: classes(10),
        },
        columns: vec![],
        column_ranges: vec![ColumnRange {
            prefix: "p".into(),
            count: 64,
            scaling: Scaling::Range {
                min: 0.0,
                max: 16.0,
            },
        }],
        local_standardize: true,
    }
}

fn digits() -> Table {
    Table::from_csv(DIGITS_CSV.as_bytes(), "digits.csv", &digits_schema(), &[]).unwrap()
}

fn breast_cancer() -> Table {
    let header = BREAST_CANCER_CSV.lines().next().unwrap();
    let columns = header
        .split(',')
        .filter(|name| *name != "label")
        .map(|name| ColumnSpec {
            name: name.to_string(),
            kind: ColumnKind::Numeric {
                scaling: Scaling::Standardize { bounds: None },
            },
        })
        .collect();
    let schema = Schema {
        label: LabelSpec {
            name: "label".into(),
            kind: classes(2),
        },
        columns,
        column_ranges: vec![],
        local_standardize: true,
    };
    Table::from_csv(
        BREAST_CANCER_CSV.as_bytes(),
        "breast_cancer.csv",
        &schema,
        &[],
    )
    .unwrap()
}

fn distinct_labels(rows: &[usize], labels: &[u32]) -> usize {
    let mut seen: Vec<u32> = rows.iter().map(|&row| labels[row]).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

#[test]
fn digits_load_encode_split_and_partition() {
    let table = digits();
    assert_eq!(table.n_rows(), 1797);
    let labels = table.class_labels().unwrap();
    let all: Vec<usize> = (0..table.n_rows()).collect();
    let dataset = table.encode(&all);
    assert_eq!(dataset.n_features, 64);
    assert!(dataset.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(matches!(
        dataset.targets,
        Targets::Classes { n_classes: 10, .. }
    ));

    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let (train, test) = train_test_split(&table, 0.2, &mut rng).unwrap();
    assert_eq!((train.len(), test.len()), (1438, 359));
    for class in 0..10 {
        let in_class = |rows: &[usize]| rows.iter().filter(|&&r| labels[r] == class).count();
        let share = in_class(&test) as f64 / in_class(&all) as f64;
        assert!((share - 0.2).abs() < 0.01, "class {class}: {share}");
    }

    let mut mean_distinct = |spec: &str| {
        let partition: Partition = spec.parse().unwrap();
        let clients = partition_rows(&partition, &train, &table, 10, &mut rng).unwrap();
        assert_eq!(clients.iter().map(Vec::len).sum::<usize>(), train.len());
        let n_labels: usize = clients.iter().map(|c| distinct_labels(c, labels)).sum();
        n_labels as f64 / clients.len() as f64
    };
    let skewed = mean_distinct("dirichlet:0.1");
    assert!(skewed < mean_distinct("dirichlet:100"));
    assert_eq!(mean_distinct("iid"), 10.0);

    let clients =
        partition_rows(&"shards:2".parse().unwrap(), &train, &table, 10, &mut rng).unwrap();
    for client in &clients {
        assert!(distinct_labels(client, labels) <= 4);
    }
}

#[test]
fn digits_through_idx_encode_like_the_csv() {
    let table = digits();
    let all: Vec<usize> = (0..table.n_rows()).collect();
    // Rebuild the IDX files from the CSV: pixels are integers 0..16.
    let mut images = 0x0803u32.to_be_bytes().to_vec();
    for dim in [1797u32, 8, 8] {
        images.extend_from_slice(&dim.to_be_bytes());
    }
    let mut labels = 0x0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&1797u32.to_be_bytes());
    for line in DIGITS_CSV.lines().skip(1) {
        let mut cells = line.split(',').map(|cell| cell.parse::<u8>().unwrap());
        labels.push(cells.next().unwrap());
        images.extend(cells);
    }
    let from_idx =
        Table::from_idx(&images[..], &labels[..], "digits-idx", &digits_schema()).unwrap();
    assert_eq!(from_idx.encode(&all), table.encode(&all));
}

#[test]
fn breast_cancer_standardizes_on_the_rows_given() {
    let table = breast_cancer();
    assert_eq!(table.n_rows(), 569);
    let labels = table.class_labels().unwrap();
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 357);
    for rows in [
        (0..569).collect::<Vec<usize>>(),
        (0..569).step_by(3).collect(),
    ] {
        let dataset = table.encode(&rows);
        assert_eq!(dataset.n_features, 30);
        for feature in 0..30 {
            let column: Vec<f64> = (0..rows.len())
                .map(|r| f64::from(dataset.row(r)[feature]))
                .collect();
            let mean = column.iter().sum::<f64>() / column.len() as f64;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / column.len() as f64;
            assert!(mean.abs() < 1e-4, "feature {feature}: mean {mean}");
            assert!(
                (var - 1.0).abs() < 1e-3,
                "feature {feature}: variance {var}"
            );
        }
    }
}
