//! Evaluation of a policy: sampled responses to held-out prompts scored by
//! the task's reward (against the reference or another run), a KL estimate
//! to the reference, and implicit-reward metrics on held-out lists.
//!
//! Held-out prompts and lists are split into validation (the first
//! `eval.validation_fraction` of each task's prompts and each source's lists)
//! and test (the rest): configurations are chosen on validation and reported
//! on test. Headlines use the test split only.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use lpo_data::tokenizer::Tokenize;
use lpo_model::generate::{generate, Decoding, GenerateOptions};
use lpo_model::logps::response_logps;
use lpo_model::Mistral;
use lpo_recipe::{Decoding as EvalDecoding, Normalize, Recipe};
use lpo_results::records::{self, CurveRow, HeldoutRecord};
use lpo_results::{
    content_id, derive_seed, write_atomic, EvalRecord, Headline, HeldoutHeadline, Outcome, Split,
    Status, Summary,
};
use lpo_tasks::{Part, Task};
use lpo_torch::dist::{Group, Reduce};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::{Kind, Tensor};

use crate::batch::TrainSet;
use crate::data_parallel;
use crate::reference::Reference;
use crate::request::{Baseline, RunRequest};
use crate::rewards::{Rewards, Scorable};
use crate::sources::SourcedList;
use crate::sources::{encode_prompt, Window};
use crate::Progress;

/// Names how evaluation prompts are cut, in cache identities of generated
/// text: they keep room for `eval.max_new_tokens` new tokens.
const PROMPT_ROOM: &str = "prompt-room-v1";

/// Rows generated per batch; each batch draws from its own seeded stream.
const GENERATION_CHUNK: usize = 64;
/// Prompts per batch when scoring log-probabilities without gradients.
const LOGPS_CHUNK: usize = lpo_plan::memory::EVAL_LOGPS_CHUNK;

/// The split of a held-out item whose prompt in its context is `key`
/// ([`lpo_data::prompt_key`]): a built-in task's by the part of the task's
/// prompt space it was drawn from, a file record's (`task` = `None`) by its
/// content hash at `eval.validation_fraction` ([`lpo_tasks::split`]).
pub fn heldout_split(task: Option<Task>, key: &str, validation_fraction: f64) -> Split {
    let validation = match task {
        Some(task) => task.part(key) == Part::Validation,
        None => lpo_tasks::split::is_validation(key, validation_fraction),
    };
    if validation {
        Split::Validation
    } else {
        Split::Test
    }
}

/// Ids `<group>-s<seed>-<index>` of items in `groups` order, counted within
/// each group.
fn ids(groups: &[String], seed: u64) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    groups
        .iter()
        .map(|g| {
            let i = seen.entry(g.as_str()).or_default();
            *i += 1;
            format!("{g}-s{seed}-{:05}", *i - 1)
        })
        .collect()
}

/// Short name of a source for ids: the task name or the file stem.
fn short_source(source: &str) -> String {
    Path::new(source)
        .file_stem()
        .map_or_else(|| source.to_string(), |s| s.to_string_lossy().into_owned())
}

/// Summed log-probabilities and token counts of every list in `set`, `[N, K]`,
/// computed without gradients in chunks. With a group, each rank computes
/// its share of the chunks (the same chunks one process computes, so the
/// same numbers) and the ranks gather them.
pub fn set_logps(
    model: &Mistral,
    set: &TrainSet,
    pad: i64,
    group: Option<&Group>,
    progress: &mut dyn Progress,
    phase: &str,
) -> Result<(Tensor, Tensor)> {
    let mut chunks = Vec::new();
    progress.start(phase, set.len() as u64);
    tch::no_grad(|| {
        for (c, start) in (0..set.len()).step_by(LOGPS_CHUNK).enumerate() {
            if !data_parallel::owns(group, c) {
                continue;
            }
            let indices: Vec<usize> = (start..(start + LOGPS_CHUNK).min(set.len())).collect();
            let (prompts, responses) = set.select(&indices);
            let out = response_logps(model, &prompts, &responses, set.k, pad);
            chunks.push((start, out.sum.to_kind(Kind::Float), out.tokens));
            progress.update((start + indices.len()) as u64, "");
        }
    });
    progress.finish();
    let Some(group) = group else {
        if chunks.is_empty() {
            let device = model.device();
            let empty = Tensor::zeros([0, set.k as i64], (Kind::Float, device));
            return Ok((empty.shallow_clone(), empty));
        }
        let sums: Vec<Tensor> = chunks.iter().map(|c| c.1.shallow_clone()).collect();
        let counts: Vec<Tensor> = chunks.iter().map(|c| c.2.shallow_clone()).collect();
        return Ok((Tensor::cat(&sums, 0), Tensor::cat(&counts, 0)));
    };
    // Each rank fills the rows of its chunks; the sum over ranks is exact.
    let shape = [set.len() as i64, set.k as i64];
    let mut sums = Tensor::zeros(shape, (Kind::Float, model.device()));
    let mut counts = Tensor::zeros(shape, (Kind::Float, model.device()));
    for (start, sum, tokens) in &chunks {
        let rows = sum.size()[0];
        sums.narrow(0, *start as i64, rows).copy_(sum);
        counts.narrow(0, *start as i64, rows).copy_(tokens);
    }
    group.all_reduce(&mut sums, Reduce::Sum)?;
    group.all_reduce(&mut counts, Reduce::Sum)?;
    let kind = chunks.first().map_or(Kind::Float, |c| c.2.kind());
    Ok((sums, counts.to_kind(kind)))
}

/// The held-out lists, tokenized, with their reference log-probabilities.
pub struct HeldoutSet {
    set: TrainSet,
    ids: Vec<String>,
    splits: Vec<Split>,
    sources: Vec<String>,
    /// Reference sequence log-probabilities as the loss sees them, `[N, K]`
    /// f64 on the host (empty for a reference-free loss).
    reference: Vec<f64>,
    normalize: Normalize,
    /// Whether the loss is reference-free: its implicit reward is the
    /// per-token log-probability (times beta where the kind reads beta), and
    /// no reference log-prob is needed.
    reference_free: bool,
    /// The loss kind.
    kind: lpo_recipe::LossKind,
    pad: i64,
}

/// A held-out list's metrics and the implicit rewards of its best and
/// worst response (`None` without responses).
type ListRow = (HeldoutRecord, Option<(f64, f64)>);

impl HeldoutSet {
    /// Tokenizes `lists` and scores them under the reference.
    pub fn build(
        recipe: &Recipe,
        lists: &[SourcedList],
        tokenizer: &dyn Tokenize,
        reference: &Mistral,
        group: Option<&Group>,
        progress: &mut dyn Progress,
    ) -> Result<HeldoutSet> {
        let k = recipe.data.list_size as usize;
        let window = Window::new(recipe, reference.config().max_position_embeddings as usize);
        let set = TrainSet::build(lists, tokenizer, k, &window)?;
        let sources: Vec<String> = lists.iter().map(|l| short_source(&l.source)).collect();
        let splits = lists
            .iter()
            .map(|l| {
                // A task's lists carry its name; file names never equal one
                // (sources::load_sources).
                let task = Task::from_name(&l.source);
                heldout_split(task, &l.list.key(), recipe.eval.validation_fraction)
            })
            .collect();
        let ids = ids(&sources, recipe.train.seed);
        let mut held = HeldoutSet {
            set,
            ids,
            splits,
            sources: lists.iter().map(|l| l.source.clone()).collect(),
            reference: Vec::new(),
            normalize: recipe.loss.normalize,
            // Held-out lists are ranked by the first part's implicit reward.
            reference_free: !recipe.loss.kind.first().spec().reference,
            kind: recipe.loss.kind.first(),
            pad: tokenizer.pad(),
        };
        if !held.reference_free {
            held.reference = held
                .logps(reference, group, progress, "held-out reference log-probs")?
                .0;
        }
        Ok(held)
    }

    /// Lists held out.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// A model's sequence log-probabilities as the loss sees them and per
    /// token, `[N*K]` each.
    fn logps(
        &self,
        model: &Mistral,
        group: Option<&Group>,
        progress: &mut dyn Progress,
        phase: &str,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (sum, tokens) = set_logps(model, &self.set, self.pad, group, progress, phase)?;
        let per_token = &sum / tokens.clamp_min(1.0);
        let values = match self.normalize {
            Normalize::Sum => sum,
            Normalize::Mean => per_token.shallow_clone(),
        };
        let host = |t: Tensor| -> Result<Vec<f64>> {
            Ok(Vec::<f64>::try_from(
                t.to_kind(Kind::Double).to_device(tch::Device::Cpu).view(-1),
            )?)
        };
        Ok((host(values)?, host(per_token)?))
    }

    /// The implicit reward of slot `j`: `beta (lp - lr)`, or for a
    /// reference-free loss `beta` times the per-token log-probability.
    fn implicit_reward(&self, beta: f64, lp: &[f64], per_token: &[f64], j: usize) -> f64 {
        if self.reference_free {
            self.kind.implicit_reward_scale(beta) * per_token[j]
        } else {
            beta * (lp[j] - self.reference[j])
        }
    }

    /// Per-list metrics of `policy` at implicit-reward scale `beta`, each
    /// with the implicit rewards of its best and worst response (`None` for
    /// a list without responses).
    fn lists(
        &self,
        policy: &Mistral,
        beta: f64,
        group: Option<&Group>,
        progress: &mut dyn Progress,
    ) -> Result<Vec<ListRow>> {
        let (lp, per_token) = self.logps(policy, group, progress, "held-out lists")?;
        let k = self.set.k;
        Ok((0..self.len())
            .map(|i| {
                let range = i * k..(i + 1) * k;
                let valid: Vec<usize> = range.clone().filter(|&j| self.set.mask[j]).collect();
                let r: Vec<f64> = valid.iter().map(|&j| self.set.rewards[j]).collect();
                let l: Vec<f64> = valid.iter().map(|&j| lp[j]).collect();
                let s: Vec<f64> = valid
                    .iter()
                    .map(|&j| self.implicit_reward(beta, &lp, &per_token, j))
                    .collect();
                let m = list_metrics(&r, &s);
                let (best, worst) = best_and_worst(&r);
                let rewards = (!s.is_empty()).then(|| (s[best], s[worst]));
                let record = HeldoutRecord {
                    list_id: self.ids[i].clone(),
                    split: self.splits[i],
                    source: self.sources[i].clone(),
                    responses: valid.len() as u32,
                    pairs: m.pairs,
                    correct: m.correct,
                    margin: m.margin,
                    ndcg: m.ndcg,
                    chosen_logp: l.get(best).copied().unwrap_or(0.0),
                    rejected_logp: l.get(worst).copied().unwrap_or(0.0),
                };
                (record, rewards)
            })
            .collect())
    }

    /// The training curve point at `step`: the validation lists only.
    pub fn curve(
        &self,
        policy: &Mistral,
        beta: f64,
        step: u32,
        group: Option<&Group>,
        progress: &mut dyn Progress,
    ) -> Result<CurveRow> {
        let lists = self.lists(policy, beta, group, progress)?;
        let validation: Vec<&(HeldoutRecord, Option<(f64, f64)>)> = lists
            .iter()
            .filter(|(l, _)| l.split == Split::Validation)
            .collect();
        let n = validation.len().max(1) as f64;
        let records = || validation.iter().map(|(l, _)| l);
        let chosen_logp = mean(records().map(|l| l.chosen_logp));
        let rejected_logp = mean(records().map(|l| l.rejected_logp));
        let (mut chosen_reward, mut rejected_reward) = (0.0, 0.0);
        for (chosen, rejected) in validation.iter().filter_map(|(_, s)| *s) {
            chosen_reward += chosen / n;
            rejected_reward += rejected / n;
        }
        Ok(CurveRow {
            step,
            chosen_logp,
            rejected_logp,
            chosen_reward,
            rejected_reward,
            margin: mean(records().filter_map(|l| l.margin)),
            ranking_accuracy: pooled_accuracy(records()),
        })
    }

    /// Every held-out list's metrics for the final policy, and the test headline.
    pub fn evaluate(
        &self,
        policy: &Mistral,
        beta: f64,
        group: Option<&Group>,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<HeldoutRecord>, HeldoutHeadline)> {
        let lists: Vec<HeldoutRecord> = self
            .lists(policy, beta, group, progress)?
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        let test: Vec<&HeldoutRecord> = lists
            .iter()
            .filter(|l| l.split == Split::Test && l.pairs > 0)
            .collect();
        let headline = HeldoutHeadline {
            lists: test.len(),
            ranking_accuracy: pooled_accuracy(test.iter().copied()),
            margin: mean(test.iter().filter_map(|l| l.margin)),
            ndcg: mean(test.iter().filter_map(|l| l.ndcg)),
        };
        Ok((lists, headline))
    }
}

/// Correctly ordered pairs over ordered pairs, pooled over `lists`; 0
/// without any ordered pair.
fn pooled_accuracy<'a>(lists: impl Iterator<Item = &'a HeldoutRecord>) -> f64 {
    let (pairs, correct) = lists.fold((0u64, 0u64), |(p, c), l| {
        (p + u64::from(l.pairs), c + u64::from(l.correct))
    });
    if pairs > 0 {
        correct as f64 / pairs as f64
    } else {
        0.0
    }
}

/// Mean of `values`; 0 when there are none.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Index of the highest and lowest reward (first on ties); (0, 0) when empty.
fn best_and_worst(r: &[f64]) -> (usize, usize) {
    let mut best = 0;
    let mut worst = 0;
    for (i, &x) in r.iter().enumerate() {
        if x > r[best] {
            best = i;
        }
        if x < r[worst] {
            worst = i;
        }
    }
    (best, worst)
}

/// Ranking metrics of one list with rewards `r` and implicit rewards `s`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListMetrics {
    /// Strictly ordered pairs (r_i > r_j).
    pub pairs: u32,
    /// Of those, s_i > s_j.
    pub correct: u32,
    /// Mean s_i - s_j over the ordered pairs.
    pub margin: Option<f64>,
    /// Reward-weighted NDCG of the order by s: gains r_i - min r, discount
    /// 1 / log2(rank + 1), divided by the ideal order's DCG. Ties in s are
    /// broken by list position.
    pub ndcg: Option<f64>,
}

/// See [`ListMetrics`].
pub fn list_metrics(r: &[f64], s: &[f64]) -> ListMetrics {
    let mut pairs = 0;
    let mut correct = 0;
    let mut margin = 0.0;
    for i in 0..r.len() {
        for j in 0..r.len() {
            if r[i] > r[j] {
                pairs += 1;
                correct += u32::from(s[i] > s[j]);
                margin += s[i] - s[j];
            }
        }
    }
    let low = r.iter().copied().fold(f64::INFINITY, f64::min);
    let dcg = |order: &[usize]| -> f64 {
        order
            .iter()
            .enumerate()
            .map(|(rank, &i)| (r[i] - low) / ((rank + 2) as f64).log2())
            .sum()
    };
    let mut by_s: Vec<usize> = (0..r.len()).collect();
    by_s.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let mut ideal: Vec<usize> = (0..r.len()).collect();
    ideal.sort_by(|&a, &b| r[b].total_cmp(&r[a]));
    let best = dcg(&ideal);
    ListMetrics {
        pairs,
        correct,
        margin: (pairs > 0).then(|| margin / f64::from(pairs)),
        ndcg: (best > 0.0).then(|| dcg(&by_s) / best),
    }
}

fn decoding(recipe: &Recipe) -> Decoding {
    match recipe.eval.decoding {
        EvalDecoding::Greedy => Decoding::Greedy,
        EvalDecoding::Sample => Decoding::Sample {
            temperature: recipe.eval.temperature,
            top_p: recipe.eval.top_p,
        },
    }
}

/// `eval.samples` responses per example (example-major), as token ids.
///
/// Sampling uses common random numbers: batch i of the rows always draws
/// from the stream seeded by (seed, i), row by row and step by step, for the
/// policy and for the baseline alike. Paired comparisons then differ only
/// where the models differ (a policy equal to the reference ties on every
/// prompt), which removes the sampling noise of two independent streams.
fn respond(
    model: &Mistral,
    tokenizer: &dyn Tokenize,
    prompts: &[Vec<i64>],
    recipe: &Recipe,
    group: Option<&Group>,
    progress: &mut dyn Progress,
    phase: &str,
) -> Result<Vec<Vec<i64>>> {
    let n = recipe.eval.samples as usize;
    let options = GenerateOptions {
        max_new_tokens: recipe.eval.max_new_tokens as usize,
        eos: tokenizer.eos(),
        pad: tokenizer.pad(),
        decoding: decoding(recipe),
    };
    let rows: Vec<Vec<i64>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), n))
        .collect();
    let mut mine = Vec::new();
    let mut done = 0;
    progress.start(phase, rows.len() as u64);
    // With a group, each rank generates its share of the chunks; a chunk's
    // stream and batch are the same on any rank.
    let chunks = rows.chunks(GENERATION_CHUNK);
    let count = chunks.len();
    for (i, chunk) in chunks.enumerate() {
        if !data_parallel::owns(group, i) {
            continue;
        }
        let mut rng = StdRng::seed_from_u64(derive_seed(
            recipe.train.seed,
            &format!("eval-sampling-{i}"),
        ));
        mine.push((i, generate(model, chunk, &options, &mut rng)));
        done += chunk.len();
        progress.update(done as u64, "");
    }
    progress.finish();
    data_parallel::gather_chunks(group, mine, count)
}

/// The reference's responses to the eval prompts, cached per (reference,
/// prompts, decoding, samples, seed): every run of a sweep compares with the same ones.
fn reference_responses(
    request: &RunRequest<'_>,
    reference: &Reference,
    tokenizer: &dyn Tokenize,
    examples: &[Scorable],
    prompts: &[Vec<i64>],
    progress: &mut dyn Progress,
) -> Result<Vec<String>> {
    let recipe = request.recipe;
    // The prompt texts identify the responses; a prompt file's prompts are
    // also told apart by their context (absent for tasks, so ids stay).
    let texts: Vec<String> = examples
        .iter()
        .map(|e| lpo_data::prompt_key(e.context(), e.prompt()))
        .collect();
    let e = &recipe.eval;
    let id = content_id(
        "reference-eval",
        &(
            PROMPT_ROOM,
            lpo_model::generate::SAMPLER,
            lpo_model::products(),
            &reference.meta.id,
            &texts,
            format!("{:?}", e.decoding),
            e.temperature,
            e.top_p,
            e.max_new_tokens,
            e.samples,
            recipe.train.seed,
        ),
    );
    let (path, lock) = request.layout.cache_entry("reference-eval", &id, "json");
    let read = |path: &Path| -> Result<Vec<String>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    };
    lpo_results::cache::cached(&path, &lock, read, |path| {
        // Not shared among ranks: a cache entry is computed under its lock.
        let ids = respond(
            &reference.model,
            tokenizer,
            prompts,
            recipe,
            None,
            progress,
            "reference responses",
        )?;
        let responses: Vec<String> = ids.iter().map(|r| tokenizer.decode(r)).collect();
        write_atomic(path, &serde_json::to_vec(&responses)?)?;
        Ok(responses)
    })
}

/// Mean over each example's `n` samples of log pi(y|x) - log pi_ref(y|x), the
/// samples ending with the end token where generation stopped on it.
fn kl_estimates(
    (policy, reference): (&Mistral, &Mistral),
    tokenizer: &dyn Tokenize,
    prompts: &[Vec<i64>],
    samples: &[Vec<i64>],
    recipe: &Recipe,
    group: Option<&Group>,
    progress: &mut dyn Progress,
) -> Result<Vec<f64>> {
    let n = recipe.eval.samples as usize;
    let max_len = policy.config().max_position_embeddings as usize;
    let max_new = recipe.eval.max_new_tokens as usize;
    let responses: Vec<Vec<i64>> = samples
        .iter()
        .enumerate()
        .map(|(row, ids)| {
            let room = max_new.min(max_len.saturating_sub(prompts[row / n].len()));
            let mut r = ids.clone();
            if r.len() < room {
                r.push(tokenizer.eos());
            }
            r
        })
        .collect();
    let set = TrainSet {
        k: n,
        prompts: prompts.to_vec(),
        rewards: vec![0.0; responses.len()],
        mask: vec![true; responses.len()],
        responses,
        truncated: Default::default(),
    };
    let pad = tokenizer.pad();
    let logps = |model, phase, progress: &mut dyn Progress| {
        set_logps(model, &set, pad, group, progress, phase).map(|(sum, _)| sum)
    };
    let policy_sum = logps(policy, "KL: policy log-probs", progress)?;
    let reference_sum = logps(reference, "KL: reference log-probs", progress)?;
    let kl = (policy_sum - reference_sum).mean_dim(-1, false, Kind::Double);
    Ok(Vec::<f64>::try_from(kl.to_device(tch::Device::Cpu))?)
}

/// The report-table name of each example: its task, or its file's short
/// name unless two sources share that, then the source's full name.
fn group_names(examples: &[Scorable]) -> Vec<String> {
    let groups: Vec<String> = examples.iter().map(Scorable::group).collect();
    let mut sources_of: HashMap<String, std::collections::HashSet<&str>> = HashMap::new();
    for g in &groups {
        sources_of.entry(short_source(g)).or_default().insert(g);
    }
    groups
        .iter()
        .map(|g| match sources_of[&short_source(g)].len() {
            1 => short_source(g),
            _ => g.clone(),
        })
        .collect()
}

/// Mean reward and pass rate (share at the pass level; none for a reward
/// without one) of each example's `n` responses (example-major).
fn score(
    rewards: &Rewards,
    examples: &[Scorable],
    responses: &[String],
    n: usize,
) -> Result<Vec<(f64, Option<f64>)>> {
    let pairs: Vec<(&Scorable, &str)> = responses
        .iter()
        .enumerate()
        .map(|(j, r)| (&examples[j / n], r.as_str()))
        .collect();
    let scores = rewards.score(&pairs, None)?.rewards;
    Ok(examples
        .iter()
        .zip(scores.chunks(n))
        .map(|(e, r)| {
            let count = r.len().max(1) as f64;
            let pass = e
                .pass_level()
                .map(|level| r.iter().filter(|&&x| x >= level).count() as f64 / count);
            (r.iter().sum::<f64>() / count, pass)
        })
        .collect())
}

/// A baseline's per-prompt numbers: first response, mean reward, pass rate.
type BaselineRow = (String, f64, Option<f64>);

/// Evaluates `policy` on `examples` against the request's baseline.
pub fn generations(
    request: &RunRequest<'_>,
    reference: &Reference,
    policy: &Mistral,
    tokenizer: &dyn Tokenize,
    rewards: &Rewards,
    examples: &[Scorable],
    progress: &mut dyn Progress,
) -> Result<Vec<EvalRecord>> {
    let recipe = request.recipe;
    let n = recipe.eval.samples as usize;
    let window = Window::new(recipe, policy.config().max_position_embeddings as usize);
    let prompts: Vec<Vec<i64>> = examples
        .iter()
        .map(|e| encode_prompt(tokenizer, e.context(), e.prompt(), &window))
        .collect::<Result<_>>()?;
    let group = request.group;
    let samples = respond(
        policy,
        tokenizer,
        &prompts,
        recipe,
        group,
        progress,
        "evaluation",
    )?;
    let kl = kl_estimates(
        (policy, &reference.model),
        tokenizer,
        &prompts,
        &samples,
        recipe,
        group,
        progress,
    )?;
    let texts: Vec<String> = samples.iter().map(|r| tokenizer.decode(r)).collect();
    let tasks = group_names(examples);
    let ids = ids(&tasks, recipe.train.seed);
    let splits: Vec<Split> = examples
        .iter()
        .map(|e| {
            let key = lpo_data::prompt_key(e.context(), e.prompt());
            heldout_split(e.task(), &key, recipe.eval.validation_fraction)
        })
        .collect();
    let (baseline_name, baseline) = baseline_rows(
        request, reference, tokenizer, rewards, examples, &prompts, &ids, progress,
    )?;
    let scored = score(rewards, examples, &texts, n)?;
    Ok(examples
        .iter()
        .enumerate()
        .zip(baseline)
        .map(
            |((i, e), (baseline_response, baseline_reward, baseline_pass))| {
                let own = &texts[i * n..(i + 1) * n];
                let (policy_reward, policy_pass) = scored[i];
                EvalRecord {
                    prompt_id: ids[i].clone(),
                    split: splits[i],
                    task: tasks[i].clone(),
                    prompt: e.prompt().to_string(),
                    samples: n as u32,
                    policy_response: own[0].clone(),
                    policy_reward,
                    policy_pass,
                    policy_kl: kl[i],
                    baseline: baseline_name.clone(),
                    baseline_response,
                    baseline_reward,
                    baseline_pass,
                    outcome: Outcome::of(policy_reward, baseline_reward),
                }
            },
        )
        .collect())
}

/// The baseline's name and per-prompt numbers: the reference's sampled
/// responses, or another complete run's `eval.csv` (same prompts and samples).
#[allow(clippy::too_many_arguments)]
fn baseline_rows(
    request: &RunRequest<'_>,
    reference: &Reference,
    tokenizer: &dyn Tokenize,
    rewards: &Rewards,
    examples: &[Scorable],
    prompts: &[Vec<i64>],
    ids: &[String],
    progress: &mut dyn Progress,
) -> Result<(String, Vec<BaselineRow>)> {
    let n = request.recipe.eval.samples as usize;
    match &request.baseline {
        Baseline::Reference => {
            let responses =
                reference_responses(request, reference, tokenizer, examples, prompts, progress)?;
            ensure!(
                responses.len() == examples.len() * n,
                "cached reference responses hold {} rows, expected {}",
                responses.len(),
                examples.len() * n
            );
            let scored = score(rewards, examples, &responses, n)?;
            let rows = responses
                .chunks(n)
                .zip(scored)
                .map(|(own, (reward, pass))| (own[0].clone(), reward, pass))
                .collect();
            Ok(("reference".into(), rows))
        }
        Baseline::Run { id, dir } => {
            let summary = Summary::read(dir)?;
            ensure!(
                summary.is_some_and(|s| s.status == Status::Complete),
                "baseline run {id} is not complete; run it first (lpo sweep orders baselines first)"
            );
            let rows: HashMap<String, EvalRecord> = records::read_eval(dir)?
                .into_iter()
                .map(|r| (r.prompt_id.clone(), r))
                .collect();
            let scored = ids
                .iter()
                .zip(examples)
                .map(|(pid, e)| {
                    let row = rows
                        .get(pid)
                        .with_context(|| format!("baseline run {id} has no prompt {pid}"))?;
                    ensure!(
                        row.prompt == e.prompt() && row.samples as usize == n,
                        "baseline run {id} evaluated different prompts or sample counts ({pid})"
                    );
                    Ok((
                        row.policy_response.clone(),
                        row.policy_reward,
                        row.policy_pass,
                    ))
                })
                .collect::<Result<_>>()?;
            Ok((id.clone(), scored))
        }
    }
}

/// Headline numbers of the test split.
pub fn headline(records: &[EvalRecord], examples: &[Scorable]) -> Headline {
    let test: Vec<(&EvalRecord, &Scorable)> = records
        .iter()
        .zip(examples)
        .filter(|(r, _)| r.split == Split::Test)
        .collect();
    let n = test.len();
    let count = |o| test.iter().filter(|(r, _)| r.outcome == o).count();
    let (wins, ties, losses) = (
        count(Outcome::Win),
        count(Outcome::Tie),
        count(Outcome::Loss),
    );
    let mean = |f: &dyn Fn(&EvalRecord) -> f64| {
        test.iter().map(|(r, _)| f(r)).sum::<f64>() / n.max(1) as f64
    };
    let with_accuracy: Vec<&EvalRecord> = test
        .iter()
        .filter(|(_, e)| e.has_accuracy())
        .map(|(r, _)| *r)
        .collect();
    let accuracy = |f: &dyn Fn(&EvalRecord) -> f64| {
        (!with_accuracy.is_empty())
            .then(|| with_accuracy.iter().map(|r| f(r)).sum::<f64>() / with_accuracy.len() as f64)
    };
    Headline {
        baseline: records
            .first()
            .map(|r| r.baseline.clone())
            .unwrap_or_default(),
        prompts: n,
        samples: records.first().map_or(1, |r| r.samples),
        wins,
        ties,
        losses,
        // Ties dropped, as `lpo report` and its sign test count it (0.5 when
        // every prompt ties).
        win_rate: if wins + losses > 0 {
            wins as f64 / (wins + losses) as f64
        } else {
            0.5
        },
        policy_reward: mean(&|r| r.policy_reward),
        baseline_reward: mean(&|r| r.baseline_reward),
        policy_accuracy: accuracy(&|r| r.policy_pass.unwrap_or(0.0)),
        baseline_accuracy: accuracy(&|r| r.baseline_pass.unwrap_or(0.0)),
        kl: mean(&|r| r.policy_kl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_metrics_closed_forms() {
        // Rewards 3 > 2 > 1; s orders the top two wrongly.
        let m = list_metrics(&[3.0, 2.0, 1.0], &[0.5, 1.0, 0.0]);
        assert_eq!((m.pairs, m.correct), (3, 2));
        // Margins: (0.5-1) + (0.5-0) + (1-0) = 1.0 over 3 pairs.
        assert!((m.margin.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // Gains r - 1 = [2, 1, 0]. Order by s: 1, 0, 2 -> 1/log2(2) + 2/log2(3).
        // Ideal: 2/log2(2) + 1/log2(3).
        let dcg = 1.0 + 2.0 / 3f64.log2();
        let ideal = 2.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg.unwrap() - dcg / ideal).abs() < 1e-12);
        // A perfect order has NDCG 1 and full accuracy.
        let m = list_metrics(&[3.0, 2.0, 1.0], &[3.0, 2.0, 1.0]);
        assert_eq!((m.pairs, m.correct), (3, 3));
        assert!((m.ndcg.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn tied_lists_have_no_pairs_margin_or_ndcg() {
        let m = list_metrics(&[5.0, 5.0], &[1.0, -1.0]);
        assert_eq!((m.pairs, m.correct, m.margin, m.ndcg), (0, 0, None, None));
    }

    #[test]
    fn held_out_items_split_by_content() {
        // A task prompt's split is its part of the task's space, whatever
        // eval.validation_fraction says; a file record's follows the share.
        let task_prompts: Vec<String> = (1..60).map(|a| format!("{a}+7=")).collect();
        for p in task_prompts
            .iter()
            .filter(|p| Task::Arith.part(p) != Part::Train)
        {
            let want = match Task::Arith.part(p) {
                Part::Validation => Split::Validation,
                _ => Split::Test,
            };
            for share in [0.1, 0.5, 1.0] {
                assert_eq!(heldout_split(Some(Task::Arith), p, share), want, "{p}");
            }
        }
        let keys: Vec<String> = (0..2000).map(|i| format!("record {i}")).collect();
        let validation = |share| {
            keys.iter()
                .filter(|k| heldout_split(None, k, share) == Split::Validation)
                .count()
        };
        assert_eq!(validation(1.0), 2000);
        let half = validation(0.5);
        assert!((900..1100).contains(&half), "{half}");
        assert_eq!(
            ids(&["a".into(), "b".into(), "a".into()], 3),
            ["a-s3-00000", "b-s3-00000", "a-s3-00001"]
        );
        assert_eq!(short_source("data/my lists.jsonl"), "my lists");
        assert_eq!(short_source("arith"), "arith");
    }
}
