//! Arms: the runs of one method label and one swept configuration (its
//! seeds). A label swept over several configurations (e.g. two learning
//! rates) gives several arms, one row each, unless `--select-by validation`
//! keeps, per label, the configuration that is best on the validation split.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use lpo_results::Split;

use crate::collect::{Collection, RunResult};

/// How to pick one configuration per method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectBy {
    /// Best validation mean reward (files only: validation ranking accuracy).
    Validation,
}

/// The runs (seeds) of one method label in one configuration.
pub struct Arm<'a> {
    /// Row name: the label, plus `[key=value, ...]` when the label has
    /// several configurations in the report.
    pub name: String,
    /// Method label.
    pub label: String,
    /// The swept keys that tell this configuration from the label's others
    /// (`key=value, ...`); empty when the label has one configuration.
    pub config: String,
    /// Its runs, by seed.
    pub runs: Vec<&'a RunResult>,
}

/// One label's choice among its configurations.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Method label.
    pub label: String,
    /// What was compared (`validation mean reward`, `validation ranking accuracy`).
    pub metric: String,
    /// Every configuration with its validation score and seeds, best first.
    pub candidates: Vec<(String, f64, usize)>,
}

/// The arms of a report.
pub struct Arms<'a> {
    /// Arms in label order.
    pub arms: Vec<Arm<'a>>,
    /// Choices made by `--select-by`.
    pub selections: Vec<Selection>,
    /// What the reader should know about the grouping.
    pub notes: Vec<String>,
}

impl<'a> Arms<'a> {
    /// The arms of a label.
    pub fn of_label(&self, label: &str) -> Vec<&Arm<'a>> {
        self.arms.iter().filter(|a| a.label == label).collect()
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Validation score of a configuration's runs: mean policy reward over the
/// validation prompts, else ranking accuracy over the validation lists.
fn validation_score(runs: &[&RunResult]) -> Option<(f64, &'static str)> {
    let rewards: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.eval_split(Split::Validation).map(|e| e.policy_reward))
        .collect();
    if !rewards.is_empty() {
        return Some((
            rewards.iter().sum::<f64>() / rewards.len() as f64,
            "validation mean reward",
        ));
    }
    let (correct, pairs) = runs
        .iter()
        .flat_map(|r| r.heldout.iter().filter(|h| h.split == Split::Validation))
        .fold((0u64, 0u64), |(c, p), h| {
            (c + u64::from(h.correct), p + u64::from(h.pairs))
        });
    (pairs > 0).then(|| (correct as f64 / pairs as f64, "validation ranking accuracy"))
}

/// Groups the complete runs of `collection` into arms, one per label and
/// configuration, or (with `select_by`) one per label.
/// Whether no two configurations share a task (generation tasks and
/// held-out list sources).
fn tasks_are_disjoint(parsed: &[(BTreeMap<String, serde_json::Value>, Vec<&RunResult>)]) -> bool {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (_, runs) in parsed {
        let tasks: std::collections::HashSet<&str> = runs
            .iter()
            .flat_map(|r| {
                r.eval
                    .iter()
                    .map(|e| e.task.as_str())
                    .chain(r.heldout.iter().map(|h| h.source.as_str()))
            })
            .collect();
        if tasks.is_empty() || tasks.iter().any(|t| !seen.insert(t)) {
            return false;
        }
    }
    true
}

pub fn arms(collection: &Collection, select_by: Option<SelectBy>) -> Result<Arms<'_>> {
    // label -> configuration (as JSON text) -> runs
    let mut by_label: BTreeMap<&str, BTreeMap<String, Vec<&RunResult>>> = BTreeMap::new();
    for run in &collection.runs {
        let config = serde_json::to_string(&run.config()).unwrap_or_default();
        by_label
            .entry(run.label())
            .or_default()
            .entry(config)
            .or_default()
            .push(run);
    }
    let mut out = Arms {
        arms: Vec::new(),
        selections: Vec::new(),
        notes: Vec::new(),
    };
    for (label, configs) in by_label {
        // Keys whose value differs between the label's configurations.
        let parsed: Vec<(BTreeMap<String, serde_json::Value>, Vec<&RunResult>)> = configs
            .into_values()
            .map(|mut runs| {
                runs.sort_by_key(|r| r.seed());
                (runs[0].config(), runs)
            })
            .collect();
        // Configurations that evaluate disjoint tasks (e.g. a task swept
        // together with its reference settings) never meet in one table:
        // they are one arm, each task table taking its own runs.
        if parsed.len() > 1 && tasks_are_disjoint(&parsed) {
            let runs: Vec<&RunResult> =
                parsed.iter().flat_map(|(_, r)| r.iter().copied()).collect();
            out.arms.push(Arm {
                name: label.to_string(),
                label: label.to_string(),
                config: String::new(),
                runs,
            });
            continue;
        }
        let mut varying: Vec<String> = Vec::new();
        for (config, _) in &parsed {
            for (k, v) in config {
                if parsed.iter().any(|(other, _)| other.get(k) != Some(v)) && !varying.contains(k) {
                    varying.push(k.clone());
                }
            }
        }
        varying.sort();
        let describe = |config: &BTreeMap<String, serde_json::Value>| {
            varying
                .iter()
                .map(|k| {
                    format!(
                        "{k}={}",
                        config.get(k).map_or_else(|| "-".into(), value_text)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let several = parsed.len() > 1;
        match select_by {
            Some(SelectBy::Validation) if several => {
                let mut candidates = Vec::new();
                let mut metric = "";
                for (config, runs) in &parsed {
                    let Some((score, m)) = validation_score(runs) else {
                        bail!(
                            "--select-by validation: the `{label}` runs with {} have no \
                             validation prompts or lists to choose by",
                            describe(config)
                        );
                    };
                    if !metric.is_empty() && metric != m {
                        bail!(
                            "--select-by validation: the configurations of `{label}` \
                             cannot be compared ({metric} against {m})"
                        );
                    }
                    metric = m;
                    candidates.push((describe(config), score, runs.len()));
                }
                // Best first; the first configuration wins a tie.
                let mut order: Vec<usize> = (0..parsed.len()).collect();
                order.sort_by(|&a, &b| candidates[b].1.total_cmp(&candidates[a].1));
                let best = order[0];
                let (config, runs) = &parsed[best];
                out.arms.push(Arm {
                    name: label.to_string(),
                    label: label.to_string(),
                    config: describe(config),
                    runs: runs.clone(),
                });
                out.selections.push(Selection {
                    label: label.to_string(),
                    metric: metric.to_string(),
                    candidates: order.iter().map(|&i| candidates[i].clone()).collect(),
                });
            }
            _ => {
                if several {
                    out.notes.push(format!(
                        "`{label}` has {} configurations (differing in {}): each is its own \
                         row; `--select-by validation` picks one per method on the \
                         validation split",
                        parsed.len(),
                        varying.join(", ")
                    ));
                }
                for (config, runs) in parsed.iter() {
                    let text = describe(config);
                    out.arms.push(Arm {
                        name: if several {
                            format!("{label} [{text}]")
                        } else {
                            label.to_string()
                        },
                        label: label.to_string(),
                        config: text,
                        runs: runs.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}
