//! The wire format: every message round-trips byte for byte, and arbitrary or mutated bytes
//! give an error naming the field, never a panic or an allocation the bytes do not pay for.

use std::sync::Arc;

use fedpool_core::{LocalTraining, Optimizer};
use fedpool_data::{ColumnScaling, FeatureScaling};
use fedpool_privacy::ddg::{DdgConfig, DdgParams};
use fedpool_privacy::{CountNoise, RoundMechanism};
use fedpool_protocol::wire::{self, WIRE_VERSION, WireError};
use fedpool_protocol::{
    Aggregation, DeclineReason, Msg, NodeId, RoundId, RoundPrivacy, RoundTask, SecAggSetup,
    TrainRequest, UpdateMsg,
};
use fedpool_secagg::{AdvertisedKeys, ParticipantIdx, ToClient, ToServer, UnmaskRequest};
use proptest::prelude::*;

const MODEL: &str = "bafkr4ib3p2xlg5ailbtgrtrz4vt7ctf76nedej5dipvzzx62at247ez5iy";

fn ddg(dimension: usize, n_clients: usize) -> DdgParams {
    DdgParams::choose(&DdgConfig::new(dimension, 1.0, n_clients, 1.0, 32)).unwrap()
}

fn private_request(round: u32, global: Vec<f32>) -> Msg {
    let params = ddg(global.len(), 20);
    Msg::TrainRequest(TrainRequest {
        round: RoundId(round),
        task: RoundTask::Train { scaling: None },
        global: Arc::new(global),
        local: Arc::new(LocalTraining {
            local_epochs: 3,
            batch_size: 16,
            learning_rate: 0.05,
            optimizer: Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            weight_decay: 1e-4,
            proximal_mu: 0.01,
        }),
        privacy: Arc::new(RoundPrivacy {
            clip_norm: 1.0,
            mechanism: Some(RoundMechanism::SubsampledDdgWithCount {
                q: 0.1,
                params,
                count: CountNoise {
                    n_clients: 16,
                    noise_std: 2.5,
                },
            }),
            aggregation: Aggregation::Secure {
                encoding: params,
                min_survivors: 16,
                count_noise: Some(2.5),
            },
        }),
        secagg_commitment: Some([9; 32]),
    })
}

/// One message of every kind (and both states of every option).
fn every_kind() -> Vec<Msg> {
    vec![
        private_request(7, vec![0.5, -1.25, f32::MIN_POSITIVE, 3.0]),
        Msg::TrainRequest(TrainRequest {
            round: RoundId(0),
            task: RoundTask::Statistics,
            global: Arc::new(vec![]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy {
                clip_norm: 0.7,
                mechanism: Some(RoundMechanism::SubsampledGaussian {
                    q: 0.2,
                    noise_multiplier: 1.1,
                }),
                aggregation: Aggregation::Plain,
            }),
            secagg_commitment: None,
        }),
        Msg::TrainRequest(TrainRequest {
            round: RoundId(2),
            task: RoundTask::Train { scaling: None },
            global: Arc::new(vec![1.0; 3]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy {
                clip_norm: 0.0,
                mechanism: Some(RoundMechanism::SubsampledDdg {
                    q: 1.0,
                    params: ddg(3, 5),
                }),
                aggregation: Aggregation::Secure {
                    encoding: ddg(3, 5),
                    min_survivors: 4,
                    count_noise: None,
                },
            }),
            secagg_commitment: None,
        }),
        Msg::TrainRequest(TrainRequest {
            round: RoundId(3),
            task: RoundTask::Train {
                scaling: Some(Arc::new(FeatureScaling {
                    columns: vec![
                        ColumnScaling {
                            name: "age".into(),
                            mean: 38.5,
                            std: 13.25,
                        },
                        ColumnScaling {
                            name: "hours é".into(),
                            mean: -0.1,
                            std: 1e-3,
                        },
                    ],
                })),
            },
            global: Arc::new(vec![2.0]),
            local: Arc::new(LocalTraining::default()),
            privacy: Arc::new(RoundPrivacy::none()),
            secagg_commitment: None,
        }),
        Msg::Update(UpdateMsg {
            round: RoundId(u32::MAX),
            delta: vec![0.0, -0.0, 1e-30],
            n_examples: 12,
            train_loss: 0.25,
            within_clip: true,
            contributed: false,
        }),
        Msg::Decline {
            round: RoundId(4),
            reason: DeclineReason::NoConsent,
        },
        Msg::Decline {
            round: RoundId(4),
            reason: DeclineReason::TrainingFailed("out of memory".into()),
        },
        Msg::Decline {
            round: RoundId(4),
            reason: DeclineReason::PrivacyBudget("ε 3.1 > cap 3".into()),
        },
        Msg::Decline {
            round: RoundId(4),
            reason: DeclineReason::PrivacyTerms("noise".into()),
        },
        Msg::Decline {
            round: RoundId(4),
            reason: DeclineReason::SecureAggregation("setup".into()),
        },
        Msg::Ready {
            round: RoundId(5),
            nonce: [3; 32],
        },
        Msg::SecAggSetup(Arc::new(SecAggSetup {
            round: RoundId(5),
            members: vec![NodeId(1), NodeId(4), NodeId(9)],
            nonces: vec![[1; 32], [4; 32], [9; 32]],
            seed: [7; 32],
        })),
        Msg::SecAggToServer {
            round: RoundId(5),
            msg: ToServer::MaskedInput(vec![1, 2, u32::MAX]),
        },
        Msg::SecAggToServer {
            round: RoundId(5),
            msg: ToServer::AdvertiseKeys(AdvertisedKeys {
                owner: ParticipantIdx(2),
                encryption_pk: [1; 32],
                masking_pk: [2; 32],
                signature: [3; 64],
            }),
        },
        Msg::SecAggToClient {
            round: RoundId(5),
            msg: ToClient::Unmask(UnmaskRequest {
                survivors: vec![ParticipantIdx(0), ParticipantIdx(2)],
                signatures: vec![(ParticipantIdx(0), [5; 64])],
            }),
        },
        Msg::SecAggToClient {
            round: RoundId(5),
            msg: ToClient::Survivors(vec![ParticipantIdx(1)]),
        },
    ]
}

#[test]
fn every_kind_of_message_round_trips_byte_for_byte() {
    for msg in every_kind() {
        let bytes = wire::encode(MODEL, &msg);
        let (model, decoded) = wire::decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        assert_eq!(model, MODEL);
        assert_eq!(decoded, msg);
        assert_eq!(wire::encode(&model, &decoded), bytes);
    }
}

#[test]
fn parameters_travel_as_raw_words_four_bytes_each() {
    let d = 100_000;
    let delta: Vec<f32> = (0..d).map(|i| i as f32 * 1e-3).collect();
    let update = Msg::Update(UpdateMsg {
        round: RoundId(1),
        delta: delta.clone(),
        n_examples: 10,
        train_loss: 0.1,
        within_clip: true,
        contributed: true,
    });
    let bytes = wire::encode(MODEL, &update);
    let header = 1 + 2 + MODEL.len() + 1 + 4;
    // count + words, then n_examples, loss and two flags.
    assert_eq!(bytes.len(), header + 4 + 4 * d + 8 + 4 + 2);
    let request = private_request(1, delta);
    let request_bytes = wire::encode(MODEL, &request);
    // The plan (two encodings, the count, the optimizer) adds a few hundred bytes at most.
    assert!(request_bytes.len() < 4 * d + 512, "{}", request_bytes.len());
}

#[test]
fn a_count_the_bytes_cannot_pay_for_is_refused_before_allocating() {
    // An update claiming 2^32 − 1 parameters in a 30-byte frame.
    let mut bytes = wire::encode(
        MODEL,
        &Msg::Update(UpdateMsg {
            round: RoundId(1),
            delta: vec![],
            n_examples: 0,
            train_loss: 0.0,
            within_clip: false,
            contributed: false,
        }),
    );
    let count_at = 1 + 2 + MODEL.len() + 1 + 4;
    bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        wire::decode(&bytes),
        Err(WireError::Truncated {
            field: "delta",
            offset: count_at
        })
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let good = wire::encode(MODEL, &every_kind()[0]);
    let mut other_version = good.clone();
    other_version[0] = WIRE_VERSION + 1;
    assert_eq!(
        wire::decode(&other_version),
        Err(WireError::Version {
            found: WIRE_VERSION + 1
        })
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        wire::decode(&trailing),
        Err(WireError::TrailingBytes { extra: 1 })
    );
    let mut unknown = good.clone();
    unknown[1 + 2 + MODEL.len()] = 200;
    let err = wire::decode(&unknown).unwrap_err().to_string();
    assert!(err.contains("unknown message tag 200"), "{err}");
    let truncated = wire::decode(&good[..good.len() - 10]).unwrap_err();
    assert!(
        matches!(truncated, WireError::Truncated { .. }),
        "{truncated}"
    );
}

#[test]
fn a_plan_with_out_of_range_encoding_parameters_is_refused() {
    let bytes = wire::encode(MODEL, &every_kind()[2]);
    // The first DDG block's `bits` (u32 after dimension, clip, n_clients and noise std).
    // Version, model id, tag, round, then the task (training, no scaling).
    let header = 1 + 2 + MODEL.len() + 1 + 4 + 2;
    let global = 4 + 4 * 3;
    let local = 8 + 8 + 4 + 1 + 4 + 4 + 4;
    let bits_at = header + global + local + 8 + 1 + 8 + 8 + 8 + 8 + 8;
    let mut bad = bytes.clone();
    assert_eq!(&bad[bits_at..bits_at + 4], &32u32.to_le_bytes());
    bad[bits_at..bits_at + 4].copy_from_slice(&64u32.to_le_bytes());
    let err = wire::decode(&bad).unwrap_err().to_string();
    assert!(err.contains("ddg") && err.contains("bits"), "{err}");
}

fn arbitrary_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (any::<u32>(), prop::collection::vec(any::<f32>(), 0..64)).prop_map(|(round, global)| {
            let n = global.len().max(1);
            let Msg::TrainRequest(mut request) = private_request(round, vec![0.0; n]) else {
                unreachable!()
            };
            request.global = Arc::new(global);
            Msg::TrainRequest(request)
        }),
        (
            any::<u32>(),
            prop::collection::vec(any::<f32>(), 0..64),
            any::<u32>(),
            any::<f32>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(round, delta, n, loss, within_clip, contributed)| Msg::Update(UpdateMsg {
                    round: RoundId(round),
                    delta,
                    n_examples: n as usize,
                    train_loss: loss,
                    within_clip,
                    contributed,
                })
            ),
        (any::<u32>(), 1u8..5, ".{0,40}").prop_map(|(round, kind, text)| Msg::Decline {
            round: RoundId(round),
            reason: match kind {
                1 => DeclineReason::TrainingFailed(text),
                2 => DeclineReason::PrivacyBudget(text),
                3 => DeclineReason::PrivacyTerms(text),
                _ => DeclineReason::SecureAggregation(text),
            },
        }),
        (any::<u32>(), any::<[u8; 32]>()).prop_map(|(round, nonce)| Msg::Ready {
            round: RoundId(round),
            nonce
        }),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..16)).prop_map(|(round, members)| {
            Msg::SecAggSetup(Arc::new(SecAggSetup {
                round: RoundId(round),
                nonces: members.iter().map(|m| [*m as u8; 32]).collect(),
                members: members.into_iter().map(NodeId).collect(),
                seed: [1; 32],
            }))
        }),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..64)).prop_map(|(round, words)| {
            Msg::SecAggToServer {
                round: RoundId(round),
                msg: ToServer::MaskedInput(words),
            }
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_messages_round_trip(msg in arbitrary_msg(), model in "[a-z0-9]{0,80}") {
        let bytes = wire::encode(&model, &msg);
        let (decoded_model, decoded) = wire::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded_model, &model);
        // NaN != NaN: compare the re-encoding, which is canonical.
        prop_assert_eq!(wire::encode(&decoded_model, &decoded), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_is_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        if let Ok((model, msg)) = wire::decode(&bytes) {
            prop_assert_eq!(wire::encode(&model, &msg), bytes);
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_what_decodes_is_canonical(
        kind in 0usize..16,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let all = every_kind();
        let mut bytes = wire::encode(MODEL, &all[kind % all.len()]);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok((model, msg)) = wire::decode(&bytes) {
            prop_assert_eq!(wire::encode(&model, &msg), bytes);
        }
    }
}
