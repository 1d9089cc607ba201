//! The owner's page in a real browser: headless Chromium through ChromeDriver, driven with
//! the keyboard alone. An owner opens a pending model, reads its card and grants; the ledger
//! holds the signed grant and the next round trains on the owner's data; the owner revokes
//! and the round after leaves them out. Every page is screenshotted to
//! `target/web-screenshots/` (each checked non-blank) and checked with axe-core for serious
//! or critical accessibility violations.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use common::{BIN, ROOT, digits_shares, ok, run};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
fn json_of(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(home, args)).unwrap()
}

/// The node processes and ChromeDriver, killed however the test ends.
struct Processes {
    dir: tempfile::TempDir,
    nodes: Vec<Child>,
    /// ChromeDriver, leader of its own process group (so the Chromium it starts goes too).
    driver: Option<Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // SAFETY: signals the process group this test created for ChromeDriver.
            unsafe { libc::kill(-(driver.id() as libc::pid_t), libc::SIGKILL) };
            let _ = driver.wait();
        }
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `name`'s node and returns its ready line.
    fn node(&mut self, name: &str, bootstrap: Option<&str>) -> Value {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--home")
            .arg(self.home(name))
            .args(["node", "run", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--round-timeout", "20", "--sync-interval", "0.5"])
            .env("FEDPOOL_NETWORK", "fedpool-test-net")
            .env("FEDPOOL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(addr) = bootstrap {
            command.args(["--bootstrap", addr]);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        self.nodes.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// Waits until `check` holds, or fails naming `what`.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The model's events on `home`'s ledger.
fn model_events(home: &Path, model: &str) -> Vec<Value> {
    json_of(home, &["ledger", "show", "--json", "--model", model])
        .as_array()
        .unwrap()
        .clone()
}

/// Trains one round on the publisher; returns the round's `completed` line.
fn train_one_round(procs: &Processes, model: &str) -> Value {
    let out = run(
        &procs.home("publisher"),
        &["train", model, "--rounds", "1", "--eval", "eval", "--json"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "completed")
        .unwrap_or_else(|| {
            panic!(
                "no round completed:\n{stdout}\n{}\npublisher's log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                procs.log("publisher")
            )
        })
}

/// The (DID, consent) pairs of round `round` of `model`, from the publisher's ledger.
fn participants(publisher: &Path, model: &str, round: u64) -> Vec<(String, String)> {
    let events = model_events(publisher, model);
    let committed = events
        .iter()
        .find(|e| e["kind"] == "round-committed" && e["body"]["round"] == round)
        .unwrap_or_else(|| panic!("round {round} is not on the ledger: {events:#?}"));
    committed["body"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One key pressed and released, as a keyboard does it (WebDriver actions, to whatever has
/// the focus).
async fn press(client: &Client, key: Key) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    client.perform_actions(keys).await.unwrap();
}

/// Presses Tab until the focused element reads `label` (and shows that it has the focus).
async fn tab_to(client: &Client, label: &str) {
    let mut seen = Vec::new();
    for _ in 0..60 {
        press(client, Key::Tab).await;
        let focused = client.active_element().await.unwrap();
        let text = focused.text().await.unwrap_or_default();
        if text.trim() == label {
            let outline = focused.css_value("outline-style").await.unwrap();
            assert_eq!(
                outline, "solid",
                "\"{label}\" has the focus but does not show it"
            );
            return;
        }
        seen.push(text.trim().to_string());
    }
    panic!("\"{label}\" cannot be reached with the Tab key; the focus went through {seen:?}");
}

/// Presses Tab until the form field with id `id` has the focus, then types `text` into it.
async fn type_into(client: &Client, id: &str, text: &str) {
    for _ in 0..60 {
        press(client, Key::Tab).await;
        let focused = client.active_element().await.unwrap();
        if focused.attr("id").await.unwrap().as_deref() == Some(id) {
            focused.clear().await.unwrap();
            focused.send_keys(text).await.unwrap();
            return;
        }
    }
    panic!("the field #{id} cannot be reached with the Tab key");
}

/// Tabs to `label` and presses Enter: what an owner without a mouse does.
async fn activate(client: &Client, label: &str) {
    tab_to(client, label).await;
    press(client, Key::Enter).await;
}

/// The visible text of the page's `main`, once `check` holds on it.
async fn wait_for_page(client: &Client, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Ok(main) = client.find(Locator::Css("main")).await
            && let Ok(text) = main.text().await
            && check(&text)
        {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}; the page is {}:\n{}",
            client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default(),
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Screenshots of every page, checked with axe-core as they are taken.
struct Pages {
    dir: PathBuf,
    axe: Option<String>,
    /// Serious and critical violations, by page.
    serious: Vec<(String, Value)>,
}

impl Pages {
    /// Screenshots the page as `name` (checking it is not blank) and runs axe-core on it.
    async fn check(&mut self, client: &Client, name: &str) {
        let png = client.screenshot().await.unwrap();
        std::fs::write(self.dir.join(format!("{name}.png")), &png).unwrap();
        let image = image::load_from_memory(&png).unwrap().to_rgb8();
        let total = image.pixels().len();
        let inked = image
            .pixels()
            .filter(|p| p.0.iter().any(|&c| c < 230))
            .count();
        let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        assert!(
            inked * 100 > total && colours.len() > 8,
            "{name}.png looks blank: {inked} of {total} pixels not near-white, {} colours",
            colours.len()
        );
        let no_script = client
            .execute("return document.scripts.length", vec![])
            .await;
        assert_eq!(
            no_script.unwrap(),
            json!(0),
            "{name}: the page has a script"
        );
        let Some(axe) = &self.axe else { return };
        client.execute(axe, vec![]).await.unwrap();
        let result = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done({ passes: r.passes.length, violations: r.violations.map(v => ({
                     id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
                     targets: v.nodes.map(n => n.target.join(' ')) })) }))
                   .catch(e => done({ passes: 0, violations: [
                     { id: 'axe-failed', impact: 'critical', help: String(e) }] }));",
                vec![],
            )
            .await
            .unwrap();
        let violations = result["violations"].as_array().unwrap();
        println!(
            "axe on {name}: {} rules passed, {} violated",
            result["passes"],
            violations.len()
        );
        assert!(
            result["passes"].as_u64() > Some(0),
            "axe-core checked nothing on {name}"
        );
        for violation in violations {
            println!("axe on {name}: {violation}");
            if violation["impact"] == "serious" || violation["impact"] == "critical" {
                self.serious.push((name.to_string(), violation.clone()));
            }
        }
    }
}

/// Starts ChromeDriver on a free port and opens a headless Chromium session.
async fn browser(procs: &mut Processes) -> Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    procs.driver = Some(driver);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,1600", "--disable-dev-shm-usage"],
        }),
    );
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return client,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("no browser session from ChromeDriver within 20 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[test]
fn an_owner_grants_reads_the_ledger_and_revokes_with_the_keyboard_alone() {
    let ci = std::env::var_os("CI").is_some();
    if !Path::new(CHROMEDRIVER).exists() {
        assert!(
            !ci,
            "{CHROMEDRIVER} is missing (CI installs chromium-driver)"
        );
        println!("browser test skipped: no {CHROMEDRIVER} here");
        return;
    }
    let axe_path = format!("{ROOT}/node_modules/axe-core/axe.min.js");
    let axe = match std::fs::read_to_string(&axe_path) {
        Ok(axe) => Some(axe),
        Err(e) => {
            assert!(!ci, "{axe_path}: {e} (CI runs `npm ci`)");
            println!("accessibility not checked: no {axe_path} here (`npm ci` installs it)");
            None
        }
    };
    let shots = PathBuf::from(format!("{ROOT}/target/web-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // A publisher with two models and three owners; owner1 decides in the browser, owner2 and
    // owner3 consent to the digits model by command.
    let mut procs = Processes {
        dir: tempfile::tempdir().unwrap(),
        nodes: Vec::new(),
        driver: None,
    };
    let shares = digits_shares(procs.dir.path(), 4);
    let publisher = procs.home("publisher");
    ok(&publisher, &["init"]);
    ok(
        &publisher,
        &["data", "add", "eval", shares[0].to_str().unwrap()],
    );
    let publish = |contract: &str| {
        ok(
            &publisher,
            &["publish", &format!("{ROOT}/contracts/{contract}")],
        )
        .trim()
        .to_string()
    };
    let model = publish("digits.toml");
    let other_model = publish("breast_cancer.toml");
    let ready = procs.node("publisher", None);
    let bootstrap = ready["listen"][0].as_str().unwrap().to_string();
    let mut owner1_ready = Value::Null;
    for (i, share) in shares.iter().enumerate().skip(1) {
        let name = format!("owner{i}");
        ok(&procs.home(&name), &["init"]);
        ok(
            &procs.home(&name),
            &["data", "add", "mine", share.to_str().unwrap()],
        );
        let ready = procs.node(&name, Some(&bootstrap));
        if i == 1 {
            owner1_ready = ready;
        }
    }
    let owner1 = procs.home("owner1");
    let owner1_did = owner1_ready["did"].as_str().unwrap().to_string();
    let web = owner1_ready["web"].as_str().unwrap().to_string();
    assert!(
        web.starts_with("http://127.0.0.1:") && web.ends_with('/'),
        "{web}"
    );
    assert_eq!(
        std::fs::read_to_string(owner1.join("web.url"))
            .unwrap()
            .trim(),
        web
    );
    for name in ["owner1", "owner2", "owner3"] {
        let home = procs.home(name);
        wait_for(
            &format!("both publications to reach {name}"),
            Duration::from_secs(30),
            || {
                json_of(&home, &["node", "status", "--json"])["models"]
                    .as_array()
                    .map(Vec::len)
                    == Some(2)
            },
        );
    }
    for name in ["owner2", "owner3"] {
        ok(
            &procs.home(name),
            &["consent", "grant", &model, "--data", "mine"],
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut pages = Pages {
        dir: shots.clone(),
        axe,
        serious: Vec::new(),
    };
    runtime.block_on(async {
        let client = browser(&mut procs).await;

        // Logged in by the one-time link; both models wait for owner1's decision.
        let link = ok(&owner1, &["open", "--print"]);
        assert!(link.starts_with(&format!("{web}login?code=")), "{link}");
        client.goto(link.trim()).await.unwrap();
        assert_eq!(client.current_url().await.unwrap().path(), "/models");
        let waiting = client.find(Locator::Css("#h-pending")).await.unwrap();
        assert_eq!(
            waiting.text().await.unwrap(),
            "Waiting for your decision (2)"
        );
        pages.check(&client, "models-pending").await;
        // The link is spent: a second use logs nobody in.
        client.goto(link.trim()).await.unwrap();
        assert!(
            client
                .source()
                .await
                .unwrap()
                .contains("this login link is not valid")
        );

        // Opens the digits model from the list and reads its card.
        client.goto(&format!("{web}models")).await.unwrap();
        activate(&client, "digits-classifier v1.0.0").await;
        let card = wait_for_page(&client, "the digits model's card", |t| {
            t.contains("Transparency card")
        })
        .await;
        assert_eq!(
            client.current_url().await.unwrap().path(),
            format!("/models/{model}")
        );
        for text in [
            "Recognises handwritten digits 0-9",
            "What it is for",
            "Routing scanned postal forms by their handwritten digit fields",
            "What it may never be used for",
            "Identifying or profiling the people who wrote the digits",
            "Signature or handwriting forensics",
            "Who it is applied to",
            "Scanned handwritten digits from adult form-fillers",
            "What it reads of your data",
        ] {
            assert!(card.contains(text), "the card lacks {text:?}:\n{card}");
        }
        assert!(card.contains("Your decision\npending"), "{card}");
        let dataset = client.find(Locator::Css("select#dataset")).await.unwrap();
        assert_eq!(
            dataset.prop("value").await.unwrap().as_deref(),
            Some("mine")
        );
        let label = client
            .find(Locator::Css("label[for=dataset]"))
            .await
            .unwrap();
        assert_eq!(label.text().await.unwrap(), "Dataset to train on");
        pages.check(&client, "card-pending").await;

        // Grants with the keyboard alone.
        activate(&client, "Grant consent").await;
        let card = wait_for_page(&client, "the page to show the grant", |t| {
            t.contains("Revoke consent")
        })
        .await;
        assert!(card.contains("Your decision\ngranted — by you"), "{card}");
        // The ledger holds owner1's signed grant, naming the dataset.
        let consents = json_of(&owner1, &["consent", "list", "--json"]);
        let consent = consents
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["model_id"] == model.as_str())
            .unwrap_or_else(|| panic!("no consent to {model}: {consents:#}"));
        assert_eq!(consent["state"], "active", "{consent}");
        assert_eq!(consent["dataset"], "mine", "{consent}");
        assert!(
            consent["decided_by"].is_null(),
            "owner1 decided, not a policy"
        );
        let consent_id = consent["consent_id"].as_str().unwrap().to_string();
        let grant = model_events(&owner1, &model)
            .into_iter()
            .find(|e| e["id"] == consent_id.as_str())
            .unwrap();
        assert_eq!(grant["kind"], "consent-granted");
        assert_eq!(grant["author"], owner1_did.as_str());
        let verified = ok(&owner1, &["ledger", "verify"]);
        assert!(verified.contains("OK"), "{verified}");

        // The grant reaches the publisher; the next round trains on owner1's data.
        wait_for(
            "owner1's grant to reach the publisher",
            Duration::from_secs(30),
            || {
                model_events(&publisher, &model)
                    .iter()
                    .any(|e| e["id"] == consent_id.as_str())
            },
        );
        let round = train_one_round(&procs, &model);
        assert_eq!(round["round"], 1, "{round}");
        assert_eq!(round["contributors"], 3, "{round}");
        let first = participants(&publisher, &model, 1);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(
            first.contains(&(owner1_did.clone(), consent_id.clone())),
            "{first:?}"
        );

        // The round reaches owner1's page: live status and charts.
        client.goto(&format!("{web}models/{model}")).await.unwrap();
        wait_for_page(&client, "round 1 on owner1's page", |t| {
            t.contains("Rounds committed\n1")
        })
        .await;
        let widths = client
            .execute(
                "return [...document.images].map(i => i.complete ? i.naturalWidth : -1)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            widths.as_array().unwrap().len(),
            3,
            "three charts: {widths}"
        );
        assert!(
            widths
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w.as_i64() > Some(0)),
            "every chart loads: {widths}"
        );
        pages.check(&client, "card-granted").await;
        // The consent receipt is a keyboard's reach away, and what it links verifies.
        tab_to(&client, "Download your consent receipt").await;
        let href = client
            .active_element()
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(href, format!("/api/models/{model}/receipt"));
        let receipt = procs.dir.path().join("receipt.json");
        ok(
            &owner1,
            &[
                "consent",
                "receipt",
                &model,
                "--out",
                receipt.to_str().unwrap(),
            ],
        );
        let checked = ok(
            &owner1,
            &["consent", "verify-receipt", receipt.to_str().unwrap()],
        );
        assert!(checked.starts_with("OK: "), "{checked}");

        // Revokes with the keyboard alone; the round after leaves owner1 out.
        activate(&client, "Revoke consent").await;
        let card = wait_for_page(&client, "the page to show the revocation", |t| {
            t.contains("Grant consent")
        })
        .await;
        assert!(card.contains("Your decision\nrevoked — by you"), "{card}");
        let consents = json_of(&owner1, &["consent", "list", "--json"]);
        assert!(
            consents
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["consent_id"] == consent_id.as_str() && c["state"] == "revoked"),
            "{consents:#}"
        );
        wait_for(
            "owner1's revocation to reach the publisher",
            Duration::from_secs(30),
            || {
                model_events(&publisher, &model)
                    .iter()
                    .any(|e| e["kind"] == "consent-revoked" && e["author"] == owner1_did.as_str())
            },
        );
        let round = train_one_round(&procs, &model);
        assert_eq!(round["round"], 2, "{round}");
        assert_eq!(round["contributors"], 2, "{round}");
        let second = participants(&publisher, &model, 2);
        assert_eq!(second.len(), 2, "{second:?}");
        assert!(
            second.iter().all(|(did, _)| *did != owner1_did),
            "owner1 revoked, yet took part: {second:?}"
        );

        // Refuses the other model with the keyboard alone.
        client
            .goto(&format!("{web}models/{other_model}"))
            .await
            .unwrap();
        activate(&client, "Refuse").await;
        let card = wait_for_page(&client, "the page to show the refusal", |t| {
            t.contains("Your decision\nrefused")
        })
        .await;
        assert!(
            card.contains("Grant consent"),
            "a refusal can be changed: {card}"
        );
        let consents = json_of(&owner1, &["consent", "list", "--json"]);
        assert!(
            consents
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["model_id"] == other_model.as_str() && c["state"] == "refused"),
            "{consents:#}"
        );

        // Saves a policy (the example offered) with the keyboard alone.
        client.goto(&format!("{web}policies")).await.unwrap();
        activate(&client, "Save policy").await;
        wait_for_page(&client, "the policy to be saved", |t| {
            t.contains("Policy saved")
        })
        .await;
        assert!(owner1.join("policy.toml").exists());
        pages.check(&client, "policies").await;

        // Every other page; the rewards' CSV link is reachable by keyboard.
        client.goto(&format!("{web}models")).await.unwrap();
        let models = wait_for_page(&client, "the models page", |t| t.contains("Revoked (1)")).await;
        assert!(models.contains("Refused (1)"), "{models}");
        assert!(!models.contains("Waiting for your decision"), "{models}");
        pages.check(&client, "models").await;
        client.goto(&format!("{web}models/{model}")).await.unwrap();
        pages.check(&client, "card").await;
        client.goto(&format!("{web}rewards")).await.unwrap();
        tab_to(&client, "Download as CSV").await;
        pages.check(&client, "rewards").await;

        // Links a wallet: the page shows the text to sign, the wallet (held by the test, as a
        // browser or hardware wallet would be) signs it, the owner pastes the signature.
        activate(&client, "link one").await;
        wait_for_page(&client, "the wallet page", |t| {
            t.contains("No wallet is linked.")
        })
        .await;
        let wallet = fedpool_chain::EvmWallet::generate().unwrap();
        type_into(&client, "address", &wallet.address_text()).await;
        type_into(&client, "chain_id", "31337").await;
        activate(&client, "Show the text to sign").await;
        wait_for_page(&client, "the text to sign", |t| {
            t.contains("Sign with your wallet")
        })
        .await;
        let message = client
            .find(Locator::Css("#wallet-message"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(message.starts_with("fedpool wallet link\n"), "{message:?}");
        pages.check(&client, "wallet-sign").await;
        let signature = fedpool_ledger::wallet::hex(&wallet.sign_message(&message).unwrap());
        type_into(&client, "signature", &signature).await;
        activate(&client, "Link this wallet").await;
        let linked = wait_for_page(&client, "the link", |t| t.contains("Wallet linked")).await;
        assert!(linked.contains(&wallet.address_text()), "{linked}");
        let shown = json_of(&owner1, &["wallet", "show", "--json"]);
        assert_eq!(
            shown["linked"],
            json!([{ "chain_id": 31337, "address": wallet.address_text() }])
        );
        pages.check(&client, "wallet").await;
        for name in ["data", "privacy"] {
            client.goto(&format!("{web}{name}")).await.unwrap();
            pages.check(&client, name).await;
        }
        client.goto(&format!("{web}ledger")).await.unwrap();
        let ledger = wait_for_page(&client, "the ledger page", |t| {
            t.contains("consent-revoked")
        })
        .await;
        for kind in ["consent-granted", "consent-refused"] {
            assert!(
                ledger.contains(kind),
                "the ledger page lacks {kind}:\n{ledger}"
            );
        }
        pages.check(&client, "ledger").await;
        activate(&client, "Verify the whole ledger").await;
        let verified =
            wait_for_page(&client, "the ledger's verification", |t| t.contains("OK: ")).await;
        assert!(verified.contains("2 rounds"), "{verified}");
        assert_eq!(
            client.current_url().await.unwrap().query(),
            Some("verify=1")
        );
        pages.check(&client, "ledger-verified").await;

        client.close().await.unwrap();
    });
    drop(runtime);

    assert!(
        pages.serious.is_empty(),
        "axe-core found serious or critical violations: {:#?}",
        pages.serious
    );
    if std::env::var("FEDPOOL_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = PathBuf::from(format!("{ROOT}/docs/screenshots"));
        std::fs::create_dir_all(&docs).unwrap();
        for (from, to) in [("models-pending", "models"), ("card-pending", "card")] {
            std::fs::copy(
                shots.join(format!("{from}.png")),
                docs.join(format!("{to}.png")),
            )
            .unwrap();
        }
    }
}
