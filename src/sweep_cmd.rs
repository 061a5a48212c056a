//! `lpo sweep`: every planned run of a recipe, executed by a backend of
//! `lpo_exec`: `lpo run` child processes here (`lpo_exec::local`, with
//! progress bars), or Slurm job arrays (`lpo_exec::slurm`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use lpo_exec::local::Outcome;
use lpo_plan::Plan;
use lpo_results::{Layout, Summary};

use crate::progress::SweepBars;
use crate::recipes::RecipeArgs;

/// Options of `lpo sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Also log every run to this MLflow tracking server (sets
    /// `tracking.mlflow`; credentials from MLFLOW_TRACKING_TOKEN or
    /// MLFLOW_TRACKING_USERNAME/PASSWORD).
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
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
    pub slurm: SlurmArgs,
}

/// Where `lpo sweep` executes the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// `lpo run` child processes on this machine, `--jobs` at a time.
    Local,
    /// A Slurm job array submitted with `sbatch` (see `--dry-run` and the Slurm options).
    Slurm,
}

/// Options of `lpo sweep --backend slurm`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Slurm (with --backend slurm)")]
pub struct SlurmArgs {
    /// Print the sbatch scripts and commands; submit and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account to charge (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit per run, in Slurm's format (`#SBATCH --time`, e.g. 2:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per run (`#SBATCH --gpus`): at most 1, as one process uses one
    /// device (several: --ntasks with --gpus-per-node).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Ranks per run (`#SBATCH --ntasks`): above 1, each run's task starts
    /// its ranks with srun and they share its batches (data parallelism;
    /// train.grad_accum must be a multiple).
    #[arg(long)]
    pub ntasks: Option<u32>,
    /// Nodes per run (`#SBATCH --nodes`), its ranks spread over them.
    #[arg(long)]
    pub nodes: Option<u32>,
    /// GPUs per node of a run's task (`#SBATCH --gpus-per-node`), one a rank.
    #[arg(long)]
    pub gpus_per_node: Option<u32>,
    /// CPUs per run (`#SBATCH --cpus-per-task`); a run's threads unless --threads or train.threads say otherwise.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory per run (`#SBATCH --mem`, e.g. 16G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Another sbatch option for every job, e.g. `--sbatch=--qos=high` (one option per flag; repeatable).
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

impl SlurmArgs {
    /// Whether any Slurm option was given.
    pub fn given(&self) -> bool {
        self.dry_run
            || self.partition.is_some()
            || self.account.is_some()
            || self.time.is_some()
            || self.gpus.is_some()
            || self.ntasks.is_some()
            || self.nodes.is_some()
            || self.gpus_per_node.is_some()
            || self.cpus.is_some()
            || self.mem.is_some()
            || !self.extra.is_empty()
    }

    /// The sbatch options of every job.
    fn sbatch(&self) -> lpo_exec::slurm::SbatchOptions {
        lpo_exec::slurm::SbatchOptions {
            partition: self.partition.clone(),
            account: self.account.clone(),
            time: self.time.clone(),
            gpus: self.gpus,
            ntasks: self.ntasks,
            nodes: self.nodes,
            gpus_per_node: self.gpus_per_node,
            cpus: self.cpus,
            mem: self.mem.clone(),
            extra: self.extra.clone(),
        }
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
    if args.backend == Backend::Slurm {
        let options = lpo_exec::slurm::Options {
            recipe: args.recipe.recipe.clone(),
            sets: args.recipe.overrides(),
            results: args.results.dir.clone(),
            threads: args.threads,
            ignore_memory_estimate: args.ignore_memory_estimate,
            dry_run: args.slurm.dry_run,
            sbatch: args.slurm.sbatch(),
        };
        return lpo_exec::slurm::sweep(&options, &plan, &layout, &name);
    }
    if args.slurm.given() {
        eprintln!("error: the Slurm options (--dry-run, --partition, ...) need --backend slurm");
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    sweep_here(args, &plan, &layout, &name)
}

/// `lpo sweep --backend local`: the runs as `lpo run` children here, with
/// bars; a table of how each ended.
fn sweep_here(args: &SweepArgs, plan: &Plan, layout: &Layout, name: &str) -> Result<ExitCode> {
    // Here, not on a cluster's login node: each `lpo run` checks its own node.
    if !args.ignore_memory_estimate && crate::memory::refuse_sweep(plan) {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let options = lpo_exec::local::Options {
        recipe: args.recipe.recipe.clone(),
        sets: args.recipe.overrides(),
        results: args.results.dir.clone(),
        jobs: args.jobs,
        threads: args.threads,
        ignore_memory_estimate: args.ignore_memory_estimate,
    };
    let memory =
        (!args.ignore_memory_estimate).then(|| crate::memory::Estimates::new(plan).admission());
    let finished = lpo_exec::local::sweep(&options, plan, layout, name, memory, SweepBars::new)?;
    print_sweep_table(plan, layout, name, &finished.outcomes)?;
    eprintln!(
        "sweep took {:.1}s; `lpo report {}` tabulates it",
        finished.started.elapsed().as_secs_f64(),
        args.recipe.recipe.display()
    );
    Ok(crate::exit::code(finished.status()))
}

/// The table of the sweep's runs: how each ended and its headline.
fn print_sweep_table(
    plan: &Plan,
    layout: &Layout,
    name: &str,
    outcomes: &[Option<Outcome>],
) -> Result<()> {
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
    for (run, outcome) in plan.runs.iter().zip(outcomes) {
        let summary = Summary::read(&layout.run_dir(name, &run.id))?;
        let status = match outcome {
            Some(s) => s.to_string(),
            None => "not run".into(),
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
