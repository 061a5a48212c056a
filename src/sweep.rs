//! `lpo sweep` and `lpo run`: executing planned runs.
//!
//! `lpo run` executes one run in this process. `lpo sweep` executes every
//! run of a plan, each as an `lpo run` child process (so a crash or an
//! out-of-memory kill takes down one run, not the sweep, and `--jobs N` runs
//! N at once). Children die with the sweep (PR_SET_PDEATHSIG); an
//! interrupted run resumes from its last checkpoint on the next sweep, and a
//! complete run is never redone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use lpo_plan::{Plan, PlannedRun};
use lpo_recipe::{DeviceChoice, Recipe};
use lpo_results::{Layout, Status, Summary};
use lpo_torch::DeviceRequest;
use lpo_train::run::{Baseline, RunOutcome, RunRequest};

use crate::progress::{Bars, Mode, SweepBars};
use crate::recipes::RecipeArgs;

/// The device a run computes on; sets the CPU thread count when configured.
pub fn device_for(recipe: &Recipe) -> Result<tch::Device> {
    if recipe.train.threads > 0 {
        tch::set_num_threads(recipe.train.threads as i32);
    }
    let device = lpo_torch::resolve_device(match recipe.train.device {
        DeviceChoice::Auto => DeviceRequest::Auto,
        DeviceChoice::Cpu => DeviceRequest::Cpu,
        DeviceChoice::Cuda => DeviceRequest::Cuda,
    })?;
    // Whether the model fits is the memory estimate's call (`crate::memory`).
    Ok(device)
}

/// Sets `recipe`'s CPU threads: `--threads` (`cli`), else train.threads,
/// else, inside a Slurm job, the CPUs Slurm gave it (`SLURM_CPUS_PER_TASK`);
/// 0 leaves libtorch's default (every core of the machine).
pub fn apply_threads(recipe: &mut Recipe, cli: Option<u32>) {
    if let Some(threads) = cli {
        recipe.train.threads = threads;
        return;
    }
    if recipe.train.threads == 0 {
        let slurm = std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok());
        if let Some(cpus) = slurm.filter(|&n| n > 0) {
            recipe.train.threads = cpus;
        }
    }
}

/// Options of `lpo run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The run's id (from `lpo plan`); one the plan no longer has runs nothing (exit 2).
    #[arg(long, conflicts_with = "index", required_unless_present = "index")]
    pub id: Option<String>,
    /// The run's index in the plan.
    #[arg(long)]
    pub index: Option<usize>,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
    /// CPU threads (overrides train.threads; not part of the run id).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Log one line per phase instead of drawing progress bars.
    #[arg(long)]
    pub no_bars: bool,
    /// Write machine-readable progress to stdout (used by `lpo sweep`).
    #[arg(long, hide = true)]
    pub progress_pipe: bool,
    /// Start even when the estimated peak memory exceeds this machine's.
    #[arg(long)]
    pub ignore_memory_estimate: bool,
}

/// Options of `lpo sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Runs executed at once; CPU threads are divided between them.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
    /// CPU threads per run (default: the recipe's train.threads, else all cores divided by --jobs; with Slurm, the job's CPUs).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Start runs even when their estimated peak memory exceeds this machine's.
    #[arg(long)]
    pub ignore_memory_estimate: bool,
    /// Where the runs execute: child processes here, or a Slurm job array.
    #[arg(long, value_enum, default_value = "local")]
    pub backend: Backend,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
}

/// Where `lpo sweep` executes the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `lpo run` child processes on this machine, `--jobs` at a time.
    Local,
    /// A Slurm job array submitted with `sbatch` (see `--dry-run` and the Slurm options).
    Slurm,
}

/// The baseline of `run` as the planner linked it: the reference, or the
/// run of the plan labelled `eval.baseline` with its held-out prompts.
pub fn baseline_for(plan: &Plan, run: &PlannedRun, layout: &Layout) -> Baseline {
    match run.baseline {
        None => Baseline::Reference,
        Some(i) => {
            let b = &plan.runs[i];
            Baseline::Run {
                id: b.id.clone(),
                dir: layout.run_dir(&b.recipe.name, &b.id),
            }
        }
    }
}

fn assignments(run: &PlannedRun) -> BTreeMap<String, serde_json::Value> {
    run.assignments
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
}

/// `lpo run`: one planned run in this process.
pub fn run_one(args: &RunArgs) -> Result<ExitCode> {
    let Some(plan) = crate::recipes::fetch_and_plan(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    // Found before anything is written: an id or index the plan does not
    // hold runs nothing (exit 2), never a neighbour.
    let run = match find_run(args, &plan)? {
        Ok(run) => run,
        Err(why) => {
            eprintln!("error: {why}");
            return Ok(crate::exit::code(crate::exit::BAD_INPUT));
        }
    };
    let layout = args.results.layout();
    let mut recipe = (*run.recipe).clone();
    apply_threads(&mut recipe, args.threads);
    let device = device_for(&recipe)?;
    let placement = match device {
        tch::Device::Cpu => lpo_plan::memory::Placement::Cpu,
        _ => lpo_plan::memory::Placement::Cuda,
    };
    if let Some(problem) =
        crate::memory::problem(&recipe, placement).filter(|_| !args.ignore_memory_estimate)
    {
        eprintln!("error: run {}: {problem}", run.id);
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let baseline = baseline_for(&plan, run, &layout);
    let request = RunRequest {
        recipe: &recipe,
        run_id: &run.id,
        assignments: assignments(run),
        layout: &layout,
        device,
        baseline,
    };
    let mode = if args.progress_pipe {
        Mode::Pipe
    } else if args.no_bars {
        Mode::Lines
    } else {
        Mode::Bars
    };
    let mut bars = Bars::new(format!("[{} {}]", run.id, recipe.method_label()), mode);
    let say = |line: String| {
        if mode == Mode::Pipe {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    match lpo_train::run::execute(&request, &mut bars)? {
        RunOutcome::Complete(summary) => {
            say(report_line(&summary, "complete"));
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::AlreadyComplete(summary) => {
            say(report_line(&summary, "already complete"));
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Failed(summary) => {
            say(report_line(&summary, "FAILED"));
            Ok(crate::exit::code(crate::exit::FAILED))
        }
        RunOutcome::Locked => {
            eprintln!(
                "run {} is being written by another process; not touching it",
                run.id
            );
            Ok(crate::exit::code(crate::exit::LOCKED))
        }
    }
}

/// The run `lpo run` asked for, or why the plan has none (an unknown run).
fn find_run<'p>(
    args: &RunArgs,
    plan: &'p Plan,
) -> Result<std::result::Result<&'p PlannedRun, String>> {
    Ok(match (&args.id, args.index) {
        (Some(id), _) => plan
            .runs
            .iter()
            .find(|r| &r.id == id)
            .ok_or_else(|| unknown_run_id(id, &args.recipe.recipe, plan.runs.len())),
        (None, Some(i)) => plan.runs.get(i).ok_or_else(|| {
            format!(
                "--index {i}, but the plan of {} has {} runs",
                args.recipe.recipe.display(),
                plan.runs.len()
            )
        }),
        (None, None) => bail!("give --id or --index"),
    })
}

/// Why `lpo run --id ID` runs nothing: the plan has no run `id`, so the
/// recipe (or a file it reads) changed since the id was planned; in a Slurm
/// array task (`SLURM_ARRAY_TASK_ID` set), since the task was submitted.
fn unknown_run_id(id: &str, recipe: &std::path::Path, runs: usize) -> String {
    let recipe = recipe.display();
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match env("SLURM_ARRAY_TASK_ID") {
        Some(task) => {
            let task = match env("SLURM_ARRAY_JOB_ID") {
                Some(job) => format!("{job}_{task}"),
                None => task,
            };
            let task = task.escape_debug();
            format!(
                "Slurm task {task} was submitted for run {id}, but the plan of {recipe} \
                 ({runs} runs) no longer has it: the recipe (or a file it reads) changed \
                 since submission. Nothing was run, rather than another configuration; \
                 `lpo sweep {recipe} --backend slurm` submits the current plan"
            )
        }
        None => format!(
            "no run {id} in the plan of {recipe} ({runs} runs): the recipe (or a file it \
             reads) changed since the id was planned, or the id is mistyped; `lpo plan \
             {recipe}` lists the current ids"
        ),
    }
}

fn report_line(summary: &Summary, what: &str) -> String {
    match (&summary.headline, &summary.error) {
        (_, Some(error)) => format!(
            "{} {} {what} at step {}: {error}",
            summary.run_id,
            summary.label,
            summary.failed_step.map_or("-".into(), |s| s.to_string())
        ),
        (Some(h), None) => format!(
            "{} {} {what}: win rate {:.3} vs {} (reward {:.2} vs {:.2})",
            summary.run_id,
            summary.label,
            h.win_rate,
            h.baseline,
            h.policy_reward,
            h.baseline_reward
        ),
        (None, None) => format!("{} {} {what}", summary.run_id, summary.label),
    }
}

/// What the sweep knows about one run.
#[derive(Debug, Clone, PartialEq)]
enum RunState {
    Pending,
    Running,
    Done(Outcome),
}

/// How a run of the sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Trained and evaluated by this sweep.
    Complete,
    /// Complete before this sweep started.
    DoneEarlier,
    /// Another process holds its lock; left alone.
    Locked,
    /// Its recipe was rejected (exit 2 of `lpo run`).
    RecipeProblem,
    /// Its process was killed by a signal (e.g. out of memory).
    Killed,
    /// It failed (a NaN loss, bad data, an error: see its summary).
    Failed,
    /// Not started: the run it is compared with did not complete.
    BaselineFailed,
}

impl Outcome {
    fn is_complete(self) -> bool {
        matches!(self, Outcome::Complete | Outcome::DoneEarlier)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Complete => "complete",
            Outcome::DoneEarlier => "done earlier",
            Outcome::Locked => "locked by another process",
            Outcome::RecipeProblem => "failed: recipe problem",
            Outcome::Killed => "failed: killed by a signal",
            Outcome::Failed => "failed",
            Outcome::BaselineFailed => "failed: its baseline run failed",
        })
    }
}

/// `lpo sweep`: every run of the plan.
pub fn sweep(args: &SweepArgs) -> Result<ExitCode> {
    let Some(plan) = crate::recipes::fetch_and_plan(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    crate::recipes::note_identical(&plan);
    let layout = args.results.layout();
    let Some(first) = plan.runs.first() else {
        bail!("the plan has no runs");
    };
    let name = first.recipe.name.clone();
    let baselines = baseline_indices(&plan);
    if args.backend == Backend::Slurm {
        return crate::slurm::sweep(args, &plan, &layout, &name, &baselines);
    }
    if args.slurm.given() {
        eprintln!("error: the Slurm options (--dry-run, --partition, ...) need --backend slurm");
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    // Here, not on a cluster's login node: each `lpo run` checks its own node.
    if !args.ignore_memory_estimate && crate::memory::refuse_sweep(&plan) {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    write_plan(&layout, &name, &plan)?;
    let jobs = args.jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // --threads, else the recipe's train.threads, else the cores divided by --jobs.
    let default_threads = ((cores / jobs).max(1)) as u32;
    let threads = args.threads.unwrap_or(default_threads);
    let total = plan.runs.len();
    let states = complete_earlier(&plan, &layout, &name)?;
    let earlier = states.iter().filter(|s| **s != RunState::Pending).count();
    eprintln!(
        "sweep {name}: {total} runs ({earlier} complete already), {jobs} at a time, {threads} threads each unless train.threads says otherwise; results in {}",
        layout.recipe_dir(&name).display()
    );
    let started = Instant::now();
    let mut scheduler = Scheduler {
        args,
        plan: &plan,
        layout: &layout,
        name: &name,
        baselines,
        jobs,
        default_threads,
        states,
        bars: Arc::new(SweepBars::new(total as u64, earlier as u64)),
        children: Vec::new(),
        finished: earlier,
        memory: (!args.ignore_memory_estimate).then(|| crate::memory::Estimates::new(&plan)),
        held: None,
    };
    scheduler.run()?;
    scheduler.bars.finish();
    let states = scheduler.states;
    print_sweep_table(&plan, &layout, &name, &states)?;
    eprintln!(
        "sweep took {:.1}s; `lpo report {}` tabulates it",
        started.elapsed().as_secs_f64(),
        args.recipe.recipe.display()
    );
    let unfinished: Vec<&RunState> = states
        .iter()
        .filter(|s| !matches!(s, RunState::Done(o) if o.is_complete()))
        .collect();
    Ok(crate::exit::code(if unfinished.is_empty() {
        crate::exit::OK
    } else if unfinished
        .iter()
        .all(|s| **s == RunState::Done(Outcome::Locked))
    {
        crate::exit::LOCKED
    } else {
        crate::exit::FAILED
    }))
}

/// For each run of `plan`, the index of its baseline run (`None`: the
/// reference).
pub fn baseline_indices(plan: &Plan) -> Vec<Option<usize>> {
    plan.runs.iter().map(|run| run.baseline).collect()
}

/// Each run's state before the sweep starts: done if a summary says it is
/// complete, else pending.
fn complete_earlier(plan: &Plan, layout: &Layout, name: &str) -> Result<Vec<RunState>> {
    let mut states = vec![RunState::Pending; plan.runs.len()];
    for (i, run) in plan.runs.iter().enumerate() {
        if let Some(s) = Summary::read(&layout.run_dir(name, &run.id))? {
            if s.status == Status::Complete {
                states[i] = RunState::Done(Outcome::DoneEarlier);
            }
        }
    }
    Ok(states)
}

/// A run's `lpo run` child, its bar, and the thread that feeds the bar from
/// the child's stdout.
struct Running {
    index: usize,
    child: Child,
    bar: ProgressBar,
    reader: JoinHandle<()>,
}

/// The sweep's scheduler: starts runs as slots free up and their baselines
/// complete, and records how each ended.
struct Scheduler<'a> {
    args: &'a SweepArgs,
    plan: &'a Plan,
    layout: &'a Layout,
    name: &'a str,
    /// Each run's baseline run, by index (`None`: the reference).
    baselines: Vec<Option<usize>>,
    /// Runs executed at once.
    jobs: usize,
    /// CPU threads of a run without `--threads` or train.threads.
    default_threads: u32,
    states: Vec<RunState>,
    bars: Arc<SweepBars>,
    children: Vec<Running>,
    /// Runs done, including those complete before the sweep.
    finished: usize,
    /// Each run's estimated peak and the memory of where it trains (`None`
    /// with `--ignore-memory-estimate`): runs start only while their
    /// estimates fit together.
    memory: Option<crate::memory::Estimates>,
    /// The run last held back for memory (said once).
    held: Option<usize>,
}

impl Scheduler<'_> {
    /// Runs until every run is done.
    fn run(&mut self) -> Result<()> {
        loop {
            self.start_ready()?;
            if self.children.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
            self.reap()?;
        }
    }

    /// Starts pending runs whose baseline run is done while fewer than
    /// `jobs` run; one whose baseline run did not complete is skipped.
    fn start_ready(&mut self) -> Result<()> {
        while self.children.len() < self.jobs {
            let Some(i) = self.next_ready() else { break };
            if let Some(b) = self.baselines[i] {
                if !matches!(self.states[b], RunState::Done(o) if o.is_complete()) {
                    self.skip(i, b);
                    continue;
                }
            }
            if !self.fits_beside_running(i) {
                break; // it starts when a running run ends
            }
            self.start(i)?;
        }
        Ok(())
    }

    /// Whether run `i`'s estimated peak fits beside the running runs'
    /// estimates on the same device; said once when it does not.
    fn fits_beside_running(&mut self, i: usize) -> bool {
        let Some(memory) = &self.memory else {
            return true;
        };
        let (place, need) = memory.peak(i);
        let running: Vec<u64> = self
            .children
            .iter()
            .map(|c| memory.peak(c.index))
            .filter(|(p, _)| *p == place)
            .map(|(_, bytes)| bytes)
            .collect();
        let fits = crate::memory::admits(&running, need, memory.limit(place));
        if !fits && self.held != Some(i) {
            self.held = Some(i);
            self.bars.println(&format!(
                "run {} waits: its estimated {} beside the {} of the {} running would exceed the {} here",
                self.plan.runs[i].id,
                lpo_plan::memory::human(need),
                lpo_plan::memory::human(running.iter().sum()),
                running.len(),
                memory.limit(place).map_or_else(String::new, lpo_plan::memory::human)
            ));
        }
        fits
    }

    /// The first pending run whose baseline run (if any) is done.
    fn next_ready(&self) -> Option<usize> {
        (0..self.states.len()).find(|&i| {
            self.states[i] == RunState::Pending
                && self.baselines[i].is_none_or(|b| matches!(self.states[b], RunState::Done(_)))
        })
    }

    /// Marks run `i` failed because its baseline run `b` did not complete.
    fn skip(&mut self, i: usize, b: usize) {
        self.states[i] = RunState::Done(Outcome::BaselineFailed);
        self.finished += 1;
        self.bars.println(&format!(
            "[{}/{}] {} skipped: baseline run {} did not complete",
            self.finished,
            self.plan.runs.len(),
            self.plan.runs[i].id,
            self.plan.runs[b].id
        ));
    }

    /// Spawns run `i` with a bar fed from its progress lines.
    fn start(&mut self, i: usize) -> Result<()> {
        let plan = self.plan;
        let run = &plan.runs[i];
        let threads = self.args.threads.unwrap_or(match run.recipe.train.threads {
            0 => self.default_threads,
            n => n,
        });
        let mut child = spawn_run(self.args, run, threads)?;
        let bar = self
            .bars
            .run_bar(&format!("[{} {}]", run.id, run.recipe.method_label()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (feed_bars, feed_bar) = (Arc::clone(&self.bars), bar.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                feed_bars.feed(&feed_bar, &line);
            }
        });
        self.children.push(Running {
            index: i,
            child,
            bar,
            reader,
        });
        self.states[i] = RunState::Running;
        Ok(())
    }

    /// Records the runs whose process has exited; keeps the others.
    fn reap(&mut self) -> Result<()> {
        for mut running in std::mem::take(&mut self.children) {
            match running.child.try_wait()? {
                None => self.children.push(running),
                Some(status) => self.exited(running, status)?,
            }
        }
        Ok(())
    }

    /// Records how the run of `running` ended, from its exit `status`.
    fn exited(&mut self, running: Running, status: ExitStatus) -> Result<()> {
        let _ = running.reader.join();
        self.bars.run_finished(&running.bar);
        self.finished += 1;
        let run = &self.plan.runs[running.index];
        let outcome = outcome_of(status);
        if let Some(signal) = status.signal() {
            record_killed(&self.layout.run_dir(self.name, &run.id), signal)?;
        }
        self.states[running.index] = RunState::Done(outcome);
        self.bars.println(&format!(
            "[{}/{}] {} {} {outcome}",
            self.finished,
            self.plan.runs.len(),
            run.id,
            run.recipe.method_label()
        ));
        Ok(())
    }
}

/// How a run ended, from the exit status of its `lpo run` process.
fn outcome_of(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Complete,
        (Some(c), _) if c == i32::from(crate::exit::LOCKED) => Outcome::Locked,
        (Some(c), _) if c == i32::from(crate::exit::BAD_INPUT) => Outcome::RecipeProblem,
        (None, Some(_)) => Outcome::Killed,
        (Some(_), _) | (None, None) => Outcome::Failed,
    }
}

/// Marks a run whose process was killed (e.g. by the kernel's out-of-memory
/// killer) as failed, so the report says why; its checkpoint stays, and the
/// next sweep retries it from there.
fn record_killed(dir: &std::path::Path, signal: i32) -> Result<()> {
    let Some(_lock) = lpo_results::FileLock::try_acquire(&dir.join(".lock"))? else {
        return Ok(());
    };
    if let Some(mut summary) = Summary::read(dir)? {
        if summary.status == Status::Running {
            summary.status = Status::Failed;
            summary.failed_step = Some(summary.steps_done);
            summary.error = Some(format!(
                "the run's process was killed by signal {signal}{}",
                if signal == libc::SIGKILL {
                    " (SIGKILL: out of memory?)"
                } else {
                    ""
                }
            ));
            summary.write(dir)?;
        }
    }
    Ok(())
}

fn spawn_run(args: &SweepArgs, run: &PlannedRun, threads: u32) -> Result<Child> {
    let exe = std::env::current_exe().context("locating the lpo executable")?;
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg(&args.recipe.recipe)
        .args(["--id", &run.id])
        .arg("--results")
        .arg(&args.results.dir)
        .args(["--threads", &threads.to_string()]);
    for set in &args.recipe.sets {
        command.args(["--set", set]);
    }
    if args.ignore_memory_estimate {
        command.arg("--ignore-memory-estimate");
    }
    command.arg("--progress-pipe").stdout(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; the child dies when the sweep does,
    // so an interrupted sweep leaves no orphan writing results.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().context("starting `lpo run`")
}

/// Records the plan in `results/<recipe>/plan.json` for `lpo report`. A
/// `plan.json` that is not a regular file (a directory) is left alone with a
/// warning: the report then lists no missing runs, and every run still runs.
pub fn write_plan(layout: &Layout, name: &str, plan: &Plan) -> Result<()> {
    let record = lpo_results::PlanRecord {
        recipe: name.to_string(),
        runs: plan
            .runs
            .iter()
            .map(|r| lpo_results::PlannedEntry {
                index: r.index,
                id: r.id.clone(),
                label: r.recipe.method_label(),
                seed: r.recipe.train.seed,
                assignments: assignments(r),
            })
            .collect(),
    };
    let dir = layout.recipe_dir(name);
    let path = dir.join(lpo_results::records::PLAN);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        eprintln!(
            "warning: {} is not a regular file; the plan is not recorded",
            path.display()
        );
        return Ok(());
    }
    record.write(&dir)
}

fn print_sweep_table(plan: &Plan, layout: &Layout, name: &str, states: &[RunState]) -> Result<()> {
    let header: Vec<String> = [
        "id",
        "label",
        "status",
        "win rate",
        "reward",
        "baseline reward",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    for (run, state) in plan.runs.iter().zip(states) {
        let summary = Summary::read(&layout.run_dir(name, &run.id))?;
        let status = match state {
            RunState::Done(s) => s.to_string(),
            _ => "not run".into(),
        };
        let (win, reward, base) = match summary.as_ref().and_then(|s| s.headline.as_ref()) {
            Some(h) => (
                format!("{:.3}", h.win_rate),
                format!("{:.2}", h.policy_reward),
                format!("{:.2}", h.baseline_reward),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        rows.push(vec![
            run.id.clone(),
            run.recipe.method_label(),
            status,
            win,
            reward,
            base,
        ]);
    }
    crate::recipes::print_table(&header, &rows);
    Ok(())
}
