//! Model contracts: what a publisher asks of data owners, in TOML.
//!
//! A contract states what the model is for and on whom it will be used, the data schema it
//! needs, the model and how it is trained, and the privacy and reward terms. Data owners consent
//! to a contract (through its transparency card), so parsing is strict: unknown keys are errors,
//! and every value is range-checked with the key named in the message.

use fedpool_data::{ColumnKind, LabelKind, Schema, StatisticsLayout};
use fedpool_strategy::{ClientSampling, StrategyConfig};
use serde::{Deserialize, Serialize};

use crate::model::ModelSpec;
use crate::train::{LocalTraining, Optimizer};

/// A parsed and validated model contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// Identity of the model.
    pub model_info: ModelInfo,
    /// Intended and excluded uses, population and decisions.
    pub purpose: Purpose,
    /// Columns the model reads.
    pub schema: Schema,
    /// What is predicted.
    pub task: Task,
    /// Architecture.
    pub model: ModelSpec,
    /// Federated training plan.
    pub training: Training,
    /// Privacy terms.
    pub privacy: Privacy,
    /// Reward terms.
    pub rewards: Rewards,
}

/// Name, version and publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Short model name.
    pub name: String,
    /// Contract version (semantic version recommended).
    pub version: String,
    /// Who publishes and is accountable for the model.
    pub publisher: String,
    /// One-paragraph description.
    #[serde(default)]
    pub description: String,
}

/// What the model is for, and what it must not be used for (Mitchell et al., "Model Cards").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    /// Uses the publisher commits to.
    pub intended_uses: Vec<String>,
    /// Uses the publisher rules out.
    pub out_of_scope_uses: Vec<String>,
    /// The people or things the model will be applied to.
    pub population: String,
    /// Decisions the model's outputs inform.
    pub decisions_informed: Vec<String>,
}

/// The prediction task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    /// Predict one of the label's classes.
    Classification,
    /// Predict a real number.
    Regression,
}

/// The federated training plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Number of rounds.
    pub rounds: usize,
    /// Which clients take part in each round.
    pub sampling: ClientSampling,
    /// Aggregation strategy and its hyperparameters.
    #[serde(default = "default_strategy")]
    pub strategy: StrategyConfig,
    /// Local training on each node.
    pub local: LocalTraining,
    /// Share of each simulated node's rows held out for evaluation in simulation, and of the
    /// pooled data for the publisher's test set.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

fn default_strategy() -> StrategyConfig {
    StrategyConfig::FedAvg
}

fn default_test_fraction() -> f64 {
    0.2
}

/// Client-level differential privacy and secure aggregation terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// L2 norm every client update is clipped to; 0 disables clipping (and then DP).
    #[serde(default)]
    pub clip_norm: f64,
    /// Gaussian noise standard deviation as a multiple of `clip_norm`; 0 disables noise.
    #[serde(default)]
    pub noise_multiplier: f64,
    /// Total (ε, δ) budget the publisher may spend on this model.
    pub epsilon_budget: Option<f64>,
    /// δ of the budget.
    pub delta: Option<f64>,
    /// Whether updates are securely aggregated (the publisher sees only their sum).
    #[serde(default)]
    pub secure_aggregation: bool,
    /// Share of a round's participants whose shares are needed to unmask the sum.
    #[serde(default = "default_threshold")]
    pub secure_aggregation_threshold: f64,
    /// Secure aggregation per random group of at least this many members instead of one sum
    /// per round, so that contributions can be valued from the groups' sums; each group's sum
    /// carries the contract's full noise. Absent: one sum per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation_group_size: Option<usize>,
    /// Adapt the clip norm each round towards a quantile of the update norms, starting from
    /// `clip_norm` (Andrew et al. 2021).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_clipping: Option<AdaptiveClipping>,
}

/// Adaptive clipping to a quantile of the update norms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveClipping {
    /// Share of updates that should fall within the clip norm, in (0, 1).
    #[serde(default = "default_target_quantile")]
    pub target_quantile: f64,
    /// Geometric learning rate of the clip norm, > 0.
    #[serde(default = "default_clip_learning_rate")]
    pub learning_rate: f64,
}

fn default_target_quantile() -> f64 {
    0.5
}

fn default_clip_learning_rate() -> f64 {
    0.2
}

/// The smallest group a contract may aggregate securely on its own: a sum of two would tell
/// each member the other's update.
pub const MIN_SECURE_GROUP: usize = 3;

fn default_threshold() -> f64 {
    2.0 / 3.0
}

/// How contributors are paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewards {
    /// Total paid out over the whole training run, in the currency's smallest unit (an
    /// integer: money never passes through floating point).
    pub pool: u64,
    /// Unit of the pool.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// How each participant's contribution is measured.
    pub valuation: Valuation,
    /// How measured contributions become payouts.
    pub split: SplitRule,
    /// Every participant with a positive contribution to a round gets at least this much of
    /// the round's share (when the share allows it for all of them).
    #[serde(default)]
    pub floor: u64,
    /// No participant gets more than this of a round's share; what the cap holds back goes to
    /// the others, or carries over.
    #[serde(default)]
    pub cap: Option<u64>,
}

fn default_currency() -> String {
    "credits".into()
}

/// Contribution measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Valuation {
    /// Shapley values over a round's participants (exact when small, sampled when large).
    Shapley,
    /// Drop in validation metric when a participant is left out.
    LeaveOneOut,
    /// Number of training rows contributed.
    DataSize,
}

/// Payout rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// Pay each round's share in proportion to positive contributions.
    Proportional,
    /// Pay every participant of a round the same.
    Equal,
}

/// Why a contract was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// Not valid TOML, a missing or unknown key, or a value of the wrong type. The message comes
    /// from the TOML parser and names the line, the key and, for enums, the allowed values.
    #[error("contract {source_name}: {message}")]
    Parse {
        /// File the contract came from.
        source_name: String,
        /// The parser's description, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("contract {source_name}: {key}: {problem}")]
    Invalid {
        /// File the contract came from.
        source_name: String,
        /// Dotted key path, e.g. `training.rounds`.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

impl Contract {
    /// Parses and validates a contract from TOML text. `source_name` (a file name) appears in
    /// every error.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Contract, ContractError> {
        let contract: Contract = toml::from_str(text).map_err(|e| ContractError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        reject_unknown_keys(text, &contract, source_name)?;
        contract.validate(source_name)?;
        Ok(contract)
    }

    /// Renders the contract back to TOML (what `publish` signs).
    pub fn to_toml(&self) -> String {
        // A Contract always serializes: every field is a TOML-representable value.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks ranges and cross-field consistency; reports the first problem with its key.
    pub fn validate(&self, source_name: &str) -> Result<(), ContractError> {
        let invalid = |key: &str, problem: String| ContractError::Invalid {
            source_name: source_name.to_string(),
            key: key.to_string(),
            problem,
        };
        let nonempty = |key: &str, value: &str| {
            if value.trim().is_empty() {
                Err(invalid(key, "must not be empty".into()))
            } else {
                Ok(())
            }
        };
        nonempty("model_info.name", &self.model_info.name)?;
        nonempty("model_info.version", &self.model_info.version)?;
        nonempty("model_info.publisher", &self.model_info.publisher)?;
        nonempty("purpose.population", &self.purpose.population)?;
        if self.purpose.intended_uses.is_empty() {
            return Err(invalid(
                "purpose.intended_uses",
                "list at least one intended use".into(),
            ));
        }

        let features = self.schema.feature_columns();
        if features.is_empty() {
            return Err(invalid(
                "schema",
                "declare at least one feature in schema.columns or schema.column_ranges".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.schema.required_columns() {
            if !seen.insert(name.clone()) {
                return Err(invalid(
                    "schema",
                    format!("column \"{name}\" is declared twice"),
                ));
            }
        }
        for (idx, column) in self.schema.columns.iter().enumerate() {
            if let ColumnKind::Categorical { categories } = &column.kind
                && categories.is_empty()
            {
                return Err(invalid(
                    &format!("schema.columns[{idx}].categories"),
                    format!("column \"{}\" lists no categories", column.name),
                ));
            }
        }
        for (idx, range) in self.schema.column_ranges.iter().enumerate() {
            if range.count == 0 {
                return Err(invalid(
                    &format!("schema.column_ranges[{idx}].count"),
                    "must be at least 1".into(),
                ));
            }
        }
        // The rest of the schema's own rules (duplicate classes or categories, ranges and
        // bounds with min < max), so a bad contract fails when published, not at first load.
        if let Err(fedpool_data::DataError::InvalidSchema { reason }) = self.schema.validate() {
            return Err(invalid("schema", reason));
        }
        match (&self.task, &self.schema.label.kind) {
            (Task::Classification, LabelKind::Categorical { classes }) => {
                if classes.len() < 2 {
                    return Err(invalid(
                        "schema.label.classes",
                        format!(
                            "a classifier needs at least 2 classes, found {}",
                            classes.len()
                        ),
                    ));
                }
            }
            (Task::Regression, LabelKind::Numeric) => {}
            (Task::Classification, LabelKind::Numeric) => {
                return Err(invalid(
                    "schema.label.type",
                    "task.kind = \"classification\" needs type = \"categorical\" with classes"
                        .into(),
                ));
            }
            (Task::Regression, LabelKind::Categorical { .. }) => {
                return Err(invalid(
                    "schema.label.type",
                    "task.kind = \"regression\" needs type = \"numeric\"".into(),
                ));
            }
        }
        match (&self.task, &self.model) {
            (Task::Regression, ModelSpec::LogisticRegression | ModelSpec::Cnn { .. }) => {
                return Err(invalid(
                    "model.kind",
                    "a regression task allows \"linear_regression\" or \"mlp\"".into(),
                ));
            }
            (Task::Classification, ModelSpec::LinearRegression) => {
                return Err(invalid(
                    "model.kind",
                    "a classification task allows \"logistic_regression\", \"mlp\" or \"cnn\""
                        .into(),
                ));
            }
            _ => {}
        }
        if let ModelSpec::Mlp { hidden } = &self.model
            && (hidden.is_empty() || hidden.contains(&0))
        {
            return Err(invalid(
                "model.hidden",
                "list one or more hidden-layer widths, each at least 1".into(),
            ));
        }
        if let ModelSpec::Cnn { channels } = &self.model {
            let side = (self.schema.n_features() as f64).sqrt() as usize;
            if side * side != self.schema.n_features()
                || !side.is_multiple_of(4)
                || channels.contains(&0)
            {
                return Err(invalid(
                    "model.kind",
                    format!(
                        "\"cnn\" needs a square image whose side is a multiple of 4 and channels ≥ 1; the schema has {} features",
                        self.schema.n_features()
                    ),
                ));
            }
        }

        let t = &self.training;
        if t.rounds == 0 {
            return Err(invalid("training.rounds", "must be at least 1".into()));
        }
        t.sampling
            .validate()
            .map_err(|e| invalid("training.sampling", e.to_string()))?;
        t.strategy
            .validate()
            .map_err(|e| invalid("training.strategy", e.to_string()))?;
        if t.local.local_epochs == 0 {
            return Err(invalid(
                "training.local.local_epochs",
                "must be at least 1".into(),
            ));
        }
        if t.local.batch_size == 0 {
            return Err(invalid(
                "training.local.batch_size",
                "must be at least 1".into(),
            ));
        }
        if !(t.local.learning_rate > 0.0 && t.local.learning_rate.is_finite()) {
            return Err(invalid(
                "training.local.learning_rate",
                format!("must be a positive number, got {}", t.local.learning_rate),
            ));
        }
        if !(t.local.proximal_mu >= 0.0 && t.local.weight_decay >= 0.0) {
            return Err(invalid(
                "training.local",
                "proximal_mu and weight_decay must be ≥ 0".into(),
            ));
        }
        match t.local.optimizer {
            Optimizer::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                return Err(invalid(
                    "training.local.optimizer.momentum",
                    format!("must be in [0, 1), got {momentum}"),
                ));
            }
            Optimizer::Adam { beta1, beta2, eps }
                if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0) =>
            {
                return Err(invalid(
                    "training.local.optimizer",
                    "Adam needs beta1, beta2 in [0, 1) and eps > 0".into(),
                ));
            }
            _ => {}
        }
        if !(t.test_fraction > 0.0 && t.test_fraction < 1.0) {
            return Err(invalid(
                "training.test_fraction",
                format!("must be in (0, 1), got {}", t.test_fraction),
            ));
        }

        let p = &self.privacy;
        if !(p.clip_norm >= 0.0 && p.clip_norm.is_finite()) {
            return Err(invalid(
                "privacy.clip_norm",
                format!("must be ≥ 0 (0 = no clipping), got {}", p.clip_norm),
            ));
        }
        if !(p.noise_multiplier >= 0.0 && p.noise_multiplier.is_finite()) {
            return Err(invalid(
                "privacy.noise_multiplier",
                format!("must be ≥ 0, got {}", p.noise_multiplier),
            ));
        }
        if p.noise_multiplier > 0.0 && p.clip_norm == 0.0 {
            return Err(invalid(
                "privacy.clip_norm",
                "noise needs a clip norm > 0: without clipping an update's sensitivity is unbounded"
                    .into(),
            ));
        }
        if let Some(eps) = p.epsilon_budget {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(invalid(
                    "privacy.epsilon_budget",
                    format!("must be a positive number, got {eps}"),
                ));
            }
            if p.noise_multiplier == 0.0 {
                return Err(invalid(
                    "privacy.epsilon_budget",
                    "a finite budget needs noise_multiplier > 0".into(),
                ));
            }
        }
        match (p.epsilon_budget, p.delta) {
            (Some(_), None) => {
                return Err(invalid(
                    "privacy.delta",
                    "required when epsilon_budget is set".into(),
                ));
            }
            (_, Some(delta)) if !(delta > 0.0 && delta < 1.0) => {
                return Err(invalid(
                    "privacy.delta",
                    format!("must be in (0, 1), got {delta}"),
                ));
            }
            _ => {}
        }
        if let Some(adaptive) = p.adaptive_clipping {
            if p.clip_norm == 0.0 {
                return Err(invalid(
                    "privacy.clip_norm",
                    "adaptive clipping starts from clip_norm; it must be > 0".into(),
                ));
            }
            if !(adaptive.target_quantile > 0.0 && adaptive.target_quantile < 1.0) {
                return Err(invalid(
                    "privacy.adaptive_clipping.target_quantile",
                    format!("must be in (0, 1), got {}", adaptive.target_quantile),
                ));
            }
            if !(adaptive.learning_rate > 0.0 && adaptive.learning_rate.is_finite()) {
                return Err(invalid(
                    "privacy.adaptive_clipping.learning_rate",
                    format!("must be > 0, got {}", adaptive.learning_rate),
                ));
            }
        }
        if p.secure_aggregation && p.clip_norm == 0.0 {
            return Err(invalid(
                "privacy.clip_norm",
                "secure aggregation needs a clip norm > 0: it bounds the range updates are encoded in"
                    .into(),
            ));
        }
        let private = p.clip_norm > 0.0 || p.noise_multiplier > 0.0 || p.secure_aggregation;
        if private && !t.strategy.works_on_the_mean() {
            return Err(invalid(
                "training.strategy",
                format!(
                    "{} needs every update, but with clipping, noise or secure aggregation the publisher only has their mean; use fedavg, fedavgm, fedprox, fedadam, fedyogi or fedadagrad",
                    t.strategy.name()
                ),
            ));
        }
        if !(p.secure_aggregation_threshold > 0.0 && p.secure_aggregation_threshold <= 1.0) {
            return Err(invalid(
                "privacy.secure_aggregation_threshold",
                format!("must be in (0, 1], got {}", p.secure_aggregation_threshold),
            ));
        }
        if let Some(group_size) = p.secure_aggregation_group_size {
            if !p.secure_aggregation {
                return Err(invalid(
                    "privacy.secure_aggregation_group_size",
                    "groups are for secure aggregation; set secure_aggregation = true or remove the key"
                        .into(),
                ));
            }
            if group_size < MIN_SECURE_GROUP {
                return Err(invalid(
                    "privacy.secure_aggregation_group_size",
                    format!(
                        "must be at least {MIN_SECURE_GROUP}, got {group_size}: a smaller group's sum all but names its members"
                    ),
                ));
            }
        }
        if private && let Some(layout) = StatisticsLayout::of(&self.schema) {
            let unbounded = layout.unbounded_columns();
            if let Some(first) = unbounded.first() {
                return Err(invalid(
                    "schema",
                    format!(
                        "column \"{first}\"{} {} standardised with federated statistics, which this contract clips, noises or securely aggregates like an update: give each public bounds (scaling = {{ method = \"standardize\", bounds = [min, max] }}) so one node's contribution is bounded, or set local_standardize = true to keep every statistic on its node",
                        if unbounded.len() > 1 {
                            format!(" (and {} more)", unbounded.len() - 1)
                        } else {
                            String::new()
                        },
                        if unbounded.len() > 1 { "are" } else { "is" },
                    ),
                ));
            }
        }

        let r = &self.rewards;
        if let Some(cap) = r.cap
            && cap < r.floor
        {
            return Err(invalid(
                "rewards.cap",
                format!("is below the floor ({cap} < {})", r.floor),
            ));
        }
        Ok(())
    }

    /// The contract's structured terms in canonical form: compact JSON of the parsed contract,
    /// fields in declaration order. Consent names its hash (the card hash), so how a card
    /// renders the terms in words — or how the TOML was formatted — never changes what an
    /// owner consented to.
    pub fn canonical_terms(&self) -> String {
        // Plain structs, enums and finite floats: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Number of model inputs the schema encodes to.
    pub fn n_features(&self) -> usize {
        self.schema.n_features()
    }
}

/// The keys naming an internally tagged variant. serde's `deny_unknown_fields` does not reach
/// the variants of internally tagged enums that hold no fields, so `[task] kind =
/// "classification"` next to a stray `epochs = 5` parsed silently; every key written must be
/// one the parsed contract has.
const TAG_KEYS: [&str; 3] = ["kind", "type", "method"];

fn reject_unknown_keys(
    text: &str,
    contract: &Contract,
    source_name: &str,
) -> Result<(), ContractError> {
    let (Ok(written), Ok(parsed)) = (
        toml::from_str::<toml::Value>(text),
        toml::Value::try_from(contract),
    ) else {
        return Ok(());
    };
    let mut unknown = Vec::new();
    collect_unknown_keys(&written, &parsed, "", &mut unknown);
    match unknown.first() {
        None => Ok(()),
        Some((key, allowed)) => Err(ContractError::Invalid {
            source_name: source_name.to_string(),
            key: key.clone(),
            problem: format!("unknown key; this table takes only {allowed}"),
        }),
    }
}

fn collect_unknown_keys(
    written: &toml::Value,
    parsed: &toml::Value,
    path: &str,
    unknown: &mut Vec<(String, String)>,
) {
    match (written, parsed) {
        (toml::Value::Table(written), toml::Value::Table(parsed)) => {
            let named_variant = path == "training.strategy" || path == "training.local.optimizer";
            let tagged = named_variant
                || TAG_KEYS
                    .iter()
                    .any(|tag| written.contains_key(*tag) && parsed.contains_key(*tag));
            for (key, value) in written {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match parsed.get(key) {
                    Some(parsed_value) => {
                        collect_unknown_keys(value, parsed_value, &child, unknown)
                    }
                    None if tagged => {
                        let allowed: Vec<String> =
                            parsed.keys().map(|k| format!("`{k}`")).collect();
                        unknown.push((child, allowed.join(", ")));
                    }
                    None => {}
                }
            }
        }
        (toml::Value::Array(written), toml::Value::Array(parsed))
            if written.len() == parsed.len() =>
        {
            for (i, (w, p)) in written.iter().zip(parsed).enumerate() {
                collect_unknown_keys(w, p, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &str = include_str!("../../../contracts/digits.toml");

    #[test]
    fn a_stray_key_in_any_tagged_table_is_refused_with_its_path() {
        // (what the contract says, what a careless edit made of it, the key to be named)
        let cases = [
            (
                "kind = \"classification\"",
                "kind = \"classification\"\nepochs = 5",
                "task.epochs",
            ),
            (
                "kind = \"logistic_regression\"",
                "kind = \"logistic_regression\"\nhidden = [5]",
                "model.hidden",
            ),
            (
                "optimizer = { name = \"sgd\", momentum = 0.9 }",
                "optimizer = { name = \"sgd\", momentum = 0.9, beta1 = 0.5 }",
                "beta1",
            ),
            (
                "strategy = { name = \"fedavg\" }",
                "strategy = { name = \"fedavg\", mu = 0.1 }",
                "mu",
            ),
            (
                "scaling = { method = \"range\", min = 0, max = 16 }",
                "scaling = { method = \"range\", min = 0, max = 16, clip = true }",
                "clip",
            ),
        ];
        for (anchor, edited, key) in cases {
            assert!(DIGITS.contains(anchor), "{anchor}");
            let text = DIGITS.replacen(anchor, edited, 1);
            // Variants with fields were already refused by serde (a parse error naming the
            // field); those without are refused by the key check.
            match Contract::from_toml(&text, "digits.toml") {
                Err(ContractError::Invalid {
                    key: got, problem, ..
                }) => {
                    assert_eq!(got, key, "{problem}");
                    assert!(problem.contains("unknown key"), "{problem}");
                }
                Err(ContractError::Parse { message, .. }) => {
                    assert!(
                        message.contains(&format!("unknown field `{key}`"))
                            || message.contains(&format!("unknown parameter \"{key}\"")),
                        "{message}"
                    );
                }
                Ok(_) => panic!("{key}: a stray key was accepted"),
            }
        }
    }

    #[test]
    fn a_group_size_needs_secure_aggregation_and_at_least_three_members() {
        let with = |privacy: &str| {
            let text = DIGITS.replace(
                "secure_aggregation = false",
                &format!("secure_aggregation = {privacy}"),
            );
            Contract::from_toml(&text, "digits.toml")
        };
        let refused = |result: Result<Contract, ContractError>| match result {
            Err(ContractError::Invalid { key, problem, .. }) => format!("{key}: {problem}"),
            other => panic!("accepted: {other:?}"),
        };
        let problem = refused(with("false\nsecure_aggregation_group_size = 4"));
        assert!(
            problem.starts_with("privacy.secure_aggregation_group_size")
                && problem.contains("secure_aggregation = true"),
            "{problem}"
        );
        let clipped = |rest: &str| {
            let text = DIGITS
                .replace("clip_norm = 0.0", "clip_norm = 1.0")
                .replace(
                    "secure_aggregation = false",
                    &format!("secure_aggregation = true\n{rest}"),
                );
            Contract::from_toml(&text, "digits.toml")
        };
        let problem = refused(clipped("secure_aggregation_group_size = 2"));
        assert!(problem.contains("at least 3, got 2"), "{problem}");
        let contract = clipped("secure_aggregation_group_size = 3").unwrap();
        assert_eq!(contract.privacy.secure_aggregation_group_size, Some(3));
    }

    const ADULT: &str = include_str!("../../../contracts/adult.toml");

    #[test]
    fn private_federated_statistics_need_public_bounds_and_local_scaling_needs_none() {
        let private = ADULT.replace(
            "clip_norm = 0.0\nnoise_multiplier = 0.0",
            "clip_norm = 1.0\nnoise_multiplier = 1.0",
        );
        assert!(Contract::from_toml(&private, "adult.toml").is_ok());
        // One node's contribution is unbounded without bounds: refused, naming the column.
        let unbounded = private.replacen(
            "scaling = { method = \"standardize\", bounds = [17, 90] }\n",
            "",
            1,
        );
        match Contract::from_toml(&unbounded, "adult.toml") {
            Err(ContractError::Invalid { key, problem, .. }) => {
                assert_eq!(key, "schema");
                assert!(
                    problem.contains("column \"age\"") && problem.contains("bounds"),
                    "{problem}"
                );
                assert!(problem.contains("local_standardize = true"), "{problem}");
            }
            other => panic!("an unbounded private statistic was accepted: {other:?}"),
        }
        // Without noise or clipping the statistics may be raw, and local scaling sends none.
        assert!(
            Contract::from_toml(
                &ADULT.replacen(
                    "scaling = { method = \"standardize\", bounds = [17, 90] }\n",
                    "",
                    1,
                ),
                "adult.toml"
            )
            .is_ok()
        );
        let local = unbounded.replacen("[schema]\n", "[schema]\nlocal_standardize = true\n", 1);
        assert!(Contract::from_toml(&local, "adult.toml").is_ok());
        // Bounds are checked like a range.
        let inverted = ADULT.replacen("bounds = [17, 90]", "bounds = [90, 17]", 1);
        let err = Contract::from_toml(&inverted, "adult.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[90, 17]"), "{err}");
    }

    #[test]
    fn every_bundled_contract_still_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = Contract::from_toml(&text, &path.display().to_string()) {
                panic!("{e}");
            }
        }
    }
}
