//! One planned run, start to finish: data, training with checkpoints,
//! evaluation, and the files of its results directory.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use lpo_data::tokenizer::Tokenize;
use lpo_loss::{LossInput, LossParams};
use lpo_model::checkpoint;
use lpo_model::generate::{generate, Decoding, GenerateOptions};
use lpo_model::logps::response_logps;
use lpo_model::Mistral;
use lpo_recipe::{Decoding as EvalDecoding, Normalize, Recipe};
use lpo_results::records::{self, CHECKPOINT, CONFIG, METRICS, TIMING};
use lpo_results::{
    content_id, derive_seed, write_atomic, EvalRecord, FileLock, Headline, Layout, MetricsRow,
    Outcome, Status, Summary, TimingRow, Timings,
};
use lpo_tasks::Example;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::batch::{batch_indices, TrainSet};
use crate::optim::{learning_rate, AdamW};
use crate::reference::Reference;
use crate::sources::encode_pair;
use crate::{lists, reference, sources, Progress};

/// What the policy is compared with at evaluation.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// The reference (SFT) model.
    Reference,
    /// Another run's policy responses, read from its `eval.csv`.
    Run {
        /// Its id.
        id: String,
        /// Its directory.
        dir: PathBuf,
    },
}

/// Everything needed to execute one run.
pub struct RunRequest<'a> {
    /// The run's resolved recipe.
    pub recipe: &'a Recipe,
    /// Its id.
    pub run_id: &'a str,
    /// Its swept keys.
    pub assignments: BTreeMap<String, serde_json::Value>,
    /// The results root.
    pub layout: &'a Layout,
    /// The device.
    pub device: Device,
    /// The evaluation baseline.
    pub baseline: Baseline,
}

/// How a request ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// Trained and evaluated now.
    Complete(Summary),
    /// Already complete from an earlier invocation; nothing was redone.
    AlreadyComplete(Summary),
    /// Stopped by an error; the summary names the step and cause.
    Failed(Summary),
    /// Another process holds the run's lock.
    Locked,
}

/// Progress of the current run, kept so a failure can say where it stopped.
struct RunState {
    summary: Summary,
    metrics: Vec<MetricsRow>,
    timing: Vec<TimingRow>,
    dir: PathBuf,
}

impl RunState {
    fn write_curves(&self) -> Result<()> {
        write_atomic(&self.dir.join(METRICS), &records::to_csv(&self.metrics)?)?;
        write_atomic(&self.dir.join(TIMING), &records::to_csv(&self.timing)?)
    }
}

/// Runs `request` unless it is complete or locked. Errors inside the run
/// (a NaN loss, a bad data line, out of memory, even a panic) become a
/// `Failed` summary; only failures to write the results directory itself
/// are returned as errors.
pub fn execute(request: &RunRequest<'_>, progress: &mut dyn Progress) -> Result<RunOutcome> {
    let recipe = request.recipe;
    let dir = request.layout.run_dir(&recipe.name, request.run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let Some(_lock) = FileLock::try_acquire(&dir.join(".lock"))? else {
        return Ok(RunOutcome::Locked);
    };
    if let Some(summary) = Summary::read(&dir)? {
        if summary.status == Status::Complete && summary.run_id == request.run_id {
            return Ok(RunOutcome::AlreadyComplete(summary));
        }
    }
    let config = toml::to_string_pretty(recipe).context("serializing the run's recipe")?;
    write_atomic(&dir.join(CONFIG), config.as_bytes())?;
    let mut state = RunState {
        summary: Summary {
            run_id: request.run_id.to_string(),
            recipe: recipe.name.clone(),
            label: recipe.method_label(),
            assignments: request.assignments.clone(),
            seed: recipe.train.seed,
            status: Status::Running,
            steps_done: 0,
            steps: recipe.train.steps,
            failed_step: None,
            error: None,
            resumed_from: None,
            device: format!("{:?}", request.device).to_lowercase(),
            reference: String::new(),
            lists: String::new(),
            timings: Timings::default(),
            headline: None,
        },
        metrics: Vec::new(),
        timing: Vec::new(),
        dir: dir.clone(),
    };
    state.summary.write(&dir)?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(request, &mut state, progress)));
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    };
    match error {
        None => {
            state.summary.status = Status::Complete;
            state.summary.write(&dir)?;
            Ok(RunOutcome::Complete(state.summary))
        }
        Some(message) => {
            state.summary.status = Status::Failed;
            state.summary.error = Some(message);
            if state.summary.failed_step.is_none() && !state.metrics.is_empty() {
                state.summary.failed_step = Some(state.summary.steps_done);
            }
            state.write_curves()?;
            state.summary.write(&dir)?;
            Ok(RunOutcome::Failed(state.summary))
        }
    }
}

/// Saved with every checkpoint; written last, so its presence means the
/// checkpoint is whole.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: u32,
}

fn run(request: &RunRequest<'_>, state: &mut RunState, progress: &mut dyn Progress) -> Result<()> {
    let recipe = request.recipe;
    let device = request.device;
    let started = Instant::now();
    let srcs = sources::load_sources(recipe)?;
    let (tokenizer, tokenizer_id) = sources::tokenizer(recipe)?;
    let mut reference = reference::obtain(
        recipe,
        &srcs,
        tokenizer.as_ref(),
        &tokenizer_id,
        request.layout,
        device,
        progress,
    )?;
    if device.is_cuda() {
        reference.vs.bfloat16();
    }
    state.summary.reference = reference.meta.id.clone();
    state.summary.timings.reference = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let lists = lists::obtain(
        recipe,
        &srcs,
        tokenizer.as_ref(),
        &reference,
        request.layout,
        progress,
    )?;
    state.summary.lists = lists.id.clone();
    let (train_lists, _dropped) = lists.in_form(recipe.data.form, recipe.train.seed);
    ensure!(
        !train_lists.is_empty(),
        "no training lists (all rewards tie?)"
    );
    let k = match recipe.data.form {
        lpo_recipe::DataForm::Reward => recipe.data.list_size as usize,
        lpo_recipe::DataForm::Preference => 2,
    };
    let max_len = reference.model.config().max_position_embeddings as usize;
    let set = TrainSet::build(&train_lists, tokenizer.as_ref(), k, max_len);
    let (ref_sum, ref_tokens) = reference_logps(
        request,
        &reference,
        &lists.id,
        &set,
        tokenizer.pad(),
        progress,
    )?;
    state.summary.timings.data = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (policy_vs, policy) = train(
        request,
        state,
        &reference,
        &set,
        &ref_sum,
        &ref_tokens,
        tokenizer.pad(),
        progress,
    )?;
    state.summary.timings.train = started.elapsed().as_secs_f64();
    drop(policy_vs);

    let started = Instant::now();
    let examples = lists::eval_examples(recipe, &srcs, &lists.prompts())?;
    let records = evaluate(
        request,
        &reference,
        &policy,
        tokenizer.as_ref(),
        &examples,
        progress,
    )?;
    write_atomic(&state.dir.join(records::EVAL), &records::to_csv(&records)?)?;
    state.summary.headline = Some(headline(&records, &examples));
    state.summary.timings.eval = started.elapsed().as_secs_f64();
    Ok(())
}

/// Reference log-probabilities of every training response, computed once per
/// (reference, dataset, form) and cached.
fn reference_logps(
    request: &RunRequest<'_>,
    reference: &Reference,
    lists_id: &str,
    set: &TrainSet,
    pad: i64,
    progress: &mut dyn Progress,
) -> Result<(Tensor, Tensor)> {
    let recipe = request.recipe;
    let id = content_id(
        "reference-logps",
        &(
            &reference.meta.id,
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
    let _lock = FileLock::acquire(&lock)?;
    if path.exists() {
        let t = checkpoint::read_tensors(&path, request.device)?;
        let sum = t
            .get("sum")
            .context("cached reference log-probabilities lack `sum`")?;
        let tokens = t
            .get("tokens")
            .context("cached reference log-probabilities lack `tokens`")?;
        return Ok((sum.shallow_clone(), tokens.shallow_clone()));
    }
    const CHUNK: usize = 32;
    progress.start("reference log-probs", set.len() as u64);
    let mut sums = Vec::new();
    let mut counts = Vec::new();
    tch::no_grad(|| {
        for start in (0..set.len()).step_by(CHUNK) {
            let indices: Vec<usize> = (start..(start + CHUNK).min(set.len())).collect();
            let (prompts, responses) = set.select(&indices);
            let out = response_logps(&reference.model, &prompts, &responses, set.k, pad);
            sums.push(out.sum.to_kind(Kind::Float));
            counts.push(out.tokens);
            progress.update((start + indices.len()) as u64, "");
        }
    });
    progress.finish();
    let sum = Tensor::cat(&sums, 0);
    let tokens = Tensor::cat(&counts, 0);
    let tensors = BTreeMap::from([
        ("sum".to_string(), sum.shallow_clone()),
        ("tokens".to_string(), tokens.shallow_clone()),
    ]);
    std::fs::create_dir_all(request.layout.cache_dir())?;
    checkpoint::write_tensors(&path, &tensors)?;
    Ok((sum, tokens))
}

/// The directory holding the newest whole checkpoint, if any. Checkpoints are
/// written to `checkpoint-new/` and swapped in by renames; a crash between the
/// renames leaves `checkpoint-new/` (whole, since its state file is written
/// last) or `checkpoint-old/`.
fn existing_checkpoint(dir: &Path) -> Option<PathBuf> {
    ["checkpoint", "checkpoint-new", "checkpoint-old"]
        .iter()
        .map(|name| dir.join(name))
        .find(|d| d.join("state.json").exists())
}

fn save_checkpoint(
    state: &RunState,
    vs: &nn::VarStore,
    model: &Mistral,
    opt: Option<&AdamW>,
    step: u32,
) -> Result<()> {
    let new = state.dir.join("checkpoint-new");
    let current = state.dir.join(CHECKPOINT);
    let old = state.dir.join("checkpoint-old");
    let _ = std::fs::remove_dir_all(&new);
    checkpoint::save(vs, model.config(), &new)?;
    if let Some(opt) = opt {
        checkpoint::write_tensors(&new.join("optimizer.safetensors"), &opt.state())?;
    }
    write_atomic(&new.join(METRICS), &records::to_csv(&state.metrics)?)?;
    write_atomic(&new.join(TIMING), &records::to_csv(&state.timing)?)?;
    write_atomic(
        &new.join("state.json"),
        serde_json::to_string(&CheckpointState { step })?.as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&old);
    if current.exists() {
        std::fs::rename(&current, &old)?;
    }
    std::fs::rename(&new, &current)?;
    let _ = std::fs::remove_dir_all(&old);
    state.write_curves()
}

#[allow(clippy::too_many_arguments)]
fn train(
    request: &RunRequest<'_>,
    state: &mut RunState,
    reference: &Reference,
    set: &TrainSet,
    ref_sum: &Tensor,
    ref_tokens: &Tensor,
    pad: i64,
    progress: &mut dyn Progress,
) -> Result<(nn::VarStore, Mistral)> {
    let recipe = request.recipe;
    let t = &recipe.train;
    let device = request.device;
    let resume = existing_checkpoint(&state.dir);
    let (mut vs, policy) = match &resume {
        Some(dir) => checkpoint::load(dir, device)?,
        None => reference.policy(device)?,
    };
    if device.is_cuda() {
        vs.bfloat16();
    }
    let mut opt = AdamW::new(&vs, t.weight_decay);
    let mut start = 0;
    if let Some(dir) = &resume {
        let saved: CheckpointState =
            serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
        start = saved.step;
        if saved.step < t.steps {
            opt.load_state(&checkpoint::read_tensors(
                &dir.join("optimizer.safetensors"),
                device,
            )?)?;
        }
        state.metrics = records::read_rows::<MetricsRow>(&dir.join(METRICS))?
            .into_iter()
            .filter(|r| r.step < start)
            .collect();
        state.timing = records::read_rows::<TimingRow>(&dir.join(TIMING))?
            .into_iter()
            .filter(|r| r.step < start)
            .collect();
        state.summary.resumed_from = Some(start);
        state.summary.steps_done = start;
    }
    let micro = t.grad_accum.max(1) as usize;
    let per_micro = (t.batch_size as usize).div_ceil(micro).max(1);
    progress.start("training", u64::from(t.steps));
    progress.update(u64::from(start), "");
    for step in start..t.steps {
        let step_started = Instant::now();
        state.summary.failed_step = Some(step);
        let params = LossParams::at_step(&recipe.loss, u64::from(step), u64::from(t.steps));
        opt.zero_grad();
        let mut loss_sum = 0.0;
        let mut stats = lpo_loss::LossStats::default();
        let mut tokens = 0;
        for m in 0..micro {
            let indices = batch_indices(set.len(), per_micro, micro, step as usize, m, t.seed);
            let (prompts, responses) = set.select(&indices);
            let out = response_logps(&policy, &prompts, &responses, set.k, pad);
            let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device);
            let rs = ref_sum.index_select(0, &idx);
            let (pol, refl) = match recipe.loss.normalize {
                Normalize::Sum => (out.sum, rs),
                Normalize::Mean => (
                    out.sum / out.tokens.clamp_min(1.0),
                    rs / ref_tokens.index_select(0, &idx).clamp_min(1.0),
                ),
            };
            let (rewards, mask) = set.targets(&indices, device);
            let result = lpo_loss::compute(
                &params,
                &LossInput {
                    policy_logps: &pol,
                    reference_logps: &refl,
                    rewards: &rewards,
                    mask: &mask,
                },
            );
            let value = result.loss.double_value(&[]);
            if !value.is_finite() {
                bail!("loss is {value} at step {step}");
            }
            (result.loss / micro as f64).backward();
            loss_sum += value;
            let s = result.stats;
            stats.chosen_logp += s.chosen_logp / micro as f64;
            stats.rejected_logp += s.rejected_logp / micro as f64;
            stats.chosen_reward += s.chosen_reward / micro as f64;
            stats.rejected_reward += s.rejected_reward / micro as f64;
            stats.ranking_accuracy += s.ranking_accuracy / micro as f64;
            tokens += set.token_count(&indices);
        }
        let grad_norm = opt.clip_grad_norm(t.grad_clip);
        if !grad_norm.is_finite() {
            bail!("gradient norm is {grad_norm} at step {step}");
        }
        let lr = learning_rate(
            t.learning_rate,
            t.lr_schedule,
            t.warmup_steps,
            step,
            t.steps,
        );
        opt.step(lr);
        let loss = loss_sum / micro as f64;
        state.metrics.push(MetricsRow {
            step,
            loss,
            beta: params.beta,
            alpha: params.alpha,
            gamma: params.gamma,
            lr,
            chosen_logp: stats.chosen_logp,
            rejected_logp: stats.rejected_logp,
            chosen_reward: stats.chosen_reward,
            rejected_reward: stats.rejected_reward,
            ranking_accuracy: stats.ranking_accuracy,
            grad_norm,
            tokens,
        });
        let seconds = step_started.elapsed().as_secs_f64();
        state.timing.push(TimingRow {
            step,
            seconds,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
        });
        state.summary.steps_done = step + 1;
        state.summary.failed_step = None;
        progress.update(u64::from(step + 1), &format!("loss {loss:.4}"));
        let every = t.checkpoint_every;
        if every > 0 && (step + 1) % every == 0 && step + 1 < t.steps {
            save_checkpoint(state, &vs, &policy, Some(&opt), step + 1)?;
            state.summary.write(&state.dir)?;
        }
    }
    progress.finish();
    // The final weights; optimizer state is no longer needed.
    save_checkpoint(state, &vs, &policy, None, t.steps)?;
    Ok((vs, policy))
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

/// Generates one response per example, in batches.
///
/// Sampling uses common random numbers: chunk i of the prompts always draws
/// from the stream seeded by (seed, i), row by row and step by step, for the
/// policy and for the baseline alike. Paired comparisons then differ only
/// where the models differ (a policy equal to the reference ties on every
/// prompt), which removes the sampling noise of two independent streams.
fn respond(
    model: &Mistral,
    tokenizer: &dyn Tokenize,
    examples: &[Example],
    recipe: &Recipe,
    progress: &mut dyn Progress,
    phase: &str,
) -> Vec<String> {
    const CHUNK: usize = 64;
    let options = GenerateOptions {
        max_new_tokens: recipe.eval.max_new_tokens as usize,
        eos: tokenizer.eos(),
        pad: tokenizer.pad(),
        decoding: decoding(recipe),
    };
    let max_len = model.config().max_position_embeddings as usize;
    let mut out = Vec::with_capacity(examples.len());
    progress.start(phase, examples.len() as u64);
    for (i, chunk) in examples.chunks(CHUNK).enumerate() {
        let mut rng = StdRng::seed_from_u64(derive_seed(
            recipe.train.seed,
            &format!("eval-sampling-{i}"),
        ));
        let prompts: Vec<Vec<i64>> = chunk
            .iter()
            .map(|e| encode_pair(tokenizer, &e.prompt, None, max_len).0)
            .collect();
        out.extend(
            generate(model, &prompts, &options, &mut rng)
                .iter()
                .map(|ids| tokenizer.decode(ids)),
        );
        progress.update(out.len() as u64, "");
    }
    progress.finish();
    out
}

/// The reference's responses to the eval prompts, cached per (reference,
/// prompts, decoding, seed): every run of a sweep compares with the same ones.
fn reference_responses(
    request: &RunRequest<'_>,
    reference: &Reference,
    tokenizer: &dyn Tokenize,
    examples: &[Example],
    progress: &mut dyn Progress,
) -> Result<Vec<String>> {
    let recipe = request.recipe;
    let prompts: Vec<&str> = examples.iter().map(|e| e.prompt.as_str()).collect();
    let e = &recipe.eval;
    let id = content_id(
        "reference-eval",
        &(
            &reference.meta.id,
            &prompts,
            format!("{:?}", e.decoding),
            e.temperature,
            e.top_p,
            e.max_new_tokens,
            recipe.train.seed,
        ),
    );
    let (path, lock) = request.layout.cache_entry("reference-eval", &id, "json");
    let _lock = FileLock::acquire(&lock)?;
    if path.exists() {
        return serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()));
    }
    let responses = respond(
        &reference.model,
        tokenizer,
        examples,
        recipe,
        progress,
        "reference responses",
    );
    write_atomic(&path, &serde_json::to_vec(&responses)?)?;
    Ok(responses)
}

fn evaluate(
    request: &RunRequest<'_>,
    reference: &Reference,
    policy: &Mistral,
    tokenizer: &dyn Tokenize,
    examples: &[Example],
    progress: &mut dyn Progress,
) -> Result<Vec<EvalRecord>> {
    let recipe = request.recipe;
    let policy_responses = respond(policy, tokenizer, examples, recipe, progress, "evaluation");
    let ids: Vec<String> = (0..examples.len())
        .map(|i| format!("{}-{i:05}", examples[i].task.name()))
        .collect();
    let (baseline_name, baseline): (String, Vec<(String, f64)>) = match &request.baseline {
        Baseline::Reference => {
            let responses = reference_responses(request, reference, tokenizer, examples, progress)?;
            let scored = examples
                .iter()
                .zip(responses)
                .map(|(e, r)| {
                    let reward = e.task.reward(e, &r);
                    (r, reward)
                })
                .collect();
            ("reference".into(), scored)
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
                        row.prompt == e.prompt,
                        "baseline run {id} evaluated different prompts ({pid})"
                    );
                    Ok((row.policy_response.clone(), row.policy_reward))
                })
                .collect::<Result<_>>()?;
            (id.clone(), scored)
        }
    };
    Ok(examples
        .iter()
        .zip(policy_responses)
        .zip(baseline)
        .zip(ids)
        .map(
            |(((e, response), (baseline_response, baseline_reward)), prompt_id)| {
                let policy_reward = e.task.reward(e, &response);
                EvalRecord {
                    prompt_id,
                    task: e.task.name().to_string(),
                    prompt: e.prompt.clone(),
                    policy_response: response,
                    policy_reward,
                    baseline: baseline_name.clone(),
                    baseline_response,
                    baseline_reward,
                    outcome: Outcome::of(policy_reward, baseline_reward),
                }
            },
        )
        .collect())
}

fn headline(records: &[EvalRecord], examples: &[Example]) -> Headline {
    let n = records.len();
    let count = |o| records.iter().filter(|r| r.outcome == o).count();
    let (wins, ties, losses) = (
        count(Outcome::Win),
        count(Outcome::Tie),
        count(Outcome::Loss),
    );
    let mean =
        |f: &dyn Fn(&EvalRecord) -> f64| records.iter().map(f).sum::<f64>() / n.max(1) as f64;
    let with_accuracy: Vec<&EvalRecord> = records
        .iter()
        .zip(examples)
        .filter(|(_, e)| e.task.has_accuracy())
        .map(|(r, _)| r)
        .collect();
    let accuracy = |f: &dyn Fn(&EvalRecord) -> f64| {
        (!with_accuracy.is_empty()).then(|| {
            with_accuracy
                .iter()
                .filter(|r| f(r) >= lpo_tasks::MAX_REWARD)
                .count() as f64
                / with_accuracy.len() as f64
        })
    };
    Headline {
        baseline: records
            .first()
            .map(|r| r.baseline.clone())
            .unwrap_or_default(),
        prompts: n,
        wins,
        ties,
        losses,
        win_rate: (wins as f64 + 0.5 * ties as f64) / n.max(1) as f64,
        policy_reward: mean(&|r| r.policy_reward),
        baseline_reward: mean(&|r| r.baseline_reward),
        policy_accuracy: accuracy(&|r| r.policy_reward),
        baseline_accuracy: accuracy(&|r| r.baseline_reward),
    }
}
