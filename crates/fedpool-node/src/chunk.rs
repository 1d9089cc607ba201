//! Round messages of any size within memory, over a transport whose frames are small: a
//! message is cut into fixed-size chunks, each sent as one request, and put back together by
//! the receiver, which checks every header against its own caps before it keeps a byte.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Payload bytes per chunk (the last may be shorter).
pub const CHUNK_BYTES: usize = 512 * 1024;

const MAGIC: &[u8; 4] = b"FPC1";
const HEADER_BYTES: usize = 4 + 8 + 4 + 4 + 8;

/// The largest encoded chunk: header plus payload.
pub const MAX_CHUNK_FRAME: usize = HEADER_BYTES + CHUNK_BYTES;

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The sender's id for the message (unique per sender while in flight).
    pub transfer: u64,
    /// Position, from 0.
    pub index: u32,
    /// Number of chunks in the message.
    pub count: u32,
    /// Length of the whole message.
    pub total_len: u64,
    /// This chunk's bytes.
    pub payload: Vec<u8>,
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Shorter than a header, or not a chunk.
    #[error("not a fedpool chunk ({0})")]
    Malformed(String),
    /// The message it belongs to is over the receiver's cap.
    #[error("a message of {total_len} bytes is over the cap of {max} bytes")]
    TooLarge {
        /// Announced length.
        total_len: u64,
        /// The cap.
        max: u64,
    },
    /// The header contradicts itself or an earlier chunk of the same message.
    #[error("inconsistent chunk: {0}")]
    Inconsistent(String),
    /// The sender has too many messages in flight.
    #[error("more than {0} messages in flight from one peer")]
    TooManyInFlight(usize),
}

impl Chunk {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.transfer.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.total_len.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses a chunk; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Chunk, ChunkError> {
        let Some((header, payload)) = bytes.split_at_checked(HEADER_BYTES) else {
            return Err(ChunkError::Malformed(format!(
                "{} bytes, shorter than the {HEADER_BYTES}-byte header",
                bytes.len()
            )));
        };
        if &header[..4] != MAGIC {
            return Err(ChunkError::Malformed("wrong magic bytes".into()));
        }
        let word = |at: usize, n: usize| {
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(&header[at..at + n]);
            u64::from_le_bytes(buf)
        };
        Ok(Chunk {
            transfer: word(4, 8),
            index: word(12, 4) as u32,
            count: word(16, 4) as u32,
            total_len: word(20, 8),
            payload: payload.to_vec(),
        })
    }
}

/// Cuts `message` into chunks (at least one, even when empty).
pub fn split(transfer: u64, message: &[u8]) -> Vec<Chunk> {
    let count = message.len().div_ceil(CHUNK_BYTES).max(1);
    (0..count)
        .map(|index| {
            let start = index * CHUNK_BYTES;
            let end = (start + CHUNK_BYTES).min(message.len());
            Chunk {
                transfer,
                index: index as u32,
                count: count as u32,
                total_len: message.len() as u64,
                payload: message[start..end].to_vec(),
            }
        })
        .collect()
}

struct Partial {
    count: u32,
    total_len: u64,
    chunks: BTreeMap<u32, Vec<u8>>,
    last_seen_ms: u64,
}

/// Puts messages back together, per sender.
pub struct Reassembler<P> {
    max_message_bytes: u64,
    max_in_flight_per_peer: usize,
    partial: HashMap<(P, u64), Partial>,
}

impl<P: Clone + Eq + Hash> Reassembler<P> {
    /// Accepts messages up to `max_message_bytes`, at most `max_in_flight_per_peer` at a
    /// time from one sender.
    pub fn new(max_message_bytes: u64, max_in_flight_per_peer: usize) -> Reassembler<P> {
        Reassembler {
            max_message_bytes,
            max_in_flight_per_peer,
            partial: HashMap::new(),
        }
    }

    /// Takes one chunk from `from`; returns the whole message once its last chunk is in.
    pub fn accept(
        &mut self,
        from: &P,
        chunk: Chunk,
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.total_len > self.max_message_bytes {
            return Err(ChunkError::TooLarge {
                total_len: chunk.total_len,
                max: self.max_message_bytes,
            });
        }
        let expected_count = (chunk.total_len as usize).div_ceil(CHUNK_BYTES).max(1);
        if chunk.count as usize != expected_count || chunk.index >= chunk.count {
            return Err(ChunkError::Inconsistent(format!(
                "chunk {} of {} for a message of {} bytes",
                chunk.index, chunk.count, chunk.total_len
            )));
        }
        let start = chunk.index as u64 * CHUNK_BYTES as u64;
        let expected_len = (chunk.total_len - start).min(CHUNK_BYTES as u64);
        if chunk.payload.len() as u64 != expected_len {
            return Err(ChunkError::Inconsistent(format!(
                "chunk {} carries {} bytes, its place holds {expected_len}",
                chunk.index,
                chunk.payload.len()
            )));
        }
        if chunk.count == 1 {
            return Ok(Some(chunk.payload));
        }
        let key = (from.clone(), chunk.transfer);
        if !self.partial.contains_key(&key) {
            let in_flight = self.partial.keys().filter(|(peer, _)| peer == from).count();
            if in_flight >= self.max_in_flight_per_peer {
                return Err(ChunkError::TooManyInFlight(self.max_in_flight_per_peer));
            }
            self.partial.insert(
                key.clone(),
                Partial {
                    count: chunk.count,
                    total_len: chunk.total_len,
                    chunks: BTreeMap::new(),
                    last_seen_ms: now_ms,
                },
            );
        }
        let Some(partial) = self.partial.get_mut(&key) else {
            return Ok(None);
        };
        if partial.count != chunk.count || partial.total_len != chunk.total_len {
            self.partial.remove(&key);
            return Err(ChunkError::Inconsistent(
                "chunks of one message disagree on its size".into(),
            ));
        }
        partial.last_seen_ms = now_ms;
        partial.chunks.insert(chunk.index, chunk.payload);
        if partial.chunks.len() < partial.count as usize {
            return Ok(None);
        }
        let Some(partial) = self.partial.remove(&key) else {
            return Ok(None);
        };
        let mut message = Vec::with_capacity(partial.total_len as usize);
        for payload in partial.chunks.into_values() {
            message.extend_from_slice(&payload);
        }
        Ok(Some(message))
    }

    /// Drops messages that have not progressed since `older_than_ms`; returns how many.
    pub fn expire(&mut self, older_than_ms: u64) -> usize {
        let before = self.partial.len();
        self.partial.retain(|_, p| p.last_seen_ms >= older_than_ms);
        before - self.partial.len()
    }

    /// Messages partly received.
    pub fn in_flight(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_survives_chunks_in_any_order() {
        let message: Vec<u8> = (0..(3 * CHUNK_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut chunks = split(7, &message);
        assert_eq!(chunks.len(), 4);
        chunks.reverse();
        let mut reassembler = Reassembler::new(1 << 30, 4);
        let mut out = None;
        for chunk in chunks {
            let decoded = Chunk::decode(&chunk.encode()).unwrap();
            out = reassembler.accept(&"peer", decoded, 0).unwrap();
        }
        assert_eq!(out.unwrap(), message);
        assert_eq!(reassembler.in_flight(), 0);
    }

    #[test]
    fn lies_about_size_and_floods_are_refused() {
        let mut reassembler: Reassembler<&str> = Reassembler::new(CHUNK_BYTES as u64 * 2, 1);
        let huge = Chunk {
            transfer: 1,
            index: 0,
            count: 1 << 20,
            total_len: 1 << 40,
            payload: vec![0; 8],
        };
        assert!(matches!(
            reassembler.accept(&"p", huge, 0),
            Err(ChunkError::TooLarge { .. })
        ));
        let mut short = split(2, &vec![1u8; CHUNK_BYTES + 5])[0].clone();
        short.payload.truncate(10);
        assert!(matches!(
            reassembler.accept(&"p", short, 0),
            Err(ChunkError::Inconsistent(_))
        ));
        let first = split(3, &vec![1u8; CHUNK_BYTES + 5]).remove(0);
        assert_eq!(reassembler.accept(&"p", first, 0), Ok(None));
        let other = split(4, &vec![1u8; CHUNK_BYTES + 5]).remove(0);
        assert_eq!(
            reassembler.accept(&"p", other, 0),
            Err(ChunkError::TooManyInFlight(1))
        );
        assert_eq!(reassembler.expire(1), 1);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(chunk) = Chunk::decode(&bytes) {
                let mut reassembler: Reassembler<u8> = Reassembler::new(1 << 20, 2);
                let _ = reassembler.accept(&0, chunk, 0);
            }
        }
    }
}
