//! `lpo sweep --backend slurm`: a sweep as Slurm jobs, and their state for
//! `lpo status`.
//!
//! The plan and the run unit are the local backend's: the planned runs that
//! are neither complete nor queued become one job array per baseline level.
//! An array's task ids are the runs' plan indices at submission, and its
//! script maps each task id to the id of the run it was submitted for, which
//! the task runs: `lpo run RECIPE --id ID`. A recipe edited while tasks are
//! queued thus never makes a task run another configuration: a run whose id
//! the edited recipe no longer plans is refused (exit 2), one that merely
//! moved in the plan still runs. A task id the script does not list is
//! refused too. A prepare job
//! (`lpo prepare`) builds the shared data once; every array waits for it to
//! end (`afterany`: should it fail, each run still obtains its data itself and
//! says why it cannot). Runs compared with a baseline run (`eval.baseline`)
//! wait for exactly those baseline tasks to succeed (`afterok:JOB_TASK`) and
//! are cancelled if one fails (`--kill-on-invalid-dep=yes`); the next
//! `lpo sweep --backend slurm` submits them again. Arrays are requeueable, so
//! a preempted or node-failed task runs again and resumes from its checkpoint.
//!
//! Scripts, logs and the job ids (`jobs.json`) live in `results/<recipe>/slurm/`.

pub mod jobs;
pub mod queue;
pub mod script;
pub mod submit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use lpo_plan::Plan;
use lpo_results::{FileLock, Layout, Status, Summary};

use jobs::{slurm_dir, JobsFile};
pub use queue::status_column;
pub use script::SbatchOptions;
use script::{sh_quote, ScriptContext};

use crate::exit;
use crate::plan_record::{baseline_indices, write_plan};

/// What `lpo sweep --backend slurm` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The recipe, as given (each job gets its absolute path).
    pub recipe: PathBuf,
    /// `--set` overrides, passed on to every job.
    pub sets: Vec<String>,
    /// The results root, as given (each job gets its absolute path).
    pub results: PathBuf,
    /// `--threads`, passed on to every run.
    pub threads: Option<u32>,
    /// `--ignore-memory-estimate` (each run otherwise checks its node).
    pub ignore_memory_estimate: bool,
    /// Print the sbatch scripts and commands; submit and write nothing.
    pub dry_run: bool,
    /// The sbatch options of every job.
    pub sbatch: SbatchOptions,
}

/// `lpo sweep --backend slurm`: submits what is neither complete nor queued.
pub fn sweep(options: &Options, plan: &Plan, layout: &Layout, name: &str) -> Result<ExitCode> {
    let dir = script::absolute(&slurm_dir(layout, name))?;
    // Checked before anything is written or submitted.
    let ctx = script_context(options, &dir, name)?;
    let problems = ctx.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        return Ok(exit::code(exit::BAD_INPUT));
    }
    let dry = options.dry_run;
    let _lock = if dry {
        None
    } else {
        Some(FileLock::acquire(&dir.join(".lock"))?)
    };
    let mut record = JobsFile::read(&dir)?;
    let queued = queue::queued_tasks(plan, &record, dry)?;
    let submit = to_submit(plan, layout, name, &queued);
    if submit.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let number = record.jobs.iter().filter(|j| j.kind == "prepare").count() + 1;
    let ids: Vec<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let baselines = baseline_indices(plan);
    let jobs = submit::pending_jobs(&ctx, &dir, number, &ids, &baselines, &submit)?;
    if dry {
        submit::print_dry_run(&jobs, plan, &queued);
        return Ok(ExitCode::SUCCESS);
    }
    write_plan(layout, name, plan)?;
    std::fs::create_dir_all(&ctx.logs)
        .with_context(|| format!("failed to create `{}`", ctx.logs.display()))?;
    submit::submit_jobs(&jobs, &queued, &dir, &mut record)?;
    let results = if options.results == Path::new("results") {
        String::new()
    } else {
        format!(
            " --results {}",
            sh_quote(&options.results.to_string_lossy())
        )
    };
    eprintln!(
        "`lpo status {}{results}` shows their state; logs in {}",
        options.recipe.display(),
        ctx.logs.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The plan indices of the runs to submit: neither complete nor queued
/// (`queued`: each run's queued task); says which are queued, and counts.
fn to_submit(
    plan: &Plan,
    layout: &Layout,
    name: &str,
    queued: &[Option<String>],
) -> BTreeSet<usize> {
    let mut submit = BTreeSet::new();
    let mut complete = 0;
    for (i, run) in plan.runs.iter().enumerate() {
        let summary = Summary::read(&layout.run_dir(name, &run.id)).unwrap_or(None);
        if summary.is_some_and(|s| s.status == Status::Complete) {
            complete += 1;
        } else if let Some(task) = &queued[i] {
            eprintln!(
                "run {} ({}) is queued already: job {task}",
                run.id,
                run.recipe.method_label()
            );
        } else {
            submit.insert(i);
        }
    }
    eprintln!(
        "sweep {name} on Slurm: {} runs, {complete} complete, {} queued, {} to submit",
        plan.runs.len(),
        queued.iter().flatten().count(),
        submit.len()
    );
    submit
}

/// The context of a sweep's scripts, whose record and logs live in `dir`.
fn script_context(options: &Options, dir: &Path, name: &str) -> Result<ScriptContext> {
    Ok(ScriptContext {
        exe: std::env::current_exe().context("locating the lpo executable")?,
        recipe: script::absolute(&options.recipe)?,
        results: script::absolute(&options.results)?,
        workdir: std::env::current_dir().context("reading the current directory")?,
        logs: script::absolute(&dir.join("logs"))?,
        sets: options.sets.clone(),
        threads: options.threads,
        ignore_memory_estimate: options.ignore_memory_estimate,
        name: name.to_string(),
        sbatch: options.sbatch.clone(),
    })
}
