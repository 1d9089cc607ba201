//! Choosing the SecAgg+ degree k and threshold t from the round size and the expected dropout
//! and corruption rates, after Bell et al. 2020 (§4) and the parameter finder of Google's
//! deployed implementation (`fcp/secagg/server/graph_parameter_finder.cc`).
//!
//! For each even k from 2 upward, with n participants of which a fraction `dropout_rate` may drop
//! and a fraction `adversarial_rate` may collude with the server:
//!
//! 1. **Connectivity** (privacy): the Harary graph stays connected after removing the bad nodes,
//!    except with probability 2^−41. Disconnecting H(k, n) needs two runs of k/2 consecutive bad
//!    nodes; a union bound over the ~n²/2 pairs of runs bounds the probability.
//! 2. **Security** (privacy): a participant's number A of corrupt neighbours is hypergeometric;
//!    t must exceed (A + k)/2 except with probability 2^−41/n, so that even a server lying about
//!    who dropped cannot gather t shares of both of an honest participant's secrets (the
//!    semi-malicious model; it implies our config rule 2t > k).
//! 3. **Correctness**: a participant's number S of surviving neighbours is hypergeometric;
//!    P[S < t] ≤ 2^−20/n, so the round fails with probability at most 2^−20.
//!
//! The first k that admits such a t wins, with the smallest admissible t (cheapest to rebuild).
//! k grows like log n.

use crate::error::Error;

/// Statistical security parameter σ: privacy fails with probability at most 2^−σ.
const SECURITY_BITS: f64 = 40.0;
/// Correctness parameter η: a round fails with probability at most 2^−η.
const CORRECTNESS_BITS: f64 = 20.0;

/// A SecAgg+ graph degree and Shamir threshold for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecAggPlusParameters {
    /// Neighbours per participant (even).
    pub degree: usize,
    /// Shares needed to rebuild a secret.
    pub threshold: usize,
}

/// The smallest even degree k (and its smallest threshold t) meeting the three conditions in the
/// module docs. Fails when no k < n − 1 does: use all-pairs SecAgg then.
pub fn secagg_plus_parameters(
    n_participants: usize,
    dropout_rate: f64,
    adversarial_rate: f64,
) -> Result<SecAggPlusParameters, Error> {
    let invalid = |reason: String| Error::InvalidConfig { reason };
    if n_participants < 4 {
        return Err(invalid(format!(
            "{n_participants} participants is too few for a sparse graph; use all-pairs"
        )));
    }
    if !(0.0..1.0).contains(&dropout_rate) || !(0.0..1.0).contains(&adversarial_rate) {
        return Err(invalid(format!(
            "dropout rate {dropout_rate} and adversarial rate {adversarial_rate} must be in [0, 1)"
        )));
    }
    if adversarial_rate + 2.0 * dropout_rate > 0.9 {
        return Err(invalid(format!(
            "adversarial rate {adversarial_rate} + 2 × dropout rate {dropout_rate} exceeds 0.9; no threshold can be both safe and live"
        )));
    }
    let n = n_participants;
    // A tiny slack keeps floating-point rounding from erring on the insecure side.
    let n_adversarial = ((adversarial_rate + 1e-14) * n as f64).floor() as usize;
    let n_dropped = ((dropout_rate + 1e-14) * n as f64).floor() as usize;
    let n_surviving = n - n_dropped;
    let log_factorials = LogFactorials::new(n);
    let per_participant_security =
        (-(SECURITY_BITS + 1.0) * std::f64::consts::LN_2).exp() / n as f64;
    let per_participant_failure = (-CORRECTNESS_BITS * std::f64::consts::LN_2).exp() / n as f64;

    for degree in (2..n - 1).step_by(2) {
        let n_bad = n_adversarial + n_dropped;
        if log_prob_disconnected(&log_factorials, n, degree, n_bad)
            >= -(SECURITY_BITS + 1.0) * std::f64::consts::LN_2
        {
            continue;
        }
        let corrupt = Hypergeometric::new(&log_factorials, n, n_adversarial, degree);
        let surviving = Hypergeometric::new(&log_factorials, n, n_surviving, degree);
        // a_max: P[A > a_max] ≤ 2^−41 / n.
        let a_max = (0..=degree)
            .find(|&a| corrupt.upper_tail(a + 1) <= per_participant_security)
            .unwrap_or(degree);
        // 2t − k > a_max, t ≥ 2.
        let threshold = (a_max + degree + 2).div_ceil(2).max(2);
        if threshold > degree {
            continue;
        }
        if surviving.lower_tail(threshold) <= per_participant_failure {
            return Ok(SecAggPlusParameters { degree, threshold });
        }
    }
    Err(invalid(format!(
        "no Harary degree below n − 1 meets the security and dropout targets for {n} participants; use all-pairs"
    )))
}

/// ln P[the Harary graph is disconnected by removing `n_bad` random nodes], bounded as in the
/// module docs: ≈ (n(n − k − 1)/2) · (n_bad)_k / (n)_k with (x)_k the falling factorial.
fn log_prob_disconnected(lf: &LogFactorials, n: usize, degree: usize, n_bad: usize) -> f64 {
    if degree > n_bad {
        return f64::NEG_INFINITY;
    }
    let log_pairs = (n as f64).ln() + ((n - degree - 1) as f64).ln() - std::f64::consts::LN_2;
    log_pairs + lf.get(n_bad) + lf.get(n - degree) - lf.get(n) - lf.get(n_bad - degree)
}

struct LogFactorials(Vec<f64>);

impl LogFactorials {
    fn new(max: usize) -> LogFactorials {
        let mut table = Vec::with_capacity(max + 1);
        table.push(0.0);
        let mut acc = 0.0;
        for i in 1..=max {
            acc += (i as f64).ln();
            table.push(acc);
        }
        LogFactorials(table)
    }

    fn get(&self, i: usize) -> f64 {
        self.0[i]
    }

    fn ln_choose(&self, n: usize, k: usize) -> f64 {
        self.get(n) - self.get(k) - self.get(n - k)
    }
}

/// Draws `draws` of `population` items, `successes` of them marked.
struct Hypergeometric {
    pmf: Vec<f64>,
}

impl Hypergeometric {
    fn new(
        lf: &LogFactorials,
        population: usize,
        successes: usize,
        draws: usize,
    ) -> Hypergeometric {
        let total = lf.ln_choose(population, draws);
        let pmf = (0..=draws)
            .map(|i| {
                if i > successes || draws - i > population - successes {
                    0.0
                } else {
                    (lf.ln_choose(successes, i) + lf.ln_choose(population - successes, draws - i)
                        - total)
                        .exp()
                }
            })
            .collect();
        Hypergeometric { pmf }
    }

    /// P[X ≥ x].
    fn upper_tail(&self, x: usize) -> f64 {
        self.pmf.iter().skip(x).sum()
    }

    /// P[X < x].
    fn lower_tail(&self, x: usize) -> f64 {
        self.pmf.iter().take(x).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypergeometric_pmf_sums_to_one() {
        let lf = LogFactorials::new(200);
        let h = Hypergeometric::new(&lf, 200, 37, 20);
        assert!((h.upper_tail(0) - 1.0).abs() < 1e-9);
        assert!((h.lower_tail(21) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn parameters_are_valid_and_grow_slowly_with_n() {
        let mut previous_degree = 0;
        for n in [100, 1_000, 10_000, 100_000] {
            let params = secagg_plus_parameters(n, 0.05, 0.0).unwrap();
            assert!(
                params.degree & 1 == 0 && params.degree < n - 1,
                "{params:?}"
            );
            assert!(params.threshold >= 2 && params.threshold <= params.degree);
            assert!(2 * params.threshold > params.degree, "{params:?}");
            assert!(params.degree >= previous_degree);
            // Logarithmic, far below n.
            assert!(
                params.degree <= 12 * (n as f64).log2() as usize,
                "{n}: {params:?}"
            );
            previous_degree = params.degree;
        }
    }

    #[test]
    fn corruption_raises_the_threshold() {
        let honest = secagg_plus_parameters(1_000, 0.05, 0.0).unwrap();
        let corrupt = secagg_plus_parameters(1_000, 0.05, 0.1).unwrap();
        assert!(corrupt.degree >= honest.degree);
        assert!(corrupt.threshold as f64 / corrupt.degree as f64 > 0.5);
    }

    #[test]
    fn infeasible_targets_are_errors() {
        assert!(secagg_plus_parameters(100, 0.5, 0.0).is_err());
        assert!(secagg_plus_parameters(3, 0.0, 0.0).is_err());
        assert!(secagg_plus_parameters(100, -0.1, 0.0).is_err());
    }
}
