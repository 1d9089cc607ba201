//! Chain rules: every author's admissible events form one chain from seq 1, each naming its
//! predecessor, with timestamps that do not go backwards; two events at one seq are a fork.

use super::{Check, Rule};
use crate::Event;

/// `admissible` is sorted by (author, seq).
pub(super) fn check_chains(check: &mut Check, admissible: &[&Event]) {
    for chain in admissible.chunk_by(|a, b| a.author() == b.author()) {
        let mut expected_seq = 1;
        let mut previous: &[&Event] = &[];
        for same_seq in chain.chunk_by(|a, b| a.seq() == b.seq()) {
            let first = same_seq[0];
            for fork in &same_seq[1..] {
                check.flag(
                    Rule::Fork,
                    fork,
                    format!("conflicts with event {} at the same seq", first.id()),
                );
            }
            if first.seq() != expected_seq {
                check.flag(
                    Rule::ChainGap,
                    first,
                    if expected_seq == 1 {
                        format!("chain starts at seq {}, not 1", first.seq())
                    } else {
                        format!(
                            "seq {} follows seq {}; seq {expected_seq} is missing",
                            first.seq(),
                            expected_seq - 1
                        )
                    },
                );
            } else {
                for &event in same_seq {
                    if event.seq() == 1 {
                        continue; // seq 1 has no prev, by construction.
                    }
                    match previous.iter().find(|p| Some(p.id()) == event.prev()) {
                        None => check.flag(
                            Rule::ChainPrevHash,
                            event,
                            format!(
                                "names previous event {}, but seq {} is {}",
                                event.prev().map(|id| id.to_string()).unwrap_or_default(),
                                event.seq() - 1,
                                previous
                                    .iter()
                                    .map(|p| p.id().to_string())
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ),
                        ),
                        Some(prev) if event.timestamp_ms() < prev.timestamp_ms() => check.flag(
                            Rule::ChainTimestamp,
                            event,
                            format!(
                                "timestamp {} ms is before the previous event's {} ms",
                                event.timestamp_ms(),
                                prev.timestamp_ms()
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
            expected_seq = first.seq() + 1;
            previous = same_seq;
        }
    }
}
