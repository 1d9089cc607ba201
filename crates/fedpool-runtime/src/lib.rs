//! fedpool's runtime: transports, and the drivers that run the round protocol's state machines
//! over them. Today: the in-process transport and the simulation driver.
//!
//! Architecture invariant: this crate (with the CLI) is where threads, clocks and transports
//! live; the protocol and compute crates below it stay pure.
#![deny(missing_docs)]

mod attack;
pub mod consent_policy;
pub mod contract_rules;
mod error;
pub mod group_valuation;
pub mod ledger;
pub mod rewards;
pub mod simulation;
pub mod transport;
pub mod valuation;

pub use attack::{Attack, AttackParseError, Behaviour};
pub use consent_policy::{OwnerChoice, OwnerPolicy};
pub use contract_rules::{ContractReader, contract_terms};
pub use error::Error;
pub use ledger::{
    SimulationLedger, privacy_history, privacy_spent, publication, remove_ledger_files,
    scaling_record, simulated_publisher,
};
pub use simulation::{
    LedgerChoice, LedgerOutcome, RoundEvidence, RoundRecord, Simulation, SimulationOptions,
    SimulationPlan, SimulationReport, StatisticsOutcome, ValuedRound, simulated_privacy_seed,
};
pub use transport::{Envelope, InProcessTransport, Transport};
