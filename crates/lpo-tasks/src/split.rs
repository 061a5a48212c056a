//! Which part of the data a prompt belongs to: the one place that splits
//! prompts and records into training, validation and test.
//!
//! A prompt's part is a function of its text alone (a SHA-256 position in
//! `[0, 1)`), never of a seed, a count or the order of drawing. So a test
//! prompt is a test prompt in every run of every recipe: no SFT
//! demonstration, reward list or on-policy round ever shows it, and raising
//! `eval.prompts` or `data.train_prompts` or changing seeds moves no prompt
//! from one part to another. Duplicated prompts share their part.
//!
//! - Built-in tasks: a fixed partition of each task's prompt space,
//!   [`TASK_HELDOUT_SHARE`] held out (half validation, half test), the rest
//!   training; the counts of each part are [`crate::Task::part_prompts`].
//! - Files: a record is held out when its position is at least
//!   `1 - data.eval_fraction` (all of a file's `eval_split`), and a held-out
//!   record is validation when a second, independent position is below
//!   `eval.validation_fraction`.

use sha2::{Digest, Sha256};

use crate::{Example, Task};

/// Share of a built-in task's prompt space held out from every training
/// stage; half of it is validation, half test.
pub const TASK_HELDOUT_SHARE: f64 = 0.3;

/// Share of a built-in task's held-out prompts that are validation prompts.
pub const TASK_VALIDATION_SHARE: f64 = 0.5;

/// Where a prompt or record belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Seen by training: SFT demonstrations, reward lists, rounds.
    Train,
    /// Held out, for choosing configurations.
    Validation,
    /// Held out, for reporting.
    Test,
}

/// Hash domains: the held-out draw and the validation draw are independent.
const HELDOUT_DOMAIN: &[u8] = b"lpo-split-v1/heldout\0";
const VALIDATION_DOMAIN: &[u8] = b"lpo-split-v1/validation\0";

/// A position in `[0, 1)`: the first 8 bytes of SHA-256(`domain` || `text`)
/// as a big-endian integer over 2^64.
fn position(domain: &[u8], text: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(domain)
        .chain_update(text.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits, so the quotient is exact and below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the prompt or record `text` is held out at `share` (in `[0, 1]`):
/// nested, so what `share` holds out `share' > share` holds out too.
pub fn is_heldout(text: &str, share: f64) -> bool {
    position(HELDOUT_DOMAIN, text) >= 1.0 - share
}

/// Whether the held-out `text` is a validation item at `share`.
pub fn is_validation(text: &str, share: f64) -> bool {
    position(VALIDATION_DOMAIN, text) < share
}

/// The part of `text` with `heldout` of all items held out and `validation`
/// of those used for validation.
pub fn part_of(text: &str, heldout: f64, validation: f64) -> Part {
    if !is_heldout(text, heldout) {
        Part::Train
    } else if is_validation(text, validation) {
        Part::Validation
    } else {
        Part::Test
    }
}

impl Task {
    /// The part of the task's prompt space `prompt` belongs to.
    pub fn part(self, prompt: &str) -> Part {
        part_of(prompt, TASK_HELDOUT_SHARE, TASK_VALIDATION_SHARE)
    }

    /// Draws a prompt of `part`: [`Task::generate`]'s distribution restricted
    /// to the part (draws of other parts are discarded).
    pub fn generate_in(self, part: Part, rng: &mut impl rand::Rng) -> Example {
        loop {
            let example = self.generate(rng);
            if self.part(&example.prompt) == part {
                return example;
            }
        }
    }

    /// How many distinct prompts of `part` [`Task::generate_in`] can draw
    /// (they sum to [`Task::distinct_prompts`]). Checked against an
    /// enumeration in the tests.
    pub fn part_prompts(self, part: Part) -> usize {
        let [train, validation, test] = match self {
            Task::Arith => [10_214, 2_341, 2_196],
            Task::Program => [79_299, 16_964, 16_777],
            Task::Rating => [209_627, 45_027, 44_834],
        };
        match part {
            Part::Train => train,
            Part::Validation => validation,
            Part::Test => test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_stable_and_spread() {
        // Written down, not recomputed: a change moves every prompt's part.
        // (Python: int.from_bytes(sha256(domain + text)[:8], "big") >> 11 / 2**53.)
        assert_eq!(position(HELDOUT_DOMAIN, "12+34="), 0.17741212608680856);
        let n = 20_000;
        let mean = (0..n)
            .map(|i| position(HELDOUT_DOMAIN, &i.to_string()))
            .sum::<f64>()
            / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn held_out_shares_nest_and_the_domains_are_independent() {
        let texts: Vec<String> = (0..5000).map(|i| format!("p{i}")).collect();
        for t in &texts {
            assert!(!is_heldout(t, 0.0));
            assert!(is_heldout(t, 1.0));
            if is_heldout(t, 0.1) {
                assert!(is_heldout(t, 0.2), "{t}");
            }
        }
        let held: Vec<&String> = texts.iter().filter(|t| is_heldout(t, 0.5)).collect();
        let validation = held.iter().filter(|t| is_validation(t, 0.5)).count();
        let share = validation as f64 / held.len() as f64;
        assert!((share - 0.5).abs() < 0.04, "{share}");
    }
}
