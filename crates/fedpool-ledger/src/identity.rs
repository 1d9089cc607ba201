//! Node identities: Ed25519 key pairs and their `did:key` names.
//!
//! A [`Did`] is `did:key:z` followed by the base58btc encoding of the multicodec
//! `ed25519-pub` prefix (varint 0xed = bytes `0xed 0x01`) and the 32-byte public key, as in
//! the W3C did:key method. The same key is the node's peer id on the network, so ledger
//! signatures are domain-separated (see [`crate::event`]) and cannot be replayed as
//! signatures over network messages, or the reverse.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
use crate::encoding::hex;

/// Multicodec `ed25519-pub` (0xed) as an unsigned varint.
const ED25519_PUB_CODEC: [u8; 2] = [0xed, 0x01];
const DID_KEY_PREFIX: &str = "did:key:z";

/// A node's decentralized identifier: its Ed25519 public key, written `did:key:z6Mk…`.
///
/// Parsing ([`str::parse`]) and [`Did::from_public_key`] check that the key is a valid curve
/// point. DIDs named inside event bodies (participants, payees) are compared by their bytes and
/// not decompressed when decoding, which keeps decoding cheap; an invalid one simply never
/// verifies a signature and never matches a consent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did {
    /// Orders by key bytes, which is also the order of the DID strings (so "by author"
    /// listings sort the same in Rust and in SQLite's `ORDER BY author`): every DID encodes 34
    /// bytes starting `0xed 0x01`, a number in [0xed01·2²⁵⁶, 0xed02·2²⁵⁶) that always has 47
    /// base58 digits (58⁴⁶ < 2²⁷⁰ < it < 2²⁷² < 58⁴⁷), and the base58btc alphabet is in ASCII
    /// order.
    key: [u8; 32],
}

impl Did {
    /// The DID of a raw 32-byte Ed25519 public key; fails if the bytes are not a curve point.
    pub fn from_public_key(key_bytes: &[u8; 32]) -> Result<Did, Error> {
        VerifyingKey::from_bytes(key_bytes)
            .map(|_| Did { key: *key_bytes })
            .map_err(|_| Error::DidKey {
                input: hex(key_bytes),
            })
    }

    /// A DID whose bytes are not checked to be a curve point (see the type docs): for keys read
    /// from event bodies, from this node's own store, or from a peer's list of chain heads,
    /// where an invalid key can only fail a later signature check.
    pub fn from_unchecked_bytes(key_bytes: [u8; 32]) -> Did {
        Did { key: key_bytes }
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The Ed25519 key this DID names (a node's identity signs its secure-aggregation keys
    /// with it); fails if the bytes are not a curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        VerifyingKey::from_bytes(&self.key).map_err(|_| Error::DidKey {
            input: hex(&self.key),
        })
    }

    /// Checks `signature` over `message` with this DID's key, using strict verification
    /// (canonical `s`, no small-order keys or `R`), so no second valid signature can be derived
    /// from a first one. False for a key that is not a curve point.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        VerifyingKey::from_bytes(&self.key).is_ok_and(|key| verify_strict(&key, message, signature))
    }
}

/// Strict Ed25519 verification with an already decompressed key.
pub(crate) fn verify_strict(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &signature).is_ok()
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(&ED25519_PUB_CODEC);
        bytes[2..].copy_from_slice(&self.key);
        write!(
            f,
            "{DID_KEY_PREFIX}{}",
            bs58::encode(bytes)
                .with_alphabet(bs58::Alphabet::BITCOIN)
                .into_string()
        )
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({self})")
    }
}

impl Did {
    /// Parses `did:key:z…` without checking that the key is a curve point: for DIDs this
    /// node's store wrote after checking them (chain heads are listed often, and decompressing
    /// every author each time was most of a node's CPU).
    pub(crate) fn parse_unchecked(input: &str) -> Result<Did, Error> {
        key_bytes_of(input).map(Did::from_unchecked_bytes)
    }
}

/// The 32 key bytes a `did:key:z…` string encodes, not checked to be a curve point.
fn key_bytes_of(input: &str) -> Result<[u8; 32], Error> {
    let Some(encoded) = input.strip_prefix(DID_KEY_PREFIX) else {
        return Err(Error::DidPrefix {
            input: input.to_string(),
        });
    };
    // 34 bytes encode to at most 47 base58 characters; refuse long input before decoding.
    if encoded.len() > 64 {
        return Err(Error::DidLength {
            input: input.to_string(),
            n_key_bytes: encoded.len() * 733 / 1000,
        });
    }
    let bytes = bs58::decode(encoded)
        .with_alphabet(bs58::Alphabet::BITCOIN)
        .into_vec()
        .map_err(|err| Error::DidBase58 {
            input: input.to_string(),
            reason: err.to_string(),
        })?;
    if bytes.len() < 2 || bytes[..2] != ED25519_PUB_CODEC {
        return Err(Error::DidCodec {
            input: input.to_string(),
            found: hex(&bytes[..bytes.len().min(2)]),
        });
    }
    bytes[2..].try_into().map_err(|_| Error::DidLength {
        input: input.to_string(),
        n_key_bytes: bytes.len() - 2,
    })
}

impl FromStr for Did {
    type Err = Error;

    fn from_str(input: &str) -> Result<Did, Error> {
        let key_bytes = key_bytes_of(input)?;
        VerifyingKey::from_bytes(&key_bytes)
            .map(|_| Did { key: key_bytes })
            .map_err(|_| Error::DidKey {
                input: input.to_string(),
            })
    }
}

impl Serialize for Did {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Did {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Did, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex(&self.0))
    }
}

/// A node's Ed25519 key pair.
///
/// The secret never appears in `Debug` output, and it is wiped from memory when the key pair
/// is dropped (ed25519-dalek's `zeroize` feature).
#[derive(Clone)]
pub struct Keypair {
    signing_key: SigningKey,
    did: Did,
}

impl Keypair {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Result<Keypair, Error> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|err| Error::Randomness {
            reason: err.to_string(),
        })?;
        Ok(Keypair::from_secret_bytes(&seed))
    }

    /// **Insecure, for tests and simulations only**: a key pair derived from a caller-chosen
    /// seed, so runs are reproducible. Anyone who knows or guesses the seed can sign as this
    /// identity; real nodes use [`Keypair::generate`].
    pub fn insecure_from_seed(seed: u64) -> Keypair {
        let mut hasher = blake3::Hasher::new_derive_key("fedpool-ledger insecure test key v1");
        hasher.update(&seed.to_be_bytes());
        Keypair::from_secret_bytes(hasher.finalize().as_bytes())
    }

    /// The key pair whose 32-byte Ed25519 secret key is `secret` (as stored in a key file).
    pub(crate) fn from_secret_bytes(secret: &[u8; 32]) -> Keypair {
        let signing_key = SigningKey::from_bytes(secret);
        let did = Did {
            key: signing_key.verifying_key().to_bytes(),
        };
        Keypair { signing_key, did }
    }

    /// The 32-byte secret key, for writing a key file. Wrapped so it is wiped when dropped.
    pub(crate) fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing_key.to_bytes())
    }

    /// The decompressed public key, so signing does not redo it.
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The Ed25519 signing key, for protocols that sign with the node's ledger identity (secure
    /// aggregation signs its session keys with it, so nobody can substitute them).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// This key pair's public identity.
    pub fn did(&self) -> Did {
        self.did
    }

    /// Signs `message` (deterministic Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing_key.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_round_trips_and_uses_the_z6mk_prefix() {
        let keypair = Keypair::insecure_from_seed(7);
        let text = keypair.did().to_string();
        assert!(text.starts_with("did:key:z6Mk"), "{text}");
        assert_eq!(text.parse::<Did>().unwrap(), keypair.did());
    }

    #[test]
    fn did_matches_the_did_key_test_vector() {
        // w3c-ccg did-method-key test vectors: Ed25519 key from the all-zero seed.
        let keypair = Keypair::from_secret_bytes(&[0; 32]);
        assert_eq!(
            hex(keypair.did().public_key()),
            "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
        );
        assert_eq!(
            keypair.did().to_string(),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
    }

    #[test]
    fn did_order_is_string_order() {
        let mut dids: Vec<Did> = (0..200)
            .map(|i| Keypair::insecure_from_seed(i).did())
            .collect();
        dids.sort();
        for pair in dids.windows(2) {
            assert!(pair[0].to_string() < pair[1].to_string());
            assert_eq!(pair[0].to_string().len(), 56);
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let keypair = Keypair::insecure_from_seed(7);
        let debug = format!("{keypair:?}");
        let secret_hex = hex(keypair.secret_bytes().as_ref());
        assert!(!debug.contains(&secret_hex));
        assert!(debug.contains(&keypair.did().to_string()));
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let keypair = Keypair::insecure_from_seed(1);
        let signature = keypair.sign(b"hello");
        assert!(keypair.did().verify(b"hello", &signature));
        assert!(!keypair.did().verify(b"hellp", &signature));
        assert!(
            !Keypair::insecure_from_seed(2)
                .did()
                .verify(b"hello", &signature)
        );
    }
}
