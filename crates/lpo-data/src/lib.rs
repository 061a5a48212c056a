//! Reward-list data: what the trainer learns from, independent of torch.
//!
//! - [`RewardList`]: a prompt with K scored responses (the unit of every loss).
//! - [`import`]: JSONL and parquet readers for UltraFeedback (raw and
//!   binarized), TRL's preference formats and the native format, with
//!   file:line errors or counted skips; splits of dataset directories.
//! - [`chat`]: `tokenizer_config.json` (special tokens, chat template) and
//!   Hugging Face chat templates rendered with minijinja.
//! - [`mix`]: deterministic weighted sampling across sources.
//! - [`tokenizer`]: the character tokenizer of the built-in tasks and
//!   Hugging Face `tokenizer.json` files.
//! - [`stats`]: reward statistics per source (mean, spread, ties).
//! - [`hf_files`]: the tokenizer files saved beside checkpoints.

pub mod chat;
pub mod hf_files;
pub mod import;
pub mod mix;
pub mod stats;
pub mod tokenizer;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One response and its explicit score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Response text.
    pub text: String,
    /// Scalar reward.
    pub reward: f64,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (as the data names it).
    pub role: String,
    /// Text.
    pub content: String,
}

/// A prompt with its scored responses: one line of the native JSONL format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardList {
    /// The messages before the prompt: a system message and earlier turns
    /// (empty for a single-turn prompt). A chat template renders them; without
    /// one they are not part of the model's input (docs/data.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Message>,
    /// Prompt text (the last user message of a conversation).
    pub prompt: String,
    /// Scored responses (at least two; none in a prompt file, whose
    /// responses lpo samples and scores with the source's reward).
    pub responses: Vec<Scored>,
    /// The reference answer a `math` reward checks responses against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The tests a `code` reward runs responses against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<CodeTests>,
}

/// A code prompt's tests (HumanEval's layout): the program run is the
/// prompt, the response, the test code, then `check(entry_point)` when an
/// entry point is named (MBPP-style tests are top-level asserts without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeTests {
    /// Test code (HumanEval: a `check(candidate)` function).
    pub test: String,
    /// The function the tests call (`check(entry_point)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
}

/// The text that identifies a prompt in its conversation: the prompt alone
/// when there is no context (so a task's prompt is its own key), else the
/// JSON of `(context, prompt)`. Splits ([`lpo_tasks::split`]) and cached
/// responses are keyed by it.
pub fn prompt_key(context: &[Message], prompt: &str) -> String {
    match context {
        [] => prompt.to_string(),
        context => serde_json::to_string(&(context, prompt)).expect("messages serialize"),
    }
}

impl RewardList {
    /// This record's [`prompt_key`].
    pub fn key(&self) -> String {
        prompt_key(&self.context, &self.prompt)
    }

    /// Binarizes the list as binarized UltraFeedback does: the highest-reward
    /// response against a random response with a strictly lower reward.
    /// `None` when every reward ties (there is no preference to learn).
    pub fn binarize(&self, rng: &mut impl Rng) -> Option<RewardList> {
        let best =
            self.responses
                .iter()
                .enumerate()
                .fold(None::<usize>, |acc, (i, s)| match acc {
                    Some(j) if self.responses[j].reward >= s.reward => Some(j),
                    _ => Some(i),
                })?;
        let top = self.responses[best].reward;
        let lower: Vec<usize> = (0..self.responses.len())
            .filter(|&i| self.responses[i].reward < top)
            .collect();
        if lower.is_empty() {
            return None;
        }
        let other = lower[rng.random_range(0..lower.len())];
        Some(RewardList {
            context: self.context.clone(),
            prompt: self.prompt.clone(),
            responses: vec![self.responses[best].clone(), self.responses[other].clone()],
            answer: self.answer.clone(),
            tests: self.tests.clone(),
        })
    }

    /// Whether every response has the same reward.
    pub fn all_tied(&self) -> bool {
        self.responses
            .windows(2)
            .all(|w| w[0].reward == w[1].reward)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn list(rewards: &[f64]) -> RewardList {
        RewardList {
            context: Vec::new(),
            prompt: "p".into(),
            responses: rewards
                .iter()
                .enumerate()
                .map(|(i, &reward)| Scored {
                    text: format!("r{i}"),
                    reward,
                })
                .collect(),
            ..RewardList::default()
        }
    }

    #[test]
    fn binarize_takes_best_against_a_strictly_worse_one() {
        let l = list(&[3.0, 9.0, 9.0, 1.0, 5.0]);
        let mut seen = std::collections::BTreeSet::new();
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..200 {
            let pair = l.binarize(&mut rng).unwrap();
            assert_eq!(pair.responses[0].text, "r1"); // first of the tied best
            assert!(pair.responses[1].reward < 9.0);
            seen.insert(pair.responses[1].text.clone());
        }
        // Every strictly worse response is drawn sometimes.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["r0", "r3", "r4"]);
    }

    #[test]
    fn binarize_drops_all_tied_lists() {
        assert!(list(&[4.0, 4.0, 4.0])
            .binarize(&mut StdRng::seed_from_u64(0))
            .is_none());
        assert!(list(&[4.0, 4.0]).all_tied());
        assert!(!list(&[4.0, 5.0]).all_tied());
    }
}
