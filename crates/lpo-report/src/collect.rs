//! Reading a recipe family's results directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lpo_recipe::Recipe;
use lpo_results::records::{self, CONFIG};
use lpo_results::{EvalRecord, MetricsRow, Status, Summary};

/// One complete run with its evaluation.
pub struct RunResult {
    /// Its directory.
    pub dir: PathBuf,
    /// Its summary.
    pub summary: Summary,
    /// Its resolved recipe (`config.toml`).
    pub recipe: Recipe,
    /// Per-prompt evaluation.
    pub eval: Vec<EvalRecord>,
    /// Which held-out prompts it answered ([`lpo_plan::eval_key`]).
    pub eval_key: String,
}

impl RunResult {
    /// Method label.
    pub fn label(&self) -> &str {
        &self.summary.label
    }

    /// Its training curves.
    pub fn metrics(&self) -> Result<Vec<MetricsRow>> {
        records::read_rows(&self.dir.join(records::METRICS))
    }
}

/// A planned run without usable results.
#[derive(Debug, Clone, PartialEq)]
pub struct Absent {
    /// Run id.
    pub id: String,
    /// Method label.
    pub label: String,
    /// `missing`, `running` or `failed`.
    pub state: String,
    /// The failure message, if any.
    pub detail: Option<String>,
}

/// The runs of one recipe family.
pub struct Collection {
    /// Family name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Complete runs.
    pub runs: Vec<RunResult>,
    /// Planned runs that are missing, running or failed.
    pub absent: Vec<Absent>,
}

/// A planned run: id and label.
pub type PlannedId = (String, String);

/// Reads `plan.json` of a family directory, if a sweep wrote one.
pub fn read_plan_json(dir: &Path) -> Result<Option<Vec<PlannedId>>> {
    let path = dir.join("plan.json");
    if !path.exists() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let runs = value["runs"]
        .as_array()
        .with_context(|| format!("{}: no `runs` array", path.display()))?
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok(Some(runs))
}

/// Reads every run directory under `dir`; `planned` (from the recipe or
/// `plan.json`) says which runs should exist, so absent ones are listed.
pub fn collect(dir: &Path, planned: Option<&[PlannedId]>) -> Result<Collection> {
    let name = dir
        .file_name()
        .map_or_else(|| "results".into(), |n| n.to_string_lossy().into_owned());
    let mut runs = Vec::new();
    let mut absent = Vec::new();
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    let mut seen = Vec::new();
    for run_dir in entries {
        let Some(summary) = Summary::read(&run_dir)? else {
            continue;
        };
        if let Some(plan) = planned {
            if !plan.iter().any(|(id, _)| *id == summary.run_id) {
                continue; // a run of an older version of the recipe
            }
        }
        seen.push(summary.run_id.clone());
        match summary.status {
            Status::Complete => {
                let text = std::fs::read_to_string(run_dir.join(CONFIG))
                    .with_context(|| format!("reading {}", run_dir.join(CONFIG).display()))?;
                let recipe: Recipe = toml::from_str(&text)
                    .with_context(|| format!("parsing {}", run_dir.join(CONFIG).display()))?;
                let eval = records::read_eval(&run_dir)?;
                runs.push(RunResult {
                    eval_key: lpo_plan::eval_key(&recipe),
                    dir: run_dir,
                    summary,
                    recipe,
                    eval,
                });
            }
            Status::Running | Status::Failed => absent.push(Absent {
                id: summary.run_id.clone(),
                label: summary.label.clone(),
                state: if summary.status == Status::Failed {
                    match summary.failed_step {
                        Some(step) => format!("failed at step {step}"),
                        None => "failed".into(),
                    }
                } else {
                    "interrupted or running".into()
                },
                detail: summary.error.clone(),
            }),
        }
    }
    if let Some(plan) = planned {
        for (id, label) in plan {
            if !seen.contains(id) {
                absent.push(Absent {
                    id: id.clone(),
                    label: label.clone(),
                    state: "missing".into(),
                    detail: None,
                });
            }
        }
    }
    Ok(Collection {
        name,
        dir: dir.to_path_buf(),
        runs,
        absent,
    })
}
