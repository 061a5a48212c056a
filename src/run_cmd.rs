//! `lpo run`: one planned run, executed in this process by
//! `lpo_train::run::execute` (the unit both backends of `lpo sweep` start).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use lpo_exec::plan_record::assignments;
use lpo_plan::{Plan, PlannedRun};
use lpo_results::{Layout, Summary};
use lpo_train::request::{Baseline, RunOutcome, RunRequest};

use crate::device::{apply_threads, device_for};
use crate::progress::{Bars, Mode};
use crate::recipes::RecipeArgs;

/// Options of `lpo run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Also log every run to this MLflow tracking server (sets
    /// `tracking.mlflow`; credentials from MLFLOW_TRACKING_TOKEN or
    /// MLFLOW_TRACKING_USERNAME/PASSWORD).
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
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
