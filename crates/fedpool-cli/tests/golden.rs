//! Golden files: what the main commands print, through the real binary, compared with
//! `tests/golden/*.txt`. Values that differ between runs by design (fresh keys and the ids
//! hashed from them, wall-clock times, temporary paths) are replaced by placeholders first;
//! everything else — numbers, wording, layout — must match. After an intended change, run
//! `FEDPOOL_UPDATE_GOLDEN=1 cargo nextest run --workspace -E 'binary(golden)'` and review the diff.
//!
//! Output is not a terminal here, so these files also show that no progress bar or colour
//! reaches a pipe.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs `fedpool ARGS` (with `home`, when given); returns stdout then stderr, labelled, and the
/// exit status.
fn fedpool(home: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new(BIN);
    if let Some(home) = home {
        command.arg("--home").arg(home);
    }
    let output = command
        .args(args)
        .current_dir(ROOT)
        .env_remove("FEDPOOL_HOME")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    format!(
        "$ fedpool {}\n{}{}[exit {}]\n",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().unwrap_or(-1)
    )
}

/// Replaces what varies between runs: DIDs and content hashes (keys are fresh), times, the
/// temporary directory.
fn normalise(text: &str, tmp: &Path) -> String {
    let text = text.replace(&tmp.display().to_string(), "<tmp>");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words: Vec<String> = Vec::new();
        for word in line.split(' ') {
            words.push(normalise_word(word));
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    // "in 0.12 s": a wall-clock duration.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find(" in ") {
        let (head, tail) = rest.split_at(at + 4);
        result.push_str(head);
        let number_len = tail
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(tail.len());
        if number_len > 0 && tail[number_len..].starts_with(" s") {
            result.push_str("<secs>");
            rest = &tail[number_len..];
        } else {
            rest = tail;
        }
    }
    result.push_str(rest);
    result
}

fn normalise_word(word: &str) -> String {
    let trimmed = word.trim_matches(|c: char| "(),:;\"'".contains(c));
    let placeholder = if trimmed.starts_with("did:key:z") {
        Some("<did>")
    } else if trimmed.starts_with("bafkr4") {
        Some("<hash>")
    } else if trimmed.len() == 10
        && trimmed.as_bytes()[4] == b'-'
        && trimmed.chars().filter(char::is_ascii_digit).count() == 8
    {
        Some("<date>")
    } else if trimmed.len() == 5
        && trimmed.as_bytes()[2] == b':'
        && trimmed.chars().filter(char::is_ascii_digit).count() == 4
    {
        Some("<time>")
    } else {
        None
    };
    match placeholder {
        Some(p) if !trimmed.is_empty() => word.replacen(trimmed, p, 1),
        _ => word.to_string(),
    }
}

/// Compares `actual` with `tests/golden/{name}.txt`, or rewrites the file when asked.
fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("FEDPOOL_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with FEDPOOL_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {} (FEDPOOL_UPDATE_GOLDEN=1 rewrites it after an intended change)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

#[test]
fn simulate_prints_its_setup_result_and_ledger_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let mut out = fedpool(
        None,
        &[
            "simulate",
            "contracts/digits.toml",
            "--clients",
            "20",
            "--rounds",
            "3",
        ],
    );
    out += &fedpool(
        None,
        &[
            "simulate",
            "contracts/adult.toml",
            "--clients",
            "20",
            "--rounds",
            "2",
            "--partition",
            "dirichlet:0.3",
        ],
    );
    out += &fedpool(
        None,
        &[
            "simulate",
            "contracts/adult_private.toml",
            "--clients",
            "30",
            "--rounds",
            "1",
        ],
    );
    // No round can complete: the exit status says so.
    out += &fedpool(
        None,
        &[
            "simulate",
            "contracts/digits.toml",
            "--clients",
            "1",
            "--rounds",
            "2",
        ],
    );
    check_golden("simulate", &normalise(&out, tmp.path()));
}

#[test]
fn privacy_planning_prints_the_accountants_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let mut out = fedpool(
        None,
        &[
            "privacy",
            "contract",
            "contracts/digits_private.toml",
            "--owners",
            "1000",
        ],
    );
    out += &fedpool(
        None,
        &[
            "privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--rounds", "1000", "--delta",
            "1e-5",
        ],
    );
    out += &fedpool(
        None,
        &[
            "privacy",
            "contract",
            "contracts/digits_private.toml",
            "--owners",
            "1000000000",
        ],
    );
    check_golden("privacy", &normalise(&out, tmp.path()));
}

#[test]
fn a_nodes_identity_publication_card_consent_and_ledger_read_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut out = fedpool(Some(&home), &["init"]);
    out += &fedpool(Some(&home), &["publish", "contracts/adult.toml"]);
    out += &fedpool(Some(&home), &["models"]);
    out += &fedpool(Some(&home), &["card", "adult-income"]);
    let data = tmp.path().join("rows.csv");
    std::fs::write(
        &data,
        "age,workclass,education_num,marital_status,occupation,relationship,capital_gain,capital_loss,hours_per_week,income\n\
         39,State-gov,13,Never-married,Adm-clerical,Not-in-family,2174,0,40,<=50K\n\
         50,Self-emp-not-inc,13,Married-civ-spouse,Exec-managerial,Husband,0,0,13,>50K\n",
    )
    .unwrap();
    out += &fedpool(
        Some(&home),
        &["data", "add", "mine", &data.display().to_string()],
    );
    out += &fedpool(
        Some(&home),
        &[
            "consent",
            "grant",
            "adult-income",
            "--data",
            "mine",
            "--epsilon-cap",
            "4",
        ],
    );
    out += &fedpool(Some(&home), &["consent", "list"]);
    out += &fedpool(Some(&home), &["ledger", "verify"]);
    check_golden("node", &normalise(&out, tmp.path()));
}

#[test]
fn the_command_list_is_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fedpool(None, &["--help"]);
    check_golden("help", &normalise(&out, tmp.path()));
}
