//! The round protocol driven by hand, message by message: consent, dropouts, malformed and
//! late updates, and failed rounds.

use std::sync::Arc;

use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_protocol::{
    DeclineReason, Msg, NodeId, Participant, ParticipantInput, ParticipantOutput, PrivacyTerms,
    Publisher, PublisherConfig, PublisherInput, PublisherOutput, RoundEvent, RoundId, RoundPrivacy,
    RoundSummary, UpdateMsg,
};
use fedpool_strategy::{ClientSampling, StrategyConfig};

const PUBLISHER: NodeId = NodeId(1000);

fn publisher(n_nodes: u32, rounds: usize, min_clients: usize) -> Publisher {
    let sampling: ClientSampling = ClientSampling {
        fraction: Some(1.0),
        count: None,
        min_clients,
    };
    Publisher::new(
        PublisherConfig {
            rounds,
            sampling,
            local: LocalTraining::default(),
            round_timeout_ms: 1_000,
            seed: 1,
            privacy: PrivacyTerms::none(),
            directory: Arc::default(),
            statistics: None,
        },
        StrategyConfig::FedAvg.build(),
        vec![0.0; 2],
        (0..n_nodes).map(NodeId).collect(),
    )
}

fn drain(publisher: &mut Publisher) -> Vec<PublisherOutput> {
    std::iter::from_fn(|| publisher.poll_output()).collect()
}

fn update(round: u32, delta: Vec<f32>, n_examples: usize) -> Msg {
    Msg::Update(UpdateMsg {
        round: RoundId(round),
        delta,
        n_examples,
        train_loss: 0.5,
        within_clip: true,
        contributed: true,
    })
}

fn completed(outputs: &[PublisherOutput]) -> Option<&RoundSummary> {
    outputs.iter().find_map(|o| match o {
        PublisherOutput::Event(RoundEvent::Completed(summary)) => Some(summary),
        _ => None,
    })
}

fn receive(publisher: &mut Publisher, from: u32, msg: Msg) -> Vec<PublisherOutput> {
    publisher.handle(PublisherInput::Received {
        from: NodeId(from),
        msg,
    });
    drain(publisher)
}

#[test]
fn a_node_without_consent_declines_and_never_trains() {
    let mut node = Participant::new(NodeId(0), false, 3);
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::TrainRequest(fedpool_protocol::TrainRequest {
            round: RoundId(1),
            task: fedpool_protocol::RoundTask::Train { scaling: None },
            global: Arc::new(vec![0.0; 4]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy::none()),
            secagg_commitment: None,
        }),
    });
    let outputs: Vec<_> = std::iter::from_fn(|| node.poll_output()).collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    match &outputs[0] {
        ParticipantOutput::Send {
            to,
            msg:
                Msg::Decline {
                    round,
                    reason: DeclineReason::NoConsent,
                },
        } => {
            assert_eq!((*to, *round), (PUBLISHER, RoundId(1)));
        }
        other => panic!("expected a NoConsent decline, got {other:?}"),
    }
    // A training result it never asked for is ignored, not sent.
    node.handle(ParticipantInput::Trained {
        round: RoundId(1),
        outcome: Ok(TrainOutcome {
            delta: vec![1.0; 4],
            n_examples: 3,
            final_loss: 0.1,
            n_steps: 1,
        }),
    });
    assert!(node.poll_output().is_none());
}

#[test]
fn revoked_consent_takes_effect_at_the_next_request() {
    let mut node = Participant::new(NodeId(0), true, 3);
    node.set_consent(false);
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::TrainRequest(fedpool_protocol::TrainRequest {
            round: RoundId(2),
            task: fedpool_protocol::RoundTask::Train { scaling: None },
            global: Arc::new(vec![0.0; 4]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy::none()),
            secagg_commitment: None,
        }),
    });
    assert!(matches!(
        node.poll_output(),
        Some(ParticipantOutput::Send {
            msg: Msg::Decline {
                reason: DeclineReason::NoConsent,
                ..
            },
            ..
        })
    ));
}

#[test]
fn a_full_round_aggregates_weighted_by_examples() {
    let mut p = publisher(2, 1, 1);
    p.handle(PublisherInput::Tick { now_ms: 0 });
    let outputs = drain(&mut p);
    let requests = outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                PublisherOutput::Send {
                    msg: Msg::TrainRequest(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(requests, 2);
    assert!(receive(&mut p, 0, update(1, vec![1.0, 0.0], 1)).is_empty());
    let outputs = receive(&mut p, 1, update(1, vec![4.0, 3.0], 2));
    let summary = completed(&outputs).expect("round completes when every node answered");
    assert_eq!(summary.global.as_slice(), &[3.0, 2.0]);
    assert_eq!(summary.contributors, vec![NodeId(0), NodeId(1)]);
    assert!(summary.dropped.is_empty());
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, PublisherOutput::Event(RoundEvent::Finished { .. })))
    );
    assert!(p.is_done());
}

#[test]
fn silent_nodes_are_dropped_at_the_deadline() {
    let mut p = publisher(3, 1, 1);
    p.handle(PublisherInput::Tick { now_ms: 0 });
    drain(&mut p);
    receive(&mut p, 0, update(1, vec![1.0, 1.0], 1));
    receive(&mut p, 2, update(1, vec![3.0, 3.0], 1));
    assert_eq!(p.next_deadline_ms(), Some(1_000));
    p.handle(PublisherInput::Tick { now_ms: 999 });
    assert!(
        drain(&mut p).is_empty(),
        "the round stays open before its deadline"
    );
    p.handle(PublisherInput::Tick { now_ms: 1_000 });
    let outputs = drain(&mut p);
    let summary = completed(&outputs).expect("the deadline closes the round");
    assert_eq!(summary.dropped, vec![NodeId(1)]);
    assert_eq!(summary.global.as_slice(), &[2.0, 2.0]);
}

#[test]
fn malformed_late_and_unsolicited_updates_are_not_aggregated() {
    let mut p = publisher(3, 2, 1);
    p.handle(PublisherInput::Tick { now_ms: 0 });
    drain(&mut p);
    // Wrong length: rejected with a reason.
    receive(&mut p, 0, update(1, vec![1.0, 2.0, 3.0], 1));
    // Not sampled (no such node): ignored.
    receive(&mut p, 7, update(1, vec![100.0, 100.0], 1));
    // Wrong round: ignored.
    receive(&mut p, 1, update(5, vec![100.0, 100.0], 1));
    receive(&mut p, 1, update(1, vec![2.0, 2.0], 1));
    // A second update from the same node in the same round: ignored.
    receive(&mut p, 1, update(1, vec![100.0, 100.0], 1));
    let outputs = receive(&mut p, 2, update(1, vec![4.0, 4.0], 1));
    let summary = completed(&outputs).expect("round completes");
    assert_eq!(summary.global.as_slice(), &[3.0, 3.0]);
    assert_eq!(summary.rejected.len(), 1);
    assert_eq!(summary.rejected[0].0, NodeId(0));
    assert!(
        summary.rejected[0].1.contains("3 values"),
        "{:?}",
        summary.rejected
    );
    // A late update for round 1 arriving during round 2 changes nothing.
    let outputs = receive(&mut p, 0, update(1, vec![100.0, 100.0], 1));
    assert!(completed(&outputs).is_none());
}

#[test]
fn too_few_updates_fail_the_round_and_keep_the_model() {
    let mut p = publisher(3, 1, 2);
    p.handle(PublisherInput::Tick { now_ms: 0 });
    drain(&mut p);
    receive(&mut p, 0, update(1, vec![1.0, 1.0], 1));
    receive(
        &mut p,
        1,
        Msg::Decline {
            round: RoundId(1),
            reason: DeclineReason::NoConsent,
        },
    );
    p.handle(PublisherInput::Tick { now_ms: 5_000 });
    let outputs = drain(&mut p);
    let reason = outputs
        .iter()
        .find_map(|o| match o {
            PublisherOutput::Event(RoundEvent::Failed { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .expect("round fails");
    assert!(reason.contains("1 updates arrived, at least 2"), "{reason}");
    assert_eq!(p.global().as_slice(), &[0.0, 0.0]);
}
