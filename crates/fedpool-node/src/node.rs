//! A running node: one libp2p swarm, one ledger, and the node's roles (owner of data for the
//! models it consented to; publisher of the models it trains), driven by one event loop.
//! Training runs on the blocking pool so the swarm keeps answering while a model trains.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fedpool_core::TrainOutcome;
use fedpool_ledger::{
    AppendOutcome, Body, Did, Event, Keypair, ModelId, NetworkId, Store, active_consents,
};
use fedpool_protocol::{Msg, PublisherInput, RoundId, Stage, wire};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify};
use serde_json::json;
use tokio::sync::mpsc;

use crate::chunk::{Chunk, Reassembler};
use crate::control::{self, ControlCall, ControlRequest};
use crate::identity::{did_of, libp2p_keypair};
use crate::outbox::Outbox;
use crate::owner::{Owner, OwnerAction, find_publication};
use crate::publishing::{PublisherRun, RunAction, short};
use crate::replay::Replay;
use crate::swarm::{Behaviour, BehaviourEvent, MAX_GOSSIP_BYTES};
use crate::sync::{self, SyncRequest, SyncResponse};
use crate::{DataSource, Error, WireTap, now_ms};

/// How a node runs.
pub struct NodeConfig {
    /// Its home (control socket, model files).
    pub home: PathBuf,
    /// Its identity: the ledger key.
    pub keypair: Keypair,
    /// Its ledger database.
    pub ledger_path: PathBuf,
    /// The network it belongs to (ledger namespace and gossip topic).
    pub network: NetworkId,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Where its rows come from.
    pub data: Arc<dyn DataSource>,
    /// How long a publisher waits for a round's updates.
    pub round_timeout_ms: u64,
    /// How often it compares ledger heads with its peers.
    pub sync_interval: Duration,
    /// Largest round message it accepts.
    pub max_message_bytes: u64,
    /// Shown every payload the node sends, if set.
    pub wiretap: Option<WireTap>,
    /// Seeds from a simulation plan (tests only; see [`crate::replay`]).
    pub replay: Option<Arc<Replay>>,
    /// Discover peers on the local network by mDNS (off by default).
    pub mdns: bool,
    /// Fault injection for tests: as an owner, stop sending round messages from the first
    /// one of this stage on, as a process killed at that point would (the test then kills it).
    pub freeze_before: Option<Stage>,
    /// Decides models for the owner as their publications arrive (its consent policy).
    pub consent_policy: Option<Arc<dyn ConsentPolicyHook>>,
}

/// The owner's automatic decisions: asked whenever the ledger changed, it decides what models
/// it can and appends each decision (a consent or a refusal naming its rule) as the node's
/// event, which the node then gossips like any of its own.
pub trait ConsentPolicyHook: Send + Sync {
    /// Decides what it can; returns one line per model it looked at, for the log.
    fn decide(
        &self,
        store: &mut Store,
        keypair: &Keypair,
        now_ms: u64,
    ) -> Result<Vec<String>, String>;
}

/// What a node prints once it listens.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its DID.
    pub did: Did,
    /// Its PeerId (the same key).
    pub peer_id: PeerId,
    /// Where it listens.
    pub listen: Vec<Multiaddr>,
    /// Its control socket.
    pub control_socket: PathBuf,
}

/// Misbehaviour below this score gets a peer disconnected and ignored.
const BAN_SCORE: i64 = -50;
/// Peers asked for their ledger heads at each sync interval.
const SYNC_FANOUT: usize = 3;

enum SyncKind {
    Heads,
    Range,
}

struct State {
    swarm: Swarm<Behaviour>,
    store: Store,
    keypair: Keypair,
    me: Did,
    config: NodeConfig,
    topic: gossipsub::IdentTopic,
    announced_seq: u64,
    /// The store's change stamp when every own event up to then had been announced.
    announced_stamp: Option<(u64, i64)>,
    /// The ledger as the consent policy last saw it.
    policy_stamp: Option<(u64, i64)>,
    reassembler: Reassembler<PeerId>,
    outbox: Outbox,
    owner: Owner,
    run: Option<PublisherRun>,
    trained: mpsc::UnboundedSender<(ModelId, RoundId, Result<TrainOutcome, String>)>,
    scores: HashMap<PeerId, i64>,
    blocked: HashSet<PeerId>,
    sync_requests: HashMap<OutboundRequestId, (PeerId, SyncKind)>,
    /// Where the next anti-entropy tick starts in the sorted peer list.
    sync_cursor: usize,
    bytes_received: u64,
    rejected: u64,
    listen: Vec<Multiaddr>,
    /// Set once `freeze_before` has struck.
    frozen: bool,
}

/// Runs a node until `shutdown` completes (or a `shutdown` control request). Calls
/// `on_ready` once it listens on every requested address.
pub async fn run(
    config: NodeConfig,
    on_ready: impl FnOnce(&NodeInfo),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let keypair = config.keypair.clone();
    let me = keypair.did();
    let store = Store::open(&config.ledger_path, &config.network)?;
    let mut swarm = crate::swarm::build(
        libp2p_keypair(&keypair)?,
        Duration::from_secs(60),
        config.mdns,
    )?;
    let topic = gossipsub::IdentTopic::new(format!("fedpool/{}/events/1", config.network.as_str()));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| Error::Transport(format!("cannot subscribe to ledger gossip: {e}")))?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Transport(format!("cannot listen on {addr}: {e}")))?;
    }
    let mut listen = Vec::new();
    while listen.len() < config.listen.len() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => listen.push(address),
            SwarmEvent::ListenerError { error, .. } => {
                return Err(Error::Transport(format!("listener failed: {error}")));
            }
            _ => {}
        }
    }
    for addr in &config.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial a bootstrap peer");
        }
    }
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let control_socket = control::serve(&config.home, calls_tx)?;
    let info = NodeInfo {
        did: me,
        peer_id: *swarm.local_peer_id(),
        listen: listen.clone(),
        control_socket: control_socket.clone(),
    };
    on_ready(&info);
    let (trained_tx, mut trained) = mpsc::unbounded_channel();
    // Events already on the ledger reach peers by catch-up; gossip carries what is new.
    let announced_seq = store.next_seq_and_prev(&me)?.0 - 1;
    let mut state = State {
        reassembler: Reassembler::new(config.max_message_bytes, 8),
        swarm,
        store,
        keypair,
        me,
        topic,
        announced_seq,
        announced_stamp: None,
        policy_stamp: None,
        outbox: Outbox::with_tap(config.wiretap.clone()),
        owner: Owner::replaying(config.replay.clone()),
        run: None,
        trained: trained_tx,
        scores: HashMap::new(),
        blocked: HashSet::new(),
        sync_requests: HashMap::new(),
        sync_cursor: 0,
        bytes_received: 0,
        rejected: 0,
        listen,
        frozen: false,
        config,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync_tick = tokio::time::interval(state.config.sync_interval);
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let result = tokio::select! {
            () = &mut shutdown => break,
            event = state.swarm.select_next_some() => state.on_swarm_event(event),
            Some(call) = calls.recv() => {
                if call.request == ControlRequest::Shutdown {
                    let _ = call.reply.send(json!({"stopping": true}));
                    break;
                }
                state.on_control(call);
                Ok(())
            }
            Some((model, round, outcome)) = trained.recv() => state.on_trained(&model, round, outcome),
            _ = tick.tick() => state.on_tick(),
            _ = sync_tick.tick() => {
                state.redial_bootstrap();
                state.ask_heads_of_a_few();
                Ok(())
            }
        };
        if let Err(e) = result {
            // A failed step never stops the node: its state is the ledger, which each step
            // changes in one transaction or not at all.
            tracing::error!(error = %e, "a node step failed");
        }
    }
    let _ = std::fs::remove_file(&control_socket);
    tracing::info!("node stopped");
    Ok(())
}

impl State {
    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), Error> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.listen.push(address),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if self.blocked.contains(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return Ok(());
                }
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
                tracing::debug!(peer = %short(&peer_id.to_base58()), "connected");
                self.ask_heads(peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                for (peer_id, addr) in found {
                    if peer_id == *self.swarm.local_peer_id() || self.blocked.contains(&peer_id) {
                        continue;
                    }
                    tracing::debug!(peer = %short(&peer_id.to_base58()), %addr, "found on the local network");
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    if !self.swarm.is_connected(&peer_id) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message.data),
            SwarmEvent::Behaviour(BehaviourEvent::Rounds(event)) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let outcome = self.on_chunk(peer, request);
                        // Acknowledged after handling: the sender's next message waits for it.
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .rounds
                            .send_response(channel, Vec::new());
                        outcome?;
                    }
                    request_response::Message::Response { request_id, .. } => {
                        self.outbox
                            .settled(&mut self.swarm.behaviour_mut().rounds, request_id);
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    tracing::warn!(peer = %short(&peer.to_base58()), %error, "a round message was not delivered");
                    self.outbox
                        .settled(&mut self.swarm.behaviour_mut().rounds, request_id);
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    tracing::debug!(peer = %short(&peer.to_base58()), %error, "an inbound round message failed");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let response = match SyncRequest::decode(&request) {
                            Ok(request) => sync::answer(&self.store, &request),
                            Err(e) => {
                                self.penalize(peer, 10, &format!("a malformed sync request: {e}"));
                                SyncResponse::Refused(e.to_string())
                            }
                        };
                        let response = response.encode();
                        self.tap(peer, &response);
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, response);
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => self.on_sync_response(peer, request_id, &response)?,
                },
                request_response::Event::OutboundFailure { request_id, .. } => {
                    self.sync_requests.remove(&request_id);
                }
                request_response::Event::InboundFailure { .. }
                | request_response::Event::ResponseSent { .. } => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn tap(&self, peer: PeerId, bytes: &[u8]) {
        if let Some(tap) = &self.config.wiretap {
            tap(peer, bytes);
        }
    }

    fn penalize(&mut self, peer: PeerId, points: i64, why: &str) {
        self.rejected += 1;
        let score = self.scores.entry(peer).or_insert(0);
        *score -= points;
        tracing::warn!(peer = %short(&peer.to_base58()), score = *score, reason = why, "rejected a peer's message");
        if *score <= BAN_SCORE && self.blocked.insert(peer) {
            tracing::warn!(peer = %short(&peer.to_base58()), "peer blocked for misbehaviour");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, data: Vec<u8>) {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let acceptance = match Event::decode(&data) {
            Err(e) => {
                self.penalize(
                    source,
                    20,
                    &format!("gossiped bytes that are not an event: {e}"),
                );
                Reject
            }
            Ok(event) => match self.store.append(&event) {
                Ok(AppendOutcome::Appended) => Accept,
                Ok(AppendOutcome::ForkRecorded { conflicts_with }) => {
                    tracing::warn!(author = %event.author(), seq = event.seq(), %conflicts_with, "fork kept as evidence");
                    Accept
                }
                Ok(AppendOutcome::AlreadyPresent) => Ignore,
                // Earlier events are missing here: catch up from the peer that has them.
                Err(
                    fedpool_ledger::Error::ChainGap { .. }
                    | fedpool_ledger::Error::ChainPrevHash { .. },
                ) => {
                    self.ask_heads(source);
                    Ignore
                }
                Err(
                    e @ (fedpool_ledger::Error::Signature { .. }
                    | fedpool_ledger::Error::ForeignNetwork { .. }
                    | fedpool_ledger::Error::InvalidEvent { .. }),
                ) => {
                    self.penalize(source, 20, &format!("gossiped an invalid event: {e}"));
                    Reject
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store a gossiped event");
                    Ignore
                }
            },
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }

    fn ask_heads(&mut self, peer: PeerId) {
        let pending = self
            .sync_requests
            .values()
            .any(|(p, kind)| *p == peer && matches!(kind, SyncKind::Heads));
        if self.blocked.contains(&peer) || pending {
            return;
        }
        let request = SyncRequest::Heads.encode();
        self.tap(peer, &request);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.sync_requests.insert(id, (peer, SyncKind::Heads));
    }

    /// Dials bootstrap peers this node is not connected to (they may have restarted), so a
    /// node that lost its way into the network finds it again.
    fn redial_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            let peer = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            let connected = match peer {
                Some(peer) => self.swarm.is_connected(&peer),
                None => self.swarm.connected_peers().next().is_some(),
            };
            if !connected && let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "cannot redial a bootstrap peer");
            }
        }
    }

    /// Anti-entropy: asks the next few peers, in turn, for their heads. Asking every peer
    /// every interval costs each node O(peers) requests a tick and the network O(n²): at 100
    /// nodes that starved the event loops. A few a tick still reaches every peer within
    /// ⌈peers / SYNC_FANOUT⌉ intervals, and gossip delivers new events in the meantime.
    fn ask_heads_of_a_few(&mut self) {
        let mut peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.is_empty() {
            return;
        }
        peers.sort();
        peers.dedup();
        for i in 0..SYNC_FANOUT.min(peers.len()) {
            let peer = peers[(self.sync_cursor + i) % peers.len()];
            self.ask_heads(peer);
        }
        self.sync_cursor = (self.sync_cursor + SYNC_FANOUT) % peers.len();
    }

    fn on_sync_response(
        &mut self,
        peer: PeerId,
        request: OutboundRequestId,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let Some((_, kind)) = self.sync_requests.remove(&request) else {
            return Ok(());
        };
        let response = match SyncResponse::decode(bytes) {
            Ok(response) => response,
            Err(e) => {
                self.penalize(peer, 10, &format!("a malformed sync response: {e}"));
                return Ok(());
            }
        };
        match (kind, response) {
            (SyncKind::Heads, SyncResponse::Heads(heads)) => {
                for request in sync::wanted(&self.store, &heads)? {
                    let request = request.encode();
                    self.tap(peer, &request);
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                    self.sync_requests.insert(id, (peer, SyncKind::Range));
                }
            }
            (SyncKind::Range, SyncResponse::Events(encoded)) => {
                let full = encoded.len() >= sync::MAX_RANGE_EVENTS as usize;
                let events = match sync::decode_events(&encoded) {
                    Ok(events) => events,
                    Err(e) => {
                        self.penalize(peer, 20, &e.to_string());
                        return Ok(());
                    }
                };
                let report = self.store.import(events)?;
                for why in &report.rejected {
                    // A gap is an honest race; a bad signature or another network is not.
                    match why {
                        fedpool_ledger::Error::ChainGap { .. }
                        | fedpool_ledger::Error::ChainPrevHash { .. } => {}
                        other => {
                            self.penalize(peer, 20, &format!("sent an invalid event: {other}"))
                        }
                    }
                }
                if full {
                    self.ask_heads(peer);
                }
            }
            (_, SyncResponse::Refused(why)) => {
                tracing::debug!(peer = %short(&peer.to_base58()), %why, "sync refused");
            }
            _ => self.penalize(peer, 10, "a sync response of the wrong kind"),
        }
        Ok(())
    }

    fn on_chunk(&mut self, peer: PeerId, frame: Vec<u8>) -> Result<(), Error> {
        if self.blocked.contains(&peer) {
            return Ok(());
        }
        self.bytes_received += frame.len() as u64;
        let chunk = match Chunk::decode(&frame) {
            Ok(chunk) => chunk,
            Err(e) => {
                self.penalize(peer, 10, &e.to_string());
                return Ok(());
            }
        };
        match self.reassembler.accept(&peer, chunk, now_ms()) {
            Ok(Some(message)) => self.on_round_message(peer, &message),
            Ok(None) => Ok(()),
            Err(e) => {
                self.penalize(peer, 10, &e.to_string());
                Ok(())
            }
        }
    }

    /// A whole round message from an authenticated peer: routed by the model it is bound to
    /// and by who the peer is for that model, never by anything the message claims.
    fn on_round_message(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), Error> {
        let (model, msg) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.penalize(peer, 10, &format!("an undecodable round message: {e}"));
                return Ok(());
            }
        };
        let model_id = ModelId(model);
        if let Some(run) = &mut self.run
            && run.model_id() == &model_id
        {
            let Some(from) = run.member(&peer) else {
                self.penalize(
                    peer,
                    10,
                    &format!("a round message for {model_id} from a node with no consent to it"),
                );
                return Ok(());
            };
            let actions = run.handle(
                &mut self.store,
                &self.keypair,
                PublisherInput::Received { from, msg },
            )?;
            self.carry_out_run(actions);
            return Ok(());
        }
        if msg.participant_stage().is_some() {
            // A participant's message is for a publisher training that model. To the model's
            // publisher between runs it is merely late; anywhere else it is misaddressed or
            // replayed from another model.
            match find_publication(&self.store, &model_id)? {
                Some((publisher, _)) if publisher == self.me => {
                    tracing::debug!(model = %short(model_id.as_str()), "a participant's message after the run ended");
                }
                _ => self.penalize(
                    peer,
                    10,
                    &format!(
                        "a participant's message for {model_id}, which this node does not train"
                    ),
                ),
            }
            return Ok(());
        }
        let Some(sender) = did_of(&peer) else {
            self.penalize(peer, 10, "a peer without an Ed25519 identity");
            return Ok(());
        };
        match find_publication(&self.store, &model_id)? {
            Some((publisher, _)) if publisher == sender => {
                let actions = self.owner.on_message(
                    &mut self.store,
                    &self.keypair,
                    self.config.data.as_ref(),
                    &model_id,
                    msg,
                )?;
                self.carry_out_owner(actions);
            }
            Some(_) => self.penalize(
                peer,
                10,
                &format!("a round message for {model_id} from a node that is not its publisher"),
            ),
            None => {
                // Not seen yet: the publication may still be on its way; catch up.
                tracing::info!(model = %short(model_id.as_str()), "a round message for a model this ledger has not seen; syncing");
                self.ask_heads(peer);
            }
        }
        Ok(())
    }

    fn send_round(&mut self, peer: PeerId, model_id: &ModelId, msg: &Msg) {
        let bytes = wire::encode(model_id.as_str(), msg);
        self.outbox
            .push(&mut self.swarm.behaviour_mut().rounds, peer, bytes);
    }

    fn carry_out_run(&mut self, actions: Vec<RunAction>) {
        let Some(model_id) = self.run.as_ref().map(|r| r.model_id().clone()) else {
            return;
        };
        for RunAction::Send { peer, msg } in actions {
            self.send_round(peer, &model_id, &msg);
        }
    }

    fn carry_out_owner(&mut self, actions: Vec<OwnerAction>) {
        for action in actions {
            match action {
                OwnerAction::Send {
                    peer,
                    model_id,
                    msg,
                } => {
                    let stage = msg.participant_stage();
                    if !self.frozen && stage.is_some() && stage == self.config.freeze_before {
                        tracing::warn!(?stage, round = %msg.round(), "fault injection: frozen before sending");
                        self.frozen = true;
                    }
                    if !self.frozen {
                        self.send_round(peer, &model_id, &msg);
                    }
                }
                OwnerAction::Train {
                    model_id,
                    job,
                    data,
                } => {
                    let done = self.trained.clone();
                    tokio::task::spawn_blocking(move || {
                        let outcome = data.run(&job);
                        let _ = done.send((model_id, job.round, outcome));
                    });
                }
            }
        }
    }

    fn on_trained(
        &mut self,
        model_id: &ModelId,
        round: RoundId,
        outcome: Result<TrainOutcome, String>,
    ) -> Result<(), Error> {
        let actions =
            self.owner
                .on_trained(&mut self.store, &self.keypair, model_id, round, outcome)?;
        self.carry_out_owner(actions);
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), Error> {
        let now = now_ms();
        let actions = self.owner.tick(&mut self.store, &self.keypair, now)?;
        self.carry_out_owner(actions);
        if let Some(run) = &mut self.run
            && run.next_deadline_ms().is_some_and(|d| d <= now)
        {
            let actions = run.handle(
                &mut self.store,
                &self.keypair,
                PublisherInput::Tick { now_ms: now },
            )?;
            self.carry_out_run(actions);
        }
        if self.run.as_ref().is_some_and(PublisherRun::is_done) {
            // Dropping the run closes the `train` caller's connection.
            self.run = None;
        }
        self.reassembler.expire(now.saturating_sub(120_000));
        self.apply_consent_policy(now)?;
        self.announce_own_events()
    }

    /// Lets the owner's consent policy decide newly published models, whenever the ledger has
    /// changed since it last looked.
    fn apply_consent_policy(&mut self, now: u64) -> Result<(), Error> {
        let Some(policy) = self.config.consent_policy.clone() else {
            return Ok(());
        };
        let stamp = self.store.change_stamp()?;
        if self.policy_stamp == Some(stamp) {
            return Ok(());
        }
        match policy.decide(&mut self.store, &self.keypair, now) {
            Ok(lines) => {
                for line in lines {
                    tracing::info!("consent policy: {line}");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the consent policy could not decide"),
        }
        // Its own decisions changed the ledger: they need no second look.
        self.policy_stamp = Some(self.store.change_stamp()?);
        Ok(())
    }

    /// Gossips this node's new events, whoever appended them (the node itself, or a CLI
    /// command sharing its home).
    fn announce_own_events(&mut self) -> Result<(), Error> {
        // Polled every tick: look for new events only when the database changed.
        let stamp = self.store.change_stamp()?;
        if self.announced_stamp == Some(stamp) {
            return Ok(());
        }
        let head = self.store.next_seq_and_prev(&self.me)?.0 - 1;
        if head <= self.announced_seq {
            self.announced_stamp = Some(stamp);
            return Ok(());
        }
        for event in self
            .store
            .chain_range(&self.me, self.announced_seq + 1, 64)?
        {
            let bytes = event.encode();
            self.announced_seq = event.seq();
            if bytes.len() > MAX_GOSSIP_BYTES {
                continue; // Too big for gossip: peers fetch it by catch-up.
            }
            // A broadcast: tapped as addressed to the node itself.
            self.tap(*self.swarm.local_peer_id(), &bytes);
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), bytes)
            {
                // No subscribed peer yet (or a duplicate): catch-up delivers it later.
                tracing::debug!(error = %e, seq = event.seq(), "event not gossiped");
            }
        }
        if self.announced_seq >= head {
            self.announced_stamp = Some(stamp);
        }
        Ok(())
    }

    fn on_control(&mut self, call: ControlCall) {
        match call.request {
            ControlRequest::Status => {
                let status = self
                    .status()
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
                let _ = call.reply.send(status);
            }
            ControlRequest::Train {
                model,
                rounds,
                eval,
            } => {
                if let Some(run) = &self.run {
                    let _ = call.reply.send(json!({"error": format!("this node is already training {}", run.model_id())}));
                    return;
                }
                let started = PublisherRun::start(
                    &self.store,
                    &self.keypair,
                    &self.config.home,
                    self.config.data.as_ref(),
                    &ModelId(model),
                    rounds,
                    eval.as_deref(),
                    self.config.round_timeout_ms,
                    self.config.replay.as_deref(),
                    call.reply.clone(),
                );
                match started {
                    Ok(mut run) => {
                        let now = now_ms();
                        match run.handle(
                            &mut self.store,
                            &self.keypair,
                            PublisherInput::Tick { now_ms: now },
                        ) {
                            Ok(actions) => {
                                self.run = Some(run);
                                self.carry_out_run(actions);
                            }
                            Err(e) => {
                                let _ = call.reply.send(json!({"error": e.to_string()}));
                            }
                        }
                    }
                    Err(e) => {
                        let _ = call.reply.send(json!({"error": e.to_string()}));
                    }
                }
            }
            ControlRequest::Shutdown => {}
        }
    }

    fn status(&self) -> Result<serde_json::Value, Error> {
        let heads = self.store.heads()?;
        let mut digest = blake3::Hasher::new();
        for (author, seq, id) in &heads {
            digest.update(author.public_key());
            digest.update(&seq.to_le_bytes());
            digest.update(id.as_bytes());
        }
        let now = now_ms();
        let mut models = Vec::new();
        let mut consents = Vec::new();
        for event in self
            .store
            .events_by_kind(fedpool_ledger::EventKind::ModelPublished)?
        {
            let Body::ModelPublished(p) = event.body() else {
                continue;
            };
            models.push(json!({
                "model": p.model_id.as_str(),
                "name": p.name,
                "publisher": event.author().to_string(),
                "mine": event.author() == self.me,
            }));
            let events = self.store.events_by_model(&p.model_id)?;
            for consent in active_consents(&events, p, &event.author(), now) {
                if consent.owner == self.me {
                    consents.push(json!({"model": p.model_id.as_str(), "consent": consent.consent.to_string()}));
                }
            }
        }
        let peers: Vec<serde_json::Value> = self
            .swarm
            .connected_peers()
            .map(|p| {
                json!({
                    "peer_id": p.to_base58(),
                    "did": did_of(p).map(|d| d.to_string()),
                    "score": self.scores.get(p).copied().unwrap_or(0),
                })
            })
            .collect();
        let privacy: Vec<serde_json::Value> = self
            .owner
            .epsilon_spent()
            .into_iter()
            .map(|(model, epsilon, rounds)| json!({"model": model.as_str(), "epsilon": epsilon, "rounds_trained": rounds, "requests_received": self.owner.requests_received(&model)}))
            .collect();
        Ok(json!({
            "did": self.me.to_string(),
            "peer_id": self.swarm.local_peer_id().to_base58(),
            "listen": self.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "peers": peers,
            "blocked": self.blocked.iter().map(|p| p.to_base58()).collect::<Vec<_>>(),
            "ledger": {
                "events": self.store.n_events()?,
                "authors": heads.len(),
                "heads_digest": digest.finalize().to_hex().to_string(),
            },
            "models": models,
            "consents": consents,
            "training": self.run.as_ref().map(|r| json!({
                "model": r.model_id().as_str(),
                "rounds_completed": r.rounds_completed(),
                "epsilon": r.epsilon_spent(),
            })),
            "privacy": privacy,
            "traffic": {
                "round_bytes_sent": self.outbox.bytes_sent(),
                "round_payload_bytes": self.outbox.payload_bytes_queued(),
                "round_bytes_received": self.bytes_received,
                "messages_pending": self.outbox.pending(),
                "rejected_messages": self.rejected,
            },
        }))
    }
}

/// An `Event`'s author and seq, for logs.
#[allow(dead_code)]
fn describe(event: &Event) -> String {
    format!("{}#{}", short(&event.author().to_string()), event.seq())
}
