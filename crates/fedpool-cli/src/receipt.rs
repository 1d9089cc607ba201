//! Consent receipts: what an owner consented to, for whom and for what, in a document they can
//! keep and show to anyone. The fields follow the Kantara Consent Receipt Specification v1.1
//! (the basis of ISO/IEC TS 27560 consent records); a `fedpool` part carries the signed ledger
//! events themselves — the owner's consent, the publisher's contract and any revocation — so a
//! receipt proves itself offline: `verify` checks the signatures, that the contract is the one
//! consented to (its terms hash to the consent's card hash), and that every field of the
//! receipt is what those events say.

use anyhow::{Context, Result, bail};
use fedpool_core::Contract;
use fedpool_ledger::{Body, Event, ModelId, content_hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::home::format_time;
use crate::node::{self, Node, PublishedModel};

/// The Kantara specification version the receipt's top-level fields follow.
const KANTARA_VERSION: &str = "KI-CR-v1.1.0";

/// A consent receipt (Kantara CR v1.1 field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentReceipt {
    /// The specification followed.
    pub version: String,
    /// The jurisdiction of the controller (contracts do not state one).
    pub jurisdiction: String,
    /// When consent was given, seconds since the Unix epoch.
    pub consent_timestamp: u64,
    /// How consent was collected: by hand, or by which rule of the owner's policy.
    pub collection_method: String,
    /// The consent event's id.
    #[serde(rename = "consentReceiptID")]
    pub consent_receipt_id: String,
    /// The key that signed the consent (the owner's DID).
    pub public_key: String,
    /// The receipt's language.
    pub language: String,
    /// The data owner (PII principal): its DID.
    pub pii_principal_id: String,
    /// The model's publisher.
    pub pii_controllers: Vec<Controller>,
    /// The controller's privacy policy: the contract itself, in `fedpool.publication_event`.
    pub policy_url: String,
    /// The model consented to, with its purposes.
    pub services: Vec<Service>,
    /// Whether sensitive personal information is processed (contracts do not say).
    pub sensitive: bool,
    /// Sensitive categories.
    pub spi_cat: Vec<String>,
    /// What only fedpool can add: the terms in full and the signed events.
    pub fedpool: FedpoolPart,
}

/// The model's publisher, as the contract names it and as the ledger identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controller {
    /// The publisher as the contract names itself.
    pub pii_controller: String,
    /// Its DID: the key that signed the contract.
    pub contact: String,
}

/// The model, with each purpose the contract states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Name and version of the model.
    pub service: String,
    /// One entry per intended use.
    pub purposes: Vec<PurposeEntry>,
}

/// One purpose of the processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurposeEntry {
    /// The intended use, in the contract's words.
    pub purpose: String,
    /// The decisions the model's outputs inform.
    pub purpose_category: Vec<String>,
    /// `EXPLICIT` (by hand) or `POLICY` (by the owner's consent policy).
    pub consent_type: String,
    /// The fields the model may read.
    pub pii_category: Vec<String>,
    /// The first purpose is the primary one.
    pub primary_purpose: bool,
    /// When the consent ends.
    pub termination: String,
    /// Whether the data itself is disclosed to anyone: never (training is federated).
    pub third_party_disclosure: bool,
}

/// The terms in full and the signed events the receipt is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedpoolPart {
    /// The ledger's network.
    pub network: String,
    /// The model id.
    pub model_id: String,
    /// The hash of the contract's terms the owner read.
    pub card_hash: String,
    /// The dataset used, by fingerprint (never the data).
    pub dataset_fingerprint: String,
    /// Uses the publisher rules out.
    pub out_of_scope_uses: Vec<String>,
    /// Whom the model is applied to.
    pub population: String,
    /// The most ε the owner accepts, if it set a cap.
    pub epsilon_cap: Option<f64>,
    /// The contract's privacy budget, if it has one.
    pub epsilon_budget: Option<f64>,
    /// Whether updates are securely aggregated.
    pub secure_aggregation: bool,
    /// When the consent expires (ms since the epoch), if it does.
    pub expires_at_ms: Option<u64>,
    /// `active`, `revoked` or `expired`, when the receipt was issued.
    pub status: String,
    /// When the owner revoked it, if it did by then.
    pub revoked_at_ms: Option<u64>,
    /// When the receipt was issued (ms since the epoch).
    pub issued_at_ms: u64,
    /// The owner's signed consent event (hex of its canonical encoding).
    pub consent_event: String,
    /// The publisher's signed publication, carrying the contract (hex).
    pub publication_event: String,
    /// The owner's signed revocation, if any (hex).
    pub revocation_event: Option<String>,
}

/// The receipt for this owner's latest consent to `model`, as its ledger stands now.
pub fn issue(node: &Node, model: &PublishedModel, now_ms: u64) -> Result<ConsentReceipt> {
    let me = node.did();
    let consent = node::consents(&node.store, Some(&me), Some(model.id()), now_ms)?
        .into_iter()
        .max_by_key(|c| c.event.timestamp_ms())
        .with_context(|| format!("you have not consented to {}", model.body.name))?;
    let revocation =
        node.store.events_by_author(&me)?.into_iter().find(
            |e| matches!(e.body(), Body::ConsentRevoked(r) if r.consent == consent.event.id()),
        );
    build(&consent.event, &model.event, revocation.as_ref(), now_ms)
}

/// The receipt these signed events make, as of `issued_at_ms`.
fn build(
    consent: &Event,
    publication: &Event,
    revocation: Option<&Event>,
    issued_at_ms: u64,
) -> Result<ConsentReceipt> {
    let Body::ConsentGranted(granted) = consent.body() else {
        bail!("the consent event is a {}, not a consent", consent.kind());
    };
    let Body::ModelPublished(published) = publication.body() else {
        bail!(
            "the publication event is a {}, not a publication",
            publication.kind()
        );
    };
    let contract = Contract::from_toml(&published.contract_toml, "the receipt's contract")?;
    let (consent_type, collection_method) = match &granted.decided_by {
        None => (
            "EXPLICIT",
            "granted by the owner on its node, signed with its key".to_string(),
        ),
        Some(rule) => (
            "POLICY",
            format!(
                "granted by rule \"{}\" of the owner's consent policy (policy {}), signed with its key",
                rule.rule, rule.policy_hash
            ),
        ),
    };
    let termination = match granted.expires_at_ms {
        Some(at) => format!(
            "after {} UTC, or when the owner revokes it, whichever is first",
            format_time(at.saturating_sub(1))
        ),
        None => "when the owner revokes it".to_string(),
    };
    let revoked_at_ms = revocation.map(Event::timestamp_ms);
    let status = if revoked_at_ms.is_some() {
        "revoked"
    } else if granted.expires_at_ms.is_some_and(|at| at <= issued_at_ms) {
        "expired"
    } else {
        "active"
    };
    let purposes = contract
        .purpose
        .intended_uses
        .iter()
        .enumerate()
        .map(|(i, purpose)| PurposeEntry {
            purpose: purpose.clone(),
            purpose_category: contract.purpose.decisions_informed.clone(),
            consent_type: consent_type.into(),
            pii_category: granted.fields.clone(),
            primary_purpose: i == 0,
            termination: termination.clone(),
            third_party_disclosure: false,
        })
        .collect();
    Ok(ConsentReceipt {
        version: KANTARA_VERSION.into(),
        jurisdiction: "not stated by the contract".into(),
        consent_timestamp: consent.timestamp_ms() / 1000,
        collection_method,
        consent_receipt_id: consent.id().to_string(),
        public_key: consent.author().to_string(),
        language: "en".into(),
        pii_principal_id: consent.author().to_string(),
        pii_controllers: vec![Controller {
            pii_controller: contract.model_info.publisher.clone(),
            contact: publication.author().to_string(),
        }],
        policy_url: format!("fedpool:{}/{}", publication.network(), published.model_id),
        services: vec![Service {
            service: format!("{} {}", published.name, published.version),
            purposes,
        }],
        sensitive: false,
        spi_cat: Vec::new(),
        fedpool: FedpoolPart {
            network: consent.network().to_string(),
            model_id: granted.model_id.to_string(),
            card_hash: granted.card_hash.clone(),
            dataset_fingerprint: granted.dataset_fingerprint.clone(),
            out_of_scope_uses: contract.purpose.out_of_scope_uses.clone(),
            population: contract.purpose.population.clone(),
            epsilon_cap: granted.epsilon_cap,
            epsilon_budget: contract.privacy.epsilon_budget,
            secure_aggregation: contract.privacy.secure_aggregation,
            expires_at_ms: granted.expires_at_ms,
            status: status.into(),
            revoked_at_ms,
            issued_at_ms,
            consent_event: fedpool_ledger::wallet::hex(&consent.encode()),
            publication_event: fedpool_ledger::wallet::hex(&publication.encode()),
            revocation_event: revocation.map(|e| fedpool_ledger::wallet::hex(&e.encode())),
        },
    })
}

/// Checks a receipt against the signed events it carries: every signature, that the consent
/// names the contract's publisher and model and the hash of exactly its terms, that a
/// revocation withdraws this consent, and that every field is what the events give. Errors
/// name the field that does not match.
pub fn verify(text: &str) -> Result<ConsentReceipt> {
    let receipt: ConsentReceipt =
        serde_json::from_str(text).context("this is not a fedpool consent receipt")?;
    let consent = signed_event(&receipt.fedpool.consent_event, "fedpool.consent_event")?;
    let publication = signed_event(
        &receipt.fedpool.publication_event,
        "fedpool.publication_event",
    )?;
    let revocation = receipt
        .fedpool
        .revocation_event
        .as_deref()
        .map(|hex| signed_event(hex, "fedpool.revocation_event"))
        .transpose()?;
    let (Body::ConsentGranted(granted), Body::ModelPublished(published)) =
        (consent.body(), publication.body())
    else {
        bail!(
            "fedpool.consent_event must be a consent and fedpool.publication_event a publication"
        );
    };
    if ModelId::for_publication(&publication.author(), &published.contract_toml)
        != published.model_id
    {
        bail!("the publication's model id is not the hash of its publisher and contract");
    }
    if granted.model_id != published.model_id || granted.publisher != publication.author() {
        bail!(
            "the consent is for model {} by {}, not the receipt's contract (model {} by {})",
            granted.model_id,
            granted.publisher,
            published.model_id,
            publication.author()
        );
    }
    let contract = Contract::from_toml(&published.contract_toml, "the receipt's contract")?;
    let terms_hash = content_hash(contract.canonical_terms().as_bytes());
    if terms_hash != granted.card_hash {
        bail!(
            "the contract's terms hash to {terms_hash}, but the owner consented to terms hashing to {}: this is not the contract consented to",
            granted.card_hash
        );
    }
    if let Some(revocation) = &revocation {
        match revocation.body() {
            Body::ConsentRevoked(r)
                if r.consent == consent.id() && revocation.author() == consent.author() => {}
            _ => bail!("fedpool.revocation_event does not withdraw this consent by its owner"),
        }
    }
    let expected = build(
        &consent,
        &publication,
        revocation.as_ref(),
        receipt.fedpool.issued_at_ms,
    )?;
    let (given, wanted) = (
        serde_json::to_value(&receipt)?,
        serde_json::to_value(&expected)?,
    );
    if let Some((path, given, wanted)) = first_difference(&given, &wanted, String::new()) {
        bail!("the receipt says {path} = {given}, but its signed events give {wanted}");
    }
    Ok(receipt)
}

/// Decodes a hex-encoded event and checks its signature.
fn signed_event(hex: &str, field: &str) -> Result<Event> {
    let bytes = fedpool_ledger::wallet::parse_hex(hex)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{field} is not hex"))?;
    let event = Event::decode(&bytes).with_context(|| format!("{field} is not an event"))?;
    event
        .verify_signature()
        .with_context(|| format!("{field}: the signature does not verify"))?;
    Ok(event)
}

/// The first JSON path where `given` and `wanted` differ, with both values there.
fn first_difference(given: &Value, wanted: &Value, path: String) -> Option<(String, Value, Value)> {
    match (given, wanted) {
        (Value::Object(a), Value::Object(b)) => b.iter().find_map(|(key, wanted)| {
            let given = a.get(key).unwrap_or(&Value::Null);
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            first_difference(given, wanted, path)
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (given, wanted))| {
                first_difference(given, wanted, format!("{path}[{i}]"))
            }),
        _ if given == wanted => None,
        _ => Some((path, given.clone(), wanted.clone())),
    }
}
