//! Paying a model's pool by measured contribution, in the pool's smallest unit.
//!
//! The pool is divided evenly over the contract's rounds (the first `pool mod rounds` rounds
//! get one unit more). Each valued round splits its share plus what the previous payout
//! carried by the contract's rule; what no one can be paid (no positive score, caps) carries
//! over. When training ends, everything not yet paid — carries, and the shares of rounds that
//! never ran — is split once more by each participant's total score (the final payout), so
//! the payouts sum to the pool exactly, or leave a carry only when no one contributed
//! anything. Everything here is integer arithmetic; `ledger verify` recomputes every split
//! with [`split_amounts`].

use fedpool_core::Contract;
use fedpool_core::contract::SplitRule as ContractSplit;
use fedpool_value::split::split;
use fedpool_value::{Split, SplitRule};

use crate::Error;

/// How a contract pays: its pool, the rounds it is spread over, and the split.
#[derive(Debug, Clone, PartialEq)]
pub struct PayTerms {
    /// Pool, in the smallest unit.
    pub pool: u64,
    /// Rounds the pool is spread over (the contract's).
    pub rounds: u32,
    /// Proportional to positive score, with the contract's floor and cap; or equal.
    pub rule: PayRule,
}

/// How a round's allotment is divided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PayRule {
    /// In proportion to positive score, with a floor and a cap.
    Proportional(SplitRule),
    /// Equally among participants with a positive score.
    Equal(SplitRule),
}

impl PayTerms {
    /// The contract's pay terms.
    pub fn of(contract: &Contract) -> PayTerms {
        let rule = SplitRule {
            floor: contract.rewards.floor,
            cap: contract.rewards.cap,
        };
        PayTerms {
            pool: contract.rewards.pool,
            rounds: u32::try_from(contract.training.rounds)
                .unwrap_or(u32::MAX)
                .max(1),
            rule: match contract.rewards.split {
                ContractSplit::Proportional => PayRule::Proportional(rule),
                ContractSplit::Equal => PayRule::Equal(rule),
            },
        }
    }

    /// Round `round`'s (from 1) share of the pool; 0 past the contract's rounds.
    pub fn round_share(&self, round: u32) -> u64 {
        if round == 0 || round > self.rounds {
            return 0;
        }
        let rounds = u64::from(self.rounds);
        self.pool / rounds + u64::from(u64::from(round - 1) < self.pool % rounds)
    }
}

/// Splits `allotment` by `scores` under `rule`: what every payout's amounts must be.
pub fn split_amounts(allotment: u64, scores: &[f64], rule: &PayRule) -> Result<Split, Error> {
    let outcome = match rule {
        PayRule::Proportional(rule) => split(allotment, scores, rule),
        PayRule::Equal(rule) => {
            let equal: Vec<f64> = scores
                .iter()
                .map(|s| if *s > 0.0 { 1.0 } else { 0.0 })
                .collect();
            split(allotment, &equal, rule)
        }
    };
    outcome.map_err(|e| Error::Setup(format!("cannot split the reward: {e}")))
}

/// One payout: a round's (or the final one), before it is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// The round paid for; `None` for the final payout.
    pub round: Option<u32>,
    /// Units distributed: the round's share plus the previous carry.
    pub allotment: u64,
    /// Clients paid (every valued participant), in score order.
    pub clients: Vec<usize>,
    /// Their scores.
    pub scores: Vec<f64>,
    /// Their amounts.
    pub amounts: Vec<u64>,
    /// Units carried to the next payout.
    pub carried: u64,
}

/// A model's pool as it is paid out: what each client earned and what is carried.
#[derive(Debug, Clone)]
pub struct Treasury {
    terms: PayTerms,
    paid: u64,
    carried: u64,
    /// Per client: total score and total earned.
    total_scores: Vec<f64>,
    earned: Vec<u64>,
    valued: Vec<bool>,
}

impl Treasury {
    /// A treasury for `n_clients` clients under `terms`.
    pub fn new(terms: PayTerms, n_clients: usize) -> Treasury {
        Treasury {
            terms,
            paid: 0,
            carried: 0,
            total_scores: vec![0.0; n_clients],
            earned: vec![0; n_clients],
            valued: vec![false; n_clients],
        }
    }

    /// A treasury that goes on from payouts already made (read off the ledger, see
    /// [`PaidSoFar`]): `paid` units are out and the next payout owes `carried`.
    pub fn resume(terms: PayTerms, n_clients: usize, paid: u64, carried: u64) -> Treasury {
        Treasury {
            paid,
            carried,
            ..Treasury::new(terms, n_clients)
        }
    }

    /// Pays round `round`'s share plus the carry by `scores` of `clients`.
    pub fn pay_round(
        &mut self,
        round: u32,
        clients: &[usize],
        scores: &[f64],
    ) -> Result<Payment, Error> {
        let allotment = self
            .terms
            .round_share(round)
            .saturating_add(self.carried)
            .min(self.terms.pool - self.paid);
        for (&client, &score) in clients.iter().zip(scores) {
            self.total_scores[client] += score;
            self.valued[client] = true;
        }
        self.pay(Some(round), allotment, clients.to_vec(), scores.to_vec())
    }

    /// Pays everything not yet paid by each valued client's total score; `None` when nothing
    /// is left to pay or no client was ever valued.
    pub fn pay_final(&mut self) -> Result<Option<Payment>, Error> {
        let allotment = self.terms.pool - self.paid;
        let clients: Vec<usize> = (0..self.valued.len()).filter(|&c| self.valued[c]).collect();
        if allotment == 0 || clients.is_empty() {
            return Ok(None);
        }
        let scores = clients.iter().map(|&c| self.total_scores[c]).collect();
        self.pay(None, allotment, clients, scores).map(Some)
    }

    /// Pays everything not yet paid to `clients` by `scores` given from outside the treasury
    /// (the least-squares estimates of group valuation, known only after the last round);
    /// `None` when nothing is left to pay or no client is named.
    pub fn pay_final_by(
        &mut self,
        clients: &[usize],
        scores: &[f64],
    ) -> Result<Option<Payment>, Error> {
        let allotment = self.terms.pool - self.paid;
        if allotment == 0 || clients.is_empty() {
            return Ok(None);
        }
        for (&client, &score) in clients.iter().zip(scores) {
            self.total_scores[client] = score;
            self.valued[client] = true;
        }
        self.pay(None, allotment, clients.to_vec(), scores.to_vec())
            .map(Some)
    }

    fn pay(
        &mut self,
        round: Option<u32>,
        allotment: u64,
        clients: Vec<usize>,
        scores: Vec<f64>,
    ) -> Result<Payment, Error> {
        let outcome = split_amounts(allotment, &scores, &self.terms.rule)?;
        for (&client, &amount) in clients.iter().zip(&outcome.amounts) {
            self.earned[client] += amount;
            self.paid += amount;
        }
        self.carried = outcome.carried;
        Ok(Payment {
            round,
            allotment,
            clients,
            scores,
            amounts: outcome.amounts,
            carried: outcome.carried,
        })
    }

    /// What each client has earned so far.
    pub fn earned(&self) -> &[u64] {
        &self.earned
    }

    /// Units paid so far.
    pub fn paid(&self) -> u64 {
        self.paid
    }
}

/// What a model's publisher has paid so far, from its `RewardsPaid` events in chain order:
/// the units paid, the carry the next payout owes, and each owner's total score over the
/// round payouts (what the final payout splits by). A restarted publisher goes on from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaidSoFar {
    /// Units paid.
    pub paid: u64,
    /// Units the last payout carried.
    pub carried: u64,
    /// Each owner's summed score over round payouts, in first-paid order.
    pub totals: Vec<(fedpool_ledger::Did, f64)>,
    /// Whether the final payout has been made.
    pub finished: bool,
}

impl PaidSoFar {
    /// Reads `payouts` (one model's, in the publisher's chain order).
    pub fn of<'a>(payouts: impl IntoIterator<Item = &'a fedpool_ledger::RewardsPaid>) -> Self {
        let mut so_far = PaidSoFar::default();
        for payout in payouts {
            so_far.paid += payout.payouts.iter().map(|line| line.amount).sum::<u64>();
            so_far.carried = payout.carried;
            if payout.round.is_none() {
                so_far.finished = true;
                continue;
            }
            for line in &payout.payouts {
                match so_far
                    .totals
                    .iter_mut()
                    .find(|(owner, _)| *owner == line.owner)
                {
                    Some((_, total)) => *total += line.score,
                    None => so_far.totals.push((line.owner, line.score)),
                }
            }
        }
        so_far
    }
}

/// A dishonest publisher's payout, for tests that `ledger verify` catches it: the simulation
/// signs its first round payout with this change. Like client attacks, it lives in the
/// simulation only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherCheat {
    /// Doubles the first participant's score and splits by the inflated scores (the amounts
    /// follow the scores; the scores do not recompute).
    InflateScore,
    /// Moves one unit from the first participant to the second.
    SkewAmounts,
    /// Allots and pays the whole pool once more to the first participant.
    Overpay,
    /// Pays one unit to an owner who never consented.
    PayStranger,
    /// Pays one unit to this client, who consented but is not in the round.
    PayNonParticipant(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(pool: u64, rounds: u32) -> PayTerms {
        PayTerms {
            pool,
            rounds,
            rule: PayRule::Proportional(SplitRule::default()),
        }
    }

    #[test]
    fn round_shares_sum_to_the_pool() {
        let t = terms(1003, 10);
        let shares: Vec<u64> = (1..=10).map(|r| t.round_share(r)).collect();
        assert_eq!(shares.iter().sum::<u64>(), 1003);
        assert_eq!(shares[0], 101);
        assert_eq!(shares[9], 100);
        assert_eq!(t.round_share(11), 0);
    }

    #[test]
    fn carries_and_unrun_rounds_are_paid_at_the_end_and_everything_sums_to_the_pool() {
        let mut treasury = Treasury::new(terms(1000, 4), 3);
        // Round 1: nobody gained (carried); round 2: two contributors; rounds 3 and 4 never run.
        let first = treasury
            .pay_round(1, &[0, 1, 2], &[0.0, -0.1, 0.0])
            .unwrap();
        assert_eq!((first.allotment, first.carried), (250, 250));
        let second = treasury.pay_round(2, &[0, 1], &[0.3, 0.1]).unwrap();
        assert_eq!(second.allotment, 500);
        assert_eq!(second.amounts, vec![375, 125]);
        let last = treasury.pay_final().unwrap().unwrap();
        assert_eq!(last.allotment, 500);
        assert_eq!(treasury.paid(), 1000);
        assert_eq!(treasury.earned().iter().sum::<u64>(), 1000);
        assert_eq!(treasury.earned()[2], 0, "a zero score earns nothing");
        assert!(treasury.pay_final().unwrap().is_none());
    }
}
