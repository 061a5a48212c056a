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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;
use lpo_plan::Plan;
use lpo_results::{write_atomic, FileLock, Layout, Status, Summary};
use serde::{Deserialize, Serialize};

use crate::sweep::SweepArgs;

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
    /// GPUs per run (`#SBATCH --gpus`): at most 1, as a run uses one device.
    #[arg(long)]
    pub gpus: Option<u32>,
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
            || self.cpus.is_some()
            || self.mem.is_some()
            || !self.extra.is_empty()
    }

    /// Why the options cannot go into an sbatch script, one message per
    /// problem, each naming its flag: values an `#SBATCH` line cannot carry
    /// (a newline would end the line and the shell would run the rest), an
    /// `--sbatch` that is not one option, `--gpus` above 1.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (flag, value) in [
            ("--partition", &self.partition),
            ("--account", &self.account),
            ("--time", &self.time),
            ("--mem", &self.mem),
        ] {
            if let Some(why) = value.as_deref().and_then(directive_problem) {
                problems.push(format!("{flag} {}: {why}", shown(value.as_deref())));
            }
        }
        if let Some(gpus) = self.gpus.filter(|&g| g > 1) {
            problems.push(format!(
                "--gpus {gpus}: a run uses one device, so the other GPUs would sit idle; use --gpus 1"
            ));
        }
        for extra in &self.extra {
            if let Err(why) = sbatch_option(extra) {
                problems.push(format!("--sbatch {}: {why}", shown(Some(extra))));
            }
        }
        problems
    }
}

/// A flag's value as an error message shows it: quoted, control
/// characters escaped.
fn shown(value: Option<&str>) -> String {
    format!("{:?}", value.unwrap_or_default())
}

/// The record of the jobs a recipe's Slurm sweeps submitted.
pub const JOBS_FILE: &str = "jobs.json";

/// One submitted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Slurm's job id (of the array).
    pub job: String,
    /// `prepare` or `runs`.
    pub kind: String,
    /// The sbatch script.
    pub script: PathBuf,
    /// `--dependency` it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Runs of the array: task id (the plan index) and run id.
    #[serde(default)]
    pub runs: Vec<RecordedRun>,
    /// Seconds since the Unix epoch.
    pub submitted: u64,
}

/// A run as a task of an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRun {
    /// The array task id: the run's index in the plan when submitted.
    pub index: usize,
    /// The run id.
    pub id: String,
}

/// Every job submitted for a recipe, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JobsFile {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
}

impl JobsFile {
    /// Reads `dir/jobs.json`; none yet is an empty record.
    pub fn read(dir: &Path) -> Result<JobsFile> {
        let path = dir.join(JOBS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing `{}`", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobsFile::default()),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", path.display())),
        }
    }

    fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(JOBS_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    /// The newest Slurm task of each run id: `JOB_TASK`.
    pub fn latest_tasks(&self) -> HashMap<String, String> {
        let mut tasks = HashMap::new();
        for job in &self.jobs {
            for run in &job.runs {
                tasks.insert(run.id.clone(), format!("{}_{}", job.job, run.index));
            }
        }
        tasks
    }
}

/// The directory of a recipe's Slurm scripts, logs and job record.
pub fn slurm_dir(layout: &Layout, name: &str) -> PathBuf {
    layout.recipe_dir(name).join("slurm")
}

/// A shell word: single-quoted unless plainly safe.
pub fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Why `value` cannot be the value of an `#SBATCH` option: empty, or
/// holding a control character (a newline ends the line, and the shell runs
/// what follows as a command), a double quote or a backslash (sbatch's own
/// quoting of them differs between Slurm versions).
fn directive_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(format!(
            "holds the control character {:?}, which an #SBATCH line cannot carry (a newline would end the line and the shell would run the rest)",
            c
        ));
    }
    if value.contains(['"', '\\']) {
        return Some(
            "holds a double quote or a backslash, which an #SBATCH line cannot carry".into(),
        );
    }
    None
}

/// A checked value as sbatch reads it on an `#SBATCH` line: bare when
/// plainly safe, else double-quoted (sbatch strips the quotes, keeps spaces
/// and quotes inside, and reads an escaped `#` as itself rather than as the
/// start of a comment).
fn directive_word(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('#', "\\#"))
    }
}

/// A path as the value of an `#SBATCH` option: always double-quoted, so
/// spaces are fine; quotes, backslashes and newlines cannot be written.
fn directive_path(path: &Path) -> std::result::Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("`{}` is not UTF-8", path.display()))?;
    if let Some(why) = directive_problem(text) {
        return Err(format!("the path {text:?} {why}"));
    }
    Ok(format!("\"{}\"", text.replace('#', "\\#")))
}

/// The `--output` pattern of the logs in `logs`: Slurm expands `%`
/// sequences in it, so the directory's own `%` are written `%%`.
fn output_pattern(logs: &Path, file: &str) -> std::result::Result<String, String> {
    let dir = path_str(logs).map_err(|e| e.to_string())?;
    directive_path(Path::new(&format!("{}/{file}", dir.replace('%', "%%"))))
}

/// One `--sbatch` option as an `#SBATCH` line carries it: `--name`,
/// `--name=VALUE` or `-X VALUE` (an `#SBATCH` prefix is dropped), the
/// value quoted so that it stays one option.
fn sbatch_option(raw: &str) -> std::result::Result<String, String> {
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character {c:?}: give one sbatch option per --sbatch, without newlines"
        ));
    }
    let option = raw.trim().trim_start_matches("#SBATCH").trim();
    let end = option
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(option.len());
    let (name, rest) = option.split_at(end);
    let flag = name.trim_start_matches('-');
    let named = name.starts_with('-')
        && name.len() - flag.len() <= 2
        && flag.starts_with(|c: char| c.is_ascii_alphabetic())
        && flag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !named {
        return Err("must be one sbatch option starting with `-`, e.g. --sbatch=--qos=high".into());
    }
    let (separator, value) = match rest.strip_prefix('=') {
        Some(value) => ("=", value),
        None => (" ", rest.trim_start()),
    };
    if rest.is_empty() {
        return Ok(name.to_string());
    }
    if let Some(why) = directive_problem(value) {
        return Err(format!("its value {why}"));
    }
    Ok(format!("{name}{separator}{}", directive_word(value)))
}

/// Slurm's `--array` value for these task ids (ascending): consecutive
/// ids as ranges (`0-3,5,7-8`).
pub fn array_spec<'a>(indices: impl IntoIterator<Item = &'a usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indices.into_iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The `--dependency` of a run array: after the prepare job ended (any
/// way), and after each baseline task (`JOB_TASK`) succeeded.
pub fn dependency(prepare: Option<&str>, baseline_tasks: &BTreeSet<String>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(job) = prepare {
        parts.push(format!("afterany:{job}"));
    }
    if !baseline_tasks.is_empty() {
        let tasks: Vec<&str> = baseline_tasks.iter().map(String::as_str).collect();
        parts.push(format!("afterok:{}", tasks.join(":")));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The level of each run to submit: 0 unless its baseline run is submitted
/// too, then one more than the baseline's. Runs not submitted get `None`.
pub fn levels(baselines: &[Option<usize>], submit: &BTreeSet<usize>) -> Result<Vec<Option<usize>>> {
    let mut levels = vec![None; baselines.len()];
    for &i in submit {
        let mut chain = vec![i];
        let mut at = i;
        while let Some(b) = baselines[at].filter(|b| submit.contains(b)) {
            if chain.contains(&b) {
                bail!("runs {chain:?} are each other's eval.baseline: none can go first");
            }
            chain.push(b);
            at = b;
        }
        levels[i] = Some(chain.len() - 1);
    }
    Ok(levels)
}

/// What goes into every script.
pub struct ScriptContext {
    /// The lpo executable.
    pub exe: PathBuf,
    /// The recipe (absolute).
    pub recipe: PathBuf,
    /// The results root (absolute).
    pub results: PathBuf,
    /// The directory the jobs run in (where the sweep was submitted from).
    pub workdir: PathBuf,
    /// Where Slurm writes the jobs' output.
    pub logs: PathBuf,
    /// `--set` overrides.
    pub sets: Vec<String>,
    /// `--threads`.
    pub threads: Option<u32>,
    /// `--ignore-memory-estimate` (each run otherwise checks its node).
    pub ignore_memory_estimate: bool,
    /// The recipe's name.
    pub name: String,
    /// The Slurm options.
    pub slurm: SlurmArgs,
}

/// The job a script runs.
pub enum JobKind {
    /// `lpo prepare`.
    Prepare,
    /// An array of runs: each task id (the run's plan index at submission)
    /// with the id of the run it was submitted for.
    Runs(BTreeMap<usize, String>),
}

impl ScriptContext {
    /// The sbatch script of `kind`.
    pub fn script(&self, kind: &JobKind) -> Result<String> {
        let mut s = String::from("#!/bin/bash\n");
        // The name in comments with its control characters escaped: a
        // newline in it must not end the comment.
        let name = self.name.escape_debug();
        let (what, output) = match kind {
            JobKind::Prepare => (
                format!("shared data of `{name}` (lpo prepare)"),
                "prepare-%j.out",
            ),
            JobKind::Runs(tasks) => (
                format!("runs {} of `{name}`", array_spec(tasks.keys())),
                "run-%A_%a.out",
            ),
        };
        s += &format!("# Written by `lpo sweep --backend slurm`: {what}.\n");
        for option in self.directives(kind, output).map_err(anyhow::Error::msg)? {
            s += &format!("#SBATCH {option}\n");
        }
        s += "set -euo pipefail\n";
        if let JobKind::Runs(tasks) = kind {
            s += &task_run_ids(tasks)?;
        }
        s += &format!("exec {}\n", self.command(kind)?.join(" "));
        Ok(s)
    }

    /// Why the scripts cannot be written: the Slurm options' problems and
    /// paths an `#SBATCH` line cannot carry, each naming what it is about.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.slurm.problems();
        if problems.is_empty() {
            if let Err(why) = self.directives(&JobKind::Prepare, "prepare-%j.out") {
                problems.push(why);
            }
        }
        problems
    }

    /// The `#SBATCH` options of a job writing its output to `output` in the logs.
    fn directives(&self, kind: &JobKind, output: &str) -> std::result::Result<Vec<String>, String> {
        // The job name is cosmetic: anything but plain characters becomes `_`.
        let job_name: String = self
            .name
            .chars()
            .map(|c| match c.is_alphanumeric() || "-_.+,:@".contains(c) {
                true => c,
                false => '_',
            })
            .collect();
        let mut options = vec![
            format!("--job-name=lpo-{job_name}"),
            format!("--chdir={}", directive_path(&self.workdir)?),
            format!("--output={}", output_pattern(&self.logs, output)?),
        ];
        if let JobKind::Runs(tasks) = kind {
            options.push(format!("--array={}", array_spec(tasks.keys())));
            // Preempted or node-failed tasks run again and resume.
            options.push("--requeue".into());
            options.push("--open-mode=append".into());
        }
        options.extend(self.options()?);
        Ok(options)
    }

    /// The job's command line, every word quoted for the shell.
    fn command(&self, kind: &JobKind) -> Result<Vec<String>> {
        let mut command = vec![sh_quote(path_str(&self.exe)?)];
        match kind {
            JobKind::Prepare => command.push("prepare".into()),
            JobKind::Runs(_) => command.push("run".into()),
        }
        command.push(sh_quote(path_str(&self.recipe)?));
        if let JobKind::Runs(_) = kind {
            // The run this task was submitted for, by id (`task_run_ids`).
            command.push("--id \"$id\"".into());
            if self.ignore_memory_estimate {
                command.push("--ignore-memory-estimate".into());
            }
        }
        command.push(format!("--results {}", sh_quote(path_str(&self.results)?)));
        if let Some(threads) = self.threads {
            command.push(format!("--threads {threads}"));
        }
        for set in &self.sets {
            command.push(format!("--set {}", sh_quote(set)));
        }
        command.push("--no-bars".into());
        Ok(command)
    }

    /// The `#SBATCH` options from the Slurm arguments, each value checked
    /// and quoted as sbatch reads it.
    fn options(&self) -> std::result::Result<Vec<String>, String> {
        if let Some(problem) = self.slurm.problems().into_iter().next() {
            return Err(problem);
        }
        let a = &self.slurm;
        let mut options = Vec::new();
        let mut add = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                options.push(format!("--{name}={}", directive_word(&v)));
            }
        };
        add("partition", a.partition.clone());
        add("account", a.account.clone());
        add("time", a.time.clone());
        add("gpus", a.gpus.map(|g| g.to_string()));
        add("cpus-per-task", a.cpus.map(|c| c.to_string()));
        add("mem", a.mem.clone());
        for extra in &a.extra {
            options.push(sbatch_option(extra)?);
        }
        Ok(options)
    }
}

/// Whether `id` is a run id: 12 lowercase hex digits.
fn is_run_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The lines of an array's script that set `id` to the run its task
/// (`SLURM_ARRAY_TASK_ID`) was submitted for, by plain string match (no
/// arithmetic on the variable); a task id the array does not hold exits 2.
fn task_run_ids(tasks: &BTreeMap<usize, String>) -> Result<String> {
    let mut s = String::from(
        "# The run each task was submitted for, by id: a recipe edited since then\n\
         # cannot make a task run another configuration (`lpo run --id` refuses an\n\
         # id the recipe no longer plans).\n\
         case \"${SLURM_ARRAY_TASK_ID:-}\" in\n",
    );
    for (task, id) in tasks {
        if !is_run_id(id) {
            bail!("run id {id:?} (task {task}) is not 12 hex digits");
        }
        s += &format!("    {task}) id={id} ;;\n");
    }
    s += "    *)\n";
    s += "        echo \"error: array task '${SLURM_ARRAY_TASK_ID:-}' is not one this script was submitted with\" >&2\n";
    s += "        exit 2\n";
    s += "        ;;\n";
    s += "esac\n";
    Ok(s)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("`{}` is not UTF-8", path.display()))
}

/// An absolute path, without resolving links (the path may not exist yet).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving `{}`", path.display()))
}

impl ScriptContext {
    /// The context of a sweep's scripts.
    pub fn new(args: &SweepArgs, dir: &Path, name: &str) -> Result<ScriptContext> {
        Ok(ScriptContext {
            exe: std::env::current_exe().context("locating the lpo executable")?,
            recipe: absolute(&args.recipe.recipe)?,
            results: absolute(&args.results.dir)?,
            workdir: std::env::current_dir().context("reading the current directory")?,
            logs: absolute(&dir.join("logs"))?,
            sets: args.recipe.sets.clone(),
            threads: args.threads,
            ignore_memory_estimate: args.ignore_memory_estimate,
            name: name.to_string(),
            slurm: args.slurm.clone(),
        })
    }
}

/// A job to submit: its script file, script and what it depends on.
struct Pending {
    kind: JobKind,
    script_path: PathBuf,
    script: String,
    /// Baseline runs (plan indices) whose tasks it waits for.
    baselines: BTreeSet<usize>,
}

/// `lpo sweep --backend slurm`: submits what is neither complete nor queued.
pub fn sweep(
    args: &SweepArgs,
    plan: &Plan,
    layout: &Layout,
    name: &str,
    baselines: &[Option<usize>],
) -> Result<ExitCode> {
    let dir = absolute(&slurm_dir(layout, name))?;
    // Checked before anything is written or submitted.
    let ctx = ScriptContext::new(args, &dir, name)?;
    let problems = ctx.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let dry = args.slurm.dry_run;
    let _lock = if dry {
        None
    } else {
        Some(FileLock::acquire(&dir.join(".lock"))?)
    };
    let mut record = JobsFile::read(&dir)?;
    let queued = queued_tasks(plan, &record, dry)?;
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
    if submit.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let number = record.jobs.iter().filter(|j| j.kind == "prepare").count() + 1;
    let ids: Vec<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let jobs = pending_jobs(&ctx, &dir, number, &ids, baselines, &submit)?;
    if dry {
        print_dry_run(&jobs, plan, &queued);
        return Ok(ExitCode::SUCCESS);
    }
    crate::sweep::write_plan(layout, name, plan)?;
    std::fs::create_dir_all(&ctx.logs)
        .with_context(|| format!("failed to create `{}`", ctx.logs.display()))?;
    submit_jobs(&jobs, &queued, &dir, &mut record)?;
    let results = if args.results.dir == Path::new("results") {
        String::new()
    } else {
        format!(
            " --results {}",
            sh_quote(&args.results.dir.to_string_lossy())
        )
    };
    eprintln!(
        "`lpo status {}{results}` shows their state; logs in {}",
        args.recipe.recipe.display(),
        ctx.logs.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The prepare job and one run array per level; `ids` are the planned
/// runs' ids, by plan index.
fn pending_jobs(
    ctx: &ScriptContext,
    dir: &Path,
    number: usize,
    ids: &[&str],
    baselines: &[Option<usize>],
    submit: &BTreeSet<usize>,
) -> Result<Vec<Pending>> {
    let levels = levels(baselines, submit)?;
    let deepest = levels.iter().flatten().max().copied().unwrap_or(0);
    let prepare = JobKind::Prepare;
    let mut jobs = vec![Pending {
        script: ctx.script(&prepare)?,
        kind: prepare,
        script_path: dir.join(format!("prepare-{number}.sbatch")),
        baselines: BTreeSet::new(),
    }];
    for level in 0..=deepest {
        let indices: BTreeSet<usize> = submit
            .iter()
            .copied()
            .filter(|&i| levels[i] == Some(level))
            .collect();
        let kind = JobKind::Runs(indices.iter().map(|&i| (i, ids[i].to_string())).collect());
        jobs.push(Pending {
            script: ctx.script(&kind)?,
            kind,
            script_path: dir.join(format!("runs-{number}-{level}.sbatch")),
            baselines: indices.iter().filter_map(|&i| baselines[i]).collect(),
        });
    }
    Ok(jobs)
}

/// The `--dependency` of `job`, given the jobs of runs submitted now
/// (`submitted`: plan index to array job id) and queued earlier.
fn dependency_of(
    job: &Pending,
    prepare: Option<&str>,
    submitted: &HashMap<usize, String>,
    queued: &[Option<String>],
) -> Option<String> {
    match job.kind {
        JobKind::Prepare => None,
        JobKind::Runs(_) => {
            let tasks: BTreeSet<String> = job
                .baselines
                .iter()
                .filter_map(|&b| match (submitted.get(&b), &queued[b]) {
                    (Some(array), _) => Some(format!("{array}_{b}")),
                    (None, Some(task)) => Some(task.clone()),
                    // Complete already: nothing to wait for.
                    (None, None) => None,
                })
                .collect();
            dependency(prepare, &tasks)
        }
    }
}

fn print_dry_run(jobs: &[Pending], plan: &Plan, queued: &[Option<String>]) {
    let mut submitted = HashMap::new();
    for (n, job) in jobs.iter().enumerate() {
        let id = if n == 0 {
            "PREPARE".to_string()
        } else {
            format!("ARRAY{n}")
        };
        let dependency = dependency_of(job, Some("PREPARE"), &submitted, queued);
        println!("# {}", job.script_path.display());
        print!("{}", job.script);
        println!(
            "# submitted as: sbatch --parsable{}{} (job id: {id})\n",
            dependency.map_or(String::new(), |d| format!(" --dependency={d}")),
            if n == 0 {
                ""
            } else {
                " --kill-on-invalid-dep=yes"
            },
        );
        if let JobKind::Runs(tasks) = &job.kind {
            for &i in tasks.keys() {
                submitted.insert(i, id.clone());
            }
        }
    }
    println!(
        "dry run: {} job(s) for {} of {} runs; nothing submitted",
        jobs.len(),
        jobs.iter()
            .map(|j| match &j.kind {
                JobKind::Runs(tasks) => tasks.len(),
                JobKind::Prepare => 0,
            })
            .sum::<usize>(),
        plan.runs.len()
    );
}

/// Writes each script, submits it and records its job id at once (so a
/// failure later keeps the ids of what was submitted).
fn submit_jobs(
    jobs: &[Pending],
    queued: &[Option<String>],
    dir: &Path,
    record: &mut JobsFile,
) -> Result<()> {
    let mut prepare: Option<String> = None;
    let mut submitted = HashMap::new();
    for job in jobs {
        write_atomic(&job.script_path, job.script.as_bytes())?;
        let dependency = dependency_of(job, prepare.as_deref(), &submitted, queued);
        let id = sbatch(&job.script_path, dependency.as_deref())?;
        let runs = match &job.kind {
            JobKind::Prepare => {
                prepare = Some(id.clone());
                eprintln!("submitted job {id}: lpo prepare");
                Vec::new()
            }
            JobKind::Runs(tasks) => {
                eprintln!(
                    "submitted job {id}: array {} ({} runs){}",
                    array_spec(tasks.keys()),
                    tasks.len(),
                    dependency
                        .as_ref()
                        .map_or(String::new(), |d| format!(", after {d}"))
                );
                tasks
                    .iter()
                    .map(|(&i, run)| {
                        submitted.insert(i, id.clone());
                        RecordedRun {
                            index: i,
                            id: run.clone(),
                        }
                    })
                    .collect()
            }
        };
        record.jobs.push(JobRecord {
            job: id,
            kind: match job.kind {
                JobKind::Prepare => "prepare".into(),
                JobKind::Runs(_) => "runs".into(),
            },
            script: job.script_path.clone(),
            dependency,
            runs,
            submitted: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        record.write(dir)?;
    }
    Ok(())
}

/// `sbatch --parsable [--dependency=D --kill-on-invalid-dep=yes] SCRIPT`: the job id.
fn sbatch(script: &Path, dependency: Option<&str>) -> Result<String> {
    let mut command = Command::new("sbatch");
    command.arg("--parsable");
    if let Some(d) = dependency {
        command.arg(format!("--dependency={d}"));
        command.arg("--kill-on-invalid-dep=yes");
    }
    command.arg(script);
    let out = command
        .output()
        .context("running `sbatch` (is Slurm installed and SLURM_CONF set?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch {} printed no job id: {stdout:?}", script.display());
    }
    Ok(id)
}

/// Slurm states in which a job is still to run, or running.
const ACTIVE: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "SIGNALING",
    "STAGE_OUT",
];

/// For each planned run, its Slurm task if that is still queued or running.
fn queued_tasks(plan: &Plan, record: &JobsFile, dry: bool) -> Result<Vec<Option<String>>> {
    let tasks = record.latest_tasks();
    if tasks.is_empty() {
        return Ok(vec![None; plan.runs.len()]);
    }
    let view = match QueueView::query() {
        Ok(view) => view,
        Err(e) if dry => {
            eprintln!("cannot read Slurm's queue ({e:#}); the dry run assumes nothing is queued");
            QueueView::default()
        }
        Err(e) => return Err(e.context("reading Slurm's queue, to submit only what is not queued")),
    };
    Ok(plan
        .runs
        .iter()
        .map(|run| {
            let task = tasks.get(&run.id)?;
            let state = view.states.get(task)?;
            ACTIVE.contains(&state.state.as_str()).then(|| task.clone())
        })
        .collect())
}

/// A task's state as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// `PENDING`, `RUNNING`, `FAILED`, `PREEMPTED`, ...
    pub state: String,
    /// Why it is pending (squeue), if it says.
    pub reason: String,
}

/// Slurm's view of the user's jobs, by task (`JOB_TASK`, or `JOB` for a plain job).
#[derive(Debug, Default)]
pub struct QueueView {
    /// State by task.
    pub states: HashMap<String, TaskState>,
    /// Where the states come from.
    pub source: String,
}

impl QueueView {
    /// From `sacct` (jobs of the last week); if accounting is unavailable,
    /// from `squeue` (pending and running jobs, and those that ended within
    /// the controller's MinJobAge).
    pub fn query() -> Result<QueueView> {
        let since = "--starttime=now-7days";
        let sacct = run_tool(
            "sacct",
            &["-n", "-P", "-X", since, "-o", "JobID,State,Reason"],
        );
        match sacct {
            Ok(text) => Ok(QueueView {
                states: parse_table(&text),
                source: "sacct".into(),
            }),
            Err(why) => {
                let text = run_tool(
                    "squeue",
                    &["--me", "-h", "-r", "-t", "all", "-o", "%i|%T|%r"],
                )
                .map_err(|e| anyhow::anyhow!("{e}; and sacct: {why}"))?;
                Ok(QueueView {
                    states: parse_table(&text),
                    source: format!(
                        "squeue, since sacct is unavailable ({why}): jobs that ended minutes ago are no longer listed"
                    ),
                })
            }
        }
    }
}

/// A Slurm client's stdout, or why it failed (one line).
fn run_tool(tool: &str, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("`{tool}` could not run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{tool}` says: {}",
            stderr.lines().next().unwrap_or("").trim()
        ))
    }
}

/// `JOBID|STATE|REASON` lines (sacct -P, squeue -o) into states by task;
/// a pending array's `12_[0-3,5%2]` stands for each of its tasks.
pub fn parse_table(text: &str) -> HashMap<String, TaskState> {
    let mut states = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split('|');
        let (Some(id), Some(state)) = (fields.next(), fields.next()) else {
            continue;
        };
        let state = TaskState {
            // sacct writes `CANCELLED by 0`.
            state: state.split_whitespace().next().unwrap_or("").to_string(),
            reason: fields.next().unwrap_or("").trim().to_string(),
        };
        for task in expand_task_ids(id.trim()) {
            states.insert(task, state.clone());
        }
    }
    states
}

/// `12_[0-3,5%2]` into `12_0`..`12_3`, `12_5`; other ids as they are.
pub fn expand_task_ids(id: &str) -> Vec<String> {
    let Some((job, rest)) = id.split_once("_[") else {
        return vec![id.to_string()];
    };
    let body = rest.trim_end_matches(']');
    let body = body.split('%').next().unwrap_or("");
    let mut tasks = Vec::new();
    for part in body.split(',') {
        let range = match part.split_once('-') {
            Some((a, b)) => a.parse::<usize>().ok().zip(b.parse::<usize>().ok()),
            None => part.parse::<usize>().ok().map(|a| (a, a)),
        };
        if let Some((a, b)) = range {
            tasks.extend((a..=b).map(|t| format!("{job}_{t}")));
        }
    }
    tasks
}

/// The Slurm column of `lpo status` (`None` when the recipe was never
/// submitted to Slurm): each run's newest task with its state, and a line
/// saying where the states come from. Reads only.
pub fn status_column(
    plan: &Plan,
    layout: &Layout,
    name: &str,
) -> Result<Option<(Vec<String>, String)>> {
    let record = JobsFile::read(&slurm_dir(layout, name))?;
    let tasks = record.latest_tasks();
    if tasks.is_empty() {
        return Ok(None);
    }
    let (view, source) = match QueueView::query() {
        Ok(view) => {
            let source = format!("Slurm states from {}", view.source);
            (view, source)
        }
        Err(e) => (
            QueueView::default(),
            format!("Slurm states unavailable: {e:#}"),
        ),
    };
    let cells = plan
        .runs
        .iter()
        .map(|run| match tasks.get(&run.id) {
            None => "-".to_string(),
            Some(task) => match view.states.get(task) {
                Some(s) if s.state == "PENDING" && !s.reason.is_empty() && s.reason != "None" => {
                    format!("job {task} pending ({})", s.reason)
                }
                Some(s) => format!("job {task} {}", s.state.to_lowercase()),
                None => format!("job {task} (not listed)"),
            },
        })
        .collect();
    Ok(Some((cells, source)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[usize]) -> BTreeSet<usize> {
        items.iter().copied().collect()
    }

    /// A made-up run id for plan index `i`: 12 hex digits.
    fn id(i: usize) -> String {
        format!("{:012x}", 0xab_cdef_0000 + i)
    }

    /// An array of the runs at these plan indices, with made-up ids.
    fn runs(items: &[usize]) -> JobKind {
        JobKind::Runs(items.iter().map(|&i| (i, id(i))).collect())
    }

    fn context(root: &str) -> ScriptContext {
        ScriptContext {
            exe: PathBuf::from(format!("{root}/bin/lpo")),
            recipe: PathBuf::from(format!("{root}/recipes/it's.toml")),
            results: PathBuf::from(format!("{root}/results")),
            workdir: PathBuf::from(root),
            logs: PathBuf::from(format!("{root}/results/r/slurm/logs")),
            sets: vec!["train.steps=5".into(), "label=a b".into()],
            threads: Some(2),
            ignore_memory_estimate: false,
            name: "r".into(),
            slurm: SlurmArgs {
                partition: Some("gpu".into()),
                gpus: Some(1),
                cpus: Some(4),
                mem: Some("16G".into()),
                time: Some("1:00:00".into()),
                extra: vec!["--qos=high".into(), "#SBATCH --exclusive".into()],
                ..SlurmArgs::default()
            },
        }
    }

    #[test]
    fn array_ranges_compress_consecutive_ids() {
        assert_eq!(array_spec(&set(&[0, 1, 2, 3])), "0-3");
        assert_eq!(array_spec(&set(&[0, 1, 2, 3, 5, 7, 8])), "0-3,5,7-8");
        assert_eq!(array_spec(&set(&[4])), "4");
        assert_eq!(array_spec(&set(&[1, 3, 5])), "1,3,5");
        assert_eq!(array_spec(&set(&[])), "");
    }

    #[test]
    fn dependencies_wait_for_the_prepare_job_and_the_baseline_tasks() {
        let tasks: BTreeSet<String> = ["12_0".to_string(), "12_3".to_string()].into();
        assert_eq!(
            dependency(Some("11"), &tasks).as_deref(),
            Some("afterany:11,afterok:12_0:12_3")
        );
        assert_eq!(
            dependency(Some("11"), &BTreeSet::new()).as_deref(),
            Some("afterany:11")
        );
        assert_eq!(dependency(None, &BTreeSet::new()), None);
    }

    #[test]
    fn runs_compared_with_a_baseline_run_come_a_level_later() {
        // 0 is the baseline of 1 and 2; 3 compares with the reference; 2 is
        // the baseline of 4.
        let baselines = [None, Some(0), Some(0), None, Some(2)];
        let all = set(&[0, 1, 2, 3, 4]);
        assert_eq!(
            levels(&baselines, &all).unwrap(),
            vec![Some(0), Some(1), Some(1), Some(0), Some(2)]
        );
        // A baseline not submitted (complete, or queued) does not raise the level.
        assert_eq!(
            levels(&baselines, &set(&[1, 4])).unwrap(),
            vec![None, Some(0), None, None, Some(0)]
        );
        let cycle = [Some(1), Some(0)];
        let err = levels(&cycle, &set(&[0, 1])).unwrap_err().to_string();
        assert!(err.contains("each other's eval.baseline"), "{err}");
    }

    #[test]
    fn job_dependencies_name_exact_baseline_tasks() {
        let ctx = context("/w");
        let baselines = [None, Some(0), Some(0), None, Some(5), None];
        let dir = Path::new("/w/results/r/slurm");
        // Runs 0-4 are submitted; run 5 (baseline of 4) is queued as 40_5.
        let ids: Vec<String> = (0..6).map(id).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let jobs = pending_jobs(&ctx, dir, 3, &ids, &baselines, &set(&[0, 1, 2, 3, 4])).unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].script_path, dir.join("prepare-3.sbatch"));
        assert_eq!(jobs[1].script_path, dir.join("runs-3-0.sbatch"));
        assert_eq!(jobs[2].script_path, dir.join("runs-3-1.sbatch"));
        assert!(
            jobs[1].script.contains("#SBATCH --array=0,3-4\n"),
            "{}",
            jobs[1].script
        );
        assert!(
            jobs[2].script.contains("#SBATCH --array=1-2\n"),
            "{}",
            jobs[2].script
        );
        // Each task carries the id of the run at its index.
        for (job, tasks) in [(&jobs[1], [0, 3, 4].as_slice()), (&jobs[2], &[1, 2])] {
            let JobKind::Runs(map) = &job.kind else {
                panic!("not an array")
            };
            assert_eq!(map.keys().copied().collect::<Vec<_>>(), tasks);
            for &t in tasks {
                assert_eq!(map[&t], ids[t]);
                let line = format!("    {t}) id={} ;;\n", ids[t]);
                assert!(job.script.contains(&line), "{}", job.script);
            }
        }
        let queued = vec![None, None, None, None, None, Some("40_5".to_string())];
        let mut submitted = HashMap::new();
        assert_eq!(dependency_of(&jobs[0], None, &submitted, &queued), None);
        let level0 = dependency_of(&jobs[1], Some("50"), &submitted, &queued);
        assert_eq!(level0.as_deref(), Some("afterany:50,afterok:40_5"));
        for i in [0, 3, 4] {
            submitted.insert(i, "51".to_string());
        }
        let level1 = dependency_of(&jobs[2], Some("50"), &submitted, &queued);
        assert_eq!(level1.as_deref(), Some("afterany:50,afterok:51_0"));
        // A complete baseline (neither submitted nor queued) is not waited for.
        let none_queued = vec![None; 6];
        let level0 = dependency_of(&jobs[1], Some("50"), &HashMap::new(), &none_queued);
        assert_eq!(level0.as_deref(), Some("afterany:50"));
    }

    #[test]
    fn scripts_quote_paths_with_spaces_and_quotes() {
        let ctx = context("/data/my results");
        let script = ctx.script(&runs(&[0, 1, 2])).unwrap();
        let expected = [
            "#!/bin/bash",
            "# Written by `lpo sweep --backend slurm`: runs 0-2 of `r`.",
            "#SBATCH --job-name=lpo-r",
            "#SBATCH --chdir=\"/data/my results\"",
            "#SBATCH --output=\"/data/my results/results/r/slurm/logs/run-%A_%a.out\"",
            "#SBATCH --array=0-2",
            "#SBATCH --requeue",
            "#SBATCH --open-mode=append",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=1:00:00",
            "#SBATCH --gpus=1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=16G",
            "#SBATCH --qos=high",
            "#SBATCH --exclusive",
            "set -euo pipefail",
            "# The run each task was submitted for, by id: a recipe edited since then",
            "# cannot make a task run another configuration (`lpo run --id` refuses an",
            "# id the recipe no longer plans).",
            "case \"${SLURM_ARRAY_TASK_ID:-}\" in",
            "    0) id=00abcdef0000 ;;",
            "    1) id=00abcdef0001 ;;",
            "    2) id=00abcdef0002 ;;",
            "    *)",
            "        echo \"error: array task '${SLURM_ARRAY_TASK_ID:-}' is not one this script was submitted with\" >&2",
            "        exit 2",
            "        ;;",
            "esac",
            "exec '/data/my results/bin/lpo' run '/data/my results/recipes/it'\\''s.toml' \
             --id \"$id\" --results '/data/my results/results' --threads 2 \
             --set train.steps=5 --set 'label=a b' --no-bars",
        ];
        assert_eq!(script, expected.join("\n") + "\n");
        let prepare = ctx.script(&JobKind::Prepare).unwrap();
        assert!(prepare.contains("' prepare '/data/my results/recipes/it'\\''s.toml' --results"));
        assert!(prepare.contains("logs/prepare-%j.out\"\n"));
        assert!(!prepare.contains("--array") && !prepare.contains("--requeue"));
        // The generated command line survives the shell word for word.
        let line = script.lines().last().unwrap().trim_start_matches("exec ");
        let out = Command::new("bash")
            .args(["-c", &format!("id=7; printf '%s\\n' {line}")])
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(words[0], "/data/my results/bin/lpo");
        assert_eq!(words[2], "/data/my results/recipes/it's.toml");
        assert_eq!(words[4], "7");
        assert!(words.contains(&"label=a b".to_string()), "{words:?}");
        let quoted = context("/data/\"q\"");
        let err = quoted.script(&JobKind::Prepare).unwrap_err().to_string();
        assert!(err.contains("#SBATCH line"), "{err}");
    }

    /// The arguments sbatch reads from an `#SBATCH` line (Slurm's
    /// `_get_argument`: whitespace separates, single or double quotes group,
    /// a backslash escapes the next character, an unquoted `#` ends the line).
    fn sbatch_arguments(line: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut chars = line.strip_prefix("#SBATCH").unwrap().chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let (mut arg, mut quote, mut any) = (String::new(), None, false);
            while let Some(c) = chars.next() {
                match (c, quote) {
                    ('\\', _) => arg.extend(chars.next()),
                    (c, Some(q)) if c == q => quote = None,
                    (c, Some(_)) => arg.push(c),
                    ('"' | '\'', None) => quote = Some(c),
                    ('#', None) => {
                        args.extend(any.then_some(arg));
                        return args;
                    }
                    (c, None) if c.is_whitespace() => break,
                    (c, None) => arg.push(c),
                }
                any = true;
            }
            assert!(quote.is_none(), "unmatched quote in {line:?}");
            if !any {
                return args;
            }
            args.push(arg);
        }
    }

    #[test]
    fn slurm_options_are_checked_flag_by_flag() {
        let hostile = |f: fn(&mut SlurmArgs, String)| {
            let mut a = SlurmArgs::default();
            f(&mut a, "gpu\ntouch pwned".into());
            a.problems()
        };
        type Setter = fn(&mut SlurmArgs, String);
        let cases: [(&str, Setter); 5] = [
            ("--partition", |a, v| a.partition = Some(v)),
            ("--account", |a, v| a.account = Some(v)),
            ("--time", |a, v| a.time = Some(v)),
            ("--mem", |a, v| a.mem = Some(v)),
            ("--sbatch", |a, v| a.extra = vec![format!("--qos={v}")]),
        ];
        for (flag, set) in cases {
            let p = hostile(set);
            assert_eq!(p.len(), 1, "{flag}: {p:?}");
            assert!(p[0].starts_with(&format!("{flag} \"")), "{p:?}");
            assert!(p[0].contains("control character '\\n'"), "{p:?}");
        }
        let gpus = SlurmArgs {
            gpus: Some(4),
            ..SlurmArgs::default()
        };
        let p = gpus.problems();
        assert!(
            p[0].contains("a run uses one device") && p[0].contains("--gpus 1"),
            "{p:?}"
        );
        let fine = SlurmArgs {
            partition: Some("gpu,debug".into()),
            account: Some("my lab".into()),
            time: Some("4:00:00".into()),
            mem: Some("16G".into()),
            gpus: Some(1),
            extra: vec!["--constraint=a100".into()],
            ..SlurmArgs::default()
        };
        assert!(fine.problems().is_empty());
        let quoted = SlurmArgs {
            partition: Some("a\"b".into()),
            mem: Some(String::new()),
            ..SlurmArgs::default()
        };
        assert_eq!(quoted.problems().len(), 2, "{:?}", quoted.problems());
    }

    #[test]
    fn each_sbatch_flag_is_one_option_as_sbatch_reads_it() {
        for (given, written) in [
            ("--qos=high", "--qos=high"),
            ("#SBATCH --exclusive", "--exclusive"),
            ("--constraint=a100|v100", "--constraint=\"a100|v100\""),
            ("--comment=run #1, it's", "--comment=\"run \\#1, it's\""),
            ("-N 2", "-N 2"),
            ("--qos=high --exclusive", "--qos=\"high --exclusive\""),
        ] {
            let option = sbatch_option(given).unwrap();
            assert_eq!(option, written);
            let args = sbatch_arguments(&format!("#SBATCH {option}"));
            assert!(args.len() <= 2 && args[0].starts_with('-'), "{args:?}");
        }
        assert_eq!(
            sbatch_arguments("#SBATCH --qos=\"high --exclusive\""),
            ["--qos=high --exclusive"]
        );
        assert_eq!(
            sbatch_arguments("#SBATCH --comment=\"run \\#1, it's\""),
            ["--comment=run #1, it's"]
        );
        for bad in [
            "qos=high",
            "--qos=a\nb",
            "---x",
            "--",
            "-",
            "--qos=",
            "--qos=a\"b",
            "--a b\\c",
        ] {
            assert!(sbatch_option(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_names_and_paths_never_run_in_the_shell() {
        let base = std::env::temp_dir().join(format!("lpo-slurm-quote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("a $(touch pwned) `touch pwned` 'q' #1 50%");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        // The "lpo" of the script prints its arguments, one a line.
        let exe = root.join("bin/lpo");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        Command::new("chmod").arg("755").arg(&exe).status().unwrap();
        let mut ctx = context(root.to_str().unwrap());
        ctx.exe = exe;
        ctx.recipe = root.join("r $(touch pwned); touch pwned.toml");
        ctx.name = "r\ntouch pwned $(touch pwned)".into();
        ctx.slurm.account = Some("my lab #2".into());
        let script = ctx.script(&runs(&[3])).unwrap();
        assert!(
            script.contains("of `r\\ntouch pwned $(touch pwned)`.\n"),
            "{script}"
        );
        let lines: Vec<&str> = script.lines().collect();
        // Every line before the command is a comment, for the shell.
        let body = lines
            .iter()
            .position(|l| *l == "set -euo pipefail")
            .unwrap();
        assert!(lines[..body].iter().all(|l| l.starts_with('#')), "{script}");
        let directives: Vec<Vec<String>> = lines
            .iter()
            .filter(|l| l.starts_with("#SBATCH"))
            .map(|l| sbatch_arguments(l))
            .collect();
        assert!(directives.iter().all(|d| d.len() == 1), "{directives:?}");
        let flat: Vec<&str> = directives.iter().map(|d| d[0].as_str()).collect();
        let root_text = root.to_str().unwrap();
        assert!(
            flat.contains(&"--job-name=lpo-r_touch_pwned___touch_pwned_"),
            "{flat:?}"
        );
        assert!(
            flat.contains(&format!("--chdir={root_text}").as_str()),
            "{flat:?}"
        );
        let output = format!(
            "--output={}/results/r/slurm/logs/run-%A_%a.out",
            root_text.replace('%', "%%")
        );
        assert!(flat.contains(&output.as_str()), "{flat:?}");
        assert!(flat.contains(&"--account=my lab #2"), "{flat:?}");
        let words = run_with_bash(&script, &base.join("job.sbatch"), &root);
        let recipe = ctx.recipe.to_str().unwrap().to_string();
        let results = format!("{root_text}/results");
        let run_id = id(3);
        let expected = [
            "run",
            &recipe,
            "--id",
            &run_id,
            "--results",
            &results,
            "--threads",
            "2",
            "--set",
            "train.steps=5",
            "--set",
            "label=a b",
            "--no-bars",
        ];
        assert_eq!(words, expected);
        for dir in [&base, &root] {
            let names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().all(|n| !n.starts_with("pwned")), "{names:?}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Runs `script` (saved at `path`) with bash in `dir` as array task 3:
    /// the lines it prints.
    fn run_with_bash(script: &str, path: &Path, dir: &Path) -> Vec<String> {
        std::fs::write(path, script).unwrap();
        let out = Command::new("bash")
            .arg(path)
            .current_dir(dir)
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn each_array_task_runs_the_run_id_it_was_submitted_for_or_nothing() {
        let base = std::env::temp_dir().join(format!("lpo-slurm-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let exe = base.join("bin/lpo");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        Command::new("chmod").arg("755").arg(&exe).status().unwrap();
        let mut ctx = context(base.to_str().unwrap());
        ctx.exe = exe;
        let script = ctx.script(&runs(&[0, 3, 4])).unwrap();
        assert!(script.contains("#SBATCH --array=0,3-4\n"), "{script}");
        let path = base.join("runs.sbatch");
        std::fs::write(&path, &script).unwrap();
        let task = |value: Option<&str>| {
            let mut command = Command::new("bash");
            command.arg(&path).current_dir(&base);
            command.env_remove("SLURM_ARRAY_TASK_ID");
            if let Some(v) = value {
                command.env("SLURM_ARRAY_TASK_ID", v);
            }
            command.output().unwrap()
        };
        for t in [0, 3, 4] {
            let out = task(Some(&t.to_string()));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let words = String::from_utf8(out.stdout).unwrap();
            let words: Vec<&str> = words.lines().collect();
            assert_eq!(words[0], "run");
            assert_eq!(words[2..4], ["--id", id(t).as_str()], "{words:?}");
            assert!(!words.contains(&"--index"), "{words:?}");
        }
        // A task id the array was not submitted with runs nothing: exit 2.
        for value in [
            Some("1"),
            Some("03"),
            Some("3 "),
            Some(""),
            Some("*"),
            Some("$(touch pwned)"),
            None,
        ] {
            let out = task(value);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{value:?} ran lpo");
            assert!(
                stderr.contains("is not one this script was submitted with"),
                "{value:?}: {stderr}"
            );
        }
        assert!(!base.join("pwned").exists());
        // Ids go into the script only as 12 hex digits.
        let bad = JobKind::Runs([(0, "0123'; touch pwned".to_string())].into());
        let err = ctx.script(&bad).unwrap_err().to_string();
        assert!(err.contains("is not 12 hex digits"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn sh_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("train.steps=5"), "train.steps=5");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn queue_tables_expand_pending_arrays() {
        assert_eq!(
            expand_task_ids("12_[0-2,5%2]"),
            ["12_0", "12_1", "12_2", "12_5"]
        );
        assert_eq!(expand_task_ids("12_3"), ["12_3"]);
        assert_eq!(expand_task_ids("12"), ["12"]);
        let text =
            "12_[1-2]|PENDING|Dependency\n12_0|RUNNING|None\n11|CANCELLED by 0|None\n13_4|FAILED\n";
        let states = parse_table(text);
        assert_eq!(states.len(), 5);
        assert_eq!(states["12_2"].state, "PENDING");
        assert_eq!(states["12_2"].reason, "Dependency");
        assert_eq!(states["12_0"].state, "RUNNING");
        assert_eq!(states["11"].state, "CANCELLED");
        assert_eq!(states["13_4"].state, "FAILED");
        assert_eq!(states["13_4"].reason, "");
    }

    #[test]
    fn the_job_record_maps_each_run_to_its_newest_task() {
        let record = JobsFile {
            jobs: vec![
                JobRecord {
                    job: "5".into(),
                    kind: "runs".into(),
                    script: PathBuf::from("a"),
                    dependency: None,
                    runs: vec![
                        RecordedRun {
                            index: 0,
                            id: "x".into(),
                        },
                        RecordedRun {
                            index: 1,
                            id: "y".into(),
                        },
                    ],
                    submitted: 0,
                },
                JobRecord {
                    job: "9".into(),
                    kind: "runs".into(),
                    script: PathBuf::from("b"),
                    dependency: Some("afterany:8".into()),
                    runs: vec![RecordedRun {
                        index: 1,
                        id: "y".into(),
                    }],
                    submitted: 1,
                },
            ],
        };
        let tasks = record.latest_tasks();
        assert_eq!(tasks["x"], "5_0");
        assert_eq!(tasks["y"], "9_1");
        let dir = std::env::temp_dir().join(format!("lpo-slurm-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(JobsFile::read(&dir).unwrap().jobs.is_empty());
        record.write(&dir).unwrap();
        assert_eq!(JobsFile::read(&dir).unwrap().jobs, record.jobs);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
