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
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

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

/// Publisher → members: who takes part in this round's secure aggregation.
///
/// The publisher chooses nothing else. The topology and threshold follow from the number of
/// members ([`SecAggSetup::plan`]); the session id, the graph's seed and the rotation seed are
/// hashed from `seed`, which the publisher committed to in its train request before any node
/// was ready, and from every member's own random nonce (sent with `Ready`). Every member
/// recomputes all of it, so a publisher cannot pick a topology, a threshold or a graph, nor
/// grind a seed once it knows who is ready; members are listed in node order, so it cannot
/// place them on the graph either.
#[derive(Debug, Clone, PartialEq)]
pub struct SecAggSetup {
    /// The round.
    pub round: RoundId,
    /// Members in increasing node order (their participant indices).
    pub members: Vec<NodeId>,
    /// Each member's nonce, as it sent it with `Ready`, in the order of `members`.
    pub nonces: Vec<[u8; 32]>,
    /// The publisher's seed, revealed: its hash is the round's `secagg_commitment`.
    pub seed: [u8; 32],
}

/// The public parameters of one secure aggregation, derived from its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecAggPlan {
    /// Members.
    pub n_members: usize,
    /// Neighbours per member (n − 1 for all-pairs).
    pub degree: usize,
    /// Shamir threshold among neighbours.
    pub threshold: usize,
}

impl SecAggSetup {
    /// The commitment a train request carries for `seed`.
    pub fn commitment(seed: &[u8; 32]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("fedpool secagg seed commitment v1");
        hasher.update(seed);
        *hasher.finalize().as_bytes()
    }

    /// All-pairs SecAgg for small rounds, where a sparse neighbourhood would be a handful of
    /// nodes and a few dropouts would sink the round, and SecAgg+ with a Harary graph of
    /// logarithmic degree above that: the only topology and threshold a member accepts for
    /// `n` members.
    pub fn plan(n: usize) -> SecAggPlan {
        let sparse = (n > ALL_PAIRS_UP_TO)
            .then(|| secagg_plus_parameters(n, DESIGN_DROPOUT_RATE, DESIGN_ADVERSARIAL_RATE).ok())
            .flatten()
            .filter(|p| p.degree + 1 < n);
        match sparse {
            Some(p) => SecAggPlan {
                n_members: n,
                degree: p.degree,
                threshold: p.threshold,
            },
            // A majority of the others: 2t > k, so a lying publisher can never rebuild both
            // secrets of one member, and up to half of them may drop.
            None => SecAggPlan {
                n_members: n,
                degree: n.saturating_sub(1),
                threshold: (n.saturating_sub(1) / 2 + 1).max(2),
            },
        }
    }

    /// Checks what a member can check of a setup before it takes part: members in strictly
    /// increasing node order, one nonce each, `me` among them with the nonce it sent, and the
    /// seed the one `commitment` promised.
    pub fn check(
        &self,
        me: NodeId,
        my_nonce: &[u8; 32],
        commitment: &[u8; 32],
    ) -> Result<(), String> {
        if self.nonces.len() != self.members.len() {
            return Err(format!(
                "the setup lists {} members but {} nonces",
                self.members.len(),
                self.nonces.len()
            ));
        }
        if let Some(pair) = self.members.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "the setup lists {} before {}: members must be in increasing node order",
                pair[0], pair[1]
            ));
        }
        match self.index_of(me) {
            None => return Err("this node is not a member of the round".into()),
            Some(idx) if self.nonces[idx.as_usize()] != *my_nonce => {
                return Err("the setup does not carry the nonce this node sent".into());
            }
            Some(_) => {}
        }
        if Self::commitment(&self.seed) != *commitment {
            return Err("the setup's seed is not the one the train request committed to".into());
        }
        Ok(())
    }

    fn derive(&self, label: &str) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(label);
        hasher.update(&self.seed);
        hasher.update(&self.round.0.to_le_bytes());
        hasher.update(&(self.members.len() as u64).to_le_bytes());
        for (member, nonce) in self.members.iter().zip(&self.nonces) {
            hasher.update(&member.0.to_le_bytes());
            hasher.update(nonce);
        }
        *hasher.finalize().as_bytes()
    }

    /// The disjoint groups this setup's members aggregate in, each as a setup of its own:
    /// with groups of at least `group_size`, as many groups as fit (sizes differ by at most
    /// one, so none reaches twice the minimum), members assigned by a shuffle hashed from the
    /// committed seed and every member's nonce, so the publisher cannot choose who shares a
    /// sum with whom; one group of everyone below twice the minimum, or without `group_size`.
    /// Each group's session, graph and rotation are derived from its own members, so a
    /// message of one group fails every check in another.
    pub fn groups(&self, group_size: Option<usize>) -> Vec<SecAggSetup> {
        let n = self.members.len();
        let n_groups = group_size.map_or(1, |g| (n / g.max(1)).max(1));
        if n_groups == 1 {
            return vec![self.clone()];
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha20Rng::from_seed(
            self.derive("fedpool secagg groups v1"),
        ));
        let mut assigned = vec![Vec::new(); n_groups];
        for (position, member) in order.into_iter().enumerate() {
            assigned[position % n_groups].push(member);
        }
        assigned
            .into_iter()
            .map(|mut group| {
                group.sort_unstable();
                SecAggSetup {
                    round: self.round,
                    members: group.iter().map(|&i| self.members[i]).collect(),
                    nonces: group.iter().map(|&i| self.nonces[i]).collect(),
                    seed: self.seed,
                }
            })
            .collect()
    }

    /// The seed of the encoding's random rotation, shared by every member.
    pub fn rotation_seed(&self) -> [u8; 32] {
        self.derive("fedpool secagg rotation seed v1")
    }

    /// The topology of this setup's [`SecAggSetup::plan`], with its derived graph seed.
    pub fn topology(&self) -> Topology {
        let plan = Self::plan(self.members.len());
        if plan.degree + 1 >= self.members.len() {
            Topology::AllPairs
        } else {
            Topology::Harary {
                degree: plan.degree,
                graph_seed: self.derive("fedpool secagg graph seed v1"),
            }
        }
    }

    /// The Shamir threshold of this setup's [`SecAggSetup::plan`].
    pub fn threshold(&self) -> usize {
        Self::plan(self.members.len()).threshold
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
        // The session id covers the round, the seed and every member's nonce, so a setup
        // replayed into another round, or changed in any way, fails every signature check.
        RoundConfig::new(RoundSettings {
            session_id: SessionId(self.derive("fedpool secagg session v2")),
            identities,
            topology: self.topology(),
            threshold: self.threshold(),
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

/// The publisher's side of one group's secure aggregation.
pub(crate) struct SecureCollection {
    pub(crate) setup: SecAggSetup,
    pub(crate) server: Server,
    pub(crate) encoding: DdgParams,
    pub(crate) min_survivors: usize,
    /// Adaptive clipping: the members append one count word.
    pub(crate) count_scale: Option<i64>,
}

/// How one group's secure aggregation ended, from the publisher's side.
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

/// One group's released sum: what the publisher learns of its members in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSum {
    /// The members whose inputs are in the sum, in node order.
    pub members: Vec<NodeId>,
    /// The decoded sum of their clipped updates, with its noise.
    pub sum: Arc<Vec<f32>>,
}

/// How a round's secure aggregation ended: every group finished.
pub(crate) enum RoundOutcome {
    /// At least one group's sum.
    Sums {
        groups: Vec<GroupSum>,
        /// Members of any group whose input is not in a released sum.
        dropped: Vec<NodeId>,
        /// Adaptive clipping: the noised centred counts of the released groups, summed.
        centred_count: Option<f64>,
    },
    /// No group released a sum: why, per group.
    Failed(String),
}

/// The publisher's side of a round's secure aggregation: one [`SecureCollection`] per group
/// ([`SecAggSetup::groups`]), each member's messages routed to its own group's server.
pub(crate) struct SecureGroups {
    groups: Vec<SecureCollection>,
    outcomes: Vec<Option<SecureOutcome>>,
    group_of: BTreeMap<NodeId, usize>,
}

impl SecureGroups {
    pub(crate) fn new(
        setup: &SecAggSetup,
        group_size: Option<usize>,
        directory: &Directory,
        encoding: DdgParams,
        min_survivors: usize,
        count_scale: Option<i64>,
        stage_timeout_ms: u64,
    ) -> Result<SecureGroups, String> {
        let groups = setup
            .groups(group_size)
            .into_iter()
            .map(|group| {
                SecureCollection::new(
                    group,
                    directory,
                    encoding,
                    min_survivors,
                    count_scale,
                    stage_timeout_ms,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let group_of = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.setup.members.iter().map(move |&m| (m, i)))
            .collect();
        Ok(SecureGroups {
            outcomes: groups.iter().map(|_| None).collect(),
            groups,
            group_of,
        })
    }

    /// The earliest stage deadline of a group still running.
    pub(crate) fn next_deadline_ms(&self) -> Option<u64> {
        self.running()
            .filter_map(|i| self.groups[i].server.next_deadline_ms())
            .min()
    }

    /// The masked vectors the publisher holds, by member: all it sees of one update.
    pub(crate) fn masked_inputs(&self) -> Vec<(NodeId, &[u32])> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.server.masked_inputs().iter().filter_map(|(idx, words)| {
                    g.setup
                        .members
                        .get(idx.0 as usize)
                        .map(|&m| (m, words.as_slice()))
                })
            })
            .collect()
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.groups.len()).filter(|&i| self.outcomes[i].is_none())
    }

    /// Time passed: every running group hears it.
    pub(crate) fn tick(
        &mut self,
        now_ms: u64,
        out: &mut Vec<(NodeId, Msg)>,
    ) -> Option<RoundOutcome> {
        for i in self.running().collect::<Vec<_>>() {
            let outcome = self.groups[i].handle(ServerInput::Tick { now_ms }, out);
            self.settle(i, outcome);
        }
        self.finished()
    }

    /// A member's message, to its own group's server (from anyone else: ignored).
    pub(crate) fn received(
        &mut self,
        from: NodeId,
        msg: fedpool_secagg::ToServer,
        out: &mut Vec<(NodeId, Msg)>,
    ) -> Option<RoundOutcome> {
        let &i = self.group_of.get(&from)?;
        if self.outcomes[i].is_some() {
            return None;
        }
        let group = &mut self.groups[i];
        let idx = group.setup.index_of(from)?;
        let outcome = group.handle(ServerInput::Received { from: idx, msg }, out);
        self.settle(i, outcome);
        self.finished()
    }

    fn settle(&mut self, group: usize, outcome: SecureOutcome) {
        if !matches!(outcome, SecureOutcome::Running) {
            self.outcomes[group] = Some(outcome);
        }
    }

    /// Once every group has ended: the released sums (a failed group's members count as
    /// dropped), or why none was released.
    fn finished(&mut self) -> Option<RoundOutcome> {
        if self.outcomes.iter().any(Option::is_none) {
            return None;
        }
        let mut groups = Vec::new();
        let mut dropped = Vec::new();
        let mut failures = Vec::new();
        let mut centred_count: Option<f64> = None;
        for (collection, outcome) in self.groups.iter().zip(std::mem::take(&mut self.outcomes)) {
            match outcome {
                Some(SecureOutcome::Sum {
                    sum,
                    survivors,
                    dropped: gone,
                    centred_count: count,
                }) => {
                    groups.push(GroupSum {
                        members: survivors,
                        sum: Arc::new(sum),
                    });
                    dropped.extend(gone);
                    if let Some(count) = count {
                        *centred_count.get_or_insert(0.0) += count;
                    }
                }
                Some(SecureOutcome::Failed(reason)) => {
                    dropped.extend(collection.setup.members.iter().copied());
                    failures.push(reason);
                }
                Some(SecureOutcome::Running) | None => {}
            }
        }
        dropped.sort_unstable();
        Some(if groups.is_empty() {
            RoundOutcome::Failed(if failures.len() == 1 {
                failures.remove(0)
            } else {
                format!("no group released a sum: {}", failures.join("; "))
            })
        } else {
            RoundOutcome::Sums {
                groups,
                dropped,
                centred_count,
            }
        })
    }
}

impl SecureCollection {
    pub(crate) fn new(
        setup: SecAggSetup,
        directory: &Directory,
        encoding: DdgParams,
        min_survivors: usize,
        count_scale: Option<i64>,
        stage_timeout_ms: u64,
    ) -> Result<SecureCollection, String> {
        let vector_len = encoding.padded_dimension() + usize::from(count_scale.is_some());
        let config = Arc::new(setup.round_config(directory, vector_len)?);
        Ok(SecureCollection {
            setup,
            server: Server::new(config, stage_timeout_ms),
            encoding,
            min_survivors,
            count_scale,
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
        let centred_count = match (self.count_scale, aggregate.sum.get(padded)) {
            // The word sums (2b − 1)·s plus noise, mod 2^32: centre it, then divide by 2s.
            (Some(scale), Some(&word)) => Some(f64::from(word as i32) / (2.0 * scale as f64)),
            _ => None,
        };
        match ddg::decode(
            &aggregate.sum[..padded.min(aggregate.sum.len())],
            &self.encoding,
            &self.setup.rotation_seed(),
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
        let setup = SecAggSetup {
            round: RoundId(1),
            nonces: vec![[9; 32]; members.len()],
            members,
            seed: [1; 32],
        };
        let collection =
            SecureCollection::new(setup, &directory, encoding, 4, None, 1_000).unwrap();
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

    fn setup_of(n: u32, nonce: u8) -> SecAggSetup {
        SecAggSetup {
            round: RoundId(3),
            members: (0..n).map(|i| NodeId(i * 2)).collect(),
            nonces: (0..n).map(|i| [nonce ^ i as u8; 32]).collect(),
            seed: [5; 32],
        }
    }

    #[test]
    fn groups_partition_the_members_in_sizes_from_the_minimum_to_below_twice_it() {
        for group_size in 3..=6 {
            for n in 1..=40 {
                let setup = setup_of(n, 1);
                let groups = setup.groups(Some(group_size));
                let mut everyone: Vec<NodeId> =
                    groups.iter().flat_map(|g| g.members.clone()).collect();
                everyone.sort_unstable();
                assert_eq!(everyone, setup.members, "n {n}, G {group_size}");
                if (n as usize) < 2 * group_size {
                    assert_eq!(groups, vec![setup.clone()]);
                    continue;
                }
                for group in &groups {
                    assert!(
                        (group_size..2 * group_size).contains(&group.members.len()),
                        "n {n}, G {group_size}: {:?}",
                        group.members
                    );
                    assert!(group.members.windows(2).all(|w| w[0] < w[1]));
                    // Each group's members carry their own nonces.
                    for (member, nonce) in group.members.iter().zip(&group.nonces) {
                        let i = setup.index_of(*member).unwrap().as_usize();
                        assert_eq!(*nonce, setup.nonces[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn the_partition_follows_every_members_nonce_and_each_group_has_its_own_session() {
        let setup = setup_of(12, 1);
        let groups = setup.groups(Some(3));
        assert_eq!(groups, setup.groups(Some(3)), "every member draws the same");
        let mut other = setup.clone();
        other.nonces[7][0] ^= 1;
        assert_ne!(
            groups.iter().map(|g| &g.members).collect::<Vec<_>>(),
            other
                .groups(Some(3))
                .iter()
                .map(|g| &g.members)
                .collect::<Vec<_>>(),
            "one member's nonce reshuffles the groups"
        );
        let mut sessions: Vec<[u8; 32]> = groups
            .iter()
            .map(|g| g.derive("fedpool secagg session v2"))
            .collect();
        sessions.push(setup.derive("fedpool secagg session v2"));
        sessions.sort_unstable();
        sessions.dedup();
        assert_eq!(sessions.len(), groups.len() + 1);
    }
}
