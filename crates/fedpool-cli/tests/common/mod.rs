//! What the process-level tests share: the binary, the repository root, running a command in a
//! node's home, and the bundled digits split into shares.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// `fedpool --home HOME ARGS…` on the test network.
pub fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .output()
        .unwrap()
}

/// [`run`], which must succeed; its standard output.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "fedpool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Splits the bundled digits into `n` CSV files of equal size (plus the header).
pub fn digits_shares(dir: &Path, n: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("{ROOT}/data/digits/digits.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let per = rows.len() / n;
    (0..n)
        .map(|i| {
            let path = dir.join(format!("share{i}.csv"));
            let mut body = format!("{header}\n");
            for row in &rows[i * per..(i + 1) * per] {
                body.push_str(row);
                body.push('\n');
            }
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect()
}
