//! The run's trackers: its TensorBoard event file (`tb/`, written by
//! [`lpo_track`]), started once the resume point has restored the run's
//! history, so it holds that history and then each step and curve as
//! training makes them, and the headline numbers at the end; and, when the
//! recipe's `[tracking] mlflow` names a server, an MLflow run fed by a
//! background thread ([`lpo_track::mlflow`]). Never read back: metrics.csv
//! and curves.csv stay the source of truth.

use std::path::Path;

use anyhow::Result;
use lpo_recipe::Recipe;
use lpo_results::{CurveRow, MetricsRow, Summary};
use lpo_track::mlflow::{MlflowSink, RunInfo, Target};
use lpo_track::RunEvents;

/// The run directory's files an MLflow run gets as artifacts.
const ARTIFACTS: &[&str] = &[
    "config.toml",
    "summary.json",
    "metrics.csv",
    "loss_parts.csv",
    "curves.csv",
    "eval.csv",
    "heldout.csv",
];

/// The run's trackers, once training has started.
#[derive(Default)]
pub(crate) struct Tracker {
    events: Option<RunEvents>,
    mlflow: Option<MlflowSink>,
}

impl Tracker {
    /// Replaces `run_dir/tb/` by one file with `metrics` and `curves` (the
    /// history a resume restored; none for a fresh run), and starts the
    /// MLflow run (or continues the one `mlflow.json` records) when the
    /// recipe names a server.
    pub(crate) fn start(
        &mut self,
        request: &crate::request::RunRequest<'_>,
        run_dir: &Path,
        metrics: &[MetricsRow],
        curves: &[CurveRow],
    ) -> Result<()> {
        self.events = Some(RunEvents::start(run_dir, metrics, curves)?);
        let recipe = request.recipe;
        if let Some(uri) = &recipe.tracking.mlflow {
            let target = Target {
                uri: uri.clone(),
                experiment: (recipe.tracking.experiment.clone())
                    .unwrap_or_else(|| recipe.name.clone()),
            };
            let info = run_info(recipe, request.run_id);
            self.mlflow = Some(MlflowSink::start(&target, info, run_dir));
        }
        Ok(())
    }

    /// Appends a step's metrics (flushed every few seconds).
    pub(crate) fn metrics(&mut self, row: &MetricsRow) -> Result<()> {
        let owned = lpo_track::run::step_scalars(row);
        let (step, values) = (i64::from(row.step), lpo_track::run::borrowed(&owned));
        if let Some(sink) = &self.mlflow {
            sink.metrics(step, &values);
        }
        self.events
            .as_mut()
            .map_or(Ok(()), |e| e.scalars(step, &values))
    }

    /// Appends a held-out curve point.
    pub(crate) fn curve(&mut self, row: &CurveRow) -> Result<()> {
        if let Some(sink) = &self.mlflow {
            sink.metrics(i64::from(row.step), &lpo_track::run::curve_scalars(row));
        }
        self.events.as_mut().map_or(Ok(()), |e| e.curve(row))
    }

    /// Appends a complete run's headline numbers at its last step, `step`.
    pub(crate) fn finish(&mut self, summary: &Summary, step: u32) -> Result<()> {
        if let Some(sink) = &self.mlflow {
            let values =
                lpo_track::run::final_scalars(summary.headline.as_ref(), summary.heldout.as_ref());
            sink.metrics(i64::from(step), &values);
        }
        self.events
            .as_mut()
            .map_or(Ok(()), |e| e.finish(summary, step))
    }

    /// Hands what is buffered to the file (a failed run's last steps).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.events.as_mut().map_or(Ok(()), RunEvents::flush)
    }

    /// Ends the MLflow run, if any, once the run directory's files are
    /// final: uploads them, sets the status, and warns (on stderr) about
    /// what could not be logged.
    pub(crate) fn close_mlflow(&mut self, complete: bool) -> Result<()> {
        if let Some(sink) = self.mlflow.take() {
            if let Some(warning) = sink.finish(complete, ARTIFACTS)? {
                eprintln!("warning: {warning}");
            }
        }
        Ok(())
    }
}

/// How the run appears in MLflow: named by label and id, tagged, with the
/// resolved recipe as params.
fn run_info(recipe: &Recipe, run_id: &str) -> RunInfo {
    let label = recipe.method_label();
    let tags = [
        ("lpo.recipe", recipe.name.clone()),
        ("lpo.run_id", run_id.to_string()),
        ("lpo.label", label.clone()),
        ("lpo.version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let mut params = Vec::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(recipe) {
        flatten("", &table, &mut params);
    }
    RunInfo {
        name: format!("{label}-{run_id}"),
        tags: tags.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        params,
    }
}

/// `table`'s leaves as (`dotted.key`, text): strings as they are, other
/// values (numbers, arrays, inline tables) as TOML writes them.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&path, inner, out),
            toml::Value::String(s) => out.push((path, s.clone())),
            other => out.push((path, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_the_recipe_s_dotted_keys() {
        let recipe = Recipe {
            name: "fam".into(),
            ..Recipe::default()
        };
        let info = run_info(&recipe, "abc123");
        assert_eq!(info.name, "lpo-abc123");
        let param = |k: &str| {
            info.params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(param("loss.kind").as_deref(), Some("lpo"));
        assert_eq!(param("loss.beta").as_deref(), Some("0.1"));
        assert_eq!(param("name").as_deref(), Some("fam"));
        assert!(info.params.iter().all(|(k, _)| !k.is_empty()));
        assert!(info
            .tags
            .contains(&("lpo.run_id".to_string(), "abc123".to_string())));
    }
}
