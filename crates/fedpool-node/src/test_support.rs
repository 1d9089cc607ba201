//! Helpers for the crate's tests: contracts, ledgers and nodes running in-process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fedpool_core::Contract;
use fedpool_data::Table;
use fedpool_ledger::{ConsentGranted, Keypair, ModelPublished, NetworkId, Store};
use libp2p::Multiaddr;

use crate::control::{self, ControlRequest};
use crate::{DataSource, NodeConfig, NodeInfo, WireTap};

/// The bundled digits contract's text and contract.
pub fn digits_contract() -> (String, Contract) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/digits.toml"
    ))
    .unwrap();
    let contract = Contract::from_toml(&text, "digits.toml").unwrap();
    (text, contract)
}

/// The first `n` rows of the bundled digits, as CSV text (header included).
pub fn digits_csv(n: usize) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/digits/digits.csv"
    ))
    .unwrap();
    text.lines().take(n + 1).map(|l| format!("{l}\n")).collect()
}

/// Publishes the digits contract by `publisher` into `store`.
pub fn publish_digits(store: &mut Store, publisher: &Keypair) -> ModelPublished {
    let (text, contract) = digits_contract();
    let body = fedpool_runtime::publication(&contract, &text, &publisher.did());
    store.append_next(publisher, 1_000, body.clone()).unwrap();
    body
}

/// Signs `owner`'s consent to `model` into `store`.
pub fn consent(
    store: &mut Store,
    owner: &Keypair,
    publisher: &Keypair,
    model: &ModelPublished,
    fingerprint: &str,
) {
    store
        .append_next(
            owner,
            2_000,
            ConsentGranted {
                model_id: model.model_id.clone(),
                publisher: publisher.did(),
                card_hash: model.card_hash.clone(),
                dataset_fingerprint: fingerprint.into(),
                fields: model.terms.required_fields.clone(),
                expires_at_ms: None,
                epsilon_cap: None,
                decided_by: None,
            },
        )
        .unwrap();
}

/// Rows from CSV text, whatever the fingerprint asked.
pub struct CsvData(pub String);

impl DataSource for CsvData {
    fn training_data(&self, contract: &Contract, _: &str) -> Result<Table, String> {
        Table::from_csv(self.0.as_bytes(), "test.csv", &contract.schema, &[])
            .map_err(|e| e.to_string())
    }

    fn evaluation_data(&self, contract: &Contract, _: &str) -> Result<Table, String> {
        self.training_data(contract, "")
    }
}

/// Starts a node in this runtime; returns its first listen address once it listens.
pub async fn start_node(
    home: &Path,
    keypair: &Keypair,
    network: &NetworkId,
    bootstrap: Vec<Multiaddr>,
    data: Arc<dyn DataSource>,
    wiretap: Option<WireTap>,
) -> (Multiaddr, tokio::task::JoinHandle<Result<(), crate::Error>>) {
    start(node_config(
        home, keypair, network, bootstrap, data, wiretap,
    ))
    .await
}

/// A test node's configuration: loopback, short timeouts.
pub fn node_config(
    home: &Path,
    keypair: &Keypair,
    network: &NetworkId,
    bootstrap: Vec<Multiaddr>,
    data: Arc<dyn DataSource>,
    wiretap: Option<WireTap>,
) -> NodeConfig {
    NodeConfig {
        home: home.to_path_buf(),
        keypair: keypair.clone(),
        ledger_path: home.join("ledger.db"),
        network: network.clone(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        data,
        round_timeout_ms: 10_000,
        sync_interval: Duration::from_millis(300),
        max_message_bytes: 64 << 20,
        wiretap,
        replay: None,
        freeze_before: None,
        consent_policy: None,
        mdns: false,
    }
}

/// Starts a node in this runtime; returns its first listen address once it listens.
pub async fn start(
    config: NodeConfig,
) -> (Multiaddr, tokio::task::JoinHandle<Result<(), crate::Error>>) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(crate::run(
        config,
        move |info: &NodeInfo| {
            let _ = ready_tx.send(info.listen[0].clone());
        },
        futures::future::pending(),
    ));
    (ready_rx.await.unwrap(), handle)
}

/// Sends a control request to the node in `home` and collects its answer lines.
pub async fn call(home: &Path, request: ControlRequest) -> Vec<serde_json::Value> {
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        control::call(&home, &request, |v| {
            lines.push(v);
            Ok(())
        })
        .unwrap();
        lines
    })
    .await
    .unwrap()
}
