//! A participant under any sequence of inputs: requests from its publisher and from strangers,
//! reordered, duplicated and stale training results, consent granted, revoked and expiring,
//! time moving. Whatever happens, it never sends its update to anyone but its publisher, never
//! sends one while its consent is not active, and never accounts more ε than its owner's cap.

use std::sync::Arc;

use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_protocol::{
    Msg, NodeId, Participant, ParticipantInput, ParticipantOutput, PrivacyTerms, RoundId,
    TrainRequest,
};
use proptest::prelude::*;

const PUBLISHER: NodeId = NodeId(10_000);
const STRANGER: NodeId = NodeId(7);
const DIMENSION: usize = 4;
const CAP: f64 = 4.0;

fn terms() -> PrivacyTerms {
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

#[derive(Debug, Clone)]
enum Step {
    /// A training request for `round`, from the publisher or from a stranger.
    Request {
        round: u32,
        from_publisher: bool,
    },
    /// The last training job the node asked for finishes (a no-op if none is pending).
    FinishPending,
    /// A training result for an arbitrary round arrives (stale, early or made up).
    StrayResult {
        round: u32,
    },
    /// The node's last request arrives again.
    Duplicate,
    Revoke,
    Grant,
    /// The consent now expires at `at_ms`.
    Expire {
        at_ms: u64,
    },
    Tick {
        now_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u32..30, prop::bool::weighted(0.8))
            .prop_map(|(round, from_publisher)| Step::Request { round, from_publisher }),
        4 => Just(Step::FinishPending),
        1 => (1u32..30).prop_map(|round| Step::StrayResult { round }),
        1 => Just(Step::Duplicate),
        1 => Just(Step::Revoke),
        1 => Just(Step::Grant),
        1 => (0u64..2_000).prop_map(|at_ms| Step::Expire { at_ms }),
        1 => (0u64..2_000).prop_map(|now_ms| Step::Tick { now_ms }),
    ]
}

fn request(round: u32) -> Msg {
    Msg::TrainRequest(TrainRequest {
        round: RoundId(round),
        task: fedpool_protocol::RoundTask::Train { scaling: None },
        global: Arc::new(vec![0.0; DIMENSION]),
        local: Arc::new(LocalTraining::default()),
        privacy: Arc::new(terms().plan_round(10, 10, DIMENSION).unwrap()),
        secagg_commitment: None,
    })
}

fn outcome() -> Result<TrainOutcome, String> {
    Ok(TrainOutcome {
        delta: vec![0.5; DIMENSION],
        n_examples: 5,
        final_loss: 0.3,
        n_steps: 1,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_sequence_of_inputs_makes_a_participant_leak(steps in prop::collection::vec(step(), 1..60)) {
        let mut node = Participant::new(NodeId(0), true, 1)
            .with_privacy_seed([3; 32])
            .with_privacy(terms(), Some(CAP))
            .unwrap()
            .with_publisher(PUBLISHER);
        let mut pending: Option<RoundId> = None;
        let mut last_request: Option<(NodeId, Msg)> = None;
        for step in steps {
            // The consent as it stands when this input arrives: what the node must honour.
            let input = match step {
                Step::Request { round, from_publisher } => {
                    let from = if from_publisher { PUBLISHER } else { STRANGER };
                    let msg = request(round);
                    last_request = Some((from, msg.clone()));
                    Some(ParticipantInput::Received { from, msg })
                }
                Step::FinishPending => pending
                    .take()
                    .map(|round| ParticipantInput::Trained { round, outcome: outcome() }),
                Step::StrayResult { round } => Some(ParticipantInput::Trained {
                    round: RoundId(round),
                    outcome: outcome(),
                }),
                Step::Duplicate => last_request
                    .clone()
                    .map(|(from, msg)| ParticipantInput::Received { from, msg }),
                Step::Revoke => {
                    node.set_consent(false);
                    None
                }
                Step::Grant => {
                    node.set_consent(true);
                    None
                }
                Step::Expire { at_ms } => {
                    node.set_consent_expiry(Some(at_ms));
                    None
                }
                Step::Tick { now_ms } => Some(ParticipantInput::Tick { now_ms }),
            };
            let Some(input) = input else { continue };
            node.handle(input);
            let active = node.consent_active();
            while let Some(output) = node.poll_output() {
                match output {
                    ParticipantOutput::Train(job) => {
                        prop_assert!(active, "asked to train without an active consent");
                        pending = Some(job.round);
                    }
                    ParticipantOutput::Send { to, msg } => {
                        prop_assert_eq!(to, PUBLISHER, "sent {:?} to a non-publisher", msg);
                        if let Msg::Update(update) = &msg {
                            prop_assert!(
                                active,
                                "sent the update of {} without an active consent",
                                update.round
                            );
                        }
                    }
                }
            }
            prop_assert!(
                node.epsilon_spent() <= CAP + 1e-9,
                "accounted ε = {} past the cap {}",
                node.epsilon_spent(),
                CAP
            );
        }
    }
}
