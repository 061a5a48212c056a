//! Reading a recipe family's results directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lpo_recipe::Recipe;
use lpo_results::records::{self, CONFIG, CURVES, EVAL, HELDOUT, METRICS};
use lpo_results::{CurveRow, EvalRecord, HeldoutRecord, MetricsRow, Status, Summary, SummaryFile};
use serde::de::DeserializeOwned;

/// The swept key that only replicates a configuration.
pub const SEED_KEY: &str = "train.seed";

/// One complete run with its evaluation.
pub struct RunResult {
    /// Its directory.
    pub dir: PathBuf,
    /// Its summary.
    pub summary: Summary,
    /// Its resolved recipe (`config.toml`).
    pub recipe: Recipe,
    /// Per-prompt evaluation (both splits); empty without `eval.csv`.
    pub eval: Vec<EvalRecord>,
    /// Whether `eval.csv` exists.
    pub has_eval: bool,
    /// Per-list held-out metrics (both splits); empty without `heldout.csv`.
    pub heldout: Vec<HeldoutRecord>,
    /// Which held-out prompts it answered ([`lpo_plan::eval_key`]): runs
    /// with equal keys share prompts, lists and seed.
    pub eval_key: String,
}

impl RunResult {
    /// Method label.
    pub fn label(&self) -> &str {
        &self.summary.label
    }

    /// Its seed.
    pub fn seed(&self) -> u64 {
        self.summary.seed
    }

    /// Its swept configuration: the assignments other than the seed, and
    /// other than a swept single-source `data.mix` (it only chooses the
    /// task, and each task has its own table; a swept mix of several sources
    /// stays part of the configuration).
    pub fn config(&self) -> BTreeMap<String, serde_json::Value> {
        let mut c = self.summary.assignments.clone();
        c.remove(SEED_KEY);
        if c.get("data.mix")
            .and_then(|m| m.as_array())
            .is_some_and(|m| m.len() == 1)
        {
            c.remove("data.mix");
        }
        c
    }

    /// Its per-batch training curves.
    pub fn metrics(&self) -> Result<Vec<MetricsRow>> {
        records::read_rows(&self.dir.join(METRICS))
    }

    /// Its held-out curves (`curves.csv`), `None` when absent.
    pub fn curves(&self) -> Result<Option<Vec<CurveRow>>> {
        let path = self.dir.join(CURVES);
        if !path.exists() {
            return Ok(None);
        }
        read_checked(&path, |r: &CurveRow| {
            [
                ("chosen_logp", r.chosen_logp),
                ("rejected_logp", r.rejected_logp),
                ("margin", r.margin),
                ("ranking_accuracy", r.ranking_accuracy),
            ]
            .into_iter()
            .find(|(_, v)| !v.is_finite())
        })
        .map(Some)
    }

    /// Rows of one split.
    pub fn eval_split(&self, split: lpo_results::Split) -> impl Iterator<Item = &EvalRecord> {
        self.eval.iter().filter(move |r| r.split == split)
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

/// Reads `plan.json` of a family directory, if a sweep wrote one. A corrupt
/// one (bad JSON, a directory) is reported on standard error and treated as
/// absent: the report then cannot list the runs missing from it, but every
/// run directory still counts.
pub fn read_plan_json(dir: &Path) -> Result<Option<Vec<PlannedId>>> {
    Ok(match lpo_results::PlanRecord::load(dir)? {
        lpo_results::RecordFile::Present(plan) => {
            Some(plan.runs.into_iter().map(|r| (r.id, r.label)).collect())
        }
        lpo_results::RecordFile::Missing => None,
        lpo_results::RecordFile::Corrupt(why) => {
            eprintln!(
                "warning: ignoring {why}: runs missing from the results directory are not listed"
            );
            None
        }
    })
}

/// Reads a CSV file of rows, naming the file and the CSV line (1 = header)
/// of any row that does not parse or whose `check` finds a non-finite
/// number.
pub fn read_checked<T: DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Option<(&'static str, f64)>,
) -> Result<Vec<T>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: reading the header", path.display()))?
        .clone();
    let mut record = csv::StringRecord::new();
    let mut rows = Vec::new();
    loop {
        let more = reader
            .read_record(&mut record)
            .with_context(|| format!("reading {}", path.display()))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let row: T = record
            .deserialize(Some(&headers))
            .with_context(|| format!("{} line {line}: malformed row", path.display()))?;
        if let Some((column, value)) = check(&row) {
            bail!(
                "{} line {line}: {column} is {value}; reports need finite numbers",
                path.display()
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Reads `eval.csv`: every reward, pass rate (where the reward has a
/// solved level) and KL must be finite.
pub fn read_eval(path: &Path) -> Result<Vec<EvalRecord>> {
    read_checked(path, |r: &EvalRecord| {
        [
            ("policy_reward", Some(r.policy_reward)),
            ("baseline_reward", Some(r.baseline_reward)),
            ("policy_pass", r.policy_pass),
            ("baseline_pass", r.baseline_pass),
            ("policy_kl", Some(r.policy_kl)),
        ]
        .into_iter()
        .find_map(|(c, v)| v.filter(|v| !v.is_finite()).map(|v| (c, v)))
    })
}

/// Reads `heldout.csv`: margins and NDCG, when present, must be finite.
pub fn read_heldout(path: &Path) -> Result<Vec<HeldoutRecord>> {
    read_checked(path, |r: &HeldoutRecord| {
        [
            ("margin", r.margin),
            ("ndcg", r.ndcg),
            ("chosen_logp", Some(r.chosen_logp)),
            ("rejected_logp", Some(r.rejected_logp)),
        ]
        .into_iter()
        .find_map(|(c, v)| v.filter(|v| !v.is_finite()).map(|v| (c, v)))
    })
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
        let summary = match Summary::load(&run_dir)? {
            SummaryFile::Present(s) => *s,
            SummaryFile::Missing => continue,
            SummaryFile::Corrupt(why) => {
                // Listed, not fatal: the other runs still report.
                let id = run_dir
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let label = planned
                    .and_then(|plan| plan.iter().find(|(p, _)| *p == id))
                    .map_or_else(|| "?".to_string(), |(_, l)| l.clone());
                seen.push(id.clone());
                absent.push(Absent {
                    id,
                    label,
                    state: "corrupt summary.json".into(),
                    detail: Some(why),
                });
                continue;
            }
        };
        let mut summary = summary;
        if let Some(plan) = planned {
            match plan.iter().find(|(id, _)| *id == summary.run_id) {
                // Labels are cosmetic (not in run ids): the recipe's current
                // label wins over the one recorded when the run was made.
                Some((_, label)) => summary.label = label.clone(),
                None => continue, // a run of an older version of the recipe
            }
        }
        seen.push(summary.run_id.clone());
        match summary.status {
            Status::Complete => {
                let text = std::fs::read_to_string(run_dir.join(CONFIG))
                    .with_context(|| format!("reading {}", run_dir.join(CONFIG).display()))?;
                let recipe: Recipe = toml::from_str(&text)
                    .with_context(|| format!("parsing {}", run_dir.join(CONFIG).display()))?;
                let eval_path = run_dir.join(EVAL);
                let has_eval = eval_path.exists();
                let eval = if has_eval {
                    read_eval(&eval_path)?
                } else {
                    Vec::new()
                };
                let heldout_path = run_dir.join(HELDOUT);
                let heldout = if heldout_path.exists() {
                    read_heldout(&heldout_path)?
                } else {
                    Vec::new()
                };
                runs.push(RunResult {
                    eval_key: lpo_plan::eval_key(&recipe),
                    dir: run_dir,
                    summary,
                    recipe,
                    eval,
                    has_eval,
                    heldout,
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
