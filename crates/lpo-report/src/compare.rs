//! Paired comparisons: every method against a baseline, per task, over seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lpo_stats::{holm, paired_bootstrap, spread, Interval, Spread, Tally, BOOTSTRAP_RESAMPLES};
use lpo_tasks::{Task, MAX_REWARD};

use crate::collect::{Collection, RunResult};

/// One method against the baseline on one task, pooled over seeds.
#[derive(Debug, Clone)]
pub struct Row {
    /// Method label.
    pub method: String,
    /// Runs (seeds) pooled.
    pub seeds: usize,
    /// Wins, ties, losses over all paired prompts.
    pub tally: Tally,
    /// Win rate (ties half).
    pub win_rate: f64,
    /// Wilson 95% interval of the win rate.
    pub wilson: Interval,
    /// Exact sign test p-value.
    pub p: f64,
    /// Holm-adjusted p-value within the task's table.
    pub p_holm: f64,
    /// Mean of (method reward - baseline reward).
    pub reward_diff: f64,
    /// Paired bootstrap 95% interval of `reward_diff`.
    pub reward_diff_ci: Interval,
    /// Mean reward of the method.
    pub reward: f64,
    /// Mean reward of the baseline on the same prompts.
    pub baseline_reward: f64,
    /// Share of full-reward responses (tasks with accuracy).
    pub accuracy: Option<f64>,
    /// Same for the baseline.
    pub baseline_accuracy: Option<f64>,
    /// Per-seed win rates: mean, sd, t interval.
    pub seed_win_rate: Spread,
}

/// All methods against one baseline on one task.
#[derive(Debug, Clone)]
pub struct TaskTable {
    /// Task name.
    pub task: String,
    /// Baseline name (`reference` or a label).
    pub baseline: String,
    /// Rows in method order.
    pub rows: Vec<Row>,
    /// The baseline's own mean reward and accuracy (over distinct prompts).
    pub baseline_reward: f64,
    /// Baseline accuracy.
    pub baseline_accuracy: Option<f64>,
}

/// Why a run could not be compared.
pub type Unpaired = (String, String);

/// One held-out prompt: (prompt id, method reward, baseline reward).
type Pair = (String, f64, f64);

/// Paired rewards of one run on one task: (prompt id, method, baseline).
fn pairs_against<'a>(
    run: &'a RunResult,
    baseline: &str,
    others: &'a [RunResult],
) -> Result<BTreeMap<String, Vec<Pair>>, String> {
    let mut by_task: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
    if baseline == "reference" {
        for r in &run.eval {
            let (m, b) = if r.baseline == "reference" {
                (r.policy_reward, r.baseline_reward)
            } else {
                return Err(format!(
                    "run {} was evaluated against run {}, not the reference",
                    run.summary.run_id, r.baseline
                ));
            };
            by_task
                .entry(r.task.clone())
                .or_default()
                .push((r.prompt_id.clone(), m, b));
        }
        return Ok(by_task);
    }
    let partner = others
        .iter()
        .find(|o| o.label() == baseline && o.eval_key == run.eval_key)
        .ok_or_else(|| {
            format!(
                "no complete `{baseline}` run shares the prompts of run {} ({})",
                run.summary.run_id,
                run.label()
            )
        })?;
    let theirs: HashMap<&str, f64> = partner
        .eval
        .iter()
        .map(|r| (r.prompt_id.as_str(), r.policy_reward))
        .collect();
    for r in &run.eval {
        let b = theirs.get(r.prompt_id.as_str()).ok_or_else(|| {
            format!(
                "run {} lacks prompt {}",
                partner.summary.run_id, r.prompt_id
            )
        })?;
        by_task
            .entry(r.task.clone())
            .or_default()
            .push((r.prompt_id.clone(), r.policy_reward, *b));
    }
    Ok(by_task)
}

fn accuracy(task: &str, rewards: impl Iterator<Item = f64>) -> Option<f64> {
    let has = Task::from_name(task).is_some_and(Task::has_accuracy);
    let rewards: Vec<f64> = rewards.collect();
    (has && !rewards.is_empty())
        .then(|| rewards.iter().filter(|&&r| r >= MAX_REWARD).count() as f64 / rewards.len() as f64)
}

/// Compares every method of `collection` with `baseline`, one table per task.
/// Runs that cannot be paired are returned with the reason.
pub fn compare(collection: &Collection, baseline: &str) -> (Vec<TaskTable>, Vec<Unpaired>) {
    let runs = &collection.runs;
    let mut unpaired = Vec::new();
    // (task, method) -> per run: its pairs.
    let mut groups: BTreeMap<(String, String), Vec<Vec<Pair>>> = BTreeMap::new();
    // task -> distinct (eval key, prompt) -> baseline reward.
    let mut baseline_rewards: BTreeMap<String, BTreeMap<(String, String), f64>> = BTreeMap::new();
    let mut methods: Vec<String> = Vec::new();
    for run in runs {
        if run.label() == baseline {
            continue;
        }
        match pairs_against(run, baseline, runs) {
            Ok(by_task) => {
                if !methods.iter().any(|m| m == run.label()) {
                    methods.push(run.label().to_string());
                }
                for (task, pairs) in by_task {
                    let seen = baseline_rewards.entry(task.clone()).or_default();
                    for (pid, _, b) in &pairs {
                        seen.insert((run.eval_key.clone(), pid.clone()), *b);
                    }
                    groups
                        .entry((task, run.label().to_string()))
                        .or_default()
                        .push(pairs);
                }
            }
            Err(why) => unpaired.push((run.summary.run_id.clone(), why)),
        }
    }
    let tasks: BTreeSet<String> = groups.keys().map(|(t, _)| t.clone()).collect();
    let mut tables = Vec::new();
    for task in tasks {
        let mut rows = Vec::new();
        for method in &methods {
            let Some(per_run) = groups.get(&(task.clone(), method.clone())) else {
                continue;
            };
            let all: Vec<&Pair> = per_run.iter().flatten().collect();
            let tally = Tally::of(all.iter().map(|(_, m, b)| (*m, *b)));
            let diffs: Vec<f64> = all.iter().map(|(_, m, b)| m - b).collect();
            let n = all.len().max(1) as f64;
            let seed_rates: Vec<f64> = per_run
                .iter()
                .map(|pairs| Tally::of(pairs.iter().map(|(_, m, b)| (*m, *b))).win_rate())
                .collect();
            rows.push(Row {
                method: method.clone(),
                seeds: per_run.len(),
                win_rate: tally.win_rate(),
                wilson: tally.wilson(),
                p: tally.sign_test(),
                p_holm: 1.0,
                reward_diff: diffs.iter().sum::<f64>() / n,
                reward_diff_ci: paired_bootstrap(&diffs, BOOTSTRAP_RESAMPLES, 0),
                reward: all.iter().map(|(_, m, _)| m).sum::<f64>() / n,
                baseline_reward: all.iter().map(|(_, _, b)| b).sum::<f64>() / n,
                accuracy: accuracy(&task, all.iter().map(|(_, m, _)| *m)),
                baseline_accuracy: accuracy(&task, all.iter().map(|(_, _, b)| *b)),
                seed_win_rate: spread(&seed_rates),
                tally,
            });
        }
        let adjusted = holm(&rows.iter().map(|r| r.p).collect::<Vec<_>>());
        for (row, p) in rows.iter_mut().zip(adjusted) {
            row.p_holm = p;
        }
        let distinct: Vec<f64> = baseline_rewards
            .get(&task)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        tables.push(TaskTable {
            baseline: baseline.to_string(),
            baseline_reward: distinct.iter().sum::<f64>() / distinct.len().max(1) as f64,
            baseline_accuracy: accuracy(&task, distinct.iter().copied()),
            task,
            rows,
        });
    }
    (tables, unpaired)
}
