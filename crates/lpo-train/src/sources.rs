//! A recipe's data sources, loaded: built-in tasks and imported files, the
//! tokenizer, and turning text into model inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use lpo_data::import::{self, Format, OnBad};
use lpo_data::tokenizer::{CharTokenizer, HfTokenizer, Tokenize};
use lpo_data::RewardList;
use lpo_recipe::{FileFormat, OnBadRecord, Recipe};
use lpo_tasks::Task;
use serde::Serialize;

/// What one `data.mix` entry provides.
pub enum SourceKind {
    /// A built-in task: prompts are generated, responses sampled and scored.
    Task(Task),
    /// Imported scored lists.
    File {
        /// The file as the recipe names it.
        path: PathBuf,
        /// Its records.
        records: Vec<RewardList>,
        /// Bad lines skipped (with `on_bad_record = "skip"`).
        skipped: Vec<(usize, String)>,
        /// SHA-256 of the file's bytes (part of dataset identities).
        sha256: String,
    },
}

/// One loaded source.
pub struct Source {
    /// Display name: the task name or the file path.
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
    /// What identifies this source's data.
    pub fn identity(&self) -> SourceIdentity {
        SourceIdentity {
            name: self.name.clone(),
            weight: self.weight,
            content: match &self.kind {
                SourceKind::Task(t) => format!("task:{}", t.name()),
                SourceKind::File { sha256, .. } => format!("file:{sha256}"),
            },
        }
    }
}

/// Loads every `data.mix` entry; file problems name the file and line.
pub fn load_sources(recipe: &Recipe) -> Result<Vec<Source>> {
    let on_bad = match recipe.data.on_bad_record {
        OnBadRecord::Error => OnBad::Error,
        OnBadRecord::Skip => OnBad::Skip,
    };
    let mut sources = Vec::new();
    for (i, entry) in recipe.data.mix.iter().enumerate() {
        let kind = match (&entry.task, &entry.path) {
            (Some(task), None) => SourceKind::Task(
                Task::from_name(task)
                    .with_context(|| format!("data.mix[{i}]: unknown task `{task}`"))?,
            ),
            (None, Some(path)) => {
                let format = match entry.format.unwrap_or(FileFormat::Native) {
                    FileFormat::Native => Format::Native,
                    FileFormat::Ultrafeedback => Format::UltraFeedback,
                    FileFormat::UltrafeedbackBinarized => Format::UltraFeedbackBinarized,
                };
                let path = PathBuf::from(path);
                let imported = import::read_jsonl(&path, format, on_bad)?;
                SourceKind::File {
                    sha256: file_sha256(&path)?,
                    path,
                    records: imported.records,
                    skipped: imported.skipped,
                }
            }
            _ => bail!("data.mix[{i}]: set exactly one of `task` and `path`"),
        };
        let name = match &kind {
            SourceKind::Task(t) => t.name().to_string(),
            SourceKind::File { path, .. } => path.display().to_string(),
        };
        sources.push(Source {
            name,
            weight: entry.weight,
            kind,
        });
    }
    Ok(sources)
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(lpo_results::sha256_hex(&[&bytes], 32))
}

/// The recipe's tokenizer, checked against the model's vocabulary, with an
/// identity for cache keys (`char`, or the SHA-256 of the tokenizer file).
pub fn tokenizer(recipe: &Recipe) -> Result<(Arc<dyn Tokenize>, String)> {
    let (tokenizer, id): (Arc<dyn Tokenize>, String) = match &recipe.data.tokenizer {
        Some(path) => (
            Arc::new(HfTokenizer::from_file(Path::new(path)).map_err(anyhow::Error::msg)?),
            format!("hf:{}", file_sha256(Path::new(path))?),
        ),
        None => (Arc::new(CharTokenizer), "char".into()),
    };
    let vocab = recipe.model.dims().vocab as usize;
    if tokenizer.vocab_size() > vocab {
        bail!(
            "the tokenizer has {} tokens but model.vocab is {vocab}; raise model.vocab",
            tokenizer.vocab_size()
        );
    }
    Ok((tokenizer, id))
}

/// Token ids of a prompt (`[bos] + text`) and a response (`text + [eos]`),
/// cut to fit `max_len`: the prompt keeps its last tokens (at most half the
/// window when the response needs the room), the response its first.
pub fn encode_pair(
    tokenizer: &dyn Tokenize,
    prompt: &str,
    response: Option<&str>,
    max_len: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut p = vec![tokenizer.bos()];
    p.extend(tokenizer.encode(prompt));
    let mut r = match response {
        Some(text) => {
            let mut r = tokenizer.encode(text);
            r.push(tokenizer.eos());
            r
        }
        None => Vec::new(),
    };
    if p.len() + r.len() > max_len {
        let keep_prompt = p
            .len()
            .min((max_len / 2).max(max_len.saturating_sub(r.len())));
        p.drain(..p.len() - keep_prompt);
        r.truncate(max_len - p.len());
    }
    (p, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_fit_the_window() {
        let t = CharTokenizer;
        let (p, r) = encode_pair(&t, "12+3=", Some("15"), 64);
        assert_eq!(p.len(), 6);
        assert_eq!(r, [t.encode("15")[0], t.encode("15")[1], t.eos()]);
        let long = "1".repeat(100);
        let (p, r) = encode_pair(&t, &long, Some(&long), 40);
        assert_eq!((p.len(), r.len()), (20, 20));
        let (p, r) = encode_pair(&t, &long, Some("7"), 40);
        assert_eq!((p.len(), r.len()), (38, 2));
    }
}
