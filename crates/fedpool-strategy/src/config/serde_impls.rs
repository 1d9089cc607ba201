//! Serde for [`StrategyConfig`] by hand: the derived internally tagged form ignores unknown
//! keys on parameterless variants (`name = "fedavg"` with `eta = 0.01` would pass), and going
//! through the same parameter table as `FromStr` gives TOML and the command line one set of
//! keys and messages.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, ParamMut, RawValue, StrategyConfig, all_names};

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
