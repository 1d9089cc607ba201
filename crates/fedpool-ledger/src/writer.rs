//! One author's way to sign its next events: the single "sign my next event" path the CLI,
//! the simulation and the node share, so every chain follows the same sequence and timestamp
//! rules.

use crate::{Body, Did, Error, Event, EventId, Keypair, NetworkId, Store};

/// The head of one author's chain, and the key that extends it.
///
/// Timestamps never go back along a chain, even if the author's clock steps back:
/// verification orders consents, revocations and rounds by them. The writer holds the head in
/// memory, so many events can be signed and then stored in one [`Store::import`]; after a
/// write that failed, [`ChainWriter::resume`] from the store again.
pub struct ChainWriter {
    network: NetworkId,
    keypair: Keypair,
    next_seq: u64,
    prev: Option<EventId>,
    last_timestamp_ms: u64,
}

impl ChainWriter {
    /// A writer for a chain with no events yet.
    pub fn new(network: NetworkId, keypair: Keypair) -> ChainWriter {
        ChainWriter {
            network,
            keypair,
            next_seq: 1,
            prev: None,
            last_timestamp_ms: 0,
        }
    }

    /// A writer that continues `keypair`'s chain as `store` holds it.
    pub fn resume(store: &Store, keypair: Keypair) -> Result<ChainWriter, Error> {
        let (next_seq, prev) = store.next_seq_and_prev(&keypair.did())?;
        let last_timestamp_ms = match prev {
            Some(id) => store.get(&id)?.map_or(0, |event| event.timestamp_ms()),
            None => 0,
        };
        Ok(ChainWriter {
            network: store.network().clone(),
            keypair,
            next_seq,
            prev,
            last_timestamp_ms,
        })
    }

    /// The author.
    pub fn did(&self) -> Did {
        self.keypair.did()
    }

    /// Signs `body` as the chain's next event, at `now_ms` or the previous event's timestamp if
    /// that is later, and advances the head. Nothing is stored.
    pub fn sign(&mut self, now_ms: u64, body: impl Into<Body>) -> Result<Event, Error> {
        let timestamp_ms = now_ms.max(self.last_timestamp_ms);
        let event = Event::sign(
            &self.network,
            &self.keypair,
            self.next_seq,
            self.prev,
            timestamp_ms,
            body,
        )?;
        self.next_seq += 1;
        self.prev = Some(event.id());
        self.last_timestamp_ms = timestamp_ms;
        Ok(event)
    }

    /// Signs `body` as the chain's next event and appends it to `store` (one durable
    /// transaction).
    pub fn append(
        &mut self,
        store: &mut Store,
        now_ms: u64,
        body: impl Into<Body>,
    ) -> Result<Event, Error> {
        let event = self.sign(now_ms, body)?;
        store.append(&event)?;
        Ok(event)
    }
}
