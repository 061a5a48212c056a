//! Statistics of paired comparisons, all torch-free.
//!
//! A comparison pairs a method's reward with a baseline's reward on the same
//! held-out prompt: win, tie or loss. From those outcomes: the win rate with
//! ties counted half and its Wilson interval, the exact two-sided sign test
//! (ties dropped), and a seeded paired bootstrap interval of the mean reward
//! difference. Across seeds: mean, sd and a t interval. Across the
//! comparisons of a table: Holm–Bonferroni adjusted p-values.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// Default bootstrap resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// Paired outcomes of one method against one baseline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    /// Method better.
    pub wins: u64,
    /// Equal.
    pub ties: u64,
    /// Baseline better.
    pub losses: u64,
}

impl Tally {
    /// Counts outcomes of paired rewards `(method, baseline)`.
    pub fn of(pairs: impl IntoIterator<Item = (f64, f64)>) -> Tally {
        let mut t = Tally::default();
        for (m, b) in pairs {
            if m > b {
                t.wins += 1;
            } else if m < b {
                t.losses += 1;
            } else {
                t.ties += 1;
            }
        }
        t
    }

    /// Paired prompts.
    pub fn n(&self) -> u64 {
        self.wins + self.ties + self.losses
    }

    /// (wins + ties / 2) / n; 0.5 when there is nothing to compare.
    pub fn win_rate(&self) -> f64 {
        if self.n() == 0 {
            return 0.5;
        }
        (self.wins as f64 + 0.5 * self.ties as f64) / self.n() as f64
    }

    /// Wilson 95% interval of the win rate (ties count half a success).
    pub fn wilson(&self) -> Interval {
        wilson(
            self.wins as f64 + 0.5 * self.ties as f64,
            self.n() as f64,
            0.95,
        )
    }

    /// Exact two-sided sign test p-value (ties dropped).
    pub fn sign_test(&self) -> f64 {
        sign_test(self.wins, self.losses)
    }
}

/// Wilson score interval for `successes` out of `n` at confidence `level`.
/// `successes` may be fractional (ties counted half). `n = 0` gives [0, 1].
pub fn wilson(successes: f64, n: f64, level: f64) -> Interval {
    if n <= 0.0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    let p = successes / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    }
}

/// Exact two-sided binomial (sign) test of `wins` against `losses` under
/// p = 1/2: twice the smaller tail, capped at 1. No comparisons gives 1.
pub fn sign_test(wins: u64, losses: u64) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let b = Binomial::new(0.5, n).expect("valid binomial");
    let k = wins.min(losses);
    (2.0 * b.cdf(k)).min(1.0)
}

/// Percentile bootstrap interval (95%) of the mean of `diffs`, resampling
/// prompts with replacement `resamples` times from a seeded generator.
pub fn paired_bootstrap(diffs: &[f64], resamples: usize, seed: u64) -> Interval {
    let n = diffs.len();
    if n == 0 {
        return Interval { lo: 0.0, hi: 0.0 };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        lo: quantile(&means, 0.025),
        hi: quantile(&means, 0.975),
    }
}

/// Linear-interpolation quantile of sorted values (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean, sample standard deviation and t-based 95% interval of `values`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one value.
    pub sd: f64,
    /// t interval of the mean; `None` for fewer than two values.
    pub interval: Option<Interval>,
}

/// Summarises replicate values (e.g. one per seed).
pub fn spread(values: &[f64]) -> Spread {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return Spread {
            n,
            mean,
            sd: 0.0,
            interval: None,
        };
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("valid t")
        .inverse_cdf(0.975);
    let half = t * sd / (n as f64).sqrt();
    Spread {
        n,
        mean,
        sd,
        interval: Some(Interval {
            lo: mean - half,
            hi: mean + half,
        }),
    }
}

/// Holm–Bonferroni adjusted p-values, in the input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Significance marker of an (adjusted) p-value: `***` < 0.001, `**` < 0.01,
/// `*` < 0.05, else empty.
pub fn stars(p: f64) -> &'static str {
    if p < 0.001 {
        "***"
    } else if p < 0.01 {
        "**"
    } else if p < 0.05 {
        "*"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn wilson_matches_newcombe_1998_and_statsmodels() {
        // Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3
        // (Wilson score); digits beyond the table's four from statsmodels 0.15.0
        // proportion_confint(k, n, alpha=0.05, method="wilson").
        for (k, n, lo, hi) in [
            (81.0, 263.0, 0.2552885198782742, 0.36620957698280004),
            (15.0, 148.0, 0.06238639953073628, 0.16048724172330803),
            (0.0, 20.0, 0.0, 0.1611251580528194),
            (29.0, 29.0, 0.8830302015002592, 1.0),
            (7.0, 10.0, 0.39677814746114537, 0.8922087325936989),
            (52.5, 100.0, 0.42802252624739956, 0.6201277988422511),
        ] {
            let i = wilson(k, n, 0.95);
            close(i.lo, lo, 1e-9);
            close(i.hi, hi, 1e-9);
        }
        assert_eq!(wilson(0.0, 0.0, 0.95), Interval { lo: 0.0, hi: 1.0 });
    }

    #[test]
    fn sign_test_matches_exact_binomial_tails() {
        // scipy 1.17.1: scipy.stats.binomtest(k, n, 0.5).pvalue.
        for (w, l, p) in [
            (7, 3, 0.34375),
            (2, 18, 0.0004024505615234375),
            (60, 40, 0.05688793364098089),
            (0, 5, 0.0625),
            (10, 0, 0.001953125),
            (12, 18, 0.36159460805356514),
        ] {
            close(sign_test(w, l), p, 1e-12);
        }
        assert_eq!(sign_test(5, 5), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
    }

    #[test]
    fn t_intervals_match_scipy() {
        // scipy 1.17.1: mean -/+ t.ppf(0.975, 2) * sd / sqrt(3).
        let s = spread(&[0.61, 0.55, 0.58]);
        close(s.mean, 0.58, 1e-12);
        close(s.sd, 0.03, 1e-12);
        let i = s.interval.unwrap();
        close(i.lo, 0.5054758686474903, 1e-9);
        close(i.hi, 0.6545241313525099, 1e-9);
        assert!(spread(&[0.5]).interval.is_none());
    }

    #[test]
    fn holm_matches_statsmodels() {
        // statsmodels 0.15.0: multipletests(p, method="holm")[1].
        for (p, expected) in [
            (vec![0.01, 0.04, 0.03, 0.005], vec![0.03, 0.06, 0.06, 0.02]),
            (vec![0.2, 0.01, 0.5], vec![0.4, 0.03, 0.5]),
        ] {
            for (a, e) in holm(&p).iter().zip(expected) {
                close(*a, e, 1e-12);
            }
        }
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn tallies_and_win_rates() {
        let t = Tally::of([(3.0, 1.0), (1.0, 1.0), (0.0, 2.0), (5.0, 4.0)]);
        assert_eq!((t.wins, t.ties, t.losses), (2, 1, 1));
        close(t.win_rate(), 0.625, 1e-15);
        close(t.sign_test(), 1.0, 1e-15);
        assert_eq!(Tally::default().win_rate(), 0.5);
    }

    #[test]
    fn bootstrap_is_seeded_and_covers_the_mean() {
        let diffs: Vec<f64> = (0..200).map(|i| ((i * 37) % 11) as f64 - 4.0).collect();
        let mean = diffs.iter().sum::<f64>() / 200.0;
        let a = paired_bootstrap(&diffs, BOOTSTRAP_RESAMPLES, 1);
        assert_eq!(a, paired_bootstrap(&diffs, BOOTSTRAP_RESAMPLES, 1));
        assert!(a.lo < mean && mean < a.hi);
        // Width close to the normal approximation 2 * 1.96 * sd / sqrt(n).
        let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 199.0).sqrt();
        let expected = 2.0 * 1.96 * sd / 200f64.sqrt();
        assert!(
            ((a.hi - a.lo) - expected).abs() < 0.1 * expected,
            "{a:?} vs width {expected}"
        );
        // A constant difference has a degenerate interval.
        let c = paired_bootstrap(&[1.5; 10], 100, 0);
        assert_eq!((c.lo, c.hi), (1.5, 1.5));
    }

    #[test]
    fn stars_thresholds() {
        assert_eq!(stars(0.0005), "***");
        assert_eq!(stars(0.005), "**");
        assert_eq!(stars(0.02), "*");
        assert_eq!(stars(0.05), "");
    }
}
