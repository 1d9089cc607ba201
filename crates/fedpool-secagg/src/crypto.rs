//! The cryptographic glue, all from audited crates: Ed25519 signatures on advertised keys,
//! X25519 key agreement, HKDF-SHA256 key derivation and ChaCha20-Poly1305 for the share pairs.
//! Every derivation and every associated data starts with a domain-separation label and the
//! round binding (session id + config hash).

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::ParticipantIdx;
use crate::shamir::ShareValue;

/// Plaintext of one encrypted share pair: the recipient's share of the sender's self-mask seed,
/// then its share of the sender's masking key.
pub(crate) const SHARE_PAIR_BYTES: usize = 2 * ShareValue::BYTES;
/// Ciphertext of one share pair: plaintext plus the 16-byte Poly1305 tag.
pub const SHARE_CIPHERTEXT_BYTES: usize = SHARE_PAIR_BYTES + 16;

/// The bytes a participant signs with its identity key in stage 1: label, round binding (which
/// covers the session id and the config), its index, and its two public keys. Binding the index
/// stops the server presenting one participant's keys as another's.
pub(crate) fn advertise_payload(
    binding: &[u8; 32],
    owner: ParticipantIdx,
    encryption_pk: &[u8; 32],
    masking_pk: &[u8; 32],
) -> Vec<u8> {
    const LABEL: &[u8] = b"fedpool-secagg/v1/advertise-keys";
    let mut payload = Vec::with_capacity(LABEL.len() + 32 + 4 + 64);
    payload.extend_from_slice(LABEL);
    payload.extend_from_slice(binding);
    payload.extend_from_slice(&owner.0.to_le_bytes());
    payload.extend_from_slice(encryption_pk);
    payload.extend_from_slice(masking_pk);
    payload
}

pub(crate) fn sign_keys(
    identity: &SigningKey,
    binding: &[u8; 32],
    owner: ParticipantIdx,
    encryption_pk: &[u8; 32],
    masking_pk: &[u8; 32],
) -> [u8; 64] {
    identity
        .sign(&advertise_payload(
            binding,
            owner,
            encryption_pk,
            masking_pk,
        ))
        .to_bytes()
}

/// Strict Ed25519 verification (rejects malleable and small-order encodings).
pub(crate) fn verify_keys(
    identity: &VerifyingKey,
    binding: &[u8; 32],
    owner: ParticipantIdx,
    encryption_pk: &[u8; 32],
    masking_pk: &[u8; 32],
    signature: &[u8; 64],
) -> bool {
    let payload = advertise_payload(binding, owner, encryption_pk, masking_pk);
    identity
        .verify_strict(&payload, &Signature::from_bytes(signature))
        .is_ok()
}

/// The bytes a participant signs in the consistency check: label, round binding, its index,
/// and the whole survivor set (count, then each index). An honest participant signs exactly
/// one set per session, so two different sets can never both carry its signature.
fn survivors_payload(
    binding: &[u8; 32],
    signer: ParticipantIdx,
    survivors: &[ParticipantIdx],
) -> Vec<u8> {
    const LABEL: &[u8] = b"fedpool-secagg/v1/consistency";
    let mut payload = Vec::with_capacity(LABEL.len() + 32 + 8 + 4 * survivors.len());
    payload.extend_from_slice(LABEL);
    payload.extend_from_slice(binding);
    payload.extend_from_slice(&signer.0.to_le_bytes());
    payload.extend_from_slice(&(survivors.len() as u32).to_le_bytes());
    for survivor in survivors {
        payload.extend_from_slice(&survivor.0.to_le_bytes());
    }
    payload
}

pub(crate) fn sign_survivors(
    identity: &SigningKey,
    binding: &[u8; 32],
    signer: ParticipantIdx,
    survivors: &[ParticipantIdx],
) -> [u8; 64] {
    identity
        .sign(&survivors_payload(binding, signer, survivors))
        .to_bytes()
}

pub(crate) fn verify_survivors(
    identity: &VerifyingKey,
    binding: &[u8; 32],
    signer: ParticipantIdx,
    survivors: &[ParticipantIdx],
    signature: &[u8; 64],
) -> bool {
    identity
        .verify_strict(
            &survivors_payload(binding, signer, survivors),
            &Signature::from_bytes(signature),
        )
        .is_ok()
}

/// X25519, refusing non-contributory results (a low-order peer key makes the "shared" secret
/// a constant anyone can compute).
pub(crate) fn agree(secret: &StaticSecret, peer_public: &[u8; 32]) -> Option<[u8; 32]> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer_public));
    shared.was_contributory().then(|| shared.to_bytes())
}

fn hkdf_32(binding: &[u8; 32], shared: &[u8; 32], info: &[&[u8]]) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(Some(binding), shared);
    let mut okm = [0u8; 32];
    hkdf.expand_multi_info(info, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// The AEAD key for the one message `sender` → `recipient` in stage 2. The direction is part of
/// the derivation, so the two directions of a pair never share a key and the fixed zero nonce is
/// used once per key.
pub(crate) fn share_key(
    binding: &[u8; 32],
    shared: &[u8; 32],
    sender: ParticipantIdx,
    recipient: ParticipantIdx,
) -> [u8; 32] {
    hkdf_32(
        binding,
        shared,
        &[
            b"fedpool-secagg/v1/share-encryption",
            &sender.0.to_le_bytes(),
            &recipient.0.to_le_bytes(),
        ],
    )
}

/// The seed s_uv of the pairwise mask between `a` and `b` (symmetric in the pair).
pub(crate) fn pairwise_seed(
    binding: &[u8; 32],
    shared: &[u8; 32],
    a: ParticipantIdx,
    b: ParticipantIdx,
) -> [u8; 32] {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    hkdf_32(
        binding,
        shared,
        &[
            b"fedpool-secagg/v1/pairwise-mask",
            &low.0.to_le_bytes(),
            &high.0.to_le_bytes(),
        ],
    )
}

fn share_ad(binding: &[u8; 32], sender: ParticipantIdx, recipient: ParticipantIdx) -> [u8; 64] {
    let mut ad = [0u8; 64];
    ad[..24].copy_from_slice(b"fedpool-secagg/v1/shares");
    ad[24..56].copy_from_slice(binding);
    ad[56..60].copy_from_slice(&sender.0.to_le_bytes());
    ad[60..64].copy_from_slice(&recipient.0.to_le_bytes());
    ad
}

/// Encrypts a share pair; associated data = label, binding (session), sender, recipient.
pub(crate) fn seal_shares(
    key: &[u8; 32],
    binding: &[u8; 32],
    sender: ParticipantIdx,
    recipient: ParticipantIdx,
    plaintext: &[u8; SHARE_PAIR_BYTES],
) -> [u8; SHARE_CIPHERTEXT_BYTES] {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let mut out = [0u8; SHARE_CIPHERTEXT_BYTES];
    let (body, tag_out) = out.split_at_mut(SHARE_PAIR_BYTES);
    body.copy_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &[0u8; 12].into(),
            &share_ad(binding, sender, recipient),
            body.into(),
        )
        .expect("an 80-byte message is within ChaCha20-Poly1305 limits");
    tag_out.copy_from_slice(&tag);
    out
}

/// Decrypts a share pair; `None` if it does not authenticate.
pub(crate) fn open_shares(
    key: &[u8; 32],
    binding: &[u8; 32],
    sender: ParticipantIdx,
    recipient: ParticipantIdx,
    ciphertext: &[u8; SHARE_CIPHERTEXT_BYTES],
) -> Option<[u8; SHARE_PAIR_BYTES]> {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let mut body = [0u8; SHARE_PAIR_BYTES];
    body.copy_from_slice(&ciphertext[..SHARE_PAIR_BYTES]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&ciphertext[SHARE_PAIR_BYTES..]);
    cipher
        .decrypt_inout_detached(
            &[0u8; 12].into(),
            &share_ad(binding, sender, recipient),
            (&mut body[..]).into(),
            &tag.into(),
        )
        .ok()
        .map(|()| body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_shares_open_only_for_the_right_sender_recipient_and_session() {
        let key = [5u8; 32];
        let binding = [1u8; 32];
        let (a, b) = (ParticipantIdx(1), ParticipantIdx(2));
        let plaintext = [9u8; SHARE_PAIR_BYTES];
        let sealed = seal_shares(&key, &binding, a, b, &plaintext);
        assert_eq!(open_shares(&key, &binding, a, b, &sealed), Some(plaintext));
        assert_eq!(open_shares(&key, &binding, b, a, &sealed), None);
        assert_eq!(open_shares(&key, &[2u8; 32], a, b, &sealed), None);
        let mut tampered = sealed;
        tampered[3] ^= 1;
        assert_eq!(open_shares(&key, &binding, a, b, &tampered), None);
    }

    #[test]
    fn pairwise_seeds_agree_and_share_keys_are_directional() {
        let secret_a = StaticSecret::from([3u8; 32]);
        let secret_b = StaticSecret::from([4u8; 32]);
        let public_a = PublicKey::from(&secret_a).to_bytes();
        let public_b = PublicKey::from(&secret_b).to_bytes();
        let binding = [0u8; 32];
        let (a, b) = (ParticipantIdx(0), ParticipantIdx(7));
        let from_a = agree(&secret_a, &public_b).unwrap();
        let from_b = agree(&secret_b, &public_a).unwrap();
        assert_eq!(
            pairwise_seed(&binding, &from_a, a, b),
            pairwise_seed(&binding, &from_b, b, a)
        );
        assert_ne!(
            share_key(&binding, &from_a, a, b),
            share_key(&binding, &from_a, b, a)
        );
    }

    #[test]
    fn low_order_peer_keys_are_refused() {
        let secret = StaticSecret::from([3u8; 32]);
        assert_eq!(agree(&secret, &[0u8; 32]), None);
    }

    #[test]
    fn signatures_bind_the_owner_index_and_keys() {
        let identity = SigningKey::from_bytes(&[8u8; 32]);
        let binding = [2u8; 32];
        let signature = sign_keys(&identity, &binding, ParticipantIdx(3), &[1; 32], &[2; 32]);
        let public = identity.verifying_key();
        assert!(verify_keys(
            &public,
            &binding,
            ParticipantIdx(3),
            &[1; 32],
            &[2; 32],
            &signature
        ));
        assert!(!verify_keys(
            &public,
            &binding,
            ParticipantIdx(4),
            &[1; 32],
            &[2; 32],
            &signature
        ));
        assert!(!verify_keys(
            &public,
            &binding,
            ParticipantIdx(3),
            &[2; 32],
            &[1; 32],
            &signature
        ));
        assert!(!verify_keys(
            &public,
            &[3u8; 32],
            ParticipantIdx(3),
            &[1; 32],
            &[2; 32],
            &signature
        ));
    }
}
