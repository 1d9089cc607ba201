//! A rogue peer against a running node: garbage, oversized and wrongly-addressed round
//! messages and a forged gossiped event are each rejected, counted against the peer (blocked
//! at the ban score), and nothing of them is stored.

use std::sync::Arc;
use std::time::Duration;

use fedpool_core::Contract;
use fedpool_data::Dataset;
use fedpool_ledger::{Event, Keypair, NetworkId, Store};
use fedpool_protocol::{DeclineReason, Msg, RoundId, wire};
use futures::StreamExt;
use libp2p::{Multiaddr, gossipsub};

use crate::chunk::{Chunk, split};
use crate::control::{self, ControlRequest};
use crate::identity::libp2p_keypair;
use crate::{DataSource, NodeConfig, NodeInfo};

struct NoData;

impl DataSource for NoData {
    fn training_data(&self, _: &Contract, _: &str) -> Result<Dataset, String> {
        Err("no data in this test".into())
    }
    fn evaluation_data(&self, _: &Contract, _: &str) -> Result<Dataset, String> {
        Err("no data in this test".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_peer_is_rejected_blocked_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let network = NetworkId::new("attack-test").unwrap();
    let ledger_path = dir.path().join("ledger.db");
    let publisher = Keypair::insecure_from_seed(1);
    let victim = Keypair::insecure_from_seed(2);
    let rogue = Keypair::insecure_from_seed(3);
    let model = {
        let mut store = Store::open(&ledger_path, &network).unwrap();
        crate::test_support::publish_digits(&mut store, &publisher).model_id
    };
    let config = NodeConfig {
        home: dir.path().to_path_buf(),
        keypair: victim.clone(),
        ledger_path: ledger_path.clone(),
        network: network.clone(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: Vec::new(),
        data: Arc::new(NoData),
        round_timeout_ms: 5_000,
        sync_interval: Duration::from_millis(300),
        max_message_bytes: 4 << 20,
        wiretap: None,
        replay: None,
        freeze_before: None,
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let node = tokio::spawn(crate::run(
        config,
        move |info: &NodeInfo| {
            let _ = ready_tx.send(info.listen[0].clone());
        },
        futures::future::pending(),
    ));
    let victim_addr: Multiaddr = ready_rx.await.unwrap();

    let mut swarm =
        crate::swarm::build(libp2p_keypair(&rogue).unwrap(), Duration::from_secs(10)).unwrap();
    let topic = gossipsub::IdentTopic::new(format!("fedpool/{}/events/1", network.as_str()));
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    swarm.dial(victim_addr).unwrap();
    let victim_peer = libp2p_keypair(&victim).unwrap().public().to_peer_id();

    // A genuine event of the rogue's with its signature flipped.
    let genuine = Event::sign(
        &network,
        &rogue,
        1,
        None,
        2_000,
        fedpool_ledger::ConsentRevoked {
            model_id: model.clone(),
            consent: fedpool_ledger::EventId::from_bytes([7; 32]),
        },
    )
    .unwrap();
    let mut forged = genuine.encode();
    let last = forged.len() - 1;
    forged[last] ^= 0x01;
    assert!(
        Event::decode(&forged)
            .map(|e| e.verify_signature().is_err())
            .unwrap_or(true)
    );

    let garbage = b"this is not a chunk at all, just bytes".to_vec();
    let oversized = Chunk {
        transfer: 1,
        index: 0,
        count: 1 << 20,
        total_len: 1 << 40,
        payload: vec![0; 16],
    }
    .encode();
    let wrongly_addressed = split(
        2,
        &wire::encode(
            model.as_str(),
            &Msg::Decline {
                round: RoundId(1),
                reason: DeclineReason::NoConsent,
            },
        ),
    )
    .remove(0)
    .encode();

    let mut gossiped = false;
    let mut sent = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = poll.tick() => {
                assert!(tokio::time::Instant::now() < deadline, "the rogue could not reach the node");
                if !gossiped {
                    gossiped = swarm.behaviour_mut().gossipsub.publish(topic.clone(), forged.clone()).is_ok();
                } else if !sent {
                    for frame in [&garbage, &oversized, &wrongly_addressed] {
                        swarm.behaviour_mut().rounds.send_request(&victim_peer, frame.clone());
                    }
                    sent = true;
                } else {
                    let home = dir.path().to_path_buf();
                    let status = tokio::task::spawn_blocking(move || {
                        let mut out = serde_json::Value::Null;
                        control::call(&home, &ControlRequest::Status, |v| { out = v; Ok(()) }).unwrap();
                        out
                    }).await.unwrap();
                    if status["traffic"]["rejected_messages"].as_u64().unwrap_or(0) >= 4 {
                        let rogue_peer = libp2p_keypair(&rogue).unwrap().public().to_peer_id().to_base58();
                        assert!(
                            status["blocked"].as_array().unwrap().iter().any(|p| p == &rogue_peer),
                            "{status}"
                        );
                        // Only the publication: the forged event was never stored.
                        assert_eq!(status["ledger"]["events"], 1, "{status}");
                        break;
                    }
                }
            }
        }
    }
    node.abort();
    let store = Store::open(&ledger_path, &network).unwrap();
    assert!(store.events_by_author(&rogue.did()).unwrap().is_empty());
}
