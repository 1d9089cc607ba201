//! An owner's answer to a model, and the ledger event that records it. The same decision runs
//! in `fedpool policy apply`, in a node when a publication arrives, and for every simulated
//! owner, so what the demo shows is what a node does.

use fedpool_core::Contract;
use fedpool_core::policy::{Policy, PolicyAction, PolicyError};
use fedpool_ledger::{ConsentGranted, ConsentRefused, Did, ModelId, PolicyDecision, content_hash};

/// An owner's consent policy with the hash of its text (which its decisions name).
#[derive(Debug, Clone)]
pub struct OwnerPolicy {
    /// The rules.
    pub policy: Policy,
    /// Content hash of the policy file's text.
    pub policy_hash: String,
}

impl OwnerPolicy {
    /// Parses a policy file; errors name `source_name`, the line and the key.
    pub fn from_toml(text: &str, source_name: &str) -> Result<OwnerPolicy, PolicyError> {
        Ok(OwnerPolicy {
            policy: Policy::from_toml(text, source_name)?,
            policy_hash: content_hash(text.as_bytes()),
        })
    }

    /// What the policy decides for `contract` published by `publisher`, with the reasons of
    /// the rule that decides.
    pub fn decide(&self, contract: &Contract, publisher: &Did) -> OwnerChoice {
        let explained = self.policy.explain(contract, &publisher.to_string());
        let Some(check) = explained.decision() else {
            return OwnerChoice::Waits;
        };
        let decided_by = Some(PolicyDecision {
            rule: check.rule.clone(),
            policy_hash: self.policy_hash.clone(),
        });
        let reasons = check.outcome.clone().unwrap_or_default();
        match check.action {
            PolicyAction::Grant => OwnerChoice::Grant {
                decided_by,
                reasons,
            },
            PolicyAction::Refuse => OwnerChoice::Refuse {
                decided_by,
                reasons,
            },
        }
    }
}

/// How an owner answered a model.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerChoice {
    /// Consented; `decided_by` names the policy rule (`None`: the owner, by hand).
    Grant {
        /// The rule that granted.
        decided_by: Option<PolicyDecision>,
        /// Why the rule applied, one reason per condition.
        reasons: Vec<String>,
    },
    /// Declined; `decided_by` names the policy rule (`None`: the owner, by hand).
    Refuse {
        /// The rule that refused.
        decided_by: Option<PolicyDecision>,
        /// Why the rule applied, one reason per condition.
        reasons: Vec<String>,
    },
    /// Nothing decided: the model waits for its owner, and nothing is on the ledger.
    Waits,
}

impl OwnerChoice {
    /// A grant by hand.
    pub fn granted_by_hand() -> OwnerChoice {
        OwnerChoice::Grant {
            decided_by: None,
            reasons: Vec::new(),
        }
    }

    /// Whether the owner consents.
    pub fn consents(&self) -> bool {
        matches!(self, OwnerChoice::Grant { .. })
    }

    /// The policy rule that decided, if one did.
    pub fn rule(&self) -> Option<&str> {
        match self {
            OwnerChoice::Grant { decided_by, .. } | OwnerChoice::Refuse { decided_by, .. } => {
                decided_by.as_ref().map(|d| d.rule.as_str())
            }
            OwnerChoice::Waits => None,
        }
    }

    /// Why, in one line: the rule and its reasons, or that the owner decided.
    pub fn describe(&self) -> String {
        match self {
            OwnerChoice::Grant {
                decided_by,
                reasons,
            }
            | OwnerChoice::Refuse {
                decided_by,
                reasons,
            } => {
                let verb = if self.consents() {
                    "granted"
                } else {
                    "refused"
                };
                match decided_by {
                    Some(d) => format!("{verb} by rule {:?}: {}", d.rule, reasons.join("; ")),
                    None => format!("{verb} by its owner"),
                }
            }
            OwnerChoice::Waits => "no rule decides; waits for its owner".to_string(),
        }
    }
}

/// What an owner's choice puts on the ledger for one model, given what a grant names.
pub struct ConsentTerms {
    /// The model.
    pub model_id: ModelId,
    /// Its publisher, as the card names it.
    pub publisher: Did,
    /// The card hash the owner (or its policy) read.
    pub card_hash: String,
    /// The dataset a grant covers.
    pub dataset_fingerprint: String,
    /// Fields a grant lets the model read.
    pub fields: Vec<String>,
    /// A grant's expiry.
    pub expires_at_ms: Option<u64>,
    /// A grant's ε cap.
    pub epsilon_cap: Option<f64>,
}

/// The event recording `choice` (`None` for [`OwnerChoice::Waits`]).
pub fn decision_event(choice: &OwnerChoice, terms: ConsentTerms) -> Option<fedpool_ledger::Body> {
    match choice {
        OwnerChoice::Grant { decided_by, .. } => Some(
            ConsentGranted {
                model_id: terms.model_id,
                publisher: terms.publisher,
                card_hash: terms.card_hash,
                dataset_fingerprint: terms.dataset_fingerprint,
                fields: terms.fields,
                expires_at_ms: terms.expires_at_ms,
                epsilon_cap: terms.epsilon_cap,
                decided_by: decided_by.clone(),
            }
            .into(),
        ),
        OwnerChoice::Refuse { decided_by, .. } => Some(
            ConsentRefused {
                model_id: terms.model_id,
                publisher: terms.publisher,
                card_hash: terms.card_hash,
                decided_by: decided_by.clone(),
            }
            .into(),
        ),
        OwnerChoice::Waits => None,
    }
}
