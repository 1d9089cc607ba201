//! The public round config every party holds: who takes part (index and Ed25519 identity key),
//! the neighbour graph, the threshold, the modulus and the vector length, all bound to one
//! session id.

use ed25519_dalek::VerifyingKey;

use crate::error::{Error, ParticipantIdx};
use crate::graph::NeighbourGraph;

/// The id of one aggregation session, e.g. a hash of (model id, training round). It is bound,
/// with the whole config, into every signature and every AEAD associated data, so nothing from
/// one session can be replayed into another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

/// Which pairs of participants mask with each other and hold each other's shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// All-pairs SecAgg (Bonawitz et al. 2017): every participant neighbours every other, so
    /// k = n − 1 and the threshold is over the whole round.
    AllPairs,
    /// SecAgg+ (Bell et al. 2020): a Harary graph of even `degree` k over a random ring order
    /// derived from `graph_seed`, a public value agreed in the config (the server must not pick
    /// the graph after seeing who is online). k = O(log n); see [`crate::secagg_plus_parameters`].
    Harary {
        /// Neighbours per participant (even, at least 2, below n).
        degree: usize,
        /// Public seed of the ring order.
        graph_seed: [u8; 32],
    },
}

/// Everything needed to build a [`RoundConfig`].
#[derive(Debug, Clone)]
pub struct RoundSettings {
    /// The session this round belongs to.
    pub session_id: SessionId,
    /// Long-term Ed25519 identity keys (ledger identities), one per participant, in index order.
    pub identities: Vec<VerifyingKey>,
    /// The neighbour graph.
    pub topology: Topology,
    /// Shamir threshold t: shares needed to rebuild a secret. Must satisfy
    /// `2 <= t <= k` and `2t > k` (see [`RoundConfig::new`]).
    pub threshold: usize,
    /// Inputs and the sum live in Z/2^b; 1 to 32 bits, so each word fits a `u32`.
    pub modulus_bits: u32,
    /// Words per input vector.
    pub vector_len: usize,
}

/// A validated round config, shared by the server and every participant (wrap it in an `Arc`).
#[derive(Debug, Clone)]
pub struct RoundConfig {
    settings: RoundSettings,
    graph: NeighbourGraph,
    binding: [u8; 32],
}

impl RoundConfig {
    /// Validates `settings` and derives the neighbour graph.
    ///
    /// The threshold must be at least 2 (with t = 1 every share *is* the secret), at most the
    /// degree k (else no secret could ever be rebuilt), and above k/2. The last condition is what
    /// makes "never both shares for one participant" protect against a lying server: to unmask
    /// participant u it would need t shares of b_u and t shares of s_sk_u from disjoint sets of
    /// u's k neighbours (each honest neighbour releases only one of the two), which needs 2t ≤ k.
    pub fn new(settings: RoundSettings) -> Result<RoundConfig, Error> {
        let invalid = |reason: String| Error::InvalidConfig { reason };
        let n_participants = settings.identities.len();
        if n_participants < 3 {
            return Err(invalid(format!(
                "{n_participants} participants; at least 3 are needed for a threshold of 2 above half the neighbours"
            )));
        }
        if n_participants > u32::MAX as usize - 1 {
            return Err(invalid(format!(
                "{n_participants} participants is too many"
            )));
        }
        if !(1..=32).contains(&settings.modulus_bits) {
            return Err(invalid(format!(
                "modulus of 2^{} is outside 2^1..=2^32 (inputs travel as u32 words)",
                settings.modulus_bits
            )));
        }
        if settings.vector_len == 0 || settings.vector_len > u32::MAX as usize {
            return Err(invalid(format!(
                "vector length {} is outside 1..=2^32 − 1",
                settings.vector_len
            )));
        }
        let mut sorted: Vec<[u8; 32]> = settings.identities.iter().map(|k| k.to_bytes()).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(
                "an identity key appears twice; each participant needs its own".to_string(),
            ));
        }
        let graph = match &settings.topology {
            Topology::AllPairs => NeighbourGraph::all_pairs(n_participants),
            Topology::Harary { degree, graph_seed } => {
                let degree = *degree;
                if degree % 2 != 0 || degree < 2 || degree >= n_participants {
                    return Err(invalid(format!(
                        "Harary degree {degree} must be even and in 2..{n_participants} (use AllPairs for k = n − 1)"
                    )));
                }
                NeighbourGraph::harary(n_participants, degree, graph_seed)
            }
        };
        let degree = graph.min_degree();
        let threshold = settings.threshold;
        if threshold < 2 || threshold > degree || 2 * threshold <= degree {
            return Err(invalid(format!(
                "threshold {threshold} must satisfy 2 <= t <= k and 2t > k for k = {degree} neighbours"
            )));
        }
        let binding = binding_hash(&settings);
        Ok(RoundConfig {
            settings,
            graph,
            binding,
        })
    }

    /// Number of participants n.
    pub fn n_participants(&self) -> usize {
        self.settings.identities.len()
    }

    /// Shamir threshold t.
    pub fn threshold(&self) -> usize {
        self.settings.threshold
    }

    /// Neighbours per participant k (n − 1 for all-pairs).
    pub fn degree(&self) -> usize {
        self.graph.min_degree()
    }

    /// Bits b of the modulus 2^b.
    pub fn modulus_bits(&self) -> u32 {
        self.settings.modulus_bits
    }

    /// 2^b − 1, the mask that reduces a wrapping `u32` sum mod 2^b.
    pub fn word_mask(&self) -> u32 {
        word_mask(self.settings.modulus_bits)
    }

    /// Words per input vector.
    pub fn vector_len(&self) -> usize {
        self.settings.vector_len
    }

    /// The session id.
    pub fn session_id(&self) -> SessionId {
        self.settings.session_id
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.settings.topology
    }

    /// The identity key of `idx`, if `idx` is in the round.
    pub fn identity(&self, idx: ParticipantIdx) -> Option<&VerifyingKey> {
        self.settings.identities.get(idx.as_usize())
    }

    /// The neighbours of `idx`, sorted. Panics if `idx` is not in the round.
    pub fn neighbours(&self, idx: ParticipantIdx) -> &[ParticipantIdx] {
        self.graph.neighbours(idx)
    }

    /// Whether `a` and `b` mask with each other.
    pub fn are_neighbours(&self, a: ParticipantIdx, b: ParticipantIdx) -> bool {
        self.graph.are_neighbours(a, b)
    }

    /// Whether `idx` is a participant of this round.
    pub fn contains(&self, idx: ParticipantIdx) -> bool {
        idx.as_usize() < self.n_participants()
    }

    /// A hash of the session id and the whole config. Signatures, key derivations and AEAD
    /// associated data all include it, so a server cannot give two participants different
    /// configs (thresholds, graphs, identities) without every signature check failing.
    pub fn binding(&self) -> &[u8; 32] {
        &self.binding
    }
}

pub(crate) fn word_mask(modulus_bits: u32) -> u32 {
    if modulus_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << modulus_bits) - 1
    }
}

fn binding_hash(settings: &RoundSettings) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("fedpool-secagg v1 round binding");
    hasher.update(&settings.session_id.0);
    hasher.update(&(settings.identities.len() as u64).to_le_bytes());
    for identity in &settings.identities {
        hasher.update(identity.as_bytes());
    }
    match &settings.topology {
        Topology::AllPairs => {
            hasher.update(&[0]);
        }
        Topology::Harary { degree, graph_seed } => {
            hasher.update(&[1]);
            hasher.update(&(*degree as u64).to_le_bytes());
            hasher.update(graph_seed);
        }
    }
    hasher.update(&(settings.threshold as u64).to_le_bytes());
    hasher.update(&settings.modulus_bits.to_le_bytes());
    hasher.update(&(settings.vector_len as u64).to_le_bytes());
    *hasher.finalize().as_bytes()
}
