//! `lpo sweep`'s local backend: every run of a plan as an `lpo run` child
//! process on this machine (so a crash or an out-of-memory kill takes down
//! one run, not the sweep, and `jobs` of them run at once). Baseline runs go
//! first; a run starts only while the estimated peaks of the running runs
//! fit together beside its own. Children die with the sweep
//! (PR_SET_PDEATHSIG); an interrupted run resumes from its last checkpoint
//! on the next sweep, and a complete run is never redone.

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lpo_plan::memory::{human, Placement};
use lpo_plan::{Plan, PlannedRun};
use lpo_results::{Layout, Status, Summary};

use crate::exit;
use crate::plan_record::{baseline_indices, write_plan};

/// What `lpo sweep` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The recipe, as given (passed on to each `lpo run`).
    pub recipe: PathBuf,
    /// `--set` overrides, passed on to each run.
    pub sets: Vec<String>,
    /// The results root.
    pub results: PathBuf,
    /// Runs executed at once; CPU threads are divided between them.
    pub jobs: usize,
    /// `--threads`: CPU threads per run.
    pub threads: Option<u32>,
    /// `--ignore-memory-estimate`, passed on to each run.
    pub ignore_memory_estimate: bool,
}

/// Each run's estimated peak memory and the memory of where it trains:
/// runs start only while their estimates fit together.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Each run's placement and estimated peak in bytes, by plan index.
    pub peaks: Vec<(Placement, u64)>,
    /// The memory runs may use on the CPU here, if known.
    pub cpu: Option<u64>,
    /// The memory of the CUDA device here, if known.
    pub cuda: Option<u64>,
}

impl Memory {
    /// The memory available on `placement` here, if known.
    fn limit(&self, placement: Placement) -> Option<u64> {
        match placement {
            Placement::Cpu => self.cpu,
            Placement::Cuda => self.cuda,
        }
    }
}

/// Whether a run estimated at `need` bytes may start beside runs estimated
/// at `running` on a device with `limit` bytes: always when nothing runs (a
/// run alone was already checked to fit, or allowed by
/// `--ignore-memory-estimate`), else while the estimates fit together.
pub fn admits(running: &[u64], need: u64, limit: Option<u64>) -> bool {
    match limit {
        Some(limit) if !running.is_empty() => running.iter().sum::<u64>() + need <= limit,
        _ => true,
    }
}

/// What a sweep shows while it runs (the command line draws progress
/// bars). Shared with the threads that read the runs' output.
pub trait Observer: Send + Sync + 'static {
    /// The display of one running run.
    type Run: Clone + Send + 'static;
    /// A run labelled `label` (`[ID METHOD]`) has started.
    fn run_started(&self, label: &str) -> Self::Run;
    /// A line the run wrote to its stdout: progress, or a line to show.
    fn feed(&self, run: &Self::Run, line: &str);
    /// The run's process has exited.
    fn run_finished(&self, run: &Self::Run);
    /// A line about the sweep.
    fn println(&self, line: &str);
    /// Every run has ended.
    fn finish(&self);
}

/// How a run of the sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
    /// Whether the run is complete (now or earlier).
    pub fn is_complete(self) -> bool {
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

/// What the sweep knows about one run.
#[derive(Debug, Clone, PartialEq)]
enum RunState {
    Pending,
    Running,
    Done(Outcome),
}

/// How a sweep ended.
#[derive(Debug)]
pub struct Finished {
    /// How each run ended, by plan index (`None`: not run).
    pub outcomes: Vec<Option<Outcome>>,
    /// When the first run could start (after the sweep's opening line).
    pub started: Instant,
}

impl Finished {
    /// The sweep's exit status: [`exit::OK`] when every run is complete,
    /// [`exit::LOCKED`] when the others are all locked by another process,
    /// else [`exit::FAILED`].
    pub fn status(&self) -> u8 {
        let unfinished: Vec<&Option<Outcome>> = self
            .outcomes
            .iter()
            .filter(|o| !o.is_some_and(Outcome::is_complete))
            .collect();
        if unfinished.is_empty() {
            exit::OK
        } else if unfinished.iter().all(|o| **o == Some(Outcome::Locked)) {
            exit::LOCKED
        } else {
            exit::FAILED
        }
    }
}

/// `lpo sweep`: runs every run of `plan` not complete yet, `options.jobs`
/// at a time, shown by the observer `observe` makes from the number of runs
/// and of those complete already. `memory` (`None`: not checked) holds back
/// a run while it would not fit beside the running ones.
pub fn sweep<O: Observer>(
    options: &Options,
    plan: &Plan,
    layout: &Layout,
    name: &str,
    memory: Option<Memory>,
    observe: impl FnOnce(u64, u64) -> O,
) -> Result<Finished> {
    write_plan(layout, name, plan)?;
    let jobs = options.jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // --threads, else the recipe's train.threads, else the cores divided by --jobs.
    let default_threads = ((cores / jobs).max(1)) as u32;
    let threads = options.threads.unwrap_or(default_threads);
    let total = plan.runs.len();
    let states = complete_earlier(plan, layout, name)?;
    let earlier = states.iter().filter(|s| **s != RunState::Pending).count();
    eprintln!(
        "sweep {name}: {total} runs ({earlier} complete already), {jobs} at a time, {threads} threads each unless train.threads says otherwise; results in {}",
        layout.recipe_dir(name).display()
    );
    let started = Instant::now();
    let mut scheduler = Scheduler {
        options,
        plan,
        layout,
        name,
        baselines: baseline_indices(plan),
        jobs,
        default_threads,
        states,
        observer: Arc::new(observe(total as u64, earlier as u64)),
        children: Vec::new(),
        finished: earlier,
        memory,
        held: None,
    };
    scheduler.run()?;
    scheduler.observer.finish();
    let outcomes = scheduler
        .states
        .into_iter()
        .map(|s| match s {
            RunState::Done(o) => Some(o),
            _ => None,
        })
        .collect();
    Ok(Finished { outcomes, started })
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

/// A run's `lpo run` child, its display, and the thread that feeds the
/// display from the child's stdout.
struct Running<R> {
    index: usize,
    child: Child,
    display: R,
    reader: JoinHandle<()>,
}

/// The sweep's scheduler: starts runs as slots free up and their baselines
/// complete, and records how each ended.
struct Scheduler<'a, O: Observer> {
    options: &'a Options,
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
    observer: Arc<O>,
    children: Vec<Running<O::Run>>,
    /// Runs done, including those complete before the sweep.
    finished: usize,
    /// Each run's estimated peak and the memory of where it trains (`None`
    /// with `--ignore-memory-estimate`): runs start only while their
    /// estimates fit together.
    memory: Option<Memory>,
    /// The run last held back for memory (said once).
    held: Option<usize>,
}
impl<O: Observer> Scheduler<'_, O> {
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
        let (place, need) = memory.peaks[i];
        let running: Vec<u64> = self
            .children
            .iter()
            .map(|c| memory.peaks[c.index])
            .filter(|(p, _)| *p == place)
            .map(|(_, bytes)| bytes)
            .collect();
        let fits = admits(&running, need, memory.limit(place));
        if !fits && self.held != Some(i) {
            self.held = Some(i);
            self.observer.println(&format!(
                "run {} waits: its estimated {} beside the {} of the {} running would exceed the {} here",
                self.plan.runs[i].id,
                human(need),
                human(running.iter().sum()),
                running.len(),
                memory.limit(place).map_or_else(String::new, human)
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
        self.observer.println(&format!(
            "[{}/{}] {} skipped: baseline run {} did not complete",
            self.finished,
            self.plan.runs.len(),
            self.plan.runs[i].id,
            self.plan.runs[b].id
        ));
    }

    /// Spawns run `i` with a display fed from its progress lines.
    fn start(&mut self, i: usize) -> Result<()> {
        let plan = self.plan;
        let run = &plan.runs[i];
        let threads = self.options.threads.unwrap_or(
            run.recipe
                .train
                .fixed_threads()
                .unwrap_or(self.default_threads),
        );
        let mut child = spawn_run(self.options, run, threads)?;
        let display =
            self.observer
                .run_started(&format!("[{} {}]", run.id, run.recipe.method_label()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (observer, fed) = (Arc::clone(&self.observer), display.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                observer.feed(&fed, &line);
            }
        });
        self.children.push(Running {
            index: i,
            child,
            display,
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
    fn exited(&mut self, running: Running<O::Run>, status: ExitStatus) -> Result<()> {
        let _ = running.reader.join();
        self.observer.run_finished(&running.display);
        self.finished += 1;
        let run = &self.plan.runs[running.index];
        let outcome = outcome_of(status);
        if let Some(signal) = status.signal() {
            record_killed(&self.layout.run_dir(self.name, &run.id), signal)?;
        }
        self.states[running.index] = RunState::Done(outcome);
        self.observer.println(&format!(
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
        (Some(c), _) if c == i32::from(exit::LOCKED) => Outcome::Locked,
        (Some(c), _) if c == i32::from(exit::BAD_INPUT) => Outcome::RecipeProblem,
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

/// Starts `lpo run` for `run` with `threads` CPU threads, its progress
/// lines piped to the sweep.
fn spawn_run(options: &Options, run: &PlannedRun, threads: u32) -> Result<Child> {
    let exe = std::env::current_exe().context("locating the lpo executable")?;
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg(&options.recipe)
        .args(["--id", &run.id])
        .arg("--results")
        .arg(&options.results)
        .args(["--threads", &threads.to_string()]);
    for set in &options.sets {
        command.args(["--set", set]);
    }
    if options.ignore_memory_estimate {
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::{admits, outcome_of, Finished, Outcome};
    use crate::exit;

    const GIB: u64 = 1 << 30;

    #[test]
    fn runs_start_together_only_while_their_estimates_fit() {
        // The audit's case: two runs of 13.6 GiB on a 23.5 GiB machine.
        let (run, machine) = (136 * GIB / 10, 235 * GIB / 10);
        assert!(admits(&[], run, Some(machine)));
        assert!(!admits(&[run], run, Some(machine)));
        // Small runs share the machine.
        assert!(admits(&[GIB, GIB], GIB, Some(machine)));
        assert!(!admits(&[10 * GIB, 10 * GIB], 4 * GIB, Some(machine)));
        // Alone, a run always starts (it was checked on its own, or the check
        // was turned off); an unknown limit admits everything.
        assert!(admits(&[], 2 * machine, Some(machine)));
        assert!(admits(&[run, run], run, None));
    }

    #[test]
    fn a_runs_exit_status_says_how_it_ended() {
        let exited = |code: u8| outcome_of(ExitStatus::from_raw(i32::from(code) << 8));
        assert_eq!(exited(exit::OK), Outcome::Complete);
        assert_eq!(exited(exit::FAILED), Outcome::Failed);
        assert_eq!(exited(exit::BAD_INPUT), Outcome::RecipeProblem);
        assert_eq!(exited(exit::LOCKED), Outcome::Locked);
        assert_eq!(exited(101), Outcome::Failed);
        let killed = outcome_of(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(killed, Outcome::Killed);
    }

    #[test]
    fn a_sweep_exits_locked_only_when_every_unfinished_run_is_locked() {
        let status = |outcomes: &[Option<Outcome>]| {
            Finished {
                outcomes: outcomes.to_vec(),
                started: std::time::Instant::now(),
            }
            .status()
        };
        let (done, earlier) = (Some(Outcome::Complete), Some(Outcome::DoneEarlier));
        assert_eq!(status(&[done, earlier]), exit::OK);
        assert_eq!(status(&[done, Some(Outcome::Locked)]), exit::LOCKED);
        assert_eq!(status(&[Some(Outcome::Locked), None]), exit::FAILED);
        assert_eq!(status(&[done, Some(Outcome::BaselineFailed)]), exit::FAILED);
    }
}
