//! One planned run, start to finish: data, training with checkpoints,
//! evaluation, and the files of its results directory.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lpo_loss::{LossInput, LossParams};
use lpo_model::checkpoint;
use lpo_model::logps::response_logps;
use lpo_model::Mistral;
use lpo_recipe::{Normalize, Recipe};
use lpo_results::records::{self, CHECKPOINT, CONFIG, CURVES, METRICS, TIMING};
use lpo_results::{
    remove_stale_temporaries, write_atomic, CurveRow, FileLock, Layout, MetricsRow, Status,
    Summary, TimingRow, Timings,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::batch::batch_indices;
use crate::eval::{self, HeldoutSet};
use crate::optim::{learning_rate, AdamW};
use crate::rounds::{RoundData, RunInputs};
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
    curves: Vec<CurveRow>,
    dir: PathBuf,
    /// Training is over: a failure now is the evaluation's.
    evaluating: bool,
}

impl RunState {
    /// Writes metrics.csv, timing.csv and curves.csv into `dir`.
    fn write_curves_to(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(METRICS),
            &records::to_csv_with_header(&self.metrics)?,
        )?;
        write_atomic(
            &dir.join(TIMING),
            &records::to_csv_with_header(&self.timing)?,
        )?;
        if !self.curves.is_empty() {
            write_atomic(&dir.join(CURVES), &records::to_csv(&self.curves)?)?;
        }
        Ok(())
    }

    fn write_curves(&self) -> Result<()> {
        self.write_curves_to(&self.dir)
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
    // Writes killed before their rename (here, or of shared cache entries)
    // leave temporaries behind; their writers are gone, so they can go.
    for stale_dir in [dir.clone(), request.layout.cache_dir()] {
        for path in remove_stale_temporaries(&stale_dir)? {
            eprintln!("removed a stale temporary: {}", path.display());
        }
    }
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
            threads: u32::try_from(tch::get_num_threads()).unwrap_or(0),
            reference: String::new(),
            lists: String::new(),
            round_lists: Vec::new(),
            truncated: Default::default(),
            timings: Timings::default(),
            headline: None,
            heldout: None,
        },
        metrics: Vec::new(),
        timing: Vec::new(),
        curves: Vec::new(),
        dir: dir.clone(),
        evaluating: false,
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
            // An error between steps (e.g. writing a checkpoint) happened
            // after the last finished step; one in evaluation has no step.
            if state.summary.failed_step.is_none() && !state.metrics.is_empty() && !state.evaluating
            {
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
    /// CPU threads the run used: libtorch's reductions depend on it, so a
    /// resume with another count does not reproduce an uninterrupted run.
    #[serde(default)]
    threads: Option<i32>,
}

fn run(request: &RunRequest<'_>, state: &mut RunState, progress: &mut dyn Progress) -> Result<()> {
    let recipe = request.recipe;
    let device = request.device;
    let started = Instant::now();
    let sources = sources::load_sources(recipe)?;
    let (tokenizer, tokenizer_id) = sources::tokenizer(recipe)?;
    let mut reference = reference::obtain(
        recipe,
        &sources,
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
        &sources,
        tokenizer.as_ref(),
        &reference,
        request.layout,
        progress,
    )?;
    state.summary.lists = lists.id.clone();
    let heldout = HeldoutSet::build(
        recipe,
        &lists.heldout,
        tokenizer.as_ref(),
        &reference.model,
        progress,
    )?;
    let inputs = RunInputs {
        request,
        reference,
        sources,
        tokenizer,
        lists,
        heldout,
    };
    state.summary.timings.data = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (policy_vs, policy) = train(&inputs, state, progress)?;
    state.summary.timings.train = started.elapsed().as_secs_f64();
    drop(policy_vs);

    let started = Instant::now();
    state.evaluating = true;
    evaluate(&inputs, state, &policy, progress).context("evaluation")?;
    state.summary.timings.eval = started.elapsed().as_secs_f64();
    Ok(())
}

/// The final policy on the held-out lists and the held-out prompts.
fn evaluate(
    inputs: &RunInputs<'_>,
    state: &mut RunState,
    policy: &Mistral,
    progress: &mut dyn Progress,
) -> Result<()> {
    let recipe = inputs.request.recipe;
    let total = u64::from(recipe.train.steps * recipe.train.rounds);
    let final_beta = recipe.loss.beta.at(total, total);
    if !inputs.heldout.is_empty() {
        let (rows, headline) = inputs.heldout.evaluate(policy, final_beta, progress);
        write_atomic(&state.dir.join(records::HELDOUT), &records::to_csv(&rows)?)?;
        state.summary.heldout = Some(headline);
    }
    let examples = lists::eval_examples(recipe, &inputs.sources, &inputs.lists.prompts())?;
    if !examples.is_empty() {
        let rows = eval::generations(
            inputs.request,
            &inputs.reference,
            policy,
            inputs.tokenizer.as_ref(),
            &examples,
            progress,
        )?;
        write_atomic(&state.dir.join(records::EVAL), &records::to_csv(&rows)?)?;
        state.summary.headline = Some(eval::headline(&rows, &examples));
    }
    Ok(())
}

/// The checkpoints a run may resume from, newest first. Checkpoints are
/// written to `checkpoint-new/` and swapped in by renames; a crash between the
/// renames leaves `checkpoint-new/` (whole, since its state file is written
/// last) or `checkpoint-old/`.
fn checkpoint_candidates(dir: &Path) -> Vec<PathBuf> {
    ["checkpoint", "checkpoint-new", "checkpoint-old"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|d| d.join("state.json").exists())
        .collect()
}

/// The policy, optimizer and step to continue from: the newest checkpoint
/// that loads whole (one that lost its weights is skipped with a warning
/// and an older one tried), else the reference at step 0.
fn resume_point(
    inputs: &RunInputs<'_>,
    state: &mut RunState,
) -> Result<(nn::VarStore, Mistral, AdamW, u32)> {
    let t = &inputs.request.recipe.train;
    let device = inputs.request.device;
    let start_from = |dir: Option<&Path>, state: &mut RunState| -> Result<_> {
        let (mut vs, policy) = match dir {
            Some(dir) => checkpoint::load(dir, device)?,
            None => inputs.reference.policy(device)?,
        };
        if device.is_cuda() {
            vs.bfloat16();
        }
        let mut opt = AdamW::new(&vs, t.weight_decay);
        let start = match dir {
            Some(dir) => resume_from(state, dir, &mut opt, t.steps * t.rounds, device)?,
            None => 0,
        };
        Ok((vs, policy, opt, start))
    };
    for dir in checkpoint_candidates(&state.dir) {
        match start_from(Some(&dir), state) {
            Ok(found) => return Ok(found),
            Err(e) => eprintln!(
                "checkpoint {} is unusable ({e:#}); trying an older one",
                dir.display()
            ),
        }
    }
    state.metrics.clear();
    state.timing.clear();
    state.curves.clear();
    state.summary.resumed_from = None;
    state.summary.steps_done = 0;
    start_from(None, state)
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
    state.write_curves_to(&new)?;
    write_atomic(
        &new.join("state.json"),
        serde_json::to_string(&CheckpointState {
            step,
            threads: Some(tch::get_num_threads()),
        })?
        .as_bytes(),
    )?;
    let _ = std::fs::remove_dir_all(&old);
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
    };
    if current.exists() {
        rename(&current, &old)?;
    }
    rename(&new, &current)?;
    let _ = std::fs::remove_dir_all(&old);
    state.write_curves()
}

fn train(
    inputs: &RunInputs<'_>,
    state: &mut RunState,
    progress: &mut dyn Progress,
) -> Result<(nn::VarStore, Mistral)> {
    let recipe = inputs.request.recipe;
    let t = &recipe.train;
    let total = t.steps * t.rounds;
    let (vs, policy, mut opt, start) = resume_point(inputs, state)?;
    let every = recipe.eval.every;
    let measure_curves = every > 0 && !inputs.heldout.is_empty();
    if measure_curves && start == 0 {
        let beta = recipe.loss.beta.at(0, u64::from(total));
        let row = inputs.heldout.curve(&policy, beta, 0, &mut crate::Silent);
        state.curves.push(row);
    }
    let mut data: Option<(u32, RoundData)> = None;
    progress.start("training", u64::from(total));
    progress.update(u64::from(start), "");
    for step in start..total {
        let round = step / t.steps;
        if data.as_ref().is_none_or(|(r, _)| *r != round) {
            let at_start = step % t.steps == 0;
            if at_start && round > 0 {
                opt = AdamW::new(&vs, t.weight_decay); // each round starts afresh
            }
            let new = round_data(inputs, state, round, (&vs, &policy), at_start, progress)?;
            data = Some((round, new));
        }
        let (_, round_data) = data.as_ref().expect("set above");
        let step_started = Instant::now();
        state.summary.failed_step = Some(step);
        let row = optimizer_step(inputs, round_data, &policy, &mut opt, step)?;
        let seconds = step_started.elapsed().as_secs_f64();
        state.timing.push(TimingRow {
            step,
            seconds,
            tokens_per_s: row.tokens as f64 / seconds.max(1e-9),
        });
        progress.update(u64::from(step + 1), &format!("loss {:.4}", row.loss));
        state.metrics.push(row);
        state.summary.steps_done = step + 1;
        state.summary.failed_step = None;
        let done = step + 1;
        if measure_curves && (done % every == 0 || done == total) {
            let beta = recipe.loss.beta.at(u64::from(done), u64::from(total));
            let row = inputs
                .heldout
                .curve(&policy, beta, done, &mut crate::Silent);
            state.curves.push(row);
        }
        let every = t.checkpoint_every;
        if every > 0 && done % every == 0 && done < total {
            save_checkpoint(state, &vs, &policy, Some(&opt), done)?;
            state.summary.write(&state.dir)?;
        }
    }
    progress.finish();
    // The final weights; optimizer state is no longer needed.
    save_checkpoint(state, &vs, &policy, None, total)?;
    Ok((vs, policy))
}

/// The data of `round`, recorded in the summary.
fn round_data(
    inputs: &RunInputs<'_>,
    state: &mut RunState,
    round: u32,
    policy: (&nn::VarStore, &Mistral),
    at_start: bool,
    progress: &mut dyn Progress,
) -> Result<RoundData> {
    let data = if round == 0 {
        let data = inputs.first_round(progress)?;
        state.summary.truncated = data.set.truncated.clone();
        data
    } else {
        inputs.later_round(round, policy, at_start, &state.dir, progress)?
    };
    let (base, run) = (&inputs.lists.id, inputs.request.run_id);
    state.summary.round_lists = (0..=round).map(|r| lists::round_id(base, run, r)).collect();
    debug_assert_eq!(state.summary.round_lists.last(), Some(&data.lists_id));
    Ok(data)
}

/// Restores the optimizer and the curves of the checkpoint in `dir`; returns
/// the step it was saved at.
fn resume_from(
    state: &mut RunState,
    dir: &Path,
    opt: &mut AdamW,
    steps: u32,
    device: Device,
) -> Result<u32> {
    let path = dir.join("state.json");
    let saved: CheckpointState = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let start = saved.step;
    let threads = tch::get_num_threads();
    if let Some(saved_threads) = saved.threads.filter(|&n| n != threads && start < steps) {
        eprintln!(
            "warning: resuming {} with {threads} CPU threads, but it was trained with {saved_threads}: \
             floating-point reductions differ, so its files will not match an uninterrupted run \
             (set train.threads or --threads to {saved_threads} for that)",
            state.dir.display()
        );
    }
    if start < steps {
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
    let curves = dir.join(CURVES);
    state.curves = if curves.exists() {
        records::read_rows::<CurveRow>(&curves)?
            .into_iter()
            .filter(|r| r.step <= start)
            .collect()
    } else {
        Vec::new()
    };
    state.summary.resumed_from = Some(start);
    state.summary.steps_done = start;
    Ok(start)
}

/// One optimizer step (with gradient accumulation): its metrics row.
fn optimizer_step(
    inputs: &RunInputs<'_>,
    data: &RoundData,
    policy: &Mistral,
    opt: &mut AdamW,
    step: u32,
) -> Result<MetricsRow> {
    let t = &inputs.request.recipe.train;
    // Loss schedules run over the whole training; the learning rate warms
    // up and decays within each round, and each round has its own batch order.
    let total = u64::from(t.steps * t.rounds);
    let params = LossParams::at_step(&inputs.request.recipe.loss, u64::from(step), total);
    let (round, local) = (step / t.steps, step % t.steps);
    let seed = batch_seed(t.seed, round);
    let micro = t.grad_accum.max(1) as usize;
    let per_micro = (t.batch_size as usize).div_ceil(micro).max(1);
    opt.zero_grad();
    let mut loss_sum = 0.0;
    let mut stats = lpo_loss::LossStats::default();
    let mut tokens = 0;
    for m in 0..micro {
        let indices = batch_indices(data.set.len(), per_micro, micro, local as usize, m, seed);
        let result = micro_batch_loss(inputs, data, policy, &params, &indices);
        let value = result.loss.double_value(&[]);
        if !value.is_finite() {
            bail!("loss is {value} at step {step}");
        }
        (result.loss / micro as f64).backward();
        loss_sum += value;
        add_share(&mut stats, &result.stats, 1.0 / micro as f64);
        tokens += data.set.token_count(&indices);
    }
    let grad_norm = opt.clip_grad_norm(t.grad_clip);
    if !grad_norm.is_finite() {
        bail!("gradient norm is {grad_norm} at step {step}");
    }
    let lr = learning_rate(
        t.learning_rate,
        t.lr_schedule,
        t.warmup_steps,
        local,
        t.steps,
    );
    opt.step(lr);
    Ok(MetricsRow {
        step,
        round,
        loss: loss_sum / micro as f64,
        beta: params.beta,
        alpha: params.alpha,
        gamma: params.gamma,
        lr,
        chosen_logp: stats.chosen_logp,
        rejected_logp: stats.rejected_logp,
        chosen_reward: stats.chosen_reward,
        rejected_reward: stats.rejected_reward,
        ranking_accuracy: stats.ranking_accuracy,
        sft_weight: params.sft_weight,
        sft_loss: stats.sft_loss,
        grad_norm,
        tokens,
    })
}

/// The seed of a round's batch order: the run's seed in round 0, one derived
/// from it in each later round.
fn batch_seed(seed: u64, round: u32) -> u64 {
    match round {
        0 => seed,
        r => lpo_results::derive_seed(seed, &format!("batches-round-{r}")),
    }
}

/// The loss of the training lists at `indices` (one micro-batch) under
/// `policy`, on log-probabilities summed or averaged over tokens as
/// `loss.normalize` says; not yet backpropagated.
fn micro_batch_loss(
    inputs: &RunInputs<'_>,
    data: &RoundData,
    policy: &Mistral,
    params: &LossParams,
    indices: &[usize],
) -> lpo_loss::LossOutput {
    let device = inputs.request.device;
    let set = &data.set;
    let (prompts, responses) = set.select(indices);
    let out = response_logps(policy, &prompts, &responses, set.k, inputs.pad());
    let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>())
        .to_device(device);
    let rs = data.ref_sum.index_select(0, &idx);
    let (pol, refl, counts) = match inputs.request.recipe.loss.normalize {
        Normalize::Sum => (out.sum, rs, Some(out.tokens)),
        Normalize::Mean => (
            out.sum / out.tokens.clamp_min(1.0),
            rs / data.ref_tokens.index_select(0, &idx).clamp_min(1.0),
            None,
        ),
    };
    let (rewards, mask) = set.targets(indices, device);
    lpo_loss::compute(
        params,
        &LossInput {
            policy_logps: &pol,
            reference_logps: &refl,
            rewards: &rewards,
            mask: &mask,
            token_counts: counts.as_ref(),
        },
    )
}

/// Adds `share` of one micro-batch's statistics `s` to the step's `stats`.
fn add_share(stats: &mut lpo_loss::LossStats, s: &lpo_loss::LossStats, share: f64) {
    stats.chosen_logp += s.chosen_logp * share;
    stats.rejected_logp += s.rejected_logp * share;
    stats.chosen_reward += s.chosen_reward * share;
    stats.rejected_reward += s.rejected_reward * share;
    stats.ranking_accuracy += s.ranking_accuracy * share;
    stats.sft_loss += s.sft_loss * share;
}
