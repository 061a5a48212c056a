//! Reward models: a decoder with a `score` head, as transformers'
//! `LlamaForSequenceClassification`, `MistralForSequenceClassification`,
//! `Qwen2ForSequenceClassification` and `Qwen3ForSequenceClassification`
//! compute them with `num_labels = 1`.
//!
//! The score of a sequence is `score(h_i)`, where `h` is the final
//! (normed) hidden state and `i` transformers' pooling index: the rightmost
//! token whose id is not the config's `pad_token_id` (position 0 when every
//! token is padding), or the last token when the config has no
//! `pad_token_id`. So a sequence that ends with the pad token (a tokenizer
//! whose pad is its end token) is scored at the token before it, exactly as
//! transformers does.

use std::path::Path;

use anyhow::{ensure, Result};
use tch::{nn, Device, Kind, Tensor};

use crate::checkpoint;
use crate::layer::Linear;
use crate::model::positions_of;
use crate::{Config, KvCache, Mistral};

/// A sequence-classification checkpoint with one output.
#[derive(Debug)]
pub struct RewardModel {
    /// The decoder (`model.*`).
    trunk: Mistral,
    /// `score`: `[1, D]`, no bias.
    score: Linear,
    /// The config's `pad_token_id`: where pooling stops.
    pad: Option<i64>,
}

impl RewardModel {
    /// Creates the variables under `vs` (random, from torch's seed).
    pub fn new(vs: &nn::Path, config: &Config) -> RewardModel {
        RewardModel {
            trunk: Mistral::trunk(vs, config),
            score: Linear::new(vs / "score", config.hidden_size, 1, false),
            pad: config.pad_token_id,
        }
    }

    /// Loads a `XForSequenceClassification` checkpoint with `num_labels = 1`
    /// (bf16 on CUDA, as policies are).
    pub fn load(dir: &Path, device: Device) -> Result<(nn::VarStore, RewardModel)> {
        let head = lpo_hf::Head::read(dir)?;
        let config = Config::read(dir)?;
        ensure!(
            head == (lpo_hf::Head::Classifier { num_labels: 1 }),
            "{} is {}, not a reward model: a reward model is a {} with num_labels = 1",
            dir.display(),
            match head {
                lpo_hf::Head::CausalLm => format!("a {}", config.family.architecture()),
                lpo_hf::Head::Classifier { num_labels } =>
                    format!("a classifier with num_labels = {num_labels}"),
            },
            config.family.classifier_architecture()
        );
        let mut vs = nn::VarStore::new(device);
        let model = RewardModel::new(&vs.root(), &config);
        checkpoint::load_into(&vs, dir)?;
        if device.is_cuda() {
            vs.bfloat16();
        }
        Ok((vs, model))
    }

    /// The decoder's architecture.
    pub fn config(&self) -> &Config {
        self.trunk.config()
    }

    /// transformers' pooling index of each sequence (see the module docs).
    pub fn pooling_index(&self, ids: &[i64]) -> usize {
        match self.pad {
            None => ids.len().saturating_sub(1),
            Some(pad) => ids.iter().rposition(|&t| t != pad).unwrap_or(0),
        }
    }

    /// The score of each token sequence (none may be empty or longer than
    /// the model's positions), computed in batches of `batch` right-padded rows.
    pub fn scores(&self, sequences: &[Vec<i64>], batch: usize) -> Result<Vec<f64>> {
        let max = self.config().max_position_embeddings as usize;
        for (i, s) in sequences.iter().enumerate() {
            ensure!(
                !s.is_empty() && s.len() <= max,
                "sequence {i} has {} tokens; the reward model takes 1 to {max}",
                s.len()
            );
        }
        let mut out = Vec::with_capacity(sequences.len());
        for chunk in sequences.chunks(batch.max(1)) {
            out.extend(tch::no_grad(|| self.batch_scores(chunk)));
        }
        Ok(out)
    }

    /// Scores of one batch: `[B, T]` right-padded ids -> `[B]`.
    fn batch_scores(&self, sequences: &[Vec<i64>]) -> Vec<f64> {
        let device = self.trunk.device();
        let width = sequences.iter().map(Vec::len).max().unwrap_or(1);
        let fill = self.pad.unwrap_or(0);
        let mut ids = Vec::with_capacity(sequences.len() * width);
        let mut valid = Vec::with_capacity(sequences.len() * width);
        for s in sequences {
            ids.extend(
                s.iter()
                    .copied()
                    .chain(std::iter::repeat_n(fill, width - s.len())),
            );
            valid.extend((0..width).map(|j| j < s.len()));
        }
        let b = sequences.len() as i64;
        let tokens = Tensor::from_slice(&ids).view([b, width as i64]).to(device);
        let valid = Tensor::from_slice(&valid)
            .view([b, width as i64])
            .to(device);
        let positions = positions_of(&valid);
        let mut cache = KvCache::new(&self.trunk);
        let hidden = self.trunk.hidden(&tokens, &positions, &valid, &mut cache); // [B, T, D]
        let index: Vec<i64> = sequences
            .iter()
            .map(|s| self.pooling_index(s) as i64)
            .collect();
        let index = Tensor::from_slice(&index).to(device).view([b, 1, 1]);
        let d = hidden.size()[2];
        let pooled = hidden.gather(1, &index.expand([b, 1, d], false), false); // [B, 1, D]
        let scores = self.score.forward(&pooled.squeeze_dim(1)); // [B, 1]
        Vec::<f64>::try_from(scores.squeeze_dim(1).to_kind(Kind::Double).to(Device::Cpu))
            .expect("scores to the host")
    }
}
