//! Identity, publication, consent and the ledger through the real binary, and the promise that
//! a dataset's rows never appear in the ledger or in any command's output.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");

fn fedpool(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("FEDPOOL_HOME")
        .output()
        .unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    succeeded(fedpool(home, args), args)
}

/// The command's stdout and stderr, after checking it succeeded.
fn succeeded(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "fedpool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok_without_home(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("FEDPOOL_HOME")
        .output()
        .unwrap();
    succeeded(out, args)
}

fn err(home: &Path, args: &[&str]) -> String {
    let out = fedpool(home, args);
    assert!(!out.status.success(), "fedpool {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A chem97-shaped dataset whose cells are distinctive strings that could not appear by chance.
fn distinctive_rows(path: &Path) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut csv = String::from("lea,school,student,score,gender,age,gcsescore,gcsecnt\n");
    for i in 0..40 {
        let gcse = format!("{}.{:06}", 3 + i % 5, 918_273 + i * 7);
        let lea = format!("{}", 7_300_000 + i);
        secrets.push(gcse.clone());
        secrets.push(lea.clone());
        csv.push_str(&format!(
            "{lea},1,{i},{},F,{},{gcse},0.5\n",
            (i % 6) * 2,
            i % 11 - 5
        ));
    }
    std::fs::write(path, csv).unwrap();
    secrets
}

#[test]
fn init_refuses_to_overwrite_and_guards_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let did = ok(&home, &["init"]);
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    let stderr = err(&home, &["init"]);
    assert!(stderr.contains("--force"), "{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = home.join("identity.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let stderr = err(&home, &["models"]);
        assert!(
            stderr.contains("identity.key") && stderr.contains("chmod 600"),
            "{stderr}"
        );
    }
    let again = ok(&home, &["init", "--force"]);
    assert_ne!(
        again.lines().next(),
        did.lines().next(),
        "a forced init makes a new identity"
    );
}

#[test]
fn publish_consent_revoke_verify_and_never_leak_rows() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let csv = dir.path().join("scores.csv");
    let secrets = distinctive_rows(&csv);
    let contract = format!("{CONTRACTS}/chem97.toml");
    let mut transcript = String::new();

    transcript += &ok(&home, &["init"]);
    let model_id = ok(&home, &["publish", &contract]);
    transcript += &model_id;
    let model_id = model_id.lines().next().unwrap().to_string();
    assert!(model_id.starts_with('b'), "{model_id}");
    // Publishing the same contract twice is a no-op that prints the same id.
    assert!(ok(&home, &["publish", &contract]).starts_with(&model_id));

    transcript += &ok(
        &home,
        &[
            "data",
            "add",
            "scores",
            csv.to_str().unwrap(),
            "--label",
            "score",
        ],
    );
    transcript += &ok(&home, &["data", "list", "--json"]);
    let grant = ok(
        &home,
        &[
            "consent",
            "grant",
            "chem97-alevel-score",
            "--data",
            "scores",
            "--until",
            "2099-12-31",
        ],
    );
    assert!(
        grant.contains("gcsescore") && grant.contains("gender"),
        "lists the fields used:\n{grant}"
    );
    transcript += &grant;
    let stderr = err(&home, &["consent", "grant", &model_id, "--data", "scores"]);
    assert!(stderr.contains("already consent"), "{stderr}");

    let models = ok(&home, &["models", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&models).unwrap();
    assert_eq!(parsed[0]["active_consents"], 1);
    transcript += &models;
    for format in ["text", "json", "markdown", "html"] {
        let card = ok(&home, &["card", &model_id[..12], "--format", format]);
        assert!(card.contains("chem97-alevel-score"), "{card}");
        transcript += &card;
    }
    transcript += &ok(&home, &["consent", "list", "--json"]);
    transcript += &ok(&home, &["ledger", "show"]);
    transcript += &ok(&home, &["ledger", "show", "--json"]);
    transcript += &ok(&home, &["ledger", "verify", "--json"]);

    transcript += &ok(&home, &["consent", "revoke", "chem97-alevel-score"]);
    let list = ok(&home, &["consent", "list", "--json"]);
    assert!(list.contains("\"revoked\""), "{list}");
    let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rows[0]["dataset"], "scores", "{list}");
    assert!(rows[0]["revoked_at_ms"].as_u64().is_some(), "{list}");
    transcript += &list;
    // The text form says which dataset, until when, and when it was revoked.
    let text = ok(&home, &["consent", "list"]);
    assert!(
        text.contains("revoked")
            && text.contains("dataset scores")
            && text.contains("until 2099-12-31"),
        "{text}"
    );
    transcript += &text;
    let verify = ok(&home, &["ledger", "verify"]);
    assert!(verify.starts_with("OK: 3 events"), "{verify}");
    transcript += &verify;

    let export = dir.path().join("ledger.bundle");
    transcript += &ok(&home, &["ledger", "export", export.to_str().unwrap()]);
    let other = dir.path().join("other");
    ok(&other, &["init"]);
    let imported = ok(&other, &["ledger", "import", export.to_str().unwrap()]);
    assert!(imported.contains("imported 3 new events"), "{imported}");
    let twice = ok(&other, &["ledger", "import", export.to_str().unwrap()]);
    assert!(
        twice.contains("imported 0 new events (3 already present"),
        "{twice}"
    );

    // A simulation over the same file, recorded in a kept ledger. A simulation reads no
    // node home: given one, it says so.
    let sim_ledger = dir.path().join("sim.db");
    let refused = err(&home, &["simulate", &contract]);
    assert!(refused.contains("has no effect"), "{refused}");
    transcript += &ok_without_home(&[
        "simulate",
        &contract,
        "--data",
        csv.to_str().unwrap(),
        "--partition",
        "column:lea",
        "--rounds",
        "2",
        "--ledger",
        sim_ledger.to_str().unwrap(),
    ]);
    // The kept simulation ledger can be read without making it the node's own.
    let shown = ok(
        &home,
        &["ledger", "show", "--file", sim_ledger.to_str().unwrap()],
    );
    assert!(shown.contains("round-committed"), "{shown}");
    transcript += &shown;

    let mut stored = std::fs::read(home.join("ledger.db")).unwrap();
    for suffix in ["ledger.db-wal"] {
        if let Ok(bytes) = std::fs::read(home.join(suffix)) {
            stored.extend(bytes);
        }
    }
    stored.extend(std::fs::read(&export).unwrap());
    stored.extend(std::fs::read(&sim_ledger).unwrap());
    let stored = String::from_utf8_lossy(&stored);
    for secret in &secrets {
        assert!(
            !transcript.contains(secret.as_str()),
            "output leaked {secret}"
        );
        assert!(!stored.contains(secret.as_str()), "ledger leaked {secret}");
    }
}

#[test]
fn consent_checks_the_dataset_has_every_required_column() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let csv = dir.path().join("partial.csv");
    std::fs::write(&csv, "gcsescore,score\n5.5,4\n6.1,8\n").unwrap();
    ok(&home, &["init"]);
    ok(&home, &["publish", &format!("{CONTRACTS}/chem97.toml")]);
    ok(&home, &["data", "add", "partial", csv.to_str().unwrap()]);
    let stderr = err(
        &home,
        &[
            "consent",
            "grant",
            "chem97-alevel-score",
            "--data",
            "partial",
        ],
    );
    assert!(
        stderr.contains("missing column \"age\"") && stderr.contains("\"gender\""),
        "{stderr}"
    );
    let stderr = err(
        &home,
        &["consent", "grant", "no-such-model", "--data", "partial"],
    );
    assert!(stderr.contains("no model \"no-such-model\""), "{stderr}");
    let stderr = err(
        &home,
        &["consent", "grant", "chem97-alevel-score", "--data", "nope"],
    );
    assert!(stderr.contains("no dataset \"nope\""), "{stderr}");
}

#[test]
fn simulate_with_refusals_never_asks_refusers_and_verifies() {
    let output = Command::new(BIN)
        .arg("simulate")
        .arg(format!("{CONTRACTS}/digits.toml"))
        .args([
            "--clients",
            "30",
            "--rounds",
            "3",
            "--consent-rate",
            "0.6",
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
    let refused = v["refused"].as_u64().unwrap();
    assert!(refused > 0 && refused < 30, "{v}");
    assert_eq!(v["ledger"]["verified"], true, "{v}");
    assert_eq!(v["ledger"]["violations"], 0);
}

#[test]
fn ledger_verify_exits_1_and_names_the_rule_on_a_tampered_event() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    ok(&home, &["init"]);
    ok(&home, &["publish", &format!("{CONTRACTS}/chem97.toml")]);
    // Flip one byte near the end of the stored event (inside its signature).
    let db = home.join("ledger.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let (id, mut bytes): (String, Vec<u8>) = conn
            .query_row("SELECT id, bytes FROM events LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        conn.execute(
            "UPDATE events SET bytes = ?1 WHERE id = ?2",
            rusqlite::params![bytes, id],
        )
        .unwrap();
    }
    let out = fedpool(&home, &["ledger", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[signature]"), "{stdout}");
}

#[test]
fn one_unparsable_published_contract_does_not_break_listing_models() {
    // Anyone can publish anything: a publication whose contract does not parse is skipped
    // with a warning naming it, and every other model is still listed.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    ok(&home, &["init"]);
    ok(&home, &["publish", &format!("{CONTRACTS}/chem97.toml")]);
    {
        use fedpool_ledger::{Event, Keypair, ModelId, ModelPublished, ModelTerms, Store};
        let network = fedpool_ledger::NetworkId::new("fedpool-local").unwrap();
        let mut store = Store::open(&home.join("ledger.db"), &network).unwrap();
        let stranger = Keypair::insecure_from_seed(77);
        let body = ModelPublished {
            model_id: ModelId("fp-not-a-contract".into()),
            name: "broken".into(),
            version: "1".into(),
            contract_toml: "this is = not [ a contract".into(),
            card_hash: "00".into(),
            terms: ModelTerms {
                required_fields: Vec::new(),
                epsilon_budget: None,
                delta: None,
                reward_pool: 0,
                currency: "credits".into(),
            },
        };
        let event = Event::sign(&network, &stranger, 1, None, 1, body).unwrap();
        store.append(&event).unwrap();
    }
    let listing = ok(&home, &["models"]);
    assert!(
        listing.contains("warning: skipping model fp-not-a-contract"),
        "{listing}"
    );
    assert!(listing.contains("does not parse"), "{listing}");
    assert!(
        listing.to_lowercase().contains("chem97") || listing.contains("gcse"),
        "{listing}"
    );
}

#[test]
fn an_import_that_rejects_events_fails_and_keeps_the_good_ones() {
    use fedpool_ledger::{Event, EventId, Keypair, decode_bundle, encode_bundle};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let contract = format!("{CONTRACTS}/digits.toml");
    ok(&home, &["publish", &contract]);
    let export = dir.path().join("good.bundle");
    ok(&home, &["ledger", "export", export.to_str().unwrap()]);
    let (network, mut events) = decode_bundle(&std::fs::read(&export).unwrap()).unwrap();
    // Validly signed, but its author's first event is missing: it cannot chain.
    let stranger = Keypair::insecure_from_seed(99);
    let orphan = Event::sign(
        &network,
        &stranger,
        2,
        Some(EventId::from_bytes([7; 32])),
        1_000,
        events[0].body().clone(),
    )
    .unwrap();
    events.push(orphan);
    let mixed = dir.path().join("mixed.bundle");
    std::fs::write(&mixed, encode_bundle(&network, &events)).unwrap();
    let other = dir.path().join("other");
    ok(&other, &["init"]);
    let out = fedpool(&other, &["ledger", "import", mixed.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an import with a rejection must fail"
    );
    assert!(
        stderr.contains("1 of the bundle's events were rejected"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 1 new event ("), "{stdout}");
    let verify = ok(&other, &["ledger", "verify"]);
    assert!(
        verify.starts_with("OK: 1 event by 1 author, 1 model, 0 rounds"),
        "{verify}"
    );
}

#[test]
fn consent_is_refused_for_a_dataset_the_contract_cannot_read_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let contract = format!("{CONTRACTS}/digits.toml");
    ok(&home, &["publish", &contract]);
    let header: Vec<String> = std::iter::once("label".to_string())
        .chain((0..64).map(|i| format!("p{i}")))
        .collect();
    let row = |label: &str, cell: &str| {
        let mut cells = vec![label.to_string(), cell.to_string()];
        cells.extend((1..64).map(|_| "3".to_string()));
        cells.join(",")
    };
    let cases = [
        // A pixel that is text, on the third line.
        (row("4", "bright"), "line 3", "\"p0\""),
        // A digit the contract's classes do not hold.
        (row("11", "5"), "line 3", "unknown label \"11\""),
    ];
    for (i, (bad_row, line, what)) in cases.iter().enumerate() {
        let csv = dir.path().join(format!("bad{i}.csv"));
        let text = format!("{}\n{}\n{bad_row}\n", header.join(","), row("1", "2"));
        std::fs::write(&csv, text).unwrap();
        let name = format!("bad{i}");
        ok(
            &home,
            &[
                "data",
                "add",
                &name,
                csv.to_str().unwrap(),
                "--label",
                "label",
            ],
        );
        let stderr = err(
            &home,
            &["consent", "grant", "digits-classifier", "--data", &name],
        );
        assert!(stderr.contains(&format!("bad{i}.csv")), "{stderr}");
        assert!(stderr.contains(line) && stderr.contains(what), "{stderr}");
    }
    // Nothing was signed.
    let list = ok(&home, &["consent", "list", "--json"]);
    assert_eq!(list.trim(), "[]", "{list}");
}

#[test]
fn a_policy_is_checked_when_set_and_explains_what_it_decides() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["init"]);
    let digits_csv = format!("{CONTRACTS}/../data/digits/digits.csv");
    ok(&home, &["data", "add", "mine", &digits_csv]);
    let digits = format!("{CONTRACTS}/digits.toml");
    ok(&home, &["publish", &digits]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    // Without a policy every model waits for its owner.
    assert!(ok(&home, &["consent", "explain", "digits-classifier"]).contains("waits for you"));
    // Errors name the line and the key, and nothing is kept.
    let typo = write(
        "typo.toml",
        "[[rule]]\nname = \"postal\"\naction = \"grant\"\npurpose_contain = [\"postal\"]\n",
    );
    let stderr = err(&home, &["policy", "set", &typo]);
    assert!(
        stderr.contains("line 4") && stderr.contains("purpose_contain"),
        "{stderr}"
    );
    assert!(ok(&home, &["policy", "show"]).contains("no consent policy"));
    // A rule that grants needs a dataset for its consents to cover.
    let no_dataset = write(
        "no_dataset.toml",
        "[[rule]]\nname = \"all\"\naction = \"grant\"\nsecure_aggregation = false\n",
    );
    let stderr = err(&home, &["policy", "set", &no_dataset]);
    assert!(
        stderr.contains("rule \"all\" grants") && stderr.contains("dataset"),
        "{stderr}"
    );
    let policy = write(
        "policy.toml",
        r#"dataset = "mine"

[[rule]]
name = "never-income"
action = "refuse"
reads_any_of = ["income"]

[[rule]]
name = "postal"
action = "grant"
purpose_contains = ["postal"]
secure_aggregation = false
"#,
    );
    assert!(ok(&home, &["policy", "set", &policy]).contains("2 rules (never-income, postal)"));
    assert!(ok(&home, &["policy", "show"]).contains("never-income"));
    let explained = ok(&home, &["consent", "explain", "digits-classifier"]);
    assert!(
        explained.contains("rule \"never-income\" (refuse) does not apply: it reads none of")
            && explained.contains("grants digits-classifier by rule \"postal\""),
        "{explained}"
    );
    ok(&home, &["publish", &format!("{CONTRACTS}/adult.toml")]);
    let refused = ok(&home, &["consent", "explain", "adult-income"]);
    assert!(
        refused.contains("refuses adult-income by rule \"never-income\""),
        "{refused}"
    );
}

/// The owner's policy decides what waits: a grant and a refusal signed onto the ledger, each
/// naming its rule; a model no rule decides is neither granted nor refused, and keeps waiting
/// until the owner answers by hand. Nothing is decided twice, and the ledger verifies.
#[test]
fn policy_apply_puts_each_automatic_decision_on_the_ledger_with_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = dir.path().join("publisher");
    let owner = dir.path().join("owner");
    ok(&publisher, &["init"]);
    let owner_did = ok(&owner, &["init"]);
    let owner_did = owner_did.split_whitespace().next().unwrap().to_string();
    for contract in ["digits", "adult", "breast_cancer"] {
        ok(
            &publisher,
            &["publish", &format!("{CONTRACTS}/{contract}.toml")],
        );
    }
    let bundle = dir.path().join("publications.bundle");
    ok(&publisher, &["ledger", "export", bundle.to_str().unwrap()]);
    ok(&owner, &["ledger", "import", bundle.to_str().unwrap()]);
    ok(
        &owner,
        &[
            "data",
            "add",
            "mine",
            &format!("{CONTRACTS}/../data/digits/digits.csv"),
        ],
    );
    // Without a policy, apply says so and writes nothing.
    assert!(err(&owner, &["policy", "apply"]).contains("no consent policy"));
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"dataset = "mine"

[[rule]]
name = "never-income"
action = "refuse"
reads_any_of = ["income"]

[[rule]]
name = "postal"
action = "grant"
purpose_contains = ["postal"]
"#,
    )
    .unwrap();
    ok(&owner, &["policy", "set", policy.to_str().unwrap()]);
    let applied: serde_json::Value =
        serde_json::from_str(&ok(&owner, &["policy", "apply", "--json"])).unwrap();
    let by_model = |name: &str| {
        applied
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["model"] == name)
            .unwrap_or_else(|| panic!("{name} not in {applied:#}"))
            .clone()
    };
    let digits = by_model("digits-classifier");
    assert_eq!(
        (digits["decision"].as_str(), digits["rule"].as_str()),
        (Some("granted"), Some("postal")),
        "{applied:#}"
    );
    let adult = by_model("adult-income");
    assert_eq!(
        (adult["decision"].as_str(), adult["rule"].as_str()),
        (Some("refused"), Some("never-income")),
        "{applied:#}"
    );
    let cancer = by_model("breast-cancer-screening-aid");
    assert_eq!(cancer["decision"], "waits", "{applied:#}");
    assert!(cancer["event"].is_null() && cancer["rule"].is_null());

    // On the ledger: the owner's chain holds exactly the grant and the refusal, each naming
    // its rule and the policy's hash.
    let ledger: serde_json::Value =
        serde_json::from_str(&ok(&owner, &["ledger", "show", "--json"])).unwrap();
    let mine: Vec<&serde_json::Value> = ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["author"] == owner_did.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let policy_hash = fedpool_ledger::content_hash(&std::fs::read(&policy).unwrap());
    for (event, kind, rule, model_id) in [
        (mine[0], "consent-granted", "postal", &digits["model_id"]),
        (
            mine[1],
            "consent-refused",
            "never-income",
            &adult["model_id"],
        ),
    ] {
        assert_eq!(event["body"]["kind"], kind, "{event:#}");
        assert_eq!(event["body"]["model_id"], *model_id, "{event:#}");
        assert_eq!(event["body"]["decided_by"]["rule"], rule, "{event:#}");
        assert_eq!(
            event["body"]["decided_by"]["policy_hash"],
            policy_hash.as_str(),
            "{event:#}"
        );
    }
    let listed = ok(&owner, &["consent", "list"]);
    assert!(
        listed.contains("by policy rule \"postal\"")
            && listed.contains("refused")
            && listed.contains("by policy rule \"never-income\""),
        "{listed}"
    );

    // Nothing is decided twice; the undecided model keeps waiting.
    let again = ok(&owner, &["policy", "apply"]);
    assert!(
        again.contains("breast-cancer-screening-aid waits for you")
            && !again.contains("digits-classifier")
            && !again.contains("adult-income"),
        "{again}"
    );
    // The owner answers by hand; then nothing waits.
    ok(
        &owner,
        &["consent", "refuse", "breast-cancer-screening-aid"],
    );
    assert!(ok(&owner, &["policy", "apply"]).contains("no model waits"));
    let shown = ok(&owner, &["ledger", "show"]);
    assert!(shown.contains("by its owner"), "{shown}");
    let verify = ok(&owner, &["ledger", "verify"]);
    assert!(verify.starts_with("OK: 6 events"), "{verify}");
    // A refusal by hand never hides a live consent.
    let stderr = err(&owner, &["consent", "refuse", "digits-classifier"]);
    assert!(stderr.contains("revoke that consent"), "{stderr}");
}

/// The attack: a publisher signs a publication whose card hash is not its contract's terms (its
/// card could then say anything). An owner's policy never decides it: it waits, with the
/// reason, and nothing is signed.
#[test]
fn a_publication_whose_card_hash_is_not_its_contracts_is_never_decided_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("owner");
    ok(&owner, &["init"]);
    ok(
        &owner,
        &[
            "data",
            "add",
            "mine",
            &format!("{CONTRACTS}/../data/digits/digits.csv"),
        ],
    );
    let text = std::fs::read_to_string(format!("{CONTRACTS}/digits.toml")).unwrap();
    let contract = fedpool_core::Contract::from_toml(&text, "digits.toml").unwrap();
    let liar = fedpool_ledger::Keypair::insecure_from_seed(666);
    let mut publication = fedpool_runtime::publication(&contract, &text, &liar.did());
    publication.card_hash = fedpool_ledger::content_hash(b"a friendlier card");
    {
        let mut store = fedpool_ledger::Store::open(
            &owner.join("ledger.db"),
            &fedpool_ledger::NetworkId::new("fedpool-local").unwrap(),
        )
        .unwrap();
        store.append_next(&liar, 1, publication).unwrap();
    }
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "dataset = \"mine\"\n[[rule]]\nname = \"postal\"\naction = \"grant\"\npurpose_contains = [\"postal\"]\n",
    )
    .unwrap();
    ok(&owner, &["policy", "set", policy.to_str().unwrap()]);
    let applied: serde_json::Value =
        serde_json::from_str(&ok(&owner, &["policy", "apply", "--json"])).unwrap();
    let row = &applied[0];
    assert_eq!(row["decision"], "waits", "{applied:#}");
    assert!(row["event"].is_null(), "{applied:#}");
    assert!(
        row["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("card hash")),
        "{applied:#}"
    );
    assert!(ok(&owner, &["consent", "list"]).contains("no consents"));
}

/// The receipt of `model` written by `home`, parsed.
fn receipt(home: &Path, model: &str, out: &Path) -> serde_json::Value {
    ok(
        home,
        &["consent", "receipt", model, "--out", out.to_str().unwrap()],
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `verify-receipt` on `receipt` written to a file: its output and whether it passed.
fn verify_receipt(dir: &Path, receipt: &serde_json::Value) -> (bool, String) {
    let path = dir.join("checked.json");
    std::fs::write(&path, serde_json::to_string_pretty(receipt).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["consent", "verify-receipt", path.to_str().unwrap()])
        .env_remove("FEDPOOL_HOME")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

/// An owner's consent receipt carries the signed events it is made from, so anyone can check
/// it without a node: an edited purpose, date or field, a contract swapped for another, a
/// broken signature or a hidden revocation is named; after a revocation the receipt says so.
#[test]
fn a_consent_receipt_proves_itself_and_names_any_edit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let digits = format!("{CONTRACTS}/../data/digits/digits.csv");
    ok(&home, &["init"]);
    let model = ok(&home, &["publish", &format!("{CONTRACTS}/digits.toml")]);
    let model = model.lines().next().unwrap().to_string();
    let other = ok(
        &home,
        &["publish", &format!("{CONTRACTS}/digits_private.toml")],
    );
    let other = other.lines().next().unwrap().to_string();
    ok(&home, &["data", "add", "mine", &digits]);
    let refused = err(&home, &["consent", "receipt", &model]);
    assert!(refused.contains("you have not consented"), "{refused}");
    for id in [&model, &other] {
        ok(
            &home,
            &[
                "consent",
                "grant",
                id,
                "--data",
                "mine",
                "--until",
                "2099-12-31",
                "--epsilon-cap",
                "4",
            ],
        );
    }
    let issued = receipt(&home, &model, &dir.path().join("receipt.json"));
    assert_eq!(issued["version"], "KI-CR-v1.1.0");
    assert_eq!(issued["fedpool"]["status"], "active");
    assert_eq!(issued["fedpool"]["epsilon_cap"], 4.0);
    let purposes = issued["services"][0]["purposes"].as_array().unwrap();
    assert!(!purposes.is_empty() && purposes[0]["primaryPurpose"] == true);
    assert!(
        purposes[0]["termination"]
            .as_str()
            .unwrap()
            .contains("2099-12-31")
    );
    let (passed, text) = verify_receipt(dir.path(), &issued);
    assert!(passed, "{text}");
    assert!(
        text.starts_with("OK: ") && text.contains(purposes[0]["purpose"].as_str().unwrap()),
        "{text}"
    );

    // Each edit is named by its field.
    let edit = |path: &[&str], value: serde_json::Value| {
        let mut edited = issued.clone();
        let mut at = &mut edited;
        for key in path {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        *at = value;
        edited
    };
    for (path, value, named) in [
        (
            &["services", "0", "purposes", "0", "purpose"][..],
            serde_json::json!("anything the publisher likes"),
            "services[0].purposes[0].purpose",
        ),
        (
            &["consentTimestamp"][..],
            serde_json::json!(1),
            "consentTimestamp",
        ),
        (
            &["services", "0", "purposes", "0", "piiCategory"][..],
            serde_json::json!(["pixel_0_0"]),
            "services[0].purposes[0].piiCategory",
        ),
        (
            &["fedpool", "epsilon_cap"][..],
            serde_json::json!(40.0),
            "fedpool.epsilon_cap",
        ),
    ] {
        let (passed, text) = verify_receipt(dir.path(), &edit(path, value));
        assert!(
            !passed && text.contains(&format!("the receipt says {named} = ")),
            "{text}"
        );
    }
    // Another model's contract in place of the one consented to.
    let theirs = receipt(&home, &other, &dir.path().join("other.json"));
    let swapped = edit(
        &["fedpool", "publication_event"],
        theirs["fedpool"]["publication_event"].clone(),
    );
    let (passed, text) = verify_receipt(dir.path(), &swapped);
    assert!(
        !passed && text.contains("not the receipt's contract"),
        "{text}"
    );
    // A consent event whose last signature byte is flipped.
    let signed = issued["fedpool"]["consent_event"].as_str().unwrap();
    let flipped = format!(
        "{}{}",
        &signed[..signed.len() - 2],
        if signed.ends_with("00") { "01" } else { "00" }
    );
    let (passed, text) = verify_receipt(
        dir.path(),
        &edit(&["fedpool", "consent_event"], flipped.into()),
    );
    assert!(
        !passed && text.contains("signature does not verify"),
        "{text}"
    );
    let (passed, text) = verify_receipt(dir.path(), &serde_json::json!({"version": 1}));
    assert!(
        !passed && text.contains("not a fedpool consent receipt"),
        "{text}"
    );

    // Revoked: the new receipt carries the revocation; hiding it is named.
    ok(&home, &["consent", "revoke", &model]);
    let revoked = receipt(&home, &model, &dir.path().join("revoked.json"));
    assert_eq!(revoked["fedpool"]["status"], "revoked");
    assert!(revoked["fedpool"]["revocation_event"].is_string());
    let (passed, text) = verify_receipt(dir.path(), &revoked);
    assert!(passed && text.contains("revoked on"), "{text}");
    let mut hidden = revoked.clone();
    hidden["fedpool"]["revocation_event"] = serde_json::Value::Null;
    let (passed, text) = verify_receipt(dir.path(), &hidden);
    assert!(
        !passed
            && (text.contains("the receipt says fedpool.status = \"revoked\"")
                || text.contains("the receipt says fedpool.revoked_at_ms = ")),
        "{text}"
    );
}
