//! What a row's test lets a reader say: the interval that agrees with the p
//! the row shows, equivalence (TOST) and power, all on the per-seed mean
//! differences the t-test runs on.
//!
//! With two or more seeds the printed Δ interval is the t interval of the
//! mean per-seed difference (df = seeds - 1) at confidence 1 - g, where g
//! is 0.05 for a test shown unadjusted and, in the adjusted family, the
//! level [`lpo_stats::Adjustment::interval_alphas`] gives: it excludes 0
//! exactly when the p shown is below 0.05. With one seed the test is the
//! sign test and the interval that agrees with it is the win rate's
//! (Wilson, at the same level).

use lpo_stats::{paired_t, power, tost_paired, Interval, PowerSummary, Tost, ALPHA};

/// A row's reading (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The test is outside the declared family: its p is shown unadjusted,
    /// without stars.
    pub exploratory: bool,
    /// g: the printed interval's confidence is 1 - g.
    pub ci_alpha: f64,
    /// The t interval of the mean per-seed difference at 1 - g; `None`
    /// with one seed.
    pub ci: Option<Interval>,
    /// Paired TOST across seeds against ±margin, when a margin is set.
    pub tost: Option<Tost>,
    /// Power at `power_alpha`, from the spread of the per-seed differences.
    pub power: Option<PowerSummary>,
}

/// What the family assigns to one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Outside the declared family.
    pub exploratory: bool,
    /// The p shown: adjusted in the family, raw outside it.
    pub p_shown: f64,
    /// g of the printed interval.
    pub ci_alpha: f64,
    /// Level of the power analysis (alpha / m in the family).
    pub power_alpha: f64,
}

/// Equivalence margin and the effect asked about.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Questions {
    /// TOST margin D (|Δ| < D).
    pub margin: Option<f64>,
    /// The difference whose seeds `--effect` asks for.
    pub effect: Option<f64>,
}

impl Inference {
    /// Before any adjustment: the 95% interval.
    pub fn unadjusted(seed_diffs: &[f64]) -> Inference {
        Inference::of(
            seed_diffs,
            Verdict {
                exploratory: false,
                p_shown: f64::NAN,
                ci_alpha: ALPHA,
                power_alpha: ALPHA,
            },
            Questions::default(),
        )
    }

    /// The reading of per-seed differences under `verdict`.
    pub fn of(seed_diffs: &[f64], verdict: Verdict, questions: Questions) -> Inference {
        Inference {
            exploratory: verdict.exploratory,
            ci_alpha: verdict.ci_alpha,
            ci: paired_t(seed_diffs).map(|t| t.interval_at(verdict.ci_alpha)),
            tost: questions
                .margin
                .and_then(|d| tost_paired(seed_diffs, -d, d)),
            power: power::summarize(seed_diffs, verdict.power_alpha, questions.effect),
        }
    }

    /// The printed interval's confidence, e.g. `0.95`.
    pub fn level(&self) -> f64 {
        1.0 - self.ci_alpha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_excludes_zero_exactly_when_the_p_shown_rejects() {
        for diffs in [[0.1, 0.3, 0.2], [0.05, -0.1, 0.2], [0.4, 0.41, 0.39]] {
            let t = paired_t(&diffs).unwrap();
            for g in [0.05, 0.05 / 3.0, 0.05 / 42.0] {
                let i = Inference::of(
                    &diffs,
                    Verdict {
                        exploratory: false,
                        p_shown: f64::NAN,
                        ci_alpha: g,
                        power_alpha: g,
                    },
                    Questions::default(),
                );
                assert_eq!(i.ci.unwrap().contains(0.0), t.p >= g, "{diffs:?} {g}");
            }
        }
        let one = Inference::unadjusted(&[]);
        assert_eq!((one.ci, one.tost, one.power), (None, None, None));
    }
}
