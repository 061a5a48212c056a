//! What both backends take from a plan: `plan.json` for `lpo report`, each
//! run's baseline run, and a run's sweep assignments as JSON.

use std::collections::BTreeMap;

use anyhow::Result;
use lpo_plan::{Plan, PlannedRun};
use lpo_results::Layout;

/// The values the sweep assigned to `run`, by key, as JSON.
pub fn assignments(run: &PlannedRun) -> BTreeMap<String, serde_json::Value> {
    run.assignments
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
}

/// For each run of `plan`, the index of its baseline run (`None`: the
/// reference).
pub fn baseline_indices(plan: &Plan) -> Vec<Option<usize>> {
    plan.runs.iter().map(|run| run.baseline).collect()
}

/// Records the plan in `results/<recipe>/plan.json` for `lpo report`. A
/// `plan.json` that is not a regular file (a directory) is left alone with a
/// warning: the report then lists no missing runs, and every run still runs.
pub fn write_plan(layout: &Layout, name: &str, plan: &Plan) -> Result<()> {
    let record = lpo_results::PlanRecord {
        recipe: name.to_string(),
        runs: plan
            .runs
            .iter()
            .map(|r| lpo_results::PlannedEntry {
                index: r.index,
                id: r.id.clone(),
                label: r.recipe.method_label(),
                seed: r.recipe.train.seed,
                assignments: assignments(r),
            })
            .collect(),
    };
    let dir = layout.recipe_dir(name);
    let path = dir.join(lpo_results::records::PLAN);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        eprintln!(
            "warning: {} is not a regular file; the plan is not recorded",
            path.display()
        );
        return Ok(());
    }
    record.write(&dir)
}
