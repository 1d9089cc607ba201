//! The `simulate` and `demo` commands end to end, through the real binary.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");

fn simulate_json(extra: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(format!("{CONTRACTS}/digits.toml"))
        .args(["--clients", "10", "--rounds", "3", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// Owners' policies decide in a simulation as on a node: client i holds the (i mod N)-th.
#[test]
fn simulate_owner_policies_decide_for_their_owners() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let grant = write(
        "grant.toml",
        "dataset = \"mine\"\n[[rule]]\nname = \"postal\"\naction = \"grant\"\npurpose_contains = [\"postal\"]\n",
    );
    let refuse = write(
        "refuse.toml",
        "[[rule]]\nname = \"never\"\naction = \"refuse\"\npurpose_contains = [\"postal\"]\n",
    );
    let v = simulate_json(&["--owner-policy", &grant, "--owner-policy", &refuse]);
    assert_eq!(v["refused"], 5, "{v:#}");
    // The publication, five grants and five refusals, then the rounds: all verified.
    assert_eq!(v["ledger"]["verified"], true, "{v:#}");
    assert!(v["ledger"]["events"].as_u64().unwrap() >= 11, "{v:#}");
    // A policy that does not parse is named with its line and key.
    let broken = write(
        "broken.toml",
        "[[rule]]\nname = \"x\"\nactoin = \"grant\"\n",
    );
    let output = Command::new(BIN)
        .args([
            "simulate",
            &format!("{CONTRACTS}/digits.toml"),
            "--owner-policy",
            &broken,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("actoin"),
        "{stderr}"
    );
}

#[test]
fn simulate_json_has_the_documented_fields() {
    let v = simulate_json(&["--seed", "5", "--partition", "dirichlet:0.5"]);
    assert_eq!(v["rounds"], 3);
    assert_eq!(v["clients"], 10);
    assert_eq!(v["seed"], 5);
    assert_eq!(v["strategy"], "fedavg");
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
    let acc = v["final_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let per_round = v["accuracy_per_round"].as_array().unwrap();
    assert_eq!(per_round.len(), 3);
    assert_eq!(per_round[2].as_f64().unwrap(), acc);
}

#[test]
fn simulate_json_reports_privacy_and_dropouts() {
    let v = simulate_json(&[
        "--clip-norm",
        "1",
        "--noise-multiplier",
        "1",
        "--secure-aggregation",
        "true",
        "--dropout",
        "0.2",
        "--seed",
        "3",
    ]);
    let epsilon = v["epsilon"].as_f64().unwrap();
    // Every client every round (fraction 1), 3 rounds at z = 1: far from private, but finite.
    assert!(epsilon > 1.0 && epsilon.is_finite(), "ε = {epsilon}");
    assert_eq!(v["delta"], 1e-5);
    assert_eq!(v["secure_aggregation"], true);
    assert!(v["dropouts"].as_u64().unwrap() > 0);
    assert_eq!(v["plain_updates_seen"], 0);
    assert!(v["masked_inputs_seen"].as_u64().unwrap() > 0);

    let plain = simulate_json(&[]);
    assert_eq!(plain["epsilon"], serde_json::Value::Null);
    assert_eq!(plain["secure_aggregation"], false);
    assert_eq!(plain["dropouts"], 0);
}

#[test]
fn bad_privacy_options_are_explained() {
    for (args, expected) in [
        (vec!["--dropout", "1.5"], "dropout"),
        (
            vec!["--secure-aggregation", "true"],
            "secure aggregation needs a clip norm",
        ),
        (
            vec!["--clip-norm", "1", "--strategy", "krum"],
            "needs every update",
        ),
        (vec!["--noise-multiplier=-1"], "privacy.noise_multiplier"),
    ] {
        let output = Command::new(BIN)
            .arg("simulate")
            .arg(format!("{CONTRACTS}/digits.toml"))
            .args(["--clients", "10", "--rounds", "2"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn same_seed_same_result_through_the_cli() {
    let a = simulate_json(&["--seed", "11", "--partition", "shards:2"]);
    let b = simulate_json(&["--seed", "11", "--partition", "shards:2"]);
    assert_eq!(a["accuracy_per_round"], b["accuracy_per_round"]);
}

#[test]
fn simulate_writes_metrics_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(format!("{CONTRACTS}/digits.toml"))
        .args(["--clients", "5", "--rounds", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "header + one row per round:\n{csv}");
    assert!(lines[0].starts_with("round,completed,accuracy"));
    let png = std::fs::read(out.join("accuracy.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "accuracy.png is not a PNG"
    );
    assert!(
        png.len() > 5_000,
        "the chart looks empty ({} bytes)",
        png.len()
    );
}

#[test]
fn regression_contracts_report_rmse() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    let mut rows = String::from("lea,school,student,score,gender,age,gcsescore,gcsecnt\n");
    for i in 0..200 {
        let gcse = 4.0 + (i % 40) as f64 / 10.0;
        let score = ((gcse - 4.0) * 2.5).round();
        let gender = if i % 2 == 0 { "F" } else { "M" };
        rows.push_str(&format!(
            "{},{},{},{score},{gender},{},{gcse},0\n",
            i % 5 + 1,
            i % 20,
            i,
            i % 11 - 5
        ));
    }
    std::fs::write(&csv, rows).unwrap();
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(format!("{CONTRACTS}/chem97.toml"))
        .arg("--data")
        .arg(&csv)
        .args(["--partition", "column:lea", "--rounds", "5", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["clients"], 5, "one client per LEA");
    let rmse = v["final_rmse"].as_f64().unwrap();
    assert!(rmse.is_finite() && rmse < 5.0, "rmse {rmse}");
    assert_eq!(v["rmse_per_round"].as_array().unwrap().len(), 5);
}

#[test]
fn demo_tells_the_story_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = Command::new(BIN)
        .arg("demo")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for fragment in [
        "100 data owners",
        "Dirichlet",
        "round 30",
        "test accuracy",
        "metrics.csv",
        "accuracy.png",
        "privacy spent: ε =",
        "masked vectors and 0 plain updates",
        "secure aggregation",
        "granted by rule \"private-postal\"",
        "refused by rule \"never-scanned-forms\"",
        "no rule decides; waits for its owner",
        "5. Rewards by measured contribution",
        "free-rider (zeros)",
        "every score recomputes from the updates",
    ] {
        assert!(
            stdout.contains(fragment),
            "demo output lacks {fragment:?}:\n{stdout}"
        );
    }
    for file in [
        "metrics.csv",
        "accuracy.png",
        "epsilon.png",
        "model.safetensors",
        "MODEL_CARD.md",
        "card.md",
        "card.html",
        "rewards/rewards.csv",
        "rewards/rewards.png",
        "rewards/card.html",
        "rewards/model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "the demo did not write {file}");
    }
    for chart in ["accuracy.png", "epsilon.png", "rewards/rewards.png"] {
        assert_png_shows_data(&out.join(chart));
    }

    // The ledger holds every automatic decision with its rule, and the released weights are
    // the ones whose hash (and accuracy) it records.
    let store = fedpool_ledger::Store::open(
        &out.join("ledger.db"),
        &fedpool_ledger::NetworkId::new("fedpool-sim").unwrap(),
    )
    .unwrap();
    let mut rules = std::collections::BTreeMap::<(String, String), usize>::new();
    let mut released = None;
    for event in store.events().unwrap() {
        match event.body() {
            fedpool_ledger::Body::ConsentGranted(c) => {
                let rule = c.decided_by.as_ref().expect("decided by a rule");
                *rules
                    .entry(("granted".into(), rule.rule.clone()))
                    .or_default() += 1;
            }
            fedpool_ledger::Body::ConsentRefused(c) => {
                let rule = c.decided_by.as_ref().expect("decided by a rule");
                *rules
                    .entry(("refused".into(), rule.rule.clone()))
                    .or_default() += 1;
            }
            fedpool_ledger::Body::ModelReleased(r) => released = Some(r.clone()),
            _ => {}
        }
    }
    assert_eq!(
        rules.keys().cloned().collect::<Vec<_>>(),
        [
            ("granted".to_string(), "private-postal".to_string()),
            ("refused".to_string(), "never-scanned-forms".to_string())
        ],
        "{rules:?}"
    );
    let released = released.expect("a model-released event");
    let contract = fedpool_core::Contract::from_toml(
        &std::fs::read_to_string(format!("{CONTRACTS}/digits_private.toml")).unwrap(),
        "digits_private.toml",
    )
    .unwrap();
    let network = fedpool_core::Network::new(
        &contract.model,
        contract.n_features(),
        contract.schema.n_outputs(),
    )
    .unwrap();
    let (params, _) = fedpool_core::release::from_safetensors(
        &std::fs::read(out.join("model.safetensors")).unwrap(),
        &network,
    )
    .unwrap();
    assert_eq!(
        fedpool_runtime::ledger::params_hash(&params),
        released.final_model_hash
    );
    let accuracy = released
        .metrics
        .iter()
        .find(|(name, _)| name == "accuracy")
        .map(|(_, v)| *v)
        .unwrap();
    assert!(
        stdout.contains(&format!("test accuracy {accuracy:.3}")),
        "the released weights' recorded accuracy {accuracy} is the one reported:\n{stdout}"
    );
}

#[test]
fn privacy_epsilon_and_sigma_plan_budgets() {
    let output = Command::new(BIN)
        .args([
            "privacy", "epsilon", "--q", "0.1", "--sigma", "1.0", "--rounds", "30", "--delta",
            "1e-5", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let epsilon = v["epsilon"].as_f64().unwrap();
    assert!((epsilon - 4.848).abs() < 0.01, "ε = {epsilon}");
    assert_eq!(v["rounds"], 30);
    let output = Command::new(BIN)
        .args([
            "privacy",
            "sigma",
            "--q",
            "0.1",
            "--rounds",
            "30",
            "--epsilon",
            "4.848",
            "--delta",
            "1e-5",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sigma = v["sigma"].as_f64().unwrap();
    assert!((sigma - 1.0).abs() < 0.01, "σ = {sigma}");
    let output = Command::new(BIN)
        .args([
            "privacy", "epsilon", "--q", "1.5", "--sigma", "1.0", "--rounds", "30", "--delta",
            "1e-5",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains('q') && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn privacy_contract_prints_what_a_contracts_rounds_cost() {
    let output = Command::new(BIN)
        .args(["privacy", "contract"])
        .arg(format!("{CONTRACTS}/mnist_private.toml"))
        .args(["--owners", "1000", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Every owner is asked; each contributes by its own coin at q = 0.1.
    assert_eq!(v["asked_per_round"], 1000);
    assert_eq!(v["self_selected"], true);
    assert!((v["expected_contributions_per_round"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(v["secure_aggregation"], true);
    let per_round = v["epsilon_per_round"].as_array().unwrap();
    assert_eq!(per_round.len(), 30);
    let epsilon = v["epsilon"].as_f64().unwrap();
    // The distributed discrete Gaussian's bound: above the Gaussian's 4.848, as the README says.
    assert!((epsilon - 6.308).abs() < 0.01, "ε = {epsilon}");
    assert!(per_round.windows(2).all(|w| w[0].as_f64() <= w[1].as_f64()));

    let output = Command::new(BIN)
        .args(["privacy", "contract"])
        .arg(format!("{CONTRACTS}/digits.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("adds no noise"));
}

/// Runs `fedpool ARGS…` and returns (success, stderr), checking it never panicked.
fn run_quiet(args: &[&str]) -> (bool, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stderr)
}

#[test]
fn a_simulation_in_which_no_round_completes_fails() {
    let digits = format!("{CONTRACTS}/digits.toml");
    // One client cannot meet the contract's two-client minimum.
    let (ok, stderr) = run_quiet(&["simulate", &digits, "--clients", "1", "--rounds", "2"]);
    assert!(!ok && stderr.contains("no round completed"), "{stderr}");
    // Nobody consents.
    let (ok, stderr) = run_quiet(&[
        "simulate",
        &digits,
        "--clients",
        "5",
        "--rounds",
        "2",
        "--consent-rate",
        "0",
    ]);
    assert!(!ok && stderr.contains("no round completed"), "{stderr}");
    let (ok, stderr) = run_quiet(&["simulate", &digits, "--rounds", "0"]);
    assert!(!ok && stderr.contains("--rounds 0"), "{stderr}");
}

#[test]
fn an_infinite_epsilon_is_an_error_that_says_why() {
    let (ok, stderr) = run_quiet(&[
        "privacy",
        "contract",
        &format!("{CONTRACTS}/digits_private.toml"),
        "--owners",
        "1000000000",
    ]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("no finite ε"), "{stderr}");
    assert!(stderr.contains("discrete Gaussian"), "{stderr}");
}

#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args(["privacy", "contract"])
        .arg(format!("{CONTRACTS}/mnist_private.toml"))
        .args(["--owners", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the pipe before the command writes: like `fedpool … | head -0`.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(libc_sigpipe()),
        "{:?}",
        output.status
    );
}

/// SIGPIPE's number on Linux and the BSDs.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn a_simulation_never_appends_to_an_existing_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("sim.db");
    let digits = format!("{CONTRACTS}/digits.toml");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "simulate",
            digits.as_str(),
            "--clients",
            "3",
            "--rounds",
            "1",
        ];
        a.extend(["--ledger", ledger.to_str().unwrap()]);
        a.extend(extra.iter().copied());
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        run_quiet(&refs)
    };
    let (ok, stderr) = run(args(&[]));
    assert!(ok, "{stderr}");
    let before = std::fs::read(&ledger).unwrap();
    let (ok, stderr) = run(args(&[]));
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read(&ledger).unwrap(),
        before,
        "the ledger was touched"
    );
    // With --force the file is replaced by a new ledger that verifies on its own.
    let (ok, stderr) = run(args(&["--force"]));
    assert!(ok, "{stderr}");
}

#[test]
fn the_centralised_baseline_runs_with_min_clients_one() {
    let digits = format!("{CONTRACTS}/digits.toml");
    let (ok, stderr) = run_quiet(&[
        "simulate",
        &digits,
        "--clients",
        "1",
        "--min-clients",
        "1",
        "--rounds",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = run_quiet(&["simulate", &digits, "--min-clients", "0", "--rounds", "1"]);
    assert!(!ok && stderr.contains("min_clients"), "{stderr}");
}

#[test]
fn simulate_json_lists_each_clients_value_and_reward_when_asked() {
    let v = simulate_json(&["--attack", "free-rider:0.1", "--value"]);
    let rewards = v["rewards"].as_array().unwrap();
    assert_eq!(rewards.len(), 10);
    let free_rider = rewards
        .iter()
        .find(|c| c["behaviour"].as_str().unwrap().starts_with("free-rider"))
        .unwrap();
    assert_eq!(free_rider["value"], 0.0, "a zero update is worth nothing");
    assert_eq!(free_rider["reward"], 0);
    let paid: u64 = rewards.iter().map(|c| c["reward"].as_u64().unwrap()).sum();
    assert_eq!(paid, 1000, "the contract's whole pool, to the unit");
    assert!(v["rewards_method"].as_str().unwrap().starts_with("Shapley"));
    assert_eq!(v["rewards_currency"], "credits");
    // Without --value nothing is valued (and nothing is listed).
    assert!(simulate_json(&[]).get("rewards").is_none());
}

/// Runs `fedpool ARGS` under a pseudo-terminal (util-linux `script`, essential on Debian) and
/// returns everything it drew.
fn on_a_terminal(args: &str) -> String {
    let output = Command::new("script")
        .args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .output()
        .expect("util-linux `script` runs a command on a pseudo-terminal");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_terminal_shows_round_progress_and_json_or_a_pipe_shows_none() {
    let simulate = format!("simulate {CONTRACTS}/digits.toml --clients 100 --rounds 30");
    // The bar redraws at its own rate and clears itself at the end: some "round K/30".
    let drawn = on_a_terminal(&simulate);
    assert!(
        (0..=30).any(|k| drawn.contains(&format!("  round {k}/30 "))),
        "no progress bar on a terminal:\n{drawn}"
    );
    assert!(!on_a_terminal(&format!("{simulate} --json")).contains("/30"));
    // Not a terminal: the plain lines only.
    let piped = Command::new(BIN)
        .args(simulate.split(' '))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("/30"));
    assert!(!String::from_utf8_lossy(&piped.stdout).contains("/30"));
}

#[test]
fn rewards_show_each_owners_earnings_per_round_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--home")
            .arg(&home)
            .args(args)
            .env("FEDPOOL_NETWORK", "fedpool-sim")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["init"]);
    let ledger = home.join("ledger.db");
    let digits = format!("{CONTRACTS}/digits.toml");
    let status = Command::new(BIN)
        .args([
            "simulate",
            &digits,
            "--clients",
            "5",
            "--rounds",
            "3",
            "--value",
        ])
        .args(["--ledger", ledger.to_str().unwrap(), "--force"])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let all: serde_json::Value =
        serde_json::from_str(&run(&["rewards", "--all", "--json"])).unwrap();
    let model = &all["models"][0];
    assert_eq!(model["paid"], 1000, "the whole pool");
    assert_eq!(model["pool"], 1000);
    let balances = model["balances"].as_array().unwrap();
    assert_eq!(balances.len(), 5);
    let owner = balances[0]["owner"].as_str().unwrap();
    let mine: serde_json::Value = serde_json::from_str(&run(&[
        "rewards",
        "--model",
        "digits-classifier",
        "--owner",
        owner,
        "--json",
    ]))
    .unwrap();
    let earned = &mine["models"][0];
    assert_eq!(earned["balance"], balances[0]["amount"]);
    let payouts = earned["payouts"].as_array().unwrap();
    let rounds: Vec<_> = payouts.iter().map(|p| p["round"].clone()).collect();
    assert_eq!(
        rounds.last(),
        Some(&serde_json::Value::Null),
        "the final payout"
    );
    let sum: u64 = payouts.iter().map(|p| p["amount"].as_u64().unwrap()).sum();
    assert_eq!(serde_json::json!(sum), earned["balance"]);
    // This home's own identity took no part.
    assert!(run(&["rewards"]).contains("has no rewards"));
    assert!(run(&["ledger", "verify"]).starts_with("OK"));
}

/// A PNG that decodes and draws something: more than 1% of its pixels are not white, in
/// more than two colours.
fn assert_png_shows_data(path: &std::path::Path) {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    let total = image.pixels().count();
    let drawn = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        drawn * 100 > total && colours.len() > 2,
        "{} is blank: {drawn} of {total} pixels drawn, {} colours",
        path.display(),
        colours.len()
    );
}

#[test]
fn simulate_out_writes_the_released_model_its_cards_and_the_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let ledger = dir.path().join("ledger.db");
    let digits = format!("{CONTRACTS}/digits.toml");
    let output = Command::new(BIN)
        .args([
            "simulate",
            &digits,
            "--clients",
            "10",
            "--rounds",
            "3",
            "--value",
        ])
        .args([
            "--attack",
            "free-rider:0.1",
            "--attack",
            "duplicate:0.1",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .args(["--ledger", ledger.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for file in [
        "metrics.csv",
        "accuracy.png",
        "model.safetensors",
        "MODEL_CARD.md",
        "card.md",
        "card.html",
        "rewards.csv",
        "rewards.png",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert_png_shows_data(&out.join("accuracy.png"));
    assert_png_shows_data(&out.join("rewards.png"));
    let rewards = std::fs::read_to_string(out.join("rewards.csv")).unwrap();
    assert_eq!(
        rewards.lines().count(),
        11,
        "a header and one line per client"
    );
    assert!(rewards.contains("free-rider"));
    let card = std::fs::read_to_string(out.join("MODEL_CARD.md")).unwrap();
    assert!(card.contains("## Training data") && card.contains("10 owners consented"));
    let html = std::fs::read_to_string(out.join("card.html")).unwrap();
    assert!(html.contains("paid so far: 1000 credits"), "{html}");
    // The weights are the model the ledger says was released.
    let released = std::fs::read(out.join("model.safetensors")).unwrap();
    let network_hash = |bytes: &[u8]| {
        let contract = fedpool_core::Contract::from_toml(
            &std::fs::read_to_string(&digits).unwrap(),
            "digits.toml",
        )
        .unwrap();
        let network = fedpool_core::Network::new(
            &contract.model,
            contract.n_features(),
            contract.schema.n_outputs(),
        )
        .unwrap();
        let (params, metadata) = fedpool_core::release::from_safetensors(bytes, &network).unwrap();
        (fedpool_runtime::ledger::params_hash(&params), metadata)
    };
    let (hash, metadata) = network_hash(&released);
    assert_eq!(metadata["fedpool.params_hash"], hash);
    assert_eq!(
        metadata["fedpool.model_id"],
        report["ledger"]["model_id"].as_str().unwrap()
    );
    let show = Command::new(BIN)
        .args(["ledger", "show", "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-sim")
        .arg("--home")
        .arg(dir.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains(&hash), "the ledger's release names {hash}");
}
