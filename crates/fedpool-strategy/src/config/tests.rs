//! Parsing, printing, validating and building configs.

use super::*;
use crate::{AdaptiveParams, FedAdam};

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
