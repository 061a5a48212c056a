//! JSONL importers: one record per line, errors located by file and line.
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
//!   lists (the last assistant message is the response).
//!
//! Every record needs at least two responses with finite scores.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{RewardList, Scored};

/// A JSONL file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The native reward-list format.
    Native,
    /// UltraFeedback raw.
    UltraFeedback,
    /// UltraFeedback binarized.
    UltraFeedbackBinarized,
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
    /// No valid record at all.
    #[error("{path}: no valid records ({skipped} bad lines skipped)")]
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
    /// 1-based numbers of skipped lines, with the reason.
    pub skipped: Vec<(usize, String)>,
}

/// Reads a JSONL file. Blank lines are ignored.
pub fn read_jsonl(path: &Path, format: Format, on_bad: OnBad) -> Result<Imported, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO blocks until a writer comes,
    // and a device (`/dev/zero`) never ends.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut imported = Imported {
        records: Vec::new(),
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
            Ok(record) => imported.records.push(record),
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
    let record = match format {
        Format::Native => native(&value)?,
        Format::UltraFeedback => ultrafeedback(&value)?,
        Format::UltraFeedbackBinarized => binarized(&value)?,
    };
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
    Ok(RewardList { prompt, responses })
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
    Ok(RewardList { prompt, responses })
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
    let side = |name: &str, score_name: &str| -> Result<Scored, String> {
        Ok(Scored {
            text: response_text(field(value, name)?).map_err(|e| format!("`{name}`: {e}"))?,
            reward: score(value, score_name)?,
        })
    };
    Ok(RewardList {
        prompt,
        responses: vec![
            side("chosen", "score_chosen")?,
            side("rejected", "score_rejected")?,
        ],
    })
}

/// A response given as a string or as a chat (the last assistant message).
fn response_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(messages) => messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .and_then(|m| m.get("content").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| "no assistant message with string content".to_string()),
        _ => Err("neither a string nor a message list".into()),
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
            .contains("no valid records (1 bad lines skipped)"));
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
}
