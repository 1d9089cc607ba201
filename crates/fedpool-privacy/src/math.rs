//! Numerical helpers shared by the accountants: log-space sums, `ln(e^x - 1)` and `log erfc`.

/// A privacy cost (an RDP value, an ε) as the accountant may use it: a `NaN` — from an
/// overflow, or parameters outside a formula's range — becomes `+∞`, never `0` as `max(0.0)`
/// would make it, so a failed computation can only stop a node from spending, never let it
/// spend for free. Negative rounding noise is clamped to 0.
pub(crate) fn cost_or_infinity(value: f64) -> f64 {
    if value.is_nan() {
        f64::INFINITY
    } else {
        value.max(0.0)
    }
}

/// `ln(1/2)`.
pub(crate) const LN_HALF: f64 = -std::f64::consts::LN_2;

/// A signed sum of terms given as `(sign, ln |term|)`, kept as `scaled * exp(max_ln)`.
///
/// Rescaling to the largest magnitude seen so far keeps every stored number in `[-n, n]`
/// for `n` terms, so sums of terms like `exp(800)` or `exp(-800)` neither overflow nor
/// flush to zero, and cancellation is only as bad as in the linear-space sum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSum {
    max_ln: f64,
    scaled: f64,
}

impl LogSum {
    /// The empty sum (zero).
    pub(crate) fn new() -> Self {
        Self {
            max_ln: f64::NEG_INFINITY,
            scaled: 0.0,
        }
    }

    /// Adds `sign * exp(ln_magnitude)`.
    pub(crate) fn add(&mut self, positive: bool, ln_magnitude: f64) {
        if ln_magnitude == f64::NEG_INFINITY {
            return;
        }
        let sign = if positive { 1.0 } else { -1.0 };
        if ln_magnitude > self.max_ln {
            self.scaled = self.scaled * (self.max_ln - ln_magnitude).exp() + sign;
            self.max_ln = ln_magnitude;
        } else {
            self.scaled += sign * (ln_magnitude - self.max_ln).exp();
        }
    }

    /// `ln` of the sum; `NaN` if the sum is negative, `-inf` if it is zero.
    pub(crate) fn ln(&self) -> f64 {
        if self.max_ln == f64::NEG_INFINITY {
            return f64::NEG_INFINITY;
        }
        self.max_ln + self.scaled.ln()
    }
}

/// `ln(e^x - 1)` for `x ≥ 0` (`-∞` at 0), without overflow for large `x`.
pub(crate) fn ln_expm1(x: f64) -> f64 {
    if x > 1.0 {
        x + (-(-x).exp()).ln_1p()
    } else {
        x.exp_m1().ln()
    }
}

/// `ln(e^a + e^b)`.
pub(crate) fn ln_sum2(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `ln(erfc(x))`, accurate to a few ulps for all finite `x`, including far in the tail
/// where `erfc(x)` underflows (x > 26.5).
///
/// Below 20 this is `ln` of musl's `erfc` (via the `libm` crate), which is accurate to about
/// one ulp in relative terms. From 20 on it uses the asymptotic expansion
/// `erfc(x) = exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + 105/(16x⁸) - 945/(32x¹⁰) + …)`
/// (Abramowitz and Stegun 7.1.23), whose truncation error at x = 20 is below 1e-16.
pub(crate) fn ln_erfc(x: f64) -> f64 {
    if x < 20.0 {
        return libm::erfc(x).ln();
    }
    let inv_2x2 = 1.0 / (2.0 * x * x);
    // Horner form of 1 - u + 3u² - 15u³ + 105u⁴ - 945u⁵ with u = 1/(2x²).
    let series = 1.0
        - inv_2x2
            * (1.0 - inv_2x2 * (3.0 - inv_2x2 * (15.0 - inv_2x2 * (105.0 - inv_2x2 * 945.0))));
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_erfc_is_continuous_at_the_switch_and_matches_known_values() {
        // erfc(1) = 0.157299207050285130658...
        assert!((ln_erfc(1.0) - 0.157_299_207_050_285_13_f64.ln()).abs() < 1e-15);
        // ln erfc(-3) = ln(2 - erfc(3)) = ln(1.999977909503001...)
        assert!((ln_erfc(-3.0) - 1.999_977_909_503_001_4_f64.ln()).abs() < 1e-15);
        let below = libm::erfc(19.999_999).ln();
        let above = ln_erfc(20.000_001);
        // d/dx ln erfc(x) ≈ -(2x + 1/x - 1/x³) = -40.049875 at x = 20, over a step of 2e-6.
        assert!(
            (below - above - 40.049_875 * 2e-6).abs() < 1e-11,
            "{below} {above}"
        );
        // ln erfc(x) far in the tail, from mpmath at 30 digits.
        for (x, expected) in [
            (20.0, -403.569_343_334_104_23),
            (22.5, -509.936_865_479_602_4),
            (30.0, -903.974_117_110_643_9),
        ] {
            assert!(
                ((ln_erfc(x) - expected) / expected).abs() < 1e-15,
                "{x}: {}",
                ln_erfc(x)
            );
        }
    }

    #[test]
    fn log_sum_handles_huge_and_signed_terms() {
        let mut sum = LogSum::new();
        sum.add(true, 1000.0);
        sum.add(true, 1000.0);
        sum.add(false, 1000.0 + 0.5_f64.ln());
        // e^1000 * (1 + 1 - 0.5) = 1.5 e^1000
        assert!((sum.ln() - (1000.0 + 1.5_f64.ln())).abs() < 1e-12);
        assert_eq!(LogSum::new().ln(), f64::NEG_INFINITY);
    }
}
