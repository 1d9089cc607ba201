//! Per-peer, in-order delivery of round messages: a message's chunks go out a window at a
//! time, and the next message to the same peer only once every chunk of this one was
//! acknowledged (the receiver acknowledges after handling), so a peer sees one sender's
//! messages in the order they were sent even though each chunk travels on its own stream.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId};

use crate::chunk::split;
use crate::codec::FrameCodec;

/// Chunks in flight to one peer at a time: enough to fill a loopback or LAN pipe, well under
/// the streams a connection allows (a 300 MB message is 600 chunks).
pub const WINDOW: usize = 16;

#[derive(Default)]
struct PeerQueue {
    waiting: VecDeque<Vec<u8>>,
    /// Chunks of the message being sent that have not left yet.
    current: VecDeque<crate::chunk::Chunk>,
    unacknowledged: usize,
}

/// Round messages waiting for, or on, the wire.
#[derive(Default)]
pub struct Outbox {
    queues: HashMap<PeerId, PeerQueue>,
    requests: HashMap<OutboundRequestId, PeerId>,
    next_transfer: u64,
    bytes_sent: u64,
    payload_bytes_queued: u64,
    tap: Option<crate::WireTap>,
}

impl Outbox {
    /// An outbox that shows every frame it sends to `tap` first.
    pub fn with_tap(tap: Option<crate::WireTap>) -> Outbox {
        Outbox {
            tap,
            ..Outbox::default()
        }
    }

    /// Queues `message` for `peer` and sends it if nothing is ahead of it.
    pub fn push(
        &mut self,
        rr: &mut request_response::Behaviour<FrameCodec>,
        peer: PeerId,
        message: Vec<u8>,
    ) {
        self.payload_bytes_queued += message.len() as u64;
        self.queues
            .entry(peer)
            .or_default()
            .waiting
            .push_back(message);
        self.pump(rr, peer);
    }

    /// A chunk was acknowledged (or failed: the rest of its message is abandoned by the
    /// receiver's timeout, and the protocol's own deadlines cope with the loss).
    pub fn settled(
        &mut self,
        rr: &mut request_response::Behaviour<FrameCodec>,
        request: OutboundRequestId,
    ) {
        let Some(peer) = self.requests.remove(&request) else {
            return;
        };
        if let Some(queue) = self.queues.get_mut(&peer) {
            queue.unacknowledged = queue.unacknowledged.saturating_sub(1);
        }
        self.pump(rr, peer);
    }

    /// Bytes handed to the transport so far (chunk headers included).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Bytes of the encoded messages themselves (what the transport's framing is measured
    /// against).
    pub fn payload_bytes_queued(&self) -> u64 {
        self.payload_bytes_queued
    }

    /// Messages not yet fully acknowledged.
    pub fn pending(&self) -> usize {
        self.queues
            .values()
            .map(|q| q.waiting.len() + usize::from(q.unacknowledged > 0 || !q.current.is_empty()))
            .sum()
    }

    fn pump(&mut self, rr: &mut request_response::Behaviour<FrameCodec>, peer: PeerId) {
        let Some(queue) = self.queues.get_mut(&peer) else {
            return;
        };
        if queue.current.is_empty() && queue.unacknowledged == 0 {
            let Some(message) = queue.waiting.pop_front() else {
                self.queues.remove(&peer);
                return;
            };
            self.next_transfer += 1;
            queue.current = split(self.next_transfer, &message).into();
        }
        while queue.unacknowledged < WINDOW {
            let Some(chunk) = queue.current.pop_front() else {
                break;
            };
            let frame = chunk.encode();
            self.bytes_sent += frame.len() as u64;
            if let Some(tap) = &self.tap {
                tap(peer, &frame);
            }
            queue.unacknowledged += 1;
            let id = rr.send_request(&peer, frame);
            self.requests.insert(id, peer);
        }
    }
}
