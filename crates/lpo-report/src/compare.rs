//! Paired comparisons on the test split: every arm against a baseline per
//! task, head-to-heads of two arms, and held-out list metrics.
//!
//! The unit of inference is the per-prompt score (policy mean reward minus
//! baseline mean reward over the prompt's samples). Prompts are grouped by
//! seed, because each seed has its own reference, data and policy:
//! intervals are hierarchical bootstraps (seeds, then prompts within seed),
//! and the test of a row is, with two or more seeds, a paired t-test across
//! seeds (df = seeds - 1); with one seed, the exact sign test on prompts,
//! next to the Wilson interval of W / (W + L) that agrees with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lpo_results::Split;
use lpo_stats::{
    hierarchical_bootstrap, hierarchical_bootstrap_ratio, paired_t, sign_test, wilson, Interval,
    Tally, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
};

use crate::collect::RunResult;
use crate::inference::Inference;
use crate::select::{Arm, Arms};

/// One paired test prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Prompt id (unique across seeds).
    pub prompt_id: String,
    /// The policy's mean reward over its samples.
    pub policy: f64,
    /// The baseline's mean reward.
    pub baseline: f64,
    /// The policy's pass rate (share of samples at the full reward);
    /// `None` for a reward without a solved level.
    pub policy_pass: Option<f64>,
    /// The baseline's pass rate.
    pub baseline_pass: Option<f64>,
    /// The policy's KL estimate to the reference.
    pub kl: f64,
}

/// The paired prompts of one seed (one run), in `eval.csv` order.
#[derive(Debug, Clone)]
pub struct SeedPairs {
    /// Seed.
    pub seed: u64,
    /// Run id.
    pub run_id: String,
    /// Which prompts ([`RunResult::eval_key`]).
    pub eval_key: String,
    /// Prompts.
    pub rows: Vec<PairRow>,
}

/// Which test a row's p-value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    /// Paired t-test across seeds on the per-seed mean difference.
    AcrossSeeds,
    /// Exact two-sided sign test over prompts (or lists), ties dropped.
    Sign,
}

/// A row's primary test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    /// Which test.
    pub kind: TestKind,
    /// Degrees of freedom (t-test).
    pub df: f64,
    /// t, or the number of wins (sign test).
    pub statistic: f64,
    /// Mean per-seed difference (t-test) or W / (W + L) (sign test).
    pub estimate: f64,
    /// The test's own 95% interval of `estimate` (t interval or Wilson).
    pub interval: Option<Interval>,
    /// Two-sided p-value.
    pub p: f64,
}

impl Test {
    /// `t(df)` or `sign`.
    pub fn name(&self) -> String {
        match self.kind {
            TestKind::AcrossSeeds => format!("t({})", self.df),
            TestKind::Sign => "sign".into(),
        }
    }

    fn across_seeds(per_seed: &[f64]) -> Option<Test> {
        let t = paired_t(per_seed)?;
        Some(Test {
            kind: TestKind::AcrossSeeds,
            df: t.df,
            statistic: t.t,
            estimate: t.mean,
            interval: Some(t.interval),
            p: t.p,
        })
    }

    fn sign(wins: u64, losses: u64) -> Test {
        let decided = wins + losses;
        Test {
            kind: TestKind::Sign,
            df: 0.0,
            statistic: wins as f64,
            estimate: if decided > 0 {
                wins as f64 / decided as f64
            } else {
                f64::NAN
            },
            interval: (decided > 0).then(|| wilson(wins as f64, decided as f64, 0.95)),
            p: sign_test(wins, losses),
        }
    }
}

/// One arm against the baseline on one task's test prompts.
#[derive(Debug, Clone)]
pub struct Row {
    /// Arm name.
    pub method: String,
    /// Seeds with paired prompts.
    pub seeds: usize,
    /// Paired prompts, all seeds.
    pub prompts: usize,
    /// Paired prompts per seed (seed order).
    pub prompt_counts: Vec<usize>,
    /// Samples per prompt and model (distinct values).
    pub samples: Vec<u32>,
    /// Mean reward of the policy.
    pub reward: f64,
    /// Mean reward of the baseline on the same prompts.
    pub baseline_reward: f64,
    /// Mean per-prompt score (policy - baseline).
    pub reward_diff: f64,
    /// Its hierarchical bootstrap 95% interval.
    pub reward_diff_ci: Option<Interval>,
    /// Mean pass rate of the policy.
    pub pass: f64,
    /// Its hierarchical bootstrap 95% interval.
    pub pass_ci: Option<Interval>,
    /// Mean pass rate of the baseline on the same prompts.
    pub baseline_pass: f64,
    /// Mean per-prompt pass-rate difference.
    pub pass_diff: f64,
    /// Its hierarchical bootstrap 95% interval.
    pub pass_diff_ci: Option<Interval>,
    /// Mean KL estimate of the policy to the reference.
    pub kl: f64,
    /// Wins, ties, losses (by per-prompt mean reward).
    pub tally: Tally,
    /// W / (W + L); `None` when every prompt ties.
    pub win_rate: Option<f64>,
    /// Its 95% interval: Wilson with one seed (agrees with the sign test),
    /// hierarchical bootstrap with more.
    pub win_rate_ci: Option<Interval>,
    /// The primary test.
    pub test: Test,
    /// Its p-value adjusted over the report's family of tests (the raw p
    /// for a test outside a declared family: see `inference.exploratory`).
    pub p_adjusted: f64,
    /// The per-seed mean differences the t-test runs on (seed order);
    /// empty with one seed.
    pub seed_diffs: Vec<f64>,
    /// The interval agreeing with the p shown, equivalence and power.
    pub inference: Inference,
}

impl Row {
    /// Whether the seeds of this row evaluated different numbers of prompts.
    pub fn uneven_prompts(&self) -> bool {
        self.prompt_counts.windows(2).any(|w| w[0] != w[1])
    }

    /// `Wilson` or `bootstrap`: how `win_rate_ci` was computed.
    pub fn win_rate_interval(&self) -> &'static str {
        if self.seeds >= 2 {
            "bootstrap"
        } else {
            "Wilson"
        }
    }
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn boot(groups: &[Vec<f64>]) -> Option<Interval> {
    hierarchical_bootstrap(groups, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
}

fn boot_ratio(groups: &[Vec<(f64, f64)>]) -> Option<Interval> {
    hierarchical_bootstrap_ratio(groups, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
}

/// Scores one arm's paired prompts (seeds in ascending order; seeds without
/// prompts are ignored). `None` when no prompt is paired.
pub fn score(method: &str, seeds: &[SeedPairs], samples: Vec<u32>) -> Option<Row> {
    let mut seeds: Vec<&SeedPairs> = seeds.iter().filter(|s| !s.rows.is_empty()).collect();
    seeds.sort_by_key(|s| s.seed);
    if seeds.is_empty() {
        return None;
    }
    let all = || seeds.iter().flat_map(|s| s.rows.iter());
    let per_seed = |f: &dyn Fn(&PairRow) -> f64| -> Vec<Vec<f64>> {
        seeds
            .iter()
            .map(|s| s.rows.iter().map(f).collect())
            .collect()
    };
    let per_seed_some = |f: &dyn Fn(&PairRow) -> Option<f64>| -> Vec<Vec<f64>> {
        seeds
            .iter()
            .map(|s| s.rows.iter().filter_map(f).collect())
            .collect()
    };
    let diffs = per_seed(&|r| r.policy - r.baseline);
    let tally = Tally::of(all().map(|r| (r.policy, r.baseline)));
    let seed_diffs: Vec<f64> = match seeds.len() {
        1 => Vec::new(),
        _ => diffs.iter().map(|d| mean(d.iter().copied())).collect(),
    };
    let test = if seeds.len() >= 2 {
        Test::across_seeds(&seed_diffs).expect("two or more seeds")
    } else {
        Test::sign(tally.wins, tally.losses)
    };
    let win_rate_ci = if seeds.len() >= 2 {
        boot_ratio(
            &seeds
                .iter()
                .map(|s| {
                    s.rows
                        .iter()
                        .map(|r| match r.policy.total_cmp(&r.baseline) {
                            std::cmp::Ordering::Greater => (1.0, 1.0),
                            std::cmp::Ordering::Less => (0.0, 1.0),
                            std::cmp::Ordering::Equal => (0.0, 0.0),
                        })
                        .collect()
                })
                .collect::<Vec<_>>(),
        )
    } else {
        (tally.wins + tally.losses > 0).then(|| tally.decided_wilson())
    };
    Some(Row {
        method: method.to_string(),
        seeds: seeds.len(),
        prompts: all().count(),
        prompt_counts: seeds.iter().map(|s| s.rows.len()).collect(),
        samples,
        reward: mean(all().map(|r| r.policy)),
        baseline_reward: mean(all().map(|r| r.baseline)),
        reward_diff: mean(all().map(|r| r.policy - r.baseline)),
        reward_diff_ci: boot(&diffs),
        // Without a solved level there are no pass rates: NaN, shown as "-".
        pass: mean(all().filter_map(|r| r.policy_pass)),
        pass_ci: boot(&per_seed_some(&|r| r.policy_pass)),
        baseline_pass: mean(all().filter_map(|r| r.baseline_pass)),
        pass_diff: mean(all().filter_map(pass_diff)),
        pass_diff_ci: boot(&per_seed_some(&pass_diff)),
        kl: mean(all().map(|r| r.kl)),
        win_rate: tally.decided_win_rate(),
        win_rate_ci,
        tally,
        test,
        p_adjusted: test.p,
        inference: Inference::unadjusted(&seed_diffs),
        seed_diffs,
    })
}

/// A prompt's pass-rate difference, where both have pass rates.
fn pass_diff(r: &PairRow) -> Option<f64> {
    Some(r.policy_pass? - r.baseline_pass?)
}

/// All arms against one baseline on one task.
#[derive(Debug, Clone)]
pub struct TaskTable {
    /// Task name.
    pub task: String,
    /// Baseline name (`reference` or an arm).
    pub baseline: String,
    /// Rows in arm order.
    pub rows: Vec<Row>,
    /// The baseline's mean reward over the distinct prompts of the table.
    pub baseline_reward: f64,
    /// The baseline's mean pass rate over the same prompts.
    pub baseline_pass: f64,
    /// Distinct prompts the baseline answered.
    pub baseline_prompts: usize,
}

/// A run that could not be compared, and why.
pub type Unpaired = (String, String);

/// Test rows of a run, or why there are none to compare. `Ok(None)`: the
/// run has no generation evaluation at all (files-only data), which is fine.
fn test_rows(run: &RunResult) -> Result<Option<Vec<&lpo_results::EvalRecord>>, String> {
    if run.eval.is_empty() {
        return match (&run.summary.headline, run.has_eval) {
            (Some(_), true) => {
                Err("eval.csv has no rows although summary.json has a headline".into())
            }
            (Some(_), false) => Err("summary.json has a headline but there is no eval.csv".into()),
            (None, _) => Ok(None),
        };
    }
    let rows: Vec<_> = run.eval_split(Split::Test).collect();
    if rows.is_empty() {
        return Err("eval.csv has no test-split rows".into());
    }
    Ok(Some(rows))
}

/// The paired prompts of `run` per task, against its own baseline columns
/// (`reference`) or against the partner arm's run with the same prompts.
fn pairs(
    run: &RunResult,
    partner: Option<&Arm<'_>>,
) -> Result<Option<BTreeMap<String, Vec<PairRow>>>, String> {
    let Some(rows) = test_rows(run)? else {
        return Ok(None);
    };
    let mut by_task: BTreeMap<String, Vec<PairRow>> = BTreeMap::new();
    match partner {
        None => {
            for r in rows {
                if r.baseline != "reference" {
                    return Err(format!(
                        "evaluated against run {}, not the reference (report with --baseline LABEL)",
                        r.baseline
                    ));
                }
                by_task.entry(r.task.clone()).or_default().push(PairRow {
                    prompt_id: r.prompt_id.clone(),
                    policy: r.policy_reward,
                    baseline: r.baseline_reward,
                    policy_pass: r.policy_pass,
                    baseline_pass: r.baseline_pass,
                    kl: r.policy_kl,
                });
            }
        }
        Some(arm) => {
            let other = arm
                .runs
                .iter()
                .find(|o| o.eval_key == run.eval_key)
                .ok_or_else(|| {
                    format!(
                        "no complete `{}` run shares its prompts (seed {})",
                        arm.name,
                        run.seed()
                    )
                })?;
            let theirs: HashMap<&str, &lpo_results::EvalRecord> = other
                .eval_split(Split::Test)
                .map(|r| (r.prompt_id.as_str(), r))
                .collect();
            for r in rows {
                let b = theirs.get(r.prompt_id.as_str()).ok_or_else(|| {
                    format!(
                        "run {} lacks test prompt {}",
                        other.summary.run_id, r.prompt_id
                    )
                })?;
                by_task.entry(r.task.clone()).or_default().push(PairRow {
                    prompt_id: r.prompt_id.clone(),
                    policy: r.policy_reward,
                    baseline: b.policy_reward,
                    policy_pass: r.policy_pass,
                    baseline_pass: b.policy_pass,
                    kl: r.policy_kl,
                });
            }
        }
    }
    Ok(Some(by_task))
}

/// Finds the one arm a name or label designates.
pub fn resolve<'s, 'a>(arms: &'s Arms<'a>, name: &str) -> Result<&'s Arm<'a>, String> {
    if let Some(a) = arms.arms.iter().find(|a| a.name == name) {
        return Ok(a);
    }
    match arms.of_label(name).as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no complete runs labelled `{name}` (methods: {})",
            arms.arms
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        several => Err(format!(
            "`{name}` has {} configurations; pick one with --select-by validation",
            several.len()
        )),
    }
}

fn samples_of(runs: &[&RunResult], task: &str) -> Vec<u32> {
    let set: BTreeSet<u32> = runs
        .iter()
        .flat_map(|r| {
            r.eval_split(Split::Test)
                .filter(|e| e.task == task)
                .map(|e| e.samples)
        })
        .collect();
    set.into_iter().collect()
}

/// Compares every arm with `baseline` (`reference` or an arm), one table
/// per task. Runs that cannot be paired are returned with the reason.
pub fn compare(arms: &Arms<'_>, baseline: &str) -> (Vec<TaskTable>, Vec<Unpaired>) {
    let mut unpaired = Vec::new();
    let partner = if baseline == "reference" {
        None
    } else {
        match resolve(arms, baseline) {
            Ok(a) => Some(a),
            Err(why) => {
                for arm in &arms.arms {
                    if arm.label != baseline {
                        for run in &arm.runs {
                            if !matches!(test_rows(run), Ok(None)) {
                                unpaired.push((run.summary.run_id.clone(), why.clone()));
                            }
                        }
                    }
                }
                return (Vec::new(), unpaired);
            }
        }
    };
    // (task) -> arm index -> seeds
    let mut groups: BTreeMap<String, BTreeMap<usize, Vec<SeedPairs>>> = BTreeMap::new();
    for (i, arm) in arms.arms.iter().enumerate() {
        if partner.is_some_and(|p| std::ptr::eq(p, arm)) {
            continue;
        }
        for run in &arm.runs {
            match pairs(run, partner) {
                Ok(None) => {}
                Ok(Some(by_task)) => {
                    for (task, rows) in by_task {
                        groups
                            .entry(task)
                            .or_default()
                            .entry(i)
                            .or_default()
                            .push(SeedPairs {
                                seed: run.seed(),
                                run_id: run.summary.run_id.clone(),
                                eval_key: run.eval_key.clone(),
                                rows,
                            });
                    }
                }
                Err(why) => unpaired.push((
                    run.summary.run_id.clone(),
                    format!("{} (seed {}): {why}", arm.name, run.seed()),
                )),
            }
        }
    }
    let mut tables = Vec::new();
    for (task, by_arm) in groups {
        let mut rows = Vec::new();
        let mut distinct: BTreeMap<(String, String), (f64, Option<f64>)> = BTreeMap::new();
        for (i, seeds) in &by_arm {
            let arm = &arms.arms[*i];
            for s in seeds {
                for r in &s.rows {
                    distinct.insert(
                        (s.eval_key.clone(), r.prompt_id.clone()),
                        (r.baseline, r.baseline_pass),
                    );
                }
            }
            if let Some(row) = score(&arm.name, seeds, samples_of(&arm.runs, &task)) {
                rows.push(row);
            }
        }
        tables.push(TaskTable {
            baseline: partner.map_or_else(|| baseline.to_string(), |p| p.name.clone()),
            baseline_reward: mean(distinct.values().map(|v| v.0)),
            baseline_pass: mean(distinct.values().filter_map(|v| v.1)),
            baseline_prompts: distinct.len(),
            task,
            rows,
        });
    }
    (tables, unpaired)
}

/// Held-out list metrics of one arm on one source (test split).
#[derive(Debug, Clone)]
pub struct HeldoutRow {
    /// Arm name.
    pub method: String,
    /// Source (task or file).
    pub source: String,
    /// Seeds.
    pub seeds: usize,
    /// Lists, all seeds.
    pub lists: usize,
    /// Lists per seed (seed order).
    pub list_counts: Vec<usize>,
    /// Strictly ordered pairs.
    pub pairs: u64,
    /// Of those, ordered correctly by the implicit reward.
    pub correct: u64,
    /// correct / pairs.
    pub accuracy: Option<f64>,
    /// Hierarchical bootstrap 95% interval over lists by seed.
    pub accuracy_ci: Option<Interval>,
    /// Mean over lists of the mean margin of ordered pairs.
    pub margin: Option<f64>,
    /// Mean NDCG over lists whose rewards do not all tie.
    pub ndcg: Option<f64>,
}

fn mean_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Test lists of a run by source, in file order.
fn lists_by_source(run: &RunResult) -> BTreeMap<&str, Vec<&lpo_results::HeldoutRecord>> {
    let mut out: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for h in run.heldout.iter().filter(|h| h.split == Split::Test) {
        out.entry(h.source.as_str()).or_default().push(h);
    }
    out
}

/// Ranking accuracy, margin and NDCG per arm and source.
pub fn heldout(arms: &Arms<'_>) -> Vec<HeldoutRow> {
    let mut out = Vec::new();
    for arm in &arms.arms {
        let mut by_source: BTreeMap<&str, Vec<Vec<&lpo_results::HeldoutRecord>>> = BTreeMap::new();
        for run in &arm.runs {
            for (source, lists) in lists_by_source(run) {
                by_source.entry(source).or_default().push(lists);
            }
        }
        for (source, seeds) in by_source {
            let all = || seeds.iter().flatten();
            let correct: u64 = all().map(|h| u64::from(h.correct)).sum();
            let pairs: u64 = all().map(|h| u64::from(h.pairs)).sum();
            let groups: Vec<Vec<(f64, f64)>> = seeds
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|h| (f64::from(h.correct), f64::from(h.pairs)))
                        .collect()
                })
                .collect();
            out.push(HeldoutRow {
                method: arm.name.clone(),
                source: source.to_string(),
                seeds: seeds.len(),
                lists: all().count(),
                list_counts: seeds.iter().map(Vec::len).collect(),
                pairs,
                correct,
                accuracy: (pairs > 0).then(|| correct as f64 / pairs as f64),
                accuracy_ci: boot_ratio(&groups),
                margin: mean_some(all().map(|h| h.margin)),
                ndcg: mean_some(all().map(|h| h.ndcg)),
            });
        }
    }
    out
}

/// Ranking-accuracy difference of two arms on the same held-out lists.
#[derive(Debug, Clone)]
pub struct HeldoutDiff {
    /// Source.
    pub source: String,
    /// Seeds.
    pub seeds: usize,
    /// Paired lists.
    pub lists: usize,
    /// Accuracy of A.
    pub a_accuracy: f64,
    /// Accuracy of B.
    pub b_accuracy: f64,
    /// A - B = sum(correct_A - correct_B) / sum(pairs).
    pub diff: f64,
    /// Hierarchical bootstrap 95% interval.
    pub ci: Option<Interval>,
    /// Across-seed t-test on per-seed differences, or a sign test on lists
    /// (A orders more pairs correctly than B, or fewer).
    pub test: Test,
    /// Adjusted p.
    pub p_adjusted: f64,
    /// Per-seed accuracy differences (seed order); empty with one seed.
    pub seed_diffs: Vec<f64>,
    /// The interval agreeing with the p shown, equivalence and power.
    pub inference: Inference,
}

/// One held-out list scored by two methods: (correct A, correct B, pairs).
type ListPair = (f64, f64, f64);

/// Method A minus method B on the test split.
#[derive(Debug, Clone)]
pub struct HeadToHead {
    /// Arm A.
    pub a: String,
    /// Arm B.
    pub b: String,
    /// Per task: A against B prompt by prompt (`Row::baseline_*` is B).
    pub rows: Vec<(String, Row)>,
    /// Per source: ranking-accuracy difference.
    pub heldout: Vec<HeldoutDiff>,
    /// Seeds or runs that could not be paired.
    pub problems: Vec<String>,
}

/// Pairs arm `a` with arm `b` seed by seed (same eval identity) and prompt
/// by prompt, and list by list.
pub fn head_to_head(arms: &Arms<'_>, a: &str, b: &str) -> Result<HeadToHead, String> {
    let arm_a = resolve(arms, a)?;
    let arm_b = resolve(arms, b)?;
    if std::ptr::eq(arm_a, arm_b) {
        return Err(format!("--compare {a},{b}: the same method twice"));
    }
    let mut problems = Vec::new();
    let mut by_task: BTreeMap<String, Vec<SeedPairs>> = BTreeMap::new();
    let mut lists: BTreeMap<String, Vec<Vec<ListPair>>> = BTreeMap::new();
    for run in &arm_a.runs {
        let Some(other) = arm_b.runs.iter().find(|o| o.eval_key == run.eval_key) else {
            problems.push(format!(
                "seed {} of {}: no {} run shares its prompts",
                run.seed(),
                arm_a.name,
                arm_b.name
            ));
            continue;
        };
        match pairs(run, Some(arm_b)) {
            Ok(None) => {}
            Ok(Some(tasks)) => {
                for (task, rows) in tasks {
                    by_task.entry(task).or_default().push(SeedPairs {
                        seed: run.seed(),
                        run_id: run.summary.run_id.clone(),
                        eval_key: run.eval_key.clone(),
                        rows,
                    });
                }
            }
            Err(why) => problems.push(format!("seed {} of {}: {why}", run.seed(), arm_a.name)),
        }
        // Held-out lists, paired by id.
        let theirs: HashMap<&str, &lpo_results::HeldoutRecord> = other
            .heldout
            .iter()
            .filter(|h| h.split == Split::Test)
            .map(|h| (h.list_id.as_str(), h))
            .collect();
        for (source, mine) in lists_by_source(run) {
            let mut seed_lists = Vec::new();
            for h in mine {
                match theirs.get(h.list_id.as_str()) {
                    Some(o) if o.pairs == h.pairs => seed_lists.push((
                        f64::from(h.correct),
                        f64::from(o.correct),
                        f64::from(h.pairs),
                    )),
                    _ => {
                        problems.push(format!(
                            "seed {}: held-out list {} is not in {}'s heldout.csv (or differs)",
                            run.seed(),
                            h.list_id,
                            arm_b.name
                        ));
                        seed_lists.clear();
                        break;
                    }
                }
            }
            if !seed_lists.is_empty() {
                lists
                    .entry(source.to_string())
                    .or_default()
                    .push(seed_lists);
            }
        }
    }
    let mut rows = Vec::new();
    for (task, seeds) in by_task {
        if let Some(row) = score(&arm_a.name, &seeds, samples_of(&arm_a.runs, &task)) {
            rows.push((task, row));
        }
    }
    let mut heldout = Vec::new();
    for (source, seeds) in lists {
        let all = || seeds.iter().flatten();
        let pairs: f64 = all().map(|l| l.2).sum();
        if pairs == 0.0 {
            continue;
        }
        let ca: f64 = all().map(|l| l.0).sum();
        let cb: f64 = all().map(|l| l.1).sum();
        let seed_diffs: Vec<f64> = if seeds.len() >= 2 {
            seeds
                .iter()
                .map(|s| {
                    let p: f64 = s.iter().map(|l| l.2).sum();
                    if p > 0.0 {
                        s.iter().map(|l| l.0 - l.1).sum::<f64>() / p
                    } else {
                        0.0
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let test = if seeds.len() >= 2 {
            Test::across_seeds(&seed_diffs).expect("two or more seeds")
        } else {
            let wins = all().filter(|l| l.0 > l.1).count() as u64;
            let losses = all().filter(|l| l.0 < l.1).count() as u64;
            Test::sign(wins, losses)
        };
        heldout.push(HeldoutDiff {
            seeds: seeds.len(),
            lists: all().count(),
            a_accuracy: ca / pairs,
            b_accuracy: cb / pairs,
            diff: (ca - cb) / pairs,
            ci: boot_ratio(
                &seeds
                    .iter()
                    .map(|s| s.iter().map(|l| (l.0 - l.1, l.2)).collect())
                    .collect::<Vec<_>>(),
            ),
            p_adjusted: test.p,
            test,
            source,
            inference: Inference::unadjusted(&seed_diffs),
            seed_diffs,
        });
    }
    Ok(HeadToHead {
        a: arm_a.name.clone(),
        b: arm_b.name.clone(),
        rows,
        heldout,
        problems,
    })
}
