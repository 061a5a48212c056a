//! Statistics of paired comparisons, all torch-free.
//!
//! The unit of inference is the per-prompt score of a policy against a
//! baseline on the same held-out prompt (its mean reward minus the
//! baseline's). Prompts are nested in seeds: each seed has its own reference,
//! data and policy, so prompts of different seeds are not independent draws
//! of one model. This crate provides:
//!
//! - [`hierarchical_bootstrap`] (and [`hierarchical_bootstrap_ratio`]):
//!   resample seeds, then prompts within each chosen seed; percentile
//!   interval; a documented portable generator ([`SplitMix64`]) so anyone
//!   can reproduce an interval bit for bit;
//! - [`paired_t`]: Student's t on paired differences (across seeds: one
//!   difference per seed, df = seeds - 1) with its t interval;
//! - the exact [`sign_test`] with the [`wilson`] interval of W/(W+L), which
//!   agree with each other (both ignore ties);
//! - [`holm`] and [`benjamini_hochberg`] adjustments over a family of tests,
//!   and the level at which each test's interval must be printed to agree
//!   with its adjusted p-value ([`Adjustment::interval_alphas`], module
//!   [`simultaneous`]);
//! - the paired equivalence test TOST ([`equivalence`]);
//! - the power of the paired t-test and its inversions ([`power`]) on the
//!   noncentral t distribution ([`noncentral`]);
//! - [`format_p`], which never prints a p-value as `0`.
//!
//! TOST and power equal statsmodels' `ttost_paired` and
//! `TTestPower().solve_power` to 1e-9 on the fixtures of
//! scripts/stats-fixtures.py (`tests/statsmodels.rs`).

pub mod equivalence;
pub mod noncentral;
pub mod power;
pub mod simultaneous;

pub use equivalence::{tost_paired, Tost, EQUIVALENCE_ALPHA};
pub use power::{solve_effect, solve_nobs, t_test_power, PowerSummary, POWER};
pub use simultaneous::ALPHA;

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// Default bootstrap resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// Seed of the generator every interval of a report uses.
pub const BOOTSTRAP_SEED: u64 = 0;

/// Smallest p-value printed as a number; anything below prints `< 1e-300`.
pub const P_FLOOR: f64 = 1e-300;

/// A closed interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies inside (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Paired outcomes of one method against one baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

    /// W / (W + L): the share of decided prompts the method wins (ties
    /// dropped, as the sign test drops them); `None` when every prompt ties.
    pub fn decided_win_rate(&self) -> Option<f64> {
        let decided = self.wins + self.losses;
        (decided > 0).then(|| self.wins as f64 / decided as f64)
    }

    /// Wilson 95% interval of the win rate (ties count half a success).
    pub fn wilson(&self) -> Interval {
        wilson(
            self.wins as f64 + 0.5 * self.ties as f64,
            self.n() as f64,
            0.95,
        )
    }

    /// Wilson 95% interval of W / (W + L): excludes 1/2 essentially when
    /// the sign test rejects (both drop ties).
    pub fn decided_wilson(&self) -> Interval {
        wilson(self.wins as f64, (self.wins + self.losses) as f64, 0.95)
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

/// SplitMix64 (Steele, Lea and Flood 2014; the seeding generator of
/// xoshiro): a tiny generator specified by three lines, so a bootstrap can
/// be reproduced exactly in any language.
///
/// ```text
/// state = state + 0x9E3779B97F4A7C15            (wrapping)
/// z = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9  (wrapping)
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB          (wrapping)
/// return z ^ (z >> 31)
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..n` (`n > 0`): the high 64 bits of `next_u64() * n`
    /// (Lemire's multiply-shift; its bias, below n / 2^64, is negligible).
    pub fn index(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Percentile interval of a statistic over resamples (sorted in place).
fn percentile_interval(stats: &mut [f64], level: f64) -> Option<Interval> {
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        lo: quantile(stats, tail),
        hi: quantile(stats, 1.0 - tail),
    })
}

/// Hierarchical (two-stage) percentile bootstrap 95% interval of the pooled
/// mean of per-prompt values grouped by seed.
///
/// `groups[s]` holds the values of seed `s` (seeds in ascending order,
/// values in file order). Each of `resamples` resamples draws, with a
/// [`SplitMix64`] seeded with `seed`, `S = groups.len()` seeds with
/// replacement (`s = index(S)`), and for each drawn seed as many of its
/// values with replacement as it has (`k = index(n_s)`), in that order; the
/// statistic is the mean of all drawn values. The interval is the 2.5% and
/// 97.5% quantiles of the statistics (linear interpolation, numpy's
/// default). Empty groups are skipped; `None` when no value exists.
/// With one seed this is the ordinary paired bootstrap over prompts.
pub fn hierarchical_bootstrap(
    groups: &[Vec<f64>],
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    let groups: Vec<Vec<(f64, f64)>> = groups
        .iter()
        .map(|g| g.iter().map(|&v| (v, 1.0)).collect())
        .collect();
    hierarchical_bootstrap_ratio(&groups, resamples, seed)
}

/// [`hierarchical_bootstrap`] of a ratio of sums: each item is a
/// `(numerator, denominator)` pair and the statistic of a resample is
/// sum(numerators) / sum(denominators) of the drawn items (e.g. correctly
/// ordered pairs over ordered pairs, or wins over decided prompts). A
/// resample whose denominators sum to 0 has no statistic and is left out;
/// `None` when none has one.
pub fn hierarchical_bootstrap_ratio(
    groups: &[Vec<(f64, f64)>],
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    let groups: Vec<&Vec<(f64, f64)>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let seeds = groups.len();
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples.max(1) {
        let (mut num, mut den) = (0.0, 0.0);
        for _ in 0..seeds {
            let group = groups[rng.index(seeds)];
            for _ in 0..group.len() {
                let (a, b) = group[rng.index(group.len())];
                num += a;
                den += b;
            }
        }
        if den != 0.0 {
            stats.push(num / den);
        }
    }
    percentile_interval(&mut stats, 0.95)
}

/// Percentile bootstrap interval (95%) of the mean of `diffs`, resampling
/// prompts with replacement: [`hierarchical_bootstrap`] with one seed.
pub fn paired_bootstrap(diffs: &[f64], resamples: usize, seed: u64) -> Interval {
    hierarchical_bootstrap(&[diffs.to_vec()], resamples, seed)
        .unwrap_or(Interval { lo: 0.0, hi: 0.0 })
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
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
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

fn t_quantile(q: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .expect("valid t")
        .inverse_cdf(q)
}

/// A one-sample t-test of paired differences against 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    /// Differences (e.g. seeds).
    pub n: usize,
    /// Degrees of freedom, n - 1.
    pub df: f64,
    /// Mean difference.
    pub mean: f64,
    /// Sample standard deviation of the differences.
    pub sd: f64,
    /// t = mean / (sd / sqrt(n)); infinite when sd = 0 and mean != 0.
    pub t: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// 95% t interval of the mean: mean -/+ t_{0.975, df} sd / sqrt(n); it
    /// excludes 0 exactly when p < 0.05.
    pub interval: Interval,
}

impl TTest {
    /// The t interval of the mean at confidence `1 - alpha`: mean -/+
    /// t_{1 - alpha/2, df} sd / sqrt(n). It excludes 0 exactly when
    /// p < alpha.
    pub fn interval_at(&self, alpha: f64) -> Interval {
        let half = noncentral::t_isf(alpha / 2.0, self.df) * self.sd / (self.n as f64).sqrt();
        Interval {
            lo: self.mean - half,
            hi: self.mean + half,
        }
    }
}

/// Student's paired t-test of `diffs` (one difference per unit, e.g. the
/// per-seed mean reward difference): t = mean / (sd / sqrt(n)), df = n - 1,
/// p = 2 P(T_df > |t|) = I_{df/(df+t^2)}(df/2, 1/2) (regularized incomplete
/// beta, exact in the tails). `None` for fewer than two differences. With
/// sd = 0: p = 1 if the mean is 0, else 0 (printed `< 1e-300`).
pub fn paired_t(diffs: &[f64]) -> Option<TTest> {
    let s = spread(diffs);
    let interval = s.interval?;
    let df = (s.n - 1) as f64;
    let se = s.sd / (s.n as f64).sqrt();
    let (t, p) = if se == 0.0 {
        if s.mean == 0.0 {
            (0.0, 1.0)
        } else {
            (s.mean.signum() * f64::INFINITY, 0.0)
        }
    } else {
        let t = s.mean / se;
        let p = statrs::function::beta::beta_reg(df / 2.0, 0.5, df / (df + t * t));
        (t, p.clamp(0.0, 1.0))
    };
    Some(TTest {
        n: s.n,
        df,
        mean: s.mean,
        sd: s.sd,
        t,
        p,
        interval,
    })
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

/// Benjamini–Hochberg (false discovery rate) adjusted p-values, in the
/// input order: with p sorted ascending, p_adj(i) = min over j >= i of
/// min(1, m p(j) / j).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min((m as f64 * p[i] / (rank + 1) as f64).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// A multiple-comparison adjustment over a family of tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Adjustment {
    /// Holm–Bonferroni: controls the family-wise error rate.
    #[default]
    Holm,
    /// Benjamini–Hochberg: controls the false discovery rate.
    BenjaminiHochberg,
}

impl Adjustment {
    /// Adjusted p-values, in the input order.
    pub fn adjust(self, p: &[f64]) -> Vec<f64> {
        match self {
            Adjustment::Holm => holm(p),
            Adjustment::BenjaminiHochberg => benjamini_hochberg(p),
        }
    }

    /// Short name (`Holm`, `BH`).
    pub fn short(self) -> &'static str {
        match self {
            Adjustment::Holm => "Holm",
            Adjustment::BenjaminiHochberg => "BH",
        }
    }

    /// Full name.
    pub fn name(self) -> &'static str {
        match self {
            Adjustment::Holm => "Holm–Bonferroni (family-wise error rate)",
            Adjustment::BenjaminiHochberg => "Benjamini–Hochberg (false discovery rate)",
        }
    }
}

/// A p-value for people: three decimals, scientific below 0.001, and
/// `< 1e-300` below [`P_FLOOR`] (an exact 0 from underflow included), so
/// no p-value ever prints as `0`. NaN prints `-`.
pub fn format_p(p: f64) -> String {
    if p.is_nan() {
        "-".into()
    } else if p < P_FLOOR {
        "< 1e-300".into()
    } else if p < 0.001 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
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
    fn splitmix64_matches_the_reference_vectors() {
        // Vigna's splitmix64.c: seed 0 starts 0xe220a8397b1dcdaf, ...; seed
        // 1234567 gives the vector rand_xoshiro tests against.
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(g.next_u64(), 0x06c4_5d18_8009_454f);
        let mut g = SplitMix64::new(1_234_567);
        for expected in [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ] {
            assert_eq!(g.next_u64(), expected);
        }
        // index(n) = high half of next * n.
        let mut a = SplitMix64::new(9);
        let mut b = SplitMix64::new(9);
        for n in [1usize, 2, 3, 10, 1000] {
            let expected = ((u128::from(b.next_u64()) * n as u128) >> 64) as usize;
            let i = a.index(n);
            assert_eq!(i, expected);
            assert!(i < n);
        }
    }

    /// The documented algorithm, written out again step by step.
    fn replay(groups: &[Vec<f64>], resamples: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::new();
        for _ in 0..resamples {
            let mut drawn = Vec::new();
            for _ in 0..groups.len() {
                let g = &groups[rng.index(groups.len())];
                for _ in 0..g.len() {
                    drawn.push(g[rng.index(g.len())]);
                }
            }
            out.push(drawn.iter().sum::<f64>() / drawn.len() as f64);
        }
        out.sort_by(f64::total_cmp);
        out
    }

    #[test]
    fn hierarchical_bootstrap_follows_the_documented_algorithm() {
        let groups = vec![
            vec![1.0, 2.0, 0.5, -1.0, 3.0],
            vec![0.0, -2.0, 1.0],
            vec![4.0, 4.5, 3.5, 5.0],
        ];
        let i = hierarchical_bootstrap(&groups, 2000, 7).unwrap();
        let stats = replay(&groups, 2000, 7);
        assert_eq!(i.lo, quantile(&stats, 0.025));
        assert_eq!(i.hi, quantile(&stats, 0.975));
        assert_eq!(i, hierarchical_bootstrap(&groups, 2000, 7).unwrap());
        assert_ne!(i, hierarchical_bootstrap(&groups, 2000, 8).unwrap());
        // Two one-prompt seeds {0}, {1}: the statistic is 0, 1/2 or 1 with
        // probability 1/4, 1/2, 1/4, so the 95% interval is [0, 1].
        let i = hierarchical_bootstrap(&[vec![0.0], vec![1.0]], 10_000, 0).unwrap();
        assert_eq!((i.lo, i.hi), (0.0, 1.0));
        let mean = replay(&[vec![0.0], vec![1.0]], 10_000, 0)
            .iter()
            .sum::<f64>()
            / 10_000.0;
        close(mean, 0.5, 0.02);
        // Empty seeds are skipped; nothing at all has no interval.
        assert_eq!(
            hierarchical_bootstrap(&[vec![], vec![2.0, 2.0]], 100, 0),
            Some(Interval { lo: 2.0, hi: 2.0 })
        );
        assert_eq!(hierarchical_bootstrap(&[vec![], vec![]], 100, 0), None);
    }

    #[test]
    fn seed_level_variation_widens_the_interval() {
        // Three seeds whose prompts agree within a seed but not across
        // seeds: resampling prompts alone (pooled) is far too narrow.
        let groups: Vec<Vec<f64>> = [-1.0, 0.2, 1.4]
            .iter()
            .map(|&c| (0..50).map(|i| c + 0.01 * (i % 5) as f64).collect())
            .collect();
        let pooled: Vec<f64> = groups.iter().flatten().copied().collect();
        let h = hierarchical_bootstrap(&groups, BOOTSTRAP_RESAMPLES, 0).unwrap();
        let p = paired_bootstrap(&pooled, BOOTSTRAP_RESAMPLES, 0);
        assert!(h.hi - h.lo > 5.0 * (p.hi - p.lo), "{h:?} vs {p:?}");
        // With one seed it is the paired bootstrap.
        assert_eq!(
            hierarchical_bootstrap(std::slice::from_ref(&pooled), 500, 3).unwrap(),
            paired_bootstrap(&pooled, 500, 3)
        );
    }

    #[test]
    fn ratio_bootstrap_pools_numerators_and_denominators() {
        // Ranking accuracy: 3 of 4 pairs and 1 of 2 pairs in one seed.
        let groups = vec![vec![(3.0, 4.0), (1.0, 2.0)]];
        let i = hierarchical_bootstrap_ratio(&groups, 4000, 1).unwrap();
        // Possible statistics: 3/4, 4/6, 1/2.
        assert!(i.lo >= 0.5 && i.hi <= 0.75 && i.lo < i.hi, "{i:?}");
        // All-tie prompts (0, 0) never make a statistic.
        assert_eq!(
            hierarchical_bootstrap_ratio(&[vec![(0.0, 0.0); 3]], 100, 0),
            None
        );
        // A mean is the ratio with denominators 1.
        let values = vec![vec![1.0, 4.0, 2.0], vec![0.5]];
        let as_ratio: Vec<Vec<(f64, f64)>> = values
            .iter()
            .map(|g| g.iter().map(|&v| (v, 1.0)).collect())
            .collect();
        assert_eq!(
            hierarchical_bootstrap(&values, 300, 5),
            hierarchical_bootstrap_ratio(&as_ratio, 300, 5)
        );
    }

    #[test]
    fn paired_t_matches_student_sleep_data_and_closed_forms() {
        // Cushny and Peebles' sleep data (Student 1908), as in R's
        // `t.test(extra ~ group, data = sleep, paired = TRUE)`:
        // t = -4.0621, df = 9, p-value = 0.002833,
        // 95% CI -2.4598858 -0.7001142, mean difference -1.58.
        let g1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
        let g2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
        let d: Vec<f64> = g1.iter().zip(g2).map(|(a, b)| a - b).collect();
        let t = paired_t(&d).unwrap();
        close(t.mean, -1.58, 1e-12);
        close(t.t, -4.0621, 5e-5);
        assert_eq!(t.df, 9.0);
        close(t.p, 0.002833, 5e-7);
        close(t.interval.lo, -2.4598858, 5e-7);
        close(t.interval.hi, -0.7001142, 5e-7);
        // df = 1 (two seeds): T is Cauchy, P(|T| > t) = 1 - 2 atan(t) / pi,
        // t_0.975 = tan(0.475 pi).
        let t = paired_t(&[0.3, 0.1]).unwrap();
        close(t.t, 2.0, 1e-12);
        close(t.p, 1.0 - 2.0 * 2f64.atan() / std::f64::consts::PI, 1e-12);
        let half = (0.475 * std::f64::consts::PI).tan() * 0.1;
        close(t.interval.lo, 0.2 - half, 1e-9);
        close(t.interval.hi, 0.2 + half, 1e-9);
        // df = 2: P(|T| > t) = 1 - t / sqrt(2 + t^2),
        // t_0.975 = 0.95 / sqrt(2 * 0.975 * 0.025).
        for d in [[0.3, 0.1, 0.2], [0.5, 0.52, 0.49]] {
            let t = paired_t(&d).unwrap();
            close(t.p, 1.0 - t.t.abs() / (2.0 + t.t * t.t).sqrt(), 1e-12);
            let q = 0.95 / (2.0f64 * 0.975 * 0.025).sqrt();
            close(t.interval.hi - t.mean, q * t.sd / 3f64.sqrt(), 1e-9);
            // The interval excludes 0 exactly when p < 0.05.
            assert_eq!(t.interval.contains(0.0), t.p >= 0.05);
        }
        // Degenerate: too few seeds, or no spread.
        assert!(paired_t(&[1.0]).is_none());
        let t = paired_t(&[0.5, 0.5]).unwrap();
        assert_eq!((t.p, t.interval.lo, t.interval.hi), (0.0, 0.5, 0.5));
        assert_eq!(paired_t(&[0.0, 0.0]).unwrap().p, 1.0);
        // Far tails stay exact instead of rounding 1 - cdf to 0.
        let t = paired_t(&[1.0, 1.0 + 1e-9, 1.0 - 1e-9]).unwrap();
        assert!(t.p > 0.0 && t.p < 1e-15, "{}", t.p);
    }

    #[test]
    fn benjamini_hochberg_by_hand_and_the_1995_example() {
        // Sorted: 0.005, 0.01, 0.03, 0.04 -> m p / rank = 0.02, 0.02, 0.04,
        // 0.04; running minimum from the largest.
        let adj = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
        for (a, e) in adj.iter().zip([0.02, 0.04, 0.04, 0.02]) {
            close(*a, e, 1e-15);
        }
        // Step-up: 0.04 * 3 / 2 = 0.06 > 0.05 * 3 / 3 ... min over j >= i.
        let adj = benjamini_hochberg(&[0.04, 0.045, 0.05]);
        for a in adj {
            close(a, 0.05, 1e-15);
        }
        assert_eq!(benjamini_hochberg(&[0.9]), vec![0.9]);
        assert_eq!(benjamini_hochberg(&[0.6, 0.9]), vec![0.9, 0.9]);
        assert!(benjamini_hochberg(&[]).is_empty());
        // Benjamini and Hochberg (1995), JRSS B 57:289-300, section 4: of
        // these 15 p-values the FDR procedure at q = 0.05 rejects 4, the
        // Bonferroni-type (Holm) procedure 3.
        let p = [
            0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
            0.5719, 0.6528, 0.7590, 1.000,
        ];
        let rejected = |adj: Vec<f64>| adj.iter().filter(|&&a| a <= 0.05).count();
        assert_eq!(rejected(benjamini_hochberg(&p)), 4);
        assert_eq!(rejected(holm(&p)), 3);
        close(benjamini_hochberg(&p)[3], 0.0095 * 15.0 / 4.0, 1e-15);
        assert_eq!(Adjustment::default(), Adjustment::Holm);
        assert_eq!(
            Adjustment::BenjaminiHochberg.adjust(&p),
            benjamini_hochberg(&p)
        );
    }

    #[test]
    fn p_values_never_print_as_zero() {
        assert_eq!(format_p(0.0), "< 1e-300");
        assert_eq!(format_p(1e-320), "< 1e-300");
        assert_eq!(format_p(sign_test(3000, 0)), "< 1e-300");
        assert_eq!(format_p(2e-300), "2.00e-300");
        assert_eq!(format_p(0.00042), "4.20e-4");
        assert_eq!(format_p(0.0123), "0.012");
        assert_eq!(format_p(1.0), "1.000");
        assert_eq!(format_p(f64::NAN), "-");
    }

    #[test]
    fn decided_win_rate_drops_ties_like_the_sign_test() {
        // Tie-dominated: 9 wins, 1 loss, 90 ties. Ties-half: 0.54 with a
        // Wilson interval covering 0.5, contradicting p = 0.021; W/(W+L)
        // = 0.9 with an interval excluding 0.5 agrees with it.
        let t = Tally {
            wins: 9,
            ties: 90,
            losses: 1,
        };
        close(t.sign_test(), 22.0 / 1024.0, 1e-15);
        assert!(t.wilson().contains(0.5));
        close(t.decided_win_rate().unwrap(), 0.9, 1e-15);
        assert!(!t.decided_wilson().contains(0.5));
        assert_eq!(Tally::default().decided_win_rate(), None);
    }

    #[test]
    fn stars_thresholds() {
        assert_eq!(stars(0.0005), "***");
        assert_eq!(stars(0.005), "**");
        assert_eq!(stars(0.02), "*");
        assert_eq!(stars(0.05), "");
    }
}
