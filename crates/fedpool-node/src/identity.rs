//! One key, three names: a node's ledger key is its libp2p identity, so its `did:key`, its
//! PeerId and its round-protocol [`NodeId`] all name the same Ed25519 key. A message's sender
//! is the peer the Noise handshake authenticated, never a field the sender fills in.

use fedpool_ledger::{Did, Keypair};
use fedpool_protocol::NodeId;
use libp2p::PeerId;
use libp2p::identity as p2p;

use crate::Error;

/// The round-protocol address of every model's publisher, as its participants see it: a
/// participant answers only this address, and the node maps it to the publisher's peer.
pub const PUBLISHER: NodeId = NodeId(u32::MAX);

/// The libp2p key pair of a node's ledger identity (the same Ed25519 secret).
pub fn libp2p_keypair(keypair: &Keypair) -> Result<p2p::Keypair, Error> {
    let mut secret = keypair.signing_key().to_bytes();
    p2p::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| Error::Identity(format!("cannot use the ledger key for libp2p: {e}")))
}

/// The PeerId that names `did`'s key.
pub fn peer_id_of(did: &Did) -> Result<PeerId, Error> {
    let key = p2p::ed25519::PublicKey::try_from_bytes(did.public_key())
        .map_err(|e| Error::Identity(format!("{did} is not an Ed25519 key: {e}")))?;
    Ok(p2p::PublicKey::from(key).to_peer_id())
}

/// The DID of an authenticated peer: Ed25519 PeerIds inline their public key (an identity
/// multihash). `None` for any other kind of key, which fedpool does not accept.
pub fn did_of(peer: &PeerId) -> Option<Did> {
    let bytes = peer.to_bytes();
    // Identity multihash: code 0, then the digest's length, then the protobuf-encoded key.
    let (&[code, len], encoded) = bytes.split_first_chunk::<2>()?;
    if code != 0 || usize::from(len) != encoded.len() {
        return None;
    }
    let key = p2p::PublicKey::try_decode_protobuf(encoded)
        .ok()?
        .try_into_ed25519()
        .ok()?;
    // libp2p has already decompressed and checked this key.
    Some(Did::from_unchecked_bytes(key.to_bytes()))
}

/// The round-protocol id of a node: the first four bytes of a hash of its key. Secure
/// aggregation names members by these ids, so publisher and members derive them the same way
/// from the same ledger; two consenting keys that collide are resolved by [`assign_ids`].
pub fn node_id_of(did: &Did) -> NodeId {
    let hash = blake3::hash(did.public_key());
    let mut first = [0u8; 4];
    first.copy_from_slice(&hash.as_bytes()[..4]);
    let id = u32::from_le_bytes(first);
    // u32::MAX addresses the publisher.
    NodeId(if id == PUBLISHER.0 { id - 1 } else { id })
}

/// Ids for a set of owners, in the order given (the ledger's consent order): an owner whose id
/// collides with an earlier one is left out, so grinding a key to collide with someone who
/// consented first excludes only the grinder.
pub fn assign_ids(owners: &[Did]) -> Vec<(Did, NodeId)> {
    let mut taken = std::collections::BTreeSet::new();
    owners
        .iter()
        .filter_map(|did| {
            let id = node_id_of(did);
            taken.insert(id).then_some((*did, id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_key_and_its_peer_id_name_each_other() {
        for seed in 0..20 {
            let keypair = Keypair::insecure_from_seed(seed);
            let p2p_key = libp2p_keypair(&keypair).unwrap();
            let peer = p2p_key.public().to_peer_id();
            assert_eq!(peer, peer_id_of(&keypair.did()).unwrap());
            assert_eq!(did_of(&peer), Some(keypair.did()));
        }
    }

    #[test]
    fn a_non_ed25519_peer_has_no_did() {
        assert_eq!(did_of(&PeerId::random()), None);
    }

    #[test]
    fn node_ids_never_take_the_publishers_address_and_collisions_keep_the_first() {
        let dids: Vec<Did> = (0..200)
            .map(|s| Keypair::insecure_from_seed(s).did())
            .collect();
        let mut with_duplicate = dids.clone();
        with_duplicate.push(dids[3]);
        let assigned = assign_ids(&with_duplicate);
        assert_eq!(assigned.len(), dids.len());
        assert!(assigned.iter().all(|(_, id)| *id != PUBLISHER));
        assert_eq!(assigned[3], (dids[3], node_id_of(&dids[3])));
    }
}
