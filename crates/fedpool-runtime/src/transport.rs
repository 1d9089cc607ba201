//! Transports move protocol messages between nodes. The round protocol is written against this
//! trait only, so simulation and deployment differ in the transport, not in the protocol.

use std::collections::VecDeque;

use fedpool_protocol::{Msg, NodeId};

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Payload.
    pub msg: Msg,
}

/// Moves messages between nodes.
pub trait Transport {
    /// Queues `envelope` for delivery. Delivery may be lossy; the protocol tolerates dropouts.
    fn send(&mut self, envelope: Envelope);
    /// The next delivered message, if one is ready.
    fn poll_recv(&mut self) -> Option<Envelope>;
}

/// An owned, in-process transport: a FIFO queue. Messages keep their `Arc`-shared payloads, so
/// broadcasting a model to a thousand simulated clients copies it zero times.
#[derive(Debug, Default)]
pub struct InProcessTransport {
    queue: VecDeque<Envelope>,
    n_delivered: u64,
}

impl InProcessTransport {
    /// An empty transport.
    pub fn new() -> InProcessTransport {
        InProcessTransport::default()
    }

    /// Messages delivered so far.
    pub fn n_delivered(&self) -> u64 {
        self.n_delivered
    }
}

impl Transport for InProcessTransport {
    fn send(&mut self, envelope: Envelope) {
        self.queue.push_back(envelope);
    }

    fn poll_recv(&mut self) -> Option<Envelope> {
        let next = self.queue.pop_front();
        if next.is_some() {
            self.n_delivered += 1;
        }
        next
    }
}
