//! fedpool as separate processes on loopback: real `fedpool node run` processes replicate
//! the ledger over libp2p and train a model with DP and secure aggregation; faults are played
//! against them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{BIN, ROOT, digits_shares, ok, run};

/// Node processes, killed when the test ends however it ends.
struct Cluster {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    round_timeout: String,
    bootstrap: Option<String>,
    listen: Option<String>,
    /// Extra `node run` arguments, by node name.
    extra: Vec<(String, Vec<String>)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
impl Cluster {
    fn new() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
            round_timeout: "20".into(),
            bootstrap: None,
            listen: None,
            extra: Vec::new(),
        }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `fedpool node run` for `name` and returns its ready line.
    fn start(&mut self, name: &str, bootstrap: Option<&str>) -> Value {
        let home = self.home(name);
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--home")
            .arg(&home)
            .args(["node", "run", "--json", "--listen"])
            .arg(
                self.listen
                    .take()
                    .unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into()),
            )
            .args([
                "--round-timeout",
                &self.round_timeout,
                "--sync-interval",
                "0.5",
            ])
            .env("FEDPOOL_NETWORK", "fedpool-test-net")
            .env("FEDPOOL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(addr) = bootstrap {
            command.args(["--bootstrap", addr]);
        }
        for (_, args) in self.extra.iter().filter(|(n, _)| n == name) {
            command.args(args);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.children.push((name.to_string(), child));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"))
    }

    fn kill(&mut self, name: &str) {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn status(&self, name: &str) -> Value {
        serde_json::from_str(&ok(&self.home(name), &["node", "status", "--json"])).unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, for a failure message: a round that fails
    /// under load is explained by the owners' side as often as by the publisher's.
    fn log_tails(&self, lines: usize) -> String {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".log").map(str::to_string)
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| {
                let log = self.log(name);
                let tail: Vec<&str> = log.lines().rev().take(lines).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `check` holds, or fails with `what`.
    fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn heads(cluster: &Cluster, name: &str) -> String {
    cluster.status(name)["ledger"]["heads_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn ten_processes_train_a_private_model_with_secure_aggregation_and_agree_on_the_ledger() {
    let mut cluster = Cluster::new();
    let owners: Vec<String> = (1..=9).map(|i| format!("owner{i}")).collect();
    // Every owner reads the card from its replicated ledger, and eight consent.
    let model = consenting_cluster(&mut cluster, 9, 8, "digits_private.toml", "20");
    let publisher = cluster.home("publisher");
    let out = ok(
        &publisher,
        &["train", &model, "--rounds", "5", "--eval", "eval", "--json"],
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    assert_eq!(completed.len(), 5, "{out}\n{}", cluster.log_tails(40));
    for round in &completed {
        assert_eq!(round["contributors"], 8, "{round}");
    }
    let finished = lines.iter().find(|l| l["event"] == "finished").unwrap();
    // Eight owners, each contributing by a 0.2 coin under σ = 1.5: the noise dominates, so
    // only that the publisher evaluated the aggregate is checked here (accuracy is the
    // simulation's and the plain network test's job).
    let accuracy = finished["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "accuracy {accuracy}");
    let epsilon = finished["epsilon"].as_f64().unwrap();
    assert!(epsilon > 0.0 && epsilon <= 8.0, "ε {epsilon}");

    // The ninth owner never consented: it was never asked.
    let ninth = cluster.status(&owners[8]);
    assert!(ninth["privacy"].as_array().unwrap().is_empty(), "{ninth}");
    // Every consenting owner accounted its own ε, at most the contract's budget.
    for owner in &owners[..8] {
        let privacy = &cluster.status(owner)["privacy"][0];
        assert_eq!(privacy["model"].as_str().unwrap(), model);
        assert!(privacy["epsilon"].as_f64().unwrap() <= 8.0);
    }

    // Afterwards every ledger holds the same heads, and each verifies.
    let names: Vec<String> = std::iter::once("publisher".to_string())
        .chain(owners.iter().cloned())
        .collect();
    cluster.wait_for("identical ledger heads", Duration::from_secs(30), |c| {
        let all: Vec<String> = names.iter().map(|n| heads(c, n)).collect();
        all.iter().all(|h| *h == all[0])
    });
    for name in &names {
        let verify = ok(&cluster.home(name), &["ledger", "verify"]);
        assert!(verify.contains("OK"), "{name}: {verify}");
    }

    // An owner revokes: the next rounds never ask it, and its node would refuse anyway.
    let revoker = &owners[0];
    let asked_before = cluster.status(revoker)["privacy"][0]["requests_received"].clone();
    ok(&cluster.home(revoker), &["consent", "revoke", &model]);
    cluster.wait_for(
        "the revocation to reach the publisher",
        Duration::from_secs(30),
        |c| heads(c, "publisher") == heads(c, revoker),
    );
    let out = ok(&publisher, &["train", &model, "--rounds", "1", "--json"]);
    let round: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["event"] == "completed")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        round["round"], 6,
        "rounds continue after the committed ones: {out}"
    );
    assert_eq!(round["contributors"], 7);
    assert_eq!(
        cluster.status(revoker)["privacy"][0]["requests_received"],
        asked_before
    );
}

/// A publisher node and `n` owner nodes (`owner1`…), the first `n_consenting` of which consent
/// to `contract` once its publication has reached them; returns the model id.
fn consenting_cluster(
    cluster: &mut Cluster,
    n: usize,
    n_consenting: usize,
    contract: &str,
    round_timeout: &str,
) -> String {
    let shares = digits_shares(cluster.dir.path(), n + 1);
    let publisher = cluster.home("publisher");
    ok(&publisher, &["init"]);
    ok(
        &publisher,
        &["data", "add", "eval", shares[0].to_str().unwrap()],
    );
    let model = ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/{contract}")],
    )
    .trim()
    .to_string();
    cluster.round_timeout = round_timeout.to_string();
    let ready = cluster.start("publisher", None);
    let bootstrap = ready["listen"][0].as_str().unwrap().to_string();
    cluster.bootstrap = Some(bootstrap.clone());
    for (i, share) in shares.iter().enumerate().skip(1) {
        let owner = format!("owner{i}");
        let home = cluster.home(&owner);
        ok(&home, &["init"]);
        ok(&home, &["data", "add", "mine", share.to_str().unwrap()]);
        cluster.start(&owner, Some(&bootstrap));
    }
    for i in 1..=n {
        let owner = format!("owner{i}");
        cluster.wait_for(
            "the publication to reach an owner",
            Duration::from_secs(30),
            |c| {
                c.status(&owner)["models"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty())
            },
        );
        if i <= n_consenting {
            ok(
                &cluster.home(&owner),
                &["consent", "grant", &model, "--data", "mine"],
            );
        }
    }
    cluster.wait_for(
        "the consents to reach the publisher",
        Duration::from_secs(30),
        |c| c.status("publisher")["ledger"]["authors"] == n_consenting + 1,
    );
    // A member builds a secure round's directory from the consents its own ledger holds: one
    // that has not heard every other member's consent yet gives the round up (and logs why).
    // Rounds here start from synced ledgers.
    for i in 1..=n_consenting {
        let owner = format!("owner{i}");
        cluster.wait_for(
            "every consent to reach every consenting owner",
            Duration::from_secs(30),
            |c| c.status(&owner)["ledger"]["authors"] == n_consenting + 1,
        );
    }
    model
}

fn train_lines(home: &Path, model: &str, rounds: &str) -> Vec<Value> {
    let out = run(
        home,
        &[
            "train", model, "--rounds", rounds, "--eval", "eval", "--json",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_plain_model_trained_across_processes_learns_digits() {
    let mut cluster = Cluster::new();
    let model = consenting_cluster(&mut cluster, 3, 3, "digits.toml", "20");
    let lines = train_lines(&cluster.home("publisher"), &model, "5");
    let finished = lines.iter().find(|l| l["event"] == "finished").unwrap();
    assert_eq!(finished["rounds_completed"], 5, "{lines:?}");
    let accuracy = finished["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "accuracy {accuracy}");

    // The publisher releases it: the weights are the last committed round's, on the ledger.
    let publisher = cluster.home("publisher");
    let out = cluster.dir.path().join("release");
    ok(
        &publisher,
        &["release", &model, "--out", out.to_str().unwrap()],
    );
    let card = std::fs::read_to_string(out.join("MODEL_CARD.md")).unwrap();
    assert!(
        card.contains("3 owners consented; 3 contributed to at least one of 5 rounds"),
        "{card}"
    );
    let contract = fedpool_core::Contract::from_toml(
        &std::fs::read_to_string(format!("{ROOT}/contracts/digits.toml")).unwrap(),
        "digits.toml",
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
    let hash = fedpool_runtime::ledger::params_hash(&params);
    let shown = ok(&publisher, &["ledger", "show", "--json"]);
    assert!(
        shown.contains("model-released") && shown.contains(&hash),
        "{shown}"
    );
    let again = run(
        &publisher,
        &["release", &model, "--out", out.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already released"));
    let owner = cluster.home("owner1");
    let foreign = run(&owner, &["release", &model]);
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("only its publisher releases it"));
}

/// A network publisher pays by contribution: each plain round's updates are valued on its
/// evaluation set and the round's share paid; when the contract's rounds are done (over two
/// `train` runs), the rest is paid by total score, once. The payouts sum to the pool to the unit, verify, and reach the owners,
/// whose `fedpool rewards` shows what each earned.
#[test]
fn a_network_publisher_pays_its_pool_by_contribution_and_owners_see_their_earnings() {
    let mut cluster = Cluster::new();
    let model = consenting_cluster(&mut cluster, 3, 3, "digits.toml", "20");
    let publisher = cluster.home("publisher");
    // A first run of 10 of the contract's 30 rounds pays their shares and no final payout; a
    // second run goes on from what the ledger says was paid.
    let first = train_lines(&publisher, &model, "10");
    let finished = first.iter().find(|l| l["event"] == "finished").unwrap();
    assert!(finished["final_paid"].is_null(), "{finished}");
    let so_far: Value =
        serde_json::from_str(&ok(&publisher, &["rewards", "--all", "--json"])).unwrap();
    let paid_early = so_far["models"][0]["paid"].as_u64().unwrap();
    assert!(paid_early > 0 && paid_early < 1000, "{so_far:#}");
    let lines = train_lines(&publisher, &model, "20");
    let completed: Vec<&Value> = first
        .iter()
        .chain(&lines)
        .filter(|l| l["event"] == "completed")
        .collect();
    assert_eq!(completed.len(), 30, "{lines:?}");
    assert!(
        completed.iter().any(|l| l["paid"].as_u64() > Some(0)),
        "rounds pay their share: {lines:?}"
    );
    // The final payout pays exactly what the rounds left (nothing, when every round's share
    // was paid in full).
    let finished = lines.iter().find(|l| l["event"] == "finished").unwrap();
    let paid_by_rounds: u64 = completed.iter().filter_map(|l| l["paid"].as_u64()).sum();
    let final_paid = finished["final_paid"].as_u64().unwrap_or(0);
    assert_eq!(paid_by_rounds + final_paid, 1000, "{lines:?}");
    let verify = ok(&publisher, &["ledger", "verify"]);
    assert!(verify.starts_with("OK"), "{verify}");
    let all: Value =
        serde_json::from_str(&ok(&publisher, &["rewards", "--all", "--json"])).unwrap();
    let paid_model = &all["models"][0];
    assert_eq!(paid_model["paid"], 1000, "{all:#}");
    assert_eq!(
        paid_model["balances"].as_array().unwrap().len(),
        3,
        "{all:#}"
    );
    // Every owner's node receives the payouts and sees its own earnings.
    let mut total = 0;
    for i in 1..=3 {
        let owner = format!("owner{i}");
        cluster.wait_for(
            "the payouts to reach an owner",
            Duration::from_secs(30),
            |c| {
                // Every payout has reached it once its ledger shows the whole pool paid (a
                // final payout exists only when the rounds left something).
                let seen: Value =
                    serde_json::from_str(&ok(&c.home(&owner), &["rewards", "--all", "--json"]))
                        .unwrap();
                seen["models"][0]["paid"] == 1000
            },
        );
        let mine: Value =
            serde_json::from_str(&ok(&cluster.home(&owner), &["rewards", "--json"])).unwrap();
        let balance = mine["models"][0]["balance"].as_u64().unwrap();
        assert!(balance > 0, "{mine:#}");
        total += balance;
    }
    assert_eq!(total, 1000);
}

/// Owners' nodes run before the model exists; when its publication arrives by gossip, each
/// node's consent policy decides at once: two grant (and only they train), one refuses, each
/// decision replicated to the publisher naming its rule.
#[test]
fn a_running_node_applies_its_owners_policy_to_a_publication_as_it_arrives() {
    let mut cluster = Cluster::new();
    let shares = digits_shares(cluster.dir.path(), 4);
    let publisher = cluster.home("publisher");
    ok(&publisher, &["init"]);
    ok(
        &publisher,
        &["data", "add", "eval", shares[0].to_str().unwrap()],
    );
    let ready = cluster.start("publisher", None);
    let bootstrap = ready["listen"][0].as_str().unwrap().to_string();
    let policies = [
        ("owner1", "private-or-postal", "grant"),
        ("owner2", "postal", "grant"),
        ("owner3", "no-digits", "refuse"),
    ];
    let mut dids = Vec::new();
    for (i, (owner, rule, action)) in policies.iter().enumerate() {
        let home = cluster.home(owner);
        dids.push(ok(&home, &["init"]).trim().to_string());
        ok(
            &home,
            &["data", "add", "mine", shares[i + 1].to_str().unwrap()],
        );
        let policy = cluster.dir.path().join(format!("{owner}.toml"));
        std::fs::write(
            &policy,
            format!(
                "dataset = \"mine\"\n[[rule]]\nname = \"{rule}\"\naction = \"{action}\"\npurpose_contains = [\"postal\"]\n"
            ),
        )
        .unwrap();
        ok(&home, &["policy", "set", policy.to_str().unwrap()]);
        cluster.start(owner, Some(&bootstrap));
    }
    let model = ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/digits.toml")],
    )
    .trim()
    .to_string();
    cluster.wait_for(
        "both owners' decisions to reach the publisher",
        Duration::from_secs(30),
        |c| c.status("publisher")["ledger"]["authors"] == 4,
    );
    let shown: Value =
        serde_json::from_str(&ok(&publisher, &["ledger", "show", "--json"])).unwrap();
    for ((_, rule, _), (did, kind)) in policies.iter().zip(dids.iter().zip([
        "consent-granted",
        "consent-granted",
        "consent-refused",
    ])) {
        let event = shown
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["author"] == did.as_str())
            .unwrap_or_else(|| panic!("no event by {did}: {shown:#}"));
        assert_eq!(event["body"]["kind"], kind, "{event:#}");
        assert_eq!(event["body"]["model_id"], model.as_str(), "{event:#}");
        assert_eq!(event["body"]["decided_by"]["rule"], *rule, "{event:#}");
    }
    assert!(
        cluster
            .log("owner1")
            .contains("granted digits-classifier by rule \"private-or-postal\""),
        "{}",
        cluster.log("owner1")
    );
    let lines = train_lines(&publisher, &model, "2");
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    assert_eq!(completed.len(), 2, "{lines:?}");
    assert!(
        completed.iter().all(|l| l["contributors"] == 2),
        "only the owners whose policy granted train: {lines:?}"
    );
}

#[test]
fn an_owner_killed_before_a_secure_round_is_a_dropout_and_the_rounds_complete_without_it() {
    let mut cluster = Cluster::new();
    let model = consenting_cluster(&mut cluster, 7, 7, "digits_private.toml", "8");
    // SIGKILL: its consent stays on the ledger, so it is asked and never answers.
    cluster.kill("owner7");
    let lines = train_lines(&cluster.home("publisher"), &model, "2");
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    assert_eq!(completed.len(), 2, "{lines:?}\n{}", cluster.log_tails(40));
    for round in completed {
        assert_eq!(round["contributors"], 6, "{round}");
    }
    let verify = ok(&cluster.home("publisher"), &["ledger", "verify"]);
    assert!(verify.contains("OK"), "{verify}");
}

#[test]
fn an_owner_killed_while_masking_is_recovered_from_and_the_round_completes() {
    let mut cluster = Cluster::new();
    // Five consenting owners: every one is sampled (min_clients 5), and four survivors meet
    // the threshold (0.8). owner5 shares its keys, then stops before its masked input.
    cluster.extra.push((
        "owner5".into(),
        vec!["--fault-freeze-before".into(), "masked-input".into()],
    ));
    let model = consenting_cluster(&mut cluster, 5, 5, "digits_private.toml", "6");
    let publisher = cluster.home("publisher");
    let train = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args(["train", &model, "--rounds", "1", "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cluster.wait_for(
        "owner5 to reach the masking stage",
        Duration::from_secs(60),
        |c| {
            c.log("owner5")
                .contains("fault injection: frozen before sending")
        },
    );
    // SIGKILL while its pairwise masks are in its neighbours' sums.
    cluster.kill("owner5");
    let out = train.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    assert_eq!(completed.len(), 1, "{lines:?}\n{}", cluster.log_tails(40));
    assert_eq!(completed[0]["contributors"], 4, "{}", completed[0]);
    assert_eq!(completed[0]["dropped"], 1, "{}", completed[0]);
    let verify = ok(&publisher, &["ledger", "verify"]);
    assert!(verify.contains("OK"), "{verify}");
}

#[test]
fn a_publisher_killed_mid_run_resumes_from_its_ledger_without_repeating_a_round() {
    let mut cluster = Cluster::new();
    let model = consenting_cluster(&mut cluster, 5, 5, "digits_private.toml", "20");
    let publisher = cluster.home("publisher");
    let mut train = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args(["train", &model, "--rounds", "30", "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(train.stdout.take().unwrap());
    let mut committed = 0;
    while committed < 2 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "train ended early"
        );
        let line: Value = serde_json::from_str(&line).unwrap();
        if line["event"] == "completed" {
            committed = line["round"].as_u64().unwrap();
        }
    }
    cluster.kill("publisher");
    let _ = train.wait();
    // Restarted where it listened before (a deployed node has a fixed address), so the owners
    // redialling their bootstrap peer find it again.
    let address = cluster.bootstrap.clone().unwrap();
    let listen = address.split("/p2p/").next().unwrap().to_string();
    cluster.listen = Some(listen);
    cluster.start("publisher", None);
    // Owners reconnect to the restarted publisher through their own dials of it.
    cluster.wait_for("owners to reconnect", Duration::from_secs(30), |c| {
        c.status("publisher")["peers"]
            .as_array()
            .is_some_and(|p| p.len() >= 5)
    });
    let lines = train_lines(&publisher, &model, "2");
    let rounds: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "completed")
        .map(|l| l["round"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds.len(), 2, "{lines:?}");
    assert!(
        rounds[0] > committed,
        "round {} repeated after {committed}",
        rounds[0]
    );
    let verify = ok(&publisher, &["ledger", "verify"]);
    assert!(verify.contains("OK"), "{verify}");
}

#[test]
fn a_node_offline_for_three_rounds_catches_up_its_ledger() {
    let mut cluster = Cluster::new();
    let model = consenting_cluster(&mut cluster, 4, 3, "digits.toml", "20");
    cluster.kill("owner4");
    let lines = train_lines(&cluster.home("publisher"), &model, "3");
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "completed").count(),
        3,
        "{lines:?}"
    );
    let bootstrap = cluster.bootstrap.clone().unwrap();
    cluster.start("owner4", Some(&bootstrap));
    cluster.wait_for(
        "the returning node to catch up",
        Duration::from_secs(30),
        |c| heads(c, "owner4") == heads(c, "publisher"),
    );
    let verify = ok(&cluster.home("owner4"), &["ledger", "verify"]);
    assert!(verify.contains("3 rounds"), "{verify}");
}

#[test]
fn cluster_up_starts_connected_nodes_that_train_and_cluster_down_stops_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let up = Command::new(BIN)
        .args(["cluster", "up", "--dir"])
        .arg(&cluster_dir)
        .args([
            "--nodes",
            "3",
            "--contract",
            &format!("{ROOT}/contracts/digits.toml"),
        ])
        .args(["--partition", "dirichlet:1.0", "--seed", "4", "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-cluster-test")
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let cluster: Value = serde_json::from_slice(&up.stdout).unwrap();
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[0]["role"], "publisher");
    let pids: Vec<u64> = nodes.iter().map(|n| n["pid"].as_u64().unwrap()).collect();
    assert!(
        pids.iter()
            .all(|pid| Path::new(&format!("/proc/{pid}")).exists())
    );
    let model = cluster["model"].as_str().unwrap();
    let publisher = PathBuf::from(nodes[0]["home"].as_str().unwrap());
    let train = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args(["train", model, "--rounds", "2", "--eval", "eval", "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-cluster-test")
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let completed = String::from_utf8_lossy(&train.stdout)
        .lines()
        .filter(|l| l.contains("\"completed\""))
        .count();
    assert_eq!(completed, 2);
    let down = Command::new(BIN)
        .args(["cluster", "down", "--dir"])
        .arg(&cluster_dir)
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for the (exited) `cluster up` to be reaped.
        assert!(
            state.is_empty() || state.contains(") Z "),
            "node {pid} still runs: {state}"
        );
    }
    assert!(!cluster_dir.join("cluster.json").exists());
}

/// What a replay test runs: a contract file, the rows (a CSV path, or `bundled:NAME`), and
/// how many rounds.
struct Replayed<'a> {
    contract: &'a Path,
    data: &'a str,
    rounds: usize,
}

/// The in-process simulation of `seed`: 9 clients, IID. Returns the seed and consent rate at
/// which exactly 8 of the 9 consent, and the simulation's report.
fn simulated(replayed: &Replayed<'_>) -> (u64, f64, fedpool_runtime::SimulationReport) {
    use fedpool_runtime::{LedgerChoice, Simulation, SimulationOptions, SimulationPlan};
    let text = std::fs::read_to_string(replayed.contract).unwrap();
    let contract = fedpool_core::Contract::from_toml(&text, "contract.toml").unwrap();
    let table = match replayed.data.strip_prefix("bundled:") {
        Some(name) => {
            let path = format!("{ROOT}/data/{name}/{name}.csv.gz");
            let mut csv = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
                &mut csv,
            )
            .unwrap();
            fedpool_data::Table::from_csv(csv.as_slice(), "data.csv", &contract.schema, &[])
        }
        None => fedpool_data::Table::from_csv(
            std::fs::File::open(replayed.data).unwrap(),
            "data.csv",
            &contract.schema,
            &[],
        ),
    }
    .unwrap();
    let consent_rate = 0.85;
    let options_for = |seed: u64| {
        let mut options = SimulationOptions::new(9, fedpool_data::Partition::Iid, seed);
        options.consent_rate = consent_rate;
        options.rounds = Some(replayed.rounds);
        options.ledger = LedgerChoice::Off;
        options
    };
    let seed = (1..)
        .find(|&seed| {
            let plan = SimulationPlan::draw(&contract, &table, &options_for(seed)).unwrap();
            plan.decisions.iter().filter(|d| **d).count() == 8
        })
        .unwrap();
    let report = Simulation::prepare(&contract, &table, &options_for(seed))
        .unwrap()
        .run(|_| {})
        .unwrap();
    (seed, consent_rate, report)
}

#[test]
fn ten_processes_compute_exactly_what_the_in_process_simulation_computes() {
    let contract = PathBuf::from(format!("{ROOT}/contracts/digits_private.toml"));
    let data = format!("{ROOT}/data/digits/digits.csv");
    replays_exactly(&Replayed {
        contract: &contract,
        data: &data,
        rounds: 5,
    });
}

#[test]
fn with_group_sums_ten_processes_compute_exactly_what_the_simulation_computes() {
    // Secure aggregation per random group of at least 3: over the network each owner draws
    // its group from the setup as in process, one secure sum per group, and the model takes
    // their total — parameter for parameter what the simulation computes.
    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("digits_grouped.toml");
    let text = std::fs::read_to_string(format!("{ROOT}/contracts/digits_private.toml")).unwrap();
    assert!(text.contains("secure_aggregation = true\n"));
    std::fs::write(
        &contract,
        text.replace(
            "secure_aggregation = true\n",
            "secure_aggregation = true\nsecure_aggregation_group_size = 3\n",
        ),
    )
    .unwrap();
    let data = format!("{ROOT}/data/digits/digits.csv");
    replays_exactly(&Replayed {
        contract: &contract,
        data: &data,
        rounds: 3,
    });
}

#[test]
fn with_federated_statistics_ten_processes_compute_exactly_what_the_simulation_computes() {
    // Adult, private: the statistics phase is clipped, noised by the nodes and securely
    // summed over the network as in process, and its scaling standardises every round.
    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("adult_private.toml");
    let text = std::fs::read_to_string(format!("{ROOT}/contracts/adult_private.toml")).unwrap();
    std::fs::write(
        &contract,
        text.replace("min_clients = 10", "min_clients = 3"),
    )
    .unwrap();
    let (_, _, simulated) = replays_exactly(&Replayed {
        contract: &contract,
        data: "bundled:adult",
        rounds: 3,
    });
    let statistics = simulated.statistics.expect("the phase ran in process");
    assert!(statistics.epsilon.is_some_and(|e| e > 0.0));
}

/// Runs the simulation, then `cluster up --replay-simulation` and `train` over 9 owner
/// processes and a publisher, and checks they agree round by round, parameter by parameter,
/// with one verified ledger on every node.
fn replays_exactly(replayed: &Replayed<'_>) -> (u64, f64, fedpool_runtime::SimulationReport) {
    let (seed, consent_rate, simulated) = simulated(replayed);
    let rounds = replayed.rounds;
    assert_eq!(simulated.rounds.len(), rounds);
    assert!(simulated.secure_aggregation && simulated.epsilon.is_some());

    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let network = "fedpool-replay-test";
    let up = Command::new(BIN)
        .args(["cluster", "up", "--replay-simulation", "--dir"])
        .arg(&cluster_dir)
        .args(["--nodes", "9", "--contract"])
        .arg(replayed.contract)
        .args(["--data", replayed.data])
        .args(["--partition", "iid", "--seed", &seed.to_string()])
        .args(["--consent-rate", &consent_rate.to_string(), "--json"])
        .env("FEDPOOL_NETWORK", network)
        .output()
        .unwrap();
    let stop = || {
        let _ = Command::new(BIN)
            .args(["cluster", "down", "--dir"])
            .arg(&cluster_dir)
            .output();
    };
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let cluster: Value = serde_json::from_slice(&up.stdout).unwrap();
    let nodes = cluster["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 10);
    let consenting = nodes.iter().filter(|n| n["consented"] == true).count();
    assert_eq!(consenting, 8);
    let model = cluster["model"].as_str().unwrap().to_string();
    let home = |node: &Value| PathBuf::from(node["home"].as_str().unwrap());
    let publisher = home(&nodes[0]);
    let train = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args([
            "train",
            &model,
            "--rounds",
            &rounds.to_string(),
            "--eval",
            "eval",
            "--json",
        ])
        .env("FEDPOOL_NETWORK", network)
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&train.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let completed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "completed").collect();
    if completed.len() != rounds {
        stop();
        panic!(
            "{lines:?}\n{}",
            std::fs::read_to_string(publisher.join("node.log")).unwrap_or_default()
        );
    }
    // The statistics phase, when the contract has one: the same nodes and the same ε.
    let phase = lines.iter().find(|l| l["event"] == "statistics");
    match (&simulated.statistics, phase) {
        (Some(statistics), Some(phase)) => {
            assert_eq!(
                phase["contributors"].as_u64().unwrap() as usize,
                statistics.n_contributors
            );
        }
        (None, None) => {}
        (simulated, network) => {
            panic!("statistics in process: {simulated:?}, over the network: {network:?}")
        }
    }

    // Round by round: the same contributors and the same accuracy on the same test rows.
    for (network_round, simulated_round) in completed.iter().zip(&simulated.rounds) {
        assert_eq!(
            network_round["contributors"].as_u64().unwrap() as usize,
            simulated_round.n_contributors
        );
        // Identical counts of correct predictions (the two sides divide in different orders).
        let (network_accuracy, simulated_accuracy) = (
            network_round["accuracy"].as_f64().unwrap(),
            simulated_round.metrics.headline(),
        );
        assert!(
            (network_accuracy - simulated_accuracy).abs() < 1e-9,
            "round {}: accuracy {network_accuracy} over the network, {simulated_accuracy} in process",
            simulated_round.round
        );
    }
    assert_eq!(completed[rounds - 1]["epsilon"].as_f64(), simulated.epsilon);
    // The final model, parameter by parameter.
    let model_dir = std::fs::read_dir(publisher.join("models"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(model_dir.join(format!("round-{rounds}.f32"))).unwrap();
    let trained: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(trained.len(), simulated.global.len());
    let worst = trained
        .iter()
        .zip(simulated.global.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "parameters differ by up to {worst}");

    // Every node holds the same ledger, and it verifies.
    let digest = |node: &Value| {
        let out = run(&home(node), &["node", "status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        status["ledger"]["heads_digest"].clone()
    };
    let started = Instant::now();
    while nodes.iter().any(|n| digest(n) != digest(&nodes[0])) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ledgers differ after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for node in &nodes {
        let out = run(&home(node), &["ledger", "verify"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stop();
    (seed, consent_rate, simulated)
}

/// One JSON-RPC call to a chain, over plain HTTP (the test's own view of the chain).
fn chain_rpc(url: &str, method: &str, params: Value) -> Value {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let json = response.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(json).unwrap()
}

/// GET `path` from the owner's web page of a running node, with its token; the body.
fn owner_page(home: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let url = std::fs::read_to_string(home.join("web.url")).unwrap();
    let token = std::fs::read_to_string(home.join("web.token")).unwrap();
    let address = url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The publisher's ledger balances per owner (what `fedpool rewards --all` says was paid).
fn ledger_balances(home: &Path) -> std::collections::BTreeMap<String, u64> {
    let all: Value = serde_json::from_str(&ok(home, &["rewards", "--all", "--json"])).unwrap();
    all["models"][0]["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["owner"].as_str().unwrap().to_string(),
                b["amount"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Issue 14 end to end against a real local EVM (anvil, from npm): rewards paid on the ledger
/// are settled as tokens to the owners' linked wallets, to the smallest unit; a chain killed
/// mid-batch and restarted, and a publisher that crashes between the chain and its ledger,
/// never pay twice; an unlinked owner keeps its credit; anchored history that is rewritten is
/// flagged with its author and height, and a replayed batch by verify.
#[test]
fn rewards_settle_on_chain_once_through_a_chain_restart_and_anchors_expose_a_rewrite() {
    use fedpool_chain::anvil::Anvil;
    let mut cluster = Cluster::new();
    let state = cluster.dir.path().join("anvil-state.json");
    let port = fedpool_chain::anvil::free_loopback_port();
    let anvil = Anvil::start(port, Some(&state));
    let rpc = anvil.url();
    let model = consenting_cluster(&mut cluster, 3, 3, "digits.toml", "20");
    let publisher = cluster.home("publisher");
    let lines = train_lines(&publisher, &model, "3");
    assert!(lines.iter().any(|l| l["event"] == "finished"), "{lines:?}");

    // The publisher deploys; owners 1 and 2 link a wallet each, owner 3 none.
    let publisher_wallet = ok(&publisher, &["wallet", "new"]).trim().to_string();
    // A new wallet holds no ether: the test chain funds it (a real publisher buys gas).
    let unfunded = run(
        &publisher,
        &["chain", "deploy", "--rpc", &rpc, "--retry-for", "2"],
    );
    assert!(
        String::from_utf8_lossy(&unfunded.stderr).contains("nsufficient funds"),
        "{unfunded:?}"
    );
    chain_rpc(
        &rpc,
        "anvil_setBalance",
        serde_json::json!([publisher_wallet, "0x56BC75E2D63100000"]),
    );
    ok(&publisher, &["chain", "deploy", "--rpc", &rpc]);
    let mut wallets = std::collections::BTreeMap::new();
    for owner in ["owner1", "owner2"] {
        let home = cluster.home(owner);
        let address = ok(&home, &["wallet", "new"]).trim().to_string();
        let linked = ok(&home, &["wallet", "link", "--chain-id", "31337"]);
        assert!(linked.contains(&address), "{linked}");
        let shown: Value = serde_json::from_str(&ok(&home, &["wallet", "show", "--json"])).unwrap();
        assert_eq!(
            shown["linked"],
            serde_json::json!([{"chain_id": 31337, "address": address}]),
            "{shown:#}"
        );
        let did = ok(&home, &["node", "status", "--json"]);
        let did: Value = serde_json::from_str(&did).unwrap();
        wallets.insert(did["did"].as_str().unwrap().to_string(), address);
    }
    // A signature by another wallet than the one named is refused before anything is signed.
    let other = cluster.dir.path().join("other");
    ok(&other, &["init"]);
    ok(&other, &["wallet", "new"]);
    let forged = run(
        &cluster.home("owner3"),
        &[
            "wallet",
            "link",
            "--chain-id",
            "31337",
            "--address",
            &publisher_wallet,
            "--signature",
            &format!("0x{}", "11".repeat(65)),
        ],
    );
    assert!(
        !forged.status.success() && String::from_utf8_lossy(&forged.stderr).contains("signature"),
        "{forged:?}"
    );
    cluster.wait_for(
        "the wallet links to reach the publisher",
        Duration::from_secs(30),
        |c| events_of_kind(&c.home("publisher"), "wallet-linked") == 2,
    );

    // Anchor every head; the chain confirms it and vouches for each author's height.
    let anchored: Value =
        serde_json::from_str(&ok(&publisher, &["anchor", "--rpc", &rpc, "--json"])).unwrap();
    assert_eq!(anchored["heads"], 4, "{anchored:#}");
    let verified: Value = serde_json::from_str(&ok(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    assert_eq!(
        verified["violations"],
        serde_json::json!([]),
        "{verified:#}"
    );
    assert_eq!(verified["anchors"]["confirmed"], 1, "{verified:#}");
    assert_eq!(verified["anchors"]["anchored"].as_array().unwrap().len(), 4);

    // Settle in batches of one while the chain mines by hand; kill it when the first batch's
    // transaction is waiting, restart it from its last state dump: the command retries.
    chain_rpc(&rpc, "evm_setAutomine", serde_json::json!([false]));
    let deployment: Value =
        serde_json::from_str(&std::fs::read_to_string(publisher.join("chain.json")).unwrap())
            .unwrap();
    let payouts = deployment["payouts"].as_str().unwrap().to_lowercase();
    let settling = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args([
            "settle",
            &model,
            "--rpc",
            &rpc,
            "--batch-size",
            "1",
            "--json",
            "--retry-for",
            "90",
        ])
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no batch was sent"
        );
        let pool = chain_rpc(&rpc, "txpool_content", serde_json::json!([]));
        let pending: Vec<String> = pool["result"]["pending"]
            .as_object()
            .into_iter()
            .flat_map(|by_sender| by_sender.values())
            .flat_map(|by_nonce| by_nonce.as_object().unwrap().values())
            .map(|tx| tx["to"].as_str().unwrap_or("").to_lowercase())
            .collect();
        if pending.contains(&payouts) {
            break;
        }
        if !pending.is_empty() {
            // The approval: mine it.
            chain_rpc(&rpc, "evm_mine", serde_json::json!([]));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let a state dump hold the approval, then crash the chain with the batch unmined.
    std::thread::sleep(Duration::from_millis(1500));
    anvil.kill();
    std::thread::sleep(Duration::from_millis(1000));
    let anvil = Anvil::start(port, Some(&state));
    let out = settling.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "settle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settled: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The first batch met the dead chain and was retried, not given up.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("settlement did not complete"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batches = settled["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "{settled:#}");

    // On chain, each linked owner holds exactly what the ledger paid it; owner 3 keeps credit.
    let ledger = ledger_balances(&publisher);
    let check_balances = |settled: &Value| {
        for balance in settled["balances"].as_array().unwrap() {
            let owner = balance["owner"].as_str().unwrap();
            assert_eq!(
                balance["balance"].as_str().unwrap(),
                ledger[owner].to_string(),
                "{owner}: on chain vs ledger"
            );
            assert_eq!(
                balance["address"].as_str().unwrap().to_lowercase(),
                wallets[owner].to_lowercase()
            );
        }
    };
    check_balances(&settled);
    let credit = settled["credit"].as_array().unwrap();
    assert_eq!(credit.len(), 1, "{settled:#}");
    assert_eq!(
        credit[0]["amount"].as_u64().unwrap(),
        ledger[credit[0]["owner"].as_str().unwrap()]
    );

    // A second settle pays nothing more.
    let again: Value = serde_json::from_str(&ok(
        &publisher,
        &["settle", &model, "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    assert_eq!(again["batches"], serde_json::json!([]), "{again:#}");
    check_balances(&again);

    // A run that stopped after recording a batch but before removing its write-ahead file:
    // the next run sees the batch on its ledger and neither sends nor records it again.
    let shown: Value =
        serde_json::from_str(&ok(&publisher, &["ledger", "show", "--json"])).unwrap();
    let last = shown
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["body"]["kind"] == "rewards-settled")
        .unwrap()["body"]
        .clone();
    let hex20 = |bytes: &Value| -> String {
        let bytes: Vec<u8> = bytes
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        fedpool_ledger::wallet::hex(&bytes)
    };
    let pending = serde_json::json!({
        "model_id": last["model_id"],
        "chain_id": last["chain_id"],
        "nonce": last["nonce"],
        "transfers": last["transfers"].as_array().unwrap().iter().map(|t| serde_json::json!([t["owner"], hex20(&t["address"]), t["amount"]])).collect::<Vec<_>>(),
        "covers": last["covers"],
    });
    std::fs::write(publisher.join("settle-pending.json"), pending.to_string()).unwrap();
    let before = events_of_kind(&publisher, "rewards-settled");
    let again: Value = serde_json::from_str(&ok(
        &publisher,
        &["settle", &model, "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    assert_eq!(again["batches"], serde_json::json!([]), "{again:#}");
    assert_eq!(events_of_kind(&publisher, "rewards-settled"), before);
    assert!(!publisher.join("settle-pending.json").exists());

    // Owner 3 links a wallet at last: its kept credit is due. The publisher crashes after the
    // chain took that batch and before its ledger recorded it: the next run finds the batch on
    // chain instead of paying it again.
    let owner3 = cluster.home("owner3");
    ok(&owner3, &["wallet", "new"]);
    // Without --chain-id the link is for the chain the publisher settles on, as owner 3's own
    // ledger shows it (it has no chain.json).
    cluster.wait_for(
        "the publisher's settlements to reach owner 3",
        Duration::from_secs(30),
        |c| events_of_kind(&c.home("owner3"), "rewards-settled") > 0,
    );
    let linked = ok(&owner3, &["wallet", "link"]);
    assert!(linked.contains("on chain 31337"), "{linked}");
    cluster.wait_for(
        "owner 3's link to reach the publisher",
        Duration::from_secs(30),
        |c| events_of_kind(&c.home("publisher"), "wallet-linked") == 3,
    );
    // (A chain snapshot before that batch, to play a reorganisation afterwards.)
    let before_batch = chain_rpc(&rpc, "evm_snapshot", serde_json::json!([]))["result"].clone();
    let crashed = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args(["settle", &model, "--rpc", &rpc, "--json"])
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .env("FEDPOOL_FAULT_EXIT_AFTER_SETTLE_TX", "1")
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), Some(3));
    assert!(publisher.join("settle-pending.json").exists());
    let resumed: Value = serde_json::from_str(&ok(
        &publisher,
        &["settle", &model, "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    let resumed_batches = resumed["batches"].as_array().unwrap();
    assert_eq!(resumed_batches.len(), 1, "{resumed:#}");
    assert_eq!(resumed_batches[0]["sent_now"], false, "{resumed:#}");
    assert_eq!(resumed["credit"], serde_json::json!([]), "{resumed:#}");
    let ledger = ledger_balances(&publisher);
    assert_eq!(resumed["balances"].as_array().unwrap().len(), 3);
    for balance in resumed["balances"].as_array().unwrap() {
        let owner = balance["owner"].as_str().unwrap();
        assert_eq!(
            balance["balance"].as_str().unwrap(),
            ledger[owner].to_string()
        );
    }
    let verified = ok(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc],
    );
    assert!(verified.starts_with("OK"), "{verified}");
    // An owner's node sees what reached its wallet once the settlement events reach it.
    cluster.wait_for(
        "the settlements to reach owner 1",
        Duration::from_secs(30),
        |c| {
            let mine: Value =
                serde_json::from_str(&ok(&c.home("owner1"), &["rewards", "--json"])).unwrap();
            let model = &mine["models"][0];
            model["settled_on_chain"] == model["balance"]
        },
    );
    // Its web page says where rewards go and what was paid out as tokens.
    let page = owner_page(&cluster.home("owner1"), "/rewards");
    let owner1 = cluster.status("owner1")["did"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        page.contains(&format!("your wallet <code>{}</code>", wallets[&owner1])),
        "{page}"
    );
    assert!(page.contains("Paid out as tokens"), "{page}");

    // A reorganisation drops owner 3's batch: verify says the record's transaction is not on
    // chain; the next settle sends that batch again under its nonce, and every wallet again
    // holds exactly its ledger balance.
    chain_rpc(&rpc, "evm_revert", serde_json::json!([before_batch]));
    let out = run(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("[settlement-not-on-chain]"),
        "{text}"
    );
    let healed: Value = serde_json::from_str(&ok(
        &publisher,
        &["settle", &model, "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    let batches = healed["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1, "{healed:#}");
    assert_eq!(batches[0]["resent"], true, "{healed:#}");
    for balance in healed["balances"].as_array().unwrap() {
        let owner = balance["owner"].as_str().unwrap();
        assert_eq!(
            balance["balance"].as_str().unwrap(),
            ledger[owner].to_string()
        );
    }
    let again: Value = serde_json::from_str(&ok(
        &publisher,
        &["settle", &model, "--rpc", &rpc, "--json"],
    ))
    .unwrap();
    assert_eq!(again["batches"], serde_json::json!([]), "{again:#}");
    // The ledger names the transaction that now carries the lost batch: verify finds it paid.
    assert_eq!(events_of_kind(&publisher, "settlement-resent"), 1);
    let out = run(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("(1 carried by a resend after the chain lost it)"),
        "{text}"
    );

    // The publisher anchors again and crashes after the chain took the anchor, before its
    // ledger recorded it: the chain now holds an anchor by the publisher's wallet that the
    // ledger lacks, and verify says so; the next `fedpool anchor` records it, then anchors anew.
    let anchors_before = events_of_kind(&publisher, "chain-anchored");
    let crashed = Command::new(BIN)
        .arg("--home")
        .arg(&publisher)
        .args(["anchor", "--rpc", &rpc])
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .env("FEDPOOL_FAULT_EXIT_AFTER_ANCHOR_TX", "1")
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), Some(3), "{crashed:?}");
    assert!(publisher.join("anchor-pending.json").exists());
    assert_eq!(events_of_kind(&publisher, "chain-anchored"), anchors_before);
    let out = run(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let unrecorded = text
        .lines()
        .find(|l| l.contains("[anchor-unrecorded]"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        unrecorded.contains(&format!("anchor {anchors_before} (block")),
        "{unrecorded}"
    );
    let resumed = run(&publisher, &["anchor", "--rpc", &rpc]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("recorded now"),
        "{resumed:?}"
    );
    assert!(!publisher.join("anchor-pending.json").exists());
    assert_eq!(
        events_of_kind(&publisher, "chain-anchored"),
        anchors_before + 2
    );
    let out = run(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc, "--json"],
    );
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        verified["anchors"]["confirmed"],
        anchors_before + 2,
        "{verified:#}"
    );
    assert_eq!(
        verified["violations"],
        serde_json::json!([]),
        "{verified:#}"
    );

    // Stop the nodes; play the publisher rewriting its anchored history, and replaying a batch.
    drop(cluster.children.drain(..).collect::<Vec<_>>());
    tamper_and_verify(&publisher, &rpc, cluster.dir.path());
    drop(anvil);
}

/// Writes `events` to a new ledger at `path`, with `key`'s chain re-signed from the first event
/// `edit` changes (to the body and timestamp it returns) on, each later event naming its new
/// predecessor: a chain that is intact in itself, but not the one that was anchored.
fn rewritten_ledger(
    path: &Path,
    network: &fedpool_ledger::NetworkId,
    events: &[fedpool_ledger::Event],
    key: &fedpool_ledger::Keypair,
    mut edit: impl FnMut(&fedpool_ledger::Event) -> Option<(fedpool_ledger::Body, u64)>,
) {
    use fedpool_ledger::{Event, Store};
    let mut store = Store::open(path, network).unwrap();
    let mut prev = None;
    let mut resigning = false;
    for event in events {
        if event.author() != key.did() {
            store.append(event).unwrap();
            continue;
        }
        let edited = edit(event);
        resigning |= edited.is_some();
        let copy = if resigning {
            let (body, timestamp_ms) =
                edited.unwrap_or_else(|| (event.body().clone(), event.timestamp_ms()));
            Event::sign(network, key, event.seq(), prev, timestamp_ms, body).unwrap()
        } else {
            event.clone()
        };
        prev = Some(copy.id());
        store.append(&copy).unwrap();
    }
}

/// `ledger verify --file PATH --anchors --rpc RPC` from the publisher's home: whether it
/// passed, and what it printed.
fn verify_with_anchors(publisher: &Path, path: &Path, rpc: &str) -> (bool, String) {
    let out = run(
        publisher,
        &[
            "ledger",
            "verify",
            "--file",
            path.to_str().unwrap(),
            "--anchors",
            "--rpc",
            rpc,
        ],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Copies the publisher's ledger four times: with its chain re-signed from an early event (same
/// content, one millisecond later: every id after it changes), with its latest anchor event
/// naming an anchor the chain does not hold, with its latest anchor event dropped, and with a
/// settlement batch replayed; verify flags each (the rewrite with its author and height).
fn tamper_and_verify(publisher: &Path, rpc: &str, dir: &Path) {
    use fedpool_ledger::{Body, NetworkId, Store, read_key_file};
    let network = NetworkId::new("fedpool-test-net").unwrap();
    let key = read_key_file(&publisher.join("identity.key")).unwrap();
    let store = Store::open(&publisher.join("ledger.db"), &network).unwrap();
    let events = store.events().unwrap();
    let anchored_height = events
        .iter()
        .find_map(|e| match e.body() {
            Body::ChainAnchored(a) => a
                .heads
                .iter()
                .find(|h| h.author == key.did())
                .map(|h| h.seq),
            _ => None,
        })
        .unwrap();

    // Rewrite: the publisher re-signs its chain from seq 2 on.
    let rewritten_path = dir.join("rewritten.db");
    rewritten_ledger(&rewritten_path, &network, &events, &key, |event| {
        (event.seq() >= 2).then(|| (event.body().clone(), event.timestamp_ms() + 1))
    });
    let (passed, text) = verify_with_anchors(publisher, &rewritten_path, rpc);
    assert!(!passed, "{text}");
    let flagged = text
        .lines()
        .find(|l| l.contains("[anchored-history-rewritten]"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        flagged.contains(&key.did().to_string())
            && flagged.contains(&format!("seq {anchored_height}")),
        "{flagged}"
    );

    // A false record: the publisher's latest anchor event (its last event) re-signed to name
    // an anchor the chain does not hold; the anchor it really made is then unrecorded.
    let last_anchor_seq = events
        .iter()
        .filter(|e| e.author() == key.did() && matches!(e.body(), Body::ChainAnchored(_)))
        .map(|e| e.seq())
        .max()
        .unwrap();
    let falsified_path = dir.join("falsified.db");
    rewritten_ledger(&falsified_path, &network, &events, &key, |event| {
        let Body::ChainAnchored(anchor) = event.body() else {
            return None;
        };
        if event.seq() != last_anchor_seq {
            return None;
        }
        let mut anchor = anchor.clone();
        anchor.anchor_index = 99;
        Some((Body::ChainAnchored(anchor), event.timestamp_ms()))
    });
    let (passed, text) = verify_with_anchors(publisher, &falsified_path, rpc);
    assert!(!passed, "{text}");
    assert!(
        text.contains("[anchor-not-on-chain]") && text.contains("holds no anchor 99"),
        "{text}"
    );
    assert!(text.contains("[anchor-unrecorded]"), "{text}");
    assert!(!text.contains("[anchored-history-rewritten]"), "{text}");

    // Truncation: the publisher drops its latest anchor event (as it would to hide what it
    // rewrote after its earlier anchors). The ledger alone cannot tell; the chain can.
    let last_anchor = events
        .iter()
        .rev()
        .find(|e| e.author() == key.did() && matches!(e.body(), Body::ChainAnchored(_)))
        .unwrap();
    let Body::ChainAnchored(dropped) = last_anchor.body() else {
        unreachable!()
    };
    let truncated_path = dir.join("truncated.db");
    let mut truncated = Store::open(&truncated_path, &network).unwrap();
    for event in &events {
        if event.author() == key.did() && event.seq() >= last_anchor.seq() {
            continue;
        }
        truncated.append(event).unwrap();
    }
    drop(truncated);
    let plain = run(
        publisher,
        &[
            "ledger",
            "verify",
            "--file",
            truncated_path.to_str().unwrap(),
        ],
    );
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("[anchor"),
        "{plain:?}"
    );
    let (passed, text) = verify_with_anchors(publisher, &truncated_path, rpc);
    assert!(!passed, "{text}");
    let flagged = text
        .lines()
        .find(|l| l.contains("[anchor-unrecorded]"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        flagged.contains(&key.did().to_string())
            && flagged.contains(&format!("anchor {} (block", dropped.anchor_index)),
        "{flagged}"
    );

    // Replay: a second settlement event with a nonce already settled.
    let replayed_path = dir.join("replayed.db");
    let mut replayed = Store::open(&replayed_path, &network).unwrap();
    for event in &events {
        replayed.append(event).unwrap();
    }
    let batch = events
        .iter()
        .rev()
        .find(|e| matches!(e.body(), Body::RewardsSettled(_)))
        .unwrap()
        .body()
        .clone();
    let last = events.iter().filter(|e| e.author() == key.did()).count() as u64;
    replayed
        .append_next(
            &key,
            events.iter().map(|e| e.timestamp_ms()).max().unwrap() + 1,
            batch,
        )
        .unwrap();
    drop(replayed);
    assert!(last > 0);
    let out = run(
        publisher,
        &[
            "ledger",
            "verify",
            "--file",
            replayed_path.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[settlement-replayed]"), "{text}");
}

/// How many events of `kind` a node's ledger holds.
fn events_of_kind(home: &Path, kind: &str) -> usize {
    let shown: Value = serde_json::from_str(&ok(home, &["ledger", "show", "--json"])).unwrap();
    shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["body"]["kind"] == kind)
        .count()
}

/// A running node anchors its ledger by itself when it moved, and not when it did not.
#[test]
fn a_running_node_anchors_its_ledger_periodically_only_when_it_moved() {
    use fedpool_chain::anvil::Anvil;
    let anvil = Anvil::start(0, None);
    let rpc = anvil.url();
    let mut cluster = Cluster::new();
    let publisher = cluster.home("publisher");
    ok(&publisher, &["init"]);
    ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/digits.toml")],
    );
    let wallet = ok(&publisher, &["wallet", "new"]).trim().to_string();
    chain_rpc(
        &rpc,
        "anvil_setBalance",
        serde_json::json!([wallet, "0x56BC75E2D63100000"]),
    );
    ok(&publisher, &["chain", "deploy", "--rpc", &rpc]);
    cluster.extra.push((
        "publisher".into(),
        vec![
            "--anchor-every".into(),
            "1".into(),
            "--rpc".into(),
            rpc.clone(),
            "--no-web".into(),
        ],
    ));
    cluster.start("publisher", None);
    cluster.wait_for("a first anchor", Duration::from_secs(30), |c| {
        events_of_kind(&c.home("publisher"), "chain-anchored") == 1
    });
    // Idle: three more ticks anchor nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(events_of_kind(&publisher, "chain-anchored"), 1);
    // The ledger moves: the next tick anchors it.
    ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/adult.toml")],
    );
    cluster.wait_for("a second anchor", Duration::from_secs(30), |c| {
        events_of_kind(&c.home("publisher"), "chain-anchored") == 2
    });
    let verified = ok(
        &publisher,
        &["ledger", "verify", "--anchors", "--rpc", &rpc],
    );
    assert!(verified.starts_with("OK"), "{verified}");
    assert!(
        verified.contains("2 anchors and 0 settlements confirmed"),
        "{verified}"
    );
}
