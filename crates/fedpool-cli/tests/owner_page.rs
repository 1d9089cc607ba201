//! The owner's web page in a real browser (Debian's Chromium through ChromeDriver): an owner
//! opens a pending model, reads its card and grants with the keyboard alone; the grant is on
//! the ledger and the next round trains on the owner's data; the owner revokes, and the round
//! after leaves them out. Every page is screenshotted (to `target/web-screenshots/`, checked
//! non-blank) and checked with axe-core for serious or critical accessibility violations.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_fedpool");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// WebDriver's Tab and Enter keys.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("FEDPOOL_NETWORK", "fedpool-test-net")
        .output()
        .unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "fedpool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Child processes, killed however the test ends.
struct Processes {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `name`'s node; returns its ready line.
    fn node(&mut self, name: &str, bootstrap: Option<&str>) -> Value {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--home")
            .arg(self.home(name))
            .args(["node", "run", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--round-timeout", "20", "--sync-interval", "0.5"])
            .env("FEDPOOL_NETWORK", "fedpool-test-net")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(addr) = bootstrap {
            command.args(["--bootstrap", addr]);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.children.push(child);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"))
    }

    fn status(&self, name: &str) -> Value {
        serde_json::from_str(&ok(&self.home(name), &["node", "status", "--json"])).unwrap()
    }
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Splits the bundled digits into `n` CSV files.
fn digits_shares(dir: &Path, n: usize) -> Vec<PathBuf> {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The participants of the publisher's last committed round of `model`.
fn last_round_participants(publisher: &Path, model: &str) -> Vec<String> {
    let events: Vec<Value> = serde_json::from_str(&ok(
        publisher,
        &["ledger", "show", "--json", "--model", model],
    ))
    .unwrap();
    let round = events
        .iter()
        .filter(|e| e["kind"] == "round-committed")
        .max_by_key(|e| e["body"]["round"].as_u64())
        .unwrap_or_else(|| panic!("no round committed: {events:?}"));
    round["body"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Trains one round and returns its number of contributors.
fn train_one_round(publisher: &Path, model: &str) -> u64 {
    let out = ok(
        publisher,
        &["train", model, "--rounds", "1", "--eval", "eval", "--json"],
    );
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "completed")
        .unwrap_or_else(|| panic!("no round completed: {out}"))["contributors"]
        .as_u64()
        .unwrap()
}

/// Presses Tab until the focused element's text is `label`, then Enter: what an owner without
/// a mouse does.
async fn press_by_keyboard(client: &Client, label: &str) {
    for _ in 0..60 {
        let focused = client.active_element().await.unwrap();
        if focused.text().await.unwrap_or_default().trim() == label {
            focused.send_keys(ENTER).await.unwrap();
            return;
        }
        focused.send_keys(TAB).await.unwrap();
    }
    panic!("\"{label}\" cannot be reached with the Tab key");
}

/// Screenshots the page to `dir/name.png` and checks it shows something.
async fn screenshot(client: &Client, dir: &Path, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    // A blank page is one colour; a rendered one has text (dark pixels) in many shades.
    let image = image::load_from_memory(&png).unwrap().to_rgb8();
    let total = image.pixels().count();
    let inked = image
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 160))
        .count();
    let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        inked * 500 > total && colours.len() > 16,
        "{name}: {inked} of {total} pixels inked, {} colours",
        colours.len()
    );
    path
}

/// Runs axe-core on the page; returns its serious and critical violations.
async fn serious_violations(client: &Client, axe: &str, page: &str) -> Vec<Value> {
    client.execute(axe, vec![]).await.unwrap();
    let version = client.execute("return axe.version", vec![]).await.unwrap();
    assert!(version.is_string(), "axe-core did not load on {page}");
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                  targets: v.nodes.map(n => n.target.join(' ')) }))))
               .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e) }]));",
            vec![],
        )
        .await
        .unwrap();
    let all = result.as_array().cloned().unwrap_or_default();
    if !all.is_empty() {
        println!(
            "axe on {page}: {}",
            serde_json::to_string_pretty(&all).unwrap()
        );
    }
    all.into_iter()
        .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
        .collect()
}

#[test]
fn an_owner_grants_and_revokes_in_the_browser_with_the_keyboard_alone() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs chromium and chromium-driver (.ci/run)"
        );
        println!("skipped: no {CHROMEDRIVER} here (CI installs it)");
        return;
    }
    let axe_path = format!("{ROOT}/node_modules/axe-core/axe.min.js");
    let axe = match std::fs::read_to_string(&axe_path) {
        Ok(axe) => Some(axe),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{axe_path} is missing: CI runs `npm ci`")
        }
        Err(_) => {
            println!("axe-core is not installed (npm ci): accessibility is not checked here");
            None
        }
    };
    let shots = PathBuf::from(format!("{ROOT}/target/web-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // A publisher and three owners; owner1 decides in the browser, the others by command.
    let mut procs = Processes {
        dir: tempfile::tempdir().unwrap(),
        children: Vec::new(),
    };
    let shares = digits_shares(procs.dir.path(), 4);
    let publisher = procs.home("publisher");
    ok(&publisher, &["init"]);
    ok(
        &publisher,
        &["data", "add", "eval", shares[0].to_str().unwrap()],
    );
    let model = ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/digits.toml")],
    )
    .trim()
    .to_string();
    // A second model owner1 will refuse.
    let refused_model = ok(
        &publisher,
        &["publish", &format!("{ROOT}/contracts/breast_cancer.toml")],
    )
    .trim()
    .to_string();
    let ready = procs.node("publisher", None);
    let bootstrap = ready["listen"][0].as_str().unwrap().to_string();
    let mut web = String::new();
    for (i, share) in shares.iter().enumerate().skip(1) {
        let name = format!("owner{i}");
        let home = procs.home(&name);
        ok(&home, &["init"]);
        ok(&home, &["data", "add", "mine", share.to_str().unwrap()]);
        let ready = procs.node(&name, Some(&bootstrap));
        if i == 1 {
            web = ready["web"].as_str().unwrap().to_string();
        }
    }
    for i in 1..=3 {
        let name = format!("owner{i}");
        wait_for(
            "the publication to reach the owners",
            Duration::from_secs(30),
            || {
                procs.status(&name)["models"]
                    .as_array()
                    .is_some_and(|m| m.len() == 2)
            },
        );
    }
    for name in ["owner2", "owner3"] {
        ok(
            &procs.home(name),
            &["consent", "grant", &model, "--data", "mine"],
        );
    }
    let owner1 = procs.home("owner1");
    let owner1_did = ok(&owner1, &["node", "status", "--json"]);
    let owner1_did = serde_json::from_str::<Value>(&owner1_did).unwrap()["did"]
        .as_str()
        .unwrap()
        .to_string();

    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.children.push(driver);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("ChromeDriver never answered: {e}"),
            }
        };
        let mut violations = Vec::new();
        let mut check = async |client: &Client, name: &str| {
            screenshot(client, &shots, name).await;
            if let Some(axe) = &axe {
                violations.extend(
                    serious_violations(client, axe, name)
                        .await
                        .into_iter()
                        .map(|v| (name.to_string(), v)),
                );
            }
        };

        // Logged in by the one-time link; the model waits for owner1's decision.
        let link = ok(&owner1, &["open", "--print"]);
        client.goto(link.trim()).await.unwrap();
        assert!(
            client
                .current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/models")
        );
        let pending = client.find(Locator::Css("#h-pending")).await.unwrap();
        assert!(
            pending
                .text()
                .await
                .unwrap()
                .contains("Waiting for your decision")
        );
        check(&client, "models").await;

        // Reads the card, then grants with the keyboard alone.
        client
            .find(Locator::Css(&format!("a[href='/models/{model}']")))
            .await
            .unwrap()
            .follow()
            .await
            .unwrap();
        let page = client.source().await.unwrap();
        assert!(
            page.contains("Routing scanned postal forms"),
            "the card's purpose"
        );
        assert!(page.contains("What it may never be used for"));
        assert!(page.contains("Identifying or profiling the people who wrote the digits"));
        check(&client, "card").await;
        press_by_keyboard(&client, "Grant consent").await;
        client
            .wait()
            .for_element(Locator::Css("button[type=submit]"))
            .await
            .unwrap();
        let page = client.source().await.unwrap();
        assert!(
            page.contains("Revoke consent"),
            "granted: the page now offers revoking"
        );
        let consents: Vec<Value> =
            serde_json::from_str(&ok(&owner1, &["consent", "list", "--json"])).unwrap();
        assert_eq!(consents.len(), 1, "{consents:?}");
        assert_eq!(consents[0]["state"], "active");
        assert_eq!(consents[0]["model_id"], model.as_str());

        // The grant reaches the publisher; the next round trains on owner1's data.
        wait_for(
            "the consents to reach the publisher",
            Duration::from_secs(30),
            || procs.status("publisher")["ledger"]["authors"] == 4,
        );
        assert_eq!(train_one_round(&publisher, &model), 3);
        assert!(last_round_participants(&publisher, &model).contains(&owner1_did));
        client.goto(&format!("{web}models/{model}")).await.unwrap();
        check(&client, "card-after-a-round").await;

        // Revokes with the keyboard alone; the round after leaves owner1 out.
        press_by_keyboard(&client, "Revoke consent").await;
        client
            .wait()
            .for_element(Locator::Css("#h-decide"))
            .await
            .unwrap();
        assert!(client.source().await.unwrap().contains("Grant consent"));
        let revoked: Vec<Value> =
            serde_json::from_str(&ok(&owner1, &["consent", "list", "--json"])).unwrap();
        assert_eq!(revoked[0]["state"], "revoked");
        let owner1_heads = || procs.status("owner1")["ledger"]["heads_digest"].clone();
        wait_for(
            "the revocation to reach the publisher",
            Duration::from_secs(30),
            || procs.status("publisher")["ledger"]["heads_digest"] == owner1_heads(),
        );
        assert_eq!(train_one_round(&publisher, &model), 2);
        assert!(!last_round_participants(&publisher, &model).contains(&owner1_did));

        // Refuses the other model, and saves a policy, by keyboard too.
        client
            .goto(&format!("{web}models/{refused_model}"))
            .await
            .unwrap();
        press_by_keyboard(&client, "Refuse").await;
        client
            .wait()
            .for_element(Locator::Css("#h-decide"))
            .await
            .unwrap();
        let page = client.source().await.unwrap();
        assert!(
            page.contains("<strong>refused</strong>"),
            "refused on the page"
        );
        let decisions: Vec<Value> =
            serde_json::from_str(&ok(&owner1, &["consent", "list", "--json"])).unwrap();
        assert!(
            decisions
                .iter()
                .any(|d| d["state"] == "refused" && d["model_id"] == refused_model.as_str()),
            "{decisions:?}"
        );
        client.goto(&format!("{web}policies")).await.unwrap();
        press_by_keyboard(&client, "Save policy").await;
        let saved = client
            .wait()
            .for_element(Locator::Css("[role=status]"))
            .await
            .unwrap();
        assert!(saved.text().await.unwrap().contains("Policy saved"));
        assert!(owner1.join("policy.toml").exists());

        // Every other page, and the ledger verified by keyboard.
        for name in ["policies", "rewards", "data", "privacy", "ledger"] {
            client.goto(&format!("{web}{name}")).await.unwrap();
            check(&client, name).await;
        }
        press_by_keyboard(&client, "Verify the whole ledger").await;
        let status = client
            .wait()
            .for_element(Locator::Css("[role=status]"))
            .await
            .unwrap();
        assert!(status.text().await.unwrap().starts_with("OK"));
        check(&client, "ledger-verified").await;
        client.goto(&format!("{web}models")).await.unwrap();
        check(&client, "models-after").await;

        assert!(
            violations.is_empty(),
            "axe-core found serious or critical violations: {violations:#?}"
        );
        if std::env::var_os("FEDPOOL_UPDATE_SCREENSHOTS").is_some() {
            let docs = PathBuf::from(format!("{ROOT}/docs/screenshots"));
            std::fs::create_dir_all(&docs).unwrap();
            for (from, to) in [("models", "models"), ("card-after-a-round", "card")] {
                std::fs::copy(
                    shots.join(format!("{from}.png")),
                    docs.join(format!("{to}.png")),
                )
                .unwrap();
            }
        }
        client.close().await.unwrap();
    });
}
