//! A recipe's data sources, loaded: built-in tasks and imported files, the
//! tokenizer, and turning text into model inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lpo_data::import::{self, Format, OnBad};
use lpo_data::tokenizer::{CharTokenizer, HfOptions, HfTokenizer, Tokenize};
use lpo_data::{Message, RewardList};
use lpo_recipe::{ChatTemplateUse, DataSource, FileFormat, OnBadRecord, Recipe};
use lpo_tasks::Task;
use serde::{Deserialize, Serialize};

/// A list and the source it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcedList {
    /// Source name (task or file path).
    pub source: String,
    /// Held out from training (for ranking metrics); absent = training list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heldout: bool,
    /// The list.
    #[serde(flatten)]
    pub list: RewardList,
    /// How each response's program ended, for a `code` reward (`passed`, or
    /// the cause of failure: `failed`, `timeout`, `forbidden`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
}

/// A file source's records split into (held out, training) indices, in
/// file order: a record is held out when the content hash of its prompt in
/// its context says so at `fraction` ([`lpo_tasks::split::is_heldout`]), so
/// about `fraction` of the records, the same ones for every seed, and
/// copies of one prompt on one side. The reference's SFT and the training
/// lists only ever see the training part.
pub fn file_split(records: &[RewardList], fraction: f64) -> FileSplit {
    let (held, train) = (0..records.len())
        .partition(|&i| lpo_tasks::split::is_heldout(&records[i].key(), fraction));
    FileSplit { held, train }
}

/// A file source's records as (held out, training) indices, computed once
/// when the source is loaded (hashing every record's prompt).
#[derive(Debug, Clone, Default)]
pub struct FileSplit {
    /// Held out: never trained on.
    pub held: Vec<usize>,
    /// Training records.
    pub train: Vec<usize>,
}

/// What one `data.mix` entry provides.
// A mix holds a handful of sources, loaded once: the size of the file
// variant does not matter, and boxing it would add a hop to every use.
#[allow(clippy::large_enum_variant)]
pub enum SourceKind {
    /// A built-in task: prompts are generated, responses sampled and scored.
    Task(Task),
    /// Imported scored lists.
    File {
        /// The file (or dataset directory) as the recipe names it.
        path: PathBuf,
        /// Its records (of the training split, with `split`).
        records: Vec<RewardList>,
        /// The source name (`path[eval_split]`) and records of its
        /// `eval_split`: its held-out lists, all of them, instead of a
        /// `data.eval_fraction` share of `records`.
        heldout: Option<(String, Vec<RewardList>)>,
        /// `records` split into held out and training ([`Source::file_split`]).
        split: FileSplit,
        /// Records skipped, with where and why: malformed (with
        /// `on_bad_record = "skip"`) or unrenderable by the chat template.
        skipped: Vec<(String, String)>,
        /// Records skipped for characters outside the character tokenizer's
        /// alphabet (with `unknown_chars = "skip"`), with where and why.
        unknown: Vec<(String, String)>,
        /// Records whose system message or earlier turns are not part of the
        /// model's input because there is no chat template.
        context_dropped: usize,
        /// SHA-256 of the files' bytes (part of dataset identities).
        sha256: String,
        /// The reward source of a prompt file (its records have no
        /// responses: they are sampled and scored).
        reward: Option<lpo_recipe::RewardKind>,
    },
}

/// One loaded source.
pub struct Source {
    /// Display name: the task name, the file path, or `path[split]`.
    pub name: String,
    /// Relative sampling weight.
    pub weight: f64,
    /// Contents.
    pub kind: SourceKind,
}

/// The identity of a source, as dataset ids hash it.
#[derive(Serialize)]
pub struct SourceIdentity {
    name: String,
    weight: f64,
    content: String,
}

impl Source {
    /// A file source's records split into (held out, training) indices of
    /// its `records`, as loaded: none held out when it has an `eval_split`
    /// (its records are the held-out lists), else [`file_split`]'s share at
    /// the loading recipe's `data.eval_fraction`. Empty for a built-in task.
    pub fn file_split(&self) -> (&[usize], &[usize]) {
        match &self.kind {
            SourceKind::File { split, .. } => (&split.held, &split.train),
            SourceKind::Task(_) => (&[], &[]),
        }
    }

    /// What identifies this source's data.
    pub fn identity(&self) -> SourceIdentity {
        SourceIdentity {
            name: self.name.clone(),
            weight: self.weight,
            content: match &self.kind {
                SourceKind::Task(t) => format!("task:{}", t.name()),
                SourceKind::File {
                    sha256,
                    reward: None,
                    ..
                } => format!("file:{sha256}"),
                SourceKind::File {
                    sha256,
                    reward: Some(kind),
                    ..
                } => format!("file:{sha256}:{}", kind.name()),
            },
        }
    }
}

/// Loads every `data.mix` entry; file problems name the file and line.
pub fn load_sources(recipe: &Recipe) -> Result<Vec<Source>> {
    let tokenizer = if recipe.data.mix.iter().any(|s| s.path.is_some()) {
        Some(tokenizer(recipe)?.0)
    } else {
        None
    };
    let mut sources = Vec::new();
    for (i, entry) in recipe.data.mix.iter().enumerate() {
        let kind = match (&entry.task, &entry.path) {
            (Some(task), None) => SourceKind::Task(
                Task::from_name(task)
                    .with_context(|| format!("data.mix[{i}]: unknown task `{task}`"))?,
            ),
            (None, Some(path)) => {
                let tokenizer = tokenizer.as_deref().expect("loaded for file sources");
                load_file(recipe, entry, Path::new(path), tokenizer)?
            }
            _ => bail!("data.mix[{i}]: set exactly one of `task` and `path`"),
        };
        let name = match (&kind, &entry.split) {
            (SourceKind::Task(t), _) => t.name().to_string(),
            (SourceKind::File { path, .. }, None) => shown(path),
            (SourceKind::File { path, .. }, Some(split)) => format!("{}[{split}]", shown(path)),
        };
        if matches!(kind, SourceKind::File { .. }) && Task::from_name(&name).is_some() {
            // Lists carry their source's name, and a task's name means the task.
            bail!("data.mix[{i}]: a file named `{name}` would be taken for the built-in task; name it with a directory or extension (`./{name}`)");
        }
        let source = Source {
            name,
            weight: entry.weight,
            kind,
        };
        sources.push(source);
    }
    Ok(sources)
}

/// An error when a prompt file's records hold responses, or when the
/// content-hash split leaves a file source without training records or a
/// prompt file without evaluation prompts: checked
/// before anything trains on the sources (SFT, lists), not by `lpo score`,
/// which scores every record.
pub fn ensure_splits(sources: &[Source], fraction: f64) -> Result<()> {
    sources.iter().try_for_each(|s| ensure_split(s, fraction))
}

fn ensure_split(source: &Source, fraction: f64) -> Result<()> {
    let SourceKind::File {
        records,
        heldout,
        reward,
        ..
    } = &source.kind
    else {
        return Ok(());
    };
    let scored = reward.and_then(|_| records.iter().find(|r| !r.responses.is_empty()));
    if let Some(record) = scored {
        bail!(
            "{}: a prompt record holds responses ({:?}…); score them with `lpo score` and train on its output (format \"native\")",
            source.name,
            record.prompt.chars().take(40).collect::<String>()
        );
    }
    let (held, train) = source.file_split();
    if train.is_empty() {
        bail!(
            "{}: all {} records are held out at data.eval_fraction = {fraction} (records are held out by a hash of their prompt, docs/data.md); lower data.eval_fraction",
            source.name,
            records.len()
        );
    }
    if reward.is_some() && heldout.is_none() && held.is_empty() {
        bail!(
            "{}: none of its {} records is held out at data.eval_fraction = {fraction}, so the prompt file has no evaluation prompts (records are held out by a hash of their prompt, docs/data.md); raise data.eval_fraction or name an eval_split",
            source.name,
            records.len()
        );
    }
    Ok(())
}

/// Imports one file source (or the files of a split), then checks each
/// record against the tokenizer: characters outside the character
/// tokenizer's alphabet (`data.unknown_chars`) and the chat template
/// (`data.on_bad_record`), each an error naming file:line or a counted skip.
fn load_file(
    recipe: &Recipe,
    entry: &DataSource,
    path: &Path,
    tokenizer: &dyn Tokenize,
) -> Result<SourceKind> {
    let format = match entry.format.unwrap_or(FileFormat::Native) {
        FileFormat::Native => Format::Native,
        FileFormat::Ultrafeedback => Format::UltraFeedback,
        FileFormat::UltrafeedbackBinarized => Format::UltraFeedbackBinarized,
        FileFormat::Trl => Format::Trl,
        FileFormat::Prompts => Format::Prompts,
        FileFormat::Gsm8k => Format::Gsm8k,
        FileFormat::Humaneval => Format::HumanEval,
    };
    let files = |split: &Option<String>| match split {
        None => Ok(vec![path.to_path_buf()]),
        Some(split) => import::split_files(path, split).map_err(anyhow::Error::msg),
    };
    let mut checked = Checked::default();
    let records = checked.import(recipe, entry, &files(&entry.split)?, format, tokenizer)?;
    let heldout = match &entry.eval_split {
        None => None,
        Some(split) => {
            let held = checked.import(
                recipe,
                entry,
                &files(&Some(split.clone()))?,
                format,
                tokenizer,
            )?;
            let name = format!("{}[{split}]", shown(path));
            ensure_some(&held, &name, &checked)?;
            Some((name, held))
        }
    };
    ensure_some(&records, &path.display().to_string(), &checked)?;
    let split = match heldout {
        Some(_) => FileSplit {
            held: Vec::new(),
            train: (0..records.len()).collect(),
        },
        None => file_split(&records, recipe.data.eval_fraction),
    };
    Ok(SourceKind::File {
        split,
        sha256: match checked.hashed.as_slice() {
            [one] => one.clone(),
            many => lpo_results::sha256_hex(&[many.join(",").as_bytes()], 32),
        },
        path: path.to_path_buf(),
        records,
        heldout,
        skipped: checked.skipped,
        unknown: checked.unknown,
        context_dropped: checked.context_dropped,
        reward: entry.reward,
    })
}

/// A file source's path as tables show it: a Hugging Face cache snapshot as
/// `org/name@commit` (its Hub name), any other path as it is.
fn shown(path: &Path) -> String {
    lpo_hf::hub::display_name(path).unwrap_or_else(|| path.display().to_string())
}

/// An error when a source (or its evaluation split) kept no record.
fn ensure_some(records: &[RewardList], what: &str, checked: &Checked) -> Result<()> {
    if records.is_empty() {
        bail!(
            "{what}: no usable records ({} skipped)",
            checked.skipped.len() + checked.unknown.len()
        );
    }
    Ok(())
}

/// What checking a source's records found, over all its files.
#[derive(Default)]
struct Checked {
    skipped: Vec<(String, String)>,
    unknown: Vec<(String, String)>,
    context_dropped: usize,
    /// SHA-256 of each file read.
    hashed: Vec<String>,
}

impl Checked {
    /// The records of `files` that pass the checks; the rest are errors or
    /// counted skips.
    fn import(
        &mut self,
        recipe: &Recipe,
        entry: &DataSource,
        files: &[PathBuf],
        format: Format,
        tokenizer: &dyn Tokenize,
    ) -> Result<Vec<RewardList>> {
        let on_bad = policy(recipe.data.on_bad_record);
        let check_chars = recipe.data.tokenizer.is_none();
        let mut records = Vec::new();
        for file in files {
            let imported = import::read_records(file, format, on_bad)?;
            self.skipped.extend(
                imported
                    .skipped
                    .iter()
                    .map(|(n, why)| (imported.locate(file, *n), why.clone())),
            );
            for (i, record) in imported.records.iter().enumerate() {
                let at = || imported.location(file, i);
                if check_chars {
                    if let Some(why) = unknown_char(record) {
                        match recipe.data.unknown_chars {
                            OnBadRecord::Error => bail!(
                                "{}: {why}; set data.tokenizer to a tokenizer.json, or data.unknown_chars = \"skip\"",
                                at()
                            ),
                            OnBadRecord::Skip => {
                                self.unknown.push((at(), why));
                                continue;
                            }
                        }
                    }
                }
                let problem = reward_field_missing(entry.reward, record)
                    .map(str::to_string)
                    .or_else(|| {
                        tokenizer
                            .encode_prompt(&record.context, &record.prompt)
                            .err()
                    });
                if let Some(why) = problem {
                    match on_bad {
                        OnBad::Error => bail!("{}: {why}", at()),
                        OnBad::Skip => {
                            self.skipped.push((at(), why));
                            continue;
                        }
                    }
                }
                self.context_dropped +=
                    usize::from(!record.context.is_empty() && !tokenizer.has_chat_template());
                records.push(record.clone());
            }
            self.hashed.push(file_sha256(file)?);
        }
        Ok(records)
    }
}

/// What a prompt record lacks for its reward: an `answer` the math reward
/// can read (a number or text after normalisation), or non-empty `tests`.
fn reward_field_missing(
    reward: Option<lpo_recipe::RewardKind>,
    record: &RewardList,
) -> Option<&'static str> {
    use lpo_recipe::RewardKind;
    use lpo_reward::math;
    match reward {
        Some(RewardKind::Math) => match &record.answer {
            None => Some("the math reward needs the record's reference `answer`"),
            Some(a) if math::reference_answer(a).and_then(|a| math::canonical(&a)).is_none() => {
                Some("the record's `answer` holds no answer the math reward can read (empty, unbalanced braces, or a division by zero)")
            }
            Some(_) => None,
        },
        Some(RewardKind::Code) => match &record.tests {
            None => Some("the code reward needs the record's `tests`"),
            Some(t) if t.test.trim().is_empty() => {
                Some("the record's `tests.test` is empty: every response would pass")
            }
            Some(_) => None,
        },
        _ => None,
    }
}

fn policy(p: OnBadRecord) -> OnBad {
    match p {
        OnBadRecord::Error => OnBad::Error,
        OnBadRecord::Skip => OnBad::Skip,
    }
}

/// Why `record` cannot go through the character tokenizer, if it cannot.
fn unknown_char(record: &RewardList) -> Option<String> {
    let texts = std::iter::once(("prompt", record.prompt.as_str()))
        .chain(
            record
                .context
                .iter()
                .map(|m| ("context", m.content.as_str())),
        )
        .chain(
            record
                .responses
                .iter()
                .map(|r| ("response", r.text.as_str())),
        );
    for (what, text) in texts {
        if let Some(c) = CharTokenizer::unknown_char(text) {
            return Some(format!(
                "{what} has the character {c:?} (U+{:04X}) outside the character tokenizer's alphabet",
                u32::from(c)
            ));
        }
    }
    None
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(lpo_results::sha256_hex(&[&bytes], 32))
}

/// What identifies how text becomes tokens, for cache keys.
#[derive(Serialize)]
struct EncodingIdentity<'a> {
    /// SHA-256 over the tokenizer's files (tokenizer.json, its config, the
    /// chat templates) as saved beside checkpoints.
    files: String,
    template_name: Option<&'a str>,
    bos: i64,
    eos: i64,
    pad: i64,
    chat_template: bool,
    max_prompt_tokens: Option<u32>,
    max_response_tokens: Option<u32>,
}

/// The recipe's tokenizer, checked against the model's vocabulary, with an
/// identity for cache keys: `char` for the character tokenizer without
/// length limits, else a hash of the tokenizer files, the special tokens, the
/// chat-template choice and `data.max_prompt_tokens`/`max_response_tokens`.
/// The planner has already made `data.tokenizer` the checkpoint's when a
/// recipe with `reference.checkpoint` leaves it out.
pub fn tokenizer(recipe: &Recipe) -> Result<(Arc<dyn Tokenize>, String)> {
    let d = &recipe.data;
    let (tokenizer, hf): (Arc<dyn Tokenize>, bool) = match &d.tokenizer {
        Some(path) => {
            let options = HfOptions {
                bos: d.bos_token.clone(),
                eos: d.eos_token.clone(),
                pad: d.pad_token.clone(),
                chat_template: d.chat_template == ChatTemplateUse::Auto,
                template_name: d.chat_template_name.clone(),
            };
            let t =
                HfTokenizer::from_file(Path::new(path), &options).map_err(anyhow::Error::msg)?;
            (Arc::new(t), true)
        }
        None => (Arc::new(CharTokenizer), false),
    };
    let vocab = recipe.model.dims().vocab as usize;
    if tokenizer.vocab_size() > vocab {
        bail!(
            "the tokenizer has {} tokens but model.vocab is {vocab}; raise model.vocab",
            tokenizer.vocab_size()
        );
    }
    if !hf && d.max_prompt_tokens.is_none() && d.max_response_tokens.is_none() {
        return Ok((tokenizer, "char".into()));
    }
    let files = if hf {
        let saved = tokenizer.hf_files();
        let parts: Vec<&[u8]> = saved
            .iter()
            .flat_map(|(name, bytes)| [name.as_bytes(), b"\0", bytes.as_slice(), b"\0"])
            .collect();
        lpo_results::sha256_hex(&parts, 32)
    } else {
        "char".into()
    };
    let id = lpo_results::content_id(
        "encoding",
        &EncodingIdentity {
            files,
            template_name: d.chat_template_name.as_deref(),
            bos: tokenizer.bos(),
            eos: tokenizer.eos(),
            pad: tokenizer.pad(),
            chat_template: tokenizer.has_chat_template(),
            max_prompt_tokens: d.max_prompt_tokens,
            max_response_tokens: d.max_response_tokens,
        },
    );
    Ok((tokenizer, id))
}

/// How long prompts and responses may be, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The model's longest sequence (prompt + response).
    pub max_len: usize,
    /// `data.max_prompt_tokens`.
    pub max_prompt: Option<usize>,
    /// `data.max_response_tokens`.
    pub max_response: Option<usize>,
    /// `eval.max_new_tokens`: the room a prompt for generation leaves.
    pub max_new: usize,
}

impl Window {
    /// The recipe's limits for a model of `max_len` positions.
    pub fn new(recipe: &Recipe, max_len: usize) -> Window {
        Window {
            max_len,
            max_prompt: recipe.data.max_prompt_tokens.map(|n| n as usize),
            max_response: recipe.data.max_response_tokens.map(|n| n as usize),
            max_new: recipe.eval.max_new_tokens as usize,
        }
    }
}

/// A prompt and a response as token ids, and whether either was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Prompt ids (`[bos] + text`, or the rendered chat template).
    pub prompt: Vec<i64>,
    /// `text + [eos]` (empty without a response).
    pub response: Vec<i64>,
    /// Whether the prompt lost its beginning.
    pub prompt_cut: bool,
    /// Whether the response lost its end.
    pub response_cut: bool,
}

/// Token ids of a prompt (after the conversation `context`) and a response
/// (`text + [eos]`), cut to `window`: the prompt keeps its last
/// `max_prompt` tokens, the response its first `max_response`; then, if
/// the two exceed `max_len`, the prompt keeps its end (at most half the
/// window when the response needs the room) and the response its beginning.
/// Prompt + response never exceed `max_len`.
pub fn encode_pair(
    tokenizer: &dyn Tokenize,
    context: &[Message],
    prompt: &str,
    response: Option<&str>,
    window: &Window,
) -> Result<Encoded> {
    let mut p = tokenizer
        .encode_prompt(context, prompt)
        .map_err(anyhow::Error::msg)?;
    let mut r = match response {
        Some(text) => {
            let mut r = tokenizer.encode(text);
            r.push(tokenizer.eos());
            r
        }
        None => Vec::new(),
    };
    let (p_len, r_len) = (p.len(), r.len());
    if let Some(max) = window.max_prompt {
        p.drain(..p.len().saturating_sub(max.max(1)));
    }
    if let Some(max) = window.max_response {
        r.truncate(max);
    }
    // A response needs at least one prompt position before it.
    let max_len = window.max_len.max(2);
    if p.len() + r.len() > max_len {
        let keep_prompt = p
            .len()
            .min((max_len / 2).max(max_len.saturating_sub(r.len())))
            .max(1);
        p.drain(..p.len() - keep_prompt);
        r.truncate(max_len - p.len());
    }
    Ok(Encoded {
        prompt_cut: p.len() < p_len,
        response_cut: r.len() < r_len,
        prompt: p,
        response: r,
    })
}

/// The ids of a prompt alone (for generation), cut to `window` so that
/// `eval.max_new_tokens` new tokens fit after it: a longer prompt keeps its
/// last `max_len - max_new_tokens` tokens (at least two, the smallest
/// window [`encode_pair`] keeps).
pub fn encode_prompt(
    tokenizer: &dyn Tokenize,
    context: &[Message],
    prompt: &str,
    window: &Window,
) -> Result<Vec<i64>> {
    let room = Window {
        max_len: window.max_len.saturating_sub(window.max_new).max(1),
        ..*window
    };
    Ok(encode_pair(tokenizer, context, prompt, None, &room)?.prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max_len: usize) -> Window {
        Window {
            max_len,
            max_prompt: None,
            max_response: None,
            max_new: 8,
        }
    }

    fn pair(prompt: &str, response: &str, w: &Window) -> Encoded {
        encode_pair(&CharTokenizer, &[], prompt, Some(response), w).unwrap()
    }

    #[test]
    fn prompts_for_generation_leave_room_for_the_new_tokens() {
        let long = "1".repeat(100);
        let p = encode_prompt(&CharTokenizer, &[], &long, &window(40)).unwrap();
        // 40 positions, 8 kept for generation: the prompt's last 32 tokens.
        assert_eq!(p.len(), 32);
        let short = encode_prompt(&CharTokenizer, &[], "12+3=", &window(40)).unwrap();
        assert_eq!(short.len(), 6);
        // A window smaller than the room still keeps the prompt's end (two
        // tokens: encode_pair's smallest window).
        let tiny = encode_prompt(&CharTokenizer, &[], &long, &window(4)).unwrap();
        assert_eq!(tiny.len(), 2);
    }

    #[test]
    fn pairs_fit_the_window() {
        let t = CharTokenizer;
        let e = pair("12+3=", "15", &window(64));
        assert_eq!(e.prompt.len(), 6);
        assert_eq!(e.response, [t.encode("15")[0], t.encode("15")[1], t.eos()]);
        assert!(!e.prompt_cut && !e.response_cut);
        let long = "1".repeat(100);
        let e = pair(&long, &long, &window(40));
        assert_eq!((e.prompt.len(), e.response.len()), (20, 20));
        assert!(e.prompt_cut && e.response_cut);
        let e = pair(&long, "7", &window(40));
        assert_eq!((e.prompt.len(), e.response.len()), (38, 2));
        assert!(e.prompt_cut && !e.response_cut);
    }

    #[test]
    fn limits_keep_the_end_of_the_prompt_and_the_start_of_the_response() {
        let t = CharTokenizer;
        let w = Window {
            max_len: 64,
            max_prompt: Some(3),
            max_response: Some(2),
            max_new: 8,
        };
        let e = pair("12+34=", "4567", &w);
        assert_eq!(e.prompt, t.encode("34="));
        assert_eq!(e.response, t.encode("45")); // cut: no end token
        assert!(e.prompt_cut && e.response_cut);
        let e = pair("1=", "4", &w);
        assert_eq!((e.prompt.len(), e.response.len()), (3, 2));
        assert!(!e.prompt_cut && !e.response_cut);
        // Whatever the lengths, prompt + response fit max_len and the prompt is not empty.
        for max_len in [1, 2, 3, 7] {
            for (p, r) in [("", ""), ("123", ""), ("", "123456789"), ("12345", "12345")] {
                let e = pair(p, r, &window(max_len));
                assert!(
                    e.prompt.len() + e.response.len() <= max_len.max(2),
                    "{max_len} {p} {r}"
                );
                assert!(!e.prompt.is_empty());
            }
        }
    }

    fn fixture(name: &str) -> String {
        format!(
            "{}/../../tests/fixtures/chat/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn file_recipe(path: &str, format: FileFormat, tokenizer: Option<String>) -> Recipe {
        let mut recipe = Recipe::default();
        recipe.model.vocab = Some(64);
        recipe.data.tokenizer = tokenizer;
        recipe.data.mix = vec![DataSource {
            task: None,
            path: Some(path.into()),
            format: Some(format),
            weight: 1.0,
            split: None,
            eval_split: None,
            reward: None,
        }];
        recipe
    }

    /// The acceptance test of issue 13: a binarized multi-turn record keeps
    /// its system message and earlier turns through Zephyr's chat template,
    /// token for token as transformers renders and tokenizes it
    /// (tests/fixtures/chat/expected.json, from scripts/chat_template_reference.py).
    #[test]
    fn multi_turn_records_go_through_the_chat_template_as_transformers_renders_them() {
        let recipe = file_recipe(
            &fixture("multiturn.jsonl"),
            FileFormat::UltrafeedbackBinarized,
            Some(fixture("tokenizer.json")),
        );
        let sources = load_sources(&recipe).unwrap();
        let (tok, _) = tokenizer(&recipe).unwrap();
        assert!(tok.has_chat_template());
        assert_eq!((tok.bos(), tok.eos(), tok.pad()), (1, 2, 2)); // from tokenizer_config.json
        let SourceKind::File {
            records,
            context_dropped,
            ..
        } = &sources[0].kind
        else {
            panic!("a file source")
        };
        assert_eq!(*context_dropped, 0);
        assert_eq!(records[0].context.len(), 3); // system, user, assistant
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap())
                .unwrap();
        let ids = |v: &serde_json::Value| -> Vec<i64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect()
        };
        let window = Window::new(&recipe, 512);
        for (record, want) in records.iter().zip(expected.as_array().unwrap()) {
            let e = encode_pair(
                tok.as_ref(),
                &record.context,
                &record.prompt,
                Some(&record.responses[0].text),
                &window,
            )
            .unwrap();
            assert_eq!(e.prompt, ids(&want["prompt_ids"]));
            assert_eq!(e.response, ids(&want["chosen_ids"]));
        }
        // Without the template the earlier turns are not part of the input, and counted.
        let mut plain = recipe.clone();
        plain.data.chat_template = ChatTemplateUse::None;
        let SourceKind::File {
            context_dropped, ..
        } = &load_sources(&plain).unwrap()[0].kind
        else {
            panic!("a file source")
        };
        assert_eq!(*context_dropped, 1);
        // A recipe's eos token wins; one the tokenizer lacks is an error.
        let mut other = recipe.clone();
        other.data.eos_token = Some("<|assistant|>".into());
        assert_eq!(tokenizer(&other).unwrap().0.eos(), 6);
        other.data.eos_token = Some("<eot>".into());
        let e = tokenizer(&other).err().unwrap().to_string();
        assert!(
            e.starts_with("data.eos_token \"<eot>\" is not a token of"),
            "{e}"
        );
    }

    #[test]
    fn unknown_characters_are_errors_with_their_line_or_counted_skips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"prompt": "1+1=", "responses": [{"text": "2", "reward": 1}, {"text": "3", "reward": 0}]}"#,
                "\n",
                r#"{"prompt": "1+1=", "responses": [{"text": "two", "reward": 1}, {"text": "Two", "reward": 0}]}"#,
                "\n"
            ),
        )
        .unwrap();
        let path = path.display().to_string();
        let mut recipe = file_recipe(&path, FileFormat::Native, None);
        // One record left: hold none out (its hash would hold it out at 0.1).
        recipe.data.eval_fraction = 0.0;
        let e = load_sources(&recipe).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!(
                "{path}:2: response has the character 'T' (U+0054) outside"
            )),
            "{e}"
        );
        recipe.data.unknown_chars = OnBadRecord::Skip;
        let sources = load_sources(&recipe).unwrap();
        let SourceKind::File {
            records, unknown, ..
        } = &sources[0].kind
        else {
            panic!("a file source")
        };
        assert_eq!(records.len(), 1);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].0, format!("{path}:2"));
    }

    #[test]
    fn a_split_of_a_dataset_directory_is_one_source_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let pair =
            |p: &str| format!("{{\"prompt\": \"{p}\", \"chosen\": \"1\", \"rejected\": \"2\"}}\n");
        std::fs::write(data.join("train-00000-of-00002.jsonl"), pair("1+0=")).unwrap();
        std::fs::write(
            data.join("train-00001-of-00002.jsonl"),
            pair("1+1=") + &pair("2+0="),
        )
        .unwrap();
        std::fs::write(data.join("test-00000-of-00001.jsonl"), pair("3+3=")).unwrap();
        let root = dir.path().display().to_string();
        let mut recipe = file_recipe(&root, FileFormat::Trl, None);
        recipe.data.mix[0].split = Some("train".into());
        let sources = load_sources(&recipe).unwrap();
        assert_eq!(sources[0].name, format!("{root}[train]"));
        let SourceKind::File { records, .. } = &sources[0].kind else {
            panic!("a file source")
        };
        let prompts: Vec<&str> = records.iter().map(|r| r.prompt.as_str()).collect();
        assert_eq!(prompts, ["1+0=", "1+1=", "2+0="]);
        // Score-less pairs: chosen 1, rejected 0.
        assert_eq!(
            (
                records[0].responses[0].reward,
                records[0].responses[1].reward
            ),
            (1.0, 0.0)
        );
        let other = {
            let mut r = recipe.clone();
            r.data.mix[0].split = Some("test".into());
            load_sources(&r).unwrap()
        };
        assert_ne!(other[0].identity().content, sources[0].identity().content);
        recipe.data.mix[0].split = Some("validation".into());
        let e = load_sources(&recipe).err().unwrap().to_string();
        assert!(
            e.contains("no .jsonl or .parquet file of split `validation`"),
            "{e}"
        );
    }
}
