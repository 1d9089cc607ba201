//! The aggregation server's side of a round, as a sans-IO state machine.
//!
//! The server relays what participants have for each other, decides who dropped (those silent
//! when a stage's deadline passes, or whose messages are malformed), and at the end rebuilds
//! exactly the secrets it needs: the self-mask seeds of survivors and the masking keys of
//! participants that shared keys but sent no input. It removes those masks from the sum of the
//! masked inputs and outputs the sum mod 2^b of the survivors' inputs, nothing else.
//!
//! Time arrives as `Tick { now_ms }`: the first tick starts the round, and each stage closes
//! when every expected participant answered or when a tick reaches the stage's deadline
//! (counted from the latest tick). At every stage boundary the server checks that each
//! participant still in play has at least t live neighbours (and that t remain overall);
//! otherwise it aborts before sending anything that could help unmask an individual input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::config::RoundConfig;
use crate::crypto;
use crate::error::{Error, ParticipantIdx, Stage};
use crate::msg::{AdvertisedKeys, EncryptedShares, ToClient, ToServer, UnmaskResponse};
use crate::prg::MaskNonces;

mod stages;

/// What the driver feeds the server.
#[derive(Debug, Clone)]
pub enum ServerInput {
    /// A message arrived from an (authenticated) participant.
    Received {
        /// The sender, as authenticated by the transport.
        from: ParticipantIdx,
        /// The message.
        msg: ToServer,
    },
    /// Time passed: starts the round, and closes the current stage once its deadline passed.
    Tick {
        /// Current time.
        now_ms: u64,
    },
}

/// What the server asks its driver to do or report.
#[derive(Debug, Clone)]
pub enum ServerOutput {
    /// Deliver a message to a participant.
    Send {
        /// Recipient.
        to: ParticipantIdx,
        /// The message.
        msg: ToClient,
    },
    /// Something happened that the driver records or displays.
    Event(ServerEvent),
}

/// Round events.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A stage closed.
    StageClosed(StageReport),
    /// The round produced the sum.
    Finished(Aggregate),
    /// The round stopped; no sum, and nothing beyond masked inputs was learned.
    Aborted(Error),
}

/// Who answered in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage that closed.
    pub stage: Stage,
    /// Participants whose message for this stage was accepted.
    pub responded: Vec<ParticipantIdx>,
    /// Participants expected in this stage that sent nothing acceptable before the deadline.
    pub dropped: Vec<ParticipantIdx>,
}

/// The round's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Σ_{u ∈ survivors} x_u mod 2^b, word by word.
    pub sum: Vec<u32>,
    /// Participants whose inputs are in the sum.
    pub survivors: Vec<ParticipantIdx>,
    /// Participants that shared keys but sent no masked input; their masks were removed.
    pub dropped: Vec<ParticipantIdx>,
}

/// A participant whose message the server refused (it counts as dropped at that stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Who sent it.
    pub participant: ParticipantIdx,
    /// In which stage.
    pub stage: Stage,
    /// Why it was refused.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Collecting(Stage),
    Finished,
    Aborted,
}

/// The aggregation server's side of one round.
pub struct Server {
    config: Arc<RoundConfig>,
    stage_timeout_ms: u64,
    nonces: MaskNonces,
    phase: Phase,
    deadline_ms: Option<u64>,
    now_ms: u64,
    /// Who may still answer in the current stage.
    awaiting: BTreeSet<ParticipantIdx>,
    /// Accepted answers of the current stage, in participant order.
    responded: BTreeSet<ParticipantIdx>,
    /// U1: advertised keys (verified).
    keys: BTreeMap<ParticipantIdx, AdvertisedKeys>,
    /// Every accepted public key, to refuse replays.
    advertised_pks: BTreeMap<[u8; 32], ParticipantIdx>,
    /// Stage-2 uploads, held until routed.
    uploads: BTreeMap<ParticipantIdx, Vec<EncryptedShares>>,
    /// U2: participants that shared keys.
    shared: BTreeSet<ParticipantIdx>,
    /// U3 and the server's whole view of inputs: the masked vectors as received.
    masked_inputs: BTreeMap<ParticipantIdx, Vec<u32>>,
    /// Running Σ of masked inputs (wrapping).
    masked_sum: Vec<u32>,
    /// U2 \ U3.
    dropped: BTreeSet<ParticipantIdx>,
    /// U3 as announced to every survivor, sorted.
    survivor_set: Vec<ParticipantIdx>,
    /// U4: survivors' verified signatures over `survivor_set`.
    consistency_signatures: BTreeMap<ParticipantIdx, [u8; 64]>,
    unmask_responses: BTreeMap<ParticipantIdx, UnmaskResponse>,
    rejections: Vec<Rejection>,
    outputs: VecDeque<ServerOutput>,
}

impl Server {
    /// A server for the round in `config`. A stage waits at most `stage_timeout_ms` for the
    /// participants still expected; silent ones are dropouts.
    pub fn new(config: Arc<RoundConfig>, stage_timeout_ms: u64) -> Server {
        let awaiting = (0..config.n_participants() as u32)
            .map(ParticipantIdx)
            .collect();
        Server {
            nonces: MaskNonces::new(config.binding()),
            masked_sum: vec![0; config.vector_len()],
            config,
            stage_timeout_ms,
            phase: Phase::Collecting(Stage::AdvertiseKeys),
            deadline_ms: None,
            now_ms: 0,
            awaiting,
            responded: BTreeSet::new(),
            keys: BTreeMap::new(),
            advertised_pks: BTreeMap::new(),
            uploads: BTreeMap::new(),
            shared: BTreeSet::new(),
            masked_inputs: BTreeMap::new(),
            dropped: BTreeSet::new(),
            survivor_set: Vec::new(),
            consistency_signatures: BTreeMap::new(),
            unmask_responses: BTreeMap::new(),
            rejections: Vec::new(),
            outputs: VecDeque::new(),
        }
    }

    /// Applies one input. Never blocks; drain [`Server::poll_output`] afterwards.
    pub fn handle(&mut self, input: ServerInput) {
        match input {
            ServerInput::Tick { now_ms } => self.on_tick(now_ms),
            ServerInput::Received { from, msg } => self.on_message(from, msg),
        }
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    /// When the driver must send the next `Tick`, if it must (0 before the round started).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Collecting(_) => Some(self.deadline_ms.unwrap_or(0)),
            Phase::Finished | Phase::Aborted => None,
        }
    }

    /// The stage being collected, or `None` once the round finished or aborted.
    pub fn stage(&self) -> Option<Stage> {
        match self.phase {
            Phase::Collecting(stage) => Some(stage),
            Phase::Finished | Phase::Aborted => None,
        }
    }

    /// True once the round finished or aborted.
    pub fn is_done(&self) -> bool {
        self.stage().is_none()
    }

    /// The server's view of the inputs: every masked vector it received, by sender. Tests use
    /// it to check that no unmasked update ever reaches the server.
    pub fn masked_inputs(&self) -> &BTreeMap<ParticipantIdx, Vec<u32>> {
        &self.masked_inputs
    }

    /// Messages refused so far; their senders count as dropped.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let Phase::Collecting(_) = self.phase else {
            return;
        };
        match self.deadline_ms {
            None => self.deadline_ms = Some(self.now_ms.saturating_add(self.stage_timeout_ms)),
            Some(deadline) if self.now_ms >= deadline => self.close_stage(),
            Some(_) => {}
        }
    }

    fn on_message(&mut self, from: ParticipantIdx, msg: ToServer) {
        let Phase::Collecting(stage) = self.phase else {
            return;
        };
        // Only participants expected in this stage, only once, only this stage's message:
        // anything else is late, duplicate or unsolicited, and ignored.
        if msg.stage() != stage || !self.awaiting.remove(&from) {
            return;
        }
        let accepted = match msg {
            ToServer::AdvertiseKeys(keys) => self.accept_keys(from, keys),
            ToServer::ShareKeys(shares) => self.accept_shares(from, shares),
            ToServer::MaskedInput(words) => self.accept_masked_input(from, words),
            ToServer::ConsistencySignature(signature) => {
                self.accept_consistency_signature(from, signature)
            }
            ToServer::UnmaskShares(response) => self.accept_unmask(from, response),
        };
        match accepted {
            Ok(()) => {
                self.responded.insert(from);
            }
            Err(reason) => self.rejections.push(Rejection {
                participant: from,
                stage,
                reason,
            }),
        }
        if self.awaiting.is_empty() {
            self.close_stage();
        }
    }

    fn accept_keys(&mut self, from: ParticipantIdx, keys: AdvertisedKeys) -> Result<(), String> {
        if keys.owner != from {
            return Err(format!("advertised keys name {} as owner", keys.owner));
        }
        let identity = self.config.identity(from).expect("sender is in the round");
        // Participants verify these signatures themselves; checking here too stops a forging
        // participant from making all its honest neighbours abort.
        if !crypto::verify_keys(
            identity,
            self.config.binding(),
            from,
            &keys.encryption_pk,
            &keys.masking_pk,
            &keys.signature,
        ) {
            return Err("the signature does not verify against the identity key".into());
        }
        if keys.encryption_pk == keys.masking_pk {
            return Err("the two advertised keys are equal".into());
        }
        for pk in [keys.encryption_pk, keys.masking_pk] {
            if let Some(other) = self.advertised_pks.get(&pk) {
                return Err(format!("reuses a key advertised by {other}"));
            }
        }
        self.advertised_pks.insert(keys.encryption_pk, from);
        self.advertised_pks.insert(keys.masking_pk, from);
        self.keys.insert(from, keys);
        Ok(())
    }

    fn accept_shares(
        &mut self,
        from: ParticipantIdx,
        shares: Vec<EncryptedShares>,
    ) -> Result<(), String> {
        // One sealed pair per neighbour whose keys were relayed to `from`, in order.
        let expected: Vec<ParticipantIdx> = self
            .config
            .neighbours(from)
            .iter()
            .copied()
            .filter(|v| self.keys.contains_key(v))
            .collect();
        let recipients: Vec<ParticipantIdx> = shares.iter().map(|s| s.peer).collect();
        if recipients != expected {
            return Err(format!(
                "share pairs address {recipients:?}, expected one for each of {expected:?}"
            ));
        }
        self.uploads.insert(from, shares);
        Ok(())
    }

    fn accept_masked_input(&mut self, from: ParticipantIdx, words: Vec<u32>) -> Result<(), String> {
        if words.len() != self.config.vector_len() {
            return Err(format!(
                "masked input has {} words, the round expects {}",
                words.len(),
                self.config.vector_len()
            ));
        }
        let word_mask = self.config.word_mask();
        if words.iter().any(|&w| w & !word_mask != 0) {
            return Err(format!(
                "a masked word is not below 2^{}",
                self.config.modulus_bits()
            ));
        }
        for (acc, &word) in self.masked_sum.iter_mut().zip(&words) {
            *acc = acc.wrapping_add(word);
        }
        self.masked_inputs.insert(from, words);
        Ok(())
    }

    fn accept_consistency_signature(
        &mut self,
        from: ParticipantIdx,
        signature: [u8; 64],
    ) -> Result<(), String> {
        let identity = self.config.identity(from).expect("sender is in the round");
        // A bad signature would make every neighbour refuse to unmask: refuse it here, so the
        // sender alone counts as dropped (its input stays in the sum).
        if !crypto::verify_survivors(
            identity,
            self.config.binding(),
            from,
            &self.survivor_set,
            &signature,
        ) {
            return Err("the consistency signature is not over the announced survivor set".into());
        }
        self.consistency_signatures.insert(from, signature);
        Ok(())
    }

    fn accept_unmask(
        &mut self,
        from: ParticipantIdx,
        response: UnmaskResponse,
    ) -> Result<(), String> {
        let neighbours = self.config.neighbours(from);
        let expected_survivors: Vec<ParticipantIdx> = neighbours
            .iter()
            .copied()
            .filter(|v| self.masked_inputs.contains_key(v))
            .collect();
        let expected_dropped: Vec<ParticipantIdx> = neighbours
            .iter()
            .copied()
            .filter(|v| self.dropped.contains(v))
            .collect();
        let survivors: Vec<ParticipantIdx> = response
            .self_mask_shares
            .iter()
            .map(|(owner, _)| *owner)
            .collect();
        let dropped: Vec<ParticipantIdx> = response
            .masking_key_shares
            .iter()
            .map(|(owner, _)| *owner)
            .collect();
        if survivors != expected_survivors || dropped != expected_dropped {
            return Err(format!(
                "returned self-mask shares of {survivors:?} and masking-key shares of {dropped:?}, expected {expected_survivors:?} and {expected_dropped:?}"
            ));
        }
        self.unmask_responses.insert(from, response);
        Ok(())
    }

    fn close_stage(&mut self) {
        let Phase::Collecting(stage) = self.phase else {
            return;
        };
        let responded: Vec<ParticipantIdx> = self.responded.iter().copied().collect();
        let dropped: Vec<ParticipantIdx> = std::mem::take(&mut self.awaiting)
            .into_iter()
            .chain(
                self.rejections
                    .iter()
                    .filter(|r| r.stage == stage)
                    .map(|r| r.participant),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.outputs
            .push_back(ServerOutput::Event(ServerEvent::StageClosed(StageReport {
                stage,
                responded,
                dropped,
            })));
        let result = match stage {
            Stage::Setup | Stage::AdvertiseKeys => self.relay_keys(),
            Stage::ShareKeys => self.route_shares(),
            Stage::MaskedInput => self.announce_survivors(),
            Stage::ConsistencyCheck => self.request_unmasking(),
            Stage::Unmasking => self.unmask(),
        };
        match result {
            Ok(Some(next)) => {
                self.phase = Phase::Collecting(next);
                self.awaiting = std::mem::take(&mut self.responded);
                self.deadline_ms = Some(self.now_ms.saturating_add(self.stage_timeout_ms));
            }
            Ok(None) => {
                self.phase = Phase::Finished;
            }
            Err(error) => {
                self.phase = Phase::Aborted;
                self.uploads.clear();
                self.unmask_responses.clear();
                self.outputs
                    .push_back(ServerOutput::Event(ServerEvent::Aborted(error)));
            }
        }
    }
}
