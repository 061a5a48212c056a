//! The files of one run directory, as types (see results/README.md).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// `summary.json` file name.
pub const SUMMARY: &str = "summary.json";
/// `eval.csv` file name.
pub const EVAL: &str = "eval.csv";
/// `metrics.csv` file name.
pub const METRICS: &str = "metrics.csv";
/// `timing.csv` file name.
pub const TIMING: &str = "timing.csv";
/// `heldout.csv` file name: one row per held-out list.
pub const HELDOUT: &str = "heldout.csv";
/// `curves.csv` file name: held-out list metrics every `eval.every` steps.
pub const CURVES: &str = "curves.csv";
/// `loss_parts.csv` file name: each part's loss per step, for a weighted
/// `loss.kind`.
pub const LOSS_PARTS: &str = "loss_parts.csv";
/// `config.toml` file name.
pub const CONFIG: &str = "config.toml";
/// Checkpoint directory name.
pub const CHECKPOINT: &str = "checkpoint";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, not finished (or interrupted).
    Running,
    /// Trained and evaluated.
    Complete,
    /// Stopped by an error (see `error` and `failed_step`).
    Failed,
}

/// Headline numbers of a finished run's evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// What the policy was compared with: `reference` or a run id.
    pub baseline: String,
    /// Held-out test prompts (validation prompts are not in the headline).
    pub prompts: usize,
    /// Responses sampled per prompt and model.
    #[serde(default = "one")]
    pub samples: u32,
    /// Prompts where the policy's reward is higher.
    pub wins: usize,
    /// Equal rewards.
    pub ties: usize,
    /// Lower rewards.
    pub losses: usize,
    /// wins / (wins + losses), ties dropped (0.5 when every prompt ties).
    pub win_rate: f64,
    /// Mean reward of the policy's responses.
    pub policy_reward: f64,
    /// Mean reward of the baseline's responses.
    pub baseline_reward: f64,
    /// Share of policy responses with the full reward (tasks with accuracy).
    pub policy_accuracy: Option<f64>,
    /// Same for the baseline.
    pub baseline_accuracy: Option<f64>,
    /// Mean estimated KL(policy || reference) per response, in nats.
    #[serde(default)]
    pub kl: f64,
}

fn one() -> u32 {
    1
}

/// Headline numbers of the held-out lists (test split).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldoutHeadline {
    /// Test lists with at least one strictly ordered pair.
    pub lists: usize,
    /// Strictly ordered pairs the implicit reward orders correctly, over all pairs.
    pub ranking_accuracy: f64,
    /// Mean over lists of the mean implicit-reward margin of ordered pairs.
    pub margin: f64,
    /// Mean reward-weighted NDCG of the policy's ordering.
    pub ndcg: f64,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Obtaining the reference (0 when cached).
    pub reference: f64,
    /// Obtaining the lists and reference log-probabilities.
    pub data: f64,
    /// Training (this process only, after any resume).
    pub train: f64,
    /// Evaluation.
    pub eval: f64,
}

/// Sequences cut to fit the token limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Lists whose prompt lost its beginning.
    pub prompts: usize,
    /// Responses that lost their end.
    pub responses: usize,
}

/// The rewards of one round's training lists from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardSummary {
    /// Scored responses.
    pub responses: usize,
    /// Their mean reward.
    pub mean: f64,
    /// Their standard deviation (population).
    pub sd: f64,
    /// Share at the solved level, where the reward has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solved: Option<f64>,
    /// A code reward's programs by how they ended (`passed`, `failed`,
    /// `timeout`, `forbidden`, ...; absent for other rewards).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub outcomes: std::collections::BTreeMap<String, usize>,
}

impl RewardSummary {
    /// The summary of `rewards`; `solved_at` is the reward's solved level.
    pub fn of(rewards: &[f64], solved_at: Option<f64>) -> RewardSummary {
        let n = rewards.len().max(1) as f64;
        let mean = rewards.iter().sum::<f64>() / n;
        let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        RewardSummary {
            responses: rewards.len(),
            mean,
            sd: var.sqrt(),
            solved: solved_at
                .map(|level| rewards.iter().filter(|&&r| r >= level).count() as f64 / n),
            outcomes: Default::default(),
        }
    }
}

/// `summary.json`: a run's status, timings and headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The run id.
    pub run_id: String,
    /// The recipe family name.
    pub recipe: String,
    /// Method label reports group by.
    pub label: String,
    /// Swept keys and their values for this run.
    pub assignments: std::collections::BTreeMap<String, serde_json::Value>,
    /// Seed.
    pub seed: u64,
    /// Status.
    pub status: Status,
    /// Optimizer steps completed.
    pub steps_done: u32,
    /// Steps configured.
    pub steps: u32,
    /// The step that failed, if any.
    pub failed_step: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Step a resumed run continued from.
    pub resumed_from: Option<u32>,
    /// Device it ran on.
    pub device: String,
    /// CPU threads libtorch used (results on CPU depend on it).
    #[serde(default)]
    pub threads: u32,
    /// Ranks that trained the run together (data parallelism); absent for
    /// one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<u32>,
    /// Reference id.
    pub reference: String,
    /// Reward-list dataset id.
    pub lists: String,
    /// The lists of each training round so far (the first is `lists`; later
    /// ones were sampled from the policy).
    #[serde(default)]
    pub round_lists: Vec<String>,
    /// What the code sandbox enforced on this machine (docs/data.md), when a
    /// source is scored by running code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// SHA-256 over the reward model's files (`reward.model`), when a source
    /// is scored by one: a complete run is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_model: Option<String>,
    /// The training rewards of each round so far, per source: how scored
    /// samples move from round to round (a reward model's scores rising
    /// while KL grows is reward hacking to look at). Absent for offline runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_rewards: Vec<std::collections::BTreeMap<String, RewardSummary>>,
    /// Prompts and responses of the first round's training lists cut to fit
    /// `data.max_prompt_tokens`, `data.max_response_tokens` and
    /// `model.max_len`, per source (absent when none was cut).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub truncated: std::collections::BTreeMap<String, Truncation>,
    /// Training lists that drew a file source's record again (after every
    /// training record was drawn once; `data.oversample = true`), per source
    /// (absent when none was).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub repeated: std::collections::BTreeMap<String, usize>,
    /// Seconds per phase.
    pub timings: Timings,
    /// Evaluation headline (complete runs with a built-in task source).
    pub headline: Option<Headline>,
    /// Held-out list headline (complete runs with held-out lists).
    #[serde(default)]
    pub heldout: Option<HeldoutHeadline>,
    /// Estimated and measured peak memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryRecord>,
}

/// A run's peak memory: the planner's estimate and what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Estimated peak in bytes (`lpo plan`'s memory column).
    pub estimated_bytes: u64,
    /// Measured peak in bytes, when the platform reports one.
    pub peak_bytes: Option<u64>,
    /// What was measured: `host-peak-rss` (the run process's VmHWM: SFT,
    /// sampling, training and evaluation together) or `cuda-in-use` (device
    /// memory in use by the driver's count, the caching allocator's reserve
    /// included, sampled after every optimizer step).
    pub measured: String,
}

/// What a record file of the results directory (`summary.json`,
/// `plan.json`) holds.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordFile<T> {
    /// No such file: the run never started, or no sweep wrote one.
    Missing,
    /// A file that does not parse (e.g. truncated), or is no regular file
    /// (a directory, a FIFO); the reason.
    Corrupt(String),
    /// A readable record.
    Present(T),
}

/// What a run directory's `summary.json` holds.
pub type SummaryFile = RecordFile<Box<Summary>>;

/// Reads the JSON record at `path`: a missing file and a corrupt one (bad
/// JSON, or not a regular file at all) are told apart and are no errors, so
/// one damaged entry never stops the commands that read many; only a file
/// that exists but cannot be read is an error.
fn load_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<RecordFile<T>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RecordFile::Missing),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.is_file() {
        return Ok(RecordFile::Corrupt(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let bytes = crate::read_regular(path, crate::MAX_CONFIG_FILE)?;
    Ok(match serde_json::from_slice(&bytes) {
        Ok(record) => RecordFile::Present(record),
        Err(e) => RecordFile::Corrupt(format!("{}: {e}", path.display())),
    })
}

/// File name of a recipe family's plan record.
pub const PLAN: &str = "plan.json";

/// `results/<recipe>/plan.json`: the runs the last local sweep planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The recipe's name.
    pub recipe: String,
    /// Its runs in plan order.
    pub runs: Vec<PlannedEntry>,
}

/// One planned run of a [`PlanRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedEntry {
    /// Position in the plan.
    pub index: usize,
    /// Run id.
    pub id: String,
    /// Method label.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// The swept keys and their values.
    pub assignments: std::collections::BTreeMap<String, serde_json::Value>,
}

impl PlanRecord {
    /// Reads `dir/plan.json` (a recipe family's directory).
    pub fn load(dir: &Path) -> Result<RecordFile<PlanRecord>> {
        load_record(&dir.join(PLAN))
    }

    /// Writes `dir/plan.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        crate::write_atomic(&dir.join(PLAN), text.as_bytes())
    }
}

impl Summary {
    /// Reads `dir/summary.json`, telling a missing file from a corrupt one.
    /// Only failures to read the file at all are errors.
    pub fn load(dir: &Path) -> Result<SummaryFile> {
        Ok(match load_record::<Summary>(&dir.join(SUMMARY))? {
            RecordFile::Missing => RecordFile::Missing,
            RecordFile::Corrupt(why) => RecordFile::Corrupt(why),
            RecordFile::Present(s) => RecordFile::Present(Box::new(s)),
        })
    }

    /// Reads `dir/summary.json`: `None` if absent or corrupt, so a run whose
    /// summary was damaged counts as not done and is run (resumed) again,
    /// which rewrites it; one bad file never stops a whole sweep.
    pub fn read(dir: &Path) -> Result<Option<Summary>> {
        Ok(match Summary::load(dir)? {
            SummaryFile::Present(s) => Some(*s),
            SummaryFile::Missing | SummaryFile::Corrupt(_) => None,
        })
    }

    /// Writes `dir/summary.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::write_atomic(&dir.join(SUMMARY), text.as_bytes())
    }
}

/// Outcome of one held-out prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Policy reward higher.
    Win,
    /// Equal.
    Tie,
    /// Lower.
    Loss,
}

impl Outcome {
    /// Compares a policy reward with a baseline reward.
    pub fn of(policy: f64, baseline: f64) -> Outcome {
        if policy > baseline {
            Outcome::Win
        } else if policy < baseline {
            Outcome::Loss
        } else {
            Outcome::Tie
        }
    }
}

/// Which half of the held-out data a row belongs to: tune on validation,
/// report on test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// For choosing configurations (`lpo report --select-by validation`).
    Validation,
    /// For reporting.
    Test,
}

impl Split {
    /// `validation` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// One row of `eval.csv`: one held-out prompt, `samples` responses per model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Id of the held-out prompt, unique across seeds (`<task>-s<seed>-<index>`);
    /// the same across the runs of a sweep that share data and seed.
    pub prompt_id: String,
    /// Validation or test.
    pub split: Split,
    /// Task name.
    pub task: String,
    /// Prompt text.
    pub prompt: String,
    /// Responses sampled per model (1 for greedy decoding).
    pub samples: u32,
    /// The policy's first response.
    pub policy_response: String,
    /// Mean reward of the policy's responses.
    pub policy_reward: f64,
    /// Share of the policy's responses at the solved level (the full
    /// reward); empty for a reward without one (a reward model).
    pub policy_pass: Option<f64>,
    /// Mean of log pi(y|x) - log pi_ref(y|x) over the policy's responses
    /// (a Monte Carlo estimate of KL(pi || pi_ref) at temperature 1).
    pub policy_kl: f64,
    /// `reference` or the baseline run's id.
    pub baseline: String,
    /// The baseline's first response.
    pub baseline_response: String,
    /// Mean reward of the baseline's responses.
    pub baseline_reward: f64,
    /// Share of the baseline's responses at the solved level; empty without one.
    pub baseline_pass: Option<f64>,
    /// Win, tie or loss for the policy, by mean reward.
    pub outcome: Outcome,
}

/// One row of `heldout.csv`: the trained policy's implicit reward on one
/// held-out list (never trained on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldoutRecord {
    /// Id of the list, unique across seeds (`<source>-s<seed>-<index>`).
    pub list_id: String,
    /// Validation or test.
    pub split: Split,
    /// Source name (task or file path).
    pub source: String,
    /// Responses in the list.
    pub responses: u32,
    /// Strictly ordered pairs (r_i > r_j).
    pub pairs: u32,
    /// Of those, pairs with s_i > s_j.
    pub correct: u32,
    /// Mean of s_i - s_j over the ordered pairs (empty when there are none).
    pub margin: Option<f64>,
    /// Reward-weighted NDCG of the order by s (empty when all rewards tie).
    pub ndcg: Option<f64>,
    /// Policy log-likelihood of the highest-reward response.
    pub chosen_logp: f64,
    /// Policy log-likelihood of the lowest-reward response.
    pub rejected_logp: f64,
}

/// One row of `curves.csv`: the policy on the fixed validation held-out
/// lists at one step (step 0 is the reference itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Optimizer steps taken when measured.
    pub step: u32,
    /// Mean policy log-likelihood of each list's highest-reward response.
    pub chosen_logp: f64,
    /// Mean policy log-likelihood of each list's lowest-reward response.
    pub rejected_logp: f64,
    /// Mean implicit reward of the highest-reward response.
    pub chosen_reward: f64,
    /// Mean implicit reward of the lowest-reward response.
    pub rejected_reward: f64,
    /// Mean implicit-reward margin of ordered pairs.
    pub margin: f64,
    /// Share of ordered pairs the implicit reward orders correctly.
    pub ranking_accuracy: f64,
}

/// Reads `eval.csv`.
pub fn read_eval(dir: &Path) -> Result<Vec<EvalRecord>> {
    read_rows(&dir.join(EVAL))
}

/// Serializes rows as CSV with a header.
pub fn to_csv<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Like [`to_csv`], but a file with no rows still gets its header line (a
/// run that fails at step 0 leaves a readable, empty `metrics.csv`).
pub fn to_csv_with_header<T: Serialize + Default>(rows: &[T]) -> Result<Vec<u8>> {
    if !rows.is_empty() {
        return to_csv(rows);
    }
    let mut bytes = to_csv(&[T::default()])?;
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    bytes.truncate(end);
    Ok(bytes)
}

/// One optimizer step of `metrics.csv` (deterministic: no wall-clock values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Optimizer step (0-based, counted over all rounds).
    pub step: u32,
    /// On-policy round (0-based; always 0 with `train.rounds = 1`).
    #[serde(default)]
    pub round: u32,
    /// Loss (mean over micro-batches).
    pub loss: f64,
    /// beta at this step.
    pub beta: f64,
    /// alpha at this step.
    pub alpha: f64,
    /// gamma at this step.
    pub gamma: f64,
    /// Learning rate.
    pub lr: f64,
    /// Mean policy log-likelihood of the highest-reward response.
    pub chosen_logp: f64,
    /// Mean policy log-likelihood of the lowest-reward response.
    pub rejected_logp: f64,
    /// Mean implicit reward of the highest-reward response.
    pub chosen_reward: f64,
    /// Mean implicit reward of the lowest-reward response.
    pub rejected_reward: f64,
    /// Share of strictly ordered pairs the implicit reward orders correctly.
    pub ranking_accuracy: f64,
    /// Supervised weight (`loss.sft_weight`) at this step.
    pub sft_weight: f64,
    /// Mean length-normalised NLL of each list's best response (logged even
    /// when its weight is 0).
    pub sft_loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens processed (prompts once, responses K times).
    pub tokens: u64,
    /// Each part's loss before its weight, for a weighted `loss.kind`
    /// (empty for one kind): not a column here, whose columns are the same
    /// for every recipe, but a row of `loss_parts.csv` ([`parts_to_csv`]).
    #[serde(skip)]
    pub parts: Vec<PartLoss>,
}

/// One part's loss at a step: `loss = sum weight * part + the supervised
/// term's share` (`lpo_loss::LossOutput::parts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartLoss {
    /// The part's loss kind.
    pub kind: String,
    /// Its loss before its weight.
    pub loss: f64,
}

/// `loss_parts.csv` of `rows`: a `step` column, then one per part named by
/// its kind (so pandas or a spreadsheet plots it as it is); `None` when the
/// rows carry no parts (one kind).
pub fn parts_to_csv(kinds: &[&str], rows: &[MetricsRow]) -> Result<Option<Vec<u8>>> {
    if kinds.len() < 2 {
        return Ok(None);
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(std::iter::once("step").chain(kinds.iter().copied()))?;
    for row in rows {
        let mut record = vec![row.step.to_string()];
        record.extend(row.parts.iter().map(|p| p.loss.to_string()));
        writer.write_record(&record)?;
    }
    Ok(Some(
        writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// Fills each row's `parts` from the `loss_parts.csv` at `path` (a resumed
/// run's history): its header must name `kinds`, and it must have a row for
/// every step of `rows`.
pub fn read_parts(path: &Path, kinds: &[&str], rows: &mut [MetricsRow]) -> Result<()> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("reading {}", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let want: Vec<&str> = std::iter::once("step")
        .chain(kinds.iter().copied())
        .collect();
    anyhow::ensure!(
        header == want,
        "{} has the columns {header:?}, not {want:?} as the run's loss.kind gives",
        path.display()
    );
    let mut by_step = std::collections::BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: record {}", path.display(), i + 1))?;
        let bad = || {
            format!(
                "{}: record {} is not a step and {} numbers",
                path.display(),
                i + 1,
                kinds.len()
            )
        };
        let step: u32 = record[0].parse().with_context(bad)?;
        let values: Vec<f64> = (record.iter().skip(1).map(str::parse))
            .collect::<Result<_, _>>()
            .with_context(bad)?;
        by_step.insert(step, values);
    }
    for row in rows {
        let values = by_step
            .get(&row.step)
            .with_context(|| format!("{} has no row for step {}", path.display(), row.step))?;
        row.parts = kinds
            .iter()
            .zip(values)
            .map(|(kind, &loss)| PartLoss {
                kind: kind.to_string(),
                loss,
            })
            .collect();
    }
    Ok(())
}

/// One optimizer step of `timing.csv` (wall clock: differs between runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingRow {
    /// Optimizer step.
    pub step: u32,
    /// Seconds the step took.
    pub seconds: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// CPU seconds the process used during the step, over all threads (less
    /// disturbed by other load on a shared machine than `seconds`; absent
    /// in runs written before it was recorded).
    #[serde(default)]
    pub cpu_seconds: f64,
}

/// Reads a CSV file of rows.
pub fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("{}: record {}", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Vec<MetricsRow> {
        (0..n)
            .map(|step| MetricsRow {
                step,
                ..MetricsRow::default()
            })
            .collect()
    }

    /// loss_parts.csv round-trips, and a resume refuses one that names
    /// other kinds, lacks a step, or holds something else than numbers.
    #[test]
    fn loss_parts_round_trip_and_corrupt_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOSS_PARTS);
        let kinds = ["dpo", "bco_pair"];
        let mut written = rows(3);
        for row in &mut written {
            row.parts = kinds
                .iter()
                .map(|k| PartLoss {
                    kind: k.to_string(),
                    loss: 0.5 + f64::from(row.step),
                })
                .collect();
        }
        assert_eq!(parts_to_csv(&["dpo"], &written).unwrap(), None, "one kind");
        let text = parts_to_csv(&kinds, &written).unwrap().unwrap();
        std::fs::write(&path, &text).unwrap();
        let mut read = rows(3);
        read_parts(&path, &kinds, &mut read).unwrap();
        assert_eq!(read, written);

        let error = |text: &str, kinds: &[&str], n: u32| {
            std::fs::write(&path, text).unwrap();
            format!("{:#}", read_parts(&path, kinds, &mut rows(n)).unwrap_err())
        };
        assert!(error("step,dpo,bco_pair\n0,1,2\n", &["dpo", "ipo"], 1)
            .contains("not [\"step\", \"dpo\", \"ipo\"]"));
        assert!(error("step,dpo\n0,1\n", &["dpo"], 2).contains("no row for step 1"));
        assert!(error("step,dpo\n-1,1\n", &["dpo"], 1).contains("record 1 is not a step"));
        assert!(error("step,dpo\n0,x\n", &["dpo"], 1).contains("record 1 is not a step"));
        assert!(error("step,dpo\n0,1,2\n", &["dpo"], 1).contains("record 1"));
        let missing = read_parts(&dir.path().join("missing"), &kinds, &mut rows(1));
        assert!(format!("{:#}", missing.unwrap_err()).contains("missing"));
    }
}
