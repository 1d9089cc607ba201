//! The Merkle root of a ledger's chain heads, which `fedpool anchor` puts on a public chain.
//!
//! Leaves are the heads in author order, each `blake3("fedpool-anchor/leaf/v1\0" ‖ author key ‖
//! seq BE ‖ event id)`; a node is `blake3("fedpool-anchor/node/v1\0" ‖ left ‖ right)`, and a
//! level's odd last node moves up unchanged. Domain-separated leaves and nodes keep a node from
//! passing for a leaf. The root of no heads is 32 zero bytes.

use crate::ChainHead;

const LEAF_DOMAIN: &[u8] = b"fedpool-anchor/leaf/v1\0";
const NODE_DOMAIN: &[u8] = b"fedpool-anchor/node/v1\0";

/// The root committing to `heads` (sorted by author here; the order given does not matter).
pub fn heads_root(heads: &[ChainHead]) -> [u8; 32] {
    let mut sorted: Vec<&ChainHead> = heads.iter().collect();
    sorted.sort_by(|a, b| a.author.cmp(&b.author).then(a.seq.cmp(&b.seq)));
    let mut level: Vec<[u8; 32]> = sorted
        .iter()
        .map(|head| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(LEAF_DOMAIN);
            hasher.update(head.author.public_key());
            hasher.update(&head.seq.to_be_bytes());
            hasher.update(head.id.as_bytes());
            *hasher.finalize().as_bytes()
        })
        .collect();
    if level.is_empty() {
        return [0u8; 32];
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update(NODE_DOMAIN);
                    hasher.update(left);
                    hasher.update(right);
                    *hasher.finalize().as_bytes()
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventId, Keypair};

    fn head(seed: u64, seq: u64) -> ChainHead {
        ChainHead {
            author: Keypair::insecure_from_seed(seed).did(),
            seq,
            id: EventId::from_bytes([seq as u8; 32]),
        }
    }

    #[test]
    fn the_root_commits_to_every_head_and_not_to_their_order() {
        let heads = vec![head(1, 3), head(2, 5), head(3, 1)];
        let root = heads_root(&heads);
        let mut reversed = heads.clone();
        reversed.reverse();
        assert_eq!(heads_root(&reversed), root);
        for i in 0..heads.len() {
            let mut changed = heads.clone();
            changed[i].seq += 1;
            assert_ne!(heads_root(&changed), root, "head {i}'s height");
            let mut dropped = heads.clone();
            dropped.remove(i);
            assert_ne!(heads_root(&dropped), root, "head {i} dropped");
        }
        assert_eq!(heads_root(&[]), [0u8; 32]);
        assert_ne!(heads_root(&heads[..1]), [0u8; 32]);
    }
}
