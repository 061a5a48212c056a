//! Intervals that agree with adjusted tests: the level at which to print
//! each test's interval so that it excludes the null value exactly when its
//! adjusted p-value is below alpha.
//!
//! For a family of m tests with raw p-values p_i and adjusted p-values
//! p~_i, the interval of test i is printed at confidence 1 - g_i, and its
//! test rejects at g_i exactly when p_i < g_i:
//!
//! - Holm: with r tests rejected (p~ < alpha), the test of rank k (1 = the
//!   smallest p) among the rejected gets g = alpha / (m - k + 1), the level
//!   of its own Holm step; every other test gets g = alpha / (m - r), the
//!   level of the step where Holm stopped. These non-rejected intervals are
//!   Strassburger and Bretz's (2008, Statistics in Medicine 27:4914)
//!   simultaneous intervals compatible with Holm; for the rejected tests
//!   Holm's simultaneous statement is the sign alone, and the printed
//!   interval is the one of the step that rejected it (at least 1 - alpha).
//!   With nothing rejected this is Bonferroni's 1 - alpha / m for all.
//! - Benjamini-Hochberg: with R tests rejected, every test gets
//!   g = max(R, 1) alpha / m: Benjamini and Yekutieli's (2005, JASA
//!   100:71-81) false-coverage-rate adjusted intervals, which control the
//!   expected share of non-covering intervals among the selected.
//!
//! A family of one test gets g = alpha: the ordinary interval.

use crate::Adjustment;

/// Two-sided level of the report's tests.
pub const ALPHA: f64 = 0.05;

impl Adjustment {
    /// The error rate g_i at which each test's interval is printed (module
    /// docs), in the input order: the interval at confidence 1 - g_i
    /// excludes the null exactly when `self.adjust(p)[i] < alpha`.
    pub fn interval_alphas(self, p: &[f64], alpha: f64) -> Vec<f64> {
        let m = p.len();
        let adjusted = self.adjust(p);
        let rejected = adjusted.iter().filter(|&&q| q < alpha).count();
        match self {
            Adjustment::Holm => {
                let mut order: Vec<usize> = (0..m).collect();
                order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
                let mut out = vec![alpha / (m - rejected).max(1) as f64; m];
                for (rank, &i) in order.iter().enumerate() {
                    if adjusted[i] < alpha {
                        out[i] = alpha / (m - rank) as f64;
                    }
                }
                out
            }
            Adjustment::BenjaminiHochberg => {
                vec![rejected.max(1) as f64 * alpha / m.max(1) as f64; m]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    fn uniform(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn intervals_exclude_the_null_exactly_when_the_adjusted_test_rejects() {
        let mut rng = SplitMix64::new(29);
        for adjustment in [Adjustment::Holm, Adjustment::BenjaminiHochberg] {
            for case in 0..2000 {
                let m = 1 + case % 9;
                // A mix of small and null-like p-values.
                let p: Vec<f64> = (0..m)
                    .map(|_| uniform(&mut rng).powi(1 + (case % 4) as i32 * 2))
                    .collect();
                let g = adjustment.interval_alphas(&p, ALPHA);
                let adjusted = adjustment.adjust(&p);
                for i in 0..m {
                    assert_eq!(
                        p[i] < g[i],
                        adjusted[i] < ALPHA,
                        "{adjustment:?} {p:?} {g:?}"
                    );
                    assert!(g[i] <= ALPHA + 1e-15 && g[i] >= ALPHA / m as f64 - 1e-15);
                }
            }
        }
    }

    #[test]
    fn levels_by_hand() {
        // Holm, m = 3: 0.001 and 0.01 rejected at steps 1 and 2 (levels
        // 0.05/3, 0.05/2); 0.2 is not: the stopping step's 0.05 / 1.
        let g = Adjustment::Holm.interval_alphas(&[0.2, 0.001, 0.01], 0.05);
        assert_eq!(g, vec![0.05, 0.05 / 3.0, 0.05 / 2.0]);
        // Nothing rejected: Bonferroni.
        let g = Adjustment::Holm.interval_alphas(&[0.3, 0.04], 0.05);
        assert_eq!(g, vec![0.025, 0.025]);
        // BH: R = 2 of 4 rejected: 2 * 0.05 / 4 for all.
        let g = Adjustment::BenjaminiHochberg.interval_alphas(&[0.001, 0.02, 0.5, 0.9], 0.05);
        assert_eq!(g, vec![0.025; 4]);
        assert_eq!(Adjustment::Holm.interval_alphas(&[0.7], 0.05), vec![0.05]);
        assert!(Adjustment::Holm.interval_alphas(&[], 0.05).is_empty());
    }
}
