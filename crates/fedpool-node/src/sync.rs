//! Ledger catch-up: a node asks a peer for its chain heads, then for the ranges of each
//! author's chain it lacks. Every event received is checked by the store (network, signature,
//! chain link) before it is kept, so a peer can only hand over what authors really signed.

use fedpool_ledger::{Did, Event, EventId, Store};

use crate::Error;

/// Most events in one range response.
pub const MAX_RANGE_EVENTS: u32 = 256;
/// A range response stops adding events past this many bytes (it always carries one).
pub const RANGE_RESPONSE_BYTES: usize = 4 << 20;
/// Largest sync response a node accepts: one maximal event past the soft limit, with room.
pub const MAX_SYNC_RESPONSE: usize = RANGE_RESPONSE_BYTES + fedpool_ledger::MAX_EVENT_BYTES + 4096;
/// Largest sync request.
pub const MAX_SYNC_REQUEST: usize = 1024;
/// Most chain heads a response may list (authors in one network).
pub const MAX_HEADS: usize = 1_000_000;

const VERSION: u8 = 1;

/// What a node asks a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncRequest {
    /// Every author's chain head.
    Heads,
    /// Part of one author's chain.
    Range {
        /// The author.
        author: Did,
        /// First seq wanted.
        from_seq: u64,
        /// Most events wanted.
        limit: u32,
    },
}

/// What a peer answers.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncResponse {
    /// `(author, seq, id)` of every chain head it holds.
    Heads(Vec<(Did, u64, EventId)>),
    /// Encoded events, in seq order.
    Events(Vec<Vec<u8>>),
    /// The peer could not answer.
    Refused(String),
}

impl SyncRequest {
    /// Bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            SyncRequest::Heads => out.push(0),
            SyncRequest::Range {
                author,
                from_seq,
                limit,
            } => {
                out.push(1);
                out.extend_from_slice(author.public_key());
                out.extend_from_slice(&from_seq.to_le_bytes());
                out.extend_from_slice(&limit.to_le_bytes());
            }
        }
        out
    }

    /// Parses a request; never panics.
    pub fn decode(bytes: &[u8]) -> Result<SyncRequest, Error> {
        let mut r = Reader::new(bytes);
        r.version()?;
        let request = match r.u8()? {
            0 => SyncRequest::Heads,
            1 => SyncRequest::Range {
                author: r.did()?,
                from_seq: r.u64()?,
                limit: r.u32()?,
            },
            tag => return Err(Error::Malformed(format!("unknown sync request tag {tag}"))),
        };
        r.end()?;
        Ok(request)
    }
}

impl SyncResponse {
    /// Bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            SyncResponse::Heads(heads) => {
                out.push(0);
                out.extend_from_slice(&(heads.len() as u32).to_le_bytes());
                for (author, seq, id) in heads {
                    out.extend_from_slice(author.public_key());
                    out.extend_from_slice(&seq.to_le_bytes());
                    out.extend_from_slice(id.as_bytes());
                }
            }
            SyncResponse::Events(events) => {
                out.push(1);
                out.extend_from_slice(&(events.len() as u32).to_le_bytes());
                for event in events {
                    out.extend_from_slice(&(event.len() as u32).to_le_bytes());
                    out.extend_from_slice(event);
                }
            }
            SyncResponse::Refused(why) => {
                out.push(2);
                out.extend_from_slice(&(why.len() as u32).to_le_bytes());
                out.extend_from_slice(why.as_bytes());
            }
        }
        out
    }

    /// Parses a response; never panics, and never reserves memory from a count it has not
    /// seen the bytes for.
    pub fn decode(bytes: &[u8]) -> Result<SyncResponse, Error> {
        let mut r = Reader::new(bytes);
        r.version()?;
        let response = match r.u8()? {
            0 => {
                let n = r.count(32 + 8 + 32, MAX_HEADS)?;
                let mut heads = Vec::with_capacity(n);
                for _ in 0..n {
                    heads.push((r.did()?, r.u64()?, EventId::from_bytes(r.array()?)));
                }
                SyncResponse::Heads(heads)
            }
            1 => {
                let n = r.count(4, MAX_RANGE_EVENTS as usize)?;
                let mut events = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.count(1, fedpool_ledger::MAX_EVENT_BYTES)?;
                    events.push(r.take(len)?.to_vec());
                }
                SyncResponse::Events(events)
            }
            2 => {
                let len = r.count(1, 4096)?;
                SyncResponse::Refused(String::from_utf8_lossy(r.take(len)?).into_owned())
            }
            tag => return Err(Error::Malformed(format!("unknown sync response tag {tag}"))),
        };
        r.end()?;
        Ok(response)
    }
}

/// How a node answers a peer's request from its store.
pub fn answer(store: &Store, request: &SyncRequest) -> SyncResponse {
    let result = match request {
        SyncRequest::Heads => store.heads().map(SyncResponse::Heads),
        SyncRequest::Range {
            author,
            from_seq,
            limit,
        } => store
            .chain_range(author, *from_seq, (*limit).min(MAX_RANGE_EVENTS))
            .map(|events| {
                let mut bytes = 0;
                let mut out = Vec::new();
                for event in events {
                    if bytes >= RANGE_RESPONSE_BYTES {
                        break;
                    }
                    let encoded = event.encode();
                    bytes += encoded.len();
                    out.push(encoded);
                }
                SyncResponse::Events(out)
            }),
    };
    result.unwrap_or_else(|e| SyncResponse::Refused(e.to_string()))
}

/// The ranges to ask a peer for, given its heads: every author whose chain it holds further
/// than this store does.
pub fn wanted(
    store: &Store,
    peer_heads: &[(Did, u64, EventId)],
) -> Result<Vec<SyncRequest>, Error> {
    // One read of this store's heads, not one query per author: asked every sync interval
    // of every peer, per-author lookups were most of an idle 100-node cluster's CPU.
    let own: std::collections::HashMap<Did, u64> = store
        .heads()?
        .into_iter()
        .map(|(author, seq, _)| (author, seq))
        .collect();
    let mut requests = Vec::new();
    for (author, seq, _) in peer_heads {
        let next = own.get(author).map_or(1, |head| head + 1);
        if *seq >= next {
            requests.push(SyncRequest::Range {
                author: *author,
                from_seq: next,
                limit: MAX_RANGE_EVENTS,
            });
        }
    }
    Ok(requests)
}

/// Decodes events a peer sent; an undecodable one is an error naming its position.
pub fn decode_events(encoded: &[Vec<u8>]) -> Result<Vec<Event>, Error> {
    encoded
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            Event::decode(bytes)
                .map_err(|e| Error::Malformed(format!("event {i} of the range: {e}")))
        })
        .collect()
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let Some((head, rest)) = self.bytes.split_at_checked(n) else {
            return Err(Error::Malformed(format!(
                "sync message ends early: {n} bytes wanted, {} left",
                self.bytes.len()
            )));
        };
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A DID, not checked to be a curve point: a peer's bogus author only leads to a range
    /// request whose events fail their signature check (and checking every head's key on
    /// every exchange was most of a node's CPU at 100 nodes).
    fn did(&mut self) -> Result<Did, Error> {
        Ok(Did::from_unchecked_bytes(self.array()?))
    }

    /// A count of items of at least `min_item_bytes` each: refused if more than `max`, or
    /// more than the bytes left could hold.
    fn count(&mut self, min_item_bytes: usize, max: usize) -> Result<usize, Error> {
        let n = self.u32()? as usize;
        if n > max || n.saturating_mul(min_item_bytes) > self.bytes.len() {
            return Err(Error::Malformed(format!(
                "a count of {n} in a sync message with {} bytes left (at most {max})",
                self.bytes.len()
            )));
        }
        Ok(n)
    }

    fn version(&mut self) -> Result<(), Error> {
        match self.u8()? {
            VERSION => Ok(()),
            v => Err(Error::Malformed(format!(
                "sync message version {v}; this node speaks {VERSION}"
            ))),
        }
    }

    fn end(&self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed(format!(
                "{} bytes after the end of a sync message",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedpool_ledger::{Keypair, NetworkId};
    use proptest::prelude::*;

    fn store_with(events: &[Event], network: &NetworkId) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("ledger.db"), network).unwrap();
        store.import(events.iter().cloned()).unwrap();
        (dir, store)
    }

    fn chain(network: &NetworkId, seed: u64, n: u64) -> Vec<Event> {
        let key = Keypair::insecure_from_seed(seed);
        let mut writer = fedpool_ledger::ChainWriter::new(network.clone(), key.clone());
        (0..n)
            .map(|i| {
                writer
                    .sign(
                        1_000 + i,
                        fedpool_ledger::ConsentRevoked {
                            model_id: fedpool_ledger::ModelId::for_publication(&key.did(), "x"),
                            consent: EventId::from_bytes([i as u8; 32]),
                        },
                    )
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_store_behind_catches_up_to_identical_heads() {
        let network = NetworkId::new("sync-test").unwrap();
        let mut all = chain(&network, 1, 5);
        all.extend(chain(&network, 2, 3));
        let (_a, ahead) = store_with(&all, &network);
        let (_b, mut behind) = store_with(&all[..2], &network);
        let heads = SyncResponse::decode(&answer(&ahead, &SyncRequest::Heads).encode()).unwrap();
        let SyncResponse::Heads(heads) = heads else {
            panic!()
        };
        for request in wanted(&behind, &heads).unwrap() {
            let request = SyncRequest::decode(&request.encode()).unwrap();
            let SyncResponse::Events(events) =
                SyncResponse::decode(&answer(&ahead, &request).encode()).unwrap()
            else {
                panic!()
            };
            let report = behind.import(decode_events(&events).unwrap()).unwrap();
            assert!(report.rejected.is_empty());
        }
        assert_eq!(behind.heads().unwrap(), ahead.heads().unwrap());
        assert!(wanted(&behind, &heads).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SyncRequest::decode(&bytes);
            let _ = SyncResponse::decode(&bytes);
        }

        #[test]
        fn counts_larger_than_the_bytes_are_refused(n in 1u32..u32::MAX) {
            let mut bytes = vec![VERSION, 1];
            bytes.extend_from_slice(&n.to_le_bytes());
            prop_assert!(SyncResponse::decode(&bytes).is_err());
        }
    }
}
