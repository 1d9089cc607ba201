//! The crate's one error type, and the names it uses to say where something failed: the
//! [`Stage`] of the round and the [`Party`] (server or participant) that detected it.

use std::fmt;

/// A participant's position in the round config, from 0 to n − 1.
///
/// The index is public and fixed by the config; it is also the participant's Shamir evaluation
/// point (index + 1), and it decides the sign of every pairwise mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantIdx(pub u32);

impl ParticipantIdx {
    /// The index as a `usize`, for indexing per-participant tables.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ParticipantIdx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "participant {}", self.0)
    }
}

/// The stages of a round, in order (Bonawitz et al. 2017, figure 4; Bell et al. 2020, §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Stage 0: building the config and the participants' state, before any message.
    Setup,
    /// Stage 1: every participant sends two signed X25519 public keys; the server relays each
    /// participant's neighbours' keys to it.
    AdvertiseKeys,
    /// Stage 2: every participant checks its neighbours' signatures, Shamir-shares its self-mask
    /// seed and masking key among them, and sends the encrypted shares for routing.
    ShareKeys,
    /// Stage 3: every participant sends its masked, quantized input vector.
    MaskedInput,
    /// Stage 4: every survivor signs the one survivor set the server showed it (the
    /// consistency check of Bonawitz et al. 2017).
    ConsistencyCheck,
    /// Stage 5: survivors that signed return the shares the server needs to remove the masks.
    Unmasking,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Setup => "setup",
            Stage::AdvertiseKeys => "advertise-keys",
            Stage::ShareKeys => "share-keys",
            Stage::MaskedInput => "masked-input",
            Stage::ConsistencyCheck => "consistency-check",
            Stage::Unmasking => "unmasking",
        })
    }
}

/// Who detected a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// The aggregation server.
    Server,
    /// A participant (client).
    Participant(ParticipantIdx),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Server => f.write_str("server"),
            Party::Participant(idx) => idx.fmt(f),
        }
    }
}

/// Which group of participants fell under the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All participants still in the round.
    Overall,
    /// The live neighbours of one participant (SecAgg+: the holders of its shares).
    NeighboursOf(ParticipantIdx),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Overall => f.write_str("in the round"),
            Scope::NeighboursOf(idx) => write!(f, "among the neighbours of {idx}"),
        }
    }
}

/// Which of a participant's two shared secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The seed b_u of the participant's self mask (reconstructed for survivors).
    SelfMaskSeed,
    /// The participant's X25519 masking secret key s_sk (reconstructed for dropouts).
    MaskingKey,
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretKind::SelfMaskSeed => "self-mask seed",
            SecretKind::MaskingKey => "masking key",
        })
    }
}

/// Everything that can go wrong in a secure-aggregation round. Each variant names the party
/// that detected it and the stage, so a message reads "who, when, what".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The round settings are unusable.
    #[error("round config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A participant's own input or identity does not fit the config.
    #[error("{party} at setup: {reason}")]
    InvalidInput {
        /// The participant.
        party: Party,
        /// What is wrong.
        reason: String,
    },
    /// Keys relayed as `owner`'s do not carry `owner`'s signature under its identity key from
    /// the config: the server (or someone on the path) forged or substituted them.
    #[error(
        "{party} at {stage}: the keys relayed as {owner}'s are not signed by {owner}'s identity key (forged or substituted keys); aborting the round"
    )]
    ForgedKeys {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// Whose keys they claim to be.
        owner: ParticipantIdx,
    },
    /// Two participants advertised the same public key, which only a replay produces.
    #[error("{party} at {stage}: {owner} advertised a public key already advertised by {other}")]
    ReusedKeys {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// The second advertiser.
        owner: ParticipantIdx,
        /// The first advertiser.
        other: ParticipantIdx,
    },
    /// X25519 with a peer's key gave an all-zero secret: the peer's key is a low-order point, so
    /// anyone could compute the "shared" secret.
    #[error(
        "{party} at {stage}: key agreement with {peer} is not contributory (low-order public key)"
    )]
    WeakKey {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// The owner of the bad key.
        peer: ParticipantIdx,
    },
    /// An encrypted share pair did not authenticate: it was altered, or routed to the wrong
    /// recipient.
    #[error(
        "{party} at {stage}: the shares from {sender} fail authentication (tampered or misrouted)"
    )]
    Decryption {
        /// The recipient.
        party: Party,
        /// When.
        stage: Stage,
        /// The claimed sender.
        sender: ParticipantIdx,
    },
    /// A message broke the protocol: wrong stage, unknown or duplicate participant, wrong length.
    #[error("{party} at {stage}: {detail}")]
    ProtocolViolation {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// What was wrong.
        detail: String,
    },
    /// The survivor and dropout sets the server sent contradict what this participant saw.
    /// Answering could reveal both secrets of one participant, so the participant refuses.
    #[error("{party} at {stage}: inconsistent survivor/dropout sets: {detail}")]
    InconsistentSets {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// The contradiction.
        detail: String,
    },
    /// Too few participants remain for the secrets to be recoverable; the round stops before
    /// anything that could be unmasked is released.
    #[error(
        "{party} at {stage}: {alive} participants remain {scope}, the threshold is {threshold}; aborting the round"
    )]
    TooFewSurvivors {
        /// Who noticed.
        party: Party,
        /// When.
        stage: Stage,
        /// Where the count fell short.
        scope: Scope,
        /// How many remain.
        alive: usize,
        /// How many are needed.
        threshold: usize,
    },
    /// Fewer than t shares of a secret the server needs arrived.
    #[error(
        "server at unmasking: {have} shares of the {secret} of {owner} arrived, {threshold} are needed; aborting the round"
    )]
    TooFewShares {
        /// Whose secret.
        owner: ParticipantIdx,
        /// Which secret.
        secret: SecretKind,
        /// Shares that arrived.
        have: usize,
        /// Shares needed.
        threshold: usize,
    },
    /// Shares of a secret reconstruct to something impossible: a value out of range, or a
    /// masking key whose public key is not the one advertised.
    #[error(
        "server at unmasking: the shares of the {secret} of {owner} are inconsistent: {detail}"
    )]
    BadShares {
        /// Whose secret.
        owner: ParticipantIdx,
        /// Which secret.
        secret: SecretKind,
        /// What did not match.
        detail: String,
    },
    /// A byte string is not a valid message.
    #[error("decoding a {message} message: {detail}")]
    Decode {
        /// The message kind being decoded.
        message: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Quantization settings or values are unusable.
    #[error("quantization: {reason}")]
    Quantization {
        /// What is wrong.
        reason: String,
    },
}
