//! An owner's consent policy: rules that grant or refuse a model automatically from its
//! contract, so an owner need not read every card by hand. Rules are tried in order; a rule
//! applies when every condition it states holds, and the first rule that applies decides. A
//! model no rule decides waits for its owner.
//!
//! ```toml
//! dataset = "mine"              # the registered dataset an automatic grant covers
//!
//! [[rule]]
//! name = "never-income"
//! action = "refuse"
//! reads_any_of = ["income"]
//!
//! [[rule]]
//! name = "private-research"
//! action = "grant"
//! purpose_contains = ["research"]
//! max_epsilon = 8.0
//! secure_aggregation = true
//! ```

use serde::Deserialize;

use crate::Contract;

/// An owner's rules.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The registered dataset an automatic grant consents with.
    pub dataset: Option<String>,
    /// The rules, in the order they are tried.
    #[serde(default, rename = "rule")]
    pub rules: Vec<PolicyRule>,
}

/// What a rule does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// Consent, with the policy's dataset.
    Grant,
    /// Refuse (recorded, so the owner is not asked).
    Refuse,
}

/// One rule: a name, an action, and conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Named in every decision it makes (and on the ledger).
    pub name: String,
    /// Grant or refuse.
    pub action: PolicyAction,
    /// Purpose category: some intended use contains one of these words (case-insensitive).
    #[serde(default)]
    pub purpose_contains: Vec<String>,
    /// The model lists each of these among its out-of-scope uses (case-insensitive).
    #[serde(default)]
    pub out_of_scope_includes: Vec<String>,
    /// The model's population mentions this (case-insensitive).
    pub population_contains: Option<String>,
    /// The model's privacy budget is at most this ε (a model without one fails).
    pub max_epsilon: Option<f64>,
    /// The model uses (true) or does not use (false) secure aggregation.
    pub secure_aggregation: Option<bool>,
    /// The model's reward pool is at least this (smallest units).
    pub min_reward: Option<u64>,
    /// The model's publisher is one of these DIDs.
    #[serde(default)]
    pub publishers: Vec<String>,
    /// The model reads at least one of these fields (for "never read" refusals).
    #[serde(default)]
    pub reads_any_of: Vec<String>,
}

/// Why a policy could not be read: the line and key are in the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, an unknown key or a value of the wrong type (the parser names the line,
    /// column and key).
    #[error("policy {source_name}: {message}")]
    Parse {
        /// The file.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// A rule that cannot mean anything.
    #[error("policy {source_name}, line {line}: rule {rule:?}: {key}: {problem}")]
    Invalid {
        /// The file.
        source_name: String,
        /// Line of the rule's `name`.
        line: usize,
        /// The rule's name.
        rule: String,
        /// The key at fault.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// A rule's verdict on a model.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    /// The rule.
    pub rule: String,
    /// Its action.
    pub action: PolicyAction,
    /// `Ok(reasons)` when every condition holds, `Err(the first that fails)` otherwise.
    pub outcome: Result<Vec<String>, String>,
}

/// What a policy says about a model, rule by rule, and which rule (if any) decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Every rule tried, in order, up to and including the deciding one.
    pub checks: Vec<RuleCheck>,
}

impl Explanation {
    /// The deciding rule, if one applies.
    pub fn decision(&self) -> Option<&RuleCheck> {
        self.checks.iter().find(|c| c.outcome.is_ok())
    }
}

impl Policy {
    /// Parses and checks a policy.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        for (index, rule) in policy.rules.iter().enumerate() {
            let invalid = |key: &str, problem: &str| PolicyError::Invalid {
                source_name: source_name.to_string(),
                line: rule_line(text, index),
                rule: rule.name.clone(),
                key: key.to_string(),
                problem: problem.to_string(),
            };
            if rule.name.trim().is_empty() {
                return Err(invalid("name", "must not be empty"));
            }
            if policy.rules[..index].iter().any(|r| r.name == rule.name) {
                return Err(invalid("name", "another rule has this name"));
            }
            if let Some(e) = rule.max_epsilon
                && !(e.is_finite() && e > 0.0)
            {
                return Err(invalid("max_epsilon", "must be a positive number"));
            }
            if !rule.has_a_condition() {
                return Err(invalid(
                    "action",
                    "the rule states no condition, so it would decide every model; add one",
                ));
            }
        }
        Ok(policy)
    }

    /// Tries the rules on a model published by `publisher`.
    pub fn explain(&self, contract: &Contract, publisher: &str) -> Explanation {
        let mut checks = Vec::new();
        for rule in &self.rules {
            let outcome = rule.check(contract, publisher);
            let decided = outcome.is_ok();
            checks.push(RuleCheck {
                rule: rule.name.clone(),
                action: rule.action,
                outcome,
            });
            if decided {
                break;
            }
        }
        Explanation { checks }
    }
}

impl PolicyRule {
    fn has_a_condition(&self) -> bool {
        !self.purpose_contains.is_empty()
            || !self.out_of_scope_includes.is_empty()
            || self.population_contains.is_some()
            || self.max_epsilon.is_some()
            || self.secure_aggregation.is_some()
            || self.min_reward.is_some()
            || !self.publishers.is_empty()
            || !self.reads_any_of.is_empty()
    }

    /// Every condition's reason when all hold, or the first that fails.
    fn check(&self, contract: &Contract, publisher: &str) -> Result<Vec<String>, String> {
        let mut reasons = Vec::new();
        let lower = |s: &str| s.to_lowercase();
        if !self.purpose_contains.is_empty() {
            let uses = &contract.purpose.intended_uses;
            let word = self
                .purpose_contains
                .iter()
                .find(|w| uses.iter().any(|u| lower(u).contains(&lower(w))));
            match word {
                Some(w) => reasons.push(format!("an intended use mentions {w:?}")),
                None => {
                    return Err(format!(
                        "no intended use mentions any of {:?}",
                        self.purpose_contains
                    ));
                }
            }
        }
        for phrase in &self.out_of_scope_includes {
            let listed = contract
                .purpose
                .out_of_scope_uses
                .iter()
                .any(|u| lower(u).contains(&lower(phrase)));
            if !listed {
                return Err(format!("{phrase:?} is not among its out-of-scope uses"));
            }
            reasons.push(format!("it rules out {phrase:?}"));
        }
        if let Some(phrase) = &self.population_contains {
            if !lower(&contract.purpose.population).contains(&lower(phrase)) {
                return Err(format!(
                    "its population ({:?}) does not mention {phrase:?}",
                    contract.purpose.population
                ));
            }
            reasons.push(format!("its population mentions {phrase:?}"));
        }
        if let Some(max) = self.max_epsilon {
            match contract.privacy.epsilon_budget {
                Some(e) if e <= max => reasons.push(format!("its ε budget {e} is at most {max}")),
                Some(e) => return Err(format!("its ε budget {e} is above {max}")),
                None => return Err("it has no ε budget (no differential privacy)".to_string()),
            }
        }
        if let Some(wanted) = self.secure_aggregation {
            if contract.privacy.secure_aggregation != wanted {
                return Err(format!(
                    "it {} secure aggregation",
                    if wanted { "does not use" } else { "uses" }
                ));
            }
            reasons.push(format!(
                "it {} secure aggregation",
                if wanted { "uses" } else { "does not use" }
            ));
        }
        if let Some(min) = self.min_reward {
            let pool = contract.rewards.pool;
            if pool < min {
                return Err(format!("its reward pool {pool} is below {min}"));
            }
            reasons.push(format!("its reward pool {pool} is at least {min}"));
        }
        if !self.publishers.is_empty() {
            if !self.publishers.iter().any(|p| p == publisher) {
                return Err(format!("its publisher {publisher} is not listed"));
            }
            reasons.push(format!("its publisher {publisher} is listed"));
        }
        if !self.reads_any_of.is_empty() {
            let read = contract.schema.required_columns();
            let field = self.reads_any_of.iter().find(|f| read.contains(f));
            match field {
                Some(f) => reasons.push(format!("it reads {f:?}")),
                None => {
                    return Err(format!("it reads none of {:?}", self.reads_any_of));
                }
            }
        }
        Ok(reasons)
    }
}

/// The 1-based line of the `index`-th `[[rule]]` table (the line of its header).
fn rule_line(text: &str, index: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[rule]]"))
        .nth(index)
        .map_or(0, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits() -> Contract {
        Contract::from_toml(
            include_str!("../../../contracts/digits.toml"),
            "contracts/digits.toml",
        )
        .unwrap()
    }

    fn private_digits() -> Contract {
        Contract::from_toml(
            include_str!("../../../contracts/digits_private.toml"),
            "contracts/digits_private.toml",
        )
        .unwrap()
    }

    fn one_rule(conditions: &str) -> Policy {
        Policy::from_toml(
            &format!("[[rule]]\nname = \"r\"\naction = \"grant\"\n{conditions}\n"),
            "policy.toml",
        )
        .unwrap()
    }

    fn applies(policy: &Policy, contract: &Contract) -> bool {
        policy
            .explain(contract, "did:key:zPublisher")
            .decision()
            .is_some()
    }

    #[test]
    fn each_rule_kind_decides_when_its_condition_holds_and_only_then() {
        let (plain, private) = (digits(), private_digits());
        let cases = [
            ("purpose_contains = [\"postal\"]", true),
            ("purpose_contains = [\"advertising\"]", false),
            ("out_of_scope_includes = [\"profiling\"]", true),
            ("out_of_scope_includes = [\"credit scoring\"]", false),
            ("population_contains = \"adult\"", true),
            ("population_contains = \"children\"", false),
            ("min_reward = 1000", true),
            ("min_reward = 1001", false),
            ("publishers = [\"did:key:zPublisher\"]", true),
            ("publishers = [\"did:key:zSomeoneElse\"]", false),
            ("reads_any_of = [\"p0\", \"income\"]", true),
            ("reads_any_of = [\"income\"]", false),
            ("secure_aggregation = false", true),
            ("secure_aggregation = true", false),
            ("max_epsilon = 100.0", false),
        ];
        for (condition, expected) in cases {
            assert_eq!(
                applies(&one_rule(condition), &plain),
                expected,
                "{condition}"
            );
        }
        // ε and secure aggregation, on a private contract.
        let budget = private.privacy.epsilon_budget.unwrap();
        assert!(applies(
            &one_rule(&format!("max_epsilon = {budget}")),
            &private
        ));
        assert!(!applies(
            &one_rule(&format!("max_epsilon = {}", budget / 2.0)),
            &private
        ));
        assert!(applies(&one_rule("secure_aggregation = true"), &private));
    }

    #[test]
    fn the_first_rule_that_applies_decides_and_a_model_no_rule_decides_waits() {
        let policy = Policy::from_toml(
            r#"
dataset = "mine"

[[rule]]
name = "never-ssn"
action = "refuse"
reads_any_of = ["ssn"]

[[rule]]
name = "postal"
action = "grant"
purpose_contains = ["postal"]
min_reward = 10
"#,
            "policy.toml",
        )
        .unwrap();
        let explained = policy.explain(&digits(), "did:key:z");
        let decision = explained.decision().unwrap();
        assert_eq!(
            (decision.rule.as_str(), decision.action),
            ("postal", PolicyAction::Grant)
        );
        assert_eq!(
            explained.checks[0].outcome,
            Err("it reads none of [\"ssn\"]".into())
        );
        let adult = Contract::from_toml(
            include_str!("../../../contracts/adult.toml"),
            "contracts/adult.toml",
        )
        .unwrap();
        let waits = policy.explain(&adult, "did:key:z");
        assert!(waits.decision().is_none(), "{waits:?}");
        assert_eq!(waits.checks.len(), 2, "every rule was tried");
    }

    #[test]
    fn policy_errors_name_the_line_and_key() {
        let unknown = Policy::from_toml(
            "[[rule]]\nname = \"a\"\naction = \"grant\"\nmax_epsilom = 2.0\n",
            "policy.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            unknown.contains("line 4") && unknown.contains("max_epsilom"),
            "{unknown}"
        );
        let bad_action = Policy::from_toml(
            "[[rule]]\nname = \"a\"\naction = \"maybe\"\nmin_reward = 1\n",
            "policy.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_action.contains("line 3") && bad_action.contains("grant"),
            "{bad_action}"
        );
        let no_condition = Policy::from_toml(
            "dataset = \"mine\"\n\n[[rule]]\nname = \"all\"\naction = \"grant\"\n",
            "policy.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            no_condition.contains("line 3") && no_condition.contains("no condition"),
            "{no_condition}"
        );
        let bad_epsilon = Policy::from_toml(
            "[[rule]]\nname = \"a\"\naction = \"grant\"\nmax_epsilon = -1.0\n",
            "policy.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(bad_epsilon.contains("max_epsilon"), "{bad_epsilon}");
    }
}
