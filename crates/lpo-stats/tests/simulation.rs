//! The power estimate and the error rates of the report's tests, checked by
//! seeded simulation (normal per-seed differences, SplitMix64 with
//! Box-Muller). Each check allows 4.5 binomial standard errors, so a correct
//! implementation fails with probability below 1e-5 per check, and the seeds
//! are fixed, so it passes or fails the same way every time.

use lpo_stats::{paired_t, solve_effect, t_test_power, tost_paired, Adjustment, SplitMix64, ALPHA};

const REPS: usize = 20_000;

struct Normal(SplitMix64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn draw(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn sample(&mut self, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        (0..n).map(|_| self.draw(mean, sd)).collect()
    }
}

/// Share of `REPS` draws for which `hit` holds.
fn rate(seed: u64, mut hit: impl FnMut(&mut Normal) -> bool) -> f64 {
    let mut g = Normal(SplitMix64::new(seed));
    (0..REPS).filter(|_| hit(&mut g)).count() as f64 / REPS as f64
}

fn allowance(p: f64) -> f64 {
    4.5 * (p * (1.0 - p) / REPS as f64).sqrt()
}

#[test]
fn the_power_estimate_matches_simulated_rejection_rates() {
    for (i, (d, n, alpha)) in [
        (1.2, 5usize, 0.05),
        (0.8, 10, 0.05 / 3.0),
        (2.0, 3, 0.05),
        (0.5, 20, 0.01),
    ]
    .into_iter()
    .enumerate()
    {
        let expected = t_test_power(d, n as f64, alpha);
        let seen = rate(i as u64, |g| {
            paired_t(&g.sample(n, d, 1.0)).unwrap().p < alpha
        });
        assert!(
            (seen - expected).abs() <= allowance(expected),
            "d {d}, n {n}, alpha {alpha}: simulated {seen}, computed {expected}"
        );
    }
}

#[test]
fn the_smallest_detectable_difference_is_detected_80_percent_of_the_time() {
    for (i, (n, alpha)) in [(3usize, 0.05), (10, 0.05 / 3.0), (4, 0.05 / 42.0)]
        .into_iter()
        .enumerate()
    {
        let sd = 0.37;
        let detectable = sd * solve_effect(n as f64, alpha, 0.8).unwrap();
        let seen = rate(100 + i as u64, |g| {
            paired_t(&g.sample(n, detectable, sd)).unwrap().p < alpha
        });
        assert!(
            (seen - 0.8).abs() <= allowance(0.8),
            "n {n}, alpha {alpha}: {seen}"
        );
    }
}

#[test]
fn tost_holds_its_level_under_the_null() {
    // At the boundary of the null (|mean| = D) with a margin that is wide
    // against the noise, the other one-sided test always rejects, so TOST
    // rejects at the rate of one one-sided t-test: 0.05.
    for (i, (n, margin, mean)) in [(5usize, 3.0, 3.0), (3, 4.0, -4.0), (10, 2.0, 2.0)]
        .into_iter()
        .enumerate()
    {
        let seen = rate(200 + i as u64, |g| {
            let d = g.sample(n, mean, 1.0);
            tost_paired(&d, -margin, margin).unwrap().equivalent()
        });
        assert!(
            (seen - 0.05).abs() <= allowance(0.05),
            "n {n}, margin {margin}: {seen}"
        );
    }
    // A narrow margin or a mean beyond it: at most 0.05 (conservative).
    for (i, (n, margin, mean)) in [(3usize, 0.5, 0.5), (5, 1.0, 1.5), (10, 0.3, -0.3)]
        .into_iter()
        .enumerate()
    {
        let seen = rate(300 + i as u64, |g| {
            let d = g.sample(n, mean, 1.0);
            tost_paired(&d, -margin, margin).unwrap().equivalent()
        });
        assert!(
            seen <= 0.05 + allowance(0.05),
            "n {n}, margin {margin}: {seen}"
        );
    }
}

#[test]
fn tost_shows_equivalence_when_it_holds() {
    // mean 0, sd 0.05, 5 seeds, margin 0.15: shown nearly always.
    let seen = rate(400, |g| {
        tost_paired(&g.sample(5, 0.0, 0.05), -0.15, 0.15)
            .unwrap()
            .equivalent()
    });
    assert!(seen > 0.95, "{seen}");
}

/// One simulated family: m paired t-tests on `seeds` seeds, the first
/// `false_nulls` with a real difference. Returns (any true null rejected,
/// every interval agreeing with its adjusted test).
fn family(g: &mut Normal, adjustment: Adjustment, m: usize, false_nulls: usize) -> (bool, bool) {
    let tests: Vec<_> = (0..m)
        .map(|i| {
            let mean = if i < false_nulls { 2.0 } else { 0.0 };
            paired_t(&g.sample(3, mean, 1.0)).unwrap()
        })
        .collect();
    let p: Vec<f64> = tests.iter().map(|t| t.p).collect();
    let adjusted = adjustment.adjust(&p);
    let levels = adjustment.interval_alphas(&p, ALPHA);
    let agree = tests
        .iter()
        .zip(&adjusted)
        .zip(&levels)
        .all(|((t, q), g)| t.interval_at(*g).contains(0.0) == (*q >= ALPHA));
    let false_rejection = (false_nulls..m).any(|i| adjusted[i] < ALPHA);
    (false_rejection, agree)
}

#[test]
fn adjusted_intervals_agree_with_their_tests_and_holm_holds_the_familywise_rate() {
    for (i, (m, false_nulls)) in [(6usize, 0usize), (3, 0), (8, 3)].into_iter().enumerate() {
        let mut all_agree = true;
        let seen = rate(500 + i as u64, |g| {
            let (false_rejection, agree) = family(g, Adjustment::Holm, m, false_nulls);
            all_agree &= agree;
            false_rejection
        });
        assert!(
            all_agree,
            "an interval disagreed with its Holm test (m {m})"
        );
        assert!(seen <= ALPHA + allowance(ALPHA), "m {m}: familywise {seen}");
    }
    // Benjamini-Hochberg under the complete null: the FDR is the
    // familywise rate, at most alpha.
    let mut all_agree = true;
    let seen = rate(600, |g| {
        let (false_rejection, agree) = family(g, Adjustment::BenjaminiHochberg, 5, 0);
        all_agree &= agree;
        false_rejection
    });
    assert!(all_agree, "an interval disagreed with its BH test");
    assert!(seen <= ALPHA + allowance(ALPHA), "BH familywise {seen}");
}

#[test]
fn the_unadjusted_t_test_holds_its_level() {
    for (i, n) in [2usize, 3, 5, 10].into_iter().enumerate() {
        let seen = rate(700 + i as u64, |g| {
            let t = paired_t(&g.sample(n, 0.0, 1.0)).unwrap();
            // Its 95% interval excludes 0 exactly when p < 0.05.
            assert_eq!(t.interval_at(ALPHA).contains(0.0), t.p >= ALPHA);
            t.p < ALPHA
        });
        assert!((seen - ALPHA).abs() <= allowance(ALPHA), "n {n}: {seen}");
    }
}
