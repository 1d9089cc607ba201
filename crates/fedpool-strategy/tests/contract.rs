//! The `[training.strategy]` and `[training.sampling]` tables as a contract writes them in TOML.

use fedpool_strategy::{ClientSampling, StrategyConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Contract {
    training: Training,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Training {
    strategy: StrategyConfig,
    sampling: ClientSampling,
}

/// Parses a `[training]` section made of `strategy` and `sampling` tables and compares the
/// result, or the start of the error message, with `expect`.
fn check(toml_text: &str, expect: Result<(StrategyConfig, ClientSampling), &str>) {
    let got = toml::from_str::<Contract>(toml_text);
    match expect {
        Ok((strategy, sampling)) => {
            let contract = got.unwrap_or_else(|e| panic!("{toml_text}\n{e}"));
            assert_eq!(contract.training.strategy, strategy);
            assert_eq!(contract.training.sampling, sampling);
            // Serializing and parsing again gives the same contract.
            let text = toml::to_string(&contract).unwrap();
            assert_eq!(
                toml::from_str::<Contract>(&text).unwrap(),
                contract,
                "{text}"
            );
        }
        Err(want) => {
            let err = got.expect_err(toml_text).to_string();
            assert!(
                err.contains(want),
                "{toml_text}\nerror: {err}\nwanted: {want}"
            );
        }
    }
}

const EVERYONE: &str = "[training.sampling]\nfraction = 1.0\n";

#[test]
fn strategy_tables() {
    let cases: Vec<(String, Result<StrategyConfig, &str>)> = vec![
        (
            "name = \"fedadam\"\neta = 0.01".into(),
            Ok(StrategyConfig::FedAdam {
                eta: 0.01,
                beta_1: 0.9,
                beta_2: 0.99,
                tau: 0.001,
            }),
        ),
        ("name = \"fedavg\"".into(), Ok(StrategyConfig::FedAvg)),
        ("name = \"fedmedian\"".into(), Ok(StrategyConfig::FedMedian)),
        // Integers are accepted where a float is expected.
        (
            "name = \"fedavgm\"\nmomentum = 0\neta = 1".into(),
            Ok(StrategyConfig::FedAvgM {
                eta: 1.0,
                momentum: 0.0,
            }),
        ),
        (
            "name = \"multikrum\"\nkeep = 4".into(),
            Ok(StrategyConfig::MultiKrum {
                byzantine_fraction: 0.2,
                keep: Some(4),
            }),
        ),
        (
            "name = \"bulyan\"".into(),
            Ok(StrategyConfig::Bulyan {
                byzantine_fraction: 0.1,
            }),
        ),
        // A misspelt key fails instead of silently running the default.
        (
            "name = \"fedadam\"\netta = 0.01".into(),
            Err(
                "fedadam: unknown parameter \"etta\"; its parameters are: eta, beta_1, beta_2, tau",
            ),
        ),
        (
            "name = \"fedavg\"\neta = 0.01".into(),
            Err("fedavg: unknown parameter \"eta\"; it takes no parameters"),
        ),
        (
            "name = \"fedsgd\"".into(),
            Err("unknown variant `fedsgd`, expected one of `fedavg`"),
        ),
        (
            "name = \"fedprox\"\nmu = \"0.1\"".into(),
            Err("fedprox: mu = \"0.1\" is not a number"),
        ),
        (
            "name = \"multikrum\"\nkeep = -1".into(),
            Err("multikrum: keep = -1 is not a whole number"),
        ),
        (
            "name = \"multikrum\"\nkeep = 2.0".into(),
            Err("multikrum: keep = 2 is not a whole number"),
        ),
        (
            "name = \"krum\"\nbyzantine_fraction = true".into(),
            Err("krum: byzantine_fraction = true is not a number"),
        ),
        // Ranges are checked by validate(), not while parsing, so contracts can name the key path.
        (
            "name = \"fedprox\"\nmu = -1".into(),
            Ok(StrategyConfig::FedProx { mu: -1.0 }),
        ),
        ("eta = 0.1".into(), Err("missing field `name`")),
    ];
    for (table, expect) in cases {
        let text = format!("[training.strategy]\n{table}\n{EVERYONE}");
        check(&text, expect.map(|s| (s, ClientSampling::by_fraction(1.0))));
    }
}

#[test]
fn sampling_tables() {
    let cases: Vec<(&str, Result<ClientSampling, &str>)> = vec![
        ("fraction = 0.3", Ok(ClientSampling::by_fraction(0.3))),
        (
            "count = 10\nmin_clients = 3",
            Ok(ClientSampling::by_count(10).with_min_clients(3)),
        ),
        (
            "count = 10\nmin_client = 3",
            Err("unknown field `min_client`"),
        ),
    ];
    for (table, expect) in cases {
        let text =
            format!("[training.strategy]\nname = \"fedavg\"\n[training.sampling]\n{table}\n");
        check(&text, expect.map(|s| (StrategyConfig::FedAvg, s)));
    }
}

#[test]
fn every_default_strategy_survives_toml() {
    for &name in fedpool_strategy::all_names() {
        let config = StrategyConfig::with_defaults(name).unwrap();
        let contract = Contract {
            training: Training {
                strategy: config,
                sampling: ClientSampling::default(),
            },
        };
        let text = toml::to_string(&contract).unwrap();
        assert_eq!(
            toml::from_str::<Contract>(&text).unwrap(),
            contract,
            "{text}"
        );
    }
}
