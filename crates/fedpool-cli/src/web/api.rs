//! The JSON API, which the page's forms use too: a form post gets a redirect back to its page
//! (or the page again with the error beside the form), a JSON request gets JSON.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{Authenticated, csrf_ok};
use super::{App, pages, with_node};
use fedpool_ledger::wallet::{WalletAction, format_address, parse_address, parse_signature};

use crate::home::parse_until_date;
use crate::node;
use crate::owner;

/// An error for a JSON caller.
fn json_error(status: StatusCode, error: &anyhow::Error) -> Response {
    (status, Json(json!({ "error": format!("{error:#}") }))).into_response()
}

/// How a change arrived: a form (answer with pages) or JSON (answer with JSON).
enum Via {
    Form,
    Json,
}

/// Decodes a change's body, form or JSON, after checking the CSRF token a cookie-authenticated
/// change must carry (a hidden `csrf` field, or the `X-CSRF-Token` header).
fn decode<T: DeserializeOwned>(
    app: &App,
    authenticated: Authenticated,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(T, Via), Box<Response>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let refuse = |status: StatusCode, why: String| {
        Err(Box::new(
            (status, Json(json!({ "error": why }))).into_response(),
        ))
    };
    if is_form {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let token = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        if !csrf_ok(app, authenticated, token) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong; reload the page".into(),
            );
        }
        return match serde_urlencoded::from_bytes(body) {
            Ok(value) => Ok((value, Via::Form)),
            Err(e) => refuse(
                StatusCode::BAD_REQUEST,
                format!("the form is malformed: {e}"),
            ),
        };
    }
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !csrf_ok(app, authenticated, token) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a change made with the session cookie needs the X-CSRF-Token header".into(),
        );
    }
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    match serde_json::from_slice(body) {
        Ok(value) => Ok((value, Via::Json)),
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the JSON expected: {e}"),
        ),
    }
}

/// `GET /api/models`: every published model and where it stands for this owner.
pub(crate) async fn models(State(app): State<Arc<App>>) -> Response {
    match with_node(&app, |node| owner::model_rows(node)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/models/{id}`: the card, live status, this owner's standing and the rounds.
pub(crate) async fn model(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match with_node(&app, move |node| model_json(node, &id)).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => json_error(StatusCode::NOT_FOUND, &e),
    }
}

fn model_json(node: &mut node::Node, id: &str) -> Result<Value> {
    let model = node::find_model(&node.store, id)?;
    let card = node::card(&node.store, &model)?;
    let row = owner::model_rows(node)?
        .into_iter()
        .find(|r| r.model_id == model.id().as_str());
    let me = node.did();
    Ok(json!({
        "card": card,
        "standing": row,
        "rounds": owner::rounds(node, &model, &me)?,
    }))
}

/// A grant's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct GrantForm {
    /// The registered dataset.
    dataset: String,
    /// Last day (YYYY-MM-DD), empty for none.
    #[serde(default)]
    until: Option<String>,
    /// The owner's ε cap, empty for none.
    #[serde(default)]
    epsilon_cap: Option<String>,
}

/// An empty body.
#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

/// `POST /api/models/{id}/grant`
pub(crate) async fn grant(
    State(app): State<Arc<App>>,
    Extension(authenticated): Extension<Authenticated>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, via) = match decode::<GrantForm>(&app, authenticated, &headers, &body) {
        Ok(decoded) => decoded,
        Err(refused) => return *refused,
    };
    let model_id = id.clone();
    let result = with_node(&app, move |node| {
        let model = node::find_model(&node.store, &model_id)?;
        let terms = owner::GrantTerms {
            dataset: form.dataset.clone(),
            expires_at_ms: form
                .until
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .map(parse_until_date)
                .transpose()?,
            epsilon_cap: form
                .epsilon_cap
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| {
                    c.parse::<f64>()
                        .with_context(|| format!("the ε cap \"{c}\" is not a number"))
                })
                .transpose()?,
        };
        let event = owner::grant(node, &model, &terms)?;
        Ok(vec![event.id().to_string()])
    })
    .await;
    answer(&app, via, &id, result).await
}

/// `POST /api/models/{id}/refuse`
pub(crate) async fn refuse(
    State(app): State<Arc<App>>,
    Extension(authenticated): Extension<Authenticated>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    decide(app, authenticated, id, &headers, &body, |node, model| {
        Ok(vec![owner::refuse(node, model)?.id().to_string()])
    })
    .await
}

/// `POST /api/models/{id}/revoke`
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Extension(authenticated): Extension<Authenticated>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    decide(app, authenticated, id, &headers, &body, |node, model| {
        Ok(owner::revoke(node, model)?
            .iter()
            .map(|e| e.id().to_string())
            .collect())
    })
    .await
}

/// A decision without fields (refuse, revoke): `sign` on the model the path names.
async fn decide(
    app: Arc<App>,
    authenticated: Authenticated,
    id: String,
    headers: &HeaderMap,
    body: &Bytes,
    sign: impl FnOnce(&mut node::Node, &node::PublishedModel) -> Result<Vec<String>> + Send + 'static,
) -> Response {
    let via = match decode::<Empty>(&app, authenticated, headers, body) {
        Ok((_, via)) => via,
        Err(refused) => return *refused,
    };
    let model_id = id.clone();
    let result = with_node(&app, move |node| {
        let model = node::find_model(&node.store, &model_id)?;
        sign(node, &model)
    })
    .await;
    answer(&app, via, &id, result).await
}

/// A consent decision's answer: the signed events, or the model's page again with the error.
async fn answer(app: &Arc<App>, via: Via, id: &str, result: Result<Vec<String>>) -> Response {
    match (via, result) {
        (Via::Json, Ok(events)) => Json(json!({ "events": events })).into_response(),
        (Via::Json, Err(e)) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        (Via::Form, Ok(_)) => {
            Redirect::to(&format!("/models/{}", pages::path_segment(id))).into_response()
        }
        (Via::Form, Err(e)) => {
            let page = pages::model_page(app, id.to_string(), Some(format!("{e:#}"))).await;
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

/// `GET /api/policy`: the policy's text, if one is set.
pub(crate) async fn policy(State(app): State<Arc<App>>) -> Response {
    let text = std::fs::read_to_string(app.home.policy_path()).ok();
    Json(json!({ "policy": text })).into_response()
}

/// A policy to set.
#[derive(Debug, Deserialize)]
pub(crate) struct PolicyForm {
    /// Its TOML text.
    policy: String,
}

/// `POST /api/policy`: checks the policy as `fedpool policy set` does and keeps it.
pub(crate) async fn set_policy(
    State(app): State<Arc<App>>,
    Extension(authenticated): Extension<Authenticated>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, via) = match decode::<PolicyForm>(&app, authenticated, &headers, &body) {
        Ok(decoded) => decoded,
        Err(refused) => return *refused,
    };
    let home = app.home.clone();
    let text = form.policy.replace("\r\n", "\n");
    let kept = text.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<usize> {
        let parsed = crate::cmd_policy::check(&home, &kept, "the policy")?;
        home.save_policy(&kept)?;
        Ok(parsed.rules.len())
    })
    .await
    .context("the request's task failed")
    .and_then(|r| r);
    match (via, result) {
        (Via::Json, Ok(rules)) => Json(json!({ "rules": rules })).into_response(),
        (Via::Json, Err(e)) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        (Via::Form, Ok(_)) => Redirect::to("/policies?saved=1").into_response(),
        (Via::Form, Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::policies_page(&app, Some(text), Some(format!("{e:#}")), false),
        )
            .into_response(),
    }
}

/// `GET /api/rewards`: every payout to this owner.
pub(crate) async fn rewards(State(app): State<Arc<App>>) -> Response {
    match with_node(&app, |node| owner::earnings(node)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/rewards.csv`: the same, as CSV.
pub(crate) async fn rewards_csv(State(app): State<Arc<App>>) -> Response {
    let result = with_node(&app, |node| {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record([
            "model_id", "model", "round", "score", "amount", "currency", "event",
        ])?;
        for row in owner::earnings(node)? {
            writer.write_record([
                row.model_id,
                row.name,
                row.round
                    .map_or_else(|| "final".to_string(), |r| r.to_string()),
                row.score.to_string(),
                row.amount.to_string(),
                row.currency,
                row.event,
            ])?;
        }
        writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await;
    match result {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"rewards.csv\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/ledger`: this owner's own events.
pub(crate) async fn ledger(State(app): State<Arc<App>>) -> Response {
    let result = with_node(&app, |node| {
        let me = node.did();
        Ok(node
            .store
            .events_by_author(&me)?
            .iter()
            .map(crate::cmd_ledger::event_json)
            .collect::<Vec<_>>())
    })
    .await;
    match result {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/ledger/verify`: `fedpool ledger verify` on this node's ledger.
pub(crate) async fn verify(State(app): State<Arc<App>>) -> Response {
    let result = with_node(&app, |node| {
        Ok(node.store.verify(&fedpool_runtime::ContractReader)?)
    })
    .await;
    match result {
        Ok(report) => match serde_json::from_str::<Value>(&report.to_json()) {
            Ok(value) => Json(value).into_response(),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.into()),
        },
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/data`: registered datasets — schema, rows, fingerprint, never a row.
pub(crate) async fn data(State(app): State<Arc<App>>) -> Response {
    match app.home.datasets() {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/privacy`: ε spent per model against the owner's caps.
pub(crate) async fn privacy(State(app): State<Arc<App>>) -> Response {
    match with_node(&app, |node| owner::privacy_rows(node)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// A form's wallet address and chain id (the deployment's chain when the field is empty).
pub(crate) fn parse_wallet_fields(
    address: &str,
    chain_id: &str,
    default_chain: Option<u64>,
) -> Result<(u64, [u8; 20])> {
    let address = parse_address(address).map_err(anyhow::Error::msg)?;
    let chain_id = match chain_id.trim() {
        "" => default_chain.context(
            "say which chain: this node has no chain.json and its ledger names no chain yet",
        )?,
        text => text
            .parse::<u64>()
            .with_context(|| format!("the chain id \"{text}\" is not a whole number"))?,
    };
    Ok((chain_id, address))
}

/// A number a form sends as text and a JSON caller as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberField {
    Number(u64),
    Text(String),
}

impl NumberField {
    fn text(&self) -> String {
        match self {
            NumberField::Number(n) => n.to_string(),
            NumberField::Text(t) => t.clone(),
        }
    }
}

/// The query of `GET /api/wallet/message`.
#[derive(Debug, Deserialize)]
pub(crate) struct WalletQuery {
    address: String,
    #[serde(default)]
    chain_id: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

fn wallet_action(text: Option<&str>) -> Result<WalletAction> {
    match text.unwrap_or("link") {
        "link" => Ok(WalletAction::Link),
        "unlink" => Ok(WalletAction::Unlink),
        other => anyhow::bail!("the action \"{other}\" is neither link nor unlink"),
    }
}

/// `GET /api/wallet`: the wallets linked now, and the chain of this node's deployment.
pub(crate) async fn wallet(State(app): State<Arc<App>>) -> Response {
    let result = with_node(&app, |node| {
        let linked: Vec<Value> = owner::linked_wallets(node)?
            .iter()
            .map(
                |(chain, address)| json!({ "chain_id": chain, "address": format_address(address) }),
            )
            .collect();
        Ok(json!({
            "linked": linked,
            "chain_id": owner::settlement_chain(node)?,
        }))
    })
    .await;
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// `GET /api/wallet/message?address=…[&chain_id=…][&action=unlink]`: the text the wallet
/// signs, and the ledger seq it names.
pub(crate) async fn wallet_message(
    State(app): State<Arc<App>>,
    Query(query): Query<WalletQuery>,
) -> Response {
    let result = with_node(&app, move |node| {
        let action = wallet_action(query.action.as_deref())?;
        let (chain_id, address) = parse_wallet_fields(
            &query.address,
            query.chain_id.as_deref().unwrap_or(""),
            owner::settlement_chain(node)?,
        )?;
        owner::wallet_challenge(node, action, chain_id, &address)
    })
    .await;
    match result {
        Ok(challenge) => Json(challenge).into_response(),
        Err(e) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    }
}

/// A wallet's signed answer, posted to link or unlink it.
#[derive(Debug, Deserialize)]
pub(crate) struct WalletForm {
    address: String,
    #[serde(default)]
    chain_id: Option<NumberField>,
    signature: String,
    /// The seq the signed text named (the page sends it).
    #[serde(default)]
    seq: Option<NumberField>,
}

/// `POST /api/wallet/{link|unlink}`: signs the link on the ledger if the wallet signed this
/// node's text for it; nothing is written otherwise.
pub(crate) async fn wallet_change(
    State(app): State<Arc<App>>,
    Extension(authenticated): Extension<Authenticated>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, via) = match decode::<WalletForm>(&app, authenticated, &headers, &body) {
        Ok(decoded) => decoded,
        Err(refused) => return *refused,
    };
    let unlink = action == "unlink";
    let chain_text = form
        .chain_id
        .as_ref()
        .map(NumberField::text)
        .unwrap_or_default();
    let request = pages::WalletRequest {
        unlink,
        address: form.address.clone(),
        chain_id: chain_text.clone(),
        signature: form.signature.clone(),
    };
    let result = with_node(&app, move |node| {
        let action = wallet_action(Some(&action))?;
        let (chain_id, address) =
            parse_wallet_fields(&form.address, &chain_text, owner::settlement_chain(node)?)?;
        let signature = parse_signature(&form.signature).map_err(anyhow::Error::msg)?;
        let signed_seq = form
            .seq
            .as_ref()
            .map(|seq| {
                let text = seq.text();
                text.trim()
                    .parse::<u64>()
                    .with_context(|| format!("the seq \"{text}\" is not a whole number"))
            })
            .transpose()?;
        let proof = owner::WalletProof {
            chain_id,
            address,
            signature,
            signed_seq,
        };
        let event = owner::link_wallet(node, action, &proof, "the text this page shows")?;
        Ok((event.id().to_string(), chain_id, format_address(&address)))
    })
    .await;
    match (via, result) {
        (Via::Json, Ok((event, chain_id, address))) => Json(json!({
            "event": event,
            "chain_id": chain_id,
            "address": address,
        }))
        .into_response(),
        (Via::Json, Err(e)) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        (Via::Form, Ok(_)) => Redirect::to(if unlink {
            "/rewards/wallet?done=unlink"
        } else {
            "/rewards/wallet?done=link"
        })
        .into_response(),
        (Via::Form, Err(e)) => {
            pages::wallet_page(&app, request, Some(format!("{e:#}")), None).await
        }
    }
}

/// `GET /api/models/{id}/receipt`: this owner's consent receipt for the model, to download.
pub(crate) async fn receipt(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let result = with_node(&app, move |node| {
        let model = node::find_model(&node.store, &id)?;
        let receipt = crate::receipt::issue(node, &model, crate::home::now_ms())?;
        Ok((
            model.body.name.clone(),
            serde_json::to_string_pretty(&receipt)?,
        ))
    })
    .await;
    match result {
        Ok((name, text)) => {
            let file: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"consent-receipt-{file}.json\""),
                    ),
                ],
                text,
            )
                .into_response()
        }
        Err(e) => json_error(StatusCode::NOT_FOUND, &e),
    }
}
