//! A rogue peer against a running node: garbage, oversized and wrongly-addressed round
//! messages and a forged gossiped event are each rejected, counted against the peer (blocked
//! at the ban score), and nothing of them is stored.

use std::sync::Arc;
use std::time::Duration;

use fedpool_core::Contract;
use fedpool_data::Table;
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
    fn training_data(&self, _: &Contract, _: &str) -> Result<Table, String> {
        Err("no data in this test".into())
    }
    fn evaluation_data(&self, _: &Contract, _: &str) -> Result<Table, String> {
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
        consent_policy: None,
        mdns: false,
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

    let mut swarm = crate::swarm::build(
        libp2p_keypair(&rogue).unwrap(),
        Duration::from_secs(10),
        false,
    )
    .unwrap();
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

/// A consenting member turned rogue: it answers round 1 with an update and sends it a second
/// time, re-addresses it to a model it has no part in, and answers round 2 only with its
/// recorded round-1 update. The duplicate counts once, the re-addressed copy is rejected, and
/// round 2 goes on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_replayed_update_counts_once_and_never_in_another_round_or_model() {
    use crate::chunk::Chunk;
    use crate::test_support::{CsvData, call, consent, digits_csv, publish_digits, start_node};
    use fedpool_protocol::UpdateMsg;

    let network = NetworkId::new("replay-test").unwrap();
    let publisher = Keypair::insecure_from_seed(21);
    let owners = [
        Keypair::insecure_from_seed(22),
        Keypair::insecure_from_seed(23),
    ];
    let rogue = Keypair::insecure_from_seed(24);
    let pub_dir = tempfile::tempdir().unwrap();
    let owner_dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let model = {
        let mut store = Store::open(&pub_dir.path().join("ledger.db"), &network).unwrap();
        let model = publish_digits(&mut store, &publisher);
        for key in owners.iter().chain([&rogue]) {
            consent(&mut store, key, &publisher, &model, "any");
        }
        for dir in &owner_dirs {
            let mut own = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
            own.import(store.events().unwrap()).unwrap();
        }
        model
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
    let mut honest = Vec::new();
    for (i, dir) in owner_dirs.iter().enumerate() {
        let rows: String = digits_csv(400)
            .lines()
            .skip(1 + 200 * i)
            .take(200)
            .map(|l| format!("{l}\n"))
            .collect();
        honest.push(
            start_node(
                dir.path(),
                &owners[i],
                &network,
                vec![pub_addr.clone()],
                Arc::new(CsvData(format!("{}{rows}", digits_csv(0)))),
                None,
            )
            .await,
        );
    }
    let mut swarm = crate::swarm::build(
        libp2p_keypair(&rogue).unwrap(),
        Duration::from_secs(10),
        false,
    )
    .unwrap();
    swarm.dial(pub_addr).unwrap();
    let publisher_peer = libp2p_keypair(&publisher).unwrap().public().to_peer_id();
    // Round 1 must reach the rogue: train once it and both owners are connected.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } =
                swarm.select_next_some().await
            {
                break;
            }
        }
    })
    .await
    .expect("the rogue could not connect");
    loop {
        let status = call(pub_dir.path(), ControlRequest::Status).await;
        if status[0]["peers"].as_array().map_or(0, Vec::len) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let train = {
        let home = pub_dir.path().to_path_buf();
        let model = model.model_id.as_str().to_string();
        tokio::spawn(async move {
            call(
                &home,
                ControlRequest::Train {
                    model,
                    rounds: Some(2),
                    eval: None,
                },
            )
            .await
        })
    };
    let mut transfer = 100;
    let mut send = |swarm: &mut libp2p::Swarm<crate::swarm::Behaviour>, bytes: &[u8]| {
        transfer += 1;
        for chunk in split(transfer, bytes) {
            swarm
                .behaviour_mut()
                .rounds
                .send_request(&publisher_peer, chunk.encode());
        }
    };
    let mut recorded: Option<Vec<u8>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !train.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "training did not finish"
        );
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        let libp2p::swarm::SwarmEvent::Behaviour(crate::swarm::BehaviourEvent::Rounds(
            libp2p::request_response::Event::Message {
                message:
                    libp2p::request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            },
        )) = event
        else {
            continue;
        };
        let _ = swarm
            .behaviour_mut()
            .rounds
            .send_response(channel, Vec::new());
        let chunk = Chunk::decode(&request).unwrap();
        assert_eq!(chunk.count, 1, "a digits model fits one chunk");
        let (_, msg) = wire::decode(&chunk.payload).unwrap();
        let Msg::TrainRequest(request) = msg else {
            continue;
        };
        match request.round.0 {
            1 => {
                let update = wire::encode(
                    model.model_id.as_str(),
                    &Msg::Update(UpdateMsg {
                        round: request.round,
                        delta: vec![0.0; request.global.len()],
                        n_examples: 100,
                        train_loss: 0.0,
                        within_clip: true,
                        contributed: true,
                    }),
                );
                send(&mut swarm, &update);
                send(&mut swarm, &update);
                let (_, msg) = wire::decode(&update).unwrap();
                send(&mut swarm, &wire::encode("another-model", &msg));
                recorded = Some(update);
            }
            _ => send(&mut swarm, recorded.as_ref().unwrap()),
        }
    }
    let lines = train.await.unwrap();
    let completed: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "completed").collect();
    assert_eq!(completed.len(), 2, "{lines:?}");
    // Round 1: the two honest owners and the rogue, once.
    assert_eq!(completed[0]["contributors"], 3, "{}", completed[0]);
    // Round 2: the replayed round-1 update is not an answer; the rogue is a dropout.
    assert_eq!(completed[1]["contributors"], 2, "{}", completed[1]);
    assert_eq!(completed[1]["dropped"], 1, "{}", completed[1]);
    let status = call(pub_dir.path(), ControlRequest::Status).await;
    assert!(
        status[0]["traffic"]["rejected_messages"].as_u64().unwrap() >= 1,
        "the update re-addressed to another model was not rejected: {}",
        status[0]
    );
    let store = Store::open(&pub_dir.path().join("ledger.db"), &network).unwrap();
    let committed: Vec<usize> = store
        .events_by_model(&model.model_id)
        .unwrap()
        .iter()
        .filter_map(|e| match e.body() {
            fedpool_ledger::Body::RoundCommitted(r) => Some(r.participants.len()),
            _ => None,
        })
        .collect();
    assert_eq!(committed, vec![3, 2]);
}

/// A publisher that ignores a revocation and asks anyway: the owner's node re-reads its own
/// ledger at the request and declines, training nothing and sending nothing of its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_who_revoked_refuses_a_request_sent_anyway() {
    use crate::test_support::{CsvData, digits_csv, publish_digits, start_node};
    use fedpool_core::LocalTraining;
    use fedpool_ledger::{ConsentGranted, ConsentRevoked};
    use fedpool_protocol::{RoundPrivacy, TrainRequest};

    let network = NetworkId::new("revoked-test").unwrap();
    let publisher = Keypair::insecure_from_seed(31);
    let owner = Keypair::insecure_from_seed(32);
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let mut store = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
        let model = publish_digits(&mut store, &publisher);
        let granted = store
            .append_next(
                &owner,
                2_000,
                ConsentGranted {
                    model_id: model.model_id.clone(),
                    publisher: publisher.did(),
                    card_hash: model.card_hash.clone(),
                    dataset_fingerprint: "any".into(),
                    fields: model.terms.required_fields.clone(),
                    expires_at_ms: None,
                    epsilon_cap: None,
                    decided_by: None,
                },
            )
            .unwrap();
        store
            .append_next(
                &owner,
                3_000,
                ConsentRevoked {
                    model_id: model.model_id.clone(),
                    consent: granted.id(),
                },
            )
            .unwrap();
        model
    };
    let (owner_addr, _node) = start_node(
        dir.path(),
        &owner,
        &network,
        vec![],
        Arc::new(CsvData(digits_csv(50))),
        None,
    )
    .await;
    let mut swarm = crate::swarm::build(
        libp2p_keypair(&publisher).unwrap(),
        Duration::from_secs(10),
        false,
    )
    .unwrap();
    swarm.dial(owner_addr).unwrap();
    let owner_peer = libp2p_keypair(&owner).unwrap().public().to_peer_id();
    let request = wire::encode(
        model.model_id.as_str(),
        &Msg::TrainRequest(TrainRequest {
            round: RoundId(1),
            task: fedpool_protocol::RoundTask::Train { scaling: None },
            global: Arc::new(vec![0.0; 650]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy::none()),
            secagg_commitment: None,
        }),
    );
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match swarm.select_next_some().await {
                libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => {
                    for chunk in split(1, &request) {
                        swarm
                            .behaviour_mut()
                            .rounds
                            .send_request(&owner_peer, chunk.encode());
                    }
                }
                libp2p::swarm::SwarmEvent::Behaviour(crate::swarm::BehaviourEvent::Rounds(
                    libp2p::request_response::Event::Message {
                        message:
                            libp2p::request_response::Message::Request {
                                request, channel, ..
                            },
                        ..
                    },
                )) => {
                    let _ = swarm
                        .behaviour_mut()
                        .rounds
                        .send_response(channel, Vec::new());
                    let chunk = Chunk::decode(&request).unwrap();
                    return wire::decode(&chunk.payload).unwrap();
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the owner's node never answered");
    assert_eq!(answer.0, model.model_id.as_str());
    assert_eq!(
        answer.1,
        Msg::Decline {
            round: RoundId(1),
            reason: DeclineReason::NoConsent,
        }
    );
}
