//! fedpool's round protocol: the messages of a federated round and the publisher and
//! participant state machines that exchange them.
//!
//! Architecture invariant: sans-IO. Both roles are plain structs driven by `handle(input)` and
//! drained with `poll_output()`; they own no sockets, threads or clocks (time arrives as
//! `Tick { now_ms }`), and local training leaves as an output and returns as an input. The
//! in-process simulation driver and the network driver run these same machines, so what is
//! tested in simulation is what runs in deployment.
#![deny(missing_docs)]

pub mod driver;
mod msg;
mod participant;
mod privacy;
mod publisher;
mod secure;
pub mod wire;

pub use driver::{Driver, Executor, Host, Inbox, Sequential};
pub use msg::{
    DeclineReason, Msg, NodeId, RoundId, RoundTask, STATISTICS_ROUND, Stage, TrainRequest,
    UpdateMsg,
};
pub use participant::{
    DEFAULT_PARTICIPANT_TIMEOUT_MS, Participant, ParticipantInput, ParticipantOutput,
    PrivacyRecord, TrainJob,
};
pub use privacy::{
    Aggregation, DEFAULT_DELTA, PrivacyTerms, RoundPrivacy, SECURE_AGGREGATION_BITS, private_mean,
};
pub use publisher::{
    CommittedPlan, PrivacySpend, Publisher, PublisherConfig, PublisherInput, PublisherOutput,
    RoundEvent, RoundSummary, StatisticsSummary,
};
pub use secure::{Directory, GroupSum, SecAggPlan, SecAggSetup};
