//! Partition tests: spec syntax, exact cover, determinism, skew.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::IntoDeserializer;
use serde::de::value::{Error as ValueError, StrDeserializer};

use super::*;
use crate::test_support::{class_table, regression_table};

/// Parses `spec` and compares with `expect` (the partition, or the error message).
fn check_spec(spec: &str, expect: Result<Partition, String>) {
    let parsed = spec.parse::<Partition>().map_err(|e| e.to_string());
    assert_eq!(parsed, expect, "spec {spec:?}");
    if let Ok(partition) = parsed {
        assert_eq!(partition.to_string(), spec, "Display round-trips");
        let deserializer: StrDeserializer<'_, ValueError> = spec.into_deserializer();
        assert_eq!(Partition::deserialize(deserializer).ok(), Some(partition));
    }
}

#[test]
fn partition_specs_parse_and_round_trip() {
    let allowed = "expected one of iid, dirichlet:<alpha>, shards:<shards per client>, \
                   column:<name>";
    let cases: Vec<(&str, Result<Partition, String>)> = vec![
        ("iid", Ok(Partition::Iid)),
        ("dirichlet:0.5", Ok(Partition::Dirichlet { alpha: 0.5 })),
        ("dirichlet:100", Ok(Partition::Dirichlet { alpha: 100.0 })),
        ("dirichlet:0.001", Ok(Partition::Dirichlet { alpha: 0.001 })),
        (
            "shards:2",
            Ok(Partition::Shards {
                shards_per_client: 2,
            }),
        ),
        (
            "column:country",
            Ok(Partition::Column {
                name: "country".into(),
            }),
        ),
        ("column:a:b", Ok(Partition::Column { name: "a:b".into() })),
        (
            "iid:3",
            Err(format!(
                "bad partition \"iid:3\": iid takes no parameter, found \"3\"; {allowed}"
            )),
        ),
        (
            "dirichlet",
            Err(format!(
                "bad partition \"dirichlet\": dirichlet needs a parameter after a colon; {allowed}"
            )),
        ),
        (
            "dirichlet:0",
            Err(format!(
                "bad partition \"dirichlet:0\": the Dirichlet alpha \"0\" is not a positive \
                 finite number; {allowed}"
            )),
        ),
        (
            "dirichlet:inf",
            Err(format!(
                "bad partition \"dirichlet:inf\": the Dirichlet alpha \"inf\" is not a positive \
                 finite number; {allowed}"
            )),
        ),
        (
            "dirichlet:half",
            Err(format!(
                "bad partition \"dirichlet:half\": the Dirichlet alpha \"half\" is not a \
                 positive finite number; {allowed}"
            )),
        ),
        (
            "shards:0",
            Err(format!(
                "bad partition \"shards:0\": the shards per client \"0\" is not a whole number \
                 of at least 1; {allowed}"
            )),
        ),
        (
            "shards:1.5",
            Err(format!(
                "bad partition \"shards:1.5\": the shards per client \"1.5\" is not a whole \
                 number of at least 1; {allowed}"
            )),
        ),
        (
            "column:",
            Err(format!(
                "bad partition \"column:\": column needs a column name after the colon; {allowed}"
            )),
        ),
        (
            "IID",
            Err(format!(
                "bad partition \"IID\": unknown partition kind \"IID\"; {allowed}"
            )),
        ),
        (
            "",
            Err(format!(
                "bad partition \"\": unknown partition kind \"\"; {allowed}"
            )),
        ),
    ];
    for (spec, expect) in cases {
        check_spec(spec, expect);
    }
    let deserializer: StrDeserializer<'_, ValueError> = "shards:x".into_deserializer();
    let error = Partition::deserialize(deserializer)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("bad partition \"shards:x\""), "{error}");
}

/// Labels `0..n_classes` repeated, `per_class` rows each, grouped by class.
fn balanced_labels(n_classes: u32, per_class: usize) -> Vec<u32> {
    (0..n_classes)
        .flat_map(|class| std::iter::repeat_n(class, per_class))
        .collect()
}

fn partition(
    spec: &str,
    rows: &[usize],
    table: &Table,
    n_clients: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, DataError> {
    let partition: Partition = spec.parse().expect("test spec parses");
    partition_rows(
        &partition,
        rows,
        table,
        n_clients,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
}

/// Asserts every row of `rows` is in exactly one client and no client is empty.
fn assert_exact_cover(clients: &[Vec<usize>], rows: &[usize]) {
    let mut dealt: Vec<usize> = clients.iter().flatten().copied().collect();
    dealt.sort_unstable();
    let mut expected = rows.to_vec();
    expected.sort_unstable();
    assert_eq!(dealt, expected, "no row lost or duplicated");
    assert!(
        clients.iter().all(|client| !client.is_empty()),
        "no empty client"
    );
    assert!(
        clients.iter().all(|client| client.is_sorted()),
        "client rows ascending"
    );
}

fn distinct_labels(client: &[usize], labels: &[u32]) -> usize {
    let mut seen: Vec<u32> = client.iter().map(|&row| labels[row]).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

proptest! {
    /// Every partition kind deals each input row to exactly one client, for any sizes and seed.
    #[test]
    fn every_row_lands_in_exactly_one_client(
        labels in proptest::collection::vec(0u32..5, 1..150),
        row_mask in proptest::collection::vec(any::<bool>(), 150),
        n_clients in 1usize..12,
        kind in 0usize..6,
        seed in any::<u64>(),
    ) {
        let groups: Vec<String> = labels.iter().map(|l| format!("site{}", l * 7 % 3)).collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let table = class_table(&labels, 5, &groups);
        let rows: Vec<usize> = (0..labels.len()).filter(|&row| row_mask[row]).collect();
        let spec = ["iid", "dirichlet:0.1", "dirichlet:5", "shards:1", "shards:3", "column:group"][kind];
        match partition(spec, &rows, &table, n_clients, seed) {
            Ok(clients) => {
                assert_exact_cover(&clients, &rows);
                if spec != "column:group" {
                    prop_assert_eq!(clients.len(), n_clients);
                }
            }
            Err(DataError::ImpossiblePartition { .. }) => {
                // Only allowed when the rows cannot be dealt, or (Dirichlet) by bad luck.
                let shards_per_client = spec.strip_prefix("shards:").map_or(1, |k| k.parse().unwrap_or(1));
                prop_assert!(
                    rows.is_empty()
                        || rows.len() < n_clients * shards_per_client
                        || spec.starts_with("dirichlet"),
                    "{} failed with {} rows for {} clients", spec, rows.len(), n_clients
                );
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    /// Shards no longer than the smallest class give each client at most 2k labels.
    #[test]
    fn shards_give_each_client_at_most_two_labels_per_shard(
        n_classes in 2u32..8,
        per_class in 10usize..40,
        shards_per_client in 1usize..4,
        seed in any::<u64>(),
    ) {
        let labels = balanced_labels(n_classes, per_class);
        let table = class_table(&labels, n_classes, &[]);
        let rows: Vec<usize> = (0..labels.len()).collect();
        // Enough shards that a shard is never longer than a class.
        let n_clients = (n_classes as usize).div_ceil(shards_per_client) + 1;
        let spec = format!("shards:{shards_per_client}");
        let clients = partition(&spec, &rows, &table, n_clients, seed).unwrap();
        assert_exact_cover(&clients, &rows);
        for client in &clients {
            prop_assert!(distinct_labels(client, &labels) <= 2 * shards_per_client);
        }
    }
}

#[test]
fn same_seed_same_partition_for_every_kind() {
    let labels = balanced_labels(4, 30);
    let groups: Vec<String> = (0..labels.len()).map(|row| (row % 5).to_string()).collect();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let table = class_table(&labels, 4, &groups);
    let rows: Vec<usize> = (0..labels.len()).step_by(2).collect();
    for spec in ["iid", "dirichlet:0.5", "shards:2", "column:group"] {
        let first = partition(spec, &rows, &table, 6, 42).unwrap();
        assert_eq!(
            first,
            partition(spec, &rows, &table, 6, 42).unwrap(),
            "{spec}"
        );
        if spec != "column:group" {
            assert_ne!(
                first,
                partition(spec, &rows, &table, 6, 43).unwrap(),
                "{spec}"
            );
        }
    }
}

#[test]
fn iid_client_sizes_differ_by_at_most_one() {
    let table = regression_table(103);
    let rows: Vec<usize> = (0..103).collect();
    let clients = partition("iid", &rows, &table, 10, 5).unwrap();
    assert_exact_cover(&clients, &rows);
    let sizes: Vec<usize> = clients.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().min(), Some(&10));
    assert_eq!(sizes.iter().max(), Some(&11));
}

#[test]
fn small_alpha_is_more_skewed_than_large_alpha() {
    let labels = balanced_labels(10, 100);
    let table = class_table(&labels, 10, &[]);
    let rows: Vec<usize> = (0..labels.len()).collect();
    // Mean over clients and seeds of distinct labels a client holds (out of 10).
    let mean_distinct = |spec: &str| {
        let mut total = 0;
        for seed in 0..5 {
            let clients = partition(spec, &rows, &table, 10, seed).unwrap();
            assert_exact_cover(&clients, &rows);
            total += clients
                .iter()
                .map(|c| distinct_labels(c, &labels))
                .sum::<usize>();
        }
        total as f64 / 50.0
    };
    let skewed = mean_distinct("dirichlet:0.1");
    let balanced = mean_distinct("dirichlet:100");
    // Measured: about 4.2 at alpha 0.1 and 10.0 at alpha 100.
    assert!(skewed < 6.0, "alpha 0.1: {skewed} labels per client");
    assert!(balanced > 9.5, "alpha 100: {balanced} labels per client");
}

#[test]
fn dirichlet_with_tiny_alpha_works_without_underflow() {
    // At alpha = 0.001 naive Gamma draws underflow to zero for almost every client.
    let labels = balanced_labels(3, 200);
    let table = class_table(&labels, 3, &[]);
    let rows: Vec<usize> = (0..labels.len()).collect();
    let clients = partition("dirichlet:0.001", &rows, &table, 3, 9).unwrap();
    assert_exact_cover(&clients, &rows);
    for client in &clients {
        assert_eq!(
            distinct_labels(client, &labels),
            1,
            "each client gets one whole class"
        );
    }
}

#[test]
fn column_partition_makes_one_client_per_value_in_natural_order() {
    let labels = [0, 1, 0, 1, 0, 1];
    let groups = ["10", "2", "x", "2", "10", "b"];
    let table = class_table(&labels, 2, &groups);
    let rows = [0, 1, 2, 3, 4, 5];
    // n_clients is ignored.
    let clients = partition("column:group", &rows, &table, 99, 0).unwrap();
    assert_eq!(clients, [vec![1, 3], vec![0, 4], vec![5], vec![2]]);
    assert_eq!(
        column_client_values(&rows, &table, "group").unwrap(),
        ["2", "10", "b", "x"]
    );
    // Only values among the given rows make clients.
    let clients = partition("column:group", &[0, 4, 5], &table, 1, 0).unwrap();
    assert_eq!(clients, [vec![0, 4], vec![5]]);
}

/// Runs `partition` and compares the error message.
fn check_error(
    partition: Partition,
    rows: &[usize],
    table: &Table,
    n_clients: usize,
    expect: &str,
) {
    let result = partition_rows(
        &partition,
        rows,
        table,
        n_clients,
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    match result {
        Ok(clients) => panic!(
            "{partition}: expected {expect:?}, got {} clients",
            clients.len()
        ),
        Err(error) => assert_eq!(error.to_string(), expect, "{partition}"),
    }
}

#[test]
fn impossible_partitions_are_errors() {
    let classes = class_table(&balanced_labels(2, 5), 2, &[]);
    let one_class = class_table(&balanced_labels(1, 20), 1, &[]);
    let regression = regression_table(10);
    let ten: Vec<usize> = (0..10).collect();
    let twenty: Vec<usize> = (0..20).collect();
    let huge = usize::MAX;
    let cases: Vec<(Partition, &Table, &[usize], usize, String)> = vec![
        (
            Partition::Iid,
            &classes,
            &ten,
            11,
            "t.csv: cannot partition with iid: 10 rows cannot give each of 11 clients a row".into(),
        ),
        (
            Partition::Iid,
            &classes,
            &ten,
            0,
            "t.csv: cannot partition with iid: there must be at least one client".into(),
        ),
        (
            Partition::Iid,
            &classes,
            &[],
            1,
            "t.csv: cannot partition with iid: there are no rows to partition".into(),
        ),
        (
            Partition::Shards {
                shards_per_client: 3,
            },
            &classes,
            &ten,
            4,
            "t.csv: cannot partition with shards:3: 10 rows cannot be cut into 4 clients × 3 \
             non-empty shards"
                .into(),
        ),
        (
            Partition::Shards {
                shards_per_client: 0,
            },
            &classes,
            &ten,
            2,
            "t.csv: cannot partition with shards:0: 10 rows cannot be cut into 2 clients × 0 \
             non-empty shards"
                .into(),
        ),
        (
            Partition::Shards {
                shards_per_client: huge,
            },
            &classes,
            &ten,
            2,
            format!(
                "t.csv: cannot partition with shards:{huge}: 10 rows cannot be cut into 2 clients \
                 × {huge} non-empty shards"
            ),
        ),
        (
            Partition::Dirichlet { alpha: -1.0 },
            &classes,
            &ten,
            2,
            "t.csv: cannot partition with dirichlet:-1: alpha must be a positive finite number"
                .into(),
        ),
        (
            Partition::Dirichlet { alpha: 0.001 },
            &one_class,
            &twenty,
            20,
            "t.csv: cannot partition with dirichlet:0.001: 1000 draws all left a client with no \
             rows; use fewer clients or a larger alpha"
                .into(),
        ),
        (
            Partition::Dirichlet { alpha: 0.5 },
            &regression,
            &ten,
            2,
            "r.csv: partition dirichlet:0.5 needs class labels, but the label column \"y\" is \
             numeric (regression)"
                .into(),
        ),
        (
            Partition::Shards {
                shards_per_client: 1,
            },
            &regression,
            &ten,
            2,
            "r.csv: partition shards:1 needs class labels, but the label column \"y\" is numeric \
             (regression)"
                .into(),
        ),
        (
            Partition::Column {
                name: "country".into(),
            },
            &classes,
            &ten,
            2,
            "t.csv: partition column \"country\" was not kept when the table was loaded (kept \
             columns: \"group\")"
                .into(),
        ),
        (
            Partition::Column {
                name: "country".into(),
            },
            &regression,
            &ten,
            2,
            "r.csv: partition column \"country\" was not kept when the table was loaded (kept \
             columns: none)"
                .into(),
        ),
    ];
    for (partition, table, rows, n_clients, expect) in cases {
        check_error(partition, rows, table, n_clients, &expect);
    }
}
