//! The crate's one error type.

use std::path::PathBuf;

use crate::{Did, EventId};

/// Everything that can go wrong in the ledger.
///
/// Each variant carries where it went wrong: the input text, the byte offset, the author DID and
/// sequence number, the event id or the file path, so a message reads place first, then cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DID string does not start with `did:key:z` (the `z` is the base58btc multibase prefix).
    #[error("`{input}` is not a did:key identifier: expected the prefix `did:key:z`")]
    DidPrefix {
        /// The rejected text.
        input: String,
    },
    /// The part after `did:key:z` is not valid base58btc.
    #[error("`{input}` is not a did:key identifier: invalid base58btc ({reason})")]
    DidBase58 {
        /// The rejected text.
        input: String,
        /// What the base58 decoder objected to.
        reason: String,
    },
    /// The decoded key does not start with the ed25519-pub multicodec (`0xed 0x01`).
    #[error(
        "`{input}` is not an Ed25519 did:key: multicodec prefix is {found}, expected `ed01` (ed25519-pub)"
    )]
    DidCodec {
        /// The rejected text.
        input: String,
        /// The first decoded bytes, in hex.
        found: String,
    },
    /// The decoded key has the ed25519-pub prefix but is not 32 bytes long.
    #[error("`{input}` is not an Ed25519 did:key: the key is {n_key_bytes} bytes, expected 32")]
    DidLength {
        /// The rejected text.
        input: String,
        /// The number of key bytes after the multicodec prefix.
        n_key_bytes: usize,
    },
    /// The 32 key bytes are not a valid compressed Edwards point.
    #[error("`{input}` does not hold a valid Ed25519 public key")]
    DidKey {
        /// The rejected text (or the hex of the raw key when decoding an event).
        input: String,
    },
    /// An event id string is malformed.
    #[error("`{input}` is not an event id: {reason}")]
    EventIdParse {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A network id is empty, too long or uses characters outside `[a-z0-9._-]`.
    #[error("`{input}` is not a valid network id: {reason}")]
    NetworkId {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event cannot be built: a non-finite float, an oversized field, seq 0, or a `prev`
    /// that does not match the sequence number (seq 1 has none, later ones must have one).
    #[error("cannot build event seq {seq} of {author}: {reason}")]
    InvalidEvent {
        /// The would-be author.
        author: Did,
        /// The would-be sequence number.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Bytes are not a valid encoded event.
    #[error("cannot decode event: field `{field}` at byte {offset}: {reason}")]
    Decode {
        /// Offset of the field that failed, from the start of the input.
        offset: usize,
        /// Name of the field being read.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An event's signature does not verify against its author's key.
    #[error("bad signature on event {id} (seq {seq} of {author})")]
    Signature {
        /// The claimed author.
        author: Did,
        /// The event's sequence number.
        seq: u64,
        /// The event's id.
        id: EventId,
    },
    /// An event names a different network than the ledger it is offered to.
    #[error(
        "event {id} (seq {seq} of {author}) belongs to network `{found}`, this ledger is `{expected}`"
    )]
    ForeignNetwork {
        /// The author.
        author: Did,
        /// The event's sequence number.
        seq: u64,
        /// The event's id.
        id: EventId,
        /// The ledger's network.
        expected: String,
        /// The event's network.
        found: String,
    },
    /// An event's sequence number is not one past its author's last stored event.
    #[error("chain {author} breaks at seq {seq}: expected seq {expected_seq} (event {id})")]
    ChainGap {
        /// The author.
        author: Did,
        /// The offered sequence number.
        seq: u64,
        /// The sequence number the chain needs next.
        expected_seq: u64,
        /// The offered event's id.
        id: EventId,
    },
    /// An event's `prev` is not the id of its author's previous event.
    #[error(
        "chain {author} breaks at seq {seq}: previous hash mismatch (the event names {found}, \
         seq {} is {expected})",
        .seq - 1
    )]
    ChainPrevHash {
        /// The author.
        author: Did,
        /// The offered sequence number.
        seq: u64,
        /// The id of the author's event at `seq - 1`.
        expected: EventId,
        /// The `prev` the event names.
        found: EventId,
    },
    /// The operating system's random number generator failed.
    #[error("cannot read OS randomness: {reason}")]
    Randomness {
        /// The OS error.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{path}: {action}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done, e.g. `cannot write key file`.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file already exists and `force` was not given.
    #[error("{path}: key file already exists; refusing to overwrite it without --force", path = .path.display())]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },
    /// A key file is accessible by group or others.
    #[error(
        "{path}: key file has mode {mode:03o} and is accessible by group or others; \
         refusing to load it. Fix with `chmod 600 {path}`",
        path = .path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file belongs to another user.
    #[error(
        "{path}: key file is owned by uid {owner}, not by this user (uid {user}); refusing to \
         load a key someone else controls",
        path = .path.display()
    )]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// A key file's content is malformed.
    #[error("{path}: not a fedpool key file: {reason}", path = .path.display())]
    KeyFileFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// SQLite reported an error.
    #[error("ledger {path}: {action}: {source}", path = .path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a fedpool ledger (not SQLite, or a SQLite file of another application).
    #[error("{path}: not a fedpool ledger: {reason}", path = .path.display())]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The ledger was written by another schema version of this crate.
    #[error("{path}: ledger schema version {found}, this build reads version {expected}", path = .path.display())]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// Version stored in the file.
        found: i64,
        /// Version this build understands.
        expected: i64,
    },
    /// The database fails SQLite's integrity check or misses its metadata.
    #[error("{path}: ledger database is corrupt: {detail}", path = .path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's or our finding.
        detail: String,
    },
    /// A ledger was opened for one network but holds another.
    #[error("{path}: ledger belongs to network `{stored}`, not `{requested}`", path = .path.display())]
    NetworkMismatch {
        /// The database file.
        path: PathBuf,
        /// Network recorded in the database.
        stored: String,
        /// Network asked for.
        requested: String,
    },
    /// A stored event row cannot be read back (its bytes do not decode or disagree with its
    /// columns). `verify` reports these as violations; queries fail with this error.
    #[error("{path}: stored event {id}: {source}", path = .path.display())]
    StoredEvent {
        /// The database file.
        path: PathBuf,
        /// The row's `id` column.
        id: String,
        /// The decoding problem.
        source: Box<Error>,
    },
    /// An export file's framing is malformed.
    #[error("ledger export: byte {offset}: {reason}")]
    Bundle {
        /// Offset in the export file.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// An error inside a named file.
    #[error("{path}: {source}", path = .path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<Error>,
    },
}
