#!/usr/bin/env python3
"""Builds crates/lpo-stats/tests/fixtures/statsmodels.json: what statsmodels
and scipy return for the equivalence test (TOST) and the power analysis that
`lpo report --equivalence-margin` and `lpo report --power` compute in Rust
(lpo_stats::equivalence, lpo_stats::power, lpo_stats::noncentral; issue 29).

Run by hand (CI has no Python; the Rust tests read the committed JSON):

    python3 -m venv /work/venv-stats
    /work/venv-stats/bin/pip install statsmodels scipy numpy
    /work/venv-stats/bin/python scripts/stats-fixtures.py

Versions it was run with are written into the JSON (`versions`). Every input
is a literal or drawn from numpy's seeded PCG64, so a rerun with the same
versions rewrites the same bytes.

What is recorded
- `t_isf`: scipy.stats.t.isf(q, df): the critical values of the t-tests.
- `nct_cdf`: scipy.stats.nct.cdf(t, df, nc), the noncentral t distribution
  (Boost's implementation) that statsmodels' power uses.
- `ttest_power`: statsmodels.stats.power.TTestPower().power(effect_size,
  nobs, alpha, alternative="two-sided"): the power of the one-sample (paired)
  two-sided t-test, P(T' > c) + P(T' < -c) with T' ~ nct(nobs - 1,
  effect_size * sqrt(nobs)) and c = t.isf(alpha / 2, nobs - 1).
- `solve_effect` and `solve_nobs`: TTestPower().solve_power(...) solving for
  the standardized effect size (mean / sd) or for the (continuous) number of
  observations at the given power. statsmodels' root finder
  (`brentq_expanding`) stops at xtol = 1e-5, so its roots are accurate to
  about 1e-6 only; `value` is solve_power with that tolerance tightened to
  1e-14 (the same code, `brentq_expanding` called with xtol=1e-14), and
  `value_default` is the untouched call (with `power_residual_default`: in
  3 of the cases it misses the root by 4e-4 to 0.13). Cases where statsmodels does not
  converge (a NaN from scipy's nct far in the lower tail, or a fallback root
  whose power misses the target) are left out: `power_residual` records
  |power(value) - power| of the kept ones.
- `ttost_paired`: statsmodels.stats.weightstats.ttost_paired(x1, x2, low,
  upp): the paired TOST, p = max(p of H0: mean <= low, p of H0: mean >= upp),
  t-tests on x1 - x2 with df = n - 1.

Options: --out PATH.
"""

import argparse
import functools
import json
import platform
import warnings

import numpy as np
import scipy
import statsmodels
import statsmodels.stats.power as smp
from scipy import stats
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired
from statsmodels.tools import rootfinding

ALPHAS = [0.05, 0.05 / 3, 0.05 / 6, 0.05 / 42, 0.01]


def t_isf():
    out = []
    for df in [1, 2, 3, 4, 9, 29, 2.5, 7.3, 150]:
        for q in [0.25, 0.05, 0.025, 0.025 / 3, 0.025 / 42, 1e-6]:
            out.append({"q": q, "df": df, "value": float(stats.t.isf(q, df))})
    return out


def nct_cdf():
    out = []
    for df in [1, 2, 4, 9, 2.5, 29]:
        for nc in [0.0, 0.5, 1.7, 3.2, -1.1, 6.5, 12.0]:
            for t in [-4.3, -1.0, 0.0, 0.7, 2.1, 4.3, 12.7]:
                v = float(stats.nct.cdf(t, df, nc))
                if np.isfinite(v):
                    out.append({"t": t, "df": df, "nc": nc, "cdf": v})
    return out


def ttest_power():
    tp = TTestPower()
    out = []
    for nobs in [2, 3, 5, 10, 4.6, 30]:
        for effect in [0.2, 0.8, 1.5, 3.0, 6.0]:
            for alpha in ALPHAS:
                v = float(tp.power(effect_size=effect, nobs=nobs, alpha=alpha))
                if np.isfinite(v):
                    out.append(
                        {"effect": effect, "nobs": nobs, "alpha": alpha, "power": v}
                    )
    return out


def tight_solve(**kwds):
    """solve_power with brentq_expanding's xtol tightened to 1e-14."""
    original = smp.brentq_expanding
    smp.brentq_expanding = functools.partial(rootfinding.brentq_expanding, xtol=1e-14)
    try:
        tp = TTestPower()
        value = tp.solve_power(**kwds)
        converged = tp.cache_fit_res[0] == 1
    finally:
        smp.brentq_expanding = original
    return float(value), converged


def power_residual(tp, kwds, key, value):
    """|power at the solved value - the target power|."""
    args = dict(kwds)
    args[key] = value
    power = args.pop("power")
    return abs(float(tp.power(**args)) - power)


def solved(key, cases):
    tp = TTestPower()
    out = []
    for kwds in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value, converged = tight_solve(**kwds)
            default = float(tp.solve_power(**kwds))
        if not converged or not np.isfinite(value) or not np.isfinite(default):
            continue
        residual = power_residual(tp, kwds, key, value)
        if residual > 1e-12:
            continue
        case = {k: v for k, v in kwds.items() if v is not None}
        case.update(
            {
                "value": value,
                "power_residual": residual,
                "value_default": default,
                "power_residual_default": power_residual(tp, kwds, key, default),
            }
        )
        out.append(case)
    return out


def solve_effect():
    cases = [
        {"effect_size": None, "nobs": n, "alpha": a, "power": p}
        for n in [2, 3, 4, 5, 10, 30]
        for a in ALPHAS
        for p in [0.8, 0.9]
    ]
    return solved("effect_size", cases)


def solve_nobs():
    cases = [
        {"effect_size": d, "nobs": None, "alpha": a, "power": p}
        for d in [0.25, 0.5, 0.8, 1.5, 3.0]
        for a in ALPHAS
        for p in [0.8, 0.9]
    ]
    return solved("nobs", cases)


def tost():
    rng = np.random.default_rng(29)
    out = []
    for n in [2, 3, 5, 10]:
        for shift, sd in [(0.0, 0.05), (0.08, 0.04), (-0.1, 0.2), (0.3, 0.1)]:
            x2 = rng.normal(7.0, 0.5, n)
            x1 = x2 + rng.normal(shift, sd, n)
            for low, upp in [(-0.15, 0.15), (-0.1, 0.2), (-0.5, 0.5)]:
                p, (t1, p1, df1), (t2, p2, df2) = ttost_paired(x1, x2, low, upp)
                out.append(
                    {
                        "x1": x1.tolist(),
                        "x2": x2.tolist(),
                        "low": low,
                        "upp": upp,
                        "p": float(p),
                        "t_low": float(t1),
                        "p_low": float(p1),
                        "t_upp": float(t2),
                        "p_upp": float(p2),
                        "df": float(df1),
                    }
                )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="crates/lpo-stats/tests/fixtures/statsmodels.json")
    args = parser.parse_args()
    fixture = {
        "generator": "scripts/stats-fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "statsmodels": statsmodels.__version__,
            "scipy": scipy.__version__,
            "numpy": np.__version__,
        },
        "t_isf": t_isf(),
        "nct_cdf": nct_cdf(),
        "ttest_power": ttest_power(),
        "solve_effect": solve_effect(),
        "solve_nobs": solve_nobs(),
        "ttost_paired": tost(),
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{k} {len(v)}" for k, v in fixture.items() if isinstance(v, list))
    )


if __name__ == "__main__":
    main()
