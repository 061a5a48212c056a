//! Training lists as token ids, and the deterministic batch order.

use std::collections::BTreeMap;

use anyhow::Result;
use lpo_data::tokenizer::Tokenize;
use lpo_results::{derive_seed, Truncation};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use crate::sources::SourcedList;
use crate::sources::{encode_pair, Window};

/// Every training list, tokenized, with K response slots per prompt.
pub struct TrainSet {
    /// Responses per prompt (slots beyond a list's length are masked).
    pub k: usize,
    /// `[bos] + prompt` per list.
    pub prompts: Vec<Vec<i64>>,
    /// `response + [eos]`, N*K rows (empty for masked slots).
    pub responses: Vec<Vec<i64>>,
    /// Rewards, N*K (0 for masked slots).
    pub rewards: Vec<f64>,
    /// Whether a slot holds a response, N*K.
    pub mask: Vec<bool>,
    /// Prompts and responses cut to the window, per source.
    pub truncated: BTreeMap<String, Truncation>,
}

impl TrainSet {
    /// Tokenizes `lists` into K slots each, fitting `window`.
    pub fn build(
        lists: &[SourcedList],
        tokenizer: &dyn Tokenize,
        k: usize,
        window: &Window,
    ) -> Result<TrainSet> {
        let mut set = TrainSet {
            k,
            prompts: Vec::with_capacity(lists.len()),
            responses: Vec::with_capacity(lists.len() * k),
            rewards: Vec::with_capacity(lists.len() * k),
            mask: Vec::with_capacity(lists.len() * k),
            truncated: BTreeMap::new(),
        };
        for l in lists {
            let mut prompt: Vec<i64> = Vec::new();
            let mut prompt_cut = false;
            let mut responses_cut = 0;
            for slot in 0..k {
                match l.list.responses.get(slot) {
                    Some(r) => {
                        let e = encode_pair(
                            tokenizer,
                            &l.list.context,
                            &l.list.prompt,
                            Some(&r.text),
                            window,
                        )?;
                        // The shortest kept prompt suffix works for every response.
                        if prompt.is_empty() || e.prompt.len() < prompt.len() {
                            prompt = e.prompt;
                        }
                        prompt_cut |= e.prompt_cut;
                        responses_cut += usize::from(e.response_cut);
                        set.responses.push(e.response);
                        set.rewards.push(r.reward);
                        set.mask.push(true);
                    }
                    None => {
                        set.responses.push(Vec::new());
                        set.rewards.push(0.0);
                        set.mask.push(false);
                    }
                }
            }
            set.prompts.push(prompt);
            if prompt_cut || responses_cut > 0 {
                let count = set.truncated.entry(l.source.clone()).or_default();
                count.prompts += usize::from(prompt_cut);
                count.responses += responses_cut;
            }
        }
        Ok(set)
    }

    /// Lists.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether there are no lists.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The prompts and flattened responses of the lists at `indices`.
    pub fn select(&self, indices: &[usize]) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
        let prompts = indices.iter().map(|&i| self.prompts[i].clone()).collect();
        let responses = indices
            .iter()
            .flat_map(|&i| self.responses[i * self.k..(i + 1) * self.k].iter().cloned())
            .collect();
        (prompts, responses)
    }

    /// Rewards `[B, K]` and mask `[B, K]` of the lists at `indices`.
    pub fn targets(&self, indices: &[usize], device: Device) -> (Tensor, Tensor) {
        let k = self.k;
        let rewards: Vec<f64> = indices
            .iter()
            .flat_map(|&i| self.rewards[i * k..(i + 1) * k].iter().copied())
            .collect();
        let mask: Vec<bool> = indices
            .iter()
            .flat_map(|&i| self.mask[i * k..(i + 1) * k].iter().copied())
            .collect();
        let shape = [indices.len() as i64, k as i64];
        (
            Tensor::from_slice(&rewards)
                .view(shape)
                .to_kind(Kind::Float)
                .to_device(device),
            Tensor::from_slice(&mask).view(shape).to_device(device),
        )
    }

    /// The token slots of the lists at `indices` as one micro-batch of the
    /// prompt-sharing pass computes them (prompts padded to the longest, the
    /// K responses of each to the longest response) and the real tokens.
    pub fn padding(&self, indices: &[usize]) -> Padding {
        let prompts = indices.iter().map(|&i| self.prompts[i].len() as u64);
        let responses = indices
            .iter()
            .flat_map(|&i| &self.responses[i * self.k..(i + 1) * self.k])
            .map(|r| r.len() as u64);
        let n = indices.len() as u64;
        Padding {
            prompt_slots: n * prompts.clone().max().unwrap_or(0),
            prompt_tokens: prompts.sum(),
            response_slots: n * self.k as u64 * responses.clone().max().unwrap_or(0),
            response_tokens: responses.sum(),
        }
    }

    /// Tokens processed for these lists: each prompt once, every response.
    pub fn token_count(&self, indices: &[usize]) -> u64 {
        indices
            .iter()
            .map(|&i| {
                self.prompts[i].len()
                    + self.responses[i * self.k..(i + 1) * self.k]
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>()
            })
            .sum::<usize>() as u64
    }
}

/// Token slots a padded forward pass computes, and how many hold a real
/// token: what padding-free lists would save.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// Prompt slots: lists x the longest prompt of their micro-batch.
    pub prompt_slots: u64,
    /// Real prompt tokens.
    pub prompt_tokens: u64,
    /// Response slots: lists x K x the longest response of the micro-batch.
    pub response_slots: u64,
    /// Real response tokens.
    pub response_tokens: u64,
}

impl Padding {
    /// Adds another micro-batch's counts.
    pub fn add(&mut self, other: Padding) {
        self.prompt_slots += other.prompt_slots;
        self.prompt_tokens += other.prompt_tokens;
        self.response_slots += other.response_slots;
        self.response_tokens += other.response_tokens;
    }

    /// The share of `slots` that is padding (0 without slots).
    pub fn share(slots: u64, tokens: u64) -> f64 {
        if slots == 0 {
            0.0
        } else {
            (slots - tokens) as f64 / slots as f64
        }
    }
}

/// Optimizer steps of one pass over `lists` training lists, `batch_size`
/// lists a step (`train.grad_accum` splits a step's lists into micro-batches
/// without changing how many a step takes; the last step of an epoch is
/// completed from the next epoch's permutation).
pub fn epoch_steps(lists: usize, batch_size: u32) -> usize {
    lists.div_ceil((batch_size as usize).max(1))
}

/// The lists of micro-batch `micro` of optimizer step `step`: consecutive
/// slices of a stream of seeded per-epoch permutations. A pure function of
/// its arguments, so a resumed run sees the batches it would have seen.
pub fn batch_indices(
    n: usize,
    batch_size: usize,
    grad_accum: usize,
    step: usize,
    micro: usize,
    seed: u64,
) -> Vec<usize> {
    let start = (step * grad_accum + micro) * batch_size;
    let mut out = Vec::with_capacity(batch_size);
    let mut epoch_perm: Option<(usize, Vec<usize>)> = None;
    for g in start..start + batch_size {
        let epoch = g / n;
        if epoch_perm.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut rng = StdRng::seed_from_u64(derive_seed(seed, &format!("epoch-{epoch}")));
            epoch_perm = Some((epoch, lpo_data::mix::permutation(n, &mut rng)));
        }
        out.push(epoch_perm.as_ref().expect("set above").1[g % n]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_the_steps_that_cover_every_list() {
        assert_eq!(epoch_steps(48, 8), 6);
        assert_eq!(epoch_steps(49, 8), 7);
        assert_eq!(epoch_steps(3, 8), 1);
        // With accumulation a step still takes batch_size lists, in
        // micro-batches of batch_size / grad_accum (as the training loop
        // draws them): 12 steps of 4 lists, 2 micro-batches each, cover 48.
        assert_eq!(epoch_steps(48, 4), 12);
        let mut drawn: Vec<usize> = (0..12)
            .flat_map(|s| (0..2).flat_map(move |m| batch_indices(48, 2, 2, s, m, 1)))
            .collect();
        drawn.sort();
        assert_eq!(drawn, (0..48).collect::<Vec<_>>());
        // Six steps of eight lists draw each of 48 lists exactly once.
        let mut drawn: Vec<usize> = (0..6)
            .flat_map(|s| batch_indices(48, 8, 1, s, 0, 1))
            .collect();
        drawn.sort();
        assert_eq!(drawn, (0..48).collect::<Vec<_>>());
    }

    #[test]
    fn padding_counts_the_slots_of_the_longest_prompt_and_response() {
        let set = TrainSet {
            k: 2,
            prompts: vec![vec![1, 2], vec![3]],
            responses: vec![vec![5], vec![6, 7, 8], vec![9, 9], vec![]],
            rewards: vec![0.0; 4],
            mask: vec![true, true, true, false],
            truncated: BTreeMap::new(),
        };
        let p = set.padding(&[0, 1]);
        assert_eq!(
            p,
            Padding {
                prompt_slots: 4,
                prompt_tokens: 3,
                response_slots: 12,
                response_tokens: 6,
            }
        );
        assert_eq!(Padding::share(12, 6), 0.5);
        assert_eq!(Padding::share(0, 0), 0.0);
        assert_eq!(set.padding(&[1]).response_slots, 4);
    }

    #[test]
    fn batches_cover_each_epoch_once_and_are_reproducible() {
        let n = 10;
        let mut epoch0: Vec<usize> = (0..5)
            .flat_map(|step| batch_indices(n, 2, 1, step, 0, 3))
            .collect();
        assert_eq!(
            batch_indices(n, 2, 1, 3, 0, 3),
            batch_indices(n, 2, 1, 3, 0, 3)
        );
        epoch0.sort();
        assert_eq!(epoch0, (0..10).collect::<Vec<_>>());
        // Accumulation splits a step into consecutive micro-batches.
        let whole = batch_indices(n, 4, 1, 1, 0, 3);
        let parts: Vec<usize> = (0..2)
            .flat_map(|m| batch_indices(n, 2, 2, 1, m, 3))
            .collect();
        assert_eq!(whole, parts);
    }
}
