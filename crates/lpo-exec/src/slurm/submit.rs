//! Submitting a Slurm sweep: runs grouped into levels (a baseline run's
//! array before the arrays of the runs compared with it), each array's
//! `--dependency`, the dry run's listing, and `sbatch` itself.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lpo_plan::Plan;
use lpo_results::write_atomic;

use super::jobs::{JobRecord, JobsFile, RecordedRun};
use super::script::{array_spec, JobKind, ScriptContext};

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

/// A job to submit: its script file, script and what it depends on.
pub(super) struct Pending {
    kind: JobKind,
    script_path: PathBuf,
    script: String,
    /// Baseline runs (plan indices) whose tasks it waits for.
    baselines: BTreeSet<usize>,
}

/// The prepare job and one run array per level; `ids` are the planned
/// runs' ids, by plan index.
pub(super) fn pending_jobs(
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

pub(super) fn print_dry_run(jobs: &[Pending], plan: &Plan, queued: &[Option<String>]) {
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
pub(super) fn submit_jobs(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::script::fixtures::{context, id, set};
    use super::*;

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
}
