//! Seeds that make a node's part in a run replay an in-process simulation bit for bit, so a
//! test can check that the network computes exactly what the simulation computes. Only
//! `fedpool cluster up --replay-simulation` writes them: a deployed node draws every seed,
//! privacy noise and masks included, from the operating system, and a replayed one is as
//! predictable as the simulation it copies (never use it with real data).

use std::path::Path;

use fedpool_ledger::{ActiveConsent, Did};
use fedpool_protocol::NodeId;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A node's seeds from a simulation plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Replay {
    /// An owner's training seed; its privacy stream is derived from it as the simulation
    /// derives it.
    pub participant_seed: Option<u64>,
    /// The publisher's sampling seed; its privacy stream is derived from it likewise.
    pub publisher_seed: Option<u64>,
    /// The publisher's initial parameters.
    pub initial: Option<Vec<f32>>,
    /// The owners' DIDs, the simulation's client 0 first. Client `i` takes the simulation's
    /// round id `i`, and the publisher's roster is in this order, so the publisher samples the
    /// clients the simulation samples and secure aggregation derives the same seeds.
    #[serde(default)]
    pub clients: Vec<String>,
}

impl Replay {
    /// Reads a replay file.
    pub fn load(path: &Path) -> Result<Replay, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Refused(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Refused(format!("{} is not a replay file: {e}", path.display())))
    }

    /// The simulation's round id of `did`, if it is one of its clients.
    pub fn round_id(&self, did: &Did) -> Option<NodeId> {
        let did = did.to_string();
        self.clients
            .iter()
            .position(|d| *d == did)
            .map(|i| NodeId(i as u32))
    }

    /// Gives `members` the simulation's round ids, in its client order (others are dropped).
    pub fn assign(&self, members: Vec<(NodeId, ActiveConsent)>) -> Vec<(NodeId, ActiveConsent)> {
        let mut members: Vec<(NodeId, ActiveConsent)> = members
            .into_iter()
            .filter_map(|(_, c)| self.round_id(&c.owner).map(|id| (id, c)))
            .collect();
        members.sort_by_key(|(id, _)| *id);
        members
    }
}
