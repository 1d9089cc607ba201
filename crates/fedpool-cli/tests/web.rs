//! The owner's web page as an attacker meets it: a real `fedpool node run` process, spoken to
//! over raw HTTP so every header is the test's choice (no token, a forged cookie, a
//! cross-site form, a foreign Host, a publisher's card carrying markup).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use common::{BIN, ROOT, ok, run};

/// An owner node serving its page, with one model published by another node in its ledger.
struct Owner {
    dir: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
    model: String,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Owner {
    /// Publishes `contract_text` from a publisher home, imports it into a new owner home with
    /// the bundled digits registered, and starts the owner's node with `extra` arguments.
    fn start(contract_text: &str, extra: &[&str]) -> Owner {
        let dir = tempfile::tempdir().unwrap();
        let publisher = dir.path().join("publisher");
        let owner = dir.path().join("owner");
        let contract = dir.path().join("contract.toml");
        std::fs::write(&contract, contract_text).unwrap();
        ok(&publisher, &["init"]);
        let model = ok(&publisher, &["publish", contract.to_str().unwrap()])
            .trim()
            .to_string();
        let bundle = dir.path().join("publication.bundle");
        ok(&publisher, &["ledger", "export", bundle.to_str().unwrap()]);
        ok(&owner, &["init"]);
        ok(&owner, &["ledger", "import", bundle.to_str().unwrap()]);
        let data = format!("{ROOT}/data/digits/digits.csv");
        ok(&owner, &["data", "add", "mine", &data]);
        let log = std::fs::File::create(dir.path().join("owner.log")).unwrap();
        let mut child = Command::new(BIN)
            .arg("--home")
            .arg(&owner)
            .args(["node", "run", "--json", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .env("FEDPOOL_NETWORK", "fedpool-test-net")
            .env("FEDPOOL_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the node printed {line:?}: {e}"));
        let url = ready["web"]
            .as_str()
            .expect("the ready line names the page");
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Owner {
            dir,
            child,
            addr,
            model,
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("owner")
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.home().join("web.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("owner.log")).unwrap_or_default()
    }

    /// Logs in with a one-time link as a browser would; returns the session cookie.
    fn login(&self) -> String {
        let link = ok(&self.home(), &["open", "--print"]);
        let path = link.trim().split_once(&self.addr).unwrap().1.to_string();
        let response = self.request("GET", &path, &[], "");
        assert_eq!(response.status, 303, "{}", response.body);
        let cookie = response
            .header("set-cookie")
            .expect("a login sets the session cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        cookie.split(';').next().unwrap().to_string()
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        http(&self.addr, &self.addr, method, path, headers, body)
    }

    fn consents(&self) -> Vec<Value> {
        serde_json::from_str(&ok(&self.home(), &["consent", "list", "--json"])).unwrap()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// One HTTP/1.1 request on a fresh connection, every header as given.
fn http(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

fn digits() -> String {
    std::fs::read_to_string(format!("{ROOT}/contracts/digits.toml")).unwrap()
}

/// Every route the page serves, with a method it answers.
fn routes(model: &str) -> Vec<(&'static str, String)> {
    let m = model;
    vec![
        ("GET", "/".into()),
        ("GET", "/models".into()),
        ("GET", format!("/models/{m}")),
        ("GET", format!("/models/{m}/charts/accuracy.svg")),
        ("GET", "/policies".into()),
        ("GET", "/rewards".into()),
        ("GET", "/ledger".into()),
        ("GET", "/ledger?verify=1".into()),
        ("GET", "/data".into()),
        ("GET", "/privacy".into()),
        ("GET", "/assets/style.css".into()),
        ("GET", "/api/models".into()),
        ("GET", format!("/api/models/{m}")),
        ("POST", format!("/api/models/{m}/grant")),
        ("POST", format!("/api/models/{m}/refuse")),
        ("POST", format!("/api/models/{m}/revoke")),
        ("GET", format!("/api/models/{m}/receipt")),
        ("GET", "/api/policy".into()),
        ("POST", "/api/policy".into()),
        ("GET", "/api/rewards".into()),
        ("GET", "/api/rewards.csv".into()),
        ("GET", "/rewards/wallet".into()),
        ("GET", "/api/wallet".into()),
        (
            "GET",
            "/api/wallet/message?address=0x0000000000000000000000000000000000000001&chain_id=1"
                .into(),
        ),
        ("POST", "/api/wallet/link".into()),
        ("POST", "/api/wallet/unlink".into()),
        ("GET", "/api/ledger".into()),
        ("GET", "/api/ledger/verify".into()),
        ("GET", "/api/data".into()),
        ("GET", "/api/privacy".into()),
        ("GET", "/no/such/route".into()),
    ]
}

#[test]
fn every_route_answers_401_without_the_token_and_every_answer_carries_the_csp() {
    let owner = Owner::start(&digits(), &[]);
    let wrong_bearer = format!("Bearer {}", "0".repeat(64));
    let session = owner.login();
    // A cookie of the right name and shape whose value is the token itself, not the session.
    let wrong_cookie = format!("fedpool_session={}", owner.token());
    for (method, path) in routes(&owner.model) {
        for headers in [
            vec![],
            vec![("Authorization", wrong_bearer.as_str())],
            vec![("Cookie", wrong_cookie.as_str())],
        ] {
            let response = owner.request(method, &path, &headers, "");
            assert_eq!(response.status, 401, "{method} {path} with {headers:?}");
            assert!(
                !response.body.contains("digits-classifier"),
                "{method} {path} leaked the page"
            );
            let csp = response.header("content-security-policy").unwrap();
            assert!(csp.contains("default-src 'none'"), "{csp}");
        }
    }
    // With the token or the session every page is there, under a strict policy.
    let bearer = format!("Bearer {}", owner.token());
    for (method, path) in routes(&owner.model) {
        if method != "GET" || path.starts_with("/no/") {
            continue;
        }
        for auth in [
            ("Authorization", bearer.as_str()),
            ("Cookie", session.as_str()),
        ] {
            let response = owner.request(method, &path, &[auth], "");
            if path.ends_with("/receipt") {
                // No consent yet: nothing to give a receipt for.
                assert_eq!(response.status, 404, "{path}: {}", response.body);
                assert!(response.body.contains("you have not consented"));
                continue;
            }
            assert!(
                [200, 303].contains(&response.status),
                "{path}: {} {}",
                response.status,
                response.body
            );
            let csp = response.header("content-security-policy").unwrap();
            assert!(
                csp.contains("default-src 'none'") && !csp.contains("unsafe"),
                "{csp}"
            );
            assert_eq!(response.header("x-frame-options").as_deref(), Some("DENY"));
        }
    }
    // A login link works once.
    let link = ok(&owner.home(), &["open", "--print"]);
    let path = link.trim().split_once(&owner.addr).unwrap().1.to_string();
    assert_eq!(owner.request("GET", &path, &[], "").status, 303);
    assert_eq!(owner.request("GET", &path, &[], "").status, 401);
}

#[test]
fn a_cross_site_change_without_the_csrf_token_is_refused_and_nothing_is_signed() {
    let owner = Owner::start(&digits(), &[]);
    let session = owner.login();
    let page = owner.request(
        "GET",
        &format!("/models/{}", owner.model),
        &[("Cookie", &session)],
        "",
    );
    let csrf = hidden_field(&page.body, "csrf");
    let grant = format!("/api/models/{}/grant", owner.model);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let json = ("Content-Type", "application/json");
    // What a hostile page can make the owner's browser send: the cookie rides along, the
    // CSRF token does not.
    let attempts: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![("Cookie", &session), form], "dataset=mine".into()),
        (
            vec![("Cookie", &session), form],
            format!("dataset=mine&csrf={}", "f".repeat(64)),
        ),
        (
            vec![("Cookie", &session), json],
            "{\"dataset\":\"mine\"}".into(),
        ),
        // Even with the right token, a request the browser marks cross-site.
        (
            vec![("Cookie", &session), form, ("Sec-Fetch-Site", "cross-site")],
            format!("dataset=mine&csrf={csrf}"),
        ),
    ];
    for (headers, body) in &attempts {
        let response = owner.request("POST", &grant, headers, body);
        assert_eq!(
            response.status, 403,
            "{headers:?} {body}: {}",
            response.body
        );
    }
    let refuse = format!("/api/models/{}/refuse", owner.model);
    let response = owner.request("POST", &refuse, &[("Cookie", &session), form], "");
    assert_eq!(response.status, 403);
    let policy = owner.request(
        "POST",
        "/api/policy",
        &[("Cookie", &session), form],
        "policy=%5B%5Brule%5D%5D",
    );
    assert_eq!(policy.status, 403);
    assert!(owner.consents().is_empty(), "nothing was signed");
    assert!(!owner.home().join("policy.toml").exists());

    // The page's own form: signed, and the browser is sent back to the card.
    let response = owner.request(
        "POST",
        &grant,
        &[
            ("Cookie", &session),
            form,
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &format!("dataset=mine&until=&epsilon_cap=&csrf={csrf}"),
    );
    assert_eq!(response.status, 303, "{}", response.body);
    let consents = owner.consents();
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0]["state"], "active");
    // A script holding the token needs no CSRF token: a browser never sends it by itself.
    let bearer = format!("Bearer {}", owner.token());
    let response = owner.request(
        "POST",
        &format!("/api/models/{}/revoke", owner.model),
        &[("Authorization", &bearer), json],
        "{}",
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(owner.consents()[0]["state"], "revoked");
}

#[test]
fn the_page_listens_on_loopback_only_unless_the_flag_says_so() {
    let owner = Owner::start(&digits(), &[]);
    let ip = owner.addr.rsplit_once(':').unwrap().0;
    assert_eq!(ip, "127.0.0.1");
    // A page reached through another name (DNS rebinding) is refused.
    let bearer = format!("Bearer {}", owner.token());
    let response = http(
        &owner.addr,
        "attacker.example:80",
        "GET",
        "/models",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(response.status, 421);

    // Asked for every interface without the flag: refused before anything listens.
    let home = owner.dir.path().join("other");
    ok(&home, &["init"]);
    let out = run(
        &home,
        &[
            "node",
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--web",
            "0.0.0.0:0",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--web-allow-remote"), "{stderr}");
    assert!(!home.join("web.url").exists());

    // With the flag it does.
    drop(owner);
    let remote = Owner::start(&digits(), &["--web", "0.0.0.0:0", "--web-allow-remote"]);
    assert!(remote.addr.starts_with("0.0.0.0:"), "{}", remote.addr);
}

#[test]
fn markup_in_a_publishers_card_is_shown_as_text() {
    let hostile = digits()
        .replace(
            "description = \"Recognises handwritten digits 0-9 from 8x8 pixel-count images.\"",
            "description = \"<script>alert('card')</script> digits\"",
        )
        .replace(
            "population = \"Scanned handwritten digits from adult form-fillers\"",
            "population = \"<img src=x onerror=alert(1)> adults\"",
        );
    assert!(hostile.contains("<script>"));
    let owner = Owner::start(&hostile, &[]);
    let bearer = format!("Bearer {}", owner.token());
    let page = owner.request(
        "GET",
        &format!("/models/{}", owner.model),
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("&lt;script&gt;alert('card')&lt;/script&gt; digits"),
        "the description is shown as text"
    );
    assert!(
        page.body
            .contains("&lt;img src=x onerror=alert(1)&gt; adults")
    );
    assert!(
        !page.body.contains("<script"),
        "no script element reaches the page"
    );
    assert!(!page.body.contains("<img src=x"));
}

#[test]
fn the_token_never_appears_in_the_logs() {
    let owner = Owner::start(&digits(), &[]);
    let token = owner.token();
    let bearer = format!("Bearer {token}");
    let session = owner.login();
    for (method, path) in routes(&owner.model) {
        owner.request(method, &path, &[("Authorization", &bearer)], "");
        owner.request(method, &path, &[("Cookie", &session)], "");
    }
    let log = owner.log();
    assert!(log.len() > 100, "the node logged at debug level: {log}");
    let session_value = session.split_once('=').unwrap().1;
    for secret in [token.as_str(), session_value] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}

#[test]
fn a_policy_error_is_shown_beside_the_field_and_nothing_is_kept() {
    let owner = Owner::start(&digits(), &[]);
    let session = owner.login();
    let page = owner.request("GET", "/policies", &[("Cookie", &session)], "");
    let csrf = hidden_field(&page.body, "csrf");
    // A rule with a key no rule has, on the policy's sixth line.
    let bad = "dataset = \"mine\"\n\n[[rule]]\nname = \"r\"\naction = \"grant\"\npurpose_contians = [\"postal\"]\n";
    let body: String = serde_urlencoded_like(&[("policy", bad), ("csrf", &csrf)]);
    let response = owner.request(
        "POST",
        "/api/policy",
        &[
            ("Cookie", &session),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    );
    assert_eq!(response.status, 422, "{}", response.body);
    let error = response
        .body
        .split("id=\"policy-error\"")
        .nth(1)
        .expect("the error sits beside the field");
    assert!(error.contains("purpose_contians"), "{error}");
    assert!(response.body.contains("aria-describedby=\"policy-error\""));
    // What the owner typed is still in the field.
    assert!(
        response
            .body
            .contains("purpose_contians = [&quot;postal&quot;]")
    );
    assert!(!owner.home().join("policy.toml").exists());

    // The same through the JSON API, and a good policy is kept.
    let bearer = format!("Bearer {}", owner.token());
    let json = ("Content-Type", "application/json");
    let refused = owner.request(
        "POST",
        "/api/policy",
        &[("Authorization", &bearer), json],
        &serde_json::json!({ "policy": bad }).to_string(),
    );
    assert_eq!(refused.status, 422);
    let good = bad.replace("purpose_contians", "purpose_contains");
    let kept = owner.request(
        "POST",
        "/api/policy",
        &[("Authorization", &bearer), json],
        &serde_json::json!({ "policy": good }).to_string(),
    );
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(
        std::fs::read_to_string(owner.home().join("policy.toml")).unwrap(),
        good
    );
}

#[test]
fn an_owner_downloads_a_consent_receipt_that_anyone_can_verify() {
    let owner = Owner::start(&digits(), &[]);
    let bearer = format!("Bearer {}", owner.token());
    let auth = ("Authorization", bearer.as_str());
    let granted = owner.request(
        "POST",
        &format!("/api/models/{}/grant", owner.model),
        &[auth, ("Content-Type", "application/json")],
        r#"{"dataset": "mine"}"#,
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    let session = owner.login();
    let page = owner.request(
        "GET",
        &format!("/models/{}", owner.model),
        &[("Cookie", &session)],
        "",
    );
    let link = format!("/api/models/{}/receipt", owner.model);
    assert!(
        page.body.contains(&format!("href=\"{link}\"")),
        "{}",
        page.body
    );
    let download = owner.request("GET", &link, &[("Cookie", &session)], "");
    assert_eq!(download.status, 200, "{}", download.body);
    assert!(
        download
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment;") && d.contains("consent-receipt-")),
        "{:?}",
        download.headers
    );
    let receipt: Value = serde_json::from_str(&download.body).unwrap();
    assert_eq!(receipt["fedpool"]["status"], "active");
    let file = owner.dir.path().join("receipt.json");
    std::fs::write(&file, &download.body).unwrap();
    let checked = ok(
        &owner.home(),
        &["consent", "verify-receipt", file.to_str().unwrap()],
    );
    assert!(checked.starts_with("OK: "), "{checked}");
}

/// The value of a hidden form field `name` on a page.
fn hidden_field(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field on the page:\n{page}"))
        .to_string()
}

/// The text the wallet page asks the wallet to sign, as a person would copy it.
fn message_to_sign(page: &str) -> String {
    let text = page
        .split("<pre id=\"wallet-message\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no text to sign on the page:\n{page}"));
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn owners_events(owner: &Owner) -> usize {
    serde_json::from_str::<Vec<Value>>(&ok(&owner.home(), &["ledger", "show", "--json"]))
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "model-published")
        .count()
}

fn linked_wallets(owner: &Owner) -> Value {
    let shown: Value =
        serde_json::from_str(&ok(&owner.home(), &["wallet", "show", "--json"])).unwrap();
    shown["linked"].clone()
}

#[test]
fn an_owner_links_and_unlinks_a_wallet_from_the_page_only_with_that_wallets_signature() {
    let owner = Owner::start(&digits(), &[]);
    let session = owner.login();
    let cookie = ("Cookie", session.as_str());
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let wallet = fedpool_chain::EvmWallet::generate().unwrap();
    let stranger = fedpool_chain::EvmWallet::generate().unwrap();
    let address = wallet.address_text();

    let page = owner.request("GET", "/rewards/wallet", &[cookie], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No wallet is linked."), "{}", page.body);
    // A mistyped address is named beside its field.
    let typo = owner.request(
        "GET",
        "/rewards/wallet?address=0x12345&chain_id=31337",
        &[cookie],
        "",
    );
    assert_eq!(typo.status, 422);
    let error = typo.body.split("id=\"address-error\"").nth(1).unwrap();
    assert!(error.contains("0x12345"), "{error}");

    let asked = owner.request(
        "GET",
        &format!("/rewards/wallet?address={address}&chain_id=31337"),
        &[cookie],
        "",
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let message = message_to_sign(&asked.body);
    assert!(
        message.contains(&address) && message.contains("chain id: 31337"),
        "{message}"
    );
    let csrf = hidden_field(&asked.body, "csrf");
    let seq = hidden_field(&asked.body, "seq");
    let before = owners_events(&owner);
    let post = |signature: &[u8; 65], seq: &str, csrf: &str| {
        owner.request(
            "POST",
            "/api/wallet/link",
            &[cookie, form],
            &serde_urlencoded_like(&[
                ("address", &address),
                ("chain_id", "31337"),
                ("seq", seq),
                ("signature", &fedpool_ledger::wallet::hex(signature)),
                ("csrf", csrf),
            ]),
        )
    };

    // Another wallet's signature of the same text links nothing.
    let forged = post(&stranger.sign_message(&message).unwrap(), &seq, &csrf);
    assert_eq!(forged.status, 422);
    let error = forged.body.split("id=\"signature-error\"").nth(1).unwrap();
    assert!(
        error.contains(&format!("the signature is by {}", stranger.address_text())),
        "{error}"
    );
    // The wallet's own signature for another chain links nothing either.
    let other_chain = message.replace("chain id: 31337", "chain id: 1");
    let replayed = post(&wallet.sign_message(&other_chain).unwrap(), &seq, &csrf);
    assert_eq!(replayed.status, 422);
    // A cross-site form (no CSRF token) is refused before anything is read.
    let good = wallet.sign_message(&message).unwrap();
    assert_eq!(post(&good, &seq, "").status, 403);
    assert_eq!(
        owners_events(&owner),
        before,
        "a refused link wrote an event"
    );
    assert_eq!(linked_wallets(&owner), serde_json::json!([]));

    // The node's ledger moves on (the owner refuses a model) before the signature arrives:
    // the page says so and shows the new text; nothing is written.
    let bearer = format!("Bearer {}", owner.token());
    let refused = owner.request(
        "POST",
        &format!("/api/models/{}/refuse", owner.model),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        "",
    );
    assert_eq!(refused.status, 200, "{}", refused.body);
    let late = post(&good, &seq, &csrf);
    assert_eq!(late.status, 422);
    let error = late.body.split("id=\"signature-error\"").nth(1).unwrap();
    assert!(error.contains("moved on"), "{error}");
    let fresh = message_to_sign(&late.body);
    assert_ne!(fresh, message);
    let fresh_seq = hidden_field(&late.body, "seq");
    assert_eq!(
        fresh_seq.parse::<u64>().unwrap(),
        seq.parse::<u64>().unwrap() + 1
    );
    let after_refusal = owners_events(&owner);
    assert_eq!(after_refusal, before + 1);

    // Signed afresh, the link is written and shown.
    let linked = post(&wallet.sign_message(&fresh).unwrap(), &fresh_seq, &csrf);
    assert_eq!(linked.status, 303, "{}", linked.body);
    assert_eq!(
        linked.header("location").as_deref(),
        Some("/rewards/wallet?done=link")
    );
    assert_eq!(
        linked_wallets(&owner),
        serde_json::json!([{ "chain_id": 31337, "address": address }])
    );
    let shown = owner.request("GET", "/rewards/wallet?done=link", &[cookie], "");
    assert!(shown.body.contains("Wallet linked"), "{}", shown.body);
    assert!(shown.body.contains(&address));
    let rewards = owner.request("GET", "/rewards", &[cookie], "");
    assert!(
        rewards.body.contains(&format!(
            "Rewards are paid as tokens to your wallet <code>{address}</code>"
        )),
        "{}",
        rewards.body
    );
    let verified = ok(&owner.home(), &["ledger", "verify"]);
    assert!(verified.contains("OK"), "{verified}");

    // Unlinking through the JSON API, with the token: the same two signatures.
    let json = ("Content-Type", "application/json");
    let auth = ("Authorization", bearer.as_str());
    let unlink_challenge = || -> Value {
        let answer = owner.request(
            "GET",
            &format!("/api/wallet/message?address={address}&chain_id=31337&action=unlink"),
            &[auth],
            "",
        );
        serde_json::from_str(&answer.body).unwrap()
    };
    // Signs the node's current unlink text with the wallet and posts it (naming its seq, as
    // the page does, or not).
    let unlink = |with_seq: bool| {
        let challenge = unlink_challenge();
        let text = challenge["message"].as_str().unwrap();
        assert!(text.starts_with("fedpool wallet unlink\n"), "{text}");
        let mut body = serde_json::json!({
            "address": address,
            "chain_id": 31337,
            "signature": fedpool_ledger::wallet::hex(&wallet.sign_message(text).unwrap()),
        });
        if with_seq {
            body["seq"] = challenge["seq"].clone();
        }
        owner.request(
            "POST",
            "/api/wallet/unlink",
            &[auth, json],
            &body.to_string(),
        )
    };
    let unlinked = unlink(true);
    assert_eq!(unlinked.status, 200, "{}", unlinked.body);
    assert_eq!(linked_wallets(&owner), serde_json::json!([]));
    // A wallet that is not linked has nothing to unlink.
    let again = unlink(false);
    assert_eq!(again.status, 422);
    assert!(again.body.contains("nothing to unlink"), "{}", again.body);
    let verified = ok(&owner.home(), &["ledger", "verify"]);
    assert!(verified.contains("OK"), "{verified}");
}

/// `application/x-www-form-urlencoded`, as a browser encodes a form.
fn serde_urlencoded_like(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
