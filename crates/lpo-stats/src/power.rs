//! Power of the two-sided one-sample (paired) t-test, as statsmodels'
//! `TTestPower` defines it, and its inversions: the smallest standardized
//! difference a design detects, and the observations a difference needs.
//!
//! With `n` observations (seeds: one per-seed mean difference each), level
//! `alpha` and standardized effect `d` = mean / sd,
//!
//! ```text
//! power(d, n, alpha) = P(T' > c) + P(T' < -c),  T' ~ noncentral t(n - 1, d sqrt(n)),
//!                      c = t_{1 - alpha/2, n - 1}
//! ```
//!
//! `n` may be any real above 1 (statsmodels' `nobs` is continuous).
//! [`solve_effect`] and [`solve_nobs`] invert it by bisection on a bracket
//! (power rises with |d| and with n) to 1e-13 relative: statsmodels'
//! `solve_power` stops at xtol = 1e-5, so its roots differ from these by up
//! to about 1e-6 (and in a few cases by more, where its fallback solver
//! misses); the fixtures record both (scripts/stats-fixtures.py).

use crate::noncentral::{nct_cdf, nct_sf, t_isf};

/// The power the report asks for.
pub const POWER: f64 = 0.8;

/// Fewest observations [`solve_nobs`] returns (a t-test needs two).
pub const MIN_NOBS: f64 = 2.0;

/// Largest `n` [`solve_nobs`] searches.
const MAX_NOBS: f64 = 1e7;

/// Largest standardized effect [`solve_effect`] searches.
const MAX_EFFECT: f64 = 1e6;

/// Power of the two-sided one-sample t-test (module docs). NaN for `n <= 1`,
/// `alpha` outside (0, 1) or NaN inputs; symmetric in `effect`.
pub fn t_test_power(effect: f64, n: f64, alpha: f64) -> f64 {
    if effect.is_nan() || n.is_nan() || n <= 1.0 || !(alpha > 0.0 && alpha < 1.0) {
        return f64::NAN;
    }
    let df = n - 1.0;
    let c = t_isf(alpha / 2.0, df);
    let delta = effect * n.sqrt();
    nct_sf(c, df, delta) + nct_cdf(-c, df, delta)
}

fn valid_target(alpha: f64, power: f64) -> bool {
    alpha > 0.0 && alpha < 1.0 && power > alpha && power < 1.0
}

/// Bisection of an increasing `f` on [lo, hi] for `f(x) = target`, to
/// 1e-13 relative.
fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64, target: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi.abs() {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// The standardized effect |d| that `n` observations detect with
/// probability `power` at level `alpha` (statsmodels'
/// `TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha,
/// power=power)`). `None` for `n <= 1`, `alpha` or `power` out of range
/// (`power` must exceed `alpha`), or no effect below 1e6 reaching it.
pub fn solve_effect(n: f64, alpha: f64, power: f64) -> Option<f64> {
    if n.is_nan() || n <= 1.0 || !valid_target(alpha, power) {
        return None;
    }
    let f = |d: f64| t_test_power(d, n, alpha);
    let mut hi = 1.0;
    while f(hi) < power {
        hi *= 2.0;
        if hi > MAX_EFFECT {
            return None;
        }
    }
    Some(bisect(f, 0.0, hi, power))
}

/// The observations (continuous, at least [`MIN_NOBS`]) at which a
/// standardized effect `effect` is detected with probability `power` at
/// level `alpha` (statsmodels' `TTestPower().solve_power(effect_size=d,
/// nobs=None, ...)`; round up for a design). [`MIN_NOBS`] when two already
/// suffice; `None` for a zero or NaN effect, targets out of range, or more
/// than 1e7 observations.
pub fn solve_nobs(effect: f64, alpha: f64, power: f64) -> Option<f64> {
    let effect = effect.abs();
    if effect.is_nan() || effect == 0.0 || !valid_target(alpha, power) {
        return None;
    }
    let f = |n: f64| t_test_power(effect, n, alpha);
    if f(MIN_NOBS) >= power {
        return Some(MIN_NOBS);
    }
    let mut hi = 2.0 * MIN_NOBS;
    while f(hi) < power {
        hi *= 2.0;
        if hi > MAX_NOBS {
            return None;
        }
    }
    Some(bisect(f, MIN_NOBS, hi, power))
}

/// A comparison's power at the report's level, from the spread of its
/// per-seed differences (the observed sd taken as the true one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSummary {
    /// Seeds (per-seed differences).
    pub n: usize,
    /// Their sample standard deviation.
    pub sd: f64,
    /// Two-sided level the detection is computed at.
    pub alpha: f64,
    /// Smallest |difference| detected with [`POWER`] (sd x the effect of
    /// [`solve_effect`]); `None` when it cannot be computed (sd = 0).
    pub detectable: Option<f64>,
    /// The difference asked about (`--effect`), if any.
    pub effect: Option<f64>,
    /// Seeds (continuous) that detect `effect` with [`POWER`].
    pub seeds_needed: Option<f64>,
}

/// [`PowerSummary`] of per-seed differences at level `alpha`, and the seeds
/// a difference `effect` needs. `None` for fewer than two differences.
pub fn summarize(diffs: &[f64], alpha: f64, effect: Option<f64>) -> Option<PowerSummary> {
    let s = crate::spread(diffs);
    if s.n < 2 {
        return None;
    }
    let usable = s.sd > 0.0 && s.sd.is_finite();
    Some(PowerSummary {
        n: s.n,
        sd: s.sd,
        alpha,
        detectable: usable
            .then(|| solve_effect(s.n as f64, alpha, POWER))
            .flatten()
            .map(|d| d * s.sd),
        effect,
        seeds_needed: effect
            .filter(|_| usable)
            .and_then(|e| solve_nobs(e / s.sd, alpha, POWER)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn power_at_zero_effect_is_alpha_and_rises_with_effect_and_n() {
        for (n, alpha) in [(3.0, 0.05), (10.0, 0.01), (4.5, 0.2)] {
            close(t_test_power(0.0, n, alpha), alpha, 1e-12);
        }
        let p = |d: f64, n: f64| t_test_power(d, n, 0.05);
        assert!(p(0.5, 10.0) < p(0.8, 10.0) && p(0.8, 10.0) < p(0.8, 20.0));
        close(p(-0.8, 10.0), p(0.8, 10.0), 1e-15);
        assert!(t_test_power(1.0, 1.0, 0.05).is_nan());
        assert!(t_test_power(1.0, 5.0, 1.5).is_nan());
    }

    #[test]
    fn large_samples_approach_the_normal_power() {
        // n = 1e5: power ~ Phi(d sqrt(n) - z_{0.975}) (the other tail ~ 0).
        let (d, n) = (0.01, 1e5);
        let z = 1.959963984540054;
        let normal = statrs::distribution::Normal::standard();
        use statrs::distribution::ContinuousCDF;
        close(
            t_test_power(d, n, 0.05),
            normal.cdf(d * n.sqrt() - z) + normal.cdf(-d * n.sqrt() - z),
            1e-4,
        );
    }

    #[test]
    fn solvers_invert_the_power_function() {
        for (n, alpha) in [(3.0, 0.05), (10.0, 0.05 / 3.0), (7.5, 0.01)] {
            let d = solve_effect(n, alpha, 0.8).unwrap();
            close(t_test_power(d, n, alpha), 0.8, 1e-12);
            close(solve_nobs(d, alpha, 0.8).unwrap(), n, 1e-9);
        }
        // Two observations already suffice for a huge effect.
        assert_eq!(solve_nobs(500.0, 0.05, 0.8), Some(MIN_NOBS));
        assert_eq!(solve_nobs(0.0, 0.05, 0.8), None);
        assert_eq!(solve_nobs(1.0, 0.05, 0.01), None);
        assert_eq!(solve_effect(1.0, 0.05, 0.8), None);
        assert_eq!(solve_effect(5.0, 0.05, 1.0), None);
    }

    #[test]
    fn summaries_scale_the_effect_by_the_spread() {
        let diffs = [0.1, 0.3, 0.2, 0.25];
        let s = summarize(&diffs, 0.05, Some(0.1)).unwrap();
        let sd = crate::spread(&diffs).sd;
        close(s.sd, sd, 1e-15);
        close(
            s.detectable.unwrap(),
            sd * solve_effect(4.0, 0.05, 0.8).unwrap(),
            1e-12,
        );
        close(
            s.seeds_needed.unwrap(),
            solve_nobs(0.1 / sd, 0.05, 0.8).unwrap(),
            1e-12,
        );
        assert!(summarize(&[0.2], 0.05, None).is_none());
        let flat = summarize(&[0.2, 0.2], 0.05, Some(0.1)).unwrap();
        assert_eq!((flat.detectable, flat.seeds_needed), (None, None));
    }
}
