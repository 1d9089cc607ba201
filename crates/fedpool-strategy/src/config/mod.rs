//! Which strategy a run uses, as written in a contract's `[training.strategy]` table or on the
//! command line, and how to build it.
//!
//! ```toml
//! [training.strategy]
//! name = "fedadam"
//! eta = 0.01
//! ```
//!
//! On the command line: `--strategy fedprox:0.01` (the strategy's main parameter) or
//! `--strategy fedadam:eta=0.01,tau=0.001` (any parameters by key). `Display` writes the same
//! syntax back with every parameter spelled out, so the printed form re-parses to an equal
//! config even if the defaults change later.

use std::fmt;
use std::str::FromStr;

use crate::AdaptiveParams;
use crate::{
    Bulyan, FedAdagrad, FedAdam, FedAvg, FedAvgM, FedMedian, FedProx, FedTrimmedAvg, FedYogi, Krum,
    MultiKrum, Strategy,
};

mod serde_impls;
#[cfg(test)]
mod tests;

/// A strategy and its hyperparameters.
///
/// Omitted hyperparameters take the documented defaults of the strategy types
/// ([`FedAdam::DEFAULT_PARAMS`] and so on). Unknown keys are rejected, for every strategy, so a
/// misspelt key in a contract fails loudly instead of silently running the default.
///
/// Serialized as a table with a `name` key and one key per hyperparameter (`keep` only when
/// set). Deserializing checks names, keys and types but not ranges: call
/// [`StrategyConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyConfig {
    /// [`FedAvg`]: the example-weighted mean of the deltas.
    FedAvg,
    /// [`FedAvgM`]: FedAvg with server momentum.
    FedAvgM {
        /// Server learning rate η, > 0.
        eta: f64,
        /// Server momentum β, in [0, 1).
        momentum: f64,
    },
    /// [`FedProx`]: FedAvg on the server, a proximal term μ on the clients.
    FedProx {
        /// Proximal coefficient μ, ≥ 0.
        mu: f64,
    },
    /// [`FedAdagrad`]: adaptive server optimizer, Adagrad rule.
    FedAdagrad {
        /// Server learning rate η, > 0.
        eta: f64,
        /// First-moment decay β₁, in [0, 1).
        beta_1: f64,
        /// Adaptivity τ, > 0.
        tau: f64,
    },
    /// [`FedAdam`]: adaptive server optimizer, Adam rule.
    FedAdam {
        /// Server learning rate η, > 0.
        eta: f64,
        /// First-moment decay β₁, in [0, 1).
        beta_1: f64,
        /// Second-moment decay β₂, in [0, 1).
        beta_2: f64,
        /// Adaptivity τ, > 0.
        tau: f64,
    },
    /// [`FedYogi`]: adaptive server optimizer, Yogi rule.
    FedYogi {
        /// Server learning rate η, > 0.
        eta: f64,
        /// First-moment decay β₁, in [0, 1).
        beta_1: f64,
        /// Second-moment decay β₂, in [0, 1).
        beta_2: f64,
        /// Adaptivity τ, > 0.
        tau: f64,
    },
    /// [`FedMedian`]: the coordinate-wise median.
    FedMedian,
    /// [`FedTrimmedAvg`]: the coordinate-wise trimmed mean.
    FedTrimmedAvg {
        /// Fraction β trimmed from each end, in [0, 0.5).
        beta: f64,
    },
    /// [`Krum`]: the single most central update.
    Krum {
        /// Fraction of each round's updates that may be Byzantine, in [0, 0.5).
        byzantine_fraction: f64,
    },
    /// [`MultiKrum`]: the mean of the most central updates.
    MultiKrum {
        /// Fraction of each round's updates that may be Byzantine, in [0, 0.5).
        byzantine_fraction: f64,
        /// Updates averaged, ≥ 1; absent means n − f.
        keep: Option<usize>,
    },
    /// [`Bulyan`]: repeated Krum, then a trimmed mean around the median.
    Bulyan {
        /// Fraction of each round's updates that may be Byzantine, in [0, 0.25).
        byzantine_fraction: f64,
    },
}

/// Every strategy name, in the order the docs list them.
pub fn all_names() -> &'static [&'static str] {
    &[
        "fedavg",
        "fedavgm",
        "fedprox",
        "fedadagrad",
        "fedadam",
        "fedyogi",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
        "multikrum",
        "bulyan",
    ]
}

/// Why a strategy name or its parameters were rejected. Each message names the strategy and the
/// key, and says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The name is not a strategy.
    #[error("unknown strategy {name:?}; expected one of: {}", all_names().join(", "))]
    UnknownStrategy {
        /// The name given.
        name: String,
    },
    /// The key is not a parameter of this strategy.
    #[error("{strategy}: unknown parameter {key:?}; {}", describe_keys(allowed))]
    UnknownParam {
        /// Strategy name.
        strategy: &'static str,
        /// The key given.
        key: String,
        /// The strategy's parameter keys.
        allowed: &'static [&'static str],
    },
    /// A bare `name:VALUE` was given for a strategy without a main parameter.
    #[error(
        "{strategy}: no main parameter for {value:?}; {}",
        describe_keys(allowed)
    )]
    NoMainParam {
        /// Strategy name.
        strategy: &'static str,
        /// The value given.
        value: String,
        /// The strategy's parameter keys.
        allowed: &'static [&'static str],
    },
    /// A parameter in a `key=value` list is not of that form.
    #[error("{strategy}: parameter {param:?} is not of the form key=value")]
    MalformedParam {
        /// Strategy name.
        strategy: &'static str,
        /// The text given.
        param: String,
    },
    /// The same key was given twice.
    #[error("{strategy}: parameter {key} is given twice")]
    DuplicateParam {
        /// Strategy name.
        strategy: &'static str,
        /// The repeated key.
        key: &'static str,
    },
    /// The value does not parse as the parameter's type.
    #[error("{strategy}: {key} = {value} is not {expected}")]
    BadValue {
        /// Strategy name.
        strategy: &'static str,
        /// Parameter key.
        key: &'static str,
        /// The value given, strings quoted.
        value: String,
        /// What was expected ("a number", "a whole number").
        expected: &'static str,
    },
    /// The value is outside the parameter's range.
    #[error("{strategy}: {key} = {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// Strategy name.
        strategy: &'static str,
        /// Parameter key.
        key: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, e.g. "[0, 0.5)" or "> 0".
        allowed: &'static str,
    },
}

fn describe_keys(keys: &[&str]) -> String {
    if keys.is_empty() {
        "it takes no parameters".to_string()
    } else {
        format!("its parameters are: {}", keys.join(", "))
    }
}

impl Default for StrategyConfig {
    /// FedAvg, the baseline every other rule is compared with.
    fn default() -> Self {
        Self::FedAvg
    }
}

impl StrategyConfig {
    /// The strategy's name, as in [`all_names`] and [`Strategy::name`].
    pub fn name(&self) -> &'static str {
        match self {
            Self::FedAvg => "fedavg",
            Self::FedAvgM { .. } => "fedavgm",
            Self::FedProx { .. } => "fedprox",
            Self::FedAdagrad { .. } => "fedadagrad",
            Self::FedAdam { .. } => "fedadam",
            Self::FedYogi { .. } => "fedyogi",
            Self::FedMedian => "fedmedian",
            Self::FedTrimmedAvg { .. } => "fedtrimmedavg",
            Self::Krum { .. } => "krum",
            Self::MultiKrum { .. } => "multikrum",
            Self::Bulyan { .. } => "bulyan",
        }
    }

    /// Whether the strategy needs only the mean of the updates (FedAvg and the server
    /// optimizers), so it works when the publisher sees only a noised or secure sum. Robust
    /// rules (median, trimmed mean, Krum, Bulyan) need every update and do not.
    pub fn works_on_the_mean(&self) -> bool {
        matches!(
            self,
            Self::FedAvg
                | Self::FedAvgM { .. }
                | Self::FedProx { .. }
                | Self::FedAdagrad { .. }
                | Self::FedAdam { .. }
                | Self::FedYogi { .. }
        )
    }

    /// The named strategy with default hyperparameters, or `None` for an unknown name.
    pub fn with_defaults(name: &str) -> Option<Self> {
        Some(match name {
            "fedavg" => Self::FedAvg,
            "fedavgm" => Self::FedAvgM {
                eta: defaults::fedavgm_eta(),
                momentum: defaults::fedavgm_momentum(),
            },
            "fedprox" => Self::FedProx {
                mu: defaults::fedprox_mu(),
            },
            "fedadagrad" => Self::FedAdagrad {
                eta: defaults::fedadagrad_eta(),
                beta_1: defaults::fedadagrad_beta_1(),
                tau: defaults::fedadagrad_tau(),
            },
            "fedadam" => Self::FedAdam {
                eta: defaults::fedadam_eta(),
                beta_1: defaults::fedadam_beta_1(),
                beta_2: defaults::fedadam_beta_2(),
                tau: defaults::fedadam_tau(),
            },
            "fedyogi" => Self::FedYogi {
                eta: defaults::fedyogi_eta(),
                beta_1: defaults::fedyogi_beta_1(),
                beta_2: defaults::fedyogi_beta_2(),
                tau: defaults::fedyogi_tau(),
            },
            "fedmedian" => Self::FedMedian,
            "fedtrimmedavg" => Self::FedTrimmedAvg {
                beta: defaults::fedtrimmedavg_beta(),
            },
            "krum" => Self::Krum {
                byzantine_fraction: defaults::krum_byzantine_fraction(),
            },
            "multikrum" => Self::MultiKrum {
                byzantine_fraction: defaults::krum_byzantine_fraction(),
                keep: None,
            },
            "bulyan" => Self::Bulyan {
                byzantine_fraction: defaults::bulyan_byzantine_fraction(),
            },
            _ => return None,
        })
    }

    /// Checks every hyperparameter's range; the error names the strategy, the key and the
    /// allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let strategy = self.name();
        for param in self.clone().params_mut() {
            let value = match param.value {
                ParamMut::Float(value) => *value,
                ParamMut::Count(None) => continue,
                ParamMut::Count(Some(count)) => *count as f64,
            };
            if !param.range.contains(value) {
                return Err(ConfigError::OutOfRange {
                    strategy,
                    key: param.key,
                    value,
                    allowed: param.range.describe(),
                });
            }
        }
        Ok(())
    }

    /// Builds the strategy with fresh optimizer state.
    ///
    /// Call [`StrategyConfig::validate`] first (contracts and [`FromStr`] do). Out-of-range
    /// values never cause a panic, but can make every round fail (a trimmed fraction of 0.5
    /// needs more updates than exist) or diverge (a negative learning rate).
    pub fn build(&self) -> Box<dyn Strategy> {
        // Hyperparameters are f64 in the config for exact round trips through text; the
        // optimizers run in f32 like the model.
        let adaptive = |eta: f64, beta_1: f64, beta_2: f64, tau: f64| AdaptiveParams {
            eta: eta as f32,
            beta_1: beta_1 as f32,
            beta_2: beta_2 as f32,
            tau: tau as f32,
        };
        match *self {
            Self::FedAvg => Box::new(FedAvg::new()),
            Self::FedAvgM { eta, momentum } => Box::new(FedAvgM::new(eta as f32, momentum as f32)),
            Self::FedProx { mu } => Box::new(FedProx::new(mu as f32)),
            Self::FedAdagrad { eta, beta_1, tau } => {
                Box::new(FedAdagrad::new(adaptive(eta, beta_1, 0.0, tau)))
            }
            Self::FedAdam {
                eta,
                beta_1,
                beta_2,
                tau,
            } => Box::new(FedAdam::new(adaptive(eta, beta_1, beta_2, tau))),
            Self::FedYogi {
                eta,
                beta_1,
                beta_2,
                tau,
            } => Box::new(FedYogi::new(adaptive(eta, beta_1, beta_2, tau))),
            Self::FedMedian => Box::new(FedMedian::new()),
            Self::FedTrimmedAvg { beta } => Box::new(FedTrimmedAvg::new(beta)),
            Self::Krum { byzantine_fraction } => Box::new(Krum::new(byzantine_fraction)),
            Self::MultiKrum {
                byzantine_fraction,
                keep,
            } => Box::new(MultiKrum::new(byzantine_fraction, keep)),
            Self::Bulyan { byzantine_fraction } => Box::new(Bulyan::new(byzantine_fraction)),
        }
    }

    /// The parameter that `name:VALUE` sets, for the strategies that have one obvious main
    /// parameter.
    fn main_param(&self) -> Option<&'static str> {
        match self {
            Self::FedProx { .. } => Some("mu"),
            Self::FedTrimmedAvg { .. } => Some("beta"),
            Self::Krum { .. } | Self::MultiKrum { .. } | Self::Bulyan { .. } => {
                Some("byzantine_fraction")
            }
            _ => None,
        }
    }

    /// The parameter keys of this strategy, in display order.
    fn keys(&self) -> &'static [&'static str] {
        match self {
            Self::FedAvg | Self::FedMedian => &[],
            Self::FedAvgM { .. } => &["eta", "momentum"],
            Self::FedProx { .. } => &["mu"],
            Self::FedAdagrad { .. } => &["eta", "beta_1", "tau"],
            Self::FedAdam { .. } | Self::FedYogi { .. } => &["eta", "beta_1", "beta_2", "tau"],
            Self::FedTrimmedAvg { .. } => &["beta"],
            Self::Krum { .. } | Self::Bulyan { .. } => &["byzantine_fraction"],
            Self::MultiKrum { .. } => &["byzantine_fraction", "keep"],
        }
    }

    /// Every parameter with its key and range, in the order of [`StrategyConfig::keys`]. The
    /// one table that parsing, printing and validation all read.
    fn params_mut(&mut self) -> Vec<Param<'_>> {
        use ParamMut::{Count, Float};
        use Range::{AtLeastOne, Below, NonNegative, Positive};
        let p = |key, value, range| Param { key, value, range };
        match self {
            Self::FedAvg | Self::FedMedian => vec![],
            Self::FedAvgM { eta, momentum } => vec![
                p("eta", Float(eta), Positive),
                p("momentum", Float(momentum), Below(1.0, "[0, 1)")),
            ],
            Self::FedProx { mu } => vec![p("mu", Float(mu), NonNegative)],
            Self::FedAdagrad { eta, beta_1, tau } => vec![
                p("eta", Float(eta), Positive),
                p("beta_1", Float(beta_1), Below(1.0, "[0, 1)")),
                p("tau", Float(tau), Positive),
            ],
            Self::FedAdam {
                eta,
                beta_1,
                beta_2,
                tau,
            }
            | Self::FedYogi {
                eta,
                beta_1,
                beta_2,
                tau,
            } => vec![
                p("eta", Float(eta), Positive),
                p("beta_1", Float(beta_1), Below(1.0, "[0, 1)")),
                p("beta_2", Float(beta_2), Below(1.0, "[0, 1)")),
                p("tau", Float(tau), Positive),
            ],
            Self::FedTrimmedAvg { beta } => vec![p("beta", Float(beta), Below(0.5, "[0, 0.5)"))],
            Self::Krum { byzantine_fraction } => vec![p(
                "byzantine_fraction",
                Float(byzantine_fraction),
                Below(0.5, "[0, 0.5)"),
            )],
            Self::MultiKrum {
                byzantine_fraction,
                keep,
            } => vec![
                p(
                    "byzantine_fraction",
                    Float(byzantine_fraction),
                    Below(0.5, "[0, 0.5)"),
                ),
                p("keep", Count(keep), AtLeastOne),
            ],
            // Bulyan needs n ≥ 4f + 3, so f/n must stay below 1/4 (El Mhamdi et al. 2018).
            Self::Bulyan { byzantine_fraction } => vec![p(
                "byzantine_fraction",
                Float(byzantine_fraction),
                Below(0.25, "[0, 0.25)"),
            )],
        }
    }

    /// Sets one parameter; returns its key.
    fn set(&mut self, key: &str, raw: RawValue<'_>) -> Result<&'static str, ConfigError> {
        let strategy = self.name();
        let allowed = self.keys();
        let Some(param) = self.params_mut().into_iter().find(|p| p.key == key) else {
            return Err(ConfigError::UnknownParam {
                strategy,
                key: key.to_string(),
                allowed,
            });
        };
        let bad_value = |expected| ConfigError::BadValue {
            strategy,
            key: param.key,
            value: raw.to_string(),
            expected,
        };
        match param.value {
            ParamMut::Float(value) => {
                *value = match raw {
                    RawValue::Text(text) => text.parse().map_err(|_| bad_value("a number"))?,
                    RawValue::Float(x) => x,
                    RawValue::Int(i) => i as f64,
                    RawValue::Other(_) => return Err(bad_value("a number")),
                }
            }
            ParamMut::Count(count) => {
                let parsed = match raw {
                    RawValue::Text(text) => text.parse().ok(),
                    RawValue::Int(i) => usize::try_from(i).ok(),
                    RawValue::Float(_) | RawValue::Other(_) => None,
                };
                *count = Some(parsed.ok_or_else(|| bad_value("a whole number"))?);
            }
        }
        Ok(param.key)
    }
}

impl FromStr for StrategyConfig {
    type Err = ConfigError;

    /// Parses `NAME`, `NAME:VALUE` (the main parameter: μ for `fedprox`, β for
    /// `fedtrimmedavg`, the Byzantine fraction for `krum`, `multikrum` and `bulyan`) or
    /// `NAME:KEY=VALUE,KEY=VALUE`, then validates the result.
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let (name, params) = match text.trim().split_once(':') {
            Some((name, params)) => (name.trim(), Some(params.trim())),
            None => (text.trim(), None),
        };
        let mut config = Self::with_defaults(name).ok_or_else(|| ConfigError::UnknownStrategy {
            name: name.to_string(),
        })?;
        let strategy = config.name();
        match params {
            None => {}
            Some(params) if params.contains('=') => {
                let mut seen: Vec<&'static str> = Vec::new();
                for item in params.split(',') {
                    let (key, value) =
                        item.split_once('=')
                            .ok_or_else(|| ConfigError::MalformedParam {
                                strategy,
                                param: item.to_string(),
                            })?;
                    let key = config.set(key.trim(), RawValue::Text(value.trim()))?;
                    if seen.contains(&key) {
                        return Err(ConfigError::DuplicateParam { strategy, key });
                    }
                    seen.push(key);
                }
            }
            Some(value) => {
                let Some(key) = config.main_param() else {
                    return Err(ConfigError::NoMainParam {
                        strategy,
                        value: value.to_string(),
                        allowed: config.keys(),
                    });
                };
                config.set(key, RawValue::Text(value))?;
            }
        }
        config.validate()?;
        Ok(config)
    }
}

impl fmt::Display for StrategyConfig {
    /// Writes the form [`FromStr`] reads, with every parameter: `fedavg`, `fedprox:0.01`,
    /// `fedadam:eta=0.03,beta_1=0.9,beta_2=0.99,tau=0.001`. f64's `Display` is the shortest
    /// text that parses back to the same value, so the round trip is exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let main = self.main_param();
        let mut copy = self.clone();
        let params: Vec<(&'static str, String)> = copy
            .params_mut()
            .into_iter()
            .filter_map(|p| match p.value {
                ParamMut::Float(value) => Some((p.key, value.to_string())),
                ParamMut::Count(count) => count.map(|c| (p.key, c.to_string())),
            })
            .collect();
        match params.as_slice() {
            [] => Ok(()),
            [(key, value)] if Some(*key) == main => write!(f, ":{value}"),
            _ => {
                let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, ":{}", list.join(","))
            }
        }
    }
}

/// A hyperparameter value before it is checked against the parameter's type: command-line
/// text, or a value a serde format already typed.
#[derive(Clone, Copy)]
enum RawValue<'a> {
    Text(&'a str),
    Float(f64),
    Int(i128),
    Other(&'a str),
}

impl fmt::Display for RawValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Text(text) => write!(f, "{text:?}"),
            RawValue::Other(text) => f.write_str(text),
            RawValue::Float(x) => write!(f, "{x}"),
            RawValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// One hyperparameter, borrowed mutably from a config.
struct Param<'a> {
    key: &'static str,
    value: ParamMut<'a>,
    range: Range,
}

enum ParamMut<'a> {
    Float(&'a mut f64),
    Count(&'a mut Option<usize>),
}

/// Allowed values; every range excludes NaN and infinities.
#[derive(Clone, Copy)]
enum Range {
    /// (0, ∞): learning rates and τ.
    Positive,
    /// [0, ∞): μ.
    NonNegative,
    /// [0, bound), described by the string: decays and fractions.
    Below(f64, &'static str),
    /// ≥ 1: counts.
    AtLeastOne,
}

impl Range {
    fn contains(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Range::Positive => value > 0.0,
                Range::NonNegative => value >= 0.0,
                Range::Below(bound, _) => (0.0..bound).contains(&value),
                Range::AtLeastOne => value >= 1.0,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Positive => "> 0",
            Range::NonNegative => ">= 0",
            Range::Below(_, text) => text,
            Range::AtLeastOne => ">= 1",
        }
    }
}

/// Default hyperparameters, each read from the strategy type's documented constant.
mod defaults {
    use crate::{Bulyan, Krum};
    use crate::{FedAdagrad, FedAdam, FedAvgM, FedProx, FedTrimmedAvg, FedYogi};

    /// The f64 with the same shortest decimal text as the f32 default, so that 0.03f32 prints
    /// as 0.03, not 0.029999999329447746, in configs and their `Display`.
    fn widen(value: f32) -> f64 {
        value.to_string().parse().unwrap_or(f64::from(value))
    }

    pub(super) fn fedavgm_eta() -> f64 {
        widen(FedAvgM::DEFAULT_ETA)
    }
    pub(super) fn fedavgm_momentum() -> f64 {
        widen(FedAvgM::DEFAULT_MOMENTUM)
    }
    pub(super) fn fedprox_mu() -> f64 {
        widen(FedProx::DEFAULT_MU)
    }
    pub(super) fn fedadagrad_eta() -> f64 {
        widen(FedAdagrad::DEFAULT_PARAMS.eta)
    }
    pub(super) fn fedadagrad_beta_1() -> f64 {
        widen(FedAdagrad::DEFAULT_PARAMS.beta_1)
    }
    pub(super) fn fedadagrad_tau() -> f64 {
        widen(FedAdagrad::DEFAULT_PARAMS.tau)
    }
    pub(super) fn fedadam_eta() -> f64 {
        widen(FedAdam::DEFAULT_PARAMS.eta)
    }
    pub(super) fn fedadam_beta_1() -> f64 {
        widen(FedAdam::DEFAULT_PARAMS.beta_1)
    }
    pub(super) fn fedadam_beta_2() -> f64 {
        widen(FedAdam::DEFAULT_PARAMS.beta_2)
    }
    pub(super) fn fedadam_tau() -> f64 {
        widen(FedAdam::DEFAULT_PARAMS.tau)
    }
    pub(super) fn fedyogi_eta() -> f64 {
        widen(FedYogi::DEFAULT_PARAMS.eta)
    }
    pub(super) fn fedyogi_beta_1() -> f64 {
        widen(FedYogi::DEFAULT_PARAMS.beta_1)
    }
    pub(super) fn fedyogi_beta_2() -> f64 {
        widen(FedYogi::DEFAULT_PARAMS.beta_2)
    }
    pub(super) fn fedyogi_tau() -> f64 {
        widen(FedYogi::DEFAULT_PARAMS.tau)
    }
    pub(super) fn fedtrimmedavg_beta() -> f64 {
        FedTrimmedAvg::DEFAULT_BETA
    }
    pub(super) fn krum_byzantine_fraction() -> f64 {
        Krum::DEFAULT_BYZANTINE_FRACTION
    }
    pub(super) fn bulyan_byzantine_fraction() -> f64 {
        Bulyan::DEFAULT_BYZANTINE_FRACTION
    }
}
