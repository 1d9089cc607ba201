//! The round protocol's wire format: one versioned, compact binary encoding of every [`Msg`],
//! framed with the model it belongs to, so a message recorded for one model cannot be replayed
//! into another (the round is inside every message).
//!
//! Layout: `version: u8`, `model id: u16 length + UTF-8`, `tag: u8`, then the message's fields,
//! fixed-width little-endian. Lists carry a `u32` count; parameter vectors and masked vectors
//! are raw little-endian words (4 bytes a parameter, no JSON, no base64). Secure-aggregation
//! messages embed `fedpool_secagg`'s own encoding.
//!
//! Decoding untrusted bytes never panics and never allocates from a count before checking
//! that the bytes for it are there; every error names the field and the offset.

use std::sync::Arc;

use fedpool_core::{LocalTraining, Optimizer};
use fedpool_data::FeatureScaling;
use fedpool_privacy::ddg::{DEFAULT_WRAP_PROBABILITY, DdgConfig, DdgParams};
use fedpool_privacy::{CountNoise, RoundMechanism};
use fedpool_secagg::{ToClient, ToServer};

use crate::msg::{DeclineReason, Msg, NodeId, RoundId, RoundTask, TrainRequest, UpdateMsg};
use crate::privacy::{Aggregation, RoundPrivacy};
use crate::secure::SecAggSetup;

/// The encoding's version byte; a decoder refuses any other.
pub const WIRE_VERSION: u8 = 2;

/// Longest model id a frame may carry, in bytes.
pub const MAX_MODEL_ID_BYTES: usize = 256;

const TAG_TRAIN_REQUEST: u8 = 1;
const TAG_UPDATE: u8 = 2;
const TAG_DECLINE: u8 = 3;
const TAG_READY: u8 = 4;
const TAG_SECAGG_SETUP: u8 = 5;
const TAG_SECAGG_TO_SERVER: u8 = 6;
const TAG_SECAGG_TO_CLIENT: u8 = 7;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The frame ends before a field does.
    #[error("the frame ends inside `{field}` at byte {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// The frame was written by another version of the format.
    #[error("wire version {found} is not supported (this node speaks version {WIRE_VERSION})")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// A field's value is not allowed.
    #[error("`{field}` at byte {offset} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes remain after the message.
    #[error("{extra} bytes follow the message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// Encodes `msg`, sent for model `model_id`, as one frame.
///
/// # Panics
/// If `model_id` is longer than [`MAX_MODEL_ID_BYTES`] (model ids are content hashes, far
/// shorter), or a list holds more than `u32::MAX` items.
pub fn encode(model_id: &str, msg: &Msg) -> Vec<u8> {
    assert!(
        model_id.len() <= MAX_MODEL_ID_BYTES,
        "model id of {} bytes",
        model_id.len()
    );
    let mut w = Writer(Vec::with_capacity(64 + payload_hint(msg)));
    w.u8(WIRE_VERSION);
    w.u16(model_id.len() as u16);
    w.bytes(model_id.as_bytes());
    match msg {
        Msg::TrainRequest(request) => {
            w.u8(TAG_TRAIN_REQUEST);
            w.u32(request.round.0);
            match &request.task {
                RoundTask::Statistics => w.u8(0),
                RoundTask::Train { scaling } => {
                    w.u8(1);
                    w.option(scaling.as_ref(), |w, s| w.str(&s.to_canonical_json()));
                }
            }
            w.f32s(&request.global);
            put_local(&mut w, &request.local);
            put_privacy(&mut w, &request.privacy);
            w.option(request.secagg_commitment.as_ref(), |w, c| w.bytes(c));
        }
        Msg::Update(update) => {
            w.u8(TAG_UPDATE);
            w.u32(update.round.0);
            w.f32s(&update.delta);
            w.u64(update.n_examples as u64);
            w.f32(update.train_loss);
            w.bool(update.within_clip);
            w.bool(update.contributed);
        }
        Msg::Decline { round, reason } => {
            w.u8(TAG_DECLINE);
            w.u32(round.0);
            let (tag, text) = match reason {
                DeclineReason::NoConsent => (0, ""),
                DeclineReason::TrainingFailed(why) => (1, why.as_str()),
                DeclineReason::PrivacyBudget(why) => (2, why.as_str()),
                DeclineReason::PrivacyTerms(why) => (3, why.as_str()),
                DeclineReason::SecureAggregation(why) => (4, why.as_str()),
            };
            w.u8(tag);
            w.str(text);
        }
        Msg::Ready { round, nonce } => {
            w.u8(TAG_READY);
            w.u32(round.0);
            w.bytes(nonce);
        }
        Msg::SecAggSetup(setup) => {
            w.u8(TAG_SECAGG_SETUP);
            w.u32(setup.round.0);
            w.len(setup.members.len());
            for member in &setup.members {
                w.u32(member.0);
            }
            w.len(setup.nonces.len());
            for nonce in &setup.nonces {
                w.bytes(nonce);
            }
            w.bytes(&setup.seed);
        }
        Msg::SecAggToServer { round, msg } => {
            w.u8(TAG_SECAGG_TO_SERVER);
            w.u32(round.0);
            w.bytes(&msg.encode());
        }
        Msg::SecAggToClient { round, msg } => {
            w.u8(TAG_SECAGG_TO_CLIENT);
            w.u32(round.0);
            w.bytes(&msg.encode());
        }
    }
    w.0
}

/// Decodes one frame: the model it was sent for, and the message.
pub fn decode(bytes: &[u8]) -> Result<(String, Msg), WireError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8("version")?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { found: version });
    }
    let id_len = usize::from(r.u16("model id length")?);
    if id_len > MAX_MODEL_ID_BYTES {
        return Err(r.invalid(
            "model id length",
            format!("{id_len} bytes, at most {MAX_MODEL_ID_BYTES}"),
        ));
    }
    let model_id = r.utf8("model id", id_len)?;
    let tag_at = r.at;
    let msg = match r.u8("tag")? {
        TAG_TRAIN_REQUEST => Msg::TrainRequest(TrainRequest {
            round: RoundId(r.u32("round")?),
            task: read_task(&mut r)?,
            global: Arc::new(r.f32s("global")?),
            local: Arc::new(read_local(&mut r)?),
            privacy: Arc::new(read_privacy(&mut r)?),
            secagg_commitment: r.option("secagg_commitment", |r| r.array("secagg_commitment"))?,
        }),
        TAG_UPDATE => Msg::Update(UpdateMsg {
            round: RoundId(r.u32("round")?),
            delta: r.f32s("delta")?,
            n_examples: {
                let at = r.at;
                let n = r.u64("n_examples")?;
                usize::try_from(n).map_err(|_| WireError::Invalid {
                    field: "n_examples",
                    offset: at,
                    reason: format!("{n} does not fit this machine"),
                })?
            },
            train_loss: r.f32("train_loss")?,
            within_clip: r.bool("within_clip")?,
            contributed: r.bool("contributed")?,
        }),
        TAG_DECLINE => {
            let round = RoundId(r.u32("round")?);
            let reason_at = r.at;
            let tag = r.u8("reason")?;
            let text = r.string("reason text")?;
            let reason = match tag {
                0 if text.is_empty() => DeclineReason::NoConsent,
                0 => {
                    return Err(WireError::Invalid {
                        field: "reason",
                        offset: reason_at,
                        reason: "a refusal for lack of consent carries no text".into(),
                    });
                }
                1 => DeclineReason::TrainingFailed(text),
                2 => DeclineReason::PrivacyBudget(text),
                3 => DeclineReason::PrivacyTerms(text),
                4 => DeclineReason::SecureAggregation(text),
                _ => {
                    return Err(WireError::Invalid {
                        field: "reason",
                        offset: reason_at,
                        reason: format!("unknown reason {tag}"),
                    });
                }
            };
            Msg::Decline { round, reason }
        }
        TAG_READY => Msg::Ready {
            round: RoundId(r.u32("round")?),
            nonce: r.array("nonce")?,
        },
        TAG_SECAGG_SETUP => {
            let round = RoundId(r.u32("round")?);
            let members = r.list("members", 4, |r| Ok(NodeId(r.u32("members")?)))?;
            let nonces = r.list("nonces", 32, |r| r.array("nonces"))?;
            let seed = r.array("seed")?;
            Msg::SecAggSetup(Arc::new(SecAggSetup {
                round,
                members,
                nonces,
                seed,
            }))
        }
        TAG_SECAGG_TO_SERVER => {
            let round = RoundId(r.u32("round")?);
            let at = r.at;
            let msg = ToServer::decode(r.rest()).map_err(|e| WireError::Invalid {
                field: "secure-aggregation message",
                offset: at,
                reason: e.to_string(),
            })?;
            Msg::SecAggToServer { round, msg }
        }
        TAG_SECAGG_TO_CLIENT => {
            let round = RoundId(r.u32("round")?);
            let at = r.at;
            let msg = ToClient::decode(r.rest()).map_err(|e| WireError::Invalid {
                field: "secure-aggregation message",
                offset: at,
                reason: e.to_string(),
            })?;
            Msg::SecAggToClient { round, msg }
        }
        tag => {
            return Err(WireError::Invalid {
                field: "tag",
                offset: tag_at,
                reason: format!("unknown message tag {tag}"),
            });
        }
    };
    if r.at != bytes.len() {
        return Err(WireError::TrailingBytes {
            extra: bytes.len() - r.at,
        });
    }
    Ok((model_id, msg))
}

/// Bytes the message's vectors take, so encoding reserves once.
fn payload_hint(msg: &Msg) -> usize {
    match msg {
        Msg::TrainRequest(request) => 4 * request.global.len(),
        Msg::Update(update) => 4 * update.delta.len(),
        Msg::SecAggSetup(setup) => 36 * setup.members.len(),
        Msg::SecAggToServer { msg, .. } => msg.encoded_len(),
        Msg::SecAggToClient { msg, .. } => msg.encoded_len(),
        Msg::Decline { .. } | Msg::Ready { .. } => 0,
    }
}

fn read_task(r: &mut Reader<'_>) -> Result<RoundTask, WireError> {
    let at = r.at;
    match r.u8("task")? {
        0 => Ok(RoundTask::Statistics),
        1 => {
            let scaling = r.option("scaling", |r| {
                let at = r.at;
                let text = r.string("scaling")?;
                let scaling = FeatureScaling::from_json(&text).map_err(|e| WireError::Invalid {
                    field: "scaling",
                    offset: at,
                    reason: e.to_string(),
                })?;
                // One message, one encoding: text that parses to the same scaling but is
                // spelled differently (`3805` for `3805.0`, spaces, reordered keys) is refused.
                if scaling.to_canonical_json() != text {
                    return Err(WireError::Invalid {
                        field: "scaling",
                        offset: at,
                        reason: "the scaling is not in its canonical JSON form".into(),
                    });
                }
                Ok(Arc::new(scaling))
            })?;
            Ok(RoundTask::Train { scaling })
        }
        other => Err(WireError::Invalid {
            field: "task",
            offset: at,
            reason: format!("unknown task {other}"),
        }),
    }
}

fn put_local(w: &mut Writer, local: &LocalTraining) {
    w.u64(local.local_epochs as u64);
    w.u64(local.batch_size as u64);
    w.f32(local.learning_rate);
    match local.optimizer {
        Optimizer::Sgd { momentum } => {
            w.u8(0);
            w.f32(momentum);
        }
        Optimizer::Adam { beta1, beta2, eps } => {
            w.u8(1);
            w.f32(beta1);
            w.f32(beta2);
            w.f32(eps);
        }
    }
    w.f32(local.weight_decay);
    w.f32(local.proximal_mu);
}

fn read_local(r: &mut Reader<'_>) -> Result<LocalTraining, WireError> {
    let local_epochs = r.usize("local_epochs")?;
    let batch_size = r.usize("batch_size")?;
    let learning_rate = r.f32("learning_rate")?;
    let at = r.at;
    let optimizer = match r.u8("optimizer")? {
        0 => Optimizer::Sgd {
            momentum: r.f32("momentum")?,
        },
        1 => Optimizer::Adam {
            beta1: r.f32("beta1")?,
            beta2: r.f32("beta2")?,
            eps: r.f32("eps")?,
        },
        tag => {
            return Err(WireError::Invalid {
                field: "optimizer",
                offset: at,
                reason: format!("unknown optimizer {tag}"),
            });
        }
    };
    Ok(LocalTraining {
        local_epochs,
        batch_size,
        learning_rate,
        optimizer,
        weight_decay: r.f32("weight_decay")?,
        proximal_mu: r.f32("proximal_mu")?,
    })
}

fn put_privacy(w: &mut Writer, privacy: &RoundPrivacy) {
    w.f64(privacy.clip_norm);
    match &privacy.mechanism {
        None => w.u8(0),
        Some(RoundMechanism::SubsampledGaussian {
            q,
            noise_multiplier,
        }) => {
            w.u8(1);
            w.f64(*q);
            w.f64(*noise_multiplier);
        }
        Some(RoundMechanism::SubsampledDdg { q, params }) => {
            w.u8(2);
            w.f64(*q);
            put_ddg(w, params);
        }
        Some(RoundMechanism::SubsampledDdgWithCount { q, params, count }) => {
            w.u8(3);
            w.f64(*q);
            put_ddg(w, params);
            put_count(w, count);
        }
    }
    match &privacy.aggregation {
        Aggregation::Plain => w.u8(0),
        Aggregation::Secure {
            encoding,
            min_survivors,
            count_noise,
        } => {
            w.u8(1);
            put_ddg(w, encoding);
            w.u64(*min_survivors as u64);
            w.option(count_noise.as_ref(), |w, sigma| w.f64(*sigma));
        }
    }
}

fn read_privacy(r: &mut Reader<'_>) -> Result<RoundPrivacy, WireError> {
    let clip_norm = r.f64("clip_norm")?;
    let at = r.at;
    let mechanism = match r.u8("mechanism")? {
        0 => None,
        1 => Some(RoundMechanism::SubsampledGaussian {
            q: r.f64("q")?,
            noise_multiplier: r.f64("noise_multiplier")?,
        }),
        2 => Some(RoundMechanism::SubsampledDdg {
            q: r.f64("q")?,
            params: read_ddg(r)?,
        }),
        3 => Some(RoundMechanism::SubsampledDdgWithCount {
            q: r.f64("q")?,
            params: read_ddg(r)?,
            count: read_count(r)?,
        }),
        tag => {
            return Err(WireError::Invalid {
                field: "mechanism",
                offset: at,
                reason: format!("unknown mechanism {tag}"),
            });
        }
    };
    let at = r.at;
    let aggregation = match r.u8("aggregation")? {
        0 => Aggregation::Plain,
        1 => Aggregation::Secure {
            encoding: read_ddg(r)?,
            min_survivors: r.usize("min_survivors")?,
            count_noise: r.option("count_noise", |r| r.f64("count_noise"))?,
        },
        tag => {
            return Err(WireError::Invalid {
                field: "aggregation",
                offset: at,
                reason: format!("unknown aggregation {tag}"),
            });
        }
    };
    Ok(RoundPrivacy {
        clip_norm,
        mechanism,
        aggregation,
    })
}

fn put_ddg(w: &mut Writer, params: &DdgParams) {
    w.u64(params.dimension() as u64);
    w.f64(params.clip_norm());
    w.u64(params.n_clients() as u64);
    w.f64(params.noise_std());
    w.u32(params.bits());
    w.f64(params.beta());
    w.f64(params.granularity());
    w.u32(params.max_rounding_retries());
}

/// Rebuilt through [`DdgParams::new`], so every range is checked again.
fn read_ddg(r: &mut Reader<'_>) -> Result<DdgParams, WireError> {
    let at = r.at;
    let config = DdgConfig {
        dimension: r.usize("ddg.dimension")?,
        clip_norm: r.f64("ddg.clip_norm")?,
        n_clients: r.usize("ddg.n_clients")?,
        noise_std: r.f64("ddg.noise_std")?,
        bits: r.u32("ddg.bits")?,
        beta: r.f64("ddg.beta")?,
        wrap_probability: DEFAULT_WRAP_PROBABILITY,
    };
    let granularity = r.f64("ddg.granularity")?;
    let retries_at = r.at;
    let retries = r.u32("ddg.max_rounding_retries")?;
    if retries == 0 {
        return Err(WireError::Invalid {
            field: "ddg.max_rounding_retries",
            offset: retries_at,
            reason: "at least one rounding attempt is needed".into(),
        });
    }
    DdgParams::new(&config, granularity)
        .map(|params| params.with_max_rounding_retries(retries))
        .map_err(|e| WireError::Invalid {
            field: "ddg",
            offset: at,
            reason: e.to_string(),
        })
}

fn put_count(w: &mut Writer, count: &CountNoise) {
    w.u64(count.n_clients as u64);
    w.f64(count.noise_std);
}

fn read_count(r: &mut Reader<'_>) -> Result<CountNoise, WireError> {
    Ok(CountNoise {
        n_clients: r.usize("count.n_clients")?,
        noise_std: r.f64("count.noise_std")?,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("a list of more than u32::MAX items"));
    }
    fn str(&mut self, v: &str) {
        self.len(v.len());
        self.bytes(v.as_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        self.len(v.len());
        self.0.reserve(4 * v.len());
        for x in v {
            self.f32(*x);
        }
    }
    fn option<T>(&mut self, v: Option<&T>, put: impl FnOnce(&mut Writer, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn invalid(&self, field: &'static str, reason: String) -> WireError {
        WireError::Invalid {
            field,
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(WireError::Truncated {
                field,
                offset: self.at,
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => {
                self.at -= 1;
                Err(self.invalid(field, format!("{other} is not a boolean")))
            }
        }
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn usize(&mut self, field: &'static str) -> Result<usize, WireError> {
        let at = self.at;
        let v = self.u64(field)?;
        usize::try_from(v).map_err(|_| WireError::Invalid {
            field,
            offset: at,
            reason: format!("{v} does not fit this machine"),
        })
    }
    fn f32(&mut self, field: &'static str) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.array(field)?))
    }
    fn f64(&mut self, field: &'static str) -> Result<f64, WireError> {
        Ok(f64::from_le_bytes(self.array(field)?))
    }

    /// A `u32` count of items of `item_bytes` each, checked against the bytes left before
    /// anything is allocated.
    fn count(&mut self, field: &'static str, item_bytes: usize) -> Result<usize, WireError> {
        let at = self.at;
        let n = self.u32(field)? as usize;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(item_bytes) > left {
            return Err(WireError::Truncated { field, offset: at });
        }
        Ok(n)
    }

    fn list<T>(
        &mut self,
        field: &'static str,
        item_bytes: usize,
        mut read: impl FnMut(&mut Reader<'a>) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = self.count(field, item_bytes)?;
        (0..n).map(|_| read(self)).collect()
    }

    fn f32s(&mut self, field: &'static str) -> Result<Vec<f32>, WireError> {
        let n = self.count(field, 4)?;
        let raw = self.take(field, 4 * n)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn utf8(&mut self, field: &'static str, n: usize) -> Result<String, WireError> {
        let at = self.at;
        let raw = self.take(field, n)?;
        String::from_utf8(raw.to_vec()).map_err(|e| WireError::Invalid {
            field,
            offset: at,
            reason: e.to_string(),
        })
    }

    fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.count(field, 1)?;
        self.utf8(field, n)
    }

    fn option<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        let at = self.at;
        match self.u8(field)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(WireError::Invalid {
                field,
                offset: at,
                reason: format!("option tag {other}"),
            }),
        }
    }
}
