//! Secure aggregation inside a round: the publisher runs a `fedpool_secagg::Server` over the
//! members that trained, each member runs a `fedpool_secagg::Client` over its encoded update,
//! and their messages travel wrapped in [`Msg::SecAggToServer`] / [`Msg::SecAggToClient`].
//!
//! Identities come from the node's [`Directory`] (ledger identities it trusts), never from the
//! publisher: the setup names members by [`NodeId`] only, so a publisher cannot slip in keys
//! of its own, and a member checks every neighbour's signed session keys against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use fedpool_privacy::ddg::{self, DdgParams};
use fedpool_secagg::{
    Aggregate, ParticipantIdx, RoundConfig, RoundSettings, Server, ServerEvent, ServerInput,
    ServerOutput, SessionId, Topology, secagg_plus_parameters,
};

use crate::msg::{Msg, NodeId, RoundId};
use crate::privacy::SECURE_AGGREGATION_BITS;

/// The identity keys a node trusts, by node: in deployment the ledger's `did:key` identities of
/// consenting nodes; in simulation, the simulated nodes' ledger identities.
pub type Directory = BTreeMap<NodeId, VerifyingKey>;

/// Rounds of up to this many members use all-pairs SecAgg.
const ALL_PAIRS_UP_TO: usize = 40;
/// Dropout rate the SecAgg+ graph is sized to survive.
const DESIGN_DROPOUT_RATE: f64 = 0.1;
/// Share of members assumed to collude with the publisher when sizing the graph.
const DESIGN_ADVERSARIAL_RATE: f64 = 0.05;

/// Publisher → members: who takes part in this round's secure aggregation, and its public
/// parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SecAggSetup {
    /// The round.
    pub round: RoundId,
    /// Members in participant-index order.
    pub members: Vec<NodeId>,
    /// Fresh per round; bound into every signature.
    pub session_id: [u8; 32],
    /// Neighbour graph.
    pub topology: Topology,
    /// Shamir threshold among neighbours.
    pub threshold: usize,
    /// Shared seed of the encoding's random rotation.
    pub rotation_seed: [u8; 32],
}

impl SecAggSetup {
    /// A setup for `members` (sorted) with fresh random seeds: all-pairs SecAgg for small
    /// rounds, where a sparse neighbourhood would be a handful of nodes and a few dropouts
    /// would sink the round, and SecAgg+ with a Harary graph of logarithmic degree above that.
    pub fn plan(round: RoundId, members: Vec<NodeId>, seeds: [[u8; 32]; 3]) -> SecAggSetup {
        let n = members.len();
        let sparse = (n > ALL_PAIRS_UP_TO)
            .then(|| secagg_plus_parameters(n, DESIGN_DROPOUT_RATE, DESIGN_ADVERSARIAL_RATE).ok())
            .flatten()
            .filter(|p| p.degree + 1 < n);
        let (topology, threshold) = match sparse {
            Some(p) => (
                Topology::Harary {
                    degree: p.degree,
                    graph_seed: seeds[1],
                },
                p.threshold,
            ),
            // A majority of the others: 2t > k, so a lying publisher can never rebuild both
            // secrets of one member, and up to half of them may drop.
            None => (Topology::AllPairs, (n.saturating_sub(1) / 2 + 1).max(2)),
        };
        SecAggSetup {
            round,
            members,
            session_id: seeds[0],
            topology,
            threshold,
            rotation_seed: seeds[2],
        }
    }

    /// The validated round config for vectors of `vector_len` words, with identities from
    /// `directory`.
    pub fn round_config(
        &self,
        directory: &Directory,
        vector_len: usize,
    ) -> Result<RoundConfig, String> {
        let identities = self
            .members
            .iter()
            .map(|node| {
                directory
                    .get(node)
                    .copied()
                    .ok_or_else(|| format!("{node} has no known identity"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The session id is bound to the round and the rotation seed too, so a setup replayed
        // into another round, or with another rotation, fails every signature check.
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"fedpool secagg session v1");
        hasher.update(&self.session_id);
        hasher.update(&self.round.0.to_le_bytes());
        hasher.update(&self.rotation_seed);
        RoundConfig::new(RoundSettings {
            session_id: SessionId(*hasher.finalize().as_bytes()),
            identities,
            topology: self.topology.clone(),
            threshold: self.threshold,
            modulus_bits: SECURE_AGGREGATION_BITS,
            vector_len,
        })
        .map_err(|e| e.to_string())
    }

    /// The index of `node` among the members.
    pub fn index_of(&self, node: NodeId) -> Option<ParticipantIdx> {
        self.members
            .iter()
            .position(|&m| m == node)
            .map(|i| ParticipantIdx(i as u32))
    }
}

/// The publisher's side of one secure aggregation.
pub(crate) struct SecureCollection {
    pub(crate) setup: SecAggSetup,
    pub(crate) server: Server,
    pub(crate) encoding: DdgParams,
    pub(crate) min_survivors: usize,
    /// Adaptive clipping: the members append one count word.
    pub(crate) with_count: bool,
}

/// How a secure aggregation ended, from the publisher's side.
pub(crate) enum SecureOutcome {
    /// Still running.
    Running,
    /// The decoded (noised) sum of the survivors' clipped updates.
    Sum {
        sum: Vec<f32>,
        survivors: Vec<NodeId>,
        dropped: Vec<NodeId>,
        /// Adaptive clipping: the noised centred count `Σ(b − ½)` of unclipped updates.
        centred_count: Option<f64>,
    },
    /// No sum: why.
    Failed(String),
}

impl SecureCollection {
    pub(crate) fn new(
        setup: SecAggSetup,
        directory: &Directory,
        encoding: DdgParams,
        min_survivors: usize,
        with_count: bool,
        stage_timeout_ms: u64,
    ) -> Result<SecureCollection, String> {
        let vector_len = encoding.padded_dimension() + usize::from(with_count);
        let config = Arc::new(setup.round_config(directory, vector_len)?);
        Ok(SecureCollection {
            setup,
            server: Server::new(config, stage_timeout_ms),
            encoding,
            min_survivors,
            with_count,
        })
    }

    /// Feeds the server and turns what it emits into messages to members (pushed on `out`)
    /// and, once it is done, an outcome.
    pub(crate) fn handle(
        &mut self,
        input: ServerInput,
        out: &mut Vec<(NodeId, Msg)>,
    ) -> SecureOutcome {
        self.server.handle(input);
        let mut outcome = SecureOutcome::Running;
        while let Some(output) = self.server.poll_output() {
            match output {
                ServerOutput::Send { to, msg } => {
                    if let Some(&node) = self.setup.members.get(to.0 as usize) {
                        out.push((
                            node,
                            Msg::SecAggToClient {
                                round: self.setup.round,
                                msg,
                            },
                        ));
                    }
                }
                ServerOutput::Event(ServerEvent::StageClosed(_)) => {}
                ServerOutput::Event(ServerEvent::Finished(aggregate)) => {
                    outcome = self.decode(aggregate);
                }
                ServerOutput::Event(ServerEvent::Aborted(error)) => {
                    outcome = SecureOutcome::Failed(format!("secure aggregation aborted: {error}"));
                }
            }
        }
        outcome
    }

    fn decode(&self, aggregate: Aggregate) -> SecureOutcome {
        let to_nodes = |idx: &[ParticipantIdx]| -> Vec<NodeId> {
            idx.iter()
                .filter_map(|i| self.setup.members.get(i.0 as usize).copied())
                .collect()
        };
        let survivors = to_nodes(&aggregate.survivors);
        if survivors.len() < self.min_survivors {
            // Each member added only σ²/t of noise: fewer than t survivors' noise is less than
            // the contract promises, so the sum is discarded unread.
            return SecureOutcome::Failed(format!(
                "only {} of {} members' inputs reached the sum; the contract needs {} for its noise",
                survivors.len(),
                self.setup.members.len(),
                self.min_survivors
            ));
        }
        let padded = self.encoding.padded_dimension();
        let centred_count = match (self.with_count, aggregate.sum.get(padded)) {
            // The word sums 2b − 1 plus noise, mod 2^32: centre it, then halve.
            (true, Some(&word)) => Some(f64::from(word as i32) / 2.0),
            _ => None,
        };
        match ddg::decode(
            &aggregate.sum[..padded.min(aggregate.sum.len())],
            &self.encoding,
            &self.setup.rotation_seed,
        ) {
            Ok(sum) => SecureOutcome::Sum {
                sum,
                survivors,
                dropped: to_nodes(&aggregate.dropped),
                centred_count,
            },
            Err(e) => SecureOutcome::Failed(format!("cannot decode the secure sum: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use fedpool_privacy::ddg::DdgConfig;

    use super::*;

    #[test]
    fn the_publisher_discards_a_sum_with_too_few_members_noise() {
        let members: Vec<NodeId> = (0..5).map(NodeId).collect();
        let directory: Directory = members
            .iter()
            .map(|&m| {
                (
                    m,
                    SigningKey::from_bytes(&[m.0 as u8 + 1; 32]).verifying_key(),
                )
            })
            .collect();
        let encoding = DdgParams::choose(&DdgConfig::new(8, 1.0, 5, 1.0, 32)).unwrap();
        let setup = SecAggSetup::plan(RoundId(1), members, [[1; 32], [2; 32], [3; 32]]);
        let collection =
            SecureCollection::new(setup, &directory, encoding, 4, false, 1_000).unwrap();
        let aggregate = |n: u32| Aggregate {
            sum: vec![0; encoding.padded_dimension()],
            survivors: (0..n).map(ParticipantIdx).collect(),
            dropped: (n..5).map(ParticipantIdx).collect(),
        };
        match collection.decode(aggregate(3)) {
            SecureOutcome::Failed(why) => assert!(why.contains("needs 4"), "{why}"),
            _ => panic!("a sum of 3 members' noise was released"),
        }
        assert!(matches!(
            collection.decode(aggregate(4)),
            SecureOutcome::Sum { .. }
        ));
    }
}
