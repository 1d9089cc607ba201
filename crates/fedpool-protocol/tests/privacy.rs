//! Privacy in the round protocol, driven by hand: budgets enforced by the publisher and by each
//! node, plans checked against the contract, and secure rounds end to end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_protocol::{
    Aggregation, DeclineReason, Directory, Driver, Host, Msg, NodeId, Participant,
    ParticipantInput, ParticipantOutput, PrivacyTerms, Publisher, PublisherConfig, RoundEvent,
    RoundId, RoundSummary, SecAggSetup, Sequential, Stage, TrainJob, TrainRequest,
};
use fedpool_strategy::{ClientSampling, StrategyConfig};

const PUBLISHER: NodeId = NodeId(10_000);

fn terms(clip: f64, z: f64, q: f64, budget: Option<f64>, secure: bool) -> PrivacyTerms {
    PrivacyTerms {
        clip_norm: clip,
        noise_multiplier: z,
        sampling_rate: Some(q),
        epsilon_budget: budget,
        delta: 1e-5,
        secure_aggregation: secure,
        secure_aggregation_threshold: 0.6,
        adaptive_clipping: None,
        secure_aggregation_group_size: None,
    }
}

fn identities(n: u32) -> (Vec<SigningKey>, Arc<Directory>) {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let directory: Directory = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (NodeId(i as u32), k.verifying_key()))
        .collect();
    (keys, Arc::new(directory))
}

fn request(round: u32, privacy: fedpool_protocol::RoundPrivacy) -> Msg {
    Msg::TrainRequest(TrainRequest {
        round: RoundId(round),
        task: fedpool_protocol::RoundTask::Train { scaling: None },
        global: Arc::new(vec![0.0; 4]),
        local: Arc::new(LocalTraining::default()),
        privacy: Arc::new(privacy),
        secagg_commitment: Some(SecAggSetup::commitment(&TEST_SEED)),
    })
}

/// The secure-aggregation seed the test publisher commits to in every request.
const TEST_SEED: [u8; 32] = [1; 32];

fn outputs(node: &mut Participant) -> Vec<ParticipantOutput> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

#[test]
fn a_node_refuses_the_round_that_would_pass_its_owners_cap() {
    let terms = terms(1.0, 1.0, 0.1, Some(10.0), false);
    let cap = 3.0;
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(terms.clone(), Some(cap))
        .unwrap();
    let plan = terms.plan_round(10, 100, 4).unwrap();
    let mut refused_at = None;
    for round in 1..=40 {
        node.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg: request(round, plan.clone()),
        });
        match outputs(&mut node).as_slice() {
            [ParticipantOutput::Train(job)] => node.handle(ParticipantInput::Trained {
                round: job.round,
                outcome: Ok(TrainOutcome {
                    delta: vec![0.1; 4],
                    n_examples: 5,
                    final_loss: 0.3,
                    n_steps: 1,
                }),
            }),
            [
                ParticipantOutput::Send {
                    msg:
                        Msg::Decline {
                            reason: DeclineReason::PrivacyBudget(why),
                            ..
                        },
                    ..
                },
            ] => {
                assert!(why.contains("cap"), "{why}");
                refused_at = Some(round);
                break;
            }
            other => panic!("unexpected outputs in round {round}: {other:?}"),
        }
        let _ = outputs(&mut node);
    }
    let refused_at = refused_at.expect("the node never refused");
    // q = 0.1, z = 1: ε(T) first passes 3 after a handful of rounds, never at round 1.
    assert!(refused_at > 1, "refused at {refused_at}");
    assert!(node.epsilon_spent() <= cap, "{}", node.epsilon_spent());
    let next = fedpool_privacy::epsilon(0.1, 1.0, u64::from(refused_at), 1e-5).unwrap();
    assert!(next > cap, "round {refused_at} would spend {next}");
}

#[test]
fn a_node_accounts_the_contracts_sampling_rate_or_a_higher_one_never_a_lower() {
    let contract = terms(1.0, 1.0, 0.1, Some(100.0), false);
    for (requested_q, accounted_q) in [(1e-6, 0.1), (0.1, 0.1), (0.5, 0.5)] {
        let mut node = Participant::new(NodeId(0), true, 1)
            .with_privacy(contract.clone(), None)
            .unwrap();
        let plan = terms(1.0, 1.0, requested_q, Some(100.0), false)
            .plan_round(10, 100_000_000, 4)
            .unwrap();
        node.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg: request(1, plan),
        });
        assert!(matches!(
            outputs(&mut node).as_slice(),
            [ParticipantOutput::Train(_)]
        ));
        let expected = fedpool_privacy::epsilon(accounted_q, 1.0, 1, 1e-5).unwrap();
        assert!(
            (node.epsilon_spent() - expected).abs() < 1e-9,
            "q {requested_q}: spent {} expected {expected}",
            node.epsilon_spent()
        );
    }
}

#[test]
fn a_jump_in_round_numbers_is_accounted_at_once() {
    let terms = terms(1.0, 1.0, 0.1, Some(1e9), false);
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(terms.clone(), Some(50.0))
        .unwrap();
    let plan = terms.plan_round(10, 100, 4).unwrap();
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(u32::MAX, plan),
    });
    assert!(matches!(
        outputs(&mut node).as_slice(),
        [ParticipantOutput::Send {
            msg: Msg::Decline {
                reason: DeclineReason::PrivacyBudget(_),
                ..
            },
            ..
        }]
    ));
    // Refused at once (composing 2^32 rounds is one step), and nothing is recorded: the node
    // contributed to none of them.
    assert_eq!(node.epsilon_spent(), 0.0);
}

#[test]
fn only_the_models_publisher_can_ask() {
    let terms = terms(1.0, 1.0, 0.1, Some(10.0), false);
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_publisher(PUBLISHER);
    node.handle(ParticipantInput::Received {
        from: NodeId(77),
        msg: request(1, terms.plan_round(10, 100, 4).unwrap()),
    });
    assert!(outputs(&mut node).is_empty());
    assert_eq!(node.epsilon_spent(), 0.0);
}

#[test]
fn a_node_refuses_a_tampered_secure_encoding() {
    let contract = terms(1.0, 1.0, 0.1, Some(100.0), true);
    let honest = contract.plan_round(30, 300, 16).unwrap();
    let Aggregation::Secure {
        encoding,
        min_survivors,
        ..
    } = honest.aggregation.clone()
    else {
        panic!("secure plan expected");
    };
    let coarse = fedpool_privacy::ddg::DdgParams::new(
        &fedpool_privacy::ddg::DdgConfig::new(16, 1.0, 30, encoding.noise_std(), 32),
        0.2,
    )
    .unwrap();
    let less_noise = terms(1.0, 0.2, 0.1, Some(100.0), true)
        .plan_round(30, 300, 16)
        .unwrap();
    let mut fewer_survivors = honest.clone();
    fewer_survivors.aggregation = Aggregation::Secure {
        encoding,
        min_survivors: min_survivors - 5,
        count_noise: None,
    };
    let mut coarse_plan = honest.clone();
    coarse_plan.aggregation = Aggregation::Secure {
        encoding: coarse,
        min_survivors,
        count_noise: None,
    };
    for (what, plan) in [
        ("coarse granularity", coarse_plan),
        ("less noise", less_noise),
        ("fewer survivors", fewer_survivors),
    ] {
        let mut node = Participant::new(NodeId(0), true, 1)
            .with_privacy(contract.clone(), None)
            .unwrap();
        let mut msg = request(1, plan);
        if let Msg::TrainRequest(r) = &mut msg {
            r.global = Arc::new(vec![0.0; 16]);
        }
        node.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg,
        });
        let out = outputs(&mut node);
        assert!(
            matches!(
                out.as_slice(),
                [ParticipantOutput::Send {
                    msg: Msg::Decline {
                        reason: DeclineReason::PrivacyTerms(_),
                        ..
                    },
                    ..
                }]
            ),
            "{what}: {out:?}"
        );
        assert_eq!(node.epsilon_spent(), 0.0, "{what}");
    }
    // A secure plan that declares a Gaussian mechanism is accounted as the DDG it is.
    let mut mislabelled = honest.clone();
    mislabelled.mechanism = Some(fedpool_privacy::RoundMechanism::SubsampledGaussian {
        q: 0.1,
        noise_multiplier: 1.0,
    });
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(contract.clone(), None)
        .unwrap();
    let mut msg = request(1, mislabelled);
    if let Msg::TrainRequest(r) = &mut msg {
        r.global = Arc::new(vec![0.0; 16]);
    }
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg,
    });
    let honest_cost =
        fedpool_privacy::epsilon_for_rounds(&honest.mechanism.unwrap(), 1, 1e-5).unwrap();
    assert!((node.epsilon_spent() - honest_cost).abs() < 1e-9);
}

#[test]
fn a_node_refuses_a_plan_with_less_noise_than_its_contract() {
    let contract = terms(1.0, 1.0, 0.1, Some(10.0), false);
    for weaker in [
        terms(1.0, 0.5, 0.1, Some(10.0), false),
        terms(2.0, 1.0, 0.1, Some(10.0), false),
    ] {
        let mut node = Participant::new(NodeId(0), true, 1)
            .with_privacy(contract.clone(), None)
            .unwrap();
        let plan = weaker.plan_round(10, 100, 4).unwrap();
        node.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg: request(1, plan),
        });
        let out = outputs(&mut node);
        assert!(
            matches!(
                out.as_slice(),
                [ParticipantOutput::Send {
                    msg: Msg::Decline {
                        reason: DeclineReason::PrivacyTerms(_),
                        ..
                    },
                    ..
                }]
            ),
            "{weaker:?} → {out:?}"
        );
    }
}

/// An in-memory network of one publisher and `n` participants, run by the protocol's own
/// driver. Training is replaced by a fixed delta per node. `drops` stops a node's messages
/// from the given stage on.
struct Net {
    driver: Driver,
    host: NetHost,
    now_ms: u64,
    plain_updates_seen: usize,
    events: Vec<RoundEvent>,
}

/// The test network's side of the driver: a FIFO queue with dropouts.
#[derive(Default)]
struct NetHost {
    queue: VecDeque<(NodeId, NodeId, Msg)>,
    deltas: Vec<Vec<f32>>,
    drops: BTreeMap<NodeId, Stage>,
    gone: std::collections::BTreeSet<NodeId>,
    jobs: Vec<TrainJob>,
    events: Vec<RoundEvent>,
    masked_inputs_sent: usize,
    /// What participants handed the host, in order: (node, "privacy" or the message's stage).
    trace: Vec<(NodeId, String)>,
}

impl NetHost {
    /// "Trains" every asked job: each node's fixed delta.
    #[allow(clippy::type_complexity)]
    fn train_jobs(&mut self) -> Vec<(NodeId, RoundId, Result<TrainOutcome, String>)> {
        std::mem::take(&mut self.jobs)
            .into_iter()
            .map(|job| {
                let outcome = Ok(TrainOutcome {
                    delta: self.deltas[job.node.0 as usize].clone(),
                    n_examples: 10,
                    final_loss: 0.1,
                    n_steps: 1,
                });
                (job.node, job.round, outcome)
            })
            .collect()
    }
}

impl Host for NetHost {
    type Error = std::convert::Infallible;

    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) -> Result<(), Self::Error> {
        if from != PUBLISHER {
            if let Some(stage) = msg.participant_stage()
                && self.drops.get(&from).is_some_and(|s| *s <= stage)
            {
                self.gone.insert(from);
            }
            if self.gone.contains(&from) {
                return Ok(());
            }
            self.trace
                .push((from, format!("{:?}", msg.participant_stage())));
            if msg.participant_stage() == Some(Stage::MaskedInput) {
                self.masked_inputs_sent += 1;
            }
        }
        self.queue.push_back((from, to, msg));
        Ok(())
    }

    fn train(&mut self, job: TrainJob) -> Result<(), Self::Error> {
        self.jobs.push(job);
        Ok(())
    }

    fn event(&mut self, event: RoundEvent) -> Result<(), Self::Error> {
        self.events.push(event);
        Ok(())
    }

    fn privacy_accounted(
        &mut self,
        node: NodeId,
        records: &[fedpool_protocol::PrivacyRecord],
    ) -> Result<(), Self::Error> {
        for _ in records {
            self.trace.push((node, "privacy".into()));
        }
        Ok(())
    }
}

impl Net {
    fn new(terms: PrivacyTerms, deltas: Vec<Vec<f32>>, rounds: usize) -> Net {
        let n = deltas.len() as u32;
        let (keys, directory) = identities(n);
        let mut driver = Driver::new();
        for (i, key) in keys.into_iter().enumerate() {
            driver.add_participant(
                Participant::new(NodeId(i as u32), true, 100 + i as u64)
                    .with_privacy_seed([i as u8; 32])
                    .with_privacy(terms.clone(), None)
                    .unwrap()
                    .with_identity(key, Arc::clone(&directory)),
            );
        }
        let publisher = publisher_for(terms, rounds, n, deltas[0].len());
        Net {
            driver: driver.with_publisher(PUBLISHER, publisher),
            host: NetHost {
                deltas,
                ..NetHost::default()
            },
            now_ms: 0,
            plain_updates_seen: 0,
            events: Vec::new(),
        }
    }

    fn publisher(&self) -> &Publisher {
        self.driver.publisher().unwrap()
    }

    fn nodes(&self) -> impl Iterator<Item = &Participant> {
        self.driver.participants()
    }

    fn replace_publisher(&mut self, publisher: Publisher) {
        self.driver = std::mem::take(&mut self.driver).with_publisher(PUBLISHER, publisher);
    }

    fn run(&mut self) {
        let Ok(()) = self.driver.tick(self.now_ms, &mut self.host);
        for _ in 0..100_000 {
            for event in std::mem::take(&mut self.host.events) {
                match event {
                    RoundEvent::Finished { .. } => return,
                    e => self.events.push(e),
                }
            }
            if let Some((from, to, msg)) = self.host.queue.pop_front() {
                if to == PUBLISHER && matches!(msg, Msg::Update(_)) {
                    self.plain_updates_seen += 1;
                }
                if self.host.gone.contains(&to) {
                    continue;
                }
                let Ok(()) = self
                    .driver
                    .deliver([(from, to, msg)], &Sequential, &mut self.host);
                continue;
            }
            if !self.host.jobs.is_empty() {
                let results = self.host.train_jobs();
                let Ok(()) = self.driver.trained(results, &mut self.host);
                continue;
            }
            match self
                .driver
                .publisher()
                .and_then(Publisher::next_deadline_ms)
            {
                Some(deadline) => {
                    self.now_ms = self.now_ms.max(deadline);
                    let Ok(()) = self.driver.tick(self.now_ms, &mut self.host);
                }
                None => return,
            }
        }
        panic!("the round never finished");
    }

    /// Like [`Net::run`], but every queued message is delivered in one batch, as the
    /// simulation does, with `executor` running the participants' inboxes.
    fn run_batched(&mut self, executor: &dyn fedpool_protocol::Executor) {
        let Ok(()) = self.driver.tick(self.now_ms, &mut self.host);
        for _ in 0..100_000 {
            if std::mem::take(&mut self.host.events)
                .into_iter()
                .inspect(|e| self.events.push(e.clone()))
                .any(|e| matches!(e, RoundEvent::Finished { .. }))
            {
                return;
            }
            let batch: Vec<_> = self.host.queue.drain(..).collect();
            if !batch.is_empty() {
                let Ok(()) = self.driver.deliver(batch, executor, &mut self.host);
                continue;
            }
            if !self.host.jobs.is_empty() {
                let results = self.host.train_jobs();
                let Ok(()) = self.driver.trained(results, &mut self.host);
                continue;
            }
            let deadline = self.driver.next_deadline_ms().expect("a round in progress");
            self.now_ms = self.now_ms.max(deadline);
            let Ok(()) = self.driver.tick(self.now_ms, &mut self.host);
        }
        panic!("the rounds never finished");
    }

    fn completed(&self) -> Vec<&RoundSummary> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RoundEvent::Completed(s) => Some(s),
                _ => None,
            })
            .collect()
    }
}

fn deltas(n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            (0..dim)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 / 20.0 - 0.25)
                .collect()
        })
        .collect()
}

/// The clipped updates of `members`, summed and divided by the number sampled.
fn clipped_mean(deltas: &[Vec<f32>], members: &[usize], clip: f64, sampled: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; deltas[0].len()];
    for &m in members {
        let mut d = deltas[m].clone();
        fedpool_privacy::clip_l2(&mut d, clip).unwrap();
        sum.iter_mut()
            .zip(&d)
            .for_each(|(s, &x)| *s += f64::from(x));
    }
    sum.iter().map(|s| (s / sampled as f64) as f32).collect()
}

#[test]
fn a_secure_round_releases_the_mean_of_clipped_updates_and_no_plain_update() {
    let terms = terms(1.0, 0.0, 1.0, None, true);
    let data = deltas(8, 40);
    let mut net = Net::new(terms, data.clone(), 1);
    net.run();
    let rounds = net.completed();
    assert_eq!(rounds.len(), 1, "{:?}", net.events);
    let summary = rounds[0];
    assert!(summary.secure_aggregation);
    assert_eq!(summary.contributors.len(), 8);
    assert_eq!(net.plain_updates_seen, 0);
    let expected = clipped_mean(&data, &(0..8).collect::<Vec<_>>(), 1.0, 8);
    for (got, want) in summary.global.iter().zip(&expected) {
        // Only the encoding's rounding separates the two (granularity ≈ 1e-9 here).
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}

#[test]
fn a_secure_round_survives_dropouts_at_every_stage() {
    for stage in Stage::SECURE {
        let terms = terms(1.0, 0.0, 1.0, None, true);
        let data = deltas(10, 16);
        let mut net = Net::new(terms, data.clone(), 1);
        net.host.drops.insert(NodeId(3), stage);
        net.run();
        let rounds = net.completed();
        assert_eq!(rounds.len(), 1, "{stage:?}: {:?}", net.events);
        let summary = rounds[0];
        // A node gone before its masked input is out of the sum; one gone after it is in.
        let in_sum = stage >= Stage::ConsistencyCheck;
        assert_eq!(
            summary.contributors.contains(&NodeId(3)),
            in_sum,
            "{stage:?}"
        );
        let members: Vec<usize> = summary.contributors.iter().map(|n| n.0 as usize).collect();
        // Divided by the 10 sampled, not by those that survived: the count stays private.
        let expected = clipped_mean(&data, &members, 1.0, 10);
        for (got, want) in summary.global.iter().zip(&expected) {
            assert!(
                (got - want).abs() < 1e-4,
                "{stage:?}: {got} vs {want}; contributors {:?}",
                summary.contributors
            );
        }
    }
}

#[test]
fn a_secure_round_below_the_noise_threshold_fails_and_keeps_the_model() {
    // 10 members, threshold 0.8: the sum must hold 8 members' noise. With 3 gone before their
    // masked input, secure aggregation itself could still finish (all-pairs needs 5), but the
    // members refuse to unmask a sum of 7 and the publisher would refuse to release it.
    let mut terms = terms(1.0, 0.0, 1.0, None, true);
    terms.secure_aggregation_threshold = 0.8;
    let mut net = Net::new(terms, deltas(10, 8), 1);
    for node in 0..3 {
        net.host.drops.insert(NodeId(node), Stage::MaskedInput);
    }
    net.run();
    assert!(net.completed().is_empty());
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, RoundEvent::Failed { .. })),
        "{:?}",
        net.events
    );
    assert!(net.publisher().global().iter().all(|&x| x == 0.0));
    let refused = net
        .nodes()
        .filter(|n| {
            n.secure_aborts()
                .iter()
                .any(|(_, why)| why.contains("needs 8"))
        })
        .count();
    assert_eq!(refused, 7, "every remaining member refuses to unmask");
}

#[test]
fn a_publisher_with_a_forged_identity_gets_no_masked_input() {
    let terms = terms(1.0, 0.0, 1.0, None, true);
    let data = deltas(5, 8);
    // The publisher claims node 2's identity is a key it holds, and speaks for node 2 with it:
    // the honest members check node 2's signed session keys against the identity they know.
    let forged = SigningKey::from_bytes(&[99; 32]);
    let (_, honest_directory) = identities(5);
    let mut forged_directory = (*honest_directory).clone();
    forged_directory.insert(NodeId(2), forged.verifying_key());
    let forged_directory = Arc::new(forged_directory);
    let mut net = Net::new(terms.clone(), data, 1);
    net.replace_publisher(Publisher::new(
        PublisherConfig {
            rounds: 1,
            sampling: ClientSampling {
                fraction: Some(1.0),
                count: None,
                min_clients: 1,
            },
            local: LocalTraining::default(),
            round_timeout_ms: 1_000,
            seed: 7,
            privacy: terms.clone(),
            directory: Arc::clone(&forged_directory),
            statistics: None,
        },
        StrategyConfig::FedAvg.build(),
        vec![0.0; 8],
        (0..5).map(NodeId).collect(),
    ));
    net.driver.add_participant(
        Participant::new(NodeId(2), true, 9)
            .with_privacy(terms, None)
            .unwrap()
            .with_identity(forged, forged_directory),
    );
    net.run();
    assert!(net.completed().is_empty(), "{:?}", net.events);
    // The publisher's config binds the forged identity, so no honest member's signed keys
    // match it and nobody ever reaches the masked-input stage. (The secagg crate's tests cover
    // a relaying server that swaps keys: there the members abort.)
    assert_eq!(net.host.masked_inputs_sent, 0);
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, RoundEvent::Failed { .. })),
        "{:?}",
        net.events
    );
}

#[test]
fn the_publisher_stops_before_the_budget_and_reports_spend() {
    // A contract that samples a fixed count: nodes cannot see how many are eligible, so every
    // round is accounted at q = 1 (here every node is asked each round), z = 2.
    let budget = 8.0;
    let mut terms = terms(1.0, 2.0, 0.1, Some(budget), false);
    terms.sampling_rate = None;
    let data = deltas(4, 6);
    let mut net = Net::new(terms, data, 100);
    net.run();
    let rounds = net.completed();
    assert!(!rounds.is_empty());
    let mut last = 0.0;
    for summary in &rounds {
        let spend = summary.privacy.expect("noised rounds report their spend");
        assert!(spend.epsilon_total >= last && spend.epsilon_total <= budget);
        assert!((spend.epsilon_total - last - spend.epsilon_round).abs() < 1e-9);
        last = spend.epsilon_total;
    }
    assert!(rounds.len() < 100);
    let expected = fedpool_privacy::epsilon(1.0, 2.0, rounds.len() as u64, 1e-5).unwrap();
    assert!((last - expected).abs() < 1e-9, "{last} vs {expected}");
    let one_more = fedpool_privacy::epsilon(1.0, 2.0, rounds.len() as u64 + 1, 1e-5).unwrap();
    assert!(one_more > budget);
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, RoundEvent::BudgetExhausted { .. }))
    );
    // Every node accounted the same rounds and the one it was refused: never past the budget.
    for node in net.nodes() {
        assert!(node.epsilon_spent() <= budget + 1e-9);
    }
}

#[test]
fn without_noise_or_clipping_the_private_settings_change_nothing() {
    // A privacy section with z = 0 and no clipping takes the plain path: same result as none.
    let data = deltas(5, 6);
    let mut plain = Net::new(PrivacyTerms::none(), data.clone(), 3);
    let mut zero = Net::new(terms(0.0, 0.0, 1.0, None, false), data, 3);
    plain.run();
    zero.run();
    assert_eq!(plain.publisher().global(), zero.publisher().global());
    assert_eq!(zero.plain_updates_seen, 15);
}

#[test]
fn a_member_without_an_identity_declines_and_the_round_goes_on() {
    let terms = terms(1.0, 0.0, 1.0, None, true);
    let data = deltas(6, 8);
    let mut net = Net::new(terms.clone(), data, 1);
    net.driver.add_participant(
        Participant::new(NodeId(0), true, 1)
            .with_privacy(terms, None)
            .unwrap(),
    );
    net.run();
    let rounds = net.completed();
    assert_eq!(rounds.len(), 1, "{:?}", net.events);
    assert!(!rounds[0].contributors.contains(&NodeId(0)));
    assert_eq!(rounds[0].contributors.len(), 5);
}

#[test]
fn a_node_refuses_a_setup_with_fewer_members_than_its_noise_needs() {
    let terms = terms(1.0, 1.0, 0.1, Some(100.0), true);
    let (keys, directory) = identities(3);
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_identity(keys[0].clone(), directory);
    // Planned for 30 members (24 must survive), then set up with 3.
    let plan = terms.plan_round(30, 300, 4).unwrap();
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(1, plan),
    });
    let job = match outputs(&mut node).as_slice() {
        [ParticipantOutput::Train(job)] => job.clone(),
        other => panic!("{other:?}"),
    };
    node.handle(ParticipantInput::Trained {
        round: job.round,
        outcome: Ok(TrainOutcome {
            delta: vec![0.1; 4],
            n_examples: 3,
            final_loss: 0.2,
            n_steps: 1,
        }),
    });
    let nonce = match outputs(&mut node).as_slice() {
        [
            ParticipantOutput::Send {
                msg: Msg::Ready { nonce, .. },
                ..
            },
        ] => *nonce,
        other => panic!("{other:?}"),
    };
    let setup = SecAggSetup {
        round: RoundId(1),
        members: vec![NodeId(0), NodeId(1), NodeId(2)],
        nonces: vec![nonce, [2; 32], [3; 32]],
        seed: TEST_SEED,
    };
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::SecAggSetup(Arc::new(setup)),
    });
    let out = outputs(&mut node);
    assert!(
        matches!(
            out.as_slice(),
            [ParticipantOutput::Send {
                msg: Msg::Decline {
                    reason: DeclineReason::SecureAggregation(why),
                    ..
                },
                ..
            }] if why.contains("3 members")
        ),
        "{out:?}"
    );
}

#[test]
fn adaptive_clipping_moves_the_norm_towards_the_quantile_and_nodes_accept_it() {
    // Every update has norm 0.5 and the clip starts at 4: all fit, so without count noise
    // (z = 0) the norm shrinks by e^{-0.2 · (1 − 0.5)} each round until updates stop fitting.
    let mut terms = terms(4.0, 0.0, 1.0, None, false);
    terms.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    let data: Vec<Vec<f32>> = (0..6).map(|_| vec![0.3, 0.4]).collect();
    let mut net = Net::new(terms, data, 40);
    net.run();
    let rounds = net.completed();
    assert_eq!(
        rounds.len(),
        40,
        "nodes must accept the moving norm: {:?}",
        net.events
    );
    let factor = (-0.2f64 * 0.5).exp();
    for (i, summary) in rounds.iter().enumerate() {
        let expected = 4.0 * factor.powi(i as i32);
        if expected > 0.5 {
            assert!(
                (summary.clip_norm - expected).abs() < 1e-9,
                "round {}: {}",
                i + 1,
                summary.clip_norm
            );
        }
    }
    // Once the norm falls below 0.5 every update is clipped and it grows back: it settles
    // around the updates' norm, the 50% quantile.
    let last = rounds.last().unwrap().clip_norm;
    assert!((0.4..0.6).contains(&last), "{last}");
    assert!((net.publisher().clip_norm() - 0.5).abs() < 0.15);
}

#[test]
fn with_adaptive_clipping_the_round_still_spends_the_contracts_epsilon() {
    let mut terms = terms(1.0, 1.0, 0.1, Some(100.0), false);
    terms.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    let mut net = Net::new(terms, deltas(4, 6), 5);
    net.run();
    let rounds = net.completed();
    assert_eq!(rounds.len(), 5);
    // All 4 nodes are asked, each contributes by its own coin at q = 0.1: accounted at 0.1.
    let expected = fedpool_privacy::epsilon(0.1, 1.0, 5, 1e-5).unwrap();
    let spent = rounds.last().unwrap().privacy.unwrap().epsilon_total;
    assert!((spent - expected).abs() < 1e-9, "{spent} vs {expected}");
}

#[test]
fn adaptive_clipping_under_secure_aggregation_moves_the_norm_as_central_dp_does() {
    // Without noise the securely summed count is exact, so the norm follows the same path as
    // in the central test above.
    let mut secure = terms(4.0, 0.0, 1.0, None, true);
    secure.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    let mut central = secure.clone();
    central.secure_aggregation = false;
    let data: Vec<Vec<f32>> = (0..6).map(|_| vec![0.3, 0.4]).collect();
    let mut secure_net = Net::new(secure, data.clone(), 25);
    let mut central_net = Net::new(central, data, 25);
    secure_net.run();
    central_net.run();
    let norms = |net: &Net| -> Vec<f64> { net.completed().iter().map(|s| s.clip_norm).collect() };
    let (secure_norms, central_norms) = (norms(&secure_net), norms(&central_net));
    assert_eq!(secure_norms.len(), 25, "{:?}", secure_net.events);
    for (s, c) in secure_norms.iter().zip(&central_norms) {
        assert!(
            (s - c).abs() < 1e-9,
            "{secure_norms:?} vs {central_norms:?}"
        );
    }
    assert!(secure_net.completed().iter().all(|s| s.secure_aggregation));
    assert_eq!(secure_net.plain_updates_seen, 0);
}

#[test]
fn adaptive_clipping_under_secure_aggregation_accounts_the_count() {
    let mut terms = terms(1.0, 1.0, 0.1, Some(100.0), true);
    terms.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    // Nodes self-select at q = 0.1: all 1,000 are asked, 100 contributions are expected.
    let plan = terms.plan_round(1000, 1000, 64).unwrap();
    let Some(mechanism @ fedpool_privacy::RoundMechanism::SubsampledDdgWithCount { count, .. }) =
        plan.mechanism
    else {
        panic!("{:?}", plan.mechanism);
    };
    assert_eq!(
        count.noise_std, 5.0,
        "σ_b = m/20 with m the expected contributions"
    );
    // The count is paid for out of z: about the cost of the DDG with z alone.
    let with_count = fedpool_privacy::epsilon_for_rounds(&mechanism, 30, 1e-5).unwrap();
    let mut plain = terms.clone();
    plain.adaptive_clipping = None;
    let alone = fedpool_privacy::epsilon_for_rounds(
        &plain.plan_round(1000, 1000, 64).unwrap().mechanism.unwrap(),
        30,
        1e-5,
    )
    .unwrap();
    assert!(
        (with_count - alone).abs() < 0.02 * alone,
        "{with_count} vs {alone}"
    );
    // A node checks the plan exactly, count noise included.
    let node_view = terms.node_mechanism(&plan, 64).unwrap();
    assert_eq!(node_view, Some(mechanism));
    let mut tampered = plan.clone();
    if let Aggregation::Secure { count_noise, .. } = &mut tampered.aggregation {
        *count_noise = Some(0.5);
    }
    assert!(terms.node_mechanism(&tampered, 64).is_err());
}

/// Issue 9, finding 3: the DDG accounting is for zero-out adjacency, which holds only if a node
/// whose coin says no sends exactly what a node with zeroed data sends, its noise share
/// included (under add/remove, leaving would also take its share out of the sum, a change of
/// variance the accounting does not cover). Every coin says no here; the released sum is the
/// same bit for bit with the owners' real updates and with zeros, and it is not zero: the
/// shares of nodes that did not contribute are in it.
#[test]
fn a_node_whose_coin_says_no_releases_exactly_its_zero_out_neighbour_noise_share_included() {
    let q = 1e-3;
    let self_selecting = terms(1.0, 1.0, q, None, true);
    let real = deltas(8, 40);
    let zeros = vec![vec![0.0; 40]; 8];
    let run = |data: Vec<Vec<f32>>| {
        let mut net = Net::new(self_selecting.clone(), data, 1);
        net.run();
        assert!(
            net.nodes().all(|n| n.rounds_contributed() == 0),
            "a coin said yes; pick another seed"
        );
        assert!(net.nodes().all(|n| n.rounds_trained() == 1));
        let rounds = net.completed();
        assert_eq!(rounds.len(), 1, "{:?}", net.events);
        rounds[0].global.to_vec()
    };
    let with_data = run(real.clone());
    let zeroed = run(zeros);
    assert_eq!(
        with_data, zeroed,
        "a tails node's output depends on its data"
    );
    assert!(
        with_data.iter().any(|&x| x != 0.0),
        "the sum holds no noise: the non-contributing nodes' shares are missing"
    );
    // Contrast: where every coin says yes, the data is in the sum.
    let mut net = Net::new(terms(1.0, 1.0, 1.0, None, true), real, 1);
    net.run();
    assert!(net.nodes().all(|n| n.rounds_contributed() == 1));
}

#[test]
fn the_driver_reports_every_privacy_step_before_the_message_sent_after_it() {
    // Write-ahead: a host persists what a node accounted before anything it sent after leaves,
    // so a crash can lose a message, never an ε spent. Two noisy secure rounds, 6 nodes.
    let mut net = Net::new(terms(1.0, 1.0, 1.0, None, true), deltas(6, 8), 2);
    net.run();
    assert_eq!(net.completed().len(), 2, "{:?}", net.events);
    for node in 0..6 {
        let mine: Vec<&str> = net
            .host
            .trace
            .iter()
            .filter(|(n, _)| *n == NodeId(node))
            .map(|(_, what)| what.as_str())
            .collect();
        let privacy_steps = mine.iter().filter(|w| **w == "privacy").count();
        assert_eq!(privacy_steps, 2, "node {node}: {mine:?}");
        // Each round's masked input comes after that round's privacy step.
        let masked: Vec<usize> = (0..mine.len())
            .filter(|i| mine[*i] == "Some(MaskedInput)")
            .collect();
        let accounted: Vec<usize> = (0..mine.len()).filter(|i| mine[*i] == "privacy").collect();
        assert_eq!(masked.len(), 2, "node {node}: {mine:?}");
        assert!(
            accounted[0] < masked[0] && accounted[1] < masked[1] && masked[0] < accounted[1],
            "node {node}: {mine:?}"
        );
    }
}

/// Handles inboxes last node first, as a thread pool might.
struct Backwards;

impl fedpool_protocol::Executor for Backwards {
    fn handle_inboxes(&self, inboxes: &mut [fedpool_protocol::Inbox<'_>]) {
        inboxes
            .iter_mut()
            .rev()
            .for_each(fedpool_protocol::Inbox::handle_all);
    }
}

#[test]
fn what_the_driver_hands_the_host_does_not_depend_on_the_order_inboxes_ran_in() {
    let run = |executor: &dyn fedpool_protocol::Executor| {
        let mut net = Net::new(terms(1.0, 1.0, 1.0, None, true), deltas(6, 8), 2);
        net.run_batched(executor);
        assert_eq!(net.completed().len(), 2, "{:?}", net.events);
        (net.publisher().global().clone(), net.host.trace)
    };
    let (forwards, forwards_trace) = run(&Sequential);
    let (backwards, backwards_trace) = run(&Backwards);
    assert_eq!(forwards, backwards);
    assert_eq!(forwards_trace, backwards_trace);
    // Each batch's outputs reached the host in node order: the first stage's six messages.
    let first: Vec<NodeId> = backwards_trace
        .iter()
        .filter(|(_, what)| what != "privacy")
        .take(6)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(first, (0..6).map(NodeId).collect::<Vec<_>>());
}

fn grouped(mut terms: PrivacyTerms, group_size: usize) -> PrivacyTerms {
    terms.secure_aggregation_group_size = Some(group_size);
    terms
}

/// The test publisher: asks every node, seeds fixed.
fn publisher_for(terms: PrivacyTerms, rounds: usize, n: u32, dimension: usize) -> Publisher {
    let (_, directory) = identities(n);
    Publisher::new(
        PublisherConfig {
            rounds,
            sampling: ClientSampling {
                fraction: Some(1.0),
                count: None,
                min_clients: 1,
            },
            local: LocalTraining::default(),
            round_timeout_ms: 1_000,
            seed: 7,
            privacy: terms,
            directory,
            statistics: None,
        },
        StrategyConfig::FedAvg.build(),
        vec![0.0; dimension],
        (0..n).map(NodeId).collect(),
    )
    .with_privacy_seed([0xee; 32])
}

#[test]
fn a_grouped_round_releases_one_sum_per_random_group_and_the_model_takes_their_total() {
    let terms = grouped(terms(1.0, 0.0, 1.0, None, true), 3);
    let data = deltas(10, 16);
    let mut net = Net::new(terms, data.clone(), 2);
    net.run();
    let rounds = net.completed();
    assert_eq!(rounds.len(), 2, "{:?}", net.events);
    let mut partitions = Vec::new();
    for summary in &rounds {
        assert_eq!(net.plain_updates_seen, 0);
        // 10 members, groups of at least 3: three groups of 3 or 4, disjoint, covering all.
        assert_eq!(summary.group_sums.len(), 3, "{:?}", summary.group_sums);
        let mut everyone: Vec<NodeId> = summary
            .group_sums
            .iter()
            .flat_map(|g| g.members.clone())
            .collect();
        everyone.sort_unstable();
        assert_eq!(everyone, summary.contributors);
        assert_eq!(everyone.len(), 10);
        for group in &summary.group_sums {
            assert!((3..=4).contains(&group.members.len()), "{group:?}");
            let members: Vec<usize> = group.members.iter().map(|n| n.0 as usize).collect();
            // Each sum is its members' clipped updates and nothing else (no noise here).
            let expected = clipped_mean(&data, &members, 1.0, 1);
            for (got, want) in group.sum.iter().zip(&expected) {
                assert!((got - want).abs() < 1e-4, "{got} vs {want}");
            }
        }
        partitions.push(
            summary
                .group_sums
                .iter()
                .map(|g| g.members.clone())
                .collect::<Vec<_>>(),
        );
    }
    // A new partition every round: the publisher cannot keep a group together.
    assert_ne!(partitions[0], partitions[1]);
    // The model moved by the total over everyone asked, exactly as one sum would move it.
    let first = rounds[0];
    let expected = clipped_mean(&data, &(0..10).collect::<Vec<_>>(), 1.0, 10);
    for (got, want) in first.global.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}

#[test]
fn each_groups_sum_carries_the_contracts_full_noise() {
    // Zero updates: a sum is its noise alone. z = 1, C = 1 (σ = 1); threshold 0.6 of a group
    // of 3 is 2, so each member adds σ²/2 and a group's sum has at least σ².
    let dimension = 2048;
    let terms = grouped(terms(1.0, 1.0, 1.0, Some(1e9), true), 3);
    let mut net = Net::new(terms, vec![vec![0.0; dimension]; 9], 1);
    net.run();
    let rounds = net.completed();
    assert_eq!(rounds.len(), 1, "{:?}", net.events);
    assert_eq!(rounds[0].group_sums.len(), 3);
    for group in &rounds[0].group_sums {
        let variance =
            group.sum.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / dimension as f64;
        // Three shares of σ²/2: 1.5 expected; well above the 1 the contract promises.
        assert!(
            (1.3..1.7).contains(&variance),
            "group of {}: noise variance {variance}",
            group.members.len()
        );
    }
}

#[test]
fn a_publisher_that_sums_bigger_groups_than_the_contract_says_is_refused_at_the_request() {
    let contract = grouped(terms(1.0, 1.0, 1.0, Some(1e9), true), 3);
    // One sum over the round, and groups of 4 (sums of up to 7): both size the encoding for
    // more members than a group of 3 can hold.
    for publisher_terms in [
        terms(1.0, 1.0, 1.0, Some(1e9), true),
        grouped(terms(1.0, 1.0, 1.0, Some(1e9), true), 4),
    ] {
        let mut net = Net::new(contract.clone(), deltas(10, 8), 1);
        net.replace_publisher(publisher_for(publisher_terms, 1, 10, 8));
        net.run();
        assert!(net.completed().is_empty(), "{:?}", net.events);
        assert_eq!(net.host.masked_inputs_sent, 0);
        let refused = net
            .events
            .iter()
            .find_map(|e| match e {
                RoundEvent::Failed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .expect("the round failed");
        assert!(refused.contains("0 nodes are ready"), "{refused}");
    }
}

#[test]
fn a_publisher_that_groups_members_its_own_way_gets_no_members_update() {
    // The contract says groups of at least 4; the publisher forms groups of 3 (smaller sums,
    // each telling it more about its members). With a threshold of one half its plan is one
    // the contract allows (sums of up to 5 members, 2 of whom must survive), but every member
    // draws its own group from the setup's hash, with the contract's size, and runs its
    // session with that group only: the publisher's groups never assemble.
    let mut contract = grouped(terms(1.0, 0.0, 1.0, None, true), 4);
    contract.secure_aggregation_threshold = 0.5;
    let mut publisher_terms = contract.clone();
    publisher_terms.secure_aggregation_group_size = Some(3);
    let plan = publisher_terms.plan_round(9, 9, 8).unwrap();
    assert!(
        contract.node_mechanism(&plan, 8).is_ok(),
        "the plan alone does not give the publisher away"
    );
    let mut net = Net::new(contract, deltas(9, 8), 1);
    net.replace_publisher(publisher_for(publisher_terms, 1, 9, 8));
    net.run();
    assert!(net.completed().is_empty(), "{:?}", net.events);
    // The members' signed keys name their own groups' sessions: the publisher's servers
    // reject every advert, and no member ever sends a masked input.
    assert_eq!(net.host.masked_inputs_sent, 0);
    assert!(net.publisher().global().iter().all(|&x| x == 0.0));
}
