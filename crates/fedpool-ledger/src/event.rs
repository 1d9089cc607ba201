//! Signed, content-addressed events and their canonical encoding.
//!
//! # Encoding, version 5
//!
//! An encoded event is its *signed bytes* followed by the 64-byte Ed25519 signature:
//!
//! | field | bytes |
//! | --- | --- |
//! | version | `u8`, `0x05` |
//! | network | `u32` BE length + UTF-8 (1–64 bytes of `[a-z0-9._-]`) |
//! | author | 32-byte Ed25519 public key |
//! | seq | `u64` BE, ≥ 1 and ≤ 2⁶³−1 |
//! | prev | `0x00` if seq = 1, else `0x01` + 32-byte blake3 digest of the previous event |
//! | timestamp_ms | `u64` BE, ≤ 2⁶³−1 |
//! | kind | `u8` tag (1 model-published … 13 rewards-settled; see [`crate::kinds`]) |
//! | body | `u32` BE length + the body's fields (layouts in [`crate::kinds`]) |
//! | signature | 64 bytes (not part of the signed bytes) |
//!
//! Inside bodies, values are written as:
//!
//! | value | bytes |
//! | --- | --- |
//! | `u32`, `u64` | fixed width, big-endian |
//! | `f64` | `u64` big-endian of `f64::to_bits`; must be finite |
//! | `Option<T>` | `0x00`, or `0x01` followed by `T` |
//! | string | `u32` BE byte length, then UTF-8 |
//! | `Vec<T>` | `u32` BE item count, then the items |
//! | tuple | its fields in order |
//! | DID | the 32-byte Ed25519 public key |
//! | event id | the 32-byte blake3 digest |
//!
//! Decoding rejects anything else (unknown version or kind, trailing bytes, bad tags,
//! non-finite floats, invalid UTF-8, a key that is not a curve point), so each event has one
//! encoding.
//!
//! # Id and signature
//!
//! The [`EventId`] is blake3 of the **signed bytes**, without the signature. The id names what
//! the author said: chains link content to content, a fork means two different contents at
//! one seq (not two signatures of one content), and the id is known before signing. Because
//! Ed25519 signing is deterministic and verification is strict, an event has exactly one valid
//! signature anyway, and every tampered signature is caught by checking it.
//!
//! The signature covers `"fedpool-ledger/event/v1\0" ‖ id digest`. The tag keeps ledger
//! signatures from being valid for anything else signed with the same key (the key is also the
//! node's network identity), and signing the 32-byte digest keeps verification cost independent
//! of the event's size.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ed25519_dalek::VerifyingKey;

use crate::encoding::{Reader, Writer, format_cid, parse_cid};
use crate::identity::verify_strict;
use crate::{Body, Did, Error, EventKind, Keypair, ModelId, Signature};

/// The encoding version this build writes and reads.
pub const ENCODING_VERSION: u8 = 5;

/// The largest encoded event accepted (8 MiB): large enough for a contract and a round with
/// tens of thousands of participants, small enough that a hostile peer cannot make a node
/// allocate without bound.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

const SIGNATURE_DOMAIN: &[u8] = b"fedpool-ledger/event/v1\0";
const MAX_NETWORK_ID_BYTES: usize = 64;
/// Sequence numbers and timestamps are stored in SQLite's signed 64-bit integers.
const MAX_STORED_INTEGER: u64 = i64::MAX as u64;

/// Names a ledger namespace (e.g. `fedpool-main`, `fedpool-test`), so an event signed for one
/// network is recognised as foreign when replayed into another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NetworkId(String);

impl NetworkId {
    /// Validates `name`: 1 to 64 bytes of lower-case ASCII letters, digits, `.`, `_` or `-`.
    pub fn new(name: &str) -> Result<NetworkId, Error> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_NETWORK_ID_BYTES {
            Some("it is longer than 64 bytes")
        } else if !name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        }) {
            Some("only lower-case letters, digits, `.`, `_` and `-` are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::NetworkId {
                input: name.to_string(),
                reason,
            }),
            None => Ok(NetworkId(name.to_string())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NetworkId {
    type Err = Error;

    fn from_str(name: &str) -> Result<NetworkId, Error> {
        NetworkId::new(name)
    }
}

impl<'de> Deserialize<'de> for NetworkId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NetworkId, D::Error> {
        let text = String::deserialize(deserializer)?;
        NetworkId::new(&text).map_err(serde::de::Error::custom)
    }
}

/// An event's content address: blake3 of its signed bytes, written as a CIDv1 (`raw` codec,
/// blake3 multihash 0x1e, base32-lower multibase), e.g. `bafkr4i…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 32]);

impl EventId {
    /// The id with the given blake3 digest.
    pub fn from_bytes(digest: [u8; 32]) -> EventId {
        EventId(digest)
    }

    /// The 32-byte blake3 digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_cid(&self.0))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = Error;

    fn from_str(input: &str) -> Result<EventId, Error> {
        parse_cid(input)
            .map(EventId)
            .map_err(|reason| Error::EventIdParse {
                input: input.chars().take(100).collect(),
                reason,
            })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A signed ledger event. Fields are read through accessors so the cached id always matches
/// the content; build one with [`Event::sign`] or [`Event::decode`].
#[derive(Clone, PartialEq)]
pub struct Event {
    network: NetworkId,
    author: Did,
    seq: u64,
    prev: Option<EventId>,
    timestamp_ms: u64,
    body: Body,
    signature: Signature,
    id: EventId,
    /// The author's key, decompressed when a signature is first checked: reading a stored
    /// event back never needs it, and decompression dominated a node's CPU when every read
    /// paid for it.
    author_key: AuthorKey,
}

/// A lazily decompressed author key (`None`: the bytes are not a curve point). It is derived
/// from the event's `author`, which equality already compares.
#[derive(Clone, Default)]
struct AuthorKey(OnceLock<Option<VerifyingKey>>);

impl PartialEq for AuthorKey {
    fn eq(&self, _: &AuthorKey) -> bool {
        true
    }
}

impl AuthorKey {
    fn known(key: VerifyingKey) -> AuthorKey {
        AuthorKey(OnceLock::from(Some(key)))
    }

    fn get(&self, author: &Did) -> Option<&VerifyingKey> {
        self.0
            .get_or_init(|| VerifyingKey::from_bytes(author.public_key()).ok())
            .as_ref()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("network", &self.network)
            .field("author", &self.author)
            .field("seq", &self.seq)
            .field("prev", &self.prev)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("body", &self.body)
            .field("signature", &self.signature)
            .finish()
    }
}

impl Event {
    /// Builds and signs event number `seq` of `keypair`'s chain.
    ///
    /// `prev` is the id of the author's event `seq - 1` (`None` for seq 1); `timestamp_ms` is
    /// the author's clock, passed in so that this crate never reads one. Fails if `seq` is 0,
    /// `prev` does not fit `seq`, a float is NaN or infinite, or the event would exceed
    /// [`MAX_EVENT_BYTES`].
    pub fn sign(
        network: &NetworkId,
        keypair: &Keypair,
        seq: u64,
        prev: Option<EventId>,
        timestamp_ms: u64,
        body: impl Into<Body>,
    ) -> Result<Event, Error> {
        let body = body.into();
        let invalid = |reason: String| Error::InvalidEvent {
            author: keypair.did(),
            seq,
            reason,
        };
        if let Some(reason) = header_problem(seq, prev.is_some(), timestamp_ms) {
            return Err(invalid(reason.to_string()));
        }
        if let Some((field, value)) = body.first_non_finite() {
            return Err(invalid(format!(
                "{} field `{field}` is {value}; only finite numbers can be encoded",
                body.kind()
            )));
        }
        let mut event = Event {
            network: network.clone(),
            author: keypair.did(),
            seq,
            prev,
            timestamp_ms,
            body,
            signature: Signature([0; 64]),
            id: EventId([0; 32]),
            author_key: AuthorKey::known(keypair.verifying_key()),
        };
        let signed_bytes = event.signed_bytes();
        if signed_bytes.len() + 64 > MAX_EVENT_BYTES {
            return Err(invalid(format!(
                "encoded size {} bytes exceeds the limit of {MAX_EVENT_BYTES}",
                signed_bytes.len() + 64
            )));
        }
        event.id = EventId(*blake3::hash(&signed_bytes).as_bytes());
        event.signature = keypair.sign(&signature_message(&event.id));
        Ok(event)
    }

    /// The full encoding: signed bytes, then the signature (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.signed_bytes();
        bytes.extend_from_slice(&self.signature.0);
        bytes
    }

    /// Decodes a full encoding. Never panics; every malformed input is an [`Error::Decode`]
    /// naming the field and byte offset. Does not check the signature (see
    /// [`Event::verify_signature`]), so that tampered events can still be inspected and
    /// reported.
    pub fn decode(bytes: &[u8]) -> Result<Event, Error> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(Error::Decode {
                offset: 0,
                field: "event",
                reason: format!(
                    "{} bytes exceeds the limit of {MAX_EVENT_BYTES}",
                    bytes.len()
                ),
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != ENCODING_VERSION {
            r.offset = 0;
            return Err(r.error(
                "version",
                format!(
                    "unsupported encoding version {version}, this build reads {ENCODING_VERSION}"
                ),
            ));
        }
        let network_offset = r.offset;
        let network_name = r.str("network")?;
        let network = NetworkId::new(&network_name).map_err(|err| Error::Decode {
            offset: network_offset,
            field: "network",
            reason: err.to_string(),
        })?;
        // Not checked to be a curve point here: an author that is not one fails the signature
        // check, the only thing its key is for.
        let author = Did::from_unchecked_bytes(r.array::<32>("author")?);
        let header_offset = r.offset;
        let seq = r.u64("seq")?;
        let prev = r.option("prev", |r| Ok(EventId(r.array("prev")?)))?;
        let timestamp_ms = r.u64("timestamp_ms")?;
        if let Some(reason) = header_problem(seq, prev.is_some(), timestamp_ms) {
            return Err(Error::Decode {
                offset: header_offset,
                field: "seq",
                reason: reason.to_string(),
            });
        }
        let kind_tag = r.u8("kind")?;
        let Some(kind) = EventKind::from_tag(kind_tag) else {
            r.offset -= 1;
            return Err(r.error("kind", format!("unknown kind tag {kind_tag}")));
        };
        let body_len = r.len("body", 1)?;
        let body_bytes = r.take(body_len, "body")?;
        let mut body_reader = Reader::new(body_bytes);
        let body = Body::decode(kind, &mut body_reader)
            .and_then(|body| body_reader.finish("body").map(|()| body))
            .map_err(|err| match err {
                // Report offsets relative to the whole event.
                Error::Decode {
                    offset,
                    field,
                    reason,
                } => Error::Decode {
                    offset: offset + r.offset - body_len,
                    field,
                    reason,
                },
                other => other,
            })?;
        let n_signed_bytes = r.offset;
        let signature = Signature(r.array("signature")?);
        r.finish("signature")?;
        Ok(Event {
            network,
            author,
            seq,
            prev,
            timestamp_ms,
            body,
            signature,
            id: EventId(*blake3::hash(&bytes[..n_signed_bytes]).as_bytes()),
            author_key: AuthorKey::default(),
        })
    }

    /// Checks the signature against the author's key.
    pub fn verify_signature(&self) -> Result<(), Error> {
        if let Some(key) = self.author_key.get(&self.author)
            && verify_strict(key, &signature_message(&self.id), &self.signature)
        {
            Ok(())
        } else {
            Err(Error::Signature {
                author: self.author,
                seq: self.seq,
                id: self.id,
            })
        }
    }

    /// The event's content address.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The ledger namespace the event was signed for.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// Who signed it.
    pub fn author(&self) -> Did {
        self.author
    }

    /// Its position in the author's chain, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The id of the author's previous event (`None` for seq 1).
    pub fn prev(&self) -> Option<EventId> {
        self.prev
    }

    /// The author's clock when signing, in ms since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// What the event says.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body's kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The model the event is about; `None` for kinds about no model (wallet links, anchors).
    pub fn model_id(&self) -> Option<&ModelId> {
        self.body.model_id()
    }

    /// What the store's `model_id` column holds: the model id, or `""` for no model.
    pub(crate) fn model_column(&self) -> &str {
        self.model_id().map_or("", ModelId::as_str)
    }

    /// The author's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The bytes the id hashes (everything but the signature).
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(ENCODING_VERSION);
        w.str(self.network.as_str());
        w.raw(self.author.public_key());
        w.u64(self.seq);
        w.option(self.prev, |w, prev| w.raw(&prev.0));
        w.u64(self.timestamp_ms);
        w.u8(self.kind().tag());
        let len_idx = w.bytes.len();
        w.u32(0);
        self.body.encode(&mut w);
        let body_len = w.bytes.len() - len_idx - 4;
        w.bytes[len_idx..len_idx + 4].copy_from_slice(&(body_len as u32).to_be_bytes());
        w.bytes
    }
}

fn signature_message(id: &EventId) -> [u8; SIGNATURE_DOMAIN.len() + 32] {
    let mut message = [0u8; SIGNATURE_DOMAIN.len() + 32];
    message[..SIGNATURE_DOMAIN.len()].copy_from_slice(SIGNATURE_DOMAIN);
    message[SIGNATURE_DOMAIN.len()..].copy_from_slice(&id.0);
    message
}

/// Structural rules every event obeys, checked when signing and when decoding.
fn header_problem(seq: u64, has_prev: bool, timestamp_ms: u64) -> Option<&'static str> {
    if seq == 0 {
        Some("seq starts at 1")
    } else if seq > MAX_STORED_INTEGER {
        Some("seq exceeds 2^63-1")
    } else if timestamp_ms > MAX_STORED_INTEGER {
        Some("timestamp_ms exceeds 2^63-1")
    } else if seq == 1 && has_prev {
        Some("seq 1 cannot name a previous event")
    } else if seq > 1 && !has_prev {
        Some("only seq 1 may omit the previous event")
    } else {
        None
    }
}
