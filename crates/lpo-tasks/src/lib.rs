//! Built-in tasks whose rewards are explicit and computable.
//!
//! Each task has a seeded prompt generator, a reference solution, and a reward
//! on a 0–10 scale like the ratings of reward datasets:
//!
//! - `arith` (math): multi-digit addition and subtraction with carries and
//!   borrows; partial credit for each correct digit (right-aligned).
//! - `program` (code): given input→output examples, write a program in a tiny
//!   stack language ([`stack`]); it runs on hidden cases and the reward is the
//!   share it passes.
//! - `rating` (noisy rater): reverse a word; the true quality is the share of
//!   correct positions, and the recorded score adds seeded annotator noise and
//!   rounds to an integer rating, so ties and mislabelled orderings occur.
//!
//! Every character a task produces is in [`ALPHABET`], which the character
//! tokenizer covers.

pub mod split;
pub mod stack;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use split::Part;

/// Every character the built-in tasks use in prompts and answers.
pub const ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyz +-*/=<>,;:|[]()?!.";

/// Highest reward.
pub const MAX_REWARD: f64 = 10.0;

/// Standard deviation of the `rating` task's annotator noise, in rating points.
pub const RATER_NOISE: f64 = 1.5;

/// A built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Multi-digit arithmetic.
    Arith,
    /// Stack-language programs from examples.
    Program,
    /// Word reversal scored by a noisy rater.
    Rating,
}

/// One prompt of a task with what is needed to score answers to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The task.
    pub task: Task,
    /// Text the model is conditioned on.
    pub prompt: String,
    /// A response scoring [`MAX_REWARD`].
    pub solution: String,
    /// `program` only: hidden (input, output) cases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<(i64, i64)>,
}

impl Task {
    /// All built-in tasks.
    pub const ALL: [Task; 3] = [Task::Arith, Task::Program, Task::Rating];

    /// The task a recipe names.
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The name recipes use.
    pub fn name(self) -> &'static str {
        match self {
            Task::Arith => "arith",
            Task::Program => "program",
            Task::Rating => "rating",
        }
    }

    /// How many different prompts [`Task::generate`] can draw: the most
    /// distinct prompts a run can ask of the task (training, held-out and
    /// evaluation prompts are kept apart). Checked against an enumeration
    /// in the tests.
    pub fn distinct_prompts(self) -> usize {
        match self {
            // a and b in 1..=99: every a+b, and hi-lo for every hi >= lo.
            Task::Arith => 99 * 99 + 99 * 100 / 2,
            // 171 programs, 3 ordered example inputs of 10; programs that
            // agree on the shown inputs give the same prompt.
            Task::Program => PROGRAM_PROMPTS,
            // Words of 3 to 6 letters from 8, not all one letter.
            Task::Rating => (3..=6).map(|len| 8usize.pow(len) - 8).sum(),
        }
    }

    /// The longest prompt [`Task::generate`] can draw, in characters (one
    /// token each under the character tokenizer). Checked against an
    /// enumeration in the tests.
    pub fn longest_prompt(self) -> usize {
        match self {
            Task::Arith => "99+99=".len(),
            // Three examples such as "9>162", separated and closed.
            Task::Program => PROGRAM_LONGEST_PROMPT,
            Task::Rating => "abcdef<".len(),
        }
    }

    /// Whether "accuracy" (share of responses with the full reward) is meaningful.
    pub fn has_accuracy(self) -> bool {
        matches!(self, Task::Arith | Task::Program)
    }

    /// Draws a prompt.
    pub fn generate(self, rng: &mut impl Rng) -> Example {
        match self {
            Task::Arith => arith_example(rng),
            Task::Program => program_example(rng),
            Task::Rating => rating_example(rng),
        }
    }

    /// The true quality of `response`, in `[0, 10]`.
    pub fn reward(self, example: &Example, response: &str) -> f64 {
        let response = response.trim();
        match self {
            Task::Arith => digit_credit(&example.solution, response),
            Task::Program => program_reward(&example.hidden, response),
            Task::Rating => position_credit(&example.solution, response),
        }
    }

    /// The score a dataset records for `response`: the reward, plus (for
    /// `rating`) annotator noise from `rng`, rounded to an integer rating.
    pub fn annotate(self, example: &Example, response: &str, rng: &mut impl Rng) -> f64 {
        let quality = self.reward(example, response);
        match self {
            Task::Rating => {
                let noisy = quality + RATER_NOISE * standard_normal(rng);
                noisy.round().clamp(0.0, MAX_REWARD)
            }
            _ => quality,
        }
    }

    /// A plausible but wrong demonstration (for references trained with errors).
    pub fn corrupt(self, example: &Example, rng: &mut impl Rng) -> String {
        match self {
            Task::Arith => {
                let mut digits: Vec<char> = example.solution.chars().collect();
                let positions: Vec<usize> = (0..digits.len())
                    .filter(|&i| digits[i].is_ascii_digit())
                    .collect();
                let i = positions[rng.random_range(0..positions.len())];
                let old = digits[i] as u8 - b'0';
                let new = (old + rng.random_range(1..10)) % 10;
                digits[i] = char::from(b'0' + new);
                digits.into_iter().collect()
            }
            Task::Program => loop {
                let other = program_example(rng).solution;
                if program_reward(&example.hidden, &other) < MAX_REWARD {
                    return other;
                }
            },
            Task::Rating => {
                let mut chars: Vec<char> = example.solution.chars().collect();
                let i = rng.random_range(0..chars.len());
                let mut j = rng.random_range(0..chars.len());
                while chars[j] == chars[i] {
                    // Words have at least two distinct letters, so this ends.
                    j = rng.random_range(0..chars.len());
                }
                chars.swap(i, j);
                chars.into_iter().collect()
            }
        }
    }
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn arith_example(rng: &mut impl Rng) -> Example {
    let digits_a = rng.random_range(1..=2);
    let digits_b = rng.random_range(1..=2);
    let a: i64 = rng.random_range(10i64.pow(digits_a - 1)..10i64.pow(digits_a));
    let b: i64 = rng.random_range(10i64.pow(digits_b - 1)..10i64.pow(digits_b));
    let (prompt, value) = if rng.random_bool(0.5) {
        (format!("{a}+{b}="), a + b)
    } else {
        let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
        (format!("{hi}-{lo}="), hi - lo)
    };
    Example {
        task: Task::Arith,
        prompt,
        solution: value.to_string(),
        hidden: Vec::new(),
    }
}

/// Credit per correct digit, aligned from the right; only the exact answer scores 10.
fn digit_credit(answer: &str, response: &str) -> f64 {
    if response == answer {
        return MAX_REWARD;
    }
    if response.is_empty() || !response.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return 0.0;
    }
    let matches = answer
        .chars()
        .rev()
        .zip(response.chars().rev())
        .filter(|(a, r)| a == r)
        .count();
    let longest = answer.chars().count().max(response.chars().count());
    // Scaled below 10 so a partially right answer never ties the exact one.
    0.9 * MAX_REWARD * matches as f64 / longest as f64
}

/// Distinct `program` prompts (counted by enumeration in the tests).
const PROGRAM_PROMPTS: usize = 113_040;
/// Longest `program` prompt (found by enumeration in the tests).
const PROGRAM_LONGEST_PROMPT: usize = 18;

/// Inputs a program task draws its examples and hidden cases from.
const PROGRAM_INPUTS: std::ops::Range<i64> = 0..10;
/// Examples shown in a program prompt.
const PROGRAM_SHOWN: usize = 3;
/// Hidden cases a program is scored on.
const PROGRAM_HIDDEN: usize = 5;

fn program_example(rng: &mut impl Rng) -> Example {
    let solution = match rng.random_range(0..4) {
        0 => format!("{}*{}+", rng.random_range(2..10), rng.random_range(0..10)),
        1 => format!("{}+{}*", rng.random_range(1..10), rng.random_range(2..10)),
        2 => format!("d*{}+", rng.random_range(0..10)),
        _ => format!("{}-d*", rng.random_range(1..10)),
    };
    let mut inputs: Vec<i64> = PROGRAM_INPUTS.collect();
    for i in (1..inputs.len()).rev() {
        inputs.swap(i, rng.random_range(0..=i));
    }
    let case = |x: i64| {
        let y = stack::run(&solution, x, stack::DEFAULT_STEP_LIMIT).expect("reference runs");
        (x, y)
    };
    let shown: Vec<String> = inputs[..PROGRAM_SHOWN]
        .iter()
        .map(|&x| {
            let (x, y) = case(x);
            format!("{x}>{y}")
        })
        .collect();
    let hidden = inputs[PROGRAM_SHOWN..PROGRAM_SHOWN + PROGRAM_HIDDEN]
        .iter()
        .map(|&x| case(x))
        .collect();
    Example {
        task: Task::Program,
        prompt: format!("{}:", shown.join(",")),
        solution,
        hidden,
    }
}

/// Share of hidden cases the program passes, times 10. Runaway or malformed
/// programs fail the case.
fn program_reward(hidden: &[(i64, i64)], program: &str) -> f64 {
    if hidden.is_empty() {
        return 0.0;
    }
    let passed = hidden
        .iter()
        .filter(|&&(x, y)| stack::run(program, x, stack::DEFAULT_STEP_LIMIT) == Ok(y))
        .count();
    MAX_REWARD * passed as f64 / hidden.len() as f64
}

fn rating_example(rng: &mut impl Rng) -> Example {
    let len = rng.random_range(3..=6);
    let word: String = loop {
        let w: String = (0..len)
            .map(|_| char::from(b'a' + rng.random_range(0..8u8)))
            .collect();
        let first = w.chars().next();
        if w.chars().any(|c| Some(c) != first) {
            break w;
        }
    };
    Example {
        task: Task::Rating,
        prompt: format!("{word}<"),
        solution: word.chars().rev().collect(),
        hidden: Vec::new(),
    }
}

/// Share of positions holding the right character, over the longer length, times 10.
fn position_credit(answer: &str, response: &str) -> f64 {
    let matches = answer
        .chars()
        .zip(response.chars())
        .filter(|(a, r)| a == r)
        .count();
    let longest = answer.chars().count().max(response.chars().count());
    if longest == 0 {
        return 0.0;
    }
    MAX_REWARD * matches as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn examples(task: Task, n: usize) -> Vec<Example> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n).map(|_| task.generate(&mut rng)).collect()
    }

    #[test]
    fn reference_solutions_score_ten_and_corruptions_less() {
        let mut rng = StdRng::seed_from_u64(1);
        for task in Task::ALL {
            for ex in examples(task, 300) {
                assert_eq!(task.reward(&ex, &ex.solution), MAX_REWARD, "{ex:?}");
                let wrong = task.corrupt(&ex, &mut rng);
                let r = task.reward(&ex, &wrong);
                assert!(r < MAX_REWARD, "{task:?}: {wrong:?} scored {r} on {ex:?}");
                assert!(r >= 0.0);
            }
        }
    }

    #[test]
    fn generation_is_pinned_per_seed() {
        // The first examples of seed 7, written down: a change to any
        // generator (or to rand's stream) changes every cached dataset and
        // must be deliberate.
        let first = |task| -> Vec<(String, String)> {
            examples(task, 3)
                .into_iter()
                .map(|e| (e.prompt, e.solution))
                .collect()
        };
        let pairs = |v: [(&str, &str); 3]| -> Vec<(String, String)> {
            v.iter()
                .map(|(p, s)| (p.to_string(), s.to_string()))
                .collect()
        };
        assert_eq!(
            first(Task::Arith),
            pairs([("3-2=", "1"), ("95+2=", "97"), ("7+6=", "13")])
        );
        assert_eq!(
            first(Task::Program),
            pairs([
                ("8>27,6>21,2>9:", "1+3*"),
                ("4>17,6>37,1>2:", "d*1+"),
                ("0>0,8>16,7>14:", "2*0+")
            ])
        );
        assert_eq!(
            first(Task::Rating),
            pairs([("abca<", "acba"), ("fee<", "eef"), ("fheb<", "behf")])
        );
        // Each pinned program is right on its examples (an independent check
        // of the interpreter and the generator together).
        assert_eq!(stack::run("1+3*", 8, 512), Ok(27));
        assert_eq!(stack::run("d*1+", 6, 512), Ok(37));
    }

    #[test]
    fn arith_gives_partial_credit_by_digit() {
        let ex = Example {
            task: Task::Arith,
            prompt: "47+385=".into(),
            solution: "432".into(),
            hidden: vec![],
        };
        assert_eq!(Task::Arith.reward(&ex, "432"), 10.0);
        assert_eq!(Task::Arith.reward(&ex, " 432 "), 10.0);
        assert!((Task::Arith.reward(&ex, "431") - 6.0).abs() < 1e-12); // 0.9 * 10 * 2/3
        assert!((Task::Arith.reward(&ex, "32") - 6.0).abs() < 1e-12);
        assert_eq!(Task::Arith.reward(&ex, "abc"), 0.0);
        assert_eq!(Task::Arith.reward(&ex, ""), 0.0);
        assert!(Task::Arith.reward(&ex, "1432") < Task::Arith.reward(&ex, "432"));
    }

    #[test]
    fn program_reward_is_share_of_hidden_cases() {
        let ex = Example {
            task: Task::Program,
            prompt: "1>5,2>7,3>9:".into(),
            solution: "2*3+".into(),
            hidden: vec![(0, 3), (4, 11), (5, 13), (6, 15)],
        };
        assert_eq!(Task::Program.reward(&ex, "2*3+"), 10.0);
        assert_eq!(Task::Program.reward(&ex, "d+3+"), 10.0); // same function
        assert_eq!(Task::Program.reward(&ex, "3+"), 2.5); // x+3 passes only x=0
        assert_eq!(Task::Program.reward(&ex, "1[1+]"), 0.0); // runaway
        assert_eq!(Task::Program.reward(&ex, "+"), 0.0); // underflow
    }

    #[test]
    fn program_prompts_show_examples_consistent_with_the_solution() {
        for ex in examples(Task::Program, 100) {
            let body = ex.prompt.strip_suffix(':').unwrap();
            for pair in body.split(',') {
                let (x, y) = pair.split_once('>').unwrap();
                let got = stack::run(&ex.solution, x.parse().unwrap(), 100).unwrap();
                assert_eq!(got.to_string(), y);
            }
            assert_eq!(ex.hidden.len(), PROGRAM_HIDDEN);
        }
    }

    #[test]
    fn rater_noise_is_seeded_integer_and_centered() {
        let ex = examples(Task::Rating, 1).remove(0);
        let wrong = Task::Rating.corrupt(&ex, &mut StdRng::seed_from_u64(3));
        let quality = Task::Rating.reward(&ex, &wrong);
        let scores = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..4000)
                .map(|_| Task::Rating.annotate(&ex, &wrong, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = scores(5);
        assert_eq!(a, scores(5));
        assert!(a
            .iter()
            .all(|s| s.fract() == 0.0 && (0.0..=10.0).contains(s)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        // Rounding and clamping bias the mean a little; noise sd is 1.5.
        assert!(
            (mean - quality).abs() < 0.3,
            "mean {mean} vs quality {quality}"
        );
        assert!(a.iter().any(|&s| s != a[0]), "noise must vary the score");
    }

    #[test]
    fn every_task_character_is_in_the_alphabet() {
        let mut rng = StdRng::seed_from_u64(9);
        for task in Task::ALL {
            for ex in examples(task, 200) {
                let wrong = task.corrupt(&ex, &mut rng);
                for c in ex
                    .prompt
                    .chars()
                    .chain(ex.solution.chars())
                    .chain(wrong.chars())
                {
                    assert!(ALPHABET.contains(c), "{c:?} from {task:?}");
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for task in Task::ALL {
            assert_eq!(Task::from_name(task.name()), Some(task));
        }
        assert_eq!(Task::from_name("chess"), None);
    }

    /// Every prompt each task can draw, listed independently of `generate`.
    fn enumerate_prompts(task: Task) -> HashSet<String> {
        let mut out = HashSet::new();
        match task {
            Task::Arith => {
                for a in 1..=99 {
                    for b in 1..=99 {
                        out.insert(format!("{a}+{b}="));
                        if a >= b {
                            out.insert(format!("{a}-{b}="));
                        }
                    }
                }
            }
            Task::Program => {
                let mut programs = Vec::new();
                for a in 0..10 {
                    for b in 0..10 {
                        if a >= 2 {
                            programs.push(format!("{a}*{b}+"));
                        }
                        if a >= 1 && b >= 2 {
                            programs.push(format!("{a}+{b}*"));
                        }
                    }
                    programs.push(format!("d*{a}+"));
                    if a >= 1 {
                        programs.push(format!("{a}-d*"));
                    }
                }
                assert_eq!(programs.len(), 171);
                for p in &programs {
                    let y = |x| stack::run(p, x, stack::DEFAULT_STEP_LIMIT).unwrap();
                    for i in 0..10 {
                        for j in (0..10).filter(|&j| j != i) {
                            for k in (0..10).filter(|&k| k != i && k != j) {
                                out.insert(format!("{i}>{},{j}>{},{k}>{}:", y(i), y(j), y(k)));
                            }
                        }
                    }
                }
            }
            Task::Rating => {
                for len in 3..=6u32 {
                    for n in 0..8usize.pow(len) {
                        let word: String = (0..len)
                            .map(|i| char::from(b'a' + (n / 8usize.pow(i) % 8) as u8))
                            .collect();
                        if word.chars().any(|c| !word.starts_with(c)) {
                            out.insert(format!("{word}<"));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn part_prompts_counts_every_prompt_of_each_part() {
        for task in Task::ALL {
            let all = enumerate_prompts(task);
            let count = |part| all.iter().filter(|p| task.part(p) == part).count();
            let counts = [Part::Train, Part::Validation, Part::Test].map(count);
            assert_eq!(
                counts,
                [Part::Train, Part::Validation, Part::Test].map(|p| task.part_prompts(p)),
                "{task:?}"
            );
            assert_eq!(counts.iter().sum::<usize>(), task.distinct_prompts());
        }
    }

    #[test]
    fn generate_in_draws_only_its_part() {
        let mut rng = StdRng::seed_from_u64(3);
        for task in Task::ALL {
            for part in [Part::Train, Part::Validation, Part::Test] {
                for _ in 0..200 {
                    assert_eq!(task.part(&task.generate_in(part, &mut rng).prompt), part);
                }
            }
        }
    }

    #[test]
    fn distinct_prompts_counts_every_prompt_generate_can_draw() {
        for task in Task::ALL {
            let all = enumerate_prompts(task);
            assert_eq!(task.distinct_prompts(), all.len(), "{task:?}");
            let longest = all.iter().map(|p| p.chars().count()).max().unwrap();
            assert_eq!(task.longest_prompt(), longest, "{task:?}");
            for ex in examples(task, 5000) {
                assert!(
                    all.contains(&ex.prompt),
                    "{task:?}: {:?} not enumerated",
                    ex.prompt
                );
            }
        }
    }
}
