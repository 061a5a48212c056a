//! One planned run, start to finish: data, training with checkpoints,
//! evaluation, and the files of its results directory.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use lpo_loss::{LossInput, LossParams};
use lpo_model::checkpoint;
use lpo_model::logps::{checkpointed_response_logps, response_logps_in, Layout, Recompute};
use lpo_model::lora::LoraSpec;
use lpo_model::Mistral;
use lpo_recipe::Normalize;
use lpo_results::records::{
    self, MemoryRecord, CHECKPOINT, CONFIG, CURVES, LOSS_PARTS, METRICS, TIMING,
};
use lpo_results::{
    remove_stale_temporaries, write_atomic, CurveRow, FileLock, MetricsRow, Status, Summary,
    TimingRow, Timings,
};
use tch::{nn, Device, Kind, Tensor};

use crate::batch::batch_indices;
use crate::eval::{self, HeldoutSet};
use crate::optim::{learning_rate, AdamW};
use crate::request::{RunOutcome, RunRequest};
use crate::rounds::{RoundData, RunInputs};
use crate::tracking::Tracker;
use crate::{lists, reference, sources, Progress};

/// Progress of the current run, kept so a failure can say where it stopped.
struct RunState {
    summary: Summary,
    metrics: Vec<MetricsRow>,
    timing: Vec<TimingRow>,
    curves: Vec<CurveRow>,
    dir: PathBuf,
    /// Training is over: a failure now is the evaluation's.
    evaluating: bool,
    /// Most CUDA memory seen in use after a step.
    cuda_peak: Option<u64>,
    /// When the run directory's metrics.csv, timing.csv and curves.csv were
    /// last written ([`RunState::write_live`]).
    written: Instant,
    /// The TensorBoard events of `metrics` and `curves`.
    tracker: Tracker,
    /// The kinds of a weighted `loss.kind`, whose losses each step logs in
    /// loss_parts.csv (empty for one kind).
    part_kinds: Vec<&'static str>,
    /// This process writes the run's files: one process, or rank 0 of a group.
    primary: bool,
}

/// How often the step metrics of a running run reach its directory: often
/// enough to watch (`tail`, a plot), rarely enough that the atomic rewrite
/// costs nothing beside a step.
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl RunState {
    /// A fresh state for `request`'s run in `dir`: running, nothing done.
    fn new(request: &RunRequest<'_>, dir: &Path) -> RunState {
        let recipe = request.recipe;
        RunState {
            summary: Summary {
                run_id: request.run_id.to_string(),
                recipe: recipe.name.clone(),
                label: recipe.method_label(),
                assignments: request.assignments.clone(),
                seed: recipe.train.seed,
                status: Status::Running,
                steps_done: 0,
                // With train.epochs, counted once the lists are built.
                steps: match recipe.train.epochs {
                    Some(_) => 0,
                    None => recipe.train.steps,
                },
                failed_step: None,
                error: None,
                resumed_from: None,
                device: format!("{:?}", request.device).to_lowercase(),
                threads: u32::try_from(tch::get_num_threads()).unwrap_or(0),
                ranks: request.group.map(|g| g.world() as u32),
                reference: String::new(),
                lists: String::new(),
                round_lists: Vec::new(),
                round_rewards: Vec::new(),
                reward_model: None,
                sandbox: None,
                truncated: Default::default(),
                repeated: Default::default(),
                timings: Timings::default(),
                headline: None,
                heldout: None,
                memory: None,
            },
            metrics: Vec::new(),
            timing: Vec::new(),
            curves: Vec::new(),
            dir: dir.to_path_buf(),
            evaluating: false,
            cuda_peak: None,
            written: Instant::now(),
            tracker: Tracker::default(),
            part_kinds: logged_parts(
                match &recipe.loss.kind {
                    lpo_recipe::Objective::Weighted(parts) => {
                        parts.iter().map(|p| p.kind.as_str()).collect()
                    }
                    lpo_recipe::Objective::One(kind) => vec![kind.as_str()],
                },
                recipe.model.router_aux_loss_coef() > 0.0,
            ),
            primary: request.group.is_none_or(|g| g.rank() == 0),
        }
    }

    /// Writes summary.json (rank 0 of a group alone).
    fn write_summary(&self) -> Result<()> {
        if self.primary {
            self.summary.write(&self.dir)?;
        }
        Ok(())
    }

    /// Records a step's metrics, in metrics.csv and the event file.
    fn push_metrics(&mut self, row: MetricsRow) -> Result<()> {
        self.tracker.metrics(&row)?;
        self.metrics.push(row);
        Ok(())
    }

    /// Records a held-out curve point, in curves.csv and the event file.
    fn push_curve(&mut self, row: CurveRow) -> Result<()> {
        self.tracker.curve(&row)?;
        self.curves.push(row);
        Ok(())
    }

    /// Notes the CUDA memory in use now (after an optimizer step).
    fn note_memory(&mut self, device: tch::Device) {
        if device.is_cuda() {
            let now = lpo_torch::memory::cuda_in_use();
            self.cuda_peak = self.cuda_peak.max(now);
        }
    }

    /// The run's estimated and measured peak memory.
    fn memory_record(&self, request: &RunRequest<'_>) -> MemoryRecord {
        use lpo_plan::memory::{estimate, Placement};
        let (placement, peak, measured) = match request.device {
            tch::Device::Cpu => (
                Placement::Cpu,
                lpo_torch::memory::host_peak(),
                "host-peak-rss",
            ),
            _ => (Placement::Cuda, self.cuda_peak, "cuda-in-use"),
        };
        MemoryRecord {
            estimated_bytes: estimate(request.recipe, placement).total(),
            peak_bytes: peak,
            measured: measured.into(),
        }
    }

    /// Writes metrics.csv, timing.csv, curves.csv and loss_parts.csv into `dir`.
    fn write_curves_to(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(METRICS),
            &records::to_csv_with_header(&self.metrics)?,
        )?;
        if let Some(parts) = records::parts_to_csv(&self.part_kinds, &self.metrics)? {
            write_atomic(&dir.join(LOSS_PARTS), &parts)?;
        }
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
        if !self.primary {
            return Ok(());
        }
        self.write_curves_to(&self.dir)
    }

    /// Writes the metrics so far into the run directory when [`LIVE_EVERY`]
    /// has passed since the last write, so a running run can be watched. The
    /// files are replaced atomically; a resumed run starts from its
    /// checkpoint's copies, so these never change what it computes.
    fn write_live(&mut self) -> Result<()> {
        if self.written.elapsed() >= LIVE_EVERY {
            self.write_curves()?;
            self.written = Instant::now();
        }
        Ok(())
    }
}

/// Runs `request` unless it is complete or locked. Errors inside the run
/// (a NaN loss, a bad data line, out of memory, even a panic) become a
/// `Failed` summary; only failures to write the results directory itself
/// are returned as errors.
pub fn execute(request: &RunRequest<'_>, progress: &mut dyn Progress) -> Result<RunOutcome> {
    let recipe = request.recipe;
    let dir = request.layout.run_dir(&recipe.name, request.run_id);
    let config = toml::to_string_pretty(recipe).context("serializing the run's recipe")?;
    let _lock = match opening(request, &dir, &config)? {
        Opening::Start(lock) => lock,
        Opening::Locked => return Ok(RunOutcome::Locked),
        Opening::Complete(summary) => return Ok(RunOutcome::AlreadyComplete(*summary)),
    };
    let mut state = RunState::new(request, &dir);
    state.write_summary()?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(request, &mut state, progress)));
    state.summary.memory = Some(state.memory_record(request));
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
            let done = state.summary.steps_done;
            state.tracker.finish(&state.summary, done)?;
            state.write_summary()?;
            state.tracker.close_mlflow(true)?;
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
            state.tracker.flush()?;
            state.write_summary()?;
            state.tracker.close_mlflow(false)?;
            Ok(RunOutcome::Failed(state.summary))
        }
    }
}

/// How [`execute`] finds a run's directory.
enum Opening {
    /// Run it (rank 0 holds the directory's lock).
    Start(Option<FileLock>),
    /// Another process holds the lock.
    Locked,
    /// It is complete.
    Complete(Box<Summary>),
}

/// Takes the run directory (rank 0 of a group alone: it locks it, clears
/// stale temporaries and writes config.toml) and tells every rank of the
/// group what rank 0 found; then checks that every rank runs the same run
/// id and recipe.
fn opening(request: &RunRequest<'_>, dir: &Path, config: &str) -> Result<Opening> {
    const START: u64 = 0;
    const LOCKED: u64 = 1;
    const COMPLETE: u64 = 2;
    const FAILED: u64 = 3;
    let primary = request.group.is_none_or(|g| g.rank() == 0);
    let Some(group) = request.group else {
        return open_dir(request, dir, config);
    };
    if let Some(problem) =
        crate::data_parallel::sharing_problem(request.recipe.train.grad_accum, group.world())
    {
        bail!("{problem}");
    }
    let opened = if primary {
        open_dir(request, dir, config)
    } else {
        Ok(Opening::Start(None))
    };
    let code = match &opened {
        Ok(Opening::Start(_)) => START,
        Ok(Opening::Locked) => LOCKED,
        Ok(Opening::Complete(_)) => COMPLETE,
        Err(_) => FAILED,
    };
    let codes = group.all_gather_u64(if primary { code } else { 0 })?;
    let mut found = opened?;
    if !primary {
        found = match codes[0] {
            FAILED => bail!("rank 0 could not open {} (its log says why)", dir.display()),
            LOCKED => Opening::Locked,
            COMPLETE => Opening::Complete(Box::new(
                Summary::read(dir)?
                    .with_context(|| format!("rank 0 found {} complete", dir.display()))?,
            )),
            _ => Opening::Start(None),
        };
    }
    if matches!(found, Opening::Start(_)) {
        // Threads may differ between nodes: they change no result's meaning.
        let mut recipe = request.recipe.clone();
        recipe.train.threads = 0;
        let recipe = toml::to_string(&recipe).context("serializing the run's recipe")?;
        let what = format!("{}\n{recipe}", request.run_id);
        crate::data_parallel::agree(
            group,
            "run id and recipe",
            crate::data_parallel::fingerprint(&what),
        )?;
    }
    Ok(found)
}

/// [`opening`] for one process (or rank 0): the lock, stale temporaries
/// cleared, a complete run recognised, config.toml written.
fn open_dir(request: &RunRequest<'_>, dir: &Path, config: &str) -> Result<Opening> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let Some(lock) = FileLock::try_acquire(&dir.join(".lock"))? else {
        return Ok(Opening::Locked);
    };
    // Writes killed before their rename (here, or of shared cache entries)
    // leave temporaries behind; their writers are gone, so they can go.
    for stale_dir in [dir.to_path_buf(), request.layout.cache_dir()] {
        for path in remove_stale_temporaries(&stale_dir)? {
            eprintln!("removed a stale temporary: {}", path.display());
        }
    }
    if let Some(summary) = Summary::read(dir)? {
        if summary.status == Status::Complete && summary.run_id == request.run_id {
            reference_unchanged(request, &summary, dir)?;
            reward_model_unchanged(request, &summary, dir)?;
            return Ok(Opening::Complete(Box::new(summary)));
        }
    }
    write_atomic(&dir.join(CONFIG), config.as_bytes())?;
    Ok(Opening::Start(Some(lock)))
}

/// A complete run scored by a reward model must still find that model at
/// `reward.model`: new weights in place would otherwise silently stand for
/// results they did not compute.
fn reward_model_unchanged(request: &RunRequest<'_>, summary: &Summary, dir: &Path) -> Result<()> {
    let now = crate::rewards::model_id(request.recipe, &request.layout.cache_dir())?;
    if now.is_some() && now != summary.reward_model {
        bail!(
            "run {} is complete, scored by reward model {}, but reward.model `{}` is now {}: its files changed. Remove {} to train the run again",
            summary.run_id,
            summary.reward_model.as_deref().unwrap_or("(none recorded)"),
            request.recipe.reward.model.as_deref().unwrap_or_default(),
            now.as_deref().unwrap_or_default(),
            dir.display()
        );
    }
    Ok(())
}

/// A complete run's reference checkpoint must still be the model it was
/// trained against: the run id holds the checkpoint's path and architecture,
/// not its weights, so new weights in place would otherwise silently
/// report the old results.
fn reference_unchanged(request: &RunRequest<'_>, summary: &Summary, dir: &Path) -> Result<()> {
    let Some(checkpoint) = &request.recipe.reference.checkpoint else {
        return Ok(());
    };
    let now = reference::checkpoint_id(Path::new(checkpoint), request.layout)?;
    if now != summary.reference {
        bail!(
            "run {} is complete, trained against reference {}, but reference.checkpoint `{checkpoint}` \
             is now {now}: its weights or config changed. Remove {} to train the run again",
            summary.run_id,
            summary.reference,
            dir.display()
        );
    }
    Ok(())
}

/// The data every run of a data setting shares: its sources, tokenizer,
/// SFT reference (bf16 on CUDA) and round-0 lists, each from the cache or
/// computed into it under its lock ([`shared_data`]).
struct SharedData {
    sources: Vec<sources::Source>,
    tokenizer: std::sync::Arc<dyn lpo_data::tokenizer::Tokenize>,
    reference: reference::Reference,
    lists: lists::Lists,
    rewards: crate::rewards::Rewards,
    reference_seconds: f64,
}

fn shared_data(request: &RunRequest<'_>, progress: &mut dyn Progress) -> Result<SharedData> {
    let recipe = request.recipe;
    let started = Instant::now();
    let reference::Basis {
        sources,
        tokenizer,
        reference,
        rewards,
    } = reference::basis(recipe, request.layout, request.device, progress)?;
    let reference_seconds = started.elapsed().as_secs_f64();
    let lists = lists::obtain(
        recipe,
        &sources,
        tokenizer.as_ref(),
        &reference,
        &rewards,
        request.layout,
        progress,
    )?;
    Ok(SharedData {
        sources,
        tokenizer,
        reference,
        lists,
        rewards,
        reference_seconds,
    })
}

fn run(request: &RunRequest<'_>, state: &mut RunState, progress: &mut dyn Progress) -> Result<()> {
    let started = Instant::now();
    let SharedData {
        sources,
        tokenizer,
        reference,
        lists,
        rewards,
        reference_seconds,
    } = shared_data(request, progress)?;
    // With train.epochs the steps follow from the training lists, known now.
    let counted = request.recipe.train.epochs.map(|epochs| {
        let r = request.recipe;
        let n = lists.in_form(r.data.form, r.train.seed).0.len();
        let mut counted = r.clone();
        let steps = epochs as usize * crate::batch::epoch_steps(n, r.train.batch_size);
        counted.train.steps = u32::try_from(steps.max(1)).unwrap_or(u32::MAX);
        counted
    });
    let request = &match &counted {
        Some(recipe) => RunRequest {
            recipe,
            ..request.clone()
        },
        None => request.clone(),
    };
    let recipe = request.recipe;
    state.summary.steps = recipe.train.steps;
    state.summary.reference = reference.meta.id.clone();
    state.summary.reward_model =
        crate::rewards::model_id(request.recipe, &request.layout.cache_dir())?;
    state.summary.timings.reference = reference_seconds;
    state.summary.lists = lists.id.clone();
    state.summary.repeated = lists::repeated_draws(&sources, &lists.lists);
    state.summary.sandbox = rewards.isolation().map(ToString::to_string);
    if let Some(group) = request.group {
        // Every rank read the same shared data (a cache seen differently,
        // or another device kind, would make them compute different things).
        let what = format!(
            "{}\n{}\n{}\n{}",
            reference.meta.id,
            lists.id,
            lists.heldout.len(),
            request.device.is_cuda()
        );
        let what_hash = crate::data_parallel::fingerprint(&what);
        crate::data_parallel::agree(group, "data (reference, lists, device kind)", what_hash)?;
    }
    let heldout = HeldoutSet::build(
        recipe,
        &lists.heldout,
        tokenizer.as_ref(),
        &reference.model,
        request.group,
        progress,
    )?;
    let inputs = RunInputs {
        request,
        reference,
        sources,
        tokenizer,
        lists,
        heldout,
        rewards,
        lora: lpo_model::lora::LoraSpec::from_recipe(&recipe.model.lora),
    };
    state.summary.timings.data = started.elapsed().as_secs_f64() - reference_seconds;

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

/// What [`prepare`] made ready.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Content id of the SFT reference.
    pub reference: String,
    /// Content id of the reward lists (round 0).
    pub lists: String,
    /// Training lists scored under the reference.
    pub lists_scored: usize,
}

/// The work a run shares with other runs of its sweep, done ahead of it:
/// the SFT reference, the reward lists and their reference
/// log-probabilities, each taken from `results/_cache/` or computed and
/// cached there under its lock, exactly as [`execute`] would (so a run
/// started afterwards finds them and computes the same bytes). `lpo
/// prepare`, and the dependency job of a Slurm sweep, call this.
pub fn prepare(request: &RunRequest<'_>, progress: &mut dyn Progress) -> Result<Prepared> {
    let recipe = request.recipe;
    let SharedData {
        sources,
        tokenizer,
        reference,
        lists,
        rewards,
        ..
    } = shared_data(request, progress)?;
    // The held-out lists are scored by each run itself (not cached).
    let heldout = HeldoutSet::build(
        recipe,
        &[],
        tokenizer.as_ref(),
        &reference.model,
        None,
        progress,
    )?;
    let inputs = RunInputs {
        request,
        reference,
        sources,
        tokenizer,
        lists,
        heldout,
        rewards,
        lora: None, // shared data only: no policy is built
    };
    let round = inputs.first_round(progress)?;
    Ok(Prepared {
        reference: inputs.reference.meta.id.clone(),
        lists: round.lists_id,
        lists_scored: round.set.len(),
    })
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
        let group = inputs.request.group;
        let (rows, headline) = inputs
            .heldout
            .evaluate(policy, final_beta, group, progress)?;
        if state.primary {
            write_atomic(&state.dir.join(records::HELDOUT), &records::to_csv(&rows)?)?;
        }
        state.summary.heldout = Some(headline);
    }
    let examples = lists::eval_examples(recipe, &inputs.sources)?;
    if !examples.is_empty() {
        let rows = eval::generations(
            inputs.request,
            &inputs.reference,
            policy,
            inputs.tokenizer.as_ref(),
            &inputs.rewards,
            &examples,
            progress,
        )?;
        if state.primary {
            write_atomic(&state.dir.join(records::EVAL), &records::to_csv(&rows)?)?;
        }
        state.summary.headline = Some(eval::headline(&rows, &examples));
    }
    Ok(())
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
        // A checkpoint is used only whole: its files are the ones it sealed.
        let sealed = dir.map(crate::checkpoints::verify).transpose()?;
        let (mut vs, policy) = match (&inputs.lora, dir) {
            (Some(spec), dir) => lora_policy(inputs, spec, dir)?,
            (None, Some(dir)) => checkpoint::load(dir, device)?,
            (None, None) => inputs.reference.policy(device)?,
        };
        // Adapters stay in f32 beside the bf16 base.
        if device.is_cuda() && inputs.lora.is_none() {
            vs.bfloat16();
        }
        let mut opt = AdamW::with_moments(&vs, t.weight_decay, t.moments);
        let start = match (dir, sealed) {
            (Some(dir), Some(sealed)) => {
                resume_from(state, (dir, sealed), &mut opt, t.steps * t.rounds, device)?
            }
            _ => 0,
        };
        Ok((vs, policy, opt, start))
    };
    for dir in crate::checkpoints::candidates(&state.dir) {
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

/// The policy of a LoRA run: adapters on the frozen reference (shared, not
/// copied), loaded from the checkpoint `dir` when resuming.
fn lora_policy(
    inputs: &RunInputs<'_>,
    spec: &LoraSpec,
    dir: Option<&Path>,
) -> Result<(nn::VarStore, Mistral)> {
    let vs = nn::VarStore::new(inputs.request.device);
    let seed = lpo_results::derive_seed(inputs.request.recipe.train.seed, "lora-init");
    tch::manual_seed(seed as i64);
    let policy = inputs.reference.model.with_adapters(&vs.root(), spec);
    if let Some(dir) = dir {
        lpo_model::lora::load_peft(&vs, dir)?;
    }
    Ok((vs, policy))
}

/// Writes the policy (`vs`: the whole model, or a LoRA run's adapters in
/// PEFT's layout with the reference as their base), the optimizer state and
/// the curves to `checkpoint-new/`, then swaps it in by renames.
fn save_checkpoint(
    state: &RunState,
    inputs: &RunInputs<'_>,
    (vs, model): (&nn::VarStore, &Mistral),
    opt: Option<&AdamW>,
    step: u32,
) -> Result<()> {
    if !state.primary {
        return Ok(()); // rank 0 writes the checkpoint of every rank's weights
    }
    let new = state.dir.join("checkpoint-new");
    let current = state.dir.join(CHECKPOINT);
    let old = state.dir.join("checkpoint-old");
    let _ = std::fs::remove_dir_all(&new);
    match &inputs.lora {
        Some(spec) => {
            // Absolute, so PEFT finds the base from anywhere.
            let base = std::path::absolute(&inputs.reference.dir)
                .unwrap_or_else(|_| inputs.reference.dir.clone());
            let base = base.display().to_string();
            lpo_model::lora::save_peft(vs, spec, &base, &new)?;
            reference::save_tokenizer(inputs.tokenizer.as_ref(), &new)?;
        }
        None => reference::save_model(vs, model.config(), inputs.tokenizer.as_ref(), &new)?,
    }
    if let Some(opt) = opt {
        checkpoint::write_tensors(&new.join("optimizer.safetensors"), &opt.state())?;
    }
    state.write_curves_to(&new)?;
    crate::checkpoints::seal(&new, step)?;
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
    if let Some(group) = inputs.request.group {
        // A rank that could not load the newest checkpoint fell back to an
        // older one: the ranks would train from different steps.
        let what = "checkpoint (the step to resume from)";
        crate::data_parallel::agree(group, what, u64::from(start))?;
    }
    if state.primary {
        state
            .tracker
            .start(inputs.request, &state.dir, &state.metrics, &state.curves)?;
    }
    let every = recipe.eval.every;
    let measure_curves = every > 0 && !inputs.heldout.is_empty();
    if measure_curves && start == 0 {
        let beta = recipe.loss.beta.at(0, u64::from(total));
        let group = inputs.request.group;
        let row = inputs
            .heldout
            .curve(&policy, beta, 0, group, &mut crate::Silent)?;
        state.push_curve(row)?;
    }
    let mut data: Option<(u32, RoundData)> = None;
    progress.start("training", u64::from(total));
    progress.update(u64::from(start), "");
    for step in start..total {
        let round = step / t.steps;
        if data.as_ref().is_none_or(|(r, _)| *r != round) {
            let at_start = step % t.steps == 0;
            if at_start && round > 0 {
                opt = AdamW::with_moments(&vs, t.weight_decay, t.moments); // each round starts afresh
            }
            let new = round_data(inputs, state, round, (&vs, &policy), at_start, progress)?;
            data = Some((round, new));
        }
        let (_, round_data) = data.as_ref().expect("set above");
        let (step_started, cpu_started) = (Instant::now(), lpo_torch::process_cpu_seconds());
        state.summary.failed_step = Some(step);
        let row = optimizer_step(inputs, round_data, &policy, &mut opt, step)?;
        let seconds = step_started.elapsed().as_secs_f64();
        state.timing.push(TimingRow {
            step,
            seconds,
            tokens_per_s: row.tokens as f64 / seconds.max(1e-9),
            cpu_seconds: lpo_torch::process_cpu_seconds() - cpu_started,
        });
        progress.update(u64::from(step + 1), &format!("loss {:.4}", row.loss));
        state.push_metrics(row)?;
        state.note_memory(inputs.request.device);
        state.summary.steps_done = step + 1;
        state.summary.failed_step = None;
        let done = step + 1;
        if measure_curves && (done % every == 0 || done == total) {
            let beta = recipe.loss.beta.at(u64::from(done), u64::from(total));
            let row = inputs.heldout.curve(
                &policy,
                beta,
                done,
                inputs.request.group,
                &mut crate::Silent,
            )?;
            state.push_curve(row)?;
        }
        state.write_live()?;
        let every = t.checkpoint_every;
        if every > 0 && done % every == 0 && done < total {
            save_checkpoint(state, inputs, (&vs, &policy), Some(&opt), done)?;
            state.write_summary()?;
        }
    }
    progress.finish();
    // The final weights; optimizer state is no longer needed.
    save_checkpoint(state, inputs, (&vs, &policy), None, total)?;
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
    if inputs.request.recipe.train.rounds > 1 {
        state.summary.round_rewards = inputs.round_rewards(&state.summary.round_lists, &data)?;
    }
    debug_assert_eq!(state.summary.round_lists.last(), Some(&data.lists_id));
    Ok(data)
}

/// Restores the optimizer and the curves of the checkpoint in `dir`; returns
/// the step it was saved at.
fn resume_from(
    state: &mut RunState,
    (dir, saved): (&Path, crate::checkpoints::CheckpointState),
    opt: &mut AdamW,
    steps: u32,
    device: Device,
) -> Result<u32> {
    let start = saved.step;
    ensure!(
        start <= steps,
        "{} says step {start}, but the run has {steps} steps",
        dir.display()
    );
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
    // Every step before the checkpoint has its row, in order.
    if !state.part_kinds.is_empty() {
        records::read_parts(&dir.join(LOSS_PARTS), &state.part_kinds, &mut state.metrics)?;
    }
    let steps_logged: Vec<u32> = state.metrics.iter().map(|r| r.step).collect();
    ensure!(
        steps_logged.iter().copied().eq(0..start),
        "{} is at step {start} but its metrics.csv holds {} rows before it",
        dir.display(),
        steps_logged.len()
    );
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

/// One optimizer step (with gradient accumulation, and the micro-batches
/// shared among the ranks of a group): its metrics row.
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
    let router_aux = inputs.request.recipe.model.router_aux_loss_coef() > 0.0;
    let seed = batch_seed(t.seed, round);
    // grad_accum splits the step's batch_size lists into micro-batches (it
    // divides batch_size: checked at plan time).
    let micro = t.grad_accum.max(1) as usize;
    let per_micro = (t.batch_size as usize / micro).max(1);
    let parts: Vec<Vec<usize>> = (0..micro)
        .map(|m| batch_indices(data.set.len(), per_micro, micro, local as usize, m, seed))
        .collect();
    let weights = micro_weights(&params, &data.set, &parts);
    opt.zero_grad();
    let mine = crate::data_parallel::my_micro_batches(inputs.request.group, micro);
    let mut slots = backward(
        inputs,
        data,
        policy,
        &params,
        (&parts, &weights),
        mine,
        step,
    );
    if let Some(group) = inputs.request.group {
        crate::data_parallel::all_reduce_grads(group, &opt.params())?;
        group.all_reduce(&mut slots, lpo_torch::dist::Reduce::Sum)?;
    }
    // The loss and the gradient norm stay on the device until the step is
    // done; a step with either not finite is skipped there, then refused.
    let grad_norm = opt.clip_grad_norm(t.grad_clip)?;
    let loss = slots.select(1, 0).sum(Kind::Double);
    let finite = loss.isfinite().logical_and(&grad_norm.isfinite());
    let lr = learning_rate(
        t.learning_rate,
        t.lr_schedule,
        t.warmup_steps,
        local,
        t.steps,
    );
    opt.step(lr, Some(&finite.logical_not()))?;
    let n_parts = slots.size()[1] - 1 - STATS;
    let part_losses = slots
        .narrow(1, 1, n_parts)
        .sum_dim_intlist(0, false, Kind::Double);
    let stats_values = (0..micro as i64)
        .map(|m| slots.get(m).narrow(0, 1 + n_parts, STATS))
        .collect();
    let (loss, grad_norm, part_losses, stats) =
        read_step(&loss, &grad_norm, &part_losses, stats_values)?;
    if !loss.is_finite() {
        bail!("loss is {loss} at step {step}");
    }
    if !grad_norm.is_finite() {
        bail!("gradient norm is {grad_norm} at step {step}");
    }
    Ok(MetricsRow {
        step,
        round,
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
        sft_weight: params.sft_weight,
        sft_loss: stats.sft_loss,
        grad_norm,
        tokens: parts.iter().map(|p| data.set.token_count(p)).sum(),
        parts: part_rows(&params, router_aux, part_losses),
    })
}

/// Numbers in [`lpo_loss::LossOutput::stats_values`].
const STATS: i64 = 8;

/// Backpropagates the micro-batches `mine` of a step's `parts` (each loss
/// times its weight) and returns the step's numbers, one f64 row per
/// micro-batch: its weighted loss, its weighted part losses, its
/// [`STATS`] statistics. The rows of micro-batches another rank computes
/// are zeros here, so the sum over ranks is every rank's rows.
fn backward(
    inputs: &RunInputs<'_>,
    data: &RoundData,
    policy: &Mistral,
    params: &LossParams,
    (parts, weights): (&[Vec<usize>], &[f64]),
    mine: std::ops::Range<usize>,
    step: u32,
) -> Tensor {
    // LoRA dropout is on while the loss is computed, off everywhere else.
    let training = |on: bool| inputs.lora.iter().for_each(|s| s.set_training(on));
    training(true);
    let mut rows = Vec::with_capacity(mine.len());
    for m in mine.clone() {
        seed_lora_dropout(inputs, step, m);
        let (result, recompute) = micro_batch_loss(inputs, data, policy, params, &parts[m]);
        let weight = weights[m];
        rows.push(Tensor::cat(
            &[
                (result.loss.detach() * weight)
                    .to_kind(Kind::Double)
                    .view([1]),
                result.parts.to_kind(Kind::Double) * weight,
                result.stats_values.to_kind(Kind::Double),
            ],
            0,
        ));
        (result.loss * weight).backward();
        if let Some(recompute) = recompute {
            recompute.backward(); // activation checkpointing: the blocks' part
        }
    }
    training(false);
    let mine_rows = Tensor::stack(&rows, 0);
    let (width, device) = (mine_rows.size()[1], mine_rows.device());
    let zeros = |n: usize| Tensor::zeros([n as i64, width], (Kind::Double, device));
    Tensor::cat(
        &[zeros(mine.start), mine_rows, zeros(parts.len() - mine.end)],
        0,
    )
}

/// The name of the router's load-balancing loss in loss_parts.csv.
const ROUTER_AUX: &str = "router_aux";

/// The columns of loss_parts.csv: a weighted objective's kinds, then
/// [`ROUTER_AUX`] when the router loss is on (after the one kind's loss when
/// the objective has one); none for one kind without it.
fn logged_parts(kinds: Vec<&'static str>, router_aux: bool) -> Vec<&'static str> {
    match (kinds.len(), router_aux) {
        (0 | 1, false) => Vec::new(),
        (_, false) => kinds,
        (_, true) => kinds.into_iter().chain([ROUTER_AUX]).collect(),
    }
}

/// A step's part losses as metrics.csv's rows carry them (`losses`: each
/// part's, then the router loss's when it is on).
fn part_rows(params: &LossParams, router_aux: bool, losses: Vec<f64>) -> Vec<records::PartLoss> {
    let kinds = params.parts.iter().map(|p| p.kind.as_str()).collect();
    logged_parts(kinds, router_aux)
        .into_iter()
        .zip(losses)
        .map(|(kind, loss)| records::PartLoss {
            kind: kind.to_string(),
            loss,
        })
        .collect()
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
/// `loss.normalize` says; not yet backpropagated. With activation
/// checkpointing, the blocks' backward pass comes separately, after the loss's.
/// With `model.router_aux_loss_coef`, the loss includes the router's
/// load-balancing loss times it, and `parts` ends with that loss.
fn micro_batch_loss<'a>(
    inputs: &RunInputs<'_>,
    data: &RoundData,
    policy: &'a Mistral,
    params: &LossParams,
    indices: &[usize],
) -> (lpo_loss::LossOutput, Option<Recompute<'a>>) {
    let device = inputs.request.device;
    let set = &data.set;
    let (prompts, responses) = set.select(indices);
    let train = &inputs.request.recipe.train;
    let layout = match train.packed {
        true => Layout::Packed,
        false => Layout::Padded,
    };
    let (out, recompute) = if train.activation_checkpointing {
        let (out, r) =
            checkpointed_response_logps(policy, &prompts, &responses, set.k, inputs.pad(), layout);
        (out, Some(r))
    } else {
        (
            response_logps_in(policy, &prompts, &responses, set.k, inputs.pad(), layout),
            None,
        )
    };
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
    let mut output = lpo_loss::compute(
        params,
        &LossInput {
            policy_logps: &pol,
            reference_logps: &refl,
            rewards: &rewards,
            mask: &mask,
            token_counts: counts.as_ref(),
        },
    );
    let coef = inputs.request.recipe.model.router_aux_loss_coef();
    if let Some(aux) = out.router_aux.filter(|_| coef > 0.0) {
        // Out of place: the objective's loss stays as autograd recorded it.
        let loss = &output.loss + &aux * coef;
        output.loss = loss;
        let aux = aux.detach().view([1]).to_kind(output.parts.kind());
        output.parts = Tensor::cat(&[&output.parts, &aux], 0);
    }
    (output, recompute)
}

/// Seeds LoRA dropout's masks, which come from libtorch's generator, per
/// step and micro-batch: a resumed run draws the masks an uninterrupted one
/// would, and a rank computing micro-batch `micro` the masks one process
/// would draw for it.
fn seed_lora_dropout(inputs: &RunInputs<'_>, step: u32, micro: usize) {
    if inputs.lora.as_ref().is_some_and(|s| s.dropout > 0.0) {
        let train = &inputs.request.recipe.train;
        let key = match micro {
            0 => format!("lora-dropout-{step}"),
            m => format!("lora-dropout-{step}-{m}"),
        };
        let seed = lpo_results::derive_seed(train.seed, &key);
        tch::manual_seed(seed as i64);
    }
}

/// Each micro-batch's share of the step's contributing prompts
/// ([`lpo_loss::contributing`], from the rewards on the host: no device
/// read): the step's loss, a mean over its contributing prompts, is the
/// micro-batches' means weighted so, whatever the split.
fn micro_weights(
    params: &LossParams,
    set: &crate::batch::TrainSet,
    parts: &[Vec<usize>],
) -> Vec<f64> {
    // One micro-batch is the whole step: its weight is 1 (a step without
    // contributing prompts has loss 0 and no gradient either way).
    if parts.len() == 1 {
        return vec![1.0];
    }
    let counts: Vec<f64> = parts
        .iter()
        .map(|indices| {
            let (rewards, mask) = set.targets(indices, Device::Cpu);
            let contributing = lpo_loss::contributing(params, &rewards, &mask);
            contributing
                .to_kind(Kind::Double)
                .sum(Kind::Double)
                .double_value(&[])
        })
        .collect();
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// A step's numbers, read to the host in one copy after the update: the
/// loss, the gradient norm, each part's loss (`parts`, the micro-batches'
/// weighted like the loss) and the mean of its micro-batches' statistics
/// (each [`lpo_loss::LossOutput::stats_values`], in f64).
fn read_step(
    loss: &Tensor,
    grad_norm: &Tensor,
    parts: &Tensor,
    stats_values: Vec<Tensor>,
) -> Result<(f64, f64, Vec<f64>, lpo_loss::LossStats)> {
    let micro = stats_values.len();
    let n_parts = parts.size()[0] as usize;
    let mut numbers = vec![
        loss.view([1]),
        grad_norm.to_kind(Kind::Double).view([1]),
        parts.shallow_clone(),
    ];
    numbers.extend(stats_values);
    let numbers = Vec::<f64>::try_from(Tensor::cat(&numbers, 0).to_device(Device::Cpu))?;
    let mut stats = lpo_loss::LossStats::default();
    for values in numbers[2 + n_parts..].chunks(STATS as usize) {
        add_share(
            &mut stats,
            &lpo_loss::LossStats::from_values(values),
            1.0 / micro as f64,
        );
    }
    Ok((
        numbers[0],
        numbers[1],
        numbers[2..2 + n_parts].to_vec(),
        stats,
    ))
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
