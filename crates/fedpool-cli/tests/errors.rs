//! Every malformed input gets an error naming what is wrong and where, a non-zero exit, and no
//! panic. One case per malformed input: `check` runs the real binary.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const CONTRACT: &str = include_str!("../../../contracts/breast_cancer.toml");

/// A three-feature contract so CSV cases stay small.
fn small_contract() -> String {
    let start = CONTRACT.find("[[schema.columns]]").unwrap();
    let end = CONTRACT.find("[task]").unwrap();
    let columns = "[[schema.columns]]\nname = \"a\"\ntype = \"numeric\"\n\
                   [[schema.columns]]\nname = \"b\"\ntype = \"numeric\"\n\
                   [[schema.columns]]\nname = \"colour\"\ntype = \"categorical\"\ncategories = [\"red\", \"blue\"]\n\n";
    format!("{}{}{}", &CONTRACT[..start], columns, &CONTRACT[end..])
}

fn run(dir: &Path, contract: &str, csv: &str) -> (bool, String) {
    let contract_path = dir.join("model.toml");
    let csv_path = dir.join("rows.csv");
    std::fs::write(&contract_path, contract).unwrap();
    std::fs::write(&csv_path, csv).unwrap();
    let output = Command::new(BIN)
        .args(["simulate"])
        .arg(&contract_path)
        .arg("--data")
        .arg(&csv_path)
        .args(["--clients", "2", "--rounds", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

/// Runs the case and asserts failure, no panic, and every expected fragment in stderr.
fn check(contract: &str, csv: &str, fragments: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run(dir.path(), contract, csv);
    assert!(!ok, "expected a non-zero exit; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    for fragment in fragments {
        assert!(
            stderr.contains(fragment),
            "stderr lacks {fragment:?}:\n{stderr}"
        );
    }
}

const GOOD_ROWS: &str =
    "a,b,colour,label\n1,2,red,0\n2,3,blue,1\n3,1,red,0\n4,4,blue,1\n5,2,red,0\n6,3,blue,1\n";

#[test]
fn good_input_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run(dir.path(), &small_contract(), GOOD_ROWS);
    assert!(ok, "{stderr}");
}

#[test]
fn csv_missing_column() {
    check(
        &small_contract(),
        "a,colour,label\n1,red,0\n",
        &["rows.csv", "\"b\""],
    );
}

#[test]
fn csv_wrong_type() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\n2,abc,blue,1\n",
        &["rows.csv", "line 3", "\"b\"", "abc"],
    );
}

#[test]
fn csv_nan_cell() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\nNaN,3,blue,1\n",
        &["rows.csv", "line 3", "\"a\""],
    );
}

#[test]
fn csv_empty_cell() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\n2,,blue,1\n",
        &["rows.csv", "line 3", "\"b\"", "empty"],
    );
}

#[test]
fn csv_empty_file() {
    check(&small_contract(), "", &["rows.csv", "empty"]);
}

#[test]
fn csv_header_only() {
    check(&small_contract(), "a,b,colour,label\n", &["rows.csv"]);
}

#[test]
fn csv_unknown_label() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\n2,3,blue,7\n",
        &["rows.csv", "line 3", "\"label\"", "7"],
    );
}

#[test]
fn csv_unknown_category() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,green,0\n",
        &["rows.csv", "line 2", "\"colour\"", "green"],
    );
}

#[test]
fn csv_ragged_row() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\n2,3,blue\n",
        &["rows.csv", "line 3"],
    );
}

#[test]
fn contract_not_toml() {
    check("this is [not toml", GOOD_ROWS, &["model.toml", "line 1"]);
}

#[test]
fn contract_missing_section() {
    let contract = small_contract().replace("[task]\nkind = \"classification\"\n", "");
    check(&contract, GOOD_ROWS, &["model.toml", "task"]);
}

#[test]
fn contract_unknown_key() {
    let contract = small_contract().replace("[training]\n", "[training]\nrouns = 3\n");
    check(&contract, GOOD_ROWS, &["model.toml", "rouns"]);
}

#[test]
fn contract_bad_model_kind_lists_allowed_values() {
    let contract = small_contract().replace("kind = \"logistic_regression\"", "kind = \"forest\"");
    check(
        &contract,
        GOOD_ROWS,
        &["model.toml", "forest", "logistic_regression", "mlp", "cnn"],
    );
}

#[test]
fn contract_bad_strategy_lists_allowed_values() {
    let contract = small_contract().replace("name = \"fedavg\"", "name = \"fedfoo\"");
    check(
        &contract,
        GOOD_ROWS,
        &["model.toml", "fedfoo", "fedavg", "krum"],
    );
}

#[test]
fn contract_out_of_range_value_names_key() {
    let contract = small_contract().replace("rounds = 20", "rounds = 0");
    check(
        &contract,
        GOOD_ROWS,
        &["model.toml", "training.rounds", "at least 1"],
    );
}

#[test]
fn contract_bad_privacy_terms_name_key() {
    let contract = small_contract().replace("noise_multiplier = 0.0", "noise_multiplier = -1.0");
    check(
        &contract,
        GOOD_ROWS,
        &["model.toml", "privacy.noise_multiplier"],
    );
}

#[test]
fn contract_bad_reward_terms_list_allowed_values() {
    let contract = small_contract().replace("valuation = \"shapley\"", "valuation = \"vibes\"");
    check(
        &contract,
        GOOD_ROWS,
        &["model.toml", "vibes", "shapley", "leave_one_out"],
    );
}

#[test]
fn contract_label_type_mismatch_names_key() {
    let contract = small_contract().replace("kind = \"classification\"", "kind = \"regression\"");
    check(&contract, GOOD_ROWS, &["model.toml", "schema.label.type"]);
}

#[test]
fn bad_partition_flag_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let contract_path = dir.path().join("model.toml");
    std::fs::write(&contract_path, small_contract()).unwrap();
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(&contract_path)
        .args(["--partition", "dirichlet:-1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("dirichlet"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let contract_path = dir.path().join("model.toml");
    std::fs::write(&contract_path, small_contract()).unwrap();
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(&contract_path)
        .args(["--data", "/no/such/file.csv"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/no/such/file.csv"), "{stderr}");
}

#[test]
fn control_characters_from_a_file_never_reach_the_terminal_raw() {
    // A header holding an ANSI escape (it would turn the terminal red) and a bell.
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run(
        dir.path(),
        &small_contract(),
        "a,b,\u{1b}[31mcolour\u{7},label\n1,2,red,benign\n",
    );
    assert!(!ok);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\u{1b}[31mcolour\\u{7}"), "{stderr}");
}

#[test]
fn csv_cell_beyond_the_f32_range() {
    check(
        &small_contract(),
        "a,b,colour,label\n1,2,red,0\n2,1e39,blue,1\n",
        &[
            "rows.csv",
            "line 3",
            "\"b\"",
            "1e39",
            "exceeds the f32 range",
        ],
    );
}
