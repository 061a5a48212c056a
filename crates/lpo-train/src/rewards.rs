//! Reward sources: what scores a sampled response. A built-in task scores
//! its own examples; a prompt file (`data.mix[].reward`) is scored by the
//! math checker, the code sandbox or a reward model (`[reward]` settings).
//! Sampled training lists, on-policy rounds and the sampled evaluation all
//! score through [`Rewards::score`].

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lpo_data::tokenizer::{HfOptions, HfTokenizer};
use lpo_data::{Message, RewardList};
use lpo_model::reward_model::RewardModel;
use lpo_recipe::{Recipe, RewardKind};
use lpo_reward::sandbox::{self, Cause, Execution, Sandbox};
use lpo_tasks::{Example, Task, MAX_REWARD};
use rand::rngs::StdRng;
use serde::Serialize;
use tch::{nn, Device};

/// A prompt whose responses a reward scores.
#[derive(Debug, Clone)]
pub enum Scorable {
    /// A built-in task's example, scored by the task.
    Task(Example),
    /// A prompt-file record, scored by the source's reward.
    Record {
        /// The source's name (its file).
        source: String,
        /// Which reward.
        kind: RewardKind,
        /// The record: prompt, context, and the answer or tests.
        record: RewardList,
    },
}

impl Scorable {
    /// The task name, or the source name of a record.
    pub fn group(&self) -> String {
        match self {
            Scorable::Task(e) => e.task.name().to_string(),
            Scorable::Record { source, .. } => source.clone(),
        }
    }

    /// The built-in task of a task prompt (`None` for a file record).
    pub fn task(&self) -> Option<Task> {
        match self {
            Scorable::Task(e) => Some(e.task),
            Scorable::Record { .. } => None,
        }
    }

    /// The conversation before the prompt.
    pub fn context(&self) -> &[Message] {
        match self {
            Scorable::Task(_) => &[],
            Scorable::Record { record, .. } => &record.context,
        }
    }

    /// The prompt text.
    pub fn prompt(&self) -> &str {
        match self {
            Scorable::Task(e) => &e.prompt,
            Scorable::Record { record, .. } => &record.prompt,
        }
    }

    /// The reward at which a response counts as passing (pass rates), if
    /// the reward has one: the full reward of every built-in task, `math`
    /// and `code`; none for reward models.
    pub fn pass_level(&self) -> Option<f64> {
        match self {
            Scorable::Task(_) => Some(MAX_REWARD),
            Scorable::Record { kind, .. } => solved_level(*kind),
        }
    }

    /// Whether the pass rate is an accuracy that headlines report: for the
    /// tasks with right answers (`arith`, `program`; not the noisy rater
    /// `rating`), `math` and `code`.
    pub fn has_accuracy(&self) -> bool {
        match self {
            Scorable::Task(e) => e.task.has_accuracy(),
            Scorable::Record { kind, .. } => solved_level(*kind).is_some(),
        }
    }

    /// The list `responses` to this prompt make (no responses yet scored).
    pub fn list(
        &self,
        source: &str,
        responses: Vec<lpo_data::Scored>,
    ) -> crate::sources::SourcedList {
        let list = match self {
            Scorable::Task(e) => RewardList {
                prompt: e.prompt.clone(),
                responses,
                ..RewardList::default()
            },
            Scorable::Record { record, .. } => RewardList {
                responses,
                ..record.clone()
            },
        };
        crate::sources::SourcedList {
            source: source.to_string(),
            heldout: false,
            list,
            outcomes: Vec::new(),
        }
    }
}

/// The solved level of a file reward: `math` and `code` give the full
/// reward (10) when right; a reward model has no such level.
pub fn solved_level(kind: RewardKind) -> Option<f64> {
    match kind {
        RewardKind::Math | RewardKind::Code => Some(MAX_REWARD),
        RewardKind::Model => None,
    }
}

/// A loaded reward model with the tokenizer (and chat template) it reads.
struct ModelScorer {
    _vs: nn::VarStore,
    model: RewardModel,
    tokenizer: HfTokenizer,
}

/// The reward sources a run needs, loaded once.
pub struct Rewards {
    math_style: lpo_reward::math::AnswerStyle,
    sandbox: Option<Sandbox>,
    model: Option<ModelScorer>,
    model_batch: usize,
    threads: usize,
}

/// What identifies how rewards are computed (part of list identities
/// when a prompt file is scored): the settings that matter to the kinds in
/// use ([`lpo_recipe::RewardConfig::relevant_keys`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RewardsIdentity {
    version: u32,
    kinds: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    math_style: Option<lpo_reward::math::AnswerStyle>,
    /// Wall-clock and memory limits, and the interpreter's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<(f64, u32, String)>,
    /// SHA-256 over the reward model's config, weights and tokenizer files.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

/// The identity of `recipe`'s file rewards, `None` without any. Reward
/// model files are hashed once per content (cached under `cache_dir`).
pub fn identity(
    recipe: &Recipe,
    rewards: &Rewards,
    cache_dir: &Path,
) -> Result<Option<RewardsIdentity>> {
    let kinds = recipe.reward_kinds();
    if kinds.is_empty() {
        return Ok(None);
    }
    let r = &recipe.reward;
    let model = model_id(recipe, cache_dir)?;
    let code = rewards.sandbox.as_ref().map(|s| {
        let python = s.isolation().python_version.clone();
        (r.code_timeout, r.code_memory_mb, python)
    });
    Ok(Some(RewardsIdentity {
        version: 1,
        kinds: kinds.iter().map(|k| k.name()).collect(),
        math_style: kinds.contains(&RewardKind::Math).then_some(r.math_style),
        code,
        model,
    }))
}

/// SHA-256 over the files of `recipe`'s reward model, when a source uses one.
pub fn model_id(recipe: &Recipe, cache_dir: &Path) -> Result<Option<String>> {
    match (
        &recipe.reward.model,
        recipe.reward_kinds().contains(&RewardKind::Model),
    ) {
        (Some(dir), true) => Ok(Some(model_hash(Path::new(dir), cache_dir)?)),
        _ => Ok(None),
    }
}

/// SHA-256 over a reward model directory's config, weights and tokenizer files.
fn model_hash(dir: &Path, cache_dir: &Path) -> Result<String> {
    let mut files = vec![dir.join("config.json")];
    files.extend(lpo_model::checkpoint::weight_files(dir)?);
    let tokenizer = lpo_data::tokenizer::tokenizer_json(dir);
    files.extend(
        lpo_data::tokenizer::tokenizer_dir_files(&tokenizer)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|(_, p)| p),
    );
    let hashes = files
        .iter()
        .map(|f| lpo_results::file_hash::sha256_file_cached(f, cache_dir))
        .collect::<Result<Vec<_>>>()?;
    Ok(lpo_results::sha256_hex(&[hashes.join(",").as_bytes()], 32))
}

impl Rewards {
    /// Loads what `recipe`'s sources need: the sandbox for `code`, the
    /// reward model (on `device`) for `model`.
    pub fn load(recipe: &Recipe, device: Device) -> Result<Rewards> {
        let kinds = recipe.reward_kinds();
        let r = &recipe.reward;
        let sandbox = match kinds.contains(&RewardKind::Code) {
            true => Some(Sandbox::new(code_limits(recipe))?),
            false => None,
        };
        let model = match (&r.model, kinds.contains(&RewardKind::Model)) {
            (Some(dir), true) => Some(load_model(Path::new(dir), device)?),
            (None, true) => {
                bail!("a source has reward = \"model\", but reward.model names no reward model")
            }
            _ => None,
        };
        Ok(Rewards {
            math_style: r.math_style,
            sandbox,
            model,
            model_batch: r.model_batch as usize,
            threads: match recipe.train.threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n as usize,
            },
        })
    }

    /// What the sandbox enforces here, when code is run.
    pub fn isolation(&self) -> Option<&sandbox::Isolation> {
        self.sandbox.as_ref().map(Sandbox::isolation)
    }

    /// The reward of `responses[i]` to `prompts[i]`: a task's reward (with
    /// its annotator noise from `annotate` when given), or the record's.
    /// Code runs in parallel up to the run's threads; a reward model scores
    /// in batches.
    pub fn score(
        &self,
        items: &[(&Scorable, &str)],
        mut annotate: Option<&mut StdRng>,
    ) -> Result<Scores> {
        let mut out = Scores {
            rewards: vec![0.0; items.len()],
            outcomes: vec![None; items.len()],
        };
        let mut code = Vec::new();
        let mut model = Vec::new();
        for (i, (item, response)) in items.iter().enumerate() {
            match item {
                Scorable::Task(e) => {
                    out.rewards[i] = match annotate.as_deref_mut() {
                        Some(rng) => e.task.annotate(e, response, rng),
                        None => e.task.reward(e, response),
                    }
                }
                Scorable::Record { kind, record, .. } => match kind {
                    RewardKind::Math => out.rewards[i] = self.math(record, response)?,
                    RewardKind::Code => code.push(i),
                    RewardKind::Model => model.push(i),
                },
            }
        }
        if !code.is_empty() {
            self.code(items, &code, &mut out)?;
        }
        if !model.is_empty() {
            self.model(items, &model, &mut out)?;
        }
        Ok(out)
    }

    /// 10 when the final answer equals the record's answer, else 0.
    fn math(&self, record: &RewardList, response: &str) -> Result<f64> {
        let answer = record
            .answer
            .as_deref()
            .context("a math record has no `answer`")?;
        let verdict = lpo_reward::math::check(response, answer, self.math_style);
        Ok(if verdict.correct { MAX_REWARD } else { 0.0 })
    }

    /// Runs the programs of `which` items; 10 for those whose tests pass.
    fn code(&self, items: &[(&Scorable, &str)], which: &[usize], out: &mut Scores) -> Result<()> {
        let sandbox = self
            .sandbox
            .as_ref()
            .context("code rewards need the sandbox")?;
        let programs = which
            .iter()
            .map(|&i| match items[i].0 {
                Scorable::Record { record, .. } => program(record, items[i].1),
                Scorable::Task(_) => unreachable!("only records run code"),
            })
            .collect::<Result<Vec<_>>>()?;
        let runs = sandbox.run_all(&programs, self.threads);
        for (&i, run) in which.iter().zip(runs) {
            // lpo failing to run a program says nothing of the response.
            if let Some(Cause::Sandbox(why)) = &run.cause {
                bail!("the code sandbox could not run a response: {why}");
            }
            out.rewards[i] = if run.passed { MAX_REWARD } else { 0.0 };
            out.outcomes[i] = Some(outcome(&run).to_string());
        }
        Ok(())
    }

    /// Reward-model scores of the conversations of `which` items.
    fn model(&self, items: &[(&Scorable, &str)], which: &[usize], out: &mut Scores) -> Result<()> {
        let scorer = self
            .model
            .as_ref()
            .context("model rewards need reward.model")?;
        let max = scorer.model.config().max_position_embeddings as usize;
        let sequences = which
            .iter()
            .map(|&i| {
                let (item, response) = items[i];
                let mut ids = scorer
                    .tokenizer
                    .encode_conversation(item.context(), item.prompt(), response)
                    .map_err(anyhow::Error::msg)?;
                // Longer conversations keep their end, where the score is read.
                if ids.len() > max {
                    ids.drain(..ids.len() - max);
                }
                if ids.is_empty() {
                    ids.push(scorer.tokenizer_pad());
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = scorer.model.scores(&sequences, self.model_batch)?;
        for (&i, score) in which.iter().zip(scores) {
            ensure!(
                score.is_finite(),
                "reward.model scored a response to {:?} {score}",
                items[i].0.prompt().chars().take(60).collect::<String>()
            );
            out.rewards[i] = score;
        }
        Ok(())
    }
}

impl ModelScorer {
    fn tokenizer_pad(&self) -> i64 {
        use lpo_data::tokenizer::Tokenize;
        self.tokenizer.pad()
    }
}

/// Rewards of a batch, and how its code responses' programs ended.
pub struct Scores {
    /// One per item.
    pub rewards: Vec<f64>,
    /// One per item: `passed` or the cause of failure for a code response.
    pub outcomes: Vec<Option<String>>,
}

/// The sandbox limits of `recipe` (`reward.code_timeout` for wall and CPU
/// time, `reward.code_memory_mb`).
fn code_limits(recipe: &Recipe) -> sandbox::Limits {
    let r = &recipe.reward;
    sandbox::Limits {
        wall: std::time::Duration::from_secs_f64(r.code_timeout),
        cpu_seconds: r.code_timeout.ceil() as u64,
        memory_bytes: u64::from(r.code_memory_mb) << 20,
        ..sandbox::Limits::default()
    }
}

/// The program a code response runs: HumanEval's layout (prompt,
/// completion, tests, `check(entry_point)`), or the tests after the
/// completion when there is no entry point (MBPP's asserts).
fn program(record: &RewardList, response: &str) -> Result<String> {
    let tests = record
        .tests
        .as_ref()
        .context("a code record has no `tests`")?;
    Ok(match &tests.entry_point {
        Some(entry) => sandbox::humaneval_program(&record.prompt, response, &tests.test, entry),
        None => format!("{}{}\n\n{}\n", record.prompt, response, tests.test),
    })
}

/// A reward model and its tokenizer (with its own chat template).
fn load_model(dir: &Path, device: Device) -> Result<ModelScorer> {
    let (vs, model) = RewardModel::load(dir, device)
        .with_context(|| format!("reward.model {}", dir.display()))?;
    let options = HfOptions {
        chat_template: true,
        ..HfOptions::default()
    };
    let tokenizer = HfTokenizer::from_file(dir, &options)
        .map_err(|e| anyhow::anyhow!("reward.model {}: {e}", dir.display()))?;
    Ok(ModelScorer {
        _vs: vs,
        model,
        tokenizer,
    })
}

/// How a program ended: `passed`, or its cause's label.
fn outcome(run: &Execution) -> &'static str {
    run.cause.as_ref().map_or("passed", Cause::label)
}
