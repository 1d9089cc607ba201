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

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AdaptiveParams;
use crate::{
    Bulyan, FedAdagrad, FedAdam, FedAvg, FedAvgM, FedMedian, FedProx, FedTrimmedAvg, FedYogi, Krum,
    MultiKrum, Strategy,
};

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
            // Bulyan needs n ≥ 4f + 3, so f/n must stay below 1/4 (El Mhamdi et al. 2018, §4).
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

impl Serialize for StrategyConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut copy = self.clone();
        let params = copy.params_mut();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", self.name())?;
        for param in params {
            match param.value {
                ParamMut::Float(value) => map.serialize_entry(param.key, value)?,
                ParamMut::Count(Some(count)) => map.serialize_entry(param.key, count)?,
                ParamMut::Count(None) => {}
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StrategyConfig {
    /// Reads a table with a `name` and the strategy's keys, through the same parameter table as
    /// [`FromStr`], so both reject the same unknown keys with the same messages.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ConfigVisitor)
    }
}

struct ConfigVisitor;

impl<'de> Visitor<'de> for ConfigVisitor {
    type Value = StrategyConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a strategy table with a `name` key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrategyConfig, A::Error> {
        let mut name: Option<String> = None;
        let mut params: Vec<(String, Scalar)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" {
                if name.is_some() {
                    return Err(de::Error::duplicate_field("name"));
                }
                name = Some(map.next_value()?);
            } else {
                params.push((key, map.next_value()?));
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let mut config = StrategyConfig::with_defaults(&name)
            .ok_or_else(|| de::Error::unknown_variant(&name, all_names()))?;
        let strategy = config.name();
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in &params {
            let raw = match value {
                Scalar::Float(x) => RawValue::Float(*x),
                Scalar::Int(i) => RawValue::Int(*i),
                Scalar::Other(text) => RawValue::Other(text),
            };
            let key = config.set(key, raw).map_err(de::Error::custom)?;
            if seen.contains(&key) {
                return Err(de::Error::custom(ConfigError::DuplicateParam {
                    strategy,
                    key,
                }));
            }
            seen.push(key);
        }
        Ok(config)
    }
}

/// A hyperparameter value as a format delivers it: a number of either kind, or anything else
/// (described for the error message).
enum Scalar {
    Float(f64),
    Int(i128),
    Other(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(value.into()))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other(value.to_string()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Scalar, E> {
        Ok(Scalar::Other(format!("{value:?}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and compares with `expect`; a successful parse must also print back to a
    /// string that parses to the same config.
    fn check(text: &str, expect: Result<StrategyConfig, ConfigError>) {
        let got = text.parse::<StrategyConfig>();
        assert_eq!(got, expect, "parsing {text:?}");
        if let Ok(config) = got {
            let printed = config.to_string();
            assert_eq!(
                printed.parse::<StrategyConfig>(),
                Ok(config),
                "round trip of {printed:?}"
            );
        }
    }

    fn defaults(name: &str) -> StrategyConfig {
        StrategyConfig::with_defaults(name).unwrap()
    }

    #[test]
    fn parses_the_cli_forms() {
        use StrategyConfig as C;
        let cases: Vec<(&str, Result<StrategyConfig, ConfigError>)> = vec![
            ("fedavg", Ok(C::FedAvg)),
            (" fedavg ", Ok(C::FedAvg)),
            ("fedmedian", Ok(C::FedMedian)),
            ("fedprox", Ok(C::FedProx { mu: 0.01 })),
            ("fedprox:0.1", Ok(C::FedProx { mu: 0.1 })),
            ("fedprox:mu=0", Ok(C::FedProx { mu: 0.0 })),
            ("fedtrimmedavg", Ok(C::FedTrimmedAvg { beta: 0.2 })),
            ("fedtrimmedavg:0.3", Ok(C::FedTrimmedAvg { beta: 0.3 })),
            (
                "krum",
                Ok(C::Krum {
                    byzantine_fraction: 0.2,
                }),
            ),
            (
                "krum:0.3",
                Ok(C::Krum {
                    byzantine_fraction: 0.3,
                }),
            ),
            (
                "multikrum:0.2",
                Ok(C::MultiKrum {
                    byzantine_fraction: 0.2,
                    keep: None,
                }),
            ),
            (
                "multikrum:keep=5, byzantine_fraction=0.1",
                Ok(C::MultiKrum {
                    byzantine_fraction: 0.1,
                    keep: Some(5),
                }),
            ),
            (
                "bulyan",
                Ok(C::Bulyan {
                    byzantine_fraction: 0.1,
                }),
            ),
            (
                "bulyan:0.2",
                Ok(C::Bulyan {
                    byzantine_fraction: 0.2,
                }),
            ),
            (
                "fedavgm",
                Ok(C::FedAvgM {
                    eta: 1.0,
                    momentum: 0.5,
                }),
            ),
            (
                "fedavgm:momentum=0.9,eta=0.1",
                Ok(C::FedAvgM {
                    eta: 0.1,
                    momentum: 0.9,
                }),
            ),
            (
                "fedadam",
                Ok(C::FedAdam {
                    eta: 0.03,
                    beta_1: 0.9,
                    beta_2: 0.99,
                    tau: 0.001,
                }),
            ),
            (
                "fedadam:eta=0.01",
                Ok(C::FedAdam {
                    eta: 0.01,
                    beta_1: 0.9,
                    beta_2: 0.99,
                    tau: 0.001,
                }),
            ),
            (
                "fedyogi:tau=1e-4",
                Ok(C::FedYogi {
                    eta: 0.03,
                    beta_1: 0.9,
                    beta_2: 0.99,
                    tau: 1e-4,
                }),
            ),
            (
                "fedadagrad",
                Ok(C::FedAdagrad {
                    eta: 0.1,
                    beta_1: 0.0,
                    tau: 0.001,
                }),
            ),
            (
                "fedavgx",
                Err(ConfigError::UnknownStrategy {
                    name: "fedavgx".into(),
                }),
            ),
            (
                "FedAvg",
                Err(ConfigError::UnknownStrategy {
                    name: "FedAvg".into(),
                }),
            ),
            ("", Err(ConfigError::UnknownStrategy { name: "".into() })),
            (
                "fedavg:0.1",
                Err(ConfigError::NoMainParam {
                    strategy: "fedavg",
                    value: "0.1".into(),
                    allowed: &[],
                }),
            ),
            (
                "fedadam:0.1",
                Err(ConfigError::NoMainParam {
                    strategy: "fedadam",
                    value: "0.1".into(),
                    allowed: &["eta", "beta_1", "beta_2", "tau"],
                }),
            ),
            (
                "fedadam:beta_2=0.9,gamma=1",
                Err(ConfigError::UnknownParam {
                    strategy: "fedadam",
                    key: "gamma".into(),
                    allowed: &["eta", "beta_1", "beta_2", "tau"],
                }),
            ),
            (
                "fedadagrad:beta_2=0.9",
                Err(ConfigError::UnknownParam {
                    strategy: "fedadagrad",
                    key: "beta_2".into(),
                    allowed: &["eta", "beta_1", "tau"],
                }),
            ),
            (
                "fedadam:eta=0.1,0.2",
                Err(ConfigError::MalformedParam {
                    strategy: "fedadam",
                    param: "0.2".into(),
                }),
            ),
            (
                "fedadam:eta=0.1,eta=0.2",
                Err(ConfigError::DuplicateParam {
                    strategy: "fedadam",
                    key: "eta",
                }),
            ),
            (
                "fedprox:",
                Err(ConfigError::BadValue {
                    strategy: "fedprox",
                    key: "mu",
                    value: "\"\"".into(),
                    expected: "a number",
                }),
            ),
            (
                "fedprox:abc",
                Err(ConfigError::BadValue {
                    strategy: "fedprox",
                    key: "mu",
                    value: "\"abc\"".into(),
                    expected: "a number",
                }),
            ),
            (
                "multikrum:keep=2.5",
                Err(ConfigError::BadValue {
                    strategy: "multikrum",
                    key: "keep",
                    value: "\"2.5\"".into(),
                    expected: "a whole number",
                }),
            ),
            (
                "fedprox:-0.1",
                Err(ConfigError::OutOfRange {
                    strategy: "fedprox",
                    key: "mu",
                    value: -0.1,
                    allowed: ">= 0",
                }),
            ),
            (
                "fedtrimmedavg:0.5",
                Err(ConfigError::OutOfRange {
                    strategy: "fedtrimmedavg",
                    key: "beta",
                    value: 0.5,
                    allowed: "[0, 0.5)",
                }),
            ),
            (
                "bulyan:0.25",
                Err(ConfigError::OutOfRange {
                    strategy: "bulyan",
                    key: "byzantine_fraction",
                    value: 0.25,
                    allowed: "[0, 0.25)",
                }),
            ),
            (
                "fedadam:eta=0",
                Err(ConfigError::OutOfRange {
                    strategy: "fedadam",
                    key: "eta",
                    value: 0.0,
                    allowed: "> 0",
                }),
            ),
            (
                "fedavgm:momentum=1",
                Err(ConfigError::OutOfRange {
                    strategy: "fedavgm",
                    key: "momentum",
                    value: 1.0,
                    allowed: "[0, 1)",
                }),
            ),
            (
                "fedyogi:tau=inf",
                Err(ConfigError::OutOfRange {
                    strategy: "fedyogi",
                    key: "tau",
                    value: f64::INFINITY,
                    allowed: "> 0",
                }),
            ),
            (
                "multikrum:keep=0",
                Err(ConfigError::OutOfRange {
                    strategy: "multikrum",
                    key: "keep",
                    value: 0.0,
                    allowed: ">= 1",
                }),
            ),
        ];
        for (text, expect) in cases {
            check(text, expect);
        }
    }

    #[test]
    fn every_name_parses_builds_and_round_trips() {
        for &name in all_names() {
            let config = defaults(name);
            check(name, Ok(config.clone()));
            assert_eq!(config.name(), name);
            assert_eq!(config.build().name(), name);
            assert_eq!(config.validate(), Ok(()), "{name} defaults");
        }
        assert_eq!(all_names().len(), 11);
        assert_eq!(StrategyConfig::default(), StrategyConfig::FedAvg);
    }

    #[test]
    fn display_spells_out_every_parameter() {
        let cases = [
            ("fedavg", "fedavg"),
            ("fedprox", "fedprox:0.01"),
            ("multikrum", "multikrum:0.2"),
            (
                "multikrum:keep=3",
                "multikrum:byzantine_fraction=0.2,keep=3",
            ),
            (
                "fedadam",
                "fedadam:eta=0.03,beta_1=0.9,beta_2=0.99,tau=0.001",
            ),
            ("fedadagrad", "fedadagrad:eta=0.1,beta_1=0,tau=0.001"),
            ("fedavgm", "fedavgm:eta=1,momentum=0.5"),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<StrategyConfig>().unwrap().to_string(), want);
        }
    }

    #[test]
    fn messages_name_the_key_and_the_range() {
        let cases = [
            (
                "fedtrimmedavg:0.7",
                "fedtrimmedavg: beta = 0.7 is out of range; allowed: [0, 0.5)",
            ),
            (
                "fedx",
                "unknown strategy \"fedx\"; expected one of: fedavg, fedavgm, fedprox, fedadagrad, \
                 fedadam, fedyogi, fedmedian, fedtrimmedavg, krum, multikrum, bulyan",
            ),
            (
                "fedmedian:1",
                "fedmedian: no main parameter for \"1\"; it takes no parameters",
            ),
            (
                "krum:f=1",
                "krum: unknown parameter \"f\"; its parameters are: byzantine_fraction",
            ),
            (
                "fedprox:NaN",
                "fedprox: mu = NaN is out of range; allowed: >= 0",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<StrategyConfig>().unwrap_err().to_string(),
                want
            );
        }
    }

    #[test]
    fn built_strategies_carry_their_parameters() {
        let prox = "fedprox:0.25".parse::<StrategyConfig>().unwrap().build();
        assert_eq!(prox.proximal_mu(), 0.25);
        assert_eq!(
            "fedadam"
                .parse::<StrategyConfig>()
                .unwrap()
                .build()
                .proximal_mu(),
            0.0
        );
        assert_eq!(
            FedAdam::default().params(),
            AdaptiveParams {
                eta: 0.03,
                beta_1: 0.9,
                beta_2: 0.99,
                tau: 1e-3
            }
        );
    }
}
