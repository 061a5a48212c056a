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
    /// Train this one run on N local ranks (data parallelism: Gloo on the
    /// CPU, one GPU a rank on CUDA). train.grad_accum must be a multiple of
    /// N; results equal one process's up to float summation order.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub nproc: Option<u32>,
    /// Seconds a rank waits for the others (to join, or in a collective:
    /// rank 0 writing a checkpoint holds the others there) before it fails
    /// naming the ranks that do not answer. A rank that dies is noticed at
    /// once, whatever this says.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dist_timeout: u64,
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

/// `lpo run`: one planned run in this process, or (`--nproc N`) in N
/// local ranks of it.
pub fn run_one(args: &RunArgs) -> Result<ExitCode> {
    let rendezvous = match crate::launch::rendezvous_from_env() {
        Ok(at) => at,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(crate::exit::code(crate::exit::BAD_INPUT));
        }
    };
    if let Some(nproc) = args.nproc.filter(|&n| n > 1) {
        return crate::launch::nproc(nproc, rendezvous.as_ref());
    }
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
    if let Some(at) = &rendezvous {
        let grad_accum = recipe.train.grad_accum;
        if let Some(problem) = lpo_train::data_parallel::sharing_problem(grad_accum, at.world) {
            eprintln!("error: run {}: {problem}", run.id);
            return Ok(crate::exit::code(crate::exit::BAD_INPUT));
        }
        share_cores(&mut recipe);
    }
    let device = rank_device(device_for(&recipe)?, rendezvous.as_ref())?;
    let placement = match device {
        tch::Device::Cpu => lpo_plan::memory::Placement::Cpu,
        _ => lpo_plan::memory::Placement::Cuda,
    };
    if let Some(problem) = crate::memory::problem(
        &recipe,
        placement,
        ranks_sharing(placement, rendezvous.as_ref()),
    )
    .filter(|_| !args.ignore_memory_estimate)
    {
        eprintln!("error: run {}: {problem}", run.id);
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let baseline = baseline_for(&plan, run, &layout);
    let group = crate::launch::join(rendezvous.as_ref(), args.dist_timeout, device)?;
    let request = RunRequest {
        recipe: &recipe,
        run_id: &run.id,
        assignments: assignments(run),
        layout: &layout,
        device,
        baseline,
        group: group.as_ref(),
    };
    if let Some(g) = group.as_ref().filter(|g| g.rank() > 0) {
        return Ok(follower(&request, g.rank()));
    }
    let mode = if args.progress_pipe {
        Mode::Pipe
    } else if args.no_bars {
        Mode::Lines
    } else {
        Mode::Bars
    };
    let mut bars = Bars::new(format!("[{} {}]", run.id, recipe.method_label()), mode);
    let outcome = lpo_train::run::execute(&request, &mut bars)?;
    Ok(reported(outcome, mode, &run.id))
}

/// Says how the run ended (on stdout for `lpo sweep`'s pipe, else on
/// stderr) and gives the exit status that tells it.
fn reported(outcome: RunOutcome, mode: Mode, id: &str) -> ExitCode {
    let say = |line: String| {
        if mode == Mode::Pipe {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    match outcome {
        RunOutcome::Complete(summary) => {
            say(report_line(&summary, "complete"));
            ExitCode::SUCCESS
        }
        RunOutcome::AlreadyComplete(summary) => {
            say(report_line(&summary, "already complete"));
            ExitCode::SUCCESS
        }
        RunOutcome::Failed(summary) => {
            say(report_line(&summary, "FAILED"));
            crate::exit::code(crate::exit::FAILED)
        }
        RunOutcome::Locked => {
            eprintln!("run {id} is being written by another process; not touching it");
            crate::exit::code(crate::exit::LOCKED)
        }
    }
}

/// With no thread count set, the ranks on a node share its cores
/// (`LOCAL_WORLD_SIZE` ranks, as torchrun and `--nproc` say) instead of
/// each taking all of them.
fn share_cores(recipe: &mut lpo_recipe::Recipe) {
    if recipe.train.threads > 0 {
        return;
    }
    let local = local_world_size();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    if let Some(local) = local {
        recipe.train.threads = (cores / local).max(1);
    }
}

/// How many ranks share this machine's memory of `placement`: on the CPU
/// the ranks of this node (`LOCAL_WORLD_SIZE`, as `--nproc` and torchrun
/// set it, or Slurm's tasks on this node); a GPU is one rank's.
fn ranks_sharing(
    placement: lpo_plan::memory::Placement,
    at: Option<&lpo_torch::dist::Rendezvous>,
) -> u32 {
    match (placement, at) {
        (lpo_plan::memory::Placement::Cpu, Some(_)) => local_world_size()
            .or_else(|| slurm_tasks_here(&std::env::var("SLURM_STEP_TASKS_PER_NODE").ok()?))
            .unwrap_or(1),
        _ => 1,
    }
}

/// The ranks on this node as `--nproc` and torchrun say (`LOCAL_WORLD_SIZE`).
fn local_world_size() -> Option<u32> {
    let n = std::env::var("LOCAL_WORLD_SIZE")
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()?;
    (n > 0).then_some(n)
}

/// The most tasks of a Slurm step on one node, from its
/// `SLURM_STEP_TASKS_PER_NODE` (`2(x3),1`: 2).
fn slurm_tasks_here(value: &str) -> Option<u32> {
    value
        .split(',')
        .filter_map(|part| part.split('(').next()?.trim().parse::<u32>().ok())
        .max()
}

/// A rank's device: on CUDA, GPU `LOCAL_RANK` of its node, or its one GPU
/// when Slurm or `CUDA_VISIBLE_DEVICES` shows each rank a single device.
fn rank_device(
    device: tch::Device,
    at: Option<&lpo_torch::dist::Rendezvous>,
) -> Result<tch::Device> {
    match (device, at) {
        (tch::Device::Cuda(_), Some(at)) => {
            let count = tch::Cuda::device_count() as usize;
            match count {
                1 => Ok(tch::Device::Cuda(0)),
                n if at.local_rank < n => Ok(tch::Device::Cuda(at.local_rank)),
                n => bail!(
                    "rank {} has local rank {} but sees {n} CUDA devices: give each node \
                     at least as many GPUs as ranks (--gpus-per-node), or each rank one",
                    at.rank,
                    at.local_rank
                ),
            }
        }
        _ => Ok(device),
    }
}

/// A rank other than 0: it computes its share silently (rank 0 writes the
/// run's files and reports); it says only why it failed.
fn follower(request: &RunRequest<'_>, rank: usize) -> ExitCode {
    match lpo_train::run::execute(request, &mut lpo_train::Silent) {
        Ok(RunOutcome::Complete(_) | RunOutcome::AlreadyComplete(_)) => ExitCode::SUCCESS,
        Ok(RunOutcome::Failed(summary)) => {
            eprintln!(
                "rank {rank}: run {} failed at step {}: {}",
                summary.run_id,
                summary.failed_step.map_or("-".into(), |s| s.to_string()),
                summary.error.as_deref().unwrap_or("unknown error")
            );
            crate::exit::code(crate::exit::FAILED)
        }
        Ok(RunOutcome::Locked) => crate::exit::code(crate::exit::LOCKED),
        Err(e) => {
            eprintln!("rank {rank}: error: {e:#}");
            crate::exit::code(crate::exit::FAILED)
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

#[cfg(test)]
mod tests {
    use super::slurm_tasks_here;

    #[test]
    fn the_most_tasks_a_node_of_a_slurm_step_has() {
        assert_eq!(slurm_tasks_here("2(x3),1"), Some(2));
        assert_eq!(slurm_tasks_here("1,4"), Some(4));
        assert_eq!(slurm_tasks_here("8"), Some(8));
        assert_eq!(slurm_tasks_here("x"), None);
    }
}
