//! An in-process driver: n [`Client`]s and a [`Server`] in one process, a dropout plan, a
//! virtual clock, and byte counts of every message. Tests, benchmarks and the lead's
//! simulations use it; the network driver does the same loop with real transport.
//!
//! The loop, like quinn's test `Pair`: deliver every participant's queued messages to the
//! server (skipping those of participants the plan drops at that stage), drain the server; if
//! it is waiting for someone who will never answer, jump the virtual clock to its deadline and
//! tick; deliver what it sent to the participants, drain them; repeat until the server finishes
//! or aborts. The crate has no threads: the participants' work of one step runs through an
//! [`Executor`], sequential here, which a caller can replace with a rayon one.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::client::{Client, ClientEvent, ClientInput, ClientOutput};
use crate::config::RoundConfig;
use crate::error::{Error, ParticipantIdx, Stage};
use crate::msg::{ToClient, ToServer};
use crate::server::{Aggregate, Server, ServerEvent, ServerInput, ServerOutput, StageReport};

/// Who drops out, and at which stage: a participant dropped at stage S never sends its stage-S
/// message and receives nothing afterwards. (A stage-0 dropout looks like an
/// [`Stage::AdvertiseKeys`] one.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropoutPlan {
    drops: BTreeMap<ParticipantIdx, Stage>,
}

impl DropoutPlan {
    /// Nobody drops.
    pub fn none() -> DropoutPlan {
        DropoutPlan::default()
    }

    /// Adds a dropout.
    pub fn drop_at(mut self, participant: ParticipantIdx, stage: Stage) -> DropoutPlan {
        self.drops.insert(participant, stage);
        self
    }

    /// The stage at which `participant` drops, if it does.
    pub fn stage_of(&self, participant: ParticipantIdx) -> Option<Stage> {
        self.drops.get(&participant).copied()
    }

    /// Whether `participant` is gone by the time it would send a message of `stage`.
    pub fn is_gone(&self, participant: ParticipantIdx, stage: Stage) -> bool {
        self.stage_of(participant).is_some_and(|at| at <= stage)
    }

    /// Every planned dropout.
    pub fn iter(&self) -> impl Iterator<Item = (ParticipantIdx, Stage)> + '_ {
        self.drops.iter().map(|(&p, &s)| (p, s))
    }
}

/// Runs the participants' work of one step. The default runs it in order on this thread.
pub trait Executor {
    /// Calls `work` once on every slot.
    fn for_each_client(&self, slots: &mut [ClientSlot], work: &(dyn Fn(&mut ClientSlot) + Sync));

    /// Runs one piece of server work (a hook for timing it).
    fn run_server(&self, work: &mut dyn FnMut()) {
        work()
    }
}

/// Runs everything in order on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl Executor for Sequential {
    fn for_each_client(&self, slots: &mut [ClientSlot], work: &(dyn Fn(&mut ClientSlot) + Sync)) {
        slots.iter_mut().for_each(work);
    }
}

/// One participant in the simulation: its state machine and its mailboxes.
pub struct ClientSlot {
    idx: ParticipantIdx,
    identity: SigningKey,
    input: Option<Vec<u32>>,
    rng_seed: [u8; 32],
    drop_stage: Option<Stage>,
    client: Option<Client<ChaCha20Rng>>,
    inbox: Vec<ToClient>,
    outbox: Vec<ToServer>,
    outcome: ClientOutcome,
    wire_roundtrip: bool,
}

impl ClientSlot {
    /// The participant's index.
    pub fn participant(&self) -> ParticipantIdx {
        self.idx
    }

    /// Builds the client if needed, delivers its inbox, and collects what it sends. A
    /// participant the plan drops at the stage it would answer next stops here, before doing
    /// that stage's work.
    fn step(&mut self, config: &Arc<RoundConfig>) {
        if let Some(drop_stage) = self.drop_stage {
            let answers = match self.inbox.first() {
                None if self.client.is_none() => Stage::AdvertiseKeys,
                None => return,
                Some(ToClient::NeighbourKeys(_)) => Stage::ShareKeys,
                Some(ToClient::RoutedShares(_)) => Stage::MaskedInput,
                Some(ToClient::Survivors(_)) => Stage::ConsistencyCheck,
                Some(ToClient::Unmask(_)) => Stage::Unmasking,
            };
            if drop_stage <= answers {
                self.outcome = ClientOutcome::Dropped(drop_stage);
                self.inbox.clear();
                return;
            }
        }
        if self.client.is_none() {
            let Some(input) = self.input.take() else {
                return;
            };
            match Client::new(
                Arc::clone(config),
                self.idx,
                &self.identity,
                input,
                ChaCha20Rng::from_seed(self.rng_seed),
            ) {
                Ok(client) => self.client = Some(client),
                Err(error) => {
                    self.outcome = ClientOutcome::Aborted(error);
                    return;
                }
            }
        }
        let client = self.client.as_mut().expect("built above");
        for msg in self.inbox.drain(..) {
            let msg = if self.wire_roundtrip {
                ToClient::decode(&msg.encode()).expect("the server's messages decode")
            } else {
                msg
            };
            client.handle(ClientInput::Received(msg));
        }
        while let Some(output) = client.poll_output() {
            match output {
                ClientOutput::Send(msg) => self.outbox.push(msg),
                ClientOutput::Event(ClientEvent::Finished) => {
                    self.outcome = ClientOutcome::Finished;
                }
                ClientOutput::Event(ClientEvent::Aborted(error)) => {
                    self.outcome = ClientOutcome::Aborted(error);
                }
            }
        }
    }
}

/// How one participant's round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Answered the unmasking request.
    Finished,
    /// Stopped on this error.
    Aborted(Error),
    /// Dropped by the plan at this stage.
    Dropped(Stage),
    /// Still waiting when the server ended the round (e.g. it aborted).
    Waiting,
}

/// Everything one simulated round needs.
pub struct SimRound {
    /// The shared config.
    pub config: Arc<RoundConfig>,
    /// Identity signing keys, one per participant, matching `config`.
    pub identities: Vec<SigningKey>,
    /// Quantized inputs, one per participant.
    pub inputs: Vec<Vec<u32>>,
}

/// Driver settings.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Seed of the participants' CSPRNGs (participant i uses a key derived from it and i).
    pub seed: u64,
    /// The server's per-stage timeout, in virtual milliseconds.
    pub stage_timeout_ms: u64,
    /// Encode and decode every message (slower; exercises the wire format).
    pub wire_roundtrip: bool,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            seed: 0,
            stage_timeout_ms: 10_000,
            wire_roundtrip: false,
        }
    }
}

/// What happened in a simulated round.
pub struct RoundOutcome {
    /// The server's result.
    pub aggregate: Result<Aggregate, Error>,
    /// How each participant's round ended, by index.
    pub clients: Vec<ClientOutcome>,
    /// Every stage the server closed, in order.
    pub stages: Vec<StageReport>,
    /// The server after the round; its [`Server::masked_inputs`] is its whole view of inputs.
    pub server: Server,
    /// Bytes each participant sent, by index (encoded sizes).
    pub upload_bytes: Vec<u64>,
    /// Bytes each participant received, by index.
    pub download_bytes: Vec<u64>,
    /// Virtual time the round took.
    pub elapsed_ms: u64,
}

/// Rewrites a server → participant message before delivery (given the recipient).
pub type ToClientHook<'a> = &'a mut dyn FnMut(ParticipantIdx, &mut ToClient);
/// Rewrites a participant → server message before delivery (given the sender).
pub type ToServerHook<'a> = &'a mut dyn FnMut(ParticipantIdx, &mut ToServer);

/// Message interceptors, for tests that play a malicious server or participant.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Applied to every server → participant message.
    pub to_client: Option<ToClientHook<'a>>,
    /// Applied to every participant → server message.
    pub to_server: Option<ToServerHook<'a>>,
}

/// Runs one round sequentially: see the module docs.
pub fn run_round_in_process(
    round: SimRound,
    plan: &DropoutPlan,
    options: SimOptions,
) -> RoundOutcome {
    run_round_with(round, plan, options, &Sequential, Hooks::default())
}

/// Runs one round with a custom executor and message hooks.
pub fn run_round_with(
    round: SimRound,
    plan: &DropoutPlan,
    options: SimOptions,
    executor: &dyn Executor,
    mut hooks: Hooks<'_>,
) -> RoundOutcome {
    let SimRound {
        config,
        identities,
        inputs,
    } = round;
    let n = config.n_participants();
    assert_eq!(identities.len(), n, "one identity per participant");
    assert_eq!(inputs.len(), n, "one input per participant");
    let mut slots: Vec<ClientSlot> = identities
        .into_iter()
        .zip(inputs)
        .enumerate()
        .map(|(i, (identity, input))| {
            let idx = ParticipantIdx(i as u32);
            ClientSlot {
                idx,
                identity,
                input: Some(input),
                rng_seed: client_seed(options.seed, idx),
                drop_stage: plan.stage_of(idx),
                client: None,
                inbox: Vec::new(),
                outbox: Vec::new(),
                outcome: match plan.stage_of(idx) {
                    Some(Stage::Setup) => ClientOutcome::Dropped(Stage::Setup),
                    _ => ClientOutcome::Waiting,
                },
                wire_roundtrip: options.wire_roundtrip,
            }
        })
        .collect();
    let mut server = Server::new(Arc::clone(&config), options.stage_timeout_ms);
    let mut upload_bytes = vec![0u64; n];
    let mut download_bytes = vec![0u64; n];
    let mut stages = Vec::new();
    let mut now_ms = 0;
    let mut aggregate = None;

    let step_config = Arc::clone(&config);
    let step = move |slot: &mut ClientSlot| {
        if matches!(slot.outcome, ClientOutcome::Waiting) {
            slot.step(&step_config);
        }
    };
    executor.for_each_client(&mut slots, &step);
    executor.run_server(&mut || server.handle(ServerInput::Tick { now_ms }));

    while aggregate.is_none() {
        // Participants → server.
        for slot in &mut slots {
            for msg in slot.outbox.drain(..) {
                if plan.is_gone(slot.idx, msg.stage()) {
                    slot.outcome = ClientOutcome::Dropped(plan.stage_of(slot.idx).expect("gone"));
                    continue;
                }
                let mut msg = msg;
                if let Some(hook) = hooks.to_server.as_mut() {
                    hook(slot.idx, &mut msg);
                }
                upload_bytes[slot.idx.as_usize()] += msg.encoded_len() as u64;
                let msg = if options.wire_roundtrip {
                    ToServer::decode(&msg.encode()).expect("participants' messages decode")
                } else {
                    msg
                };
                let from = slot.idx;
                let mut msg = Some(msg);
                executor.run_server(&mut || {
                    let msg = msg.take().expect("delivered once");
                    server.handle(ServerInput::Received { from, msg });
                });
            }
        }
        // Server → participants; tick to the deadline while the server waits for the silent.
        let mut sent_any = false;
        let mut ticked_at_deadline = false;
        loop {
            while let Some(output) = server.poll_output() {
                match output {
                    ServerOutput::Send { to, mut msg } => {
                        if let Some(hook) = hooks.to_client.as_mut() {
                            hook(to, &mut msg);
                        }
                        download_bytes[to.as_usize()] += msg.encoded_len() as u64;
                        let slot = &mut slots[to.as_usize()];
                        if matches!(slot.outcome, ClientOutcome::Waiting) {
                            slot.inbox.push(msg);
                        }
                        sent_any = true;
                    }
                    ServerOutput::Event(ServerEvent::StageClosed(report)) => stages.push(report),
                    ServerOutput::Event(ServerEvent::Finished(sum)) => aggregate = Some(Ok(sum)),
                    ServerOutput::Event(ServerEvent::Aborted(error)) => {
                        aggregate = Some(Err(error))
                    }
                }
            }
            if sent_any || aggregate.is_some() {
                break;
            }
            // The server waits for participants that will never answer: jump to its deadline.
            // A tick at the deadline always closes the stage, so this happens once per stage.
            assert!(
                !ticked_at_deadline,
                "the server made no progress at its deadline"
            );
            let deadline = server
                .next_deadline_ms()
                .expect("a server still collecting has a deadline");
            now_ms = now_ms.max(deadline);
            executor.run_server(&mut || server.handle(ServerInput::Tick { now_ms }));
            ticked_at_deadline = true;
        }
        executor.for_each_client(&mut slots, &step);
    }
    // Participants the plan drops at the stage they would next have answered.
    for slot in &mut slots {
        if let (ClientOutcome::Waiting, Some(stage)) = (&slot.outcome, plan.stage_of(slot.idx)) {
            slot.outcome = ClientOutcome::Dropped(stage);
        }
    }
    RoundOutcome {
        aggregate: aggregate.expect("loop ends with a result"),
        clients: slots.into_iter().map(|s| s.outcome).collect(),
        stages,
        server,
        upload_bytes,
        download_bytes,
        elapsed_ms: now_ms,
    }
}

fn client_seed(seed: u64, idx: ParticipantIdx) -> [u8; 32] {
    let mut material = [0u8; 12];
    material[..8].copy_from_slice(&seed.to_le_bytes());
    material[8..].copy_from_slice(&idx.0.to_le_bytes());
    blake3::derive_key("fedpool-secagg v1 simulation client rng", &material)
}

/// `Σ inputs[u] mod 2^b` over `participants`: what a correct round outputs.
pub fn plain_sum(
    inputs: &[Vec<u32>],
    participants: &[ParticipantIdx],
    modulus_bits: u32,
) -> Vec<u32> {
    let mask = crate::config::word_mask(modulus_bits);
    let mut sum = vec![0u32; inputs.first().map_or(0, Vec::len)];
    for participant in participants {
        for (acc, &word) in sum.iter_mut().zip(&inputs[participant.as_usize()]) {
            *acc = acc.wrapping_add(word);
        }
    }
    for word in &mut sum {
        *word &= mask;
    }
    sum
}
