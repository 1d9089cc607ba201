//! The crate's error type.

/// Everything that can go wrong in `fedpool-privacy`.
///
/// Every variant names the parameter or step that failed and, for out-of-range inputs,
/// the range that would have been accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A numeric parameter lies outside the range the formula or algorithm is valid for.
    #[error("{name} = {value} is out of range: expected {allowed}")]
    OutOfRange {
        /// The parameter's name, as in the function signature (`q`, `sigma`, `delta`, …).
        name: &'static str,
        /// The value that was passed.
        value: f64,
        /// The accepted range, in words or interval notation.
        allowed: &'static str,
    },
    /// Two vectors (or a vector and a parameter set) disagree on their length.
    #[error("{name} has length {actual}, expected {expected}")]
    LengthMismatch {
        /// Which vector.
        name: &'static str,
        /// The length the parameters call for.
        expected: usize,
        /// The length that was passed.
        actual: usize,
    },
    /// No noise multiplier up to the search limit reaches the target epsilon.
    #[error(
        "no noise multiplier sigma <= {max_sigma} reaches epsilon {target_epsilon} at delta {delta:e} \
         for q = {q} over {rounds} rounds (sigma = {max_sigma} still gives epsilon {epsilon_at_max_sigma})"
    )]
    SigmaUnattainable {
        /// The requested epsilon.
        target_epsilon: f64,
        /// The requested delta.
        delta: f64,
        /// The sampling rate.
        q: f64,
        /// The number of rounds.
        rounds: u64,
        /// The largest noise multiplier searched.
        max_sigma: f64,
        /// The epsilon that `max_sigma` achieves.
        epsilon_at_max_sigma: f64,
    },
    /// Conditional randomized rounding (Kairouz, Liu, Steinke 2021, Algorithm 1) kept
    /// producing vectors above the norm bound.
    #[error(
        "distributed discrete Gaussian: conditional rounding exceeded the norm bound {norm_bound} \
         in all {max_retries} tries (last norm {last_norm})"
    )]
    RoundingRetriesExhausted {
        /// The retry budget.
        max_retries: u32,
        /// The L2 bound of the rounded, scaled vector.
        norm_bound: f64,
        /// The L2 norm of the last rounded vector.
        last_norm: f64,
    },
    /// No granularity fits the modular range with the requested bits.
    #[error(
        "distributed discrete Gaussian: {bits} bits cannot hold the sum of {n_clients} clients \
         with a {k_sigma:.2}-sigma margin; need 2^bits > k_sigma * sqrt(n_clients), i.e. more bits or fewer clients"
    )]
    ModulusTooSmall {
        /// The bits budget.
        bits: u32,
        /// The number of clients summed.
        n_clients: usize,
        /// The tail multiplier `k` of the wrap-around rule.
        k_sigma: f64,
    },
}

/// A shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns `Err(OutOfRange)` unless `ok`.
pub(crate) fn ensure(
    ok: bool,
    name: &'static str,
    value: f64,
    allowed: &'static str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            name,
            value,
            allowed,
        })
    }
}
