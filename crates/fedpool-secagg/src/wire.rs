//! Byte encodings of [`ToServer`] and [`ToClient`]: a one-byte tag, then fixed-width
//! little-endian fields; lists carry a `u32` count. Decoding checks every length and never
//! panics on input.
//!
//! | message | bytes |
//! | --- | --- |
//! | `ToServer::AdvertiseKeys` | 1 + 132 = 133 |
//! | `ToServer::ShareKeys` (m neighbours) | 5 + 100·m |
//! | `ToServer::MaskedInput` (L words) | 5 + 4·L |
//! | `ToServer::ConsistencySignature` | 1 + 64 = 65 |
//! | `ToServer::UnmaskShares` (a + d shares) | 9 + 44·(a + d) |
//! | `ToClient::NeighbourKeys` (m neighbours) | 5 + 132·m |
//! | `ToClient::RoutedShares` (m neighbours) | 5 + 100·m |
//! | `ToClient::Survivors` (s survivors) | 5 + 4·s |
//! | `ToClient::Unmask` (s survivors, g signatures) | 9 + 4·s + 68·g |

use crate::crypto::SHARE_CIPHERTEXT_BYTES;
use crate::error::{Error, ParticipantIdx};
use crate::msg::{
    AdvertisedKeys, EncryptedShares, ToClient, ToServer, UnmaskRequest, UnmaskResponse,
};
use crate::shamir::ShareValue;

const TAG_ADVERTISE: u8 = 1;
const TAG_SHARE_KEYS: u8 = 2;
const TAG_MASKED_INPUT: u8 = 3;
const TAG_UNMASK_SHARES: u8 = 4;
const TAG_CONSISTENCY_SIGNATURE: u8 = 5;
const TAG_NEIGHBOUR_KEYS: u8 = 101;
const TAG_ROUTED_SHARES: u8 = 102;
const TAG_UNMASK: u8 = 103;
const TAG_SURVIVORS: u8 = 104;

/// Bytes of one encoded (signer, signature) pair.
const SIGNATURE_BYTES: usize = 4 + 64;

/// Bytes of one encoded [`AdvertisedKeys`].
pub const ADVERTISED_KEYS_BYTES: usize = 4 + 32 + 32 + 64;
/// Bytes of one encoded [`EncryptedShares`].
pub const ENCRYPTED_SHARES_BYTES: usize = 4 + SHARE_CIPHERTEXT_BYTES;
/// Bytes of one encoded (owner, share) pair.
pub const OWNED_SHARE_BYTES: usize = 4 + ShareValue::BYTES;

impl ToServer {
    /// Encoded size in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            ToServer::AdvertiseKeys(_) => ADVERTISED_KEYS_BYTES,
            ToServer::ShareKeys(shares) => 4 + shares.len() * ENCRYPTED_SHARES_BYTES,
            ToServer::MaskedInput(words) => 4 + 4 * words.len(),
            ToServer::ConsistencySignature(_) => 64,
            ToServer::UnmaskShares(response) => {
                8 + OWNED_SHARE_BYTES
                    * (response.self_mask_shares.len() + response.masking_key_shares.len())
            }
        }
    }

    /// The byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        match self {
            ToServer::AdvertiseKeys(keys) => {
                out.push(TAG_ADVERTISE);
                put_keys(&mut out, keys);
            }
            ToServer::ShareKeys(shares) => {
                out.push(TAG_SHARE_KEYS);
                put_encrypted(&mut out, shares);
            }
            ToServer::MaskedInput(words) => {
                out.push(TAG_MASKED_INPUT);
                put_u32(&mut out, words.len() as u32);
                for word in words {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
            ToServer::ConsistencySignature(signature) => {
                out.push(TAG_CONSISTENCY_SIGNATURE);
                out.extend_from_slice(signature);
            }
            ToServer::UnmaskShares(response) => {
                out.push(TAG_UNMASK_SHARES);
                put_owned_shares(&mut out, &response.self_mask_shares);
                put_owned_shares(&mut out, &response.masking_key_shares);
            }
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Parses an encoding made by [`ToServer::encode`].
    pub fn decode(bytes: &[u8]) -> Result<ToServer, Error> {
        let mut reader = Reader::new(bytes, "participant-to-server");
        let message = match reader.u8()? {
            TAG_ADVERTISE => ToServer::AdvertiseKeys(reader.keys()?),
            TAG_SHARE_KEYS => ToServer::ShareKeys(reader.encrypted()?),
            TAG_MASKED_INPUT => {
                let len = reader.count(4)?;
                let body = reader.take(4 * len)?;
                ToServer::MaskedInput(
                    body.chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )
            }
            TAG_CONSISTENCY_SIGNATURE => ToServer::ConsistencySignature(reader.array()?),
            TAG_UNMASK_SHARES => ToServer::UnmaskShares(UnmaskResponse {
                self_mask_shares: reader.owned_shares()?,
                masking_key_shares: reader.owned_shares()?,
            }),
            tag => return Err(reader.error(format!("unknown tag {tag}"))),
        };
        reader.finish()?;
        Ok(message)
    }
}

impl ToClient {
    /// Encoded size in bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            ToClient::NeighbourKeys(keys) => 4 + keys.len() * ADVERTISED_KEYS_BYTES,
            ToClient::RoutedShares(shares) => 4 + shares.len() * ENCRYPTED_SHARES_BYTES,
            ToClient::Survivors(survivors) => 4 + 4 * survivors.len(),
            ToClient::Unmask(request) => {
                8 + 4 * request.survivors.len() + SIGNATURE_BYTES * request.signatures.len()
            }
        }
    }

    /// The byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        match self {
            ToClient::NeighbourKeys(keys) => {
                out.push(TAG_NEIGHBOUR_KEYS);
                put_u32(&mut out, keys.len() as u32);
                for entry in keys {
                    put_keys(&mut out, entry);
                }
            }
            ToClient::RoutedShares(shares) => {
                out.push(TAG_ROUTED_SHARES);
                put_encrypted(&mut out, shares);
            }
            ToClient::Survivors(survivors) => {
                out.push(TAG_SURVIVORS);
                put_indices(&mut out, survivors);
            }
            ToClient::Unmask(request) => {
                out.push(TAG_UNMASK);
                put_indices(&mut out, &request.survivors);
                put_u32(&mut out, request.signatures.len() as u32);
                for (signer, signature) in &request.signatures {
                    put_u32(&mut out, signer.0);
                    out.extend_from_slice(signature);
                }
            }
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Parses an encoding made by [`ToClient::encode`].
    pub fn decode(bytes: &[u8]) -> Result<ToClient, Error> {
        let mut reader = Reader::new(bytes, "server-to-participant");
        let message = match reader.u8()? {
            TAG_NEIGHBOUR_KEYS => {
                let len = reader.count(ADVERTISED_KEYS_BYTES)?;
                let mut keys = Vec::with_capacity(len);
                for _ in 0..len {
                    keys.push(reader.keys()?);
                }
                ToClient::NeighbourKeys(keys)
            }
            TAG_ROUTED_SHARES => ToClient::RoutedShares(reader.encrypted()?),
            TAG_SURVIVORS => ToClient::Survivors(reader.indices()?),
            TAG_UNMASK => {
                let survivors = reader.indices()?;
                let len = reader.count(SIGNATURE_BYTES)?;
                let mut signatures = Vec::with_capacity(len);
                for _ in 0..len {
                    signatures.push((ParticipantIdx(reader.u32()?), reader.array()?));
                }
                ToClient::Unmask(UnmaskRequest {
                    survivors,
                    signatures,
                })
            }
            tag => return Err(reader.error(format!("unknown tag {tag}"))),
        };
        reader.finish()?;
        Ok(message)
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_indices(out: &mut Vec<u8>, indices: &[ParticipantIdx]) {
    put_u32(out, indices.len() as u32);
    for idx in indices {
        put_u32(out, idx.0);
    }
}

fn put_keys(out: &mut Vec<u8>, keys: &AdvertisedKeys) {
    put_u32(out, keys.owner.0);
    out.extend_from_slice(&keys.encryption_pk);
    out.extend_from_slice(&keys.masking_pk);
    out.extend_from_slice(&keys.signature);
}

fn put_encrypted(out: &mut Vec<u8>, shares: &[EncryptedShares]) {
    put_u32(out, shares.len() as u32);
    for share in shares {
        put_u32(out, share.peer.0);
        out.extend_from_slice(&share.ciphertext);
    }
}

fn put_owned_shares(out: &mut Vec<u8>, shares: &[(ParticipantIdx, ShareValue)]) {
    put_u32(out, shares.len() as u32);
    for (owner, share) in shares {
        put_u32(out, owner.0);
        out.extend_from_slice(&share.to_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Reader<'a> {
        Reader { bytes, message }
    }

    fn error(&self, detail: String) -> Error {
        Error::Decode {
            message: self.message,
            detail,
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() < len {
            return Err(self.error(format!(
                "needs {len} more bytes, {} remain",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
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

    /// A list count, checked against the bytes left so a forged count cannot make the decoder
    /// reserve memory the message does not contain.
    fn count(&mut self, item_bytes: usize) -> Result<usize, Error> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_bytes) > self.bytes.len() {
            return Err(self.error(format!(
                "count {count} needs {} bytes, {} remain",
                count.saturating_mul(item_bytes),
                self.bytes.len()
            )));
        }
        Ok(count)
    }

    fn indices(&mut self) -> Result<Vec<ParticipantIdx>, Error> {
        let len = self.count(4)?;
        let mut indices = Vec::with_capacity(len);
        for _ in 0..len {
            indices.push(ParticipantIdx(self.u32()?));
        }
        Ok(indices)
    }

    fn keys(&mut self) -> Result<AdvertisedKeys, Error> {
        Ok(AdvertisedKeys {
            owner: ParticipantIdx(self.u32()?),
            encryption_pk: self.array()?,
            masking_pk: self.array()?,
            signature: self.array()?,
        })
    }

    fn encrypted(&mut self) -> Result<Vec<EncryptedShares>, Error> {
        let len = self.count(ENCRYPTED_SHARES_BYTES)?;
        let mut shares = Vec::with_capacity(len);
        for _ in 0..len {
            shares.push(EncryptedShares {
                peer: ParticipantIdx(self.u32()?),
                ciphertext: self.array()?,
            });
        }
        Ok(shares)
    }

    fn owned_shares(&mut self) -> Result<Vec<(ParticipantIdx, ShareValue)>, Error> {
        let len = self.count(OWNED_SHARE_BYTES)?;
        let mut shares = Vec::with_capacity(len);
        for _ in 0..len {
            let owner = ParticipantIdx(self.u32()?);
            let bytes = self.array::<{ ShareValue::BYTES }>()?;
            let share = ShareValue::from_bytes(&bytes)
                .ok_or_else(|| self.error(format!("share of {owner} is not a field element")))?;
            shares.push((owner, share));
        }
        Ok(shares)
    }

    fn finish(&self) -> Result<(), Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> (Vec<ToServer>, Vec<ToClient>) {
        let keys = AdvertisedKeys {
            owner: ParticipantIdx(3),
            encryption_pk: [1; 32],
            masking_pk: [2; 32],
            signature: [3; 64],
        };
        let encrypted = EncryptedShares {
            peer: ParticipantIdx(9),
            ciphertext: [4; SHARE_CIPHERTEXT_BYTES],
        };
        let share = ShareValue([1, 2, 3, 4, 5]);
        (
            vec![
                ToServer::AdvertiseKeys(keys.clone()),
                ToServer::ShareKeys(vec![encrypted.clone(), encrypted.clone()]),
                ToServer::MaskedInput(vec![0, 1, u32::MAX, 77]),
                ToServer::ConsistencySignature([8; 64]),
                ToServer::UnmaskShares(UnmaskResponse {
                    self_mask_shares: vec![(ParticipantIdx(1), share)],
                    masking_key_shares: vec![
                        (ParticipantIdx(2), share),
                        (ParticipantIdx(5), share),
                    ],
                }),
            ],
            vec![
                ToClient::NeighbourKeys(vec![keys.clone(), keys]),
                ToClient::RoutedShares(vec![encrypted]),
                ToClient::Survivors(vec![
                    ParticipantIdx(0),
                    ParticipantIdx(4),
                    ParticipantIdx(7),
                ]),
                ToClient::Unmask(UnmaskRequest {
                    survivors: vec![ParticipantIdx(0), ParticipantIdx(4)],
                    signatures: vec![(ParticipantIdx(4), [6; 64])],
                }),
            ],
        )
    }

    #[test]
    fn every_message_round_trips_at_its_documented_size() {
        let (up, down) = samples();
        let documented_up = [133, 5 + 200, 5 + 16, 65, 9 + 44 * 3];
        for (message, size) in up.iter().zip(documented_up) {
            let bytes = message.encode();
            assert_eq!(bytes.len(), size, "{message:?}");
            assert_eq!(&ToServer::decode(&bytes).unwrap(), message);
        }
        let documented_down = [5 + 264, 5 + 100, 5 + 12, 9 + 8 + 68];
        for (message, size) in down.iter().zip(documented_down) {
            let bytes = message.encode();
            assert_eq!(bytes.len(), size, "{message:?}");
            assert_eq!(&ToClient::decode(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn truncated_extended_and_mistagged_messages_are_errors() {
        let (up, down) = samples();
        for message in &up {
            let bytes = message.encode();
            for cut in 0..bytes.len() {
                assert!(
                    ToServer::decode(&bytes[..cut]).is_err(),
                    "{message:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(ToServer::decode(&longer).is_err());
        }
        for message in &down {
            let bytes = message.encode();
            for cut in 0..bytes.len() {
                assert!(
                    ToClient::decode(&bytes[..cut]).is_err(),
                    "{message:?} cut at {cut}"
                );
            }
        }
        assert!(ToServer::decode(&[TAG_NEIGHBOUR_KEYS, 0, 0, 0, 0]).is_err());
        assert!(ToClient::decode(&[TAG_MASKED_INPUT, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        /// The decoders are total: arbitrary bytes give a message or an error, never a panic
        /// or a huge allocation.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = ToServer::decode(&bytes);
            let _ = ToClient::decode(&bytes);
        }
    }
}
