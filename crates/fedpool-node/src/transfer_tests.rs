//! Size is bounded by memory, not by the transport: a 300 MB parameter vector travels between
//! two nodes' swarms in chunks, through the same outbox, codec and reassembler that carry round
//! messages, and arrives bit for bit.

use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;

use crate::chunk::{Chunk, Reassembler};
use crate::identity::libp2p_keypair;
use crate::outbox::Outbox;
use crate::swarm::{BehaviourEvent, build};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_parameter_vector_crosses_in_chunks() {
    let n_params = 75_000_000; // 300 MB of f32
    let message: Vec<u8> = (0..n_params as u32)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    let expected = blake3::hash(&message);
    let sender_key = libp2p_keypair(&fedpool_ledger::Keypair::insecure_from_seed(21)).unwrap();
    let receiver_key = libp2p_keypair(&fedpool_ledger::Keypair::insecure_from_seed(22)).unwrap();
    let receiver_peer = receiver_key.public().to_peer_id();
    let mut sender = build(sender_key, Duration::from_secs(120), false).unwrap();
    let mut receiver = build(receiver_key, Duration::from_secs(120), false).unwrap();
    receiver
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = receiver.select_next_some().await {
            break address;
        }
    };
    sender.dial(addr).unwrap();
    let receiver = tokio::spawn(async move {
        // Accept the connection before anything is sent.
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = receiver.select_next_some().await {
                return receiver;
            }
        }
    });
    loop {
        if let SwarmEvent::ConnectionEstablished { .. } = sender.select_next_some().await {
            break;
        }
    }
    let mut receiver = receiver.await.unwrap();

    let receive = tokio::spawn(async move {
        let mut reassembler = Reassembler::new(400 << 20, 2);
        loop {
            if let SwarmEvent::Behaviour(BehaviourEvent::Rounds(
                request_response::Event::Message {
                    peer,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) = receiver.select_next_some().await
            {
                let chunk = Chunk::decode(&request).unwrap();
                let done = reassembler.accept(&peer, chunk, 0).unwrap();
                let _ = receiver
                    .behaviour_mut()
                    .rounds
                    .send_response(channel, Vec::new());
                if let Some(whole) = done {
                    // Keep answering while the last acknowledgements go out.
                    let hash = blake3::hash(&whole);
                    for _ in 0..50 {
                        tokio::select! {
                            _ = receiver.select_next_some() => {}
                            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        }
                    }
                    return (whole.len(), hash);
                }
            }
        }
    });

    let mut outbox = Outbox::default();
    outbox.push(&mut sender.behaviour_mut().rounds, receiver_peer, message);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while outbox.pending() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transfer stalled"
        );
        tokio::select! {
            event = sender.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Rounds(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, .. }, ..
                })) => outbox.settled(&mut sender.behaviour_mut().rounds, request_id),
                SwarmEvent::Behaviour(BehaviourEvent::Rounds(request_response::Event::OutboundFailure { error, .. })) => {
                    panic!("a chunk failed: {error}")
                }
                _ => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let (len, hash) = receive.await.unwrap();
    assert_eq!(len, n_params * 4);
    assert_eq!(hash, expected);
}
