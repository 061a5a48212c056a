//! Coefficient schedules: beta, alpha and gamma as functions of the optimizer step.
//!
//! Definitions follow docs/losses.md ("Coefficient schedules"). Evaluation is
//! pure Rust so the planner, the trainer and `lpo loss` share one code path.

use serde::{Deserialize, Serialize};

/// A coefficient: a plain number (constant) or a schedule over training steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Coef {
    /// A constant value.
    Value(f64),
    /// A value that changes with the optimizer step.
    Schedule(Schedule),
}

/// A schedule evaluated at optimizer step `t` of `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// `value` at every step.
    Constant {
        /// The value.
        value: f64,
    },
    /// Straight line from `from` (t = 0) to `to` (t = T).
    Linear {
        /// Value at step 0.
        from: f64,
        /// Value at step T.
        to: f64,
    },
    /// Half-cosine from `from` (t = 0) to `to` (t = T).
    Cosine {
        /// Value at step 0.
        from: f64,
        /// Value at step T.
        to: f64,
    },
    /// Piecewise constant: `values[0]` before `at[0]`, `values[i]` from `at[i-1]` on.
    Step {
        /// One more value than boundaries.
        values: Vec<f64>,
        /// Increasing step boundaries.
        at: Vec<u64>,
    },
    /// Linear from 0 to `to` over `steps` steps, then `to`.
    Warmup {
        /// Length of the ramp in steps.
        steps: u64,
        /// Value after the ramp.
        to: f64,
    },
}

impl Coef {
    /// The value at optimizer step `step` of `total` steps.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        match self {
            Coef::Value(v) => *v,
            Coef::Schedule(s) => s.at(step, total),
        }
    }

    /// Every value the coefficient can take (endpoints and pieces), for range checks.
    pub fn extremes(&self) -> Vec<f64> {
        match self {
            Coef::Value(v) => vec![*v],
            Coef::Schedule(Schedule::Constant { value }) => vec![*value],
            Coef::Schedule(Schedule::Linear { from, to } | Schedule::Cosine { from, to }) => {
                vec![*from, *to]
            }
            Coef::Schedule(Schedule::Step { values, .. }) => values.clone(),
            Coef::Schedule(Schedule::Warmup { to, .. }) => vec![*to],
        }
    }

    /// Structural problems (step lengths, ordering), as messages.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Coef::Schedule(Schedule::Step { values, at }) = self {
            if values.len() != at.len() + 1 {
                problems.push(format!(
                    "a step schedule needs one more value than boundaries (values has {}, at has {})",
                    values.len(),
                    at.len()
                ));
            }
            if at.windows(2).any(|w| w[0] >= w[1]) {
                problems.push("step boundaries `at` must increase strictly".into());
            }
        }
        if self.extremes().iter().any(|v| !v.is_finite()) {
            problems.push("schedule values must be finite".into());
        }
        problems
    }
}

impl Schedule {
    /// The value at optimizer step `step` of `total` steps (`step` is clamped to `total`).
    pub fn at(&self, step: u64, total: u64) -> f64 {
        let fraction = if total == 0 {
            1.0
        } else {
            step.min(total) as f64 / total as f64
        };
        match self {
            Schedule::Constant { value } => *value,
            Schedule::Linear { from, to } => from + (to - from) * fraction,
            Schedule::Cosine { from, to } => {
                to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * fraction).cos())
            }
            Schedule::Step { values, at } => {
                let piece = at.iter().take_while(|&&boundary| step >= boundary).count();
                values[piece.min(values.len() - 1)]
            }
            Schedule::Warmup { steps, to } => {
                if *steps == 0 || step >= *steps {
                    *to
                } else {
                    to * step as f64 / *steps as f64
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_is_constant() {
        let c = Coef::Value(0.1);
        assert_eq!(c.at(0, 100), 0.1);
        assert_eq!(c.at(100, 100), 0.1);
        let s = Schedule::Constant { value: 2.0 };
        assert_eq!(s.at(57, 100), 2.0);
    }

    #[test]
    fn linear_endpoints_and_midpoint() {
        let s = Schedule::Linear { from: 1.0, to: 3.0 };
        assert!(close(s.at(0, 10), 1.0));
        assert!(close(s.at(5, 10), 2.0));
        assert!(close(s.at(10, 10), 3.0));
        assert!(close(s.at(20, 10), 3.0), "past T it stays at `to`");
    }

    #[test]
    fn cosine_endpoints_and_midpoint() {
        let s = Schedule::Cosine { from: 1.0, to: 0.0 };
        assert!(close(s.at(0, 8), 1.0));
        assert!(close(s.at(4, 8), 0.5));
        assert!(close(s.at(8, 8), 0.0));
        // A quarter of the way: 0.5 * (1 + cos(pi/4)).
        assert!(close(
            s.at(2, 8),
            0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2)
        ));
    }

    #[test]
    fn step_switches_at_boundaries() {
        let s = Schedule::Step {
            values: vec![1.0, 0.5, 0.1],
            at: vec![10, 20],
        };
        assert_eq!(s.at(0, 30), 1.0);
        assert_eq!(s.at(9, 30), 1.0);
        assert_eq!(s.at(10, 30), 0.5);
        assert_eq!(s.at(19, 30), 0.5);
        assert_eq!(s.at(20, 30), 0.1);
        assert_eq!(s.at(30, 30), 0.1);
    }

    #[test]
    fn warmup_ramps_then_holds() {
        let s = Schedule::Warmup { steps: 4, to: 2.0 };
        assert_eq!(s.at(0, 100), 0.0);
        assert_eq!(s.at(2, 100), 1.0);
        assert_eq!(s.at(4, 100), 2.0);
        assert_eq!(s.at(99, 100), 2.0);
        assert_eq!(Schedule::Warmup { steps: 0, to: 2.0 }.at(0, 10), 2.0);
    }

    #[test]
    fn step_schedule_shape_is_checked() {
        let bad = Coef::Schedule(Schedule::Step {
            values: vec![1.0],
            at: vec![3, 2],
        });
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn parses_number_or_table() {
        #[derive(Deserialize)]
        struct Holder {
            beta: Coef,
            alpha: Coef,
        }
        let h: Holder =
            toml::from_str("beta = 0.1\nalpha = { kind = \"linear\", from = 1.0, to = 0.5 }")
                .unwrap();
        assert_eq!(h.beta, Coef::Value(0.1));
        assert_eq!(
            h.alpha,
            Coef::Schedule(Schedule::Linear { from: 1.0, to: 0.5 })
        );
    }
}
