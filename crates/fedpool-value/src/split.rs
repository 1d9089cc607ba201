//! Splitting a reward pool: integer amounts in the pool's smallest unit, in proportion to
//! positive value, with an optional floor and cap, rounded deterministically, and what cannot
//! be paid carried over — so the payouts and the carry always sum to the pool exactly.
//!
//! Money never passes through floating point: shares are computed from values scaled to
//! integers (parts per 2⁴⁰ of the largest value) and rounded by the largest-remainder method,
//! ties going to the lower index.

use serde::{Deserialize, Serialize};

/// How a pool is split among a round's participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SplitRule {
    /// Every participant with a positive value gets at least this much (when the pool allows
    /// it for all of them; otherwise the floor is not applied).
    #[serde(default)]
    pub floor: u64,
    /// No participant gets more than this; what a cap holds back goes to the others, and what
    /// no one may take is carried.
    #[serde(default)]
    pub cap: Option<u64>,
}

/// The payouts of one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Each participant's amount, in participant order.
    pub amounts: Vec<u64>,
    /// What was not paid (no positive value, or every eligible participant at its cap): the
    /// next split's pool grows by it.
    pub carried: u64,
}

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// A value is NaN or infinite.
    #[error("participant {index}'s value is {value}, not a finite number")]
    NotFinite {
        /// The participant.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A floor above the cap.
    #[error("the floor {floor} is above the cap {cap}")]
    FloorAboveCap {
        /// The floor.
        floor: u64,
        /// The cap.
        cap: u64,
    },
}

/// Scale of the integer weights: values become parts of 2⁴⁰ of the largest one.
const WEIGHT_SCALE: f64 = (1u64 << 40) as f64;

/// Splits `pool` by `values` under `rule`. Zero and negative values earn nothing.
pub fn split(pool: u64, values: &[f64], rule: &SplitRule) -> Result<Split, SplitError> {
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SplitError::NotFinite { index, value });
    }
    if let Some(cap) = rule.cap
        && rule.floor > cap
    {
        return Err(SplitError::FloorAboveCap {
            floor: rule.floor,
            cap,
        });
    }
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let weights: Vec<u128> = values
        .iter()
        .map(|&v| {
            if v > 0.0 {
                // At least 1, so a tiny positive value is never rounded into a non-contributor.
                ((v / max * WEIGHT_SCALE).round() as u128).max(1)
            } else {
                0
            }
        })
        .collect();
    let mut amounts = vec![0u64; values.len()];
    let eligible: Vec<usize> = (0..values.len()).filter(|&i| weights[i] > 0).collect();
    if eligible.is_empty() {
        return Ok(Split {
            amounts,
            carried: pool,
        });
    }
    let mut remaining = pool;
    // The floor first, when the pool covers it for everyone.
    let floor_total = rule.floor as u128 * eligible.len() as u128;
    if rule.floor > 0 && floor_total <= u128::from(pool) {
        for &i in &eligible {
            amounts[i] = rule.floor;
        }
        remaining -= floor_total as u64;
    }
    // Then the rest in proportion, water-filling around caps: a participant whose share would
    // pass its cap gets the cap, and the others share what is left.
    let mut open: Vec<usize> = eligible;
    loop {
        if remaining == 0 || open.is_empty() {
            break;
        }
        let shares = largest_remainder(remaining, &open, &weights);
        let over: Vec<usize> = match rule.cap {
            Some(cap) => open
                .iter()
                .zip(&shares)
                .filter(|&(&i, &share)| amounts[i] + share > cap)
                .map(|(&i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        if over.is_empty() {
            for (&i, &share) in open.iter().zip(&shares) {
                amounts[i] += share;
            }
            remaining = 0;
            break;
        }
        let cap = rule.cap.unwrap_or(u64::MAX);
        for &i in &over {
            remaining -= cap - amounts[i];
            amounts[i] = cap;
        }
        open.retain(|i| !over.contains(i));
    }
    Ok(Split {
        amounts,
        carried: remaining,
    })
}

/// `total` split over `members` in proportion to their weights, rounded down, with the units
/// left over going one each to the largest remainders (ties to the lower index).
fn largest_remainder(total: u64, members: &[usize], weights: &[u128]) -> Vec<u64> {
    let sum: u128 = members.iter().map(|&i| weights[i]).sum();
    let total = u128::from(total);
    let mut shares: Vec<u64> = Vec::with_capacity(members.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(members.len());
    for (position, &i) in members.iter().enumerate() {
        let exact = total * weights[i];
        shares.push((exact / sum) as u64);
        remainders.push((exact % sum, position));
    }
    let handed: u128 = shares.iter().map(|&s| u128::from(s)).sum();
    let left = (total - handed) as usize;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, position) in remainders.iter().take(left) {
        shares[position] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_pool_is_split_in_proportion_and_sums_exactly() {
        let s = split(1000, &[3.0, 1.0, 0.0, -2.0], &SplitRule::default()).unwrap();
        assert_eq!(s.amounts, [750, 250, 0, 0]);
        assert_eq!(s.carried, 0);
        // Thirds of 100: the odd unit goes to the lowest index among equal remainders.
        let s = split(100, &[1.0, 1.0, 1.0], &SplitRule::default()).unwrap();
        assert_eq!(s.amounts, [34, 33, 33]);
    }

    #[test]
    fn nobody_with_positive_value_means_the_pool_is_carried() {
        let s = split(500, &[0.0, -1.0], &SplitRule::default()).unwrap();
        assert_eq!((s.amounts, s.carried), (vec![0, 0], 500));
        assert_eq!(split(7, &[], &SplitRule::default()).unwrap().carried, 7);
    }

    #[test]
    fn floors_and_caps_hold_and_what_nobody_may_take_is_carried() {
        let rule = SplitRule {
            floor: 10,
            cap: Some(400),
        };
        // The first would take 951 of what is left after the floors: capped at 400, the other
        // two share the rest.
        let s = split(1000, &[100.0, 1.0, 1.0, 0.0], &rule).unwrap();
        assert_eq!((s.amounts, s.carried), (vec![400, 300, 300, 0], 0));
        // Everyone capped: the rest is carried.
        let s = split(1000, &[1.0, 2.0], &rule).unwrap();
        assert_eq!((s.amounts, s.carried), (vec![400, 400], 200));
        // A floor the pool cannot cover for everyone is not applied.
        let s = split(
            5,
            &[1.0, 1.0, 1.0],
            &SplitRule {
                floor: 2,
                cap: None,
            },
        )
        .unwrap();
        assert_eq!(s.amounts, [2, 2, 1]);
        assert!(matches!(
            split(
                5,
                &[1.0],
                &SplitRule {
                    floor: 3,
                    cap: Some(2)
                }
            ),
            Err(SplitError::FloorAboveCap { .. })
        ));
        assert!(matches!(
            split(5, &[1.0, f64::NAN], &SplitRule::default()),
            Err(SplitError::NotFinite { index: 1, .. })
        ));
    }

    proptest! {
        #[test]
        fn every_split_pays_the_pool_exactly_and_respects_order_floor_and_cap(
            pool in 0u64..10_000_000_000,
            values in prop::collection::vec(-1.0f64..1.0, 0..30),
            floor in 0u64..1000,
            cap in prop::option::of(1000u64..5_000_000_000),
        ) {
            let rule = SplitRule { floor, cap };
            let s = split(pool, &values, &rule).unwrap();
            prop_assert_eq!(s.amounts.iter().sum::<u64>() + s.carried, pool);
            for (i, (&a, &v)) in s.amounts.iter().zip(&values).enumerate() {
                if v <= 0.0 { prop_assert_eq!(a, 0, "participant {} has no positive value", i); }
                if let Some(cap) = cap { prop_assert!(a <= cap); }
            }
            // More value never earns less (up to the one unit of rounding).
            for i in 0..values.len() {
                for j in 0..values.len() {
                    if values[i] > values[j] && values[j] > 0.0 {
                        prop_assert!(s.amounts[i] + 1 >= s.amounts[j], "{:?}", s);
                    }
                }
            }
            // Something is carried only when nobody could take it.
            let eligible = values.iter().filter(|&&v| v > 0.0).count();
            if s.carried > 0 && eligible > 0 {
                let cap = cap.expect("only caps hold money back");
                prop_assert!(s.amounts.iter().zip(&values).filter(|(_, v)| **v > 0.0).all(|(&a, _)| a == cap));
            }
        }
    }
}
