//! Slurm's queue: the states `sacct` (or `squeue`) reports, which planned
//! runs are queued already, and the Slurm column of `lpo status`.

use std::collections::HashMap;
use std::process::Command;

use anyhow::Result;
use lpo_plan::Plan;
use lpo_results::Layout;

use super::jobs::{slurm_dir, JobsFile};

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
pub(super) fn queued_tasks(
    plan: &Plan,
    record: &JobsFile,
    dry: bool,
) -> Result<Vec<Option<String>>> {
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
}
