//! The messages of a round. Participants talk only to the server; the server relays what one
//! participant has for another (signed keys, encrypted shares) without being able to read or
//! forge it. Byte encodings are in [`crate::wire`].

use crate::crypto::SHARE_CIPHERTEXT_BYTES;
use crate::error::{ParticipantIdx, Stage};
use crate::shamir::ShareValue;

/// A participant's two X25519 public keys for this session, signed with its Ed25519 identity
/// key over (label, round binding, index, keys). 132 bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedKeys {
    /// Whose keys these are.
    pub owner: ParticipantIdx,
    /// c_pk: for the key agreement that encrypts share pairs.
    pub encryption_pk: [u8; 32],
    /// s_pk: for the key agreement that seeds pairwise masks.
    pub masking_pk: [u8; 32],
    /// Ed25519 signature by `owner`'s identity key.
    pub signature: [u8; 64],
}

/// One encrypted share pair (ChaCha20-Poly1305, 96 bytes) between two neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedShares {
    /// The other end: the recipient when a participant uploads, the sender when the server
    /// routes it on.
    pub peer: ParticipantIdx,
    /// The sealed pair (share of b_sender, share of s_sk_sender) for the recipient.
    pub ciphertext: [u8; SHARE_CIPHERTEXT_BYTES],
}

/// The server's stage-5 request to a participant that signed the survivor set: the set again
/// and the consistency signatures its neighbours made over it. The participant releases shares
/// only if the set is the one it signed and at least t of its neighbours signed the same set
/// (Bonawitz et al. 2017, round 3), so a server cannot tell two neighbourhoods two stories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskRequest {
    /// Every participant whose masked input is in the sum, sorted: the set all signed.
    pub survivors: Vec<ParticipantIdx>,
    /// (signer, Ed25519 signature over the set) for the recipient's neighbours that signed.
    pub signatures: Vec<(ParticipantIdx, [u8; 64])>,
}

/// A survivor's stage-4 answer. For each neighbour it holds shares of, it returns exactly one
/// share: of the self-mask seed if the neighbour survived, of the masking key if it dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskResponse {
    /// (owner, share of owner's b) for surviving neighbours.
    pub self_mask_shares: Vec<(ParticipantIdx, ShareValue)>,
    /// (owner, share of owner's s_sk) for dropped neighbours.
    pub masking_key_shares: Vec<(ParticipantIdx, ShareValue)>,
}

/// Participant → server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// Stage 1.
    AdvertiseKeys(AdvertisedKeys),
    /// Stage 2: one sealed share pair per live neighbour (`peer` = recipient).
    ShareKeys(Vec<EncryptedShares>),
    /// Stage 3: the masked input, `vector_len` words, each below 2^b.
    MaskedInput(Vec<u32>),
    /// Stage 4: the participant's Ed25519 signature over the survivor set it was shown.
    ConsistencySignature([u8; 64]),
    /// Stage 5.
    UnmaskShares(UnmaskResponse),
}

impl ToServer {
    /// The stage this message belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            ToServer::AdvertiseKeys(_) => Stage::AdvertiseKeys,
            ToServer::ShareKeys(_) => Stage::ShareKeys,
            ToServer::MaskedInput(_) => Stage::MaskedInput,
            ToServer::ConsistencySignature(_) => Stage::ConsistencyCheck,
            ToServer::UnmaskShares(_) => Stage::Unmasking,
        }
    }
}

/// Server → participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    /// End of stage 1: the signed keys of the recipient's neighbours that advertised.
    NeighbourKeys(Vec<AdvertisedKeys>),
    /// End of stage 2: the share pairs sealed for the recipient (`peer` = sender) by its
    /// neighbours that completed stage 2.
    RoutedShares(Vec<EncryptedShares>),
    /// End of stage 3: every participant whose masked input is in the sum, sorted, for the
    /// recipient to sign.
    Survivors(Vec<ParticipantIdx>),
    /// End of stage 4.
    Unmask(UnmaskRequest),
}

impl ToClient {
    /// The stage whose end this message announces (the recipient answers in the next one).
    pub fn stage(&self) -> Stage {
        match self {
            ToClient::NeighbourKeys(_) => Stage::AdvertiseKeys,
            ToClient::RoutedShares(_) => Stage::ShareKeys,
            ToClient::Survivors(_) => Stage::MaskedInput,
            ToClient::Unmask(_) => Stage::ConsistencyCheck,
        }
    }
}
