//! The data each training round reads: round 0 trains on the lists sampled
//! from the reference; each later on-policy round (`train.rounds`) on lists
//! sampled again from the policy as it was when the round began, against
//! the SFT reference (`train.reference_update = "fixed"`) or that policy
//! (`"round"`).
//!
//! The policy at a round's start is saved to `round-start/` in the run
//! directory, so a run resumed mid-round samples from (and compares with)
//! the same weights; the round's lists and reference log-probabilities are
//! cached by content id, so nothing is sampled twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use lpo_data::tokenizer::Tokenize;
use lpo_model::{checkpoint, Mistral};
use lpo_recipe::{DataForm, ReferenceUpdate};
use lpo_results::content_id;
use tch::{nn, Tensor};

use crate::batch::TrainSet;
use crate::eval::HeldoutSet;
use crate::lists::{self, Lists};
use crate::reference::Reference;
use crate::request::RunRequest;
use crate::sources::{Source, Window};
use crate::Progress;

/// What stays fixed for a whole run.
pub(crate) struct RunInputs<'a> {
    /// The request.
    pub request: &'a RunRequest<'a>,
    /// The SFT reference (or checkpoint).
    pub reference: Reference,
    /// The data sources.
    pub sources: Vec<Source>,
    /// The tokenizer.
    pub tokenizer: Arc<dyn Tokenize>,
    /// Round 0's lists and the held-out lists.
    pub lists: Lists,
    /// The held-out lists, scored under the SFT reference.
    pub heldout: HeldoutSet,
    /// The prompt files' reward sources.
    pub rewards: crate::rewards::Rewards,
    /// LoRA adapters on the frozen reference instead of full fine-tuning.
    pub lora: Option<lpo_model::lora::LoraSpec>,
}

/// The lists one round trains on, tokenized, with their reference log-probabilities.
pub(crate) struct RoundData {
    /// Content id of the lists.
    pub lists_id: String,
    /// Tokenized lists.
    pub set: TrainSet,
    /// Reference sequence log-probabilities, `[N, K]`.
    pub ref_sum: Tensor,
    /// Their token counts, `[N, K]`.
    pub ref_tokens: Tensor,
    /// The rewards of the training lists, per source.
    pub rewards: BTreeMap<String, lpo_results::RewardSummary>,
}

/// Where the policy at the start of the current round is kept.
fn round_start_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("round-start")
}

impl RunInputs<'_> {
    /// Padding id.
    pub fn pad(&self) -> i64 {
        self.tokenizer.pad()
    }

    /// Round 0: the lists sampled from the reference.
    pub fn first_round(&self, progress: &mut dyn Progress) -> Result<RoundData> {
        let r = &self.reference;
        self.round_data(&self.lists, &r.model, &r.meta.id, progress)
    }

    /// On-policy round `round` (>= 1). `policy` is the current policy; when
    /// `at_start` it is saved as the round's starting point first (a resumed
    /// run mid-round reads the one saved when the round began). With a group,
    /// the round's lists and reference log-probs come from the shared cache:
    /// the first rank to take an entry's lock samples and scores them, the
    /// others read them.
    pub fn later_round(
        &self,
        round: u32,
        policy: (&nn::VarStore, &Mistral),
        at_start: bool,
        run_dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<RoundData> {
        let dir = round_start_dir(run_dir);
        // Rank 0 of a group writes the round's start; the others read it
        // once it is there.
        let group = self.request.group;
        if group.is_none_or(|g| g.rank() == 0) {
            if at_start {
                self.save_round_start(policy, &dir, round)?;
            } else {
                recover_round_start(&dir)?;
            }
        }
        if let Some(g) = group {
            g.barrier()?;
        }
        let read_saved = || -> Result<u32> {
            let path = dir.join("round.txt");
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .parse()
                .with_context(|| format!("parsing {}", path.display()))
        };
        let mut saved = read_saved()?;
        // Another node's view of the shared file system may lag rank 0's
        // rename by a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while group.is_some_and(|g| g.rank() > 0)
            && saved != round
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(500));
            saved = read_saved()?;
        }
        ensure!(
            saved == round,
            "{} holds the start of round {}, not round {}",
            dir.display(),
            saved + 1,
            round + 1
        );
        let (_vs, start) = self.round_start(&dir)?;
        let request = self.request;
        let sampling = lists::Sampling {
            recipe: request.recipe,
            tokenizer: self.tokenizer.as_ref(),
            rewards: &self.rewards,
        };
        let lists = lists::obtain_round(
            &sampling,
            &self.sources,
            &start,
            &self.lists,
            request.run_id,
            round,
            request.layout,
            progress,
        )?;
        match request.recipe.train.reference_update {
            ReferenceUpdate::Fixed => {
                let r = &self.reference;
                self.round_data(&lists, &r.model, &r.meta.id, progress)
            }
            ReferenceUpdate::Round => {
                let id = content_id("round-reference", &(request.run_id, round));
                self.round_data(&lists, &start, &id, progress)
            }
        }
    }

    /// Tokenizes `lists` in the recipe's form and scores them under the
    /// reference `model` (whose content id is `model_id`).
    fn round_data(
        &self,
        lists: &Lists,
        model: &Mistral,
        model_id: &str,
        progress: &mut dyn Progress,
    ) -> Result<RoundData> {
        let recipe = self.request.recipe;
        let (train_lists, _dropped) = lists.in_form(recipe.data.form, recipe.train.seed);
        ensure!(
            !train_lists.is_empty(),
            "no training lists (all rewards tie?)"
        );
        let k = match recipe.data.form {
            DataForm::Reward => recipe.data.list_size as usize,
            DataForm::Preference => 2,
        };
        let window = Window::new(recipe, model.config().max_position_embeddings as usize);
        let set = TrainSet::build(&train_lists, self.tokenizer.as_ref(), k, &window)?;
        let (ref_sum, ref_tokens) =
            self.reference_logps(model, model_id, &lists.id, &set, progress)?;
        Ok(RoundData {
            lists_id: lists.id.clone(),
            set,
            ref_sum,
            ref_tokens,
            rewards: self.reward_summaries(&lists.lists),
        })
    }

    /// The rewards of `lists`' training lists per source, with the solved
    /// share where the source's reward has a solved level.
    fn reward_summaries(
        &self,
        lists: &[crate::sources::SourcedList],
    ) -> BTreeMap<String, lpo_results::RewardSummary> {
        let mut by_source: BTreeMap<String, (Vec<f64>, BTreeMap<String, usize>)> = BTreeMap::new();
        for l in lists {
            let (rewards, outcomes) = by_source.entry(l.source.clone()).or_default();
            rewards.extend(l.list.responses.iter().map(|r| r.reward));
            for o in &l.outcomes {
                *outcomes.entry(o.clone()).or_default() += 1;
            }
        }
        by_source
            .into_iter()
            .map(|(name, (rewards, outcomes))| {
                let level =
                    self.sources
                        .iter()
                        .find(|s| s.name == name)
                        .and_then(|s| match &s.kind {
                            crate::sources::SourceKind::Task(t) => {
                                t.has_accuracy().then_some(lpo_tasks::MAX_REWARD)
                            }
                            crate::sources::SourceKind::File { reward, .. } => {
                                reward.and_then(crate::rewards::solved_level)
                            }
                        });
                let summary = lpo_results::RewardSummary {
                    outcomes,
                    ..lpo_results::RewardSummary::of(&rewards, level)
                };
                (name, summary)
            })
            .collect()
    }

    /// The training rewards of every round up to `current` (whose lists are
    /// `data`), per source: earlier rounds' from their cached lists, so a
    /// resumed run logs them too.
    pub fn round_rewards(
        &self,
        round_lists: &[String],
        data: &RoundData,
    ) -> Result<Vec<BTreeMap<String, lpo_results::RewardSummary>>> {
        let (earlier, _) = round_lists.split_at(round_lists.len().saturating_sub(1));
        let mut out = Vec::with_capacity(round_lists.len());
        for (r, id) in earlier.iter().enumerate() {
            out.push(match r {
                0 => self.reward_summaries(&self.lists.lists),
                _ => self.reward_summaries(&lists::read_training_lists(self.request.layout, id)?),
            });
        }
        out.push(data.rewards.clone());
        Ok(out)
    }

    /// Reference log-probabilities of every training response and their
    /// token counts, computed once per (reference, dataset, form) and cached.
    /// A reference-free loss reads no reference log-probability: it gets
    /// zeros, and the counts from the tokenized set, with no forward pass.
    fn reference_logps(
        &self,
        model: &Mistral,
        model_id: &str,
        lists_id: &str,
        set: &TrainSet,
        progress: &mut dyn Progress,
    ) -> Result<(Tensor, Tensor)> {
        let request = self.request;
        let recipe = request.recipe;
        if !recipe.loss.kind.needs_reference() {
            let counts: Vec<f32> = set.responses.iter().map(|r| r.len() as f32).collect();
            let tokens = Tensor::from_slice(&counts)
                .view([set.len() as i64, set.k as i64])
                .to_device(request.device);
            return Ok((tokens.zeros_like(), tokens));
        }
        let id = content_id(
            "reference-logps",
            &(
                model_id,
                lists_id,
                format!("{:?}", recipe.data.form),
                recipe.train.seed,
                set.k,
                request.device.is_cuda(),
            ),
        );
        let (path, lock) = request
            .layout
            .cache_entry("reference-logps", &id, "safetensors");
        let read = |path: &Path| {
            let t = checkpoint::read_tensors(path, request.device)?;
            let get = |name: &str| {
                t.get(name)
                    .map(Tensor::shallow_clone)
                    .with_context(|| format!("{} lacks `{name}`", path.display()))
            };
            Ok((get("sum")?, get("tokens")?))
        };
        lpo_results::cache::cached(&path, &lock, read, |path| {
            // Not shared among ranks: a cache entry is computed under its lock.
            let (sum, tokens) = crate::eval::set_logps(
                model,
                set,
                self.pad(),
                None,
                progress,
                "reference log-probs",
            )?;
            let tensors = BTreeMap::from([
                ("sum".to_string(), sum.shallow_clone()),
                ("tokens".to_string(), tokens.shallow_clone()),
            ]);
            checkpoint::write_tensors(path, &tensors)?;
            Ok((sum, tokens))
        })
    }
}

/// A crash between the removal and the rename of [`save_round_start`] leaves
/// only the whole new copy: move it into place.
fn recover_round_start(dir: &Path) -> Result<()> {
    let new = dir.with_file_name("round-start-new");
    if !dir.join("round.txt").exists() && new.join("round.txt").exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&new, dir)
            .with_context(|| format!("renaming {} to {}", new.display(), dir.display()))?;
    }
    Ok(())
}

impl RunInputs<'_> {
    /// Saves the policy as the start of `round` (its full weights, or with
    /// LoRA its adapters in PEFT's layout): weights first, `round.txt` last,
    /// swapped in by a rename so a reader sees a whole one.
    fn save_round_start(
        &self,
        (vs, model): (&nn::VarStore, &Mistral),
        dir: &Path,
        round: u32,
    ) -> Result<()> {
        let new = dir.with_file_name("round-start-new");
        let _ = std::fs::remove_dir_all(&new);
        match &self.lora {
            Some(spec) => {
                let base = self.reference.dir.display().to_string();
                lpo_model::lora::save_peft(vs, spec, &base, &new)?;
            }
            None => checkpoint::save(vs, model.config(), &new)?,
        }
        swap_in(&new, dir, round)
    }

    /// The policy saved by [`Self::save_round_start`]: full weights (bf16 on
    /// CUDA), or the frozen reference with the saved adapters (never in
    /// dropout, whatever the training policy's state).
    fn round_start(&self, dir: &Path) -> Result<(nn::VarStore, Mistral)> {
        let device = self.request.device;
        match &self.lora {
            Some(spec) => {
                let vs = nn::VarStore::new(device);
                let start = self
                    .reference
                    .model
                    .with_adapters(&vs.root(), &spec.inference_copy());
                lpo_model::lora::load_peft(&vs, dir)?;
                Ok((vs, start))
            }
            None => {
                let (mut vs, start) = checkpoint::load(dir, device)?;
                if device.is_cuda() {
                    vs.bfloat16();
                }
                Ok((vs, start))
            }
        }
    }
}

/// Writes `round.txt` into the finished copy `new` and renames it to `dir`.
fn swap_in(new: &Path, dir: &Path, round: u32) -> Result<()> {
    lpo_results::write_atomic(&new.join("round.txt"), format!("{round}\n").as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(new, dir)
        .with_context(|| format!("renaming {} to {}", new.display(), dir.display()))
}
