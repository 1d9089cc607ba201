//! A privacy-loss-distribution (PLD) accountant for the Poisson-subsampled Gaussian.
//!
//! For a pair of output distributions (P, Q) the privacy loss is `L = ln(P(x)/Q(x))` with
//! `x ~ P`, and the tight δ at ε is the hockey-stick divergence
//! `δ(ε) = E[(1 - e^{ε - L})₊]` (plus the mass where Q = 0). Under composition the losses
//! add, so the composed PLD is the convolution of the per-step PLDs (Sommer, Meiser,
//! Mohammadi 2019, "Privacy Loss Classes: The Central Limit Theorem in Differential
//! Privacy"; Koskela, Jälkö, Honkela 2020, "Computing Tight Differential Privacy Guarantees
//! Using FFT"). This gives ε close to the exact value, below what RDP's conversion allows.
//!
//! Discretisation is pessimistic *connect-the-dots* (Doroshenko et al. 2022, see
//! [`discretize`]): the discrete PLD's δ(ε) matches the exact one at every grid point
//! `k·h` and lies above it in between, so it is a dominating pair and every reported δ and
//! ε is an upper bound, up to the tail mass moved out of the grid (at most
//! `tail_mass_truncation` per discretisation or convolution, all of it sent to infinite loss
//! or rounded up) and floating-point rounding in the FFT (below 1e-10 in δ).
//!
//! Add/remove adjacency has two directions, removing a record (P = (1-q)N(0,σ²) + qN(1,σ²),
//! Q = N(0,σ²)) and adding one (P and Q swapped); both are composed and δ is the larger.

use super::fft::{MAX_FFT_LEN, convolve};
use crate::error::{Error, Result, ensure};

/// Discretisation settings of [`PldAccountant`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PldConfig {
    /// Grid spacing `h` of loss values. dp-accounting's default is 1e-4.
    pub value_discretization: f64,
    /// Total probability mass that each discretisation or composition step may move into
    /// the tails (to "infinite loss" above, rounded up below). dp-accounting's default is
    /// 1e-15.
    pub tail_mass_truncation: f64,
}

impl Default for PldConfig {
    fn default() -> Self {
        Self {
            value_discretization: 1e-4,
            tail_mass_truncation: 1e-15,
        }
    }
}

/// A discretised privacy loss distribution: mass `masses[i]` at loss `(offset + i)·h`,
/// plus `infinity_mass` at `+∞`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Pld {
    offset: i64,
    masses: Vec<f64>,
    infinity_mass: f64,
}

impl Pld {
    /// The PLD of "no mechanism": all mass at loss 0.
    fn identity() -> Self {
        Self {
            offset: 0,
            masses: vec![1.0],
            infinity_mass: 0.0,
        }
    }
}

/// A privacy-loss-distribution accountant for the Poisson-subsampled Gaussian mechanism
/// under add/remove-one adjacency: ε close to the exact value, tighter than
/// [`super::RdpAccountant`] (at the headline q = 0.1, σ = 1, T = 30, δ = 1e-5: 4.18 against
/// RDP's 4.85).
///
/// The privacy loss `L = ln(P(x)/Q(x))`, `x ~ P`, of each step is discretised on the grid
/// `k·h` by pessimistic connect-the-dots (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi
/// 2022, Algorithm 1), composition convolves the distributions (Koskela, Jälkö, Honkela
/// 2020; an own radix-2 FFT, `steps`-fold by repeated squaring with tail truncation), and
/// `δ(ε) = E[(1 - e^{ε - L})₊]` plus the infinite-loss mass (Sommer, Meiser, Mohammadi
/// 2019). Both directions (removing and adding a record) are composed and the larger δ is
/// reported. The result is an upper bound up to the truncated tail mass and FFT rounding,
/// and matches dp-accounting 0.6's `PLDAccountant` to 1e-7 relative on the reference table.
///
/// Cost grows with the composed support: from milliseconds (σ ≥ 1.5) to about a minute
/// (σ = 0.5, q = 0.001, T = 1000 exceeds the 2^24-point limit at h = 1e-4 and returns an
/// error; use a coarser [`PldConfig::value_discretization`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PldAccountant {
    config: PldConfig,
    remove: Pld,
    add: Pld,
}

impl Default for PldAccountant {
    fn default() -> Self {
        Self {
            config: PldConfig::default(),
            remove: Pld::identity(),
            add: Pld::identity(),
        }
    }
}

impl PldAccountant {
    /// An empty accountant with the given discretisation.
    pub fn new(config: PldConfig) -> Result<Self> {
        ensure(
            config.value_discretization > 0.0 && config.value_discretization <= 1.0,
            "value_discretization",
            config.value_discretization,
            "0 < value_discretization <= 1",
        )?;
        ensure(
            config.tail_mass_truncation > 0.0 && config.tail_mass_truncation < 1e-3,
            "tail_mass_truncation",
            config.tail_mass_truncation,
            "0 < tail_mass_truncation < 1e-3",
        )?;
        Ok(Self {
            config,
            ..Self::default()
        })
    }

    /// Composes `steps` rounds of the Poisson-subsampled Gaussian with sampling rate `q` and
    /// noise multiplier `sigma > 0`. The `steps`-fold self-convolution is computed by
    /// repeated squaring, truncating tails after every convolution.
    ///
    /// Fails if the composed distribution would need more than 2^24 grid points (choose a
    /// coarser `value_discretization`).
    pub fn compose_subsampled_gaussian(&mut self, q: f64, sigma: f64, steps: u64) -> Result<()> {
        ensure((0.0..=1.0).contains(&q), "q", q, "0 <= q <= 1")?;
        ensure(
            sigma > 0.0 && sigma.is_finite(),
            "sigma",
            sigma,
            "0 < sigma < inf",
        )?;
        if q == 0.0 || steps == 0 {
            return Ok(());
        }
        let h = self.config.value_discretization;
        let tail = self.config.tail_mass_truncation;
        let remove_step = discretize(Direction::Remove, q, sigma, h, tail);
        let add_step = discretize(Direction::Add, q, sigma, h, tail);
        let remove = self_compose(&remove_step, steps, tail)?;
        let add = self_compose(&add_step, steps, tail)?;
        self.remove = compose(&self.remove, &remove, tail)?;
        self.add = compose(&self.add, &add, tail)?;
        Ok(())
    }

    /// The smallest δ such that everything composed is (ε, δ)-DP:
    /// `max over directions of ∞-mass + Σ_k m_k (1 - e^{ε - ℓ_k})₊`.
    pub fn delta(&self, epsilon: f64) -> Result<f64> {
        ensure(
            epsilon >= 0.0 && epsilon.is_finite(),
            "epsilon",
            epsilon,
            "0 <= epsilon < inf",
        )?;
        let h = self.config.value_discretization;
        Ok(delta_of(&self.remove, epsilon, h)
            .max(delta_of(&self.add, epsilon, h))
            .min(1.0))
    }

    /// The smallest ε ≥ 0 such that everything composed is (ε, δ)-DP (`+∞` if the
    /// infinite-loss mass alone exceeds δ).
    pub fn epsilon(&self, delta: f64) -> Result<f64> {
        ensure(delta > 0.0 && delta < 1.0, "delta", delta, "0 < delta < 1")?;
        let h = self.config.value_discretization;
        Ok(epsilon_of(&self.remove, delta, h).max(epsilon_of(&self.add, delta, h)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Remove,
    Add,
}

/// `ln(1 - q + q·e^u)` without overflow.
fn ln_mixture_ratio(q: f64, u: f64) -> f64 {
    if u > 0.0 {
        // = u + ln q + ln(1 + (1-q)e^{-u}/q)
        u + q.ln() + ((1.0 - q) * (-u).exp() / q).ln_1p()
    } else {
        (q * u.exp_m1()).ln_1p()
    }
}

/// The PLD of one step in one direction, discretised by pessimistic connect-the-dots
/// (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, "Connect the Dots: Tighter Discrete
/// Approximations of Privacy Loss Distributions", Algorithm 1, fixed-gap form as in
/// dp-accounting's `create_pmf_pessimistic_connect_dots_fixed_gap`).
///
/// With `δ_i` the exact hockey-stick divergence at the grid points `ε_i = (k_lo + i)·h`,
/// `i = 1..n`, and `g = e^h`, the masses are
///
/// ```text
/// m_1 = (1 - δ_1) + (δ_2 - δ_1)/(g - 1)
/// m_i = ((δ_{i+1} - δ_i) - g(δ_i - δ_{i-1}))/(g - 1)       1 < i < n
/// m_n = (δ_n - δ_{n-1})/(1/g - 1),       m_∞ = δ_n
/// ```
///
/// so the discrete δ(ε) equals the exact one at every grid point and, δ being convex in
/// `e^ε`, lies above it in between: a dominating pair, which stays one under composition.
///
/// Remove: `L(x) = ln(1 - q + q·e^{(2x-1)/(2σ²)})` with `x ~ P = (1-q)N(0,σ²) + qN(1,σ²)`
/// against `Q = N(0,σ²)`, increasing in x, so `δ(ε) = P[X > x(ε)] - e^ε Q[X > x(ε)]` with
/// `x(ε) = σ²(ln(e^ε - 1 + q) - ln q) + 1/2`. Add: the same with P and Q swapped, `L`
/// decreasing in x, `δ(ε) = P[X < x(ε)] - e^ε Q[X < x(ε)]`,
/// `x(ε) = σ²(ln(e^{-ε} - 1 + q) - ln q) + 1/2`.
fn discretize(direction: Direction, q: f64, sigma: f64, h: f64, tail: f64) -> Pld {
    let sigma2 = sigma * sigma;
    let u = |x: f64| (2.0 * x - 1.0) / (2.0 * sigma2);
    let z = tail_multiplier(tail / 4.0);
    let hockey_stick = |eps: f64| exact_hockey_stick(direction, q, sigma, eps);
    let (x_lo, x_hi) = match direction {
        Direction::Remove => (-z * sigma, 1.0 + z * sigma),
        Direction::Add => (-z * sigma, z * sigma),
    };
    let (ell_lo, ell_hi) = match direction {
        Direction::Remove => (ln_mixture_ratio(q, u(x_lo)), ln_mixture_ratio(q, u(x_hi))),
        Direction::Add => (-ln_mixture_ratio(q, u(x_hi)), -ln_mixture_ratio(q, u(x_lo))),
    };
    let k_lo = (ell_lo / h).floor() as i64;
    let k_hi = ((ell_hi / h).ceil() as i64).max(k_lo + 1);
    // δ is non-increasing in ε; enforce it against rounding as dp-accounting does.
    let mut deltas: Vec<f64> = (k_lo..=k_hi).map(|k| hockey_stick(k as f64 * h)).collect();
    for i in 1..deltas.len() {
        deltas[i] = deltas[i].min(deltas[i - 1]);
    }
    let n = deltas.len();
    let g_minus_1 = h.exp_m1();
    let g = h.exp();
    let mut masses = vec![0.0; n];
    masses[0] = (1.0 - deltas[0]) + (deltas[1] - deltas[0]) / g_minus_1;
    for i in 1..n - 1 {
        masses[i] = ((deltas[i + 1] - deltas[i]) - g * (deltas[i] - deltas[i - 1])) / g_minus_1;
    }
    masses[n - 1] = (deltas[n - 1] - deltas[n - 2]) / (-h).exp_m1();
    for m in masses.iter_mut() {
        *m = m.max(0.0);
    }
    Pld {
        offset: k_lo,
        masses,
        infinity_mass: deltas[n - 1],
    }
}

/// The exact hockey-stick divergence `δ(ε) = sup_S P(S) - e^ε Q(S)` of one step in one
/// direction (see [`discretize`] for the formulas).
fn exact_hockey_stick(direction: Direction, q: f64, sigma: f64, eps: f64) -> f64 {
    let sigma2 = sigma * sigma;
    let mixture_above = |x: f64| {
        (1.0 - q) * normal_mass(x, f64::INFINITY, 0.0, sigma)
            + q * normal_mass(x, f64::INFINITY, 1.0, sigma)
    };
    let mixture_below = |x: f64| {
        (1.0 - q) * normal_mass(f64::NEG_INFINITY, x, 0.0, sigma)
            + q * normal_mass(f64::NEG_INFINITY, x, 1.0, sigma)
    };
    let delta = match direction {
        Direction::Remove => {
            let arg = eps.exp_m1() + q;
            if arg <= 0.0 {
                // The loss always exceeds ε: δ = 1 - e^ε.
                -eps.exp_m1()
            } else {
                let x = sigma2 * (arg.ln() - q.ln()) + 0.5;
                mixture_above(x) - eps.exp() * normal_mass(x, f64::INFINITY, 0.0, sigma)
            }
        }
        Direction::Add => {
            let arg = (-eps).exp_m1() + q;
            if arg <= 0.0 {
                // The loss never exceeds ε.
                0.0
            } else {
                let x = sigma2 * (arg.ln() - q.ln()) + 0.5;
                normal_mass(f64::NEG_INFINITY, x, 0.0, sigma) - eps.exp() * mixture_below(x)
            }
        }
    };
    // A NaN (parameters outside the formulas' range) is the worst case, δ = 1, never 0.
    if delta.is_nan() {
        1.0
    } else {
        delta.clamp(0.0, 1.0)
    }
}

/// The smallest z (in steps of 0.05) with `P[N(0,1) > z] ≤ p`.
fn tail_multiplier(p: f64) -> f64 {
    let mut z: f64 = 1.0;
    while 0.5 * libm::erfc(z / std::f64::consts::SQRT_2) > p {
        z += 0.05;
    }
    z
}

/// `P[a < X ≤ b]` for `X ~ N(mean, σ²)`, from whichever tail avoids cancellation.
fn normal_mass(a: f64, b: f64, mean: f64, sigma: f64) -> f64 {
    if a >= b {
        return 0.0;
    }
    let scale = std::f64::consts::SQRT_2 * sigma;
    let (za, zb) = ((a - mean) / scale, (b - mean) / scale);
    let upper = |z: f64| 0.5 * libm::erfc(z); // P[X > ·]
    let lower = |z: f64| 0.5 * libm::erfc(-z); // P[X ≤ ·]
    let value = if za >= 0.0 {
        upper(za) - upper(zb)
    } else if zb <= 0.0 {
        lower(zb) - lower(za)
    } else {
        1.0 - lower(za) - upper(zb)
    };
    value.max(0.0)
}

fn self_compose(step: &Pld, steps: u64, tail: f64) -> Result<Pld> {
    let mut result = Pld::identity();
    let mut base = step.clone();
    let mut remaining = steps;
    loop {
        if remaining & 1 == 1 {
            result = compose(&result, &base, tail)?;
        }
        remaining >>= 1;
        if remaining == 0 {
            return Ok(result);
        }
        base = compose(&base, &base, tail)?;
    }
}

/// Convolution of two PLDs (the PLD of their composition), then tail truncation.
fn compose(a: &Pld, b: &Pld, tail: f64) -> Result<Pld> {
    let masses = convolve(&a.masses, &b.masses).ok_or(Error::OutOfRange {
        name: "value_discretization",
        value: (a.masses.len() + b.masses.len()) as f64,
        allowed: "a grid small enough that composed supports fit 2^24 points (use a coarser value_discretization)",
    })?;
    debug_assert!(masses.len() < 2 * MAX_FFT_LEN);
    let mut pld = Pld {
        offset: a.offset + b.offset,
        masses,
        // Infinite loss in either factor is infinite in the composition.
        infinity_mass: 1.0 - (1.0 - a.infinity_mass) * (1.0 - b.infinity_mass),
    };
    truncate_tails(&mut pld, tail);
    Ok(pld)
}

/// Moves at most `tail/2` of mass from the bottom up into the lowest kept bin and at most
/// `tail/2` from the top into infinite loss, then drops the emptied bins: both moves can
/// only raise δ.
fn truncate_tails(pld: &mut Pld, tail: f64) {
    let masses = &pld.masses;
    let mut low = 0;
    let mut low_mass = 0.0;
    while low + 1 < masses.len() && low_mass + masses[low] <= tail / 2.0 {
        low_mass += masses[low];
        low += 1;
    }
    let mut high = masses.len() - 1;
    let mut high_mass = 0.0;
    while high > low && high_mass + masses[high] <= tail / 2.0 {
        high_mass += masses[high];
        high -= 1;
    }
    let mut kept = pld.masses[low..=high].to_vec();
    kept[0] += low_mass;
    pld.infinity_mass += high_mass;
    pld.offset += low as i64;
    pld.masses = kept;
}

fn delta_of(pld: &Pld, epsilon: f64, h: f64) -> f64 {
    let mut delta = pld.infinity_mass;
    for (i, &m) in pld.masses.iter().enumerate() {
        let ell = (pld.offset + i as i64) as f64 * h;
        if ell > epsilon {
            delta += m * -(epsilon - ell).exp_m1();
        }
    }
    delta
}

/// The smallest ε ≥ 0 with δ(ε) ≤ `delta`, by one sweep from the top bin down. After adding
/// bin j, on `[ℓ_j - h, ℓ_j]` (and, for the lowest bin, everywhere below)
/// `δ(ε) = ∞-mass + S₁ - S₂·e^{ε - (ℓ_j - h)}` with `S₁ = Σ_{i≥j} m_i` and
/// `S₂ = Σ_{i≥j} m_i e^{ℓ_j - h - ℓ_i}`, which is solved for ε in closed form.
fn epsilon_of(pld: &Pld, delta: f64, h: f64) -> f64 {
    if pld.infinity_mass >= delta {
        return f64::INFINITY;
    }
    let decay = (-h).exp();
    let (mut s1, mut s2) = (0.0, 0.0);
    for j in (0..pld.masses.len()).rev() {
        s1 += pld.masses[j];
        s2 = (s2 + pld.masses[j]) * decay;
        let lower = (pld.offset + j as i64) as f64 * h - h;
        let excess = pld.infinity_mass + s1 - delta;
        if excess - s2 > 0.0 || j == 0 {
            if excess <= 0.0 || s2 <= 0.0 {
                return lower.max(0.0);
            }
            return (lower + (excess / s2).ln()).max(0.0);
        }
        if lower <= 0.0 {
            return 0.0;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discretisation_keeps_all_mass_and_dominates_the_exact_curve() {
        let h = 1e-3;
        for direction in [Direction::Remove, Direction::Add] {
            for (q, sigma) in [(0.01, 1.0), (0.5, 0.5), (1.0, 2.0)] {
                let pld = discretize(direction, q, sigma, h, 1e-15);
                let total: f64 = pld.masses.iter().sum::<f64>() + pld.infinity_mass;
                assert!(
                    (total - 1.0).abs() < 1e-9,
                    "{direction:?} {q} {sigma}: {total}"
                );
                // Equal to the exact δ on grid points, above it in between (for ε ≥ 0, where
                // accounting happens).
                for k in 0..2000 {
                    let on_grid = k as f64 * h;
                    let exact = exact_hockey_stick(direction, q, sigma, on_grid);
                    let discrete = delta_of(&pld, on_grid, h);
                    assert!(
                        (discrete - exact).abs() < 1e-12,
                        "{direction:?} {q} {sigma} at {on_grid}: {discrete} vs {exact}"
                    );
                    let between = on_grid + h / 2.0;
                    let exact = exact_hockey_stick(direction, q, sigma, between);
                    assert!(
                        delta_of(&pld, between, h) >= exact - 1e-12,
                        "{direction:?} {q} {sigma} at {between}"
                    );
                }
            }
        }
    }

    #[test]
    fn gaussian_mechanism_matches_the_analytic_delta() {
        // q = 1: the Gaussian mechanism, δ(ε) = Φ(-εσ + 1/(2σ)) - e^ε Φ(-εσ - 1/(2σ))
        // (Balle, Wang 2018, "Improving the Gaussian Mechanism", Theorem 8).
        let (sigma, eps) = (1.5, 1.0);
        let mut accountant = PldAccountant::default();
        accountant
            .compose_subsampled_gaussian(1.0, sigma, 1)
            .unwrap();
        let phi = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        let exact = phi(-eps * sigma + 1.0 / (2.0 * sigma))
            - eps.exp() * phi(-eps * sigma - 1.0 / (2.0 * sigma));
        let ours = accountant.delta(eps).unwrap();
        assert!(ours >= exact && ours < exact * 1.01, "{ours} vs {exact}");
        // Composition of T Gaussians is the Gaussian with σ/√T.
        let mut composed = PldAccountant::default();
        composed.compose_subsampled_gaussian(1.0, sigma, 9).unwrap();
        let sigma_t = sigma / 3.0;
        let exact_t = phi(-eps * sigma_t + 1.0 / (2.0 * sigma_t))
            - eps.exp() * phi(-eps * sigma_t - 1.0 / (2.0 * sigma_t));
        let ours_t = composed.delta(eps).unwrap();
        assert!(
            ours_t >= exact_t * (1.0 - 1e-9) && ours_t < exact_t * 1.01,
            "{ours_t} vs {exact_t}"
        );
        // ε(δ) inverts δ(ε).
        let eps_back = composed.epsilon(ours_t).unwrap();
        assert!((eps_back - eps).abs() < 1e-6, "{eps_back}");
    }
}
