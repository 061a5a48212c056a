//! Equivalence: the paired two one-sided tests (TOST; Schuirmann 1987), as
//! statsmodels' `ttost_paired` computes them.
//!
//! With paired differences d_1..d_n (one per seed), mean m, standard error
//! se = sd / sqrt(n) and df = n - 1, equivalence within (low, upp) is shown
//! at level alpha when both one-sided nulls are rejected:
//!
//! ```text
//! H0_low: mean <= low   t_low = (m - low) / se,  p_low = P(T_df > t_low)
//! H0_upp: mean >= upp   t_upp = (m - upp) / se,  p_upp = P(T_df < t_upp)
//! p = max(p_low, p_upp)
//! ```
//!
//! p < alpha exactly when the 1 - 2 alpha t interval of the mean lies
//! inside (low, upp) ([`Tost::interval`] is that interval at alpha = 0.05).

use crate::noncentral::{t_isf, t_sf};
use crate::{spread, Interval};

/// Level of the equivalence test the report prints.
pub const EQUIVALENCE_ALPHA: f64 = 0.05;

/// A paired TOST.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tost {
    /// Differences.
    pub n: usize,
    /// Degrees of freedom, n - 1.
    pub df: f64,
    /// Mean difference.
    pub mean: f64,
    /// Lower equivalence bound.
    pub low: f64,
    /// Upper equivalence bound.
    pub upp: f64,
    /// t of H0: mean <= low.
    pub t_low: f64,
    /// Its one-sided p-value.
    pub p_low: f64,
    /// t of H0: mean >= upp.
    pub t_upp: f64,
    /// Its one-sided p-value.
    pub p_upp: f64,
    /// max(p_low, p_upp).
    pub p: f64,
    /// The 90% t interval of the mean (inside (low, upp) exactly when
    /// p < 0.05).
    pub interval: Interval,
}

impl Tost {
    /// Whether equivalence is shown at [`EQUIVALENCE_ALPHA`].
    pub fn equivalent(&self) -> bool {
        self.p < EQUIVALENCE_ALPHA
    }
}

/// Paired TOST of `diffs` against the bounds (`low < upp`). `None` for
/// fewer than two differences or bounds that are not ordered and finite.
/// With no spread (sd = 0) each one-sided p is 0 when the mean lies
/// strictly beyond its bound, else 1.
pub fn tost_paired(diffs: &[f64], low: f64, upp: f64) -> Option<Tost> {
    let s = spread(diffs);
    if s.n < 2 || low >= upp || !low.is_finite() || !upp.is_finite() {
        return None;
    }
    let df = (s.n - 1) as f64;
    let se = s.sd / (s.n as f64).sqrt();
    let one_sided = |t: f64| -> f64 {
        if t.is_nan() {
            1.0
        } else {
            t_sf(t, df)
        }
    };
    let t_low = (s.mean - low) / se;
    let t_upp = (s.mean - upp) / se;
    let (p_low, p_upp) = (one_sided(t_low), one_sided(-t_upp));
    let half = t_isf(EQUIVALENCE_ALPHA, df) * se;
    Some(Tost {
        n: s.n,
        df,
        mean: s.mean,
        low,
        upp,
        t_low,
        p_low,
        t_upp,
        p_upp,
        p: p_low.max(p_upp),
        interval: Interval {
            lo: s.mean - half,
            hi: s.mean + half,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p_value_agrees_with_the_90_percent_interval() {
        for diffs in [
            vec![0.01, -0.02, 0.03],
            vec![0.1, 0.12, 0.09, 0.14],
            vec![-0.3, 0.2, 0.05],
            vec![0.14, 0.16, 0.15],
        ] {
            let t = tost_paired(&diffs, -0.15, 0.15).unwrap();
            let inside = -0.15 < t.interval.lo && t.interval.hi < 0.15;
            assert_eq!(t.equivalent(), inside, "{t:?}");
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert!(tost_paired(&[0.1], -0.2, 0.2).is_none());
        assert!(tost_paired(&[0.1, 0.2], 0.2, -0.2).is_none());
        assert!(tost_paired(&[0.1, 0.2], f64::NAN, 0.2).is_none());
        // No spread: inside the bounds is shown, on or outside is not.
        let t = tost_paired(&[0.1, 0.1], -0.2, 0.2).unwrap();
        assert_eq!((t.p_low, t.p_upp, t.p), (0.0, 0.0, 0.0));
        let t = tost_paired(&[0.3, 0.3], -0.2, 0.2).unwrap();
        assert_eq!(t.p, 1.0);
        assert!(!t.equivalent());
    }
}
