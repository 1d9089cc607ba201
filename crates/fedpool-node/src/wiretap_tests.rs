//! No raw data on the wire: every byte an owner's node hands to the transport while it trains
//! is captured, and no row of its dataset appears in it, neither as CSV text nor as the encoded
//! feature vector it trains on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedpool_data::Table;
use fedpool_ledger::{Keypair, NetworkId, Store, content_hash};

use crate::control::ControlRequest;
use crate::test_support::{
    CsvData, call, consent, digits_contract, digits_csv, publish_digits, start_node,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_of_an_owners_rows_is_ever_sent() {
    let network = NetworkId::new("wiretap-test").unwrap();
    let publisher = Keypair::insecure_from_seed(11);
    let owner = Keypair::insecure_from_seed(12);
    let other = Keypair::insecure_from_seed(13);
    let (pub_dir, owner_dir, other_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let csv = digits_csv(300);
    let other_csv: String = digits_csv(600)
        .lines()
        .skip(301)
        .map(|l| format!("{l}\n"))
        .collect();
    let other_csv = format!("{}{other_csv}", digits_csv(0));
    let model = {
        let mut store = Store::open(&pub_dir.path().join("ledger.db"), &network).unwrap();
        let model = publish_digits(&mut store, &publisher);
        for (dir, key, data) in [(&owner_dir, &owner, &csv), (&other_dir, &other, &other_csv)] {
            let mut own = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
            own.import(store.events().unwrap()).unwrap();
            consent(
                &mut own,
                key,
                &publisher,
                &model,
                &content_hash(data.as_bytes()),
            );
        }
        model
    };
    let sent: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let tap = {
        let sent = Arc::clone(&sent);
        Arc::new(move |_: libp2p::PeerId, bytes: &[u8]| {
            sent.lock().unwrap().extend_from_slice(bytes)
        })
    };
    let (pub_addr, _p) = start_node(
        pub_dir.path(),
        &publisher,
        &network,
        vec![],
        Arc::new(CsvData(digits_csv(100))),
        None,
    )
    .await;
    let (_, _o) = start_node(
        owner_dir.path(),
        &owner,
        &network,
        vec![pub_addr.clone()],
        Arc::new(CsvData(csv.clone())),
        Some(tap),
    )
    .await;
    let (_, _x) = start_node(
        other_dir.path(),
        &other,
        &network,
        vec![pub_addr],
        Arc::new(CsvData(other_csv)),
        None,
    )
    .await;
    // Both consents replicate to the publisher.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = call(pub_dir.path(), ControlRequest::Status).await;
        if status[0]["ledger"]["authors"] == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consents never reached the publisher"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = call(
        pub_dir.path(),
        ControlRequest::Train {
            model: model.model_id.as_str().into(),
            rounds: Some(2),
            eval: None,
        },
    )
    .await;
    let completed = lines.iter().filter(|l| l["event"] == "completed").count();
    assert_eq!(completed, 2, "{lines:?}");

    let sent = sent.lock().unwrap().clone();
    // The owner did send its updates: the tap saw at least two parameter vectors.
    let (_, contract) = digits_contract();
    let n_params = 65 * 10;
    assert!(
        sent.len() > 2 * n_params * 4,
        "only {} bytes captured",
        sent.len()
    );
    let contains = |needle: &[u8]| sent.windows(needle.len()).any(|w| w == needle);
    for line in csv.lines().skip(1) {
        assert!(
            !contains(line.as_bytes()),
            "a CSV row left the node: {line}"
        );
    }
    let table = Table::from_csv(csv.as_bytes(), "owner.csv", &contract.schema, &[]).unwrap();
    let encoded = table.encode(&(0..table.n_rows()).collect::<Vec<_>>());
    let width = encoded.features.len() / encoded.n_rows();
    for row in encoded.features.chunks_exact(width) {
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!contains(&bytes), "an encoded row left the node");
    }
}
