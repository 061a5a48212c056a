//! `jobs.json`: the record of the jobs a recipe's Slurm sweeps submitted,
//! kept beside their scripts and logs in `results/<recipe>/slurm/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lpo_results::{write_atomic, Layout};
use serde::{Deserialize, Serialize};

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

    pub(super) fn write(&self, dir: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
