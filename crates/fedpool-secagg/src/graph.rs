//! The neighbour graph: who masks with whom and who holds whose shares.
//!
//! All-pairs SecAgg (Bonawitz et al. 2017) is the complete graph. SecAgg+ (Bell et al. 2020,
//! §3.2 and the deployed variant in Google's `fcp/secagg`) uses a Harary graph H(k, n): place
//! the participants on a ring in a random order and join each to the k/2 nearest on either side.
//! The order is a Fisher–Yates shuffle driven by ChaCha20 keyed from the public graph seed in the
//! config, so every party computes the same graph and the server cannot choose it.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::ParticipantIdx;

/// Neighbour lists, sorted by index, one per participant. The relation is symmetric.
#[derive(Debug, Clone)]
pub(crate) struct NeighbourGraph {
    neighbours: Vec<Vec<ParticipantIdx>>,
}

impl NeighbourGraph {
    /// The complete graph on `n_participants` nodes.
    pub(crate) fn all_pairs(n_participants: usize) -> NeighbourGraph {
        let neighbours = (0..n_participants)
            .map(|u| {
                (0..n_participants)
                    .filter(|&v| v != u)
                    .map(|v| ParticipantIdx(v as u32))
                    .collect()
            })
            .collect();
        NeighbourGraph { neighbours }
    }

    /// A Harary graph of even `degree` over a seeded random ring order.
    ///
    /// Preconditions (checked by the config): `degree` is even, `2 <= degree < n_participants`.
    pub(crate) fn harary(n_participants: usize, degree: usize, seed: &[u8; 32]) -> NeighbourGraph {
        debug_assert!(degree & 1 == 0 && degree >= 2 && degree < n_participants);
        let ring = shuffled_ring(n_participants, seed);
        let half = degree / 2;
        let mut neighbours = vec![Vec::with_capacity(degree); n_participants];
        for (position, &u) in ring.iter().enumerate() {
            for offset in 1..=half {
                let right = ring[(position + offset) % n_participants];
                let left = ring[(position + n_participants - offset) % n_participants];
                neighbours[u as usize].push(ParticipantIdx(right));
                neighbours[u as usize].push(ParticipantIdx(left));
            }
        }
        for list in &mut neighbours {
            list.sort_unstable();
            // With degree < n the 2·(k/2) ring positions are distinct, except when k = n − 1
            // with n odd, where left and right meet exactly once all around; dedup covers both.
            list.dedup();
        }
        NeighbourGraph { neighbours }
    }

    pub(crate) fn neighbours(&self, idx: ParticipantIdx) -> &[ParticipantIdx] {
        &self.neighbours[idx.as_usize()]
    }

    pub(crate) fn are_neighbours(&self, a: ParticipantIdx, b: ParticipantIdx) -> bool {
        self.neighbours(a).binary_search(&b).is_ok()
    }

    pub(crate) fn min_degree(&self) -> usize {
        self.neighbours.iter().map(Vec::len).min().unwrap_or(0)
    }
}

/// The participants in ring order: a uniform permutation of 0..n from a seeded ChaCha20
/// stream. Indices are drawn by rejection sampling, so the permutation is unbiased and depends
/// only on the seed (not on any library's shuffle algorithm, which may change between versions).
fn shuffled_ring(n_participants: usize, seed: &[u8; 32]) -> Vec<u32> {
    let key = blake3::derive_key("fedpool-secagg v1 harary ring order", seed);
    let mut rng = ChaCha20Rng::from_seed(key);
    let mut ring: Vec<u32> = (0..n_participants as u32).collect();
    for i in (1..ring.len()).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        ring.swap(i, j);
    }
    ring
}

/// A uniform integer in `0..bound` (bound > 0), by rejection from 64-bit draws.
fn uniform_below(rng: &mut impl RngCore, bound: u64) -> u64 {
    // Reject the top partial range so every residue is equally likely.
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let draw = rng.next_u64();
        if draw < zone {
            return draw % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_regular_symmetric(graph: &NeighbourGraph, n: usize, degree: usize) {
        for u in 0..n {
            let u = ParticipantIdx(u as u32);
            let list = graph.neighbours(u);
            assert_eq!(list.len(), degree, "degree of {u}");
            assert!(!list.contains(&u), "{u} neighbours itself");
            for &v in list {
                assert!(graph.are_neighbours(v, u), "{u} -> {v} not symmetric");
            }
        }
    }

    #[test]
    fn harary_graphs_are_regular_and_symmetric() {
        for (n, degree) in [
            (3, 2),
            (5, 4),
            (10, 2),
            (10, 4),
            (11, 10),
            (100, 14),
            (2000, 20),
        ] {
            let graph = NeighbourGraph::harary(n, degree, &[7; 32]);
            check_regular_symmetric(&graph, n, degree);
        }
    }

    #[test]
    fn all_pairs_is_complete() {
        let graph = NeighbourGraph::all_pairs(6);
        check_regular_symmetric(&graph, 6, 5);
    }

    #[test]
    fn the_ring_order_depends_on_the_seed_only() {
        assert_eq!(shuffled_ring(50, &[1; 32]), shuffled_ring(50, &[1; 32]));
        assert_ne!(shuffled_ring(50, &[1; 32]), shuffled_ring(50, &[2; 32]));
        let mut sorted = shuffled_ring(50, &[1; 32]);
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
    }
}
