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
use lpo_model::generate::{generate, Decoding, GenerateOptions};
use lpo_recipe::{DataForm, Recipe};
use lpo_results::{content_id, derive_seed, write_atomic, FileLock, Layout};
use lpo_tasks::{Example, Task};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::reference::Reference;
use crate::sources::{encode_pair, Source, SourceKind};
use crate::Progress;

/// A list and the source it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcedList {
    /// Source name (task or file path).
    pub source: String,
    /// The list.
    #[serde(flatten)]
    pub list: RewardList,
}

/// The training lists of a run.
pub struct Lists {
    /// Content identity.
    pub id: String,
    /// Where they are cached.
    pub path: PathBuf,
    /// Lists as generated or imported (before binarization).
    pub lists: Vec<SourcedList>,
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
                            list,
                        })
                    })
                    .collect();
                (pairs, dropped)
            }
        }
    }

    /// The prompts of the training lists.
    pub fn prompts(&self) -> HashSet<&str> {
        self.lists.iter().map(|l| l.list.prompt.as_str()).collect()
    }
}

#[derive(Serialize)]
struct ListsIdentity {
    version: u32,
    reference: String,
    sources: Vec<crate::sources::SourceIdentity>,
    list_size: u32,
    train_prompts: u32,
    sample_temperature: f64,
    max_new_tokens: u32,
    seed: u64,
}

/// Prompts generated per batch when sampling lists.
const GENERATION_BATCH: usize = 32;

/// The run's lists: from the cache, or generated now (and cached).
pub fn obtain(
    recipe: &Recipe,
    sources: &[Source],
    tokenizer: &dyn Tokenize,
    reference: &Reference,
    layout: &Layout,
    progress: &mut dyn Progress,
) -> Result<Lists> {
    let id = content_id(
        "lists",
        &ListsIdentity {
            version: 1,
            reference: reference.meta.id.clone(),
            sources: sources.iter().map(Source::identity).collect(),
            list_size: recipe.data.list_size,
            train_prompts: recipe.data.train_prompts,
            sample_temperature: recipe.reference.sample_temperature,
            max_new_tokens: recipe.eval.max_new_tokens,
            seed: recipe.train.seed,
        },
    );
    let path = layout.lists_file(&id);
    let _lock = FileLock::acquire(&layout.cache_lock(&format!("lists-{id}")))?;
    let lists = if path.exists() {
        read_cached(&path)?
    } else {
        let lists = generate_lists(recipe, sources, tokenizer, reference, progress)?;
        let mut bytes = Vec::new();
        for l in &lists {
            serde_json::to_writer(&mut bytes, l)?;
            bytes.write_all(b"\n")?;
        }
        write_atomic(&path, &bytes)?;
        lists
    };
    Ok(Lists { id, path, lists })
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

fn generate_lists(
    recipe: &Recipe,
    sources: &[Source],
    tokenizer: &dyn Tokenize,
    reference: &Reference,
    progress: &mut dyn Progress,
) -> Result<Vec<SourcedList>> {
    let seed = recipe.train.seed;
    let k = recipe.data.list_size as usize;
    let n = recipe.data.train_prompts as usize;
    let weights: Vec<f64> = sources.iter().map(|s| s.weight).collect();
    let slots = lpo_data::mix::assign(
        &weights,
        n,
        &mut StdRng::seed_from_u64(derive_seed(seed, "mix")),
    );
    let mut prompt_rng = StdRng::seed_from_u64(derive_seed(seed, "train-prompts"));
    let mut pick_rng = StdRng::seed_from_u64(derive_seed(seed, "file-records"));
    // Per file source: a seeded order of its records, consumed in turn.
    let mut orders: Vec<(Vec<usize>, usize)> = sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::File { records, .. } => {
                (lpo_data::mix::permutation(records.len(), &mut pick_rng), 0)
            }
            SourceKind::Task(_) => (Vec::new(), 0),
        })
        .collect();
    let mut out: Vec<Option<SourcedList>> = vec![None; n];
    let mut pending: Vec<(usize, Task, Example)> = Vec::new();
    for (slot, &s) in slots.iter().enumerate() {
        match &sources[s].kind {
            SourceKind::Task(task) => pending.push((slot, *task, task.generate(&mut prompt_rng))),
            SourceKind::File { records, .. } => {
                let (order, next) = &mut orders[s];
                let record = &records[order[*next % order.len()]];
                *next += 1;
                let mut responses = record.responses.clone();
                if responses.len() > k {
                    let keep = lpo_data::mix::permutation(responses.len(), &mut pick_rng);
                    responses = keep[..k].iter().map(|&i| responses[i].clone()).collect();
                }
                out[slot] = Some(SourcedList {
                    source: sources[s].name.clone(),
                    list: RewardList {
                        prompt: record.prompt.clone(),
                        responses,
                    },
                });
            }
        }
    }
    let options = GenerateOptions {
        max_new_tokens: recipe.eval.max_new_tokens as usize,
        eos: tokenizer.eos(),
        pad: tokenizer.pad(),
        decoding: Decoding::Sample {
            temperature: recipe.reference.sample_temperature,
            top_p: 1.0,
        },
    };
    let max_len = reference.model.config().max_position_embeddings as usize;
    let mut sample_rng = StdRng::seed_from_u64(derive_seed(seed, "list-sampling"));
    let mut annotate_rng = StdRng::seed_from_u64(derive_seed(seed, "annotation"));
    progress.start("sampling reward lists", pending.len() as u64);
    let mut done = 0u64;
    for chunk in pending.chunks(GENERATION_BATCH) {
        let prompts: Vec<Vec<i64>> = chunk
            .iter()
            .flat_map(|(_, _, ex)| {
                let (p, _) = encode_pair(tokenizer, &ex.prompt, None, max_len);
                std::iter::repeat_n(p, k)
            })
            .collect();
        let generated = generate(&reference.model, &prompts, &options, &mut sample_rng);
        for (i, (slot, task, example)) in chunk.iter().enumerate() {
            let responses = generated[i * k..(i + 1) * k]
                .iter()
                .map(|ids| {
                    let text = tokenizer.decode(ids);
                    let reward = task.annotate(example, &text, &mut annotate_rng);
                    Scored { text, reward }
                })
                .collect();
            out[*slot] = Some(SourcedList {
                source: task.name().to_string(),
                list: RewardList {
                    prompt: example.prompt.clone(),
                    responses,
                },
            });
        }
        done += chunk.len() as u64;
        progress.update(done, "");
    }
    progress.finish();
    Ok(out
        .into_iter()
        .map(|l| l.expect("every slot filled"))
        .collect())
}

/// Held-out evaluation prompts: drawn from the mix's built-in tasks (by their
/// weights) with a separate seed, never repeating a training prompt or each other.
pub fn eval_examples(
    recipe: &Recipe,
    sources: &[Source],
    train_prompts: &HashSet<&str>,
) -> Result<Vec<Example>> {
    let tasks: Vec<(Task, f64)> = sources
        .iter()
        .filter_map(|s| match s.kind {
            SourceKind::Task(t) => Some((t, s.weight)),
            SourceKind::File { .. } => None,
        })
        .collect();
    if tasks.is_empty() {
        bail!("evaluation needs an explicit reward: add a built-in task (arith, program, rating) to data.mix");
    }
    let weights: Vec<f64> = tasks.iter().map(|t| t.1).collect();
    let n = recipe.eval.prompts as usize;
    let mut rng = StdRng::seed_from_u64(derive_seed(recipe.train.seed, "eval-prompts"));
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n {
        attempts += 1;
        if attempts > 100 * n + 1000 {
            bail!("could not draw {n} distinct held-out prompts; lower eval.prompts");
        }
        let task = tasks[lpo_data::mix::assign(&weights, 1, &mut rng)[0]].0;
        let example = task.generate(&mut rng);
        if train_prompts.contains(example.prompt.as_str()) || !seen.insert(example.prompt.clone()) {
            continue;
        }
        out.push(example);
    }
    Ok(out)
}
