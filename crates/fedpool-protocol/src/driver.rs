//! The one driver of the round protocol: it feeds the publisher and participants their inputs
//! and hands every output to a [`Host`]. The in-process simulation, the network node and the
//! protocol's own tests all drive the state machines through it; what differs between them is
//! the host (an in-memory queue and a virtual clock, or libp2p and the wall clock) and the
//! executor (a thread pool, or the calling thread).
//!
//! Order is part of the contract, so that a run never depends on thread scheduling: in a batch
//! the publisher hears its messages in arrival order; participants then handle their inboxes
//! (in parallel when the executor allows); their outputs are handed to the host in node order,
//! and the publisher's last. A participant's newly accounted privacy steps reach the host
//! before any message it sent after accounting them (write-ahead: a crash can lose a message,
//! never an ε it spent).

use std::collections::BTreeMap;

use crate::{
    Msg, NodeId, Participant, ParticipantInput, ParticipantOutput, PrivacyRecord, Publisher,
    PublisherInput, PublisherOutput, RoundEvent, RoundId, TrainJob,
};
use fedpool_core::TrainOutcome;

/// Where a driver's outputs go: the seam between the protocol and a runtime.
pub trait Host {
    /// Why the host could not carry an output out (it stops the driver's current call).
    type Error;

    /// `from` sends `msg` to `to`.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) -> Result<(), Self::Error>;

    /// A participant asks for local training; the host answers later with
    /// [`Driver::trained`].
    fn train(&mut self, job: TrainJob) -> Result<(), Self::Error>;

    /// The publisher reports a round event.
    fn event(&mut self, event: RoundEvent) -> Result<(), Self::Error>;

    /// `node` accounted these privacy steps; called before any message it sends after them.
    fn privacy_accounted(
        &mut self,
        node: NodeId,
        records: &[PrivacyRecord],
    ) -> Result<(), Self::Error> {
        let _ = (node, records);
        Ok(())
    }
}

/// A participant with the messages delivered to it in one batch, and what it answered.
pub struct Inbox<'a> {
    participant: &'a mut Participant,
    messages: Vec<(NodeId, Msg)>,
    outputs: Vec<ParticipantOutput>,
}

impl Inbox<'_> {
    /// Hands the participant its messages, in order, and keeps its outputs.
    pub fn handle_all(&mut self) {
        for (from, msg) in self.messages.drain(..) {
            self.participant
                .handle(ParticipantInput::Received { from, msg });
            self.outputs
                .extend(std::iter::from_fn(|| self.participant.poll_output()));
        }
    }
}

/// Runs participants' inboxes: one after another, or in parallel.
pub trait Executor {
    /// Calls [`Inbox::handle_all`] on every inbox, in any order.
    fn handle_inboxes(&self, inboxes: &mut [Inbox<'_>]);
}

/// The calling thread, one inbox after another.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl Executor for Sequential {
    fn handle_inboxes(&self, inboxes: &mut [Inbox<'_>]) {
        inboxes.iter_mut().for_each(Inbox::handle_all);
    }
}

struct Member {
    participant: Participant,
    /// How many of its privacy steps the host has heard of.
    privacy_reported: usize,
}

/// One address space's share of a model's rounds: the publisher (on the publisher's node, or
/// in a simulation), and the participants that live here (every one in a simulation; this node
/// alone on an owner's node).
pub struct Driver {
    publisher: Option<(NodeId, Publisher)>,
    members: BTreeMap<NodeId, Member>,
    misaddressed: u64,
}

impl Driver {
    /// A driver with no state machines yet.
    pub fn new() -> Driver {
        Driver {
            publisher: None,
            members: BTreeMap::new(),
            misaddressed: 0,
        }
    }

    /// Drives `publisher`, whose address is `address`.
    pub fn with_publisher(mut self, address: NodeId, publisher: Publisher) -> Driver {
        self.publisher = Some((address, publisher));
        self
    }

    /// Drives `participant` too (at its own id). Privacy steps it had accounted before
    /// (restored from its history) count as already reported.
    pub fn add_participant(&mut self, participant: Participant) {
        let privacy_reported = participant.privacy_history().len();
        self.members.insert(
            participant.id(),
            Member {
                participant,
                privacy_reported,
            },
        );
    }

    /// The publisher, if this driver runs one.
    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref().map(|(_, p)| p)
    }

    /// The publisher, to set its roster or directory between inputs.
    pub fn publisher_mut(&mut self) -> Option<&mut Publisher> {
        self.publisher.as_mut().map(|(_, p)| p)
    }

    /// The participant at `node`, if it lives here.
    pub fn participant(&self, node: NodeId) -> Option<&Participant> {
        self.members.get(&node).map(|m| &m.participant)
    }

    /// The participant at `node`, to update its consent or directory between inputs.
    pub fn participant_mut(&mut self, node: NodeId) -> Option<&mut Participant> {
        self.members.get_mut(&node).map(|m| &mut m.participant)
    }

    /// Every participant living here, in node order.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> + Clone {
        self.members.values().map(|m| &m.participant)
    }

    /// Messages and training results dropped because their node does not live here.
    pub fn misaddressed(&self) -> u64 {
        self.misaddressed
    }

    /// Delivers a batch of messages (`(from, to, msg)`): see the module docs for the order.
    /// A message to an address that lives elsewhere is dropped and counted.
    pub fn deliver<H: Host>(
        &mut self,
        batch: impl IntoIterator<Item = (NodeId, NodeId, Msg)>,
        executor: &dyn Executor,
        host: &mut H,
    ) -> Result<(), H::Error> {
        let mut by_node: BTreeMap<NodeId, Vec<(NodeId, Msg)>> = BTreeMap::new();
        for (from, to, msg) in batch {
            match &mut self.publisher {
                Some((address, publisher)) if *address == to => {
                    publisher.handle(PublisherInput::Received { from, msg });
                }
                _ if self.members.contains_key(&to) => {
                    by_node.entry(to).or_default().push((from, msg))
                }
                _ => self.misaddressed += 1,
            }
        }
        if !by_node.is_empty() {
            let mut inboxes: Vec<Inbox<'_>> = self
                .members
                .iter_mut()
                .filter_map(|(node, member)| {
                    by_node.remove(node).map(|messages| Inbox {
                        participant: &mut member.participant,
                        messages,
                        outputs: Vec::new(),
                    })
                })
                .collect();
            executor.handle_inboxes(&mut inboxes);
            let answered: Vec<(NodeId, Vec<ParticipantOutput>)> = inboxes
                .into_iter()
                .map(|inbox| (inbox.participant.id(), inbox.outputs))
                .collect();
            for (node, outputs) in answered {
                self.route_participant(node, outputs, host)?;
            }
        }
        self.drain_publisher(host)
    }

    /// Feeds back finished training jobs, in node order.
    pub fn trained<H: Host>(
        &mut self,
        mut results: Vec<(NodeId, RoundId, Result<TrainOutcome, String>)>,
        host: &mut H,
    ) -> Result<(), H::Error> {
        results.sort_by_key(|(node, _, _)| *node);
        for (node, round, outcome) in results {
            let Some(member) = self.members.get_mut(&node) else {
                self.misaddressed += 1;
                continue;
            };
            member
                .participant
                .handle(ParticipantInput::Trained { round, outcome });
            let outputs = std::iter::from_fn(|| member.participant.poll_output()).collect();
            self.route_participant(node, outputs, host)?;
        }
        self.drain_publisher(host)
    }

    /// Every state machine hears the time: participants first, then the publisher.
    pub fn tick<H: Host>(&mut self, now_ms: u64, host: &mut H) -> Result<(), H::Error> {
        let nodes: Vec<NodeId> = self.members.keys().copied().collect();
        for node in nodes {
            let member = self.members.get_mut(&node).expect("listed above");
            member.participant.handle(ParticipantInput::Tick { now_ms });
            let outputs: Vec<ParticipantOutput> =
                std::iter::from_fn(|| member.participant.poll_output()).collect();
            if !outputs.is_empty() {
                self.route_participant(node, outputs, host)?;
            }
        }
        if let Some((_, publisher)) = &mut self.publisher {
            publisher.handle(PublisherInput::Tick { now_ms });
        }
        self.drain_publisher(host)
    }

    /// The earliest time any state machine here needs to hear the clock.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let publisher = self.publisher().and_then(Publisher::next_deadline_ms);
        let participants = self
            .members
            .values()
            .filter_map(|m| m.participant.next_deadline_ms())
            .min();
        match (publisher, participants) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn route_participant<H: Host>(
        &mut self,
        node: NodeId,
        outputs: Vec<ParticipantOutput>,
        host: &mut H,
    ) -> Result<(), H::Error> {
        if let Some(member) = self.members.get_mut(&node) {
            let history = member.participant.privacy_history();
            if history.len() > member.privacy_reported {
                host.privacy_accounted(node, &history[member.privacy_reported..])?;
                member.privacy_reported = history.len();
            }
        }
        for output in outputs {
            match output {
                ParticipantOutput::Send { to, msg } => host.send(node, to, msg)?,
                ParticipantOutput::Train(job) => host.train(job)?,
            }
        }
        Ok(())
    }

    fn drain_publisher<H: Host>(&mut self, host: &mut H) -> Result<(), H::Error> {
        let Some((address, publisher)) = &mut self.publisher else {
            return Ok(());
        };
        while let Some(output) = publisher.poll_output() {
            match output {
                PublisherOutput::Send { to, msg } => host.send(*address, to, msg)?,
                PublisherOutput::Event(event) => host.event(event)?,
            }
        }
        Ok(())
    }
}

impl Default for Driver {
    fn default() -> Driver {
        Driver::new()
    }
}
