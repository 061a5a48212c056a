//! The reward-list dataset a run trains on, and its held-out eval prompts.
//!
//! Training prompts are drawn from the weighted mix. For a built-in task the
//! reference samples K responses per prompt and the task scores them (with
//! annotator noise for `rating`); a file source contributes its records (K
//! of them at random when a record has more). The lists are cached as native
//! JSONL by a hash of everything that produced them, so every loss of a
//! sweep trains on the same data. `data.form = "preference"` binarizes at
//! load time.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lpo_data::tokenizer::Tokenize;
use lpo_data::{RewardList, Scored};
use lpo_model::generate::{generate_k, Decoding, GenerateOptions};
use lpo_model::Mistral;
use lpo_recipe::{DataForm, Recipe};
use lpo_results::{content_id, derive_seed, write_atomic, Layout};
use lpo_tasks::{Example, Part, Task};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::reference::Reference;
use crate::rewards::{Rewards, Scorable};
use crate::sources::{encode_prompt, Source, SourceKind, SourcedList, Window};
use crate::Progress;

/// The lists of a run: training lists and held-out lists.
pub struct Lists {
    /// Content identity.
    pub id: String,
    /// Where they are cached.
    pub path: PathBuf,
    /// Training lists as generated or imported (before binarization).
    pub lists: Vec<SourcedList>,
    /// Held-out lists, never trained on: a `data.eval_fraction` share of each
    /// file's records, and lists sampled for fresh prompts of the built-in
    /// tasks (scored with the true reward, without annotator noise).
    pub heldout: Vec<SourcedList>,
}

impl Lists {
    /// The lists in the recipe's form: as they are, or binarized (lists whose
    /// rewards all tie are dropped; their number is returned too).
    pub fn in_form(&self, form: DataForm, seed: u64) -> (Vec<SourcedList>, usize) {
        match form {
            DataForm::Reward => (self.lists.clone(), 0),
            DataForm::Preference => {
                let mut rng = StdRng::seed_from_u64(derive_seed(seed, "binarize"));
                let mut dropped = 0;
                let pairs = self
                    .lists
                    .iter()
                    .filter_map(|l| {
                        let pair = l.list.binarize(&mut rng);
                        dropped += usize::from(pair.is_none());
                        pair.map(|list| SourcedList {
                            source: l.source.clone(),
                            heldout: false,
                            list,
                            outcomes: Vec::new(),
                        })
                    })
                    .collect();
                (pairs, dropped)
            }
        }
    }
}

#[derive(Serialize)]
struct ListsIdentity {
    version: u32,
    /// How this process computes ([`lpo_model::products`]).
    numerics: &'static str,
    reference: String,
    /// How text becomes tokens (prompts of sampled lists; with a checkpoint
    /// reference, nothing else in this identity says it).
    encoding: String,
    sources: Vec<crate::sources::SourceIdentity>,
    list_size: u32,
    train_prompts: u32,
    eval_fraction: f64,
    /// Which part (validation or test) each held-out task list is drawn from.
    validation_fraction: f64,
    sample_temperature: f64,
    max_new_tokens: u32,
    seed: u64,
    /// Whether records may be drawn again: without it the same lists are an
    /// error, so a cached entry made with it must not answer a recipe
    /// without it (absent when false, so earlier ids stay).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    oversample: bool,
    /// How prompt files' responses are scored (absent without prompt
    /// files, so earlier ids stay).
    #[serde(skip_serializing_if = "Option::is_none")]
    rewards: Option<crate::rewards::RewardsIdentity>,
}

/// Prompts generated per batch when sampling lists.
const GENERATION_BATCH: usize = 32;

/// The run's lists: from the cache, or generated now (and cached).
pub fn obtain(
    recipe: &Recipe,
    sources: &[Source],
    tokenizer: &dyn Tokenize,
    reference: &Reference,
    rewards: &Rewards,
    layout: &Layout,
    progress: &mut dyn Progress,
) -> Result<Lists> {
    crate::sources::ensure_splits(sources, recipe.data.eval_fraction)?;
    let id = content_id(
        "lists",
        &ListsIdentity {
            // 4: inverse-CDF sampling on the device; 5: oneDNN products;
            // 6: prompts keep room for eval.max_new_tokens new tokens;
            // 7: prompts and records split by content (lpo_tasks::split).
            version: 7,
            numerics: lpo_model::products(),
            reference: reference.meta.id.clone(),
            encoding: crate::sources::tokenizer(recipe)?.1,
            sources: sources.iter().map(Source::identity).collect(),
            list_size: recipe.data.list_size,
            train_prompts: recipe.data.train_prompts,
            eval_fraction: recipe.data.eval_fraction,
            validation_fraction: recipe.eval.validation_fraction,
            sample_temperature: recipe.reference.sample_temperature,
            max_new_tokens: recipe.eval.max_new_tokens,
            seed: recipe.train.seed,
            oversample: recipe.data.oversample,
            rewards: crate::rewards::identity(recipe, rewards, &layout.cache_dir())?,
        },
    );
    cached(layout, id, || {
        let sampling = Sampling {
            recipe,
            tokenizer,
            rewards,
        };
        generate_lists(&sampling, sources, reference, progress)
    })
}

/// The lists of on-policy round `round` (>= 1) of run `run_id`: the same
/// training prompts as `base` (round 0), with K responses sampled from
/// `policy` (the policy at the start of the round) and scored with each
/// prompt's reward (a task's, with its rater noise as in round 0, or the
/// prompt file's). Cached by content id, so a run resumed mid-round trains
/// on the lists it already had.
#[allow(clippy::too_many_arguments)]
pub fn obtain_round(
    sampling: &Sampling<'_>,
    sources: &[Source],
    policy: &Mistral,
    base: &Lists,
    run_id: &str,
    round: u32,
    layout: &Layout,
    progress: &mut dyn Progress,
) -> Result<Lists> {
    let recipe = sampling.recipe;
    cached(layout, round_id(&base.id, run_id, round), || {
        let examples = training_examples(recipe);
        let items = base
            .lists
            .iter()
            .enumerate()
            .map(|(i, l)| round_item(sources, &examples, i, l))
            .collect::<Result<Vec<_>>>()?;
        let seed = recipe.train.seed;
        let purpose = format!("list-sampling-round-{round}");
        let mut sampler = ListSampler::new(sampling, policy, &purpose);
        let mut annotate =
            StdRng::seed_from_u64(derive_seed(seed, &format!("annotation-round-{round}")));
        progress.start(&format!("round {} lists", round + 1), items.len() as u64);
        let lists = sampler.sample(&items, Some(&mut annotate), progress)?;
        progress.finish();
        Ok(lists)
    })
}

/// The prompt of round 0's training list `i` to sample again: the task
/// example of its slot, or the prompt-file record it came from.
fn round_item(
    sources: &[Source],
    examples: &[Option<(Task, Example)>],
    i: usize,
    list: &SourcedList,
) -> Result<Scorable> {
    let reward = sources.iter().find_map(|s| match &s.kind {
        SourceKind::File {
            reward: Some(kind), ..
        } if s.name == list.source => Some(*kind),
        _ => None,
    });
    if let Some(kind) = reward {
        return Ok(Scorable::Record {
            source: list.source.clone(),
            kind,
            record: RewardList {
                responses: Vec::new(),
                ..list.list.clone()
            },
        });
    }
    match examples.get(i).cloned().flatten() {
        Some((_, example)) => Ok(Scorable::Task(example)),
        None => bail!(
            "on-policy rounds need a reward for every source; {} holds scored responses without one",
            list.source
        ),
    }
}

/// Content id of the lists of `round` of run `run_id` (round 0 is `base_id`).
pub fn round_id(base_id: &str, run_id: &str, round: u32) -> String {
    match round {
        0 => base_id.to_string(),
        r => content_id("lists", &("round", base_id, run_id, r)),
    }
}

/// Reads the lists cached under `id`, or computes, writes and returns them
/// (under the entry's lock; held-out lists are split off).
fn cached(
    layout: &Layout,
    id: String,
    compute: impl FnOnce() -> Result<Vec<SourcedList>>,
) -> Result<Lists> {
    let path = layout.lists_file(&id);
    let lock = layout.cache_lock(&format!("lists-{id}"));
    let lists = lpo_results::cache::cached(&path, &lock, read_cached, |path| {
        let lists = compute()?;
        let mut bytes = Vec::new();
        for l in &lists {
            serde_json::to_writer(&mut bytes, l)?;
            bytes.write_all(b"\n")?;
        }
        write_atomic(path, &bytes)?;
        Ok(lists)
    })?;
    let (heldout, lists) = lists.into_iter().partition(|l| l.heldout);
    Ok(Lists {
        id,
        path,
        lists,
        heldout,
    })
}

/// The training lists cached under `id` (a round's lists, written by
/// [`obtain`] or [`obtain_round`]).
pub fn read_training_lists(layout: &Layout, id: &str) -> Result<Vec<SourcedList>> {
    let mut lists = read_cached(&layout.lists_file(id))?;
    lists.retain(|l| !l.heldout);
    Ok(lists)
}

/// Reads a cache file this module wrote: one `SourcedList` per line.
fn read_cached(path: &std::path::Path) -> Result<Vec<SourcedList>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: corrupt cache entry", path.display(), i + 1))
        })
        .collect()
}

/// The `data.mix` entry of each of the `data.train_prompts` training slots.
fn training_slots(recipe: &Recipe) -> Vec<usize> {
    lpo_data::mix::assign(
        &mix_weights(recipe),
        recipe.data.train_prompts as usize,
        &mut StdRng::seed_from_u64(derive_seed(recipe.train.seed, "mix")),
    )
}

/// The sampling weight of each `data.mix` entry (the sources' weights).
fn mix_weights(recipe: &Recipe) -> Vec<f64> {
    recipe.data.mix.iter().map(|s| s.weight).collect()
}

/// The built-in task of each `data.mix` entry (`None` for files).
fn mix_tasks(recipe: &Recipe) -> Vec<Option<Task>> {
    let task = |s: &lpo_recipe::DataSource| s.task.as_deref().and_then(Task::from_name);
    recipe.data.mix.iter().map(task).collect()
}

/// The built-in task example of each training slot (`None` for file slots):
/// a pure function of the recipe, so on-policy rounds can score new
/// responses to the same prompts.
fn training_examples(recipe: &Recipe) -> Vec<Option<(Task, Example)>> {
    let mut rng = StdRng::seed_from_u64(derive_seed(recipe.train.seed, "train-prompts"));
    let tasks = mix_tasks(recipe);
    training_slots(recipe)
        .into_iter()
        .map(|s| tasks[s].map(|task| (task, task.generate_in(Part::Train, &mut rng))))
        .collect()
}

/// The `data.mix` entry of each held-out slot: `round(eval_fraction *
/// train_prompts)` slots spread over the whole mix by weight.
fn heldout_slots(recipe: &Recipe) -> Vec<usize> {
    let m = (recipe.data.eval_fraction * f64::from(recipe.data.train_prompts)).round() as usize;
    lpo_data::mix::assign(
        &mix_weights(recipe),
        m,
        &mut StdRng::seed_from_u64(derive_seed(recipe.train.seed, "heldout-mix")),
    )
}

/// Built-in tasks asked for more distinct held-out prompts than a part of
/// their prompt space holds ([`Task::part_prompts`]): per task, the
/// validation and the test prompts of the held-out lists and of the
/// evaluation, each against its part. Exact, so `lpo plan` refuses what
/// would otherwise fail after training.
pub fn prompt_shortfalls(recipe: &Recipe) -> Vec<String> {
    let tasks = mix_tasks(recipe);
    let held: Vec<Task> = heldout_slots(recipe)
        .into_iter()
        .filter_map(|s| tasks[s])
        .collect();
    let evaluated = eval_tasks(recipe, &tasks);
    let fraction = recipe.eval.validation_fraction;
    let mut out = Vec::new();
    for task in Task::ALL.into_iter().filter(|t| tasks.contains(&Some(*t))) {
        for (items, what, key) in [
            (&held, "held-out list", "data.eval_fraction"),
            (&evaluated, "evaluation", "eval.prompts"),
        ] {
            let n = items.iter().filter(|&&t| t == task).count();
            let validation = validation_count(n, fraction);
            for (part, name, k) in [
                (Part::Validation, "validation", validation),
                (Part::Test, "test", n - validation),
            ] {
                let space = task.part_prompts(part);
                if k > space {
                    out.push(format!(
                        "`{key}` asks for {k} {what} {} prompts from the task's {name} part, which has {space} distinct prompts (docs/data.md: splits)",
                        task.name()
                    ));
                }
            }
        }
    }
    out
}

/// Of `n` held-out items of a task, how many are validation items: the
/// first `round(eval.validation_fraction * n)`; the rest are test items.
fn validation_count(n: usize, fraction: f64) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

/// Most draws [`draw_heldout`] makes for one new distinct prompt.
const MAX_DRAWS_PER_PROMPT: usize = 20_000;

/// Distinct held-out prompts, one per entry of `tasks` in order: of each
/// task's `n` entries the first [`validation_count`] come from its
/// validation part and the rest from its test part, so no training stage
/// has seen any of them ([`lpo_tasks::split`]).
fn draw_heldout(
    tasks: &[Task],
    validation_fraction: f64,
    rng: &mut StdRng,
    key: &str,
) -> Result<Vec<Example>> {
    let mut totals: std::collections::HashMap<Task, usize> = Default::default();
    for &t in tasks {
        *totals.entry(t).or_default() += 1;
    }
    let mut drawn: std::collections::HashMap<Task, usize> = Default::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(tasks.len());
    for &task in tasks {
        let i = drawn.entry(task).or_default();
        let part = if *i < validation_count(totals[&task], validation_fraction) {
            Part::Validation
        } else {
            Part::Test
        };
        *i += 1;
        let example = (0..MAX_DRAWS_PER_PROMPT)
            .map(|_| task.generate_in(part, rng))
            .find(|e| seen.insert(e.prompt.clone()));
        match example {
            Some(e) => out.push(e),
            None => bail!(
                "could not draw {} distinct held-out {} prompts of the {:?} part; lower {key}",
                totals[&task],
                task.name(),
                part
            ),
        }
    }
    Ok(out)
}

/// The built-in task of each evaluation prompt, task by task: `eval.prompts`
/// apportioned over the mix's task entries by weight (the same counts for
/// every seed).
fn eval_tasks(recipe: &Recipe, tasks: &[Option<Task>]) -> Vec<Task> {
    let entries: Vec<(Task, f64)> = recipe
        .data
        .mix
        .iter()
        .zip(tasks)
        .filter_map(|(s, t)| t.map(|t| (t, s.weight)))
        .collect();
    let weights: Vec<f64> = entries.iter().map(|e| e.1).collect();
    let counts = lpo_data::mix::apportion(&weights, recipe.eval.prompts as usize);
    entries
        .iter()
        .zip(counts)
        .flat_map(|(&(task, _), n)| std::iter::repeat_n(task, n))
        .collect()
}

/// What sampling and scoring lists needs.
pub struct Sampling<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The tokenizer of prompts and responses.
    pub tokenizer: &'a dyn Tokenize,
    /// The prompt files' reward sources.
    pub rewards: &'a Rewards,
}

/// Training lists (in slot order) followed by held-out lists.
fn generate_lists(
    sampling: &Sampling<'_>,
    sources: &[Source],
    reference: &Reference,
    progress: &mut dyn Progress,
) -> Result<Vec<SourcedList>> {
    let recipe = sampling.recipe;
    let seed = recipe.train.seed;
    let k = recipe.data.list_size as usize;
    let mut pick_rng = StdRng::seed_from_u64(derive_seed(seed, "file-records"));
    // Per file source: a seeded order of its training records, consumed in
    // turn from the second member on.
    let mut orders: Vec<(Vec<usize>, usize)> = sources
        .iter()
        .map(|s| {
            let train = s.file_split().1;
            let order = lpo_data::mix::permutation(train.len(), &mut pick_rng);
            (order.into_iter().map(|i| train[i]).collect(), 0)
        })
        .collect();
    let slots = match recipe.data.train_prompts {
        0 => every_record_once(&orders),
        _ => training_slots(recipe),
    };
    check_draws(recipe, sources, &slots, &orders)?;
    let n = slots.len();
    let mut out: Vec<Option<SourcedList>> = vec![None; n];
    let mut pending: Vec<(usize, Scorable)> = Vec::new();
    let examples = training_examples(recipe);
    for (slot, &s) in slots.iter().enumerate() {
        match &sources[s].kind {
            SourceKind::Task(_) => {
                let (_, example) = examples[slot].clone().expect("task slots have examples");
                pending.push((slot, Scorable::Task(example)));
            }
            SourceKind::File {
                records, reward, ..
            } => {
                let (train, next) = &mut orders[s];
                let record = &records[train[*next % train.len()]];
                *next += 1;
                // A prompt record holding responses is refused before
                // (sources::ensure_splits).
                match reward {
                    Some(kind) => pending.push((
                        slot,
                        Scorable::Record {
                            source: sources[s].name.clone(),
                            kind: *kind,
                            record: record.clone(),
                        },
                    )),
                    None => {
                        out[slot] =
                            Some(file_list(&sources[s].name, record, k, false, &mut pick_rng))
                    }
                }
            }
        }
    }
    let mut sampler = ListSampler::new(sampling, &reference.model, "list-sampling");
    progress.start("sampling reward lists", pending.len() as u64);
    let mut annotate_rng = StdRng::seed_from_u64(derive_seed(seed, "annotation"));
    let items: Vec<Scorable> = pending.iter().map(|(_, item)| item.clone()).collect();
    let sampled = sampler.sample(&items, Some(&mut annotate_rng), progress)?;
    progress.finish();
    for ((slot, _), list) in pending.iter().zip(sampled) {
        out[*slot] = Some(list);
    }
    let mut lists: Vec<SourcedList> = out
        .into_iter()
        .map(|l| l.expect("every slot filled"))
        .collect();
    let held = heldout_lists(sampling, sources, reference, &mut pick_rng, progress)?;
    lists.extend(held);
    Ok(lists)
}

/// Held-out lists: sampled for fresh prompts of the built-in tasks (true
/// rewards), then the held-out records of the files of scored responses (a
/// prompt file's are evaluation prompts instead: [`eval_examples`]).
fn heldout_lists(
    sampling: &Sampling<'_>,
    sources: &[Source],
    reference: &Reference,
    pick_rng: &mut StdRng,
    progress: &mut dyn Progress,
) -> Result<Vec<SourcedList>> {
    let (recipe, k) = (sampling.recipe, sampling.recipe.data.list_size as usize);
    let held_tasks: Vec<Scorable> = heldout_examples(recipe)?
        .into_iter()
        .map(Scorable::Task)
        .collect();
    let mut sampler = ListSampler::new(sampling, &reference.model, "heldout-list-sampling");
    progress.start("sampling held-out lists", held_tasks.len() as u64);
    let mut held = sampler.sample(&held_tasks, None, progress)?;
    progress.finish();
    for s in sources {
        if let SourceKind::File {
            records,
            heldout,
            reward: None,
            ..
        } = &s.kind
        {
            for &i in s.file_split().0 {
                held.push(file_list(&s.name, &records[i], k, true, pick_rng));
            }
            if let Some((name, records)) = heldout {
                for record in records {
                    held.push(file_list(name, record, k, true, pick_rng));
                }
            }
        }
    }
    for l in &mut held {
        l.heldout = true;
    }
    Ok(held)
}

/// `data.train_prompts = 0`: one slot for every training record of every
/// file source, source by source (batches are drawn in seeded permutations).
fn every_record_once(orders: &[(Vec<usize>, usize)]) -> Vec<usize> {
    orders
        .iter()
        .enumerate()
        .flat_map(|(s, (train, _))| std::iter::repeat_n(s, train.len()))
        .collect()
}

/// Lists drawn from each file source beyond its training records (records
/// drawn a second time or more), by source name; only sources with some.
pub fn repeated_draws(
    sources: &[Source],
    lists: &[SourcedList],
) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::File { .. }))
    {
        let drawn = lists.iter().filter(|l| l.source == s.name).count();
        let records = s.file_split().1.len();
        if drawn > records {
            out.insert(s.name.clone(), drawn - records);
        }
    }
    out
}

/// Refuses to draw a file source's training records more than once each
/// unless `data.oversample` says so: the error names the counts.
fn check_draws(
    recipe: &Recipe,
    sources: &[Source],
    slots: &[usize],
    orders: &[(Vec<usize>, usize)],
) -> Result<()> {
    if recipe.data.oversample {
        return Ok(());
    }
    for (s, source) in sources.iter().enumerate() {
        if !matches!(source.kind, SourceKind::File { .. }) {
            continue;
        }
        let drawn = slots.iter().filter(|&&x| x == s).count();
        let records = orders[s].0.len();
        if drawn > records {
            bail!(
                "data.train_prompts = {} gives {drawn} training lists to {}, which has {records} training records: \
                 set data.train_prompts = 0 to use every record once, lower it, or set data.oversample = true to draw records again",
                recipe.data.train_prompts,
                source.name
            );
        }
    }
    Ok(())
}

/// A file record as a list of at most `k` responses (a random `k` when it has more).
fn file_list(
    source: &str,
    record: &RewardList,
    k: usize,
    heldout: bool,
    rng: &mut StdRng,
) -> SourcedList {
    let mut responses = record.responses.clone();
    if responses.len() > k {
        let keep = lpo_data::mix::permutation(responses.len(), rng);
        responses = keep[..k].iter().map(|&i| responses[i].clone()).collect();
    }
    SourcedList {
        source: source.to_string(),
        heldout,
        outcomes: Vec::new(),
        list: RewardList {
            context: record.context.clone(),
            prompt: record.prompt.clone(),
            responses,
            answer: record.answer.clone(),
            tests: record.tests.clone(),
        },
    }
}

/// Prompts for the built-in tasks' held-out lists: `round(eval_fraction *
/// train_prompts)` slots spread over the whole mix by weight, of which the
/// task slots are used (files hold out their own records), from the tasks'
/// validation and test parts ([`draw_heldout`]).
fn heldout_examples(recipe: &Recipe) -> Result<Vec<Example>> {
    let tasks = mix_tasks(recipe);
    let held: Vec<Task> = heldout_slots(recipe)
        .into_iter()
        .filter_map(|s| tasks[s])
        .collect();
    let mut rng = StdRng::seed_from_u64(derive_seed(recipe.train.seed, "heldout-prompts"));
    draw_heldout(
        &held,
        recipe.eval.validation_fraction,
        &mut rng,
        "data.eval_fraction",
    )
}

/// K responses sampled from `model` for each item and scored with the
/// item's reward (true rewards, no annotator noise): what `lpo score`
/// writes. Seeded by the recipe's seed and `purpose`.
pub fn sample_scored(
    sampling: &Sampling<'_>,
    model: &Mistral,
    items: &[Scorable],
    purpose: &str,
    progress: &mut dyn Progress,
) -> Result<Vec<SourcedList>> {
    ListSampler::new(sampling, model, purpose).sample(items, None, progress)
}

/// Samples K responses per prompt from a model and scores them.
struct ListSampler<'a> {
    model: &'a Mistral,
    tokenizer: &'a dyn Tokenize,
    rewards: &'a Rewards,
    window: Window,
    options: GenerateOptions,
    k: usize,
    rng: StdRng,
}

impl<'a> ListSampler<'a> {
    fn new(sampling: &Sampling<'a>, model: &'a Mistral, purpose: &str) -> ListSampler<'a> {
        let (recipe, tokenizer) = (sampling.recipe, sampling.tokenizer);
        ListSampler {
            model,
            tokenizer,
            rewards: sampling.rewards,
            window: Window::new(recipe, model.config().max_position_embeddings as usize),
            options: GenerateOptions {
                max_new_tokens: recipe.eval.max_new_tokens as usize,
                eos: tokenizer.eos(),
                pad: tokenizer.pad(),
                decoding: Decoding::Sample {
                    temperature: recipe.reference.sample_temperature,
                    top_p: 1.0,
                },
            },
            k: recipe.data.list_size as usize,
            rng: StdRng::seed_from_u64(derive_seed(recipe.train.seed, purpose)),
        }
    }

    /// One list per prompt. Task rewards are annotated (with the task's
    /// rater noise) when `annotate` is given, else the true reward.
    fn sample(
        &mut self,
        items: &[Scorable],
        mut annotate: Option<&mut StdRng>,
        progress: &mut dyn Progress,
    ) -> Result<Vec<SourcedList>> {
        let k = self.k;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(GENERATION_BATCH) {
            let prompts = chunk
                .iter()
                .map(|item| {
                    encode_prompt(self.tokenizer, item.context(), item.prompt(), &self.window)
                })
                .collect::<Result<Vec<_>>>()?;
            // K samples per prompt, computing each prompt once.
            let generated = generate_k(self.model, &prompts, k, &self.options, &mut self.rng);
            let texts: Vec<String> = generated
                .iter()
                .map(|ids| self.tokenizer.decode(ids))
                .collect();
            let pairs: Vec<(&Scorable, &str)> = texts
                .iter()
                .enumerate()
                .map(|(j, text)| (&chunk[j / k], text.as_str()))
                .collect();
            let scores = self.rewards.score(&pairs, annotate.as_deref_mut())?;
            for (i, item) in chunk.iter().enumerate() {
                let responses = (i * k..(i + 1) * k)
                    .map(|j| Scored {
                        text: texts[j].clone(),
                        reward: scores.rewards[j],
                    })
                    .collect();
                let mut list = item.list(&item.group(), responses);
                list.outcomes = scores.outcomes[i * k..(i + 1) * k]
                    .iter()
                    .flatten()
                    .cloned()
                    .collect();
                out.push(list);
            }
            progress.update(out.len() as u64, "");
        }
        Ok(out)
    }
}

/// Held-out evaluation prompts: `eval.prompts` split over the mix's built-in
/// tasks exactly by weight (the same counts for every seed), task by task,
/// drawn with a separate seed from the tasks' validation and test parts
/// ([`draw_heldout`]), never repeating each other; then every held-out
/// record of each prompt file (its `data.eval_fraction` share, or its
/// `eval_split`), scored by the file's reward. Empty when the mix has
/// neither.
pub fn eval_examples(recipe: &Recipe, sources: &[Source]) -> Result<Vec<Scorable>> {
    let mut rng = StdRng::seed_from_u64(derive_seed(recipe.train.seed, "eval-prompts"));
    let mut out: Vec<Scorable> = draw_heldout(
        &eval_tasks(recipe, &mix_tasks(recipe)),
        recipe.eval.validation_fraction,
        &mut rng,
        "eval.prompts",
    )?
    .into_iter()
    .map(Scorable::Task)
    .collect();
    for source in sources {
        let SourceKind::File {
            records,
            heldout,
            reward: Some(kind),
            ..
        } = &source.kind
        else {
            continue;
        };
        let (name, held): (&str, Vec<&RewardList>) = match heldout {
            Some((name, records)) => (name, records.iter().collect()),
            None => {
                let held = source.file_split().0;
                (&source.name, held.iter().map(|&i| &records[i]).collect())
            }
        };
        out.extend(held.into_iter().map(|record| Scorable::Record {
            source: name.to_string(),
            kind: *kind,
            record: record.clone(),
        }));
    }
    Ok(out)
}
