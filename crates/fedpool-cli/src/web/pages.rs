//! The pages, rendered on the server with maud (which escapes every value it interpolates:
//! a publisher's card text can never become markup). No script; forms post to the API.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use super::{App, with_node};
use crate::home::format_time;
use crate::node;
use crate::owner::{self, Standing};
use fedpool_ledger::wallet::{WalletAction, format_address};

const STYLE: &str = include_str!("style.css");

/// What the policies page offers when no policy is set (a test parses it).
pub(crate) const POLICY_EXAMPLE: &str = r#"dataset = "mine"

[[rule]]
name = "never-income"
action = "refuse"
reads_any_of = ["income"]

[[rule]]
name = "private-postal"
action = "grant"
purpose_contains = ["postal"]
max_epsilon = 8.0
secure_aggregation = true
"#;

/// Which entry of the navigation a page is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Models,
    Policies,
    Rewards,
    Ledger,
    Data,
    Privacy,
}

const SECTIONS: [(Section, &str, &str); 6] = [
    (Section::Models, "/models", "Models"),
    (Section::Policies, "/policies", "Policies"),
    (Section::Rewards, "/rewards", "Rewards"),
    (Section::Ledger, "/ledger", "Ledger"),
    (Section::Data, "/data", "Data"),
    (Section::Privacy, "/privacy", "Privacy"),
];

fn layout(section: Section, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — fedpool" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    p.brand { "fedpool · your node" }
                    nav aria-label="Main" {
                        ul {
                            @for (s, href, label) in SECTIONS {
                                li {
                                    @if s == section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

fn error_page(section: Section, error: &anyhow::Error) -> Response {
    let page = layout(
        section,
        "Something went wrong",
        html! {
            h1 { "Something went wrong" }
            p.error role="alert" { (format!("{error:#}")) }
        },
    );
    (StatusCode::INTERNAL_SERVER_ERROR, page).into_response()
}

/// Percent-encodes a path segment (model ids are hex, but a name may be asked for).
pub(crate) fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn short(text: &str) -> &str {
    &text[..text.len().min(16)]
}

/// `GET /`
pub(crate) async fn home() -> Redirect {
    Redirect::to("/models")
}

/// `GET /assets/style.css`
pub(crate) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `GET /models`: every model that wants data, by where it stands.
pub(crate) async fn models(State(app): State<Arc<App>>) -> Response {
    let rows = match with_node(&app, |node| owner::model_rows(node)).await {
        Ok(rows) => rows,
        Err(e) => return error_page(Section::Models, &e),
    };
    let groups = [
        (Standing::Pending, "Waiting for your decision"),
        (Standing::Granted, "Granted"),
        (Standing::Refused, "Refused"),
        (Standing::Revoked, "Revoked"),
        (Standing::Expired, "Expired"),
    ];
    layout(
        Section::Models,
        "Models",
        html! {
            h1 { "Models that want your data" }
            @if rows.is_empty() {
                p { "No model has been published on the network yet." }
            }
            @for (standing, heading) in groups {
                @let here: Vec<_> = rows.iter().filter(|r| r.standing == standing).collect();
                @if !here.is_empty() {
                    section aria-labelledby=(format!("h-{}", standing.word())) {
                        h2 id=(format!("h-{}", standing.word())) { (heading) " (" (here.len()) ")" }
                        table {
                            thead { tr { th scope="col" { "Model" } th scope="col" { "Publisher" } th scope="col" { "Decided by" } th scope="col" { "Since" } } }
                            tbody {
                                @for row in here {
                                    tr {
                                        td { a href=(format!("/models/{}", row.model_id)) { (row.name) " v" (row.version) } }
                                        td { (row.publisher_name) br; code { (short(&row.publisher)) "…" } }
                                        td { (why(row)) }
                                        td { (row.since_ms.map(format_time).unwrap_or_else(|| "—".into())) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

fn why(row: &owner::ModelRow) -> String {
    match (&row.standing, &row.decided_by) {
        (Standing::Pending, _) => "no rule of your policy decides it".into(),
        (_, Some(by)) if by == "owner" => "you".into(),
        (_, Some(rule)) => format!("your policy's rule “{rule}”"),
        (_, None) => "—".into(),
    }
}

/// `GET /models/{id}`: the card, live status, charts and the owner's decision.
pub(crate) async fn model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    model_page(&app, id, None).await.into_response()
}

/// The model's page, with an error beside its forms when a decision failed.
pub(crate) async fn model_page(app: &Arc<App>, id: String, error: Option<String>) -> Response {
    let loaded = with_node(app, move |node| {
        let model = node::find_model(&node.store, &id)?;
        let card = node::card(&node.store, &model)?;
        let me = node.did();
        let rounds = owner::rounds(node, &model, &me)?;
        let row = owner::model_rows(node)?
            .into_iter()
            .find(|r| r.model_id == model.id().as_str());
        let datasets = node.home.datasets()?;
        let spent = owner::privacy_rows(node)?
            .into_iter()
            .find(|r| r.model_id == model.id().as_str());
        let explained = node.home.policy().ok().flatten().map(|policy| {
            let explained = policy
                .policy
                .explain(&model.contract, &model.event.author().to_string());
            match explained.decision() {
                Some(check) => format!(
                    "Your policy's rule “{}” {} it: {}.",
                    check.rule,
                    match check.action {
                        fedpool_core::policy::PolicyAction::Grant => "grants",
                        fedpool_core::policy::PolicyAction::Refuse => "refuses",
                    },
                    check
                        .outcome
                        .as_ref()
                        .map(|r| r.join("; "))
                        .unwrap_or_default()
                ),
                None => "No rule of your policy decides it: it waits for you.".to_string(),
            }
        });
        Ok((
            card,
            rounds,
            row,
            datasets,
            explained,
            spent,
            model.contract.privacy.epsilon_budget,
        ))
    })
    .await;
    let (card, rounds, row, datasets, explained, spent, budget) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let page = layout(
                Section::Models,
                "No such model",
                html! { h1 { "No such model" } p.error role="alert" { (format!("{e:#}")) } },
            );
            return (StatusCode::NOT_FOUND, page).into_response();
        }
    };
    let t = &card.terms;
    let s = &card.status;
    let standing = row.as_ref().map_or(Standing::Pending, |r| r.standing);
    let mine: u64 = rounds.iter().map(|r| r.paid_to_me).sum();
    let id = card.model_id.clone();
    let csrf = app.secret.csrf();
    layout(
        Section::Models,
        &t.name,
        html! {
            h1 { (t.name) " v" (t.version) }
            p.lead { (t.description) }
            dl.facts {
                dt { "Published by" } dd { (t.publisher) }
                dt { "Model id" } dd { code { (card.model_id) } }
                dt { "Card hash (what a consent names)" } dd { code { (short(&card.card_hash)) "…" } }
                dt { "Your decision" } dd {
                    strong { (standing.word()) }
                    @if let Some(row) = &row { @if standing != Standing::Pending { " — by " (why(row)) } }
                }
            }
            @if let Some(error) = &error {
                p.error role="alert" id="decision-error" { (error) }
            }
            section aria-labelledby="h-decide" {
                h2 #h-decide { "Your decision" }
                @if let Some(explained) = explained.as_ref().filter(|_| standing == Standing::Pending) { p { (explained) } }
                @if matches!(standing, Standing::Granted | Standing::Revoked | Standing::Expired) {
                    p { a href=(format!("/api/models/{id}/receipt")) download { "Download your consent receipt" } " (JSON, Kantara consent receipt fields with the signed ledger events: anyone can check it with " code { "fedpool consent verify-receipt FILE" } ")" }
                }
                @match standing {
                    Standing::Granted => {
                        form method="post" action=(format!("/api/models/{id}/revoke")) {
                            input type="hidden" name="csrf" value=(csrf);
                            p { "Revoking stops your node from training this model from the next round; the publisher stops asking." }
                            button type="submit" { "Revoke consent" }
                        }
                    }
                    _ => {
                        form method="post" action=(format!("/api/models/{id}/grant")) {
                            input type="hidden" name="csrf" value=(csrf);
                            @if datasets.is_empty() {
                                p { "Register a dataset first: " code { "fedpool data add NAME FILE" } "." }
                            } @else {
                                p {
                                    label for="dataset" { "Dataset to train on" }
                                    select #dataset name="dataset" required aria-describedby=[error.as_ref().map(|_| "decision-error")] {
                                        @for d in &datasets { option value=(d.name) { (d.name) " (" (d.n_rows) " rows)" } }
                                    }
                                }
                                p {
                                    label for="until" { "Consent ends after (optional)" }
                                    input #until type="date" name="until";
                                }
                                p {
                                    label for="epsilon_cap" { "Your own ε cap (optional)" }
                                    input #epsilon_cap type="text" inputmode="decimal" name="epsilon_cap" size="8";
                                }
                                button type="submit" { "Grant consent" }
                            }
                        }
                        @if standing == Standing::Pending {
                            form method="post" action=(format!("/api/models/{id}/refuse")) {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Refuse" }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-status" {
                h2 #h-status { "Live status" }
                dl.facts {
                    dt { "Rounds committed" } dd { (s.rounds_done) }
                    dt { "Participants so far" } dd { (s.participants) }
                    dt { "Consents in force" } dd { (s.active_consents) }
                    @if let Some(spent) = spent.as_ref().filter(|s| s.steps > 0 || s.epsilon_cap.is_some()) {
                        dt { "ε your node accounted" }
                        dd {
                            (format!("{:.3}", spent.epsilon_spent))
                            @if let Some(cap) = spent.epsilon_cap { " of your cap " (cap) }
                            " (" (spent.steps) " rounds)"
                        }
                    }
                    dt { "ε spent (publisher's accountant)" } dd { (s.epsilon_spent.map(|e| format!("{e:.3}")).unwrap_or_else(|| "— (no noise)".into())) @if let Some(b) = budget { " of " (b) } }
                    @for (name, value) in &s.latest_metrics { dt { "Latest " (name) } dd { (format!("{value:.4}")) } }
                    dt { "Paid so far (all owners)" } dd { (s.paid) " " (t.currency) }
                    dt { "Paid to you" } dd { (mine) " " (t.currency) }
                    dt { "Released" } dd { (if s.released { "yes" } else { "not yet" }) }
                }
                @if !rounds.is_empty() {
                    figure {
                        img src=(format!("/models/{id}/charts/accuracy.svg")) alt=(format!("Held-out accuracy after each of {} rounds", rounds.len())) width="720" height="400";
                    }
                    figure {
                        img src=(format!("/models/{id}/charts/epsilon.svg")) alt="ε spent after each round, against the budget" width="720" height="400";
                    }
                    figure {
                        img src=(format!("/models/{id}/charts/rewards.svg")) alt="What you were paid for each round" width="720" height="400";
                    }
                }
            }
            section aria-labelledby="h-card" {
                h2 #h-card { "Transparency card" }
                h3 { "What it is for" }
                ul { @for u in &t.intended_uses { li { (u) } } }
                h3 { "What it may never be used for" }
                ul { @for u in &t.out_of_scope_uses { li { (u) } } }
                h3 { "Who it is applied to" }
                p { (t.population) }
                h3 { "Decisions it informs" }
                ul { @for d in &t.decisions_informed { li { (d) } } }
                h3 { "What it reads of your data" }
                table {
                    thead { tr { th scope="col" { "Field" } th scope="col" { "What is read" } } }
                    tbody {
                        @for f in &t.fields { tr { td { code { (f.name) } } td { (f.description) } } }
                        tr { td { code { (t.label) } } td { "the label it learns to predict" } }
                    }
                }
                h3 { "Task and training" }
                p { (t.task) ". " (t.model) "." }
                p { (t.training) }
                h3 { "Privacy" }
                @for p in &t.privacy { p { (p) } }
                h3 { "Rewards" }
                @for p in &t.rewards { p { (p) } }
            }
        },
    )
    .into_response()
}

/// `GET /models/{id}/charts/{accuracy|epsilon|rewards}.svg`
pub(crate) async fn chart(
    State(app): State<Arc<App>>,
    Path((id, chart)): Path<(String, String)>,
) -> Response {
    let svg = with_node(&app, move |node| {
        let model = node::find_model(&node.store, &id)?;
        let me = node.did();
        let rounds = owner::rounds(node, &model, &me)?;
        let budget = model.contract.privacy.epsilon_budget;
        match chart.as_str() {
            "accuracy.svg" => {
                let points: Vec<(u32, f64)> = rounds
                    .iter()
                    .filter_map(|r| {
                        r.metrics
                            .iter()
                            .find(|(name, _)| name == "accuracy")
                            .map(|(_, v)| (r.round, *v))
                    })
                    .collect();
                crate::report::rounds_svg("Held-out accuracy", "accuracy", 1.0, &points, None)
            }
            "epsilon.svg" => {
                let points: Vec<(u32, f64)> =
                    rounds.iter().map(|r| (r.round, r.epsilon_total)).collect();
                let top = crate::report::epsilon_axis_top(&points, budget);
                crate::report::rounds_svg("Privacy spent", "ε spent", top, &points, budget)
            }
            "rewards.svg" => {
                let points: Vec<(u32, f64)> = rounds
                    .iter()
                    .map(|r| (r.round, r.paid_to_me as f64))
                    .collect();
                let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
                crate::report::rounds_svg(
                    "Paid to you per round",
                    &model.contract.rewards.currency,
                    top,
                    &points,
                    None,
                )
            }
            other => anyhow::bail!("no chart named {other}"),
        }
    })
    .await;
    match svg {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e:#}")).into_response(),
    }
}

/// `GET /policies`
pub(crate) async fn policies(
    State(app): State<Arc<App>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let text = std::fs::read_to_string(app.home.policy_path()).ok();
    policies_page(&app, text, None, query.contains_key("saved")).into_response()
}

/// The policies page, with the text as submitted and its error beside the field.
pub(crate) fn policies_page(
    app: &App,
    text: Option<String>,
    error: Option<String>,
    saved: bool,
) -> Markup {
    let example = POLICY_EXAMPLE;
    layout(
        Section::Policies,
        "Policies",
        html! {
            h1 { "Your consent policy" }
            p { "Rules that grant or refuse models automatically, checked in order; the first whose conditions all hold decides, and a model no rule decides waits for you. Each automatic decision is signed on the ledger with the rule that made it." }
            @if saved { p.notice role="status" { "Policy saved. Your node applies it to waiting models." } }
            form method="post" action="/api/policy" {
                input type="hidden" name="csrf" value=(app.secret.csrf());
                p {
                    label for="policy" { "Policy (TOML)" }
                    textarea #policy name="policy" rows="18" cols="80" spellcheck="false" aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby=[error.as_ref().map(|_| "policy-error")] {
                        (text.clone().unwrap_or_else(|| example.to_string()))
                    }
                }
                @if let Some(error) = &error {
                    p.error #policy-error role="alert" { (error) }
                }
                button type="submit" { "Save policy" }
            }
            @if text.is_none() { p { "No policy is set: every model waits for you. The text above is an example." } }
        },
    )
}

/// `GET /rewards`
pub(crate) async fn rewards(State(app): State<Arc<App>>) -> Response {
    let loaded = with_node(&app, |node| {
        Ok((owner::earnings(node)?, owner::token_payouts(node)?))
    })
    .await;
    let (rows, tokens) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Section::Rewards, &e),
    };
    let mut totals: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for row in &rows {
        *totals
            .entry((row.name.clone(), row.currency.clone()))
            .or_default() += row.amount;
    }
    layout(
        Section::Rewards,
        "Rewards",
        html! {
            h1 { "What you earned" }
            p { "Every payout here was signed on the ledger by the model's own publisher; balances are derived from those events." }
            p { a href="/api/rewards.csv" download { "Download as CSV" } }
            @if tokens.wallets.is_empty() {
                p { "No wallet is linked: your rewards stay as credit on the ledger until you " a href="/rewards/wallet" { "link one" } "; then the publisher's next settlement pays them as tokens." }
            } @else {
                @for (chain, address) in &tokens.wallets {
                    p { "Rewards are paid as tokens to your wallet " code { (address) } " on chain " (chain) "." }
                }
                p { a href="/rewards/wallet" { "Change or unlink your wallet" } }
            }
            @if rows.is_empty() { p { "No payouts yet." } }
            @else {
                h2 { "Per model" }
                table {
                    thead { tr { th scope="col" { "Model" } th scope="col" { "Total" } th scope="col" { "Paid out as tokens" } } }
                    tbody { @for ((name, currency), total) in &totals { tr { td { (name) } td.num { (total) " " (currency) } td.num { (tokens.settled.get(name).copied().unwrap_or(0)) } } } }
                }
                h2 { "Per round" }
                table {
                    thead { tr { th scope="col" { "Model" } th scope="col" { "Round" } th scope="col" { "Score" } th scope="col" { "Amount" } } }
                    tbody {
                        @for row in &rows {
                            tr {
                                td { (row.name) }
                                td { (row.round.map_or_else(|| "final".to_string(), |r| r.to_string())) }
                                td.num { (format!("{:.4}", row.score)) }
                                td.num { (row.amount) " " (row.currency) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /ledger[?verify=1]`
pub(crate) async fn ledger(
    State(app): State<Arc<App>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let verify = query.contains_key("verify");
    let loaded = with_node(&app, move |node| {
        let me = node.did();
        let events = node.store.events_by_author(&me)?;
        let report = if verify {
            Some(node.store.verify(&fedpool_runtime::ContractReader)?)
        } else {
            None
        };
        Ok((me, events, report))
    })
    .await;
    let (me, events, report) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Section::Ledger, &e),
    };
    layout(
        Section::Ledger,
        "Ledger",
        html! {
            h1 { "Your ledger events" }
            p { "Signed by your node as " code { (me.to_string()) } "." }
            form method="get" action="/ledger" {
                input type="hidden" name="verify" value="1";
                button type="submit" { "Verify the whole ledger" }
            }
            @if let Some(report) = &report {
                @if report.is_ok() {
                    p.notice role="status" { "OK: " (report.n_events) " events by " (report.n_authors) " authors, " (report.n_models) " models, " (report.n_rounds) " rounds; every signature, chain, consent, budget and payout checks out." }
                } @else {
                    div.error role="alert" {
                        p { (report.violations.len()) " violations in " (report.n_events) " events:" }
                        ul { @for v in &report.violations { li { (v.to_string()) } } }
                    }
                }
            }
            table {
                thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "What" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td.num { (e.seq()) }
                            td { (format_time(e.timestamp_ms())) }
                            td { (e.kind().name()) }
                            td { (crate::cmd_ledger::summary(e)) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /data`: registered datasets, never their rows.
pub(crate) async fn data(State(app): State<Arc<App>>) -> Response {
    let datasets = match app.home.datasets() {
        Ok(d) => d,
        Err(e) => return error_page(Section::Data, &e),
    };
    layout(
        Section::Data,
        "Data",
        html! {
            h1 { "Your datasets" }
            p { "Registered with " code { "fedpool data add" } ". Their rows stay in your files: this page shows their shape and fingerprint, never a value." }
            @if datasets.is_empty() { p { "No dataset is registered." } }
            @for d in &datasets {
                section aria-labelledby=(format!("d-{}", path_segment(&d.name))) {
                    h2 id=(format!("d-{}", path_segment(&d.name))) { (d.name) }
                    dl.facts {
                        dt { "Rows" } dd { (d.n_rows) }
                        dt { "Fingerprint (what a consent names)" } dd { code { (d.fingerprint) } }
                        dt { "File" } dd { code { (d.path.display().to_string()) } }
                        dt { "Registered" } dd { (format_time(d.registered_at_ms)) }
                        @if let Some(label) = &d.label { dt { "Label" } dd { (label) } }
                    }
                    table {
                        caption { "Columns" }
                        thead { tr { th scope="col" { "Column" } th scope="col" { "Type" } th scope="col" { "Empty cells" } } }
                        tbody {
                            @for c in &d.columns {
                                tr { td { code { (c.name) } } td { (format!("{:?}", c.kind).to_lowercase()) } td.num { (c.n_empty) } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /privacy`: ε spent per model, by the owner's own node, against the caps.
pub(crate) async fn privacy(State(app): State<Arc<App>>) -> Response {
    let rows = match with_node(&app, |node| owner::privacy_rows(node)).await {
        Ok(rows) => rows,
        Err(e) => return error_page(Section::Privacy, &e),
    };
    layout(
        Section::Privacy,
        "Privacy",
        html! {
            h1 { "Privacy you have spent" }
            p { "What your own node accounted for each model (it refuses a round that would pass the contract's budget or your cap), from its signed PrivacySpent events." }
            table {
                thead { tr { th scope="col" { "Model" } th scope="col" { "ε spent" } th scope="col" { "Your cap" } th scope="col" { "Contract budget" } th scope="col" { "Rounds accounted" } th scope="col" { "Of the limit" } } }
                tbody {
                    @for r in &rows {
                        @let limit = r.epsilon_cap.into_iter().chain(r.epsilon_budget).fold(f64::INFINITY, f64::min);
                        tr {
                            td { (r.name) }
                            td.num { (format!("{:.3}", r.epsilon_spent)) }
                            td.num { (r.epsilon_cap.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                            td.num { (r.epsilon_budget.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                            td.num { (r.steps) }
                            td {
                                @if limit.is_finite() {
                                    meter min="0" max=(limit) value=(r.epsilon_spent.min(limit)) aria-label=(format!("{} of {limit} spent", format!("{:.3}", r.epsilon_spent))) { (format!("{:.0}%", 100.0 * r.epsilon_spent / limit)) }
                                } @else { "no limit" }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_policy_parses() {
        let policy =
            fedpool_core::policy::Policy::from_toml(super::POLICY_EXAMPLE, "example").unwrap();
        assert_eq!(policy.rules.len(), 2);
    }
}

/// What the wallet page was asked for: the wallet whose message to show (link or unlink),
/// as typed, and the signature as pasted when a submission came back with an error.
#[derive(Default)]
pub(crate) struct WalletRequest {
    pub(crate) unlink: bool,
    pub(crate) address: String,
    pub(crate) chain_id: String,
    pub(crate) signature: String,
}

impl WalletRequest {
    fn from_query(query: &std::collections::HashMap<String, String>) -> Self {
        let field = |name: &str| query.get(name).cloned().unwrap_or_default();
        WalletRequest {
            unlink: query.get("action").is_some_and(|a| a == "unlink"),
            address: field("address"),
            chain_id: field("chain_id"),
            signature: String::new(),
        }
    }

    fn action(&self) -> WalletAction {
        if self.unlink {
            WalletAction::Unlink
        } else {
            WalletAction::Link
        }
    }
}

/// `GET /rewards/wallet[?address=…&chain_id=…[&action=unlink]]`: the linked wallets, and the
/// message a wallet signs to link (or unlink) itself.
pub(crate) async fn wallet(
    State(app): State<Arc<App>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let notice = match query.get("done").map(String::as_str) {
        Some("link") => {
            Some("Wallet linked: the publisher's next settlement pays your rewards to it.")
        }
        Some("unlink") => Some("Wallet unlinked: rewards stay as credit until you link one."),
        _ => None,
    };
    wallet_page(&app, WalletRequest::from_query(&query), None, notice).await
}

/// The wallet page, with `error` beside the signature field when a submission was refused.
pub(crate) async fn wallet_page(
    app: &Arc<App>,
    request: WalletRequest,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let asked = !request.address.trim().is_empty();
    let (address_text, chain_text, action) = (
        request.address.clone(),
        request.chain_id.clone(),
        request.action(),
    );
    let loaded = with_node(app, move |node| {
        let linked = owner::linked_wallets(node)?;
        let default_chain = owner::settlement_chain(node)?;
        let challenge = asked.then(|| {
            super::api::parse_wallet_fields(&address_text, &chain_text, default_chain).and_then(
                |(chain_id, address)| {
                    let challenge = owner::wallet_challenge(node, action, chain_id, &address)?;
                    Ok((chain_id, address, challenge))
                },
            )
        });
        Ok((linked, default_chain, challenge))
    })
    .await;
    let (linked, default_chain, challenge) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return error_page(Section::Rewards, &e),
    };
    let field_error = match &challenge {
        Some(Err(e)) => Some(format!("{e:#}")),
        _ => None,
    };
    let chain_value = if request.chain_id.trim().is_empty() {
        default_chain.map(|c| c.to_string()).unwrap_or_default()
    } else {
        request.chain_id.clone()
    };
    let verb = if request.unlink { "Unlink" } else { "Link" };
    let status = if error.is_some() || field_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = layout(
        Section::Rewards,
        "Wallet",
        html! {
            h1 { "Where your rewards are paid" }
            p { "A publisher pays your rewards as tokens to a wallet you link here. Your wallet's key never comes to fedpool: the wallet signs a short text naming your node, and your node signs the link on the ledger beside it. Unlinking is signed the same way. Until a wallet is linked, rewards stay as credit on the ledger." }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            h2 { "Linked now" }
            @if linked.is_empty() {
                p { "No wallet is linked." }
            } @else {
                ul {
                    @for (chain, address) in &linked {
                        @let address = format_address(address);
                        li {
                            code { (address) } " on chain " (chain) " — "
                            a href=(format!("/rewards/wallet?action=unlink&address={address}&chain_id={chain}")) { "unlink " (short(&address)) "…" }
                        }
                    }
                }
            }
            h2 { (verb) " a wallet" }
            form method="get" action="/rewards/wallet" {
                @if request.unlink { input type="hidden" name="action" value="unlink"; }
                p {
                    label for="address" { "Wallet address" }
                    input #address name="address" type="text" size="46" autocomplete="off" spellcheck="false" placeholder="0x…" value=(request.address) aria-invalid=[field_error.as_ref().map(|_| "true")] aria-describedby=[field_error.as_ref().map(|_| "address-error")];
                }
                p {
                    label for="chain_id" { "Chain id" }
                    input #chain_id name="chain_id" type="text" inputmode="numeric" size="12" value=(chain_value);
                }
                @if let Some(e) = &field_error { p.error #address-error role="alert" { (e) } }
                button type="submit" { "Show the text to sign" }
            }
            @if let Some(Ok((chain_id, address, challenge))) = &challenge {
                h2 { "Sign with your wallet" }
                p { "Sign this text with your wallet's “sign message” (" code { "personal_sign" } "), exactly as shown, then paste the signature below. It names your node's next ledger event, so it is good for this " (verb.to_lowercase()) " only." }
                pre #wallet-message { (challenge.message) }
                form method="post" action=(format!("/api/wallet/{}", action)) {
                    input type="hidden" name="csrf" value=(app.secret.csrf());
                    input type="hidden" name="address" value=(format_address(address));
                    input type="hidden" name="chain_id" value=(chain_id);
                    input type="hidden" name="seq" value=(challenge.seq);
                    p {
                        label for="signature" { "Signature" }
                        textarea #signature name="signature" rows="3" spellcheck="false" autocomplete="off" placeholder="0x… (65 bytes)" aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby=[error.as_ref().map(|_| "signature-error")] { (request.signature) }
                    }
                    @if let Some(e) = &error { p.error #signature-error role="alert" { (e) } }
                    button type="submit" { (verb) " this wallet" }
                }
            } @else if let Some(e) = &error {
                p.error role="alert" { (e) }
            }
        },
    );
    (status, page).into_response()
}
