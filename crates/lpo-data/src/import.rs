//! Importers: JSONL (one record per line) or parquet (one record per row),
//! errors located by file and line (or row).
//!
//! Formats (`data.mix[].format`):
//!
//! - `native`: `{"prompt": "…", "responses": [{"text": "…", "reward": 7.5}, …]}`.
//! - `ultrafeedback` (raw `openbmb/UltraFeedback`): `{"instruction": "…",
//!   "completions": [{"response": "…", "overall_score": 7.5,
//!   "fine-grained_score": 4.25, "annotations": {aspect: {"Rating": "4"}}}]}`.
//!   The score is `overall_score`, else `fine-grained_score`, else the mean of
//!   the annotations' numeric ratings.
//! - `ultrafeedback-binarized` (`HuggingFaceH4/ultrafeedback_binarized`):
//!   `{"prompt": "…", "chosen": …, "rejected": …, "score_chosen": 8.0,
//!   "score_rejected": 5.0}` where chosen/rejected are strings or chat message
//!   lists: the last message is the assistant's response, the messages before
//!   it (system message, earlier turns) the conversation it continues.
//! - `trl`: TRL's preference formats. Standard `{"prompt": "…", "chosen":
//!   "…", "rejected": "…"}`; conversational, where prompt is a message list
//!   and chosen/rejected are one-message lists `[{"role": "assistant", …}]`;
//!   and the implicit-prompt variant without `prompt`, whose chosen and
//!   rejected carry the whole conversation (the prompt is their common
//!   beginning, as TRL's `extract_prompt` finds it). Scores are optional
//!   (`score_chosen`/`score_rejected`); without them chosen gets reward 1 and
//!   rejected 0.
//!
//!
//! Prompt files, whose responses lpo samples and a reward source scores
//! (`data.mix[].reward`), hold no responses:
//!
//! - `prompts`: `{"prompt": "…", "context": [messages]?, "answer": "42"?,
//!   "tests": {"test": "…", "entry_point": "f"?}?, "responses": ["…"]?}`;
//!   unscored `responses` (strings or `{"text": …}`) are for `lpo score`,
//!   which scores them instead of sampling (their reward is NaN until then).
//! - `gsm8k` (`openai/gsm8k`): `{"question": "…", "answer": "… #### 42"}`;
//!   the answer is the whole solution, whose `####` line the math reward reads.
//! - `humaneval` (`openai_humaneval`): `{"prompt": "def f(…", "test": "def
//!   check(candidate): …", "entry_point": "f"}` (other fields ignored).
//!
//! Every record of a response format needs at least two responses with
//! finite scores.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{CodeTests, Message, RewardList, Scored};

/// A JSONL file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The native reward-list format.
    Native,
    /// UltraFeedback raw.
    UltraFeedback,
    /// UltraFeedback binarized.
    UltraFeedbackBinarized,
    /// TRL's standard and conversational preference formats.
    Trl,
    /// Prompts with optional reference answers and tests.
    Prompts,
    /// GSM8K's question/answer records.
    Gsm8k,
    /// HumanEval's prompt/test/entry_point records.
    HumanEval,
}

impl Format {
    /// Whether records are prompts without responses (scored by a reward source).
    pub fn is_prompts(self) -> bool {
        matches!(self, Format::Prompts | Format::Gsm8k | Format::HumanEval)
    }
}

/// What to do with a malformed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBad {
    /// Stop with [`ImportError::BadRecord`].
    Error,
    /// Skip the line and count it.
    Skip,
}

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a valid record.
    #[error("{path}:{line}: {message}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A parquet row is not a valid record.
    #[error("{path}: row {row}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based row number (over the whole file).
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A parquet file could not be decoded.
    #[error("{path}: not a readable parquet file: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the parquet reader said.
        message: String,
    },
    /// A parquet column chunk is compressed with a codec lpo does not read
    /// (found in the file's metadata, before any row is read).
    #[error(
        "{path}: column `{column}` is {codec}-compressed; lpo reads uncompressed and snappy-compressed parquet files only (rewrite it with snappy, e.g. pyarrow's `write_table(..., compression=\"snappy\")`)"
    )]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
        /// The codec, as the parquet format names it (`ZSTD`, `GZIP`, …).
        codec: &'static str,
        /// The column's path (`chosen.list.element.content`).
        column: String,
    },
    /// A parquet file's metadata claims a row count lpo refuses: beyond
    /// [`MAX_PARQUET_ROWS`], negative, or inconsistent with the file (checked
    /// before any row is read).
    #[error("{path}: {message}")]
    RowCount {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No valid record at all.
    #[error("{path}: no valid records ({skipped} bad records skipped)")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Lines skipped.
        skipped: usize,
    },
}

/// The records of one file and what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// Valid records in file order.
    pub records: Vec<RewardList>,
    /// The 1-based line (JSONL) or row (parquet) of each record.
    pub lines: Vec<usize>,
    /// `"line"` or `"row"`: what `lines` count.
    pub unit: &'static str,
    /// 1-based numbers of skipped lines (rows), with the reason.
    pub skipped: Vec<(usize, String)>,
}

impl Imported {
    /// Where record `i` is: `path:line` or `path: row N`.
    pub fn location(&self, path: &Path, i: usize) -> String {
        self.locate(path, self.lines[i])
    }

    /// Where line (row) `n` of `path` is: `path:n` or `path: row n`.
    pub fn locate(&self, path: &Path, n: usize) -> String {
        match self.unit {
            "row" => format!("{}: row {n}", path.display()),
            _ => format!("{}:{n}", path.display()),
        }
    }
}

/// Whether `path` is read as parquet (its name ends in `.parquet`).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Reads a JSONL or (by its `.parquet` extension) parquet file.
pub fn read_records(path: &Path, format: Format, on_bad: OnBad) -> Result<Imported, ImportError> {
    if is_parquet(path) {
        read_parquet(path, format, on_bad)
    } else {
        read_jsonl(path, format, on_bad)
    }
}

/// The most rows one parquet file may have (its metadata's total, checked
/// before any row is read). Preference sets on the Hub have at most a few
/// million rows, split into files of far fewer; a claim beyond this is a
/// corrupt or hostile file (a few bytes of run-length-encoded pages can
/// stand for millions of rows), and refusing it bounds what one file can
/// make the importer hold.
pub const MAX_PARQUET_ROWS: i64 = 10_000_000;

/// Reads a parquet file: each row, as JSON (columns are fields; lists and
/// structs nest), is a record of `format`. Uncompressed and snappy-compressed
/// files are supported (the Hub's default); other codecs are an error.
///
/// The file's metadata is checked before any row is read
/// ([`check_parquet_metadata`]): every column chunk's codec, and the row
/// counts. Rows are then read one at a time, each checked before the next is
/// read, so a bad row stops the import (or is skipped) without the rest of
/// the file being decoded.
pub fn read_parquet(path: &Path, format: Format, on_bad: OnBad) -> Result<Imported, ImportError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    regular_file(path)?;
    let bad = |e: parquet::errors::ParquetError| ImportError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = SerializedFileReader::new(File::open(path).map_err(io)?).map_err(bad)?;
    check_parquet_metadata(path, reader.metadata())?;
    let mut imported = Imported {
        records: Vec::new(),
        lines: Vec::new(),
        unit: "row",
        skipped: Vec::new(),
    };
    let mut rows = reader.get_row_iter(None).map_err(bad)?;
    let mut number = 0;
    loop {
        // The record API panics (`unimplemented!`) on a few column types it
        // cannot convert (e.g. INTERVAL); that is an error naming the file.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rows.next().map(|row| row.map(|r| r.to_json_value()))
        }))
        .map_err(|panic| ImportError::Parquet {
            path: path.to_path_buf(),
            message: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "a column type the reader does not convert".into()),
        })?;
        let Some(row) = next else { break };
        number += 1;
        // A reader error ends the file: the iterator does not move past it.
        let value = row.map_err(bad)?;
        match parse_value(&value, format) {
            Ok(record) => {
                imported.records.push(record);
                imported.lines.push(number);
            }
            Err(message) => match on_bad {
                OnBad::Error => {
                    return Err(ImportError::BadRow {
                        path: path.to_path_buf(),
                        row: number,
                        message,
                    })
                }
                OnBad::Skip => imported.skipped.push((number, message)),
            },
        }
    }
    if imported.records.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_path_buf(),
            skipped: imported.skipped.len(),
        });
    }
    Ok(imported)
}

/// Checks a parquet file's metadata before any of its rows is read:
///
/// - every column chunk of every row group is uncompressed or
///   snappy-compressed (the only codecs this build decodes), else
///   [`ImportError::UnsupportedCodec`] naming the codec and the column;
/// - the file claims between 0 and [`MAX_PARQUET_ROWS`] rows, its row
///   groups' counts are non-negative and add up to it, and every column
///   chunk of a row group holds at least as many values as the group claims
///   rows (a row has at least one value, possibly null, in every leaf
///   column), else [`ImportError::RowCount`].
pub fn check_parquet_metadata(
    path: &Path,
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> Result<(), ImportError> {
    use parquet::basic::Compression;
    for group in metadata.row_groups() {
        for column in group.columns() {
            let codec = match column.compression() {
                Compression::UNCOMPRESSED | Compression::SNAPPY => continue,
                Compression::GZIP(_) => "GZIP",
                Compression::LZO => "LZO",
                Compression::BROTLI(_) => "BROTLI",
                Compression::LZ4 => "LZ4",
                Compression::ZSTD(_) => "ZSTD",
                Compression::LZ4_RAW => "LZ4_RAW",
            };
            return Err(ImportError::UnsupportedCodec {
                path: path.to_path_buf(),
                codec,
                column: column.column_path().string(),
            });
        }
    }
    let count = |message: String| ImportError::RowCount {
        path: path.to_path_buf(),
        message,
    };
    let total = metadata.file_metadata().num_rows();
    if !(0..=MAX_PARQUET_ROWS).contains(&total) {
        return Err(count(format!(
            "the metadata claims {total} rows; a parquet file may have 0 to {MAX_PARQUET_ROWS}"
        )));
    }
    let mut sum: i64 = 0;
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let rows = group.num_rows();
        if !(0..=MAX_PARQUET_ROWS).contains(&rows) {
            return Err(count(format!(
                "row group {index} claims {rows} rows; a parquet file may have 0 to {MAX_PARQUET_ROWS}"
            )));
        }
        if rows > 0 && group.columns().is_empty() {
            return Err(count(format!(
                "row group {index} claims {rows} rows but has no columns"
            )));
        }
        if let Some(column) = group.columns().iter().find(|c| c.num_values() < rows) {
            return Err(count(format!(
                "row group {index} claims {rows} rows but its column `{}` holds {} values",
                column.column_path().string(),
                column.num_values()
            )));
        }
        // Both are at most MAX_PARQUET_ROWS here: no overflow.
        sum += rows;
        if sum > total {
            break;
        }
    }
    if sum != total {
        return Err(count(format!(
            "the metadata claims {total} rows but its row groups hold {}{sum}",
            if sum > total { "at least " } else { "" }
        )));
    }
    Ok(())
}

/// The files of split `split` in a dataset directory laid out as the Hugging
/// Face Hub lays them out: every `.jsonl`/`.parquet` file below `dir` whose
/// name starts with `<split>-` or `<split>.` (`data/train_prefs-00000-of-00001.parquet`)
/// or that lies in a directory named `<split>` (`default/train/0000.parquet`),
/// in path order. No matching file is an error that lists the splits there.
pub fn split_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    collect_data_files(dir, &mut files)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    files.sort();
    let split_of = |file: &Path| -> Vec<String> {
        let mut names = Vec::new();
        if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
            let stem = name.split(['-', '.']).next().unwrap_or(name);
            names.push(stem.to_string());
        }
        if let Ok(rel) = file.strip_prefix(dir) {
            for part in rel.parent().into_iter().flat_map(Path::components) {
                names.push(part.as_os_str().to_string_lossy().into_owned());
            }
        }
        names
    };
    let chosen: Vec<PathBuf> = files
        .iter()
        .filter(|f| split_of(f).iter().any(|n| n == split))
        .cloned()
        .collect();
    if chosen.is_empty() {
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|f| {
                f.file_name()?
                    .to_str()?
                    .split(['-', '.'])
                    .next()
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names.dedup();
        return Err(format!(
            "{}: no .jsonl or .parquet file of split `{split}` (file name prefixes there: {})",
            dir.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(chosen)
}

fn collect_data_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_data_files(&path, out)?;
        } else if is_parquet(&path)
            || path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Refuses anything but a regular file before it is opened: opening a FIFO
/// blocks until a writer comes, and a device (`/dev/zero`) never ends.
fn regular_file(path: &Path) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok(())
}

/// Reads a JSONL file. Blank lines are ignored.
pub fn read_jsonl(path: &Path, format: Format, on_bad: OnBad) -> Result<Imported, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    regular_file(path)?;
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut imported = Imported {
        records: Vec::new(),
        lines: Vec::new(),
        unit: "line",
        skipped: Vec::new(),
    };
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            // Invalid UTF-8 is a bad line, not an unreadable file.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                handle_bad(
                    path,
                    number,
                    "not valid UTF-8".into(),
                    on_bad,
                    &mut imported,
                )?;
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, format) {
            Ok(record) => {
                imported.records.push(record);
                imported.lines.push(number);
            }
            Err(message) => handle_bad(path, number, message, on_bad, &mut imported)?,
        }
    }
    if imported.records.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_path_buf(),
            skipped: imported.skipped.len(),
        });
    }
    Ok(imported)
}

fn handle_bad(
    path: &Path,
    line: usize,
    message: String,
    on_bad: OnBad,
    imported: &mut Imported,
) -> Result<(), ImportError> {
    match on_bad {
        OnBad::Error => Err(ImportError::BadRecord {
            path: path.to_path_buf(),
            line,
            message,
        }),
        OnBad::Skip => {
            imported.skipped.push((line, message));
            Ok(())
        }
    }
}

/// Parses one line in `format`.
pub fn parse_line(line: &str, format: Format) -> Result<RewardList, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    parse_value(&value, format)
}

/// Reads one record (a JSON line, or a parquet row as JSON) in `format`.
pub fn parse_value(value: &Value, format: Format) -> Result<RewardList, String> {
    let record = match format {
        Format::Native => native(value)?,
        Format::UltraFeedback => ultrafeedback(value)?,
        Format::UltraFeedbackBinarized => binarized(value)?,
        Format::Trl => trl(value)?,
        Format::Prompts => prompts(value)?,
        Format::Gsm8k => gsm8k(value)?,
        Format::HumanEval => humaneval(value)?,
    };
    if format.is_prompts() {
        return Ok(record);
    }
    if record.responses.len() < 2 {
        return Err(format!(
            "needs at least 2 responses, found {}",
            record.responses.len()
        ));
    }
    // Training computes in f32: a reward finite in f64 but not in f32 would
    // surface later as "loss is NaN at step 0".
    if let Some((i, r)) = record
        .responses
        .iter()
        .enumerate()
        .find(|(_, r)| r.reward.abs() > f64::from(f32::MAX))
    {
        return Err(format!(
            "responses[{i}]: reward {:e} is beyond the f32 range training computes in (|r| <= {:e})",
            r.reward,
            f32::MAX
        ));
    }
    Ok(record)
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value, String> {
    value
        .get(name)
        .ok_or_else(|| format!("missing field `{name}`"))
}

fn text(value: &Value, name: &str) -> Result<String, String> {
    field(value, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`{name}` is not a string"))
}

fn score(value: &Value, name: &str) -> Result<f64, String> {
    let v = field(value, name)?;
    let x = number(v).ok_or_else(|| format!("`{name}` is not a number: {v}"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("`{name}` is not finite"))
    }
}

/// A JSON number, or a string holding one (UltraFeedback ratings are strings).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn native(value: &Value) -> Result<RewardList, String> {
    let prompt = text(value, "prompt")?;
    let responses = field(value, "responses")?
        .as_array()
        .ok_or("`responses` is not an array")?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(Scored {
                text: text(r, "text").map_err(|e| format!("responses[{i}]: {e}"))?,
                reward: score(r, "reward").map_err(|e| format!("responses[{i}]: {e}"))?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(RewardList {
        context: Vec::new(),
        prompt,
        responses,
        ..RewardList::default()
    })
}

fn prompts(value: &Value) -> Result<RewardList, String> {
    let context = match value.get("context") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => messages(v, "context")?,
    };
    let answer = match value.get("answer") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => return Err(format!("`answer` is not a string or a number: {v}")),
    };
    let tests = match value.get("tests") {
        None | Some(Value::Null) => None,
        Some(t) => Some(CodeTests {
            test: text(t, "test").map_err(|e| format!("tests: {e}"))?,
            entry_point: match t.get("entry_point") {
                None | Some(Value::Null) => None,
                Some(_) => Some(text(t, "entry_point").map_err(|e| format!("tests: {e}"))?),
            },
        }),
    };
    // Unscored responses, for `lpo score` to score (training refuses them).
    let responses = match value.get("responses") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Value::String(t) => Ok(t.clone()),
                other => text(other, "text").map_err(|e| format!("responses[{i}]: {e}")),
            })
            .map(|t| {
                t.map(|text| Scored {
                    text,
                    reward: f64::NAN,
                })
            })
            .collect::<Result<_, String>>()?,
        Some(v) => return Err(format!("`responses` is not an array: {v}")),
    };
    Ok(RewardList {
        context,
        prompt: text(value, "prompt")?,
        responses,
        answer,
        tests,
    })
}

fn gsm8k(value: &Value) -> Result<RewardList, String> {
    let answer = text(value, "answer")?;
    if !answer.contains("####") {
        return Err("`answer` has no `#### N` line: GSM8K's solutions end with the final answer after `####`".into());
    }
    Ok(RewardList {
        prompt: text(value, "question")?,
        answer: Some(answer),
        ..RewardList::default()
    })
}

fn humaneval(value: &Value) -> Result<RewardList, String> {
    Ok(RewardList {
        prompt: text(value, "prompt")?,
        tests: Some(CodeTests {
            test: text(value, "test")?,
            entry_point: Some(text(value, "entry_point")?),
        }),
        ..RewardList::default()
    })
}

fn ultrafeedback(value: &Value) -> Result<RewardList, String> {
    let prompt = text(value, "instruction")?;
    let responses = field(value, "completions")?
        .as_array()
        .ok_or("`completions` is not an array")?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let where_ = |e: String| format!("completions[{i}]: {e}");
            let reward = uf_score(c).map_err(where_)?;
            Ok(Scored {
                text: text(c, "response").map_err(where_)?,
                reward,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(RewardList {
        context: Vec::new(),
        prompt,
        responses,
        ..RewardList::default()
    })
}

fn uf_score(c: &Value) -> Result<f64, String> {
    for name in ["overall_score", "fine-grained_score"] {
        if c.get(name).is_some_and(|v| !v.is_null()) {
            return score(c, name);
        }
    }
    let ratings: Vec<f64> = c
        .get("annotations")
        .and_then(Value::as_object)
        .map(|aspects| {
            aspects
                .values()
                .filter_map(|a| a.get("Rating").and_then(number))
                .filter(|x| x.is_finite())
                .collect()
        })
        .unwrap_or_default();
    if ratings.is_empty() {
        return Err("no `overall_score`, `fine-grained_score` or numeric annotation rating".into());
    }
    Ok(ratings.iter().sum::<f64>() / ratings.len() as f64)
}

fn binarized(value: &Value) -> Result<RewardList, String> {
    let prompt = text(value, "prompt")?;
    let chosen = side(value, "chosen")?;
    let rejected = side(value, "rejected")?;
    let scores = (
        score(value, "score_chosen")?,
        score(value, "score_rejected")?,
    );
    match (chosen, rejected) {
        (Side::Text(c), Side::Text(r)) => Ok(pair(Vec::new(), prompt, (c, r), scores)),
        (Side::Chat(c), Side::Chat(r)) => {
            let (c_before, c_text) = last_response(c, "chosen")?;
            let (r_before, r_text) = last_response(r, "rejected")?;
            if c_before != r_before {
                return Err("`chosen` and `rejected` continue different conversations".into());
            }
            // A chat that is only the response answers the `prompt` field.
            let (context, prompt) = if c_before.is_empty() {
                (Vec::new(), prompt)
            } else {
                split_prompt(c_before, "the conversation")?
            };
            Ok(pair(context, prompt, (c_text, r_text), scores))
        }
        _ => Err("`chosen` and `rejected` must both be strings or both message lists".into()),
    }
}

/// TRL's standard, conversational and implicit-prompt preference records.
fn trl(value: &Value) -> Result<RewardList, String> {
    let scores = match (value.get("score_chosen"), value.get("score_rejected")) {
        (None, None) => (1.0, 0.0),
        _ => (
            score(value, "score_chosen")?,
            score(value, "score_rejected")?,
        ),
    };
    let chosen = side(value, "chosen")?;
    let rejected = side(value, "rejected")?;
    let Some(prompt) = value.get("prompt") else {
        return implicit_prompt(chosen, rejected, scores);
    };
    match (prompt, chosen, rejected) {
        (Value::String(p), Side::Text(c), Side::Text(r)) => {
            Ok(pair(Vec::new(), p.clone(), (c, r), scores))
        }
        (Value::Array(_), Side::Chat(c), Side::Chat(r)) => {
            let (context, prompt) = split_prompt(messages(prompt, "prompt")?, "`prompt`")?;
            let c = only_response(c, "chosen")?;
            let r = only_response(r, "rejected")?;
            Ok(pair(context, prompt, (c, r), scores))
        }
        _ => Err(
            "`prompt`, `chosen` and `rejected` must all be strings (standard) or all message lists (conversational)"
                .into(),
        ),
    }
}

/// Chosen and rejected carry the whole conversation: the prompt is their
/// common beginning (TRL's `extract_prompt`, including its rule that a space
/// before the first difference belongs to the responses).
fn implicit_prompt(chosen: Side, rejected: Side, scores: (f64, f64)) -> Result<RewardList, String> {
    match (chosen, rejected) {
        (Side::Text(c), Side::Text(r)) => {
            let c_chars: Vec<char> = c.chars().collect();
            let r_chars: Vec<char> = r.chars().collect();
            let mut n = c_chars
                .iter()
                .zip(&r_chars)
                .take_while(|(a, b)| a == b)
                .count();
            if n > 0 && n < c_chars.len().min(r_chars.len()) && c_chars[n - 1] == ' ' {
                n -= 1;
            }
            if n == 0 {
                return Err("no `prompt`, and `chosen` and `rejected` share no beginning to take as the prompt".into());
            }
            let rest = |chars: &[char]| chars[n..].iter().collect::<String>();
            let prompt = c_chars[..n].iter().collect();
            Ok(pair(
                Vec::new(),
                prompt,
                (rest(&c_chars), rest(&r_chars)),
                scores,
            ))
        }
        (Side::Chat(c), Side::Chat(r)) => {
            let n = c.iter().zip(&r).take_while(|(a, b)| a == b).count();
            if n == 0 {
                return Err("no `prompt`, and `chosen` and `rejected` share no first message to take as the prompt".into());
            }
            let (context, prompt) = split_prompt(c[..n].to_vec(), "the shared conversation")?;
            let c = only_response(c[n..].to_vec(), "chosen")?;
            let r = only_response(r[n..].to_vec(), "rejected")?;
            Ok(pair(context, prompt, (c, r), scores))
        }
        _ => Err("`chosen` and `rejected` must both be strings or both message lists".into()),
    }
}

fn pair(
    context: Vec<Message>,
    prompt: String,
    texts: (String, String),
    scores: (f64, f64),
) -> RewardList {
    RewardList {
        context,
        prompt,
        responses: vec![
            Scored {
                text: texts.0,
                reward: scores.0,
            },
            Scored {
                text: texts.1,
                reward: scores.1,
            },
        ],
        ..RewardList::default()
    }
}

/// One side of a preference pair.
enum Side {
    Text(String),
    Chat(Vec<Message>),
}

fn side(value: &Value, name: &str) -> Result<Side, String> {
    match field(value, name)? {
        Value::String(s) => Ok(Side::Text(s.clone())),
        v @ Value::Array(_) => Ok(Side::Chat(messages(v, name)?)),
        _ => Err(format!("`{name}`: neither a string nor a message list")),
    }
}

/// A list of `{"role": …, "content": …}` messages.
fn messages(v: &Value, name: &str) -> Result<Vec<Message>, String> {
    v.as_array()
        .ok_or_else(|| format!("`{name}` is not a message list"))?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let get = |key: &str| {
                m.get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{name}`[{i}]: no string `{key}`"))
            };
            Ok(Message {
                role: get("role")?,
                content: get("content")?,
            })
        })
        .collect()
}

/// The final assistant message of a conversation and the messages before it.
fn last_response(mut chat: Vec<Message>, name: &str) -> Result<(Vec<Message>, String), String> {
    match chat.pop() {
        Some(m) if m.role == "assistant" => Ok((chat, m.content)),
        _ => Err(format!(
            "`{name}`: the last message is not an assistant message"
        )),
    }
}

/// A response given as a message list of exactly one assistant message.
fn only_response(chat: Vec<Message>, name: &str) -> Result<String, String> {
    match <[Message; 1]>::try_from(chat) {
        Ok([m]) if m.role == "assistant" => Ok(m.content),
        _ => Err(format!(
            "`{name}`: the response must be one assistant message"
        )),
    }
}

/// Splits the conversation before a response into its last user message (the
/// prompt) and the messages before that (system message, earlier turns).
fn split_prompt(mut chat: Vec<Message>, what: &str) -> Result<(Vec<Message>, String), String> {
    match chat.pop() {
        Some(m) if m.role == "user" => Ok((chat, m.content)),
        _ => Err(format!("{what} does not end with a user message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    #[test]
    fn native_records_parse() {
        let f = file(&[
            r#"{"prompt": "2+2=", "responses": [{"text": "4", "reward": 10}, {"text": "5", "reward": 2.5}]}"#,
            "",
            r#"{"prompt": "x", "responses": [{"text": "a", "reward": 1}, {"text": "b", "reward": 1}, {"text": "c", "reward": 0}]}"#,
        ]);
        let got = read_jsonl(f.path(), Format::Native, OnBad::Error).unwrap();
        assert_eq!(got.records.len(), 2);
        assert_eq!(got.records[0].responses[1].reward, 2.5);
        assert_eq!(got.records[1].responses.len(), 3);
        assert!(got.skipped.is_empty());
    }

    #[test]
    fn ultrafeedback_raw_uses_overall_then_fine_grained_then_ratings() {
        let line = r#"{"source": "evol", "instruction": "Write a haiku", "models": ["a", "b", "c"],
            "completions": [
              {"model": "a", "response": "one", "overall_score": 7.5, "fine-grained_score": 4.25},
              {"model": "b", "response": "two", "fine-grained_score": 3.5},
              {"model": "c", "response": "three", "annotations": {
                 "helpfulness": {"Rating": "4", "Rationale": "ok"},
                 "honesty": {"Rating": "5", "Rationale": "ok"},
                 "truthfulness": {"Rating": "N/A", "Rationale": "-"}}}
            ]}"#
        .replace('\n', " ");
        let r = parse_line(&line, Format::UltraFeedback).unwrap();
        assert_eq!(r.prompt, "Write a haiku");
        let rewards: Vec<f64> = r.responses.iter().map(|s| s.reward).collect();
        assert_eq!(rewards, [7.5, 3.5, 4.5]);
        assert_eq!(r.responses[2].text, "three");
    }

    #[test]
    fn ultrafeedback_binarized_accepts_chats_and_strings() {
        let chat = r#"{"prompt": "Hi?", "prompt_id": "abc",
            "chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
            "score_chosen": 8.0, "score_rejected": 3.0}"#
            .replace('\n', " ");
        let r = parse_line(&chat, Format::UltraFeedbackBinarized).unwrap();
        assert_eq!(r.responses[0].text, "Hello!");
        assert_eq!(r.responses[1].text, "Go away.");
        assert_eq!((r.responses[0].reward, r.responses[1].reward), (8.0, 3.0));
        let plain = r#"{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": "7", "score_rejected": 6}"#;
        assert_eq!(
            parse_line(plain, Format::UltraFeedbackBinarized)
                .unwrap()
                .responses[0]
                .reward,
            7.0
        );
    }

    #[test]
    fn bad_lines_name_file_and_line_or_are_skipped_and_counted() {
        let f = file(&[
            r#"{"prompt": "a", "responses": [{"text": "x", "reward": 1}, {"text": "y", "reward": 2}]}"#,
            r#"{"prompt": "b", "responses": [{"text": "x", "reward": "high"}, {"text": "y", "reward": 2}]}"#,
            r#"{"prompt": "c", "responses": [{"text": "x", "reward": 1}]}"#,
            r#"{not json"#,
            r#"{"prompt": "e", "responses": [{"text": "x", "reward": 1}, {"text": "y", "reward": 0}]}"#,
        ]);
        let err = read_jsonl(f.path(), Format::Native, OnBad::Error).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}:2: responses[0]: `reward` is not a number",
                f.path().display()
            )),
            "{msg}"
        );
        let got = read_jsonl(f.path(), Format::Native, OnBad::Skip).unwrap();
        assert_eq!(got.records.len(), 2);
        let lines: Vec<usize> = got.skipped.iter().map(|s| s.0).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert!(got.skipped[1].1.contains("at least 2 responses"));
        assert!(got.skipped[2].1.contains("invalid JSON"));
    }

    #[test]
    fn devices_and_fifos_are_refused_without_reading_them() {
        let err = read_jsonl(Path::new("/dev/zero"), Format::Native, OnBad::Skip)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "cannot read /dev/zero");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        assert!(read_jsonl(&fifo, Format::Native, OnBad::Skip).is_err());
    }

    #[test]
    fn rewards_beyond_f32_are_errors_with_their_line() {
        let f = file(&[
            r#"{"prompt": "a", "responses": [{"text": "x", "reward": 1}, {"text": "y", "reward": 2}]}"#,
            r#"{"prompt": "b", "responses": [{"text": "x", "reward": 1}, {"text": "y", "reward": 1e39}]}"#,
        ]);
        let msg = read_jsonl(f.path(), Format::Native, OnBad::Error)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!(
                "{}:2: responses[1]: reward 1e39 is beyond the f32 range",
                f.path().display()
            )),
            "{msg}"
        );
        let e = parse_line(
            r#"{"instruction": "x", "completions": [{"response": "a", "overall_score": -1e300}, {"response": "b", "overall_score": 1}]}"#,
            Format::UltraFeedback,
        )
        .unwrap_err();
        assert!(e.contains("beyond the f32 range"), "{e}");
    }

    #[test]
    fn missing_fields_and_empty_files_are_reported() {
        let e = parse_line(r#"{"instruction": "x"}"#, Format::UltraFeedback).unwrap_err();
        assert_eq!(e, "missing field `completions`");
        let e = parse_line(r#"{"prompt": "x", "chosen": 3, "rejected": "b", "score_chosen": 1, "score_rejected": 0}"#, Format::UltraFeedbackBinarized).unwrap_err();
        assert!(e.starts_with("`chosen`"), "{e}");
        let f = file(&["{bad", ""]);
        let err = read_jsonl(f.path(), Format::Native, OnBad::Skip).unwrap_err();
        assert!(err
            .to_string()
            .contains("no valid records (1 bad records skipped)"));
        let missing = read_jsonl(
            Path::new("/nonexistent/x.jsonl"),
            Format::Native,
            OnBad::Skip,
        );
        assert!(missing
            .unwrap_err()
            .to_string()
            .starts_with("cannot read /nonexistent/x.jsonl"));
        // The cause is the error's source: a chain prints it once.
        let err = read_jsonl(
            Path::new("/nonexistent/x.jsonl"),
            Format::Native,
            OnBad::Skip,
        )
        .unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert_eq!(
            chain.matches("No such file or directory").count(),
            1,
            "{chain}"
        );
    }

    #[test]
    fn invalid_utf8_is_a_bad_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"{\"prompt\": \"\xff\"}\n").unwrap();
        f.write_all(br#"{"prompt": "a", "responses": [{"text": "x", "reward": 1}, {"text": "y", "reward": 2}]}"#).unwrap();
        let got = read_jsonl(f.path(), Format::Native, OnBad::Skip).unwrap();
        assert_eq!(got.skipped, vec![(1, "not valid UTF-8".to_string())]);
    }

    #[test]
    fn binarized_multi_turn_keeps_system_message_and_earlier_turns() {
        let line = r#"{"prompt": "And 3+3?",
            "chosen": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                       {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
                       {"role": "assistant", "content": "6"}],
            "rejected": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                       {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
                       {"role": "assistant", "content": "7"}],
            "score_chosen": 9, "score_rejected": 2}"#
            .replace('\n', " ");
        let r = parse_line(&line, Format::UltraFeedbackBinarized).unwrap();
        let roles: Vec<&str> = r.context.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!(r.context[0].content, "Be brief.");
        assert_eq!(r.prompt, "And 3+3?");
        assert_eq!(
            (r.responses[0].text.as_str(), r.responses[1].text.as_str()),
            ("6", "7")
        );
        let other = line.replacen("Be brief.", "Be long.", 1);
        let e = parse_line(&other, Format::UltraFeedbackBinarized).unwrap_err();
        assert_eq!(
            e,
            "`chosen` and `rejected` continue different conversations"
        );
    }

    #[test]
    fn trl_standard_conversational_and_implicit_prompts() {
        let r = parse_line(
            r#"{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}"#,
            Format::Trl,
        )
        .unwrap();
        assert_eq!(r.prompt, "The sky is");
        assert_eq!((r.responses[0].reward, r.responses[1].reward), (1.0, 0.0));
        assert_eq!(r.responses[1].text, " green.");
        // Scores, when present, are used.
        let r = parse_line(r#"{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 7, "score_rejected": 3.5}"#, Format::Trl).unwrap();
        assert_eq!((r.responses[0].reward, r.responses[1].reward), (7.0, 3.5));
        // Implicit prompt, strings: the space before the difference goes with the responses.
        let r = parse_line(
            r#"{"chosen": "The sky is blue.", "rejected": "The sky is green."}"#,
            Format::Trl,
        )
        .unwrap();
        assert_eq!(
            (
                r.prompt.as_str(),
                r.responses[0].text.as_str(),
                r.responses[1].text.as_str()
            ),
            ("The sky is", " blue.", " green.")
        );
        let conv = r#"{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}"#
            .replace('\n', " ");
        let r = parse_line(&conv, Format::Trl).unwrap();
        assert_eq!(
            (
                r.context.len(),
                r.prompt.as_str(),
                r.responses[0].text.as_str()
            ),
            (1, "Q", "good")
        );
        let implicit = r#"{"chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "bad"}]}"#
            .replace('\n', " ");
        let r = parse_line(&implicit, Format::Trl).unwrap();
        assert_eq!(
            (
                r.context.len(),
                r.prompt.as_str(),
                r.responses[1].text.as_str()
            ),
            (2, "Q2", "bad")
        );
        for (bad, why) in [
            (
                r#"{"chosen": "abc", "rejected": "xyz"}"#,
                "share no beginning",
            ),
            (
                r#"{"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"}"#,
                "must all be strings",
            ),
            (
                r#"{"prompt": [{"role": "assistant", "content": "p"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
                "does not end with a user message",
            ),
            (
                r#"{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "x"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
                "one assistant message",
            ),
            (
                r#"{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1}"#,
                "missing field `score_rejected`",
            ),
        ] {
            let e = parse_line(bad, Format::Trl).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// (prompt, chosen answer, rejected answer, score_chosen, score_rejected).
    type BinarizedRow<'a> = (&'a str, &'a str, &'a str, f64, f64);

    /// Writes a snappy-compressed parquet file shaped like the Hub's
    /// `ultrafeedback_binarized`: `prompt` and scores as columns, `chosen` and
    /// `rejected` as lists of `{content, role}` structs.
    fn write_binarized_parquet(path: &Path, rows: &[BinarizedRow]) {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let schema = "message schema {
            REQUIRED BINARY prompt (STRING);
            REQUIRED group chosen (LIST) { REPEATED group list { REQUIRED group element {
                REQUIRED BINARY content (STRING); REQUIRED BINARY role (STRING); } } }
            REQUIRED group rejected (LIST) { REPEATED group list { REQUIRED group element {
                REQUIRED BINARY content (STRING); REQUIRED BINARY role (STRING); } } }
            REQUIRED DOUBLE score_chosen;
            REQUIRED DOUBLE score_rejected;
        }";
        let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let file = File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let strings = |v: Vec<&str>| v.into_iter().map(ByteArray::from).collect::<Vec<_>>();
        // Each chat is [user prompt, assistant answer]: repetition 0 then 1.
        let chat = |side: usize, content: bool| {
            strings(
                rows.iter()
                    .flat_map(|r| {
                        let answer = if side == 0 { r.1 } else { r.2 };
                        if content {
                            [r.0, answer]
                        } else {
                            ["user", "assistant"]
                        }
                    })
                    .collect(),
            )
        };
        let n = rows.len();
        let reps: Vec<i16> = (0..n).flat_map(|_| [0, 1]).collect();
        let defs = vec![1i16; 2 * n];
        let mut column = 0;
        while let Some(mut col) = group.next_column().unwrap() {
            match column {
                0 => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&strings(rows.iter().map(|r| r.0).collect()), None, None)
                        .unwrap();
                }
                1..=4 => {
                    let values = chat((column - 1) / 2, column % 2 == 1);
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), Some(&reps))
                        .unwrap();
                }
                5 => {
                    col.typed::<DoubleType>()
                        .write_batch(&rows.iter().map(|r| r.3).collect::<Vec<_>>(), None, None)
                        .unwrap();
                }
                _ => {
                    col.typed::<DoubleType>()
                        .write_batch(&rows.iter().map(|r| r.4).collect::<Vec<_>>(), None, None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            column += 1;
        }
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn parquet_imports_like_the_hubs_binarized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train_prefs-00000-of-00001.parquet");
        write_binarized_parquet(
            &path,
            &[
                ("2+2=", "4", "5", 9.0, 2.0),
                ("Hi", "Hello", "Go", 8.0, 8.5),
            ],
        );
        let got = read_records(&path, Format::UltraFeedbackBinarized, OnBad::Error).unwrap();
        assert_eq!((got.unit, got.lines.as_slice()), ("row", &[1, 2][..]));
        assert_eq!(got.records[0].prompt, "2+2=");
        assert!(got.records[0].context.is_empty());
        assert_eq!(got.records[1].responses[0].text, "Hello");
        assert_eq!(got.records[1].responses[1].reward, 8.5);
        assert_eq!(got.location(&path, 1), format!("{}: row 2", path.display()));
        // A format whose fields the rows lack names the row.
        let e = read_records(&path, Format::Native, OnBad::Error)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("{}: row 1: missing field `responses`", path.display())
        );
        // Not parquet at all.
        let fake = dir.path().join("fake.parquet");
        std::fs::write(&fake, "{}\n").unwrap();
        let e = read_records(&fake, Format::Native, OnBad::Error)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a readable parquet file"), "{e}");
    }

    #[test]
    fn parquet_columns_the_reader_cannot_convert_are_an_error_not_a_crash() {
        use parquet::data_type::{FixedLenByteArray, FixedLenByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interval.parquet");
        let schema = "message schema { REQUIRED FIXED_LEN_BYTE_ARRAY (12) span (INTERVAL); }";
        let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer =
            SerializedFileWriter::new(File::create(&path).unwrap(), schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let value = FixedLenByteArray::from(vec![0u8; 12]);
        col.typed::<FixedLenByteArrayType>()
            .write_batch(&[value], None, None)
            .unwrap();
        col.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
        let e = read_records(&path, Format::Native, OnBad::Skip)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: not a readable parquet file:", path.display())),
            "{e}"
        );
    }

    #[test]
    fn splits_select_files_by_name_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "data/train_prefs-00000-of-00002.parquet",
            "data/train_prefs-00001-of-00002.parquet",
            "data/test_prefs-00000-of-00001.parquet",
            "default/train/0000.parquet",
            "README.md",
        ] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), "").unwrap();
        }
        let names = |split| -> Vec<String> {
            split_files(root, split)
                .unwrap()
                .iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names("train_prefs"),
            [
                "data/train_prefs-00000-of-00002.parquet",
                "data/train_prefs-00001-of-00002.parquet"
            ]
        );
        assert_eq!(
            names("test_prefs"),
            ["data/test_prefs-00000-of-00001.parquet"]
        );
        assert_eq!(names("train"), ["default/train/0000.parquet"]);
        let e = split_files(root, "validation").unwrap_err();
        assert!(
            e.contains("no .jsonl or .parquet file of split `validation`"),
            "{e}"
        );
        assert!(e.contains("test_prefs, train_prefs"), "{e}");
    }
}
