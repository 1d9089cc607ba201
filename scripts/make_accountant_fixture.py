#!/usr/bin/env python3
"""Writes crates/fedpool-privacy/tests/fixtures/rdp_reference.json.

The table pins fedpool-privacy's accountant to Google's `dp-accounting`
(https://pypi.org/project/dp-accounting/). CI never runs this script: the Rust
test reads the committed JSON through `include_str!`.

For every (q, sigma, T, delta) in the grid of the brief it records

* `epsilon_rdp`, `order_rdp`: dp_accounting's `RdpAccountant` with its default
  orders (`DEFAULT_RDP_ORDERS`), the number fedpool is compared against;
* `epsilon_rdp_integer_orders`: the same accountant restricted to the integer
  orders of that grid, where dp_accounting uses the exact closed form
  (Mironov, Talwar, Zhang 2019, Sec. 3.2), so fedpool must agree to ~1e-9;
* `epsilon_rdp_quadrature`: the same default grid, but with A_alpha at the
  fractional orders computed by high-precision numerical integration
  (mpmath, 40 digits) of A_alpha = E_{z~N(0,s^2)}[((1-q) + q*exp((2z-1)/(2s^2)))^alpha]
  instead of dp_accounting's series, converted to epsilon with dp_accounting's
  own `compute_epsilon`. dp_accounting 0.6 sums the *absolute values* of the
  fractional-order series terms (an upper bound) and drops orders whose series
  does not converge in 1000 terms, so this column is the exact value that a
  correct signed series must reproduce;
* `epsilon_pld`: dp_accounting's `PLDAccountant` (default discretisation
  1e-4), for comparison with fedpool's PLD accountant.

Combinations whose RDP epsilon exceeds 1e3 or is infinite are dropped.

Run from the workspace root:

    python3 -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dp-accounting==0.6.0 mpmath
    /tmp/dpvenv/bin/python scripts/make_accountant_fixture.py
"""

import json
import logging
import math
import platform
import sys
from importlib import metadata

import mpmath
from absl import logging as absl_logging
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant as rdp

COMMAND = (
    "python3 -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dp-accounting==0.6.0 mpmath && "
    "/tmp/dpvenv/bin/python scripts/make_accountant_fixture.py"
)
OUT = "crates/fedpool-privacy/tests/fixtures/rdp_reference.json"
QS = [0.001, 0.01, 0.1, 0.5, 1.0]
SIGMAS = [0.5, 0.8, 1.0, 1.5, 3.0]
ROUNDS = [1, 10, 100, 1000]
DELTAS = [1e-5, 1e-6]
MAX_EPSILON = 1e3
HEADLINE = dict(q=0.1, sigma=1.0, rounds=30, delta=1e-5)

mpmath.mp.dps = 40


def event(q, sigma, rounds):
    return dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), rounds
    )


def rdp_epsilon(q, sigma, rounds, delta, orders=None):
    acc = rdp.RdpAccountant(orders) if orders is not None else rdp.RdpAccountant()
    acc.compose(event(q, sigma, rounds))
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


def log_a_quadrature(q, sigma, alpha):
    """log A_alpha by 40-digit quadrature (Mironov, Talwar, Zhang 2019, Sec. 3.1)."""
    q, sigma, alpha = mpmath.mpf(q), mpmath.mpf(sigma), mpmath.mpf(alpha)

    def integrand(z):
        mu0 = mpmath.npdf(z, 0, sigma)
        return mu0 * ((1 - q) + q * mpmath.exp((2 * z - 1) / (2 * sigma**2))) ** alpha

    z0 = sigma**2 * mpmath.log(1 / q - 1) + mpmath.mpf(1) / 2
    points = sorted({mpmath.mpf(0), z0, alpha, alpha / 2})
    value, err = mpmath.quad(integrand, [-mpmath.inf] + points + [mpmath.inf], error=True)
    if not err < value * mpmath.mpf("1e-20"):
        raise RuntimeError(f"quadrature error {err} for q={q} sigma={sigma} alpha={alpha}")
    return float(mpmath.log(value))


_QUAD_CACHE = {}


def rdp_quadrature_curve(q, sigma):
    """Per-step RDP on dp_accounting's default orders, exact at every order."""
    key = (q, sigma)
    if key in _QUAD_CACHE:
        return _QUAD_CACHE[key]
    orders = list(rdp.DEFAULT_RDP_ORDERS)
    curve = []
    for alpha in orders:
        if q == 1.0:
            curve.append(alpha / (2 * sigma**2))
        elif float(alpha).is_integer():
            curve.append(rdp._compute_log_a_int(q, sigma, int(alpha)) / (alpha - 1))
        else:
            curve.append(log_a_quadrature(q, sigma, alpha) / (alpha - 1))
    _QUAD_CACHE[key] = (orders, curve)
    return orders, curve


def quadrature_epsilon(q, sigma, rounds, delta):
    orders, curve = rdp_quadrature_curve(q, sigma)
    eps, order = rdp.compute_epsilon(orders, [rounds * r for r in curve], delta)
    return float(eps), float(order)


def pld_epsilon(q, sigma, rounds, delta):
    acc = pld_privacy_accountant.PLDAccountant()
    acc.compose(event(q, sigma, rounds))
    return float(acc.get_epsilon(delta))


def row(q, sigma, rounds, delta):
    eps, order = rdp_epsilon(q, sigma, rounds, delta)
    if not math.isfinite(eps) or eps > MAX_EPSILON:
        return None
    integer_orders = [a for a in rdp.DEFAULT_RDP_ORDERS if float(a).is_integer()]
    eps_int, order_int = rdp_epsilon(q, sigma, rounds, delta, integer_orders)
    eps_quad, order_quad = quadrature_epsilon(q, sigma, rounds, delta)
    return {
        "q": q,
        "sigma": sigma,
        "rounds": rounds,
        "delta": delta,
        "epsilon_rdp": eps,
        "order_rdp": order,
        "epsilon_rdp_integer_orders": eps_int,
        "order_rdp_integer_orders": order_int,
        "epsilon_rdp_quadrature": eps_quad,
        "order_rdp_quadrature": order_quad,
        "epsilon_pld": pld_epsilon(q, sigma, rounds, delta),
    }


def main():
    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    entries = []
    for q in QS:
        for sigma in SIGMAS:
            for rounds in ROUNDS:
                for delta in DELTAS:
                    r = row(q, sigma, rounds, delta)
                    if r is not None:
                        entries.append(r)
                        print(json.dumps(r), file=sys.stderr)
    headline = row(**HEADLINE)
    doc = {
        "generator": "scripts/make_accountant_fixture.py",
        "command": COMMAND,
        "dp_accounting_version": metadata.version("dp-accounting"),
        "numpy_version": metadata.version("numpy"),
        "scipy_version": metadata.version("scipy"),
        "mpmath_version": metadata.version("mpmath"),
        "python_version": platform.python_version(),
        "orders": "dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS",
        "neighboring_relation": "ADD_OR_REMOVE_ONE",
        "max_epsilon_kept": MAX_EPSILON,
        "headline": headline,
        "entries": entries,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(entries)} entries to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
