//! The portable export format: a checksummed, versioned sequence of encoded events.
//!
//! | field | bytes |
//! | --- | --- |
//! | magic | `FPLEDGER` (8 bytes) |
//! | version | `u8`, `0x01` |
//! | network | `u32` BE length + UTF-8 |
//! | n_events | `u64` BE |
//! | events | `n_events` × (`u32` BE length + encoded [`Event`]) |
//! | checksum | blake3 of every preceding byte (32 bytes) |
//!
//! Events carry their own signatures and ids, so the checksum only guards the framing: a
//! truncated or damaged file is rejected as a whole instead of importing part of it.
//! Importing the same file twice is a no-op, because appends of present events are.

use crate::encoding::{Reader, Writer};
use crate::{Error, Event, NetworkId};

const MAGIC: &[u8; 8] = b"FPLEDGER";
const BUNDLE_VERSION: u8 = 1;

/// Encodes `events` of `network` as an export file.
pub fn encode_bundle(network: &NetworkId, events: &[Event]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + events.len() * 512);
    w.raw(MAGIC);
    w.u8(BUNDLE_VERSION);
    w.str(network.as_str());
    w.u64(events.len() as u64);
    for event in events {
        let bytes = event.encode();
        w.len(bytes.len());
        w.raw(&bytes);
    }
    let checksum = blake3::hash(&w.bytes);
    w.raw(checksum.as_bytes());
    w.bytes
}

/// Decodes an export file into its network and events (signatures are not checked here; the
/// store checks them on import). Never panics on malformed input.
pub fn decode_bundle(bytes: &[u8]) -> Result<(NetworkId, Vec<Event>), Error> {
    let bundle_error = |offset: usize, reason: String| Error::Bundle { offset, reason };
    if bytes.len() < MAGIC.len() + 1 + 4 + 8 + 32 {
        return Err(bundle_error(
            0,
            format!("{} bytes is too short for a ledger export", bytes.len()),
        ));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(bundle_error(
            0,
            "missing `FPLEDGER` magic: not a fedpool ledger export".into(),
        ));
    }
    let (content, checksum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(content).as_bytes() != checksum {
        return Err(bundle_error(
            content.len(),
            "checksum mismatch: the file is truncated or damaged".into(),
        ));
    }
    let mut r = Reader::new(content);
    let framing = |err: Error| match err {
        Error::Decode {
            offset,
            field,
            reason,
        } => bundle_error(offset, format!("{field}: {reason}")),
        other => other,
    };
    r.take(MAGIC.len(), "magic").map_err(framing)?;
    let version = r.u8("version").map_err(framing)?;
    if version != BUNDLE_VERSION {
        return Err(bundle_error(
            MAGIC.len(),
            format!("unsupported export version {version}, this build reads {BUNDLE_VERSION}"),
        ));
    }
    let network_offset = r.offset;
    let network = NetworkId::new(&r.str("network").map_err(framing)?)
        .map_err(|err| bundle_error(network_offset, err.to_string()))?;
    let n_events = r.u64("n_events").map_err(framing)?;
    // Each framed event takes at least 4 + 1 bytes; a larger count is a lie.
    if n_events > (r.remaining() / 5) as u64 {
        return Err(bundle_error(
            r.offset - 8,
            format!(
                "{n_events} events cannot fit in the {} bytes that follow",
                r.remaining()
            ),
        ));
    }
    // The count is untrusted: a decoded event is ~100× its 5-byte minimum frame, so reserving
    // for it would let a small file demand gigabytes. Grow with what actually decodes.
    let mut events =
        Vec::with_capacity((n_events as usize).min(crate::encoding::PREALLOCATE_AT_MOST));
    for event_idx in 0..n_events {
        let len = r.len("event length", 1).map_err(framing)?;
        let event_offset = r.offset;
        let event_bytes = r.take(len, "event").map_err(framing)?;
        let event = Event::decode(event_bytes)
            .map_err(|err| bundle_error(event_offset, format!("event #{event_idx}: {err}")))?;
        events.push(event);
    }
    r.finish("checksum").map_err(framing)?;
    Ok((network, events))
}
