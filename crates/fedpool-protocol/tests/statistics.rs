//! The statistics phase (round 0): a publisher runs it before round 1 and sends its scaling
//! with every round; a participant gives its statistics once, accounts them as their own
//! privacy step, and refuses a publisher that asks again, late, or under another label.

use std::sync::Arc;

use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_data::{
    ColumnKind, ColumnSpec, LabelKind, LabelSpec, Scaling, Schema, StatisticsLayout,
};
use fedpool_protocol::{
    DeclineReason, Directory, Msg, NodeId, Participant, ParticipantInput, ParticipantOutput,
    PrivacyTerms, Publisher, PublisherConfig, PublisherInput, PublisherOutput, RoundEvent, RoundId,
    RoundTask, STATISTICS_ROUND, TrainRequest, UpdateMsg,
};
use fedpool_strategy::{ClientSampling, StrategyConfig};

const PUBLISHER: NodeId = NodeId(10_000);
const MODEL_DIMENSION: usize = 4;

/// Two standardised columns with bounds: statistics vectors of 5 values.
fn layout() -> StatisticsLayout {
    let column = |name: &str| ColumnSpec {
        name: name.into(),
        kind: ColumnKind::Numeric {
            scaling: Scaling::Standardize {
                bounds: Some([0.0, 10.0]),
            },
        },
    };
    StatisticsLayout::of(&Schema {
        label: LabelSpec {
            name: "y".into(),
            kind: LabelKind::Categorical {
                classes: vec!["a".into(), "b".into()],
            },
        },
        columns: vec![column("u"), column("v")],
        column_ranges: vec![],
        local_standardize: false,
    })
    .unwrap()
}

fn private_terms() -> PrivacyTerms {
    PrivacyTerms {
        clip_norm: 1.0,
        noise_multiplier: 1.0,
        sampling_rate: Some(0.5),
        epsilon_budget: None,
        delta: 1e-5,
        secure_aggregation: false,
        secure_aggregation_threshold: 0.6,
        adaptive_clipping: None,
        secure_aggregation_group_size: None,
    }
}

fn owner(terms: &PrivacyTerms) -> Participant {
    Participant::new(NodeId(0), true, 3)
        .with_privacy_seed([3; 32])
        .with_statistics(layout().dimension())
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_publisher(PUBLISHER)
}

fn outputs(node: &mut Participant) -> Vec<ParticipantOutput> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn ask(round: RoundId, task: RoundTask, terms: &PrivacyTerms, dimension: usize) -> Msg {
    let plan = if round == STATISTICS_ROUND {
        terms.for_statistics().plan_round(10, 10, dimension)
    } else {
        terms.plan_round(10, 10, dimension)
    };
    Msg::TrainRequest(TrainRequest {
        round,
        task,
        global: Arc::new(vec![
            0.0;
            if round == STATISTICS_ROUND {
                0
            } else {
                MODEL_DIMENSION
            }
        ]),
        local: Arc::new(LocalTraining::default()),
        privacy: Arc::new(plan.unwrap()),
        secagg_commitment: None,
    })
}

/// Sends `msg` and answers any job with a vector of `answer_len` values; returns what the
/// node sent.
fn deliver(node: &mut Participant, msg: Msg, answer_len: usize) -> Vec<ParticipantOutput> {
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg,
    });
    let mut sent = Vec::new();
    for output in outputs(node) {
        match output {
            ParticipantOutput::Train(job) => {
                node.handle(ParticipantInput::Trained {
                    round: job.round,
                    outcome: Ok(TrainOutcome {
                        delta: vec![0.2; answer_len],
                        n_examples: 7,
                        final_loss: 0.0,
                        n_steps: 0,
                    }),
                });
                sent.extend(outputs(node));
            }
            other => sent.push(other),
        }
    }
    sent
}

fn declined(sent: &[ParticipantOutput]) -> Option<&DeclineReason> {
    match sent {
        [
            ParticipantOutput::Send {
                msg: Msg::Decline { reason, .. },
                ..
            },
        ] => Some(reason),
        _ => None,
    }
}

fn update(sent: &[ParticipantOutput]) -> Option<&UpdateMsg> {
    match sent {
        [
            ParticipantOutput::Send {
                msg: Msg::Update(update),
                ..
            },
        ] => Some(update),
        _ => None,
    }
}

#[test]
fn an_owner_gives_its_statistics_once_and_accounts_them_as_their_own_release() {
    let terms = private_terms();
    let mut node = owner(&terms);
    let dimension = layout().dimension();
    let sent = deliver(
        &mut node,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension,
    );
    let first = update(&sent).unwrap_or_else(|| panic!("{sent:?}"));
    assert_eq!(first.delta.len(), dimension);
    assert!(node.statistics_given());
    // One privacy step, round 0, one release, with the statistics' own dimension.
    let history = node.privacy_history().to_vec();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].round, history[0].rounds), (STATISTICS_ROUND, 1));
    let after_statistics = node.epsilon_spent();
    assert!(after_statistics > 0.0);

    // The attack: ask again, to average the noise away. Refused, and nothing is accounted.
    let again = deliver(
        &mut node,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension,
    );
    let reason = declined(&again).unwrap_or_else(|| panic!("{again:?}"));
    assert!(reason.to_string().contains("already given"), "{reason}");
    assert_eq!(node.epsilon_spent(), after_statistics);

    // Round 1 composes after it, as its own step.
    let sent = deliver(
        &mut node,
        ask(
            RoundId(1),
            RoundTask::Train { scaling: None },
            &terms,
            MODEL_DIMENSION,
        ),
        MODEL_DIMENSION,
    );
    assert!(update(&sent).is_some(), "{sent:?}");
    let history = node.privacy_history();
    assert_eq!((history[1].round, history[1].rounds), (RoundId(1), 1));
    assert!(node.epsilon_spent() > after_statistics);

    // A node restored from its history still refuses a second statistics phase.
    let mut restored = owner(&terms).restore_privacy(history).unwrap();
    assert!(restored.statistics_given());
    let sent = deliver(
        &mut restored,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension,
    );
    assert!(declined(&sent).is_some(), "{sent:?}");
}

#[test]
fn statistics_asked_late_mislabelled_or_of_a_model_without_them_are_refused() {
    let terms = private_terms();
    let dimension = layout().dimension();
    let refused = |node: &mut Participant, msg: Msg, answer_len: usize, why: &str| {
        let spent = node.epsilon_spent();
        let sent = deliver(node, msg, answer_len);
        let reason = declined(&sent).unwrap_or_else(|| panic!("{why}: {sent:?}"));
        assert!(reason.to_string().contains(why), "{reason}");
        assert_eq!(node.epsilon_spent(), spent, "{why}: nothing accounted");
    };
    // After training began: the scaling the rounds used is fixed.
    let mut node = owner(&terms);
    let sent = deliver(
        &mut node,
        ask(
            RoundId(1),
            RoundTask::Train { scaling: None },
            &terms,
            MODEL_DIMENSION,
        ),
        MODEL_DIMENSION,
    );
    assert!(update(&sent).is_some());
    refused(
        &mut node,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension,
        "training has begun",
    );
    // A statistics request numbered as a round, or a training request numbered 0.
    let mut node = owner(&terms);
    refused(
        &mut node,
        ask(RoundId(3), RoundTask::Statistics, &terms, dimension),
        dimension,
        "cannot ask for statistics",
    );
    refused(
        &mut node,
        ask(
            STATISTICS_ROUND,
            RoundTask::Train { scaling: None },
            &terms,
            dimension,
        ),
        dimension,
        "cannot ask for training",
    );
    // A model whose contract has no statistics phase.
    let mut plain = Participant::new(NodeId(0), true, 3)
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_publisher(PUBLISHER);
    refused(
        &mut plain,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension,
        "no statistics phase",
    );
    // A plan sized for another dimension than the node's own layout: refused by its check.
    let mut node = owner(&terms);
    let sent = deliver(
        &mut node,
        ask(STATISTICS_ROUND, RoundTask::Statistics, &terms, dimension),
        dimension + 1,
    );
    let reason = declined(&sent).unwrap_or_else(|| panic!("{sent:?}"));
    assert!(reason.to_string().contains("statistics vector"), "{reason}");
}

/// A publisher of a model with a statistics phase and no privacy terms, sampling `fraction`
/// of `roster` (at least 2) for `rounds` rounds.
fn plain_publisher(rounds: usize, fraction: f64, roster: Vec<NodeId>) -> Publisher {
    Publisher::new(
        PublisherConfig {
            rounds,
            sampling: ClientSampling {
                fraction: Some(fraction),
                count: None,
                min_clients: 2,
            },
            local: LocalTraining::default(),
            round_timeout_ms: 1_000,
            seed: 9,
            privacy: PrivacyTerms::none(),
            directory: Arc::new(Directory::new()),
            statistics: Some(layout()),
        },
        StrategyConfig::FedAvg.build(),
        vec![0.0; MODEL_DIMENSION],
        roster,
    )
}

#[test]
fn the_publisher_runs_the_statistics_phase_first_and_sends_its_scaling_with_every_round() {
    let layout = layout();
    let roster: Vec<NodeId> = (0..4).map(NodeId).collect();
    let mut publisher = plain_publisher(2, 0.5, roster.clone());
    let drain = |p: &mut Publisher| std::iter::from_fn(|| p.poll_output()).collect::<Vec<_>>();
    publisher.handle(PublisherInput::Tick { now_ms: 0 });
    let asked: Vec<NodeId> = drain(&mut publisher)
        .into_iter()
        .filter_map(|o| match o {
            PublisherOutput::Send {
                to,
                msg: Msg::TrainRequest(r),
            } => {
                assert_eq!(
                    (r.round, &r.task),
                    (STATISTICS_ROUND, &RoundTask::Statistics)
                );
                Some(to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked, roster, "every eligible node is asked, not a sample");
    // Node i's column u has mean i+1 (normalised by the bounds' width 10); v is 5 for all.
    let norm = (layout.dimension() as f32).sqrt();
    let mut outs = Vec::new();
    for &node in &roster {
        let u = (node.0 as f32 + 1.0) / 10.0;
        let v = 0.5;
        let vector = [1.0, u, u * u, v, v * v].map(|x| x / norm).to_vec();
        publisher.handle(PublisherInput::Received {
            from: node,
            msg: Msg::Update(UpdateMsg {
                round: STATISTICS_ROUND,
                delta: vector,
                n_examples: 10,
                train_loss: 0.0,
                within_clip: true,
                contributed: true,
            }),
        });
        outs.extend(drain(&mut publisher));
    }
    let summary = outs
        .iter()
        .find_map(|o| match o {
            PublisherOutput::Event(RoundEvent::StatisticsCompleted(s)) => Some(s.clone()),
            _ => None,
        })
        .expect("the phase completes");
    assert_eq!(summary.contributors, roster);
    let u = &summary.scaling.columns[0];
    // Mean of node means 1..4 is 2.5; the deviation between the constant-per-node values
    // is that of {1, 2, 3, 4}: √1.25.
    assert!(
        (u.mean - 2.5).abs() < 1e-5 && (u.std - 1.25f64.sqrt()).abs() < 1e-4,
        "{u:?}"
    );
    assert_eq!(publisher.scaling(), Some(&summary.scaling));
    // Round 1 starts at once and carries the scaling.
    let round_one: Vec<&TrainRequest> = outs
        .iter()
        .filter_map(|o| match o {
            PublisherOutput::Send {
                msg: Msg::TrainRequest(r),
                ..
            } => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(round_one.len(), 2, "round 1 samples half the roster");
    for request in round_one {
        assert_eq!(request.round, RoundId(1));
        assert_eq!(
            request.task,
            RoundTask::Train {
                scaling: Some(Arc::clone(&summary.scaling))
            }
        );
    }
}

#[test]
fn a_failed_statistics_phase_ends_the_run_without_training() {
    let mut publisher = plain_publisher(3, 1.0, vec![NodeId(0), NodeId(1)]);
    publisher.handle(PublisherInput::Tick { now_ms: 0 });
    // Nobody answers: the deadline passes with no statistics.
    publisher.handle(PublisherInput::Tick { now_ms: 5_000 });
    let events: Vec<RoundEvent> = std::iter::from_fn(|| publisher.poll_output())
        .filter_map(|o| match o {
            PublisherOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&events[1], RoundEvent::Failed { round, reason } if *round == STATISTICS_ROUND && reason.contains("0 nodes sent statistics")),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(RoundEvent::Finished { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RoundEvent::Started { round, .. } if round.0 >= 1)),
        "no round trains without the scaling: {events:?}"
    );
    assert!(publisher.is_done());
}
