//! Tokenizers: characters for the built-in tasks, `tokenizer.json` for text data.

use std::path::Path;

/// Turns text into token ids and back, with the special tokens training needs.
pub trait Tokenize: Send + Sync {
    /// Token ids of `text`, without special tokens.
    fn encode(&self, text: &str) -> Vec<i64>;
    /// Text of `ids` (special tokens dropped).
    fn decode(&self, ids: &[i64]) -> String;
    /// Size of the id space.
    fn vocab_size(&self) -> usize;
    /// Beginning-of-sequence id.
    fn bos(&self) -> i64;
    /// End-of-sequence id (ends a response).
    fn eos(&self) -> i64;
    /// Padding id (never attended to or scored).
    fn pad(&self) -> i64;
    /// `(file name, bytes)` of the Hugging Face tokenizer files that load
    /// this tokenizer (`tokenizer.json`, `tokenizer_config.json`), saved
    /// beside every checkpoint.
    fn hf_files(&self) -> Vec<(String, Vec<u8>)>;
}

/// One token per character of [`lpo_tasks::ALPHABET`], after four specials:
/// pad 0, bos 1, eos 2, unknown 3.
#[derive(Debug, Clone, Default)]
pub struct CharTokenizer;

const SPECIALS: i64 = 4;
const UNK: i64 = 3;

impl Tokenize for CharTokenizer {
    fn encode(&self, text: &str) -> Vec<i64> {
        text.chars()
            .map(|c| match lpo_tasks::ALPHABET.find(c) {
                Some(i) => SPECIALS + i as i64,
                None => UNK,
            })
            .collect()
    }

    fn decode(&self, ids: &[i64]) -> String {
        let alphabet = lpo_tasks::ALPHABET.as_bytes();
        ids.iter()
            .filter_map(|&id| {
                let i = usize::try_from(id - SPECIALS).ok()?;
                alphabet.get(i).map(|&b| char::from(b))
            })
            .collect()
    }

    fn vocab_size(&self) -> usize {
        SPECIALS as usize + lpo_tasks::ALPHABET.len()
    }

    fn bos(&self) -> i64 {
        1
    }

    fn eos(&self) -> i64 {
        2
    }

    fn pad(&self) -> i64 {
        0
    }

    fn hf_files(&self) -> Vec<(String, Vec<u8>)> {
        crate::hf_files::char_tokenizer_files()
    }
}

/// A Hugging Face `tokenizer.json`.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// The files it was loaded from, as saved beside checkpoints.
    files: Vec<(String, Vec<u8>)>,
    bos: i64,
    eos: i64,
    pad: i64,
}

impl HfTokenizer {
    /// Loads `tokenizer.json`. Special tokens are looked up by their usual
    /// names (`<s>`/`<|begin_of_text|>`, `</s>`/`<|end_of_text|>`/`<eos>`,
    /// `<pad>`/`<unk>`); a missing pad falls back to eos.
    pub fn from_file(path: &Path) -> Result<HfTokenizer, String> {
        if !path.is_file() {
            return Err(format!(
                "cannot load tokenizer {}: missing or not a regular file",
                path.display()
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        let find = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| inner.token_to_id(n))
                .map(i64::from)
        };
        let eos =
            find(&["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"]).ok_or_else(|| {
                format!(
                    "{}: no end-of-sequence token (</s>, <|end_of_text|>, <|endoftext|> or <eos>)",
                    path.display()
                )
            })?;
        let bos = find(&["<s>", "<|begin_of_text|>", "<bos>"]).unwrap_or(eos);
        let pad = find(&["<pad>", "<unk>"]).unwrap_or(eos);
        let config_path = path.with_file_name("tokenizer_config.json");
        let config = match std::fs::read(&config_path) {
            Ok(config) => config,
            Err(_) => {
                let name = |id: i64| inner.id_to_token(id as u32).unwrap_or_default();
                crate::hf_files::tokenizer_config(&name(bos), &name(eos), &name(pad), None)
                    .into_bytes()
            }
        };
        let files = vec![
            ("tokenizer.json".to_string(), bytes),
            ("tokenizer_config.json".to_string(), config),
        ];
        Ok(HfTokenizer {
            inner,
            files,
            bos,
            eos,
            pad,
        })
    }
}

impl Tokenize for HfTokenizer {
    fn encode(&self, text: &str) -> Vec<i64> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().iter().map(|&i| i64::from(i)).collect())
            .unwrap_or_default()
    }

    /// Ids outside the tokenizer's vocabulary (a model's vocabulary may be
    /// larger) are dropped rather than failing the whole decode.
    fn decode(&self, ids: &[i64]) -> String {
        let size = self.vocab_size() as u32;
        let ids: Vec<u32> = ids
            .iter()
            .filter_map(|&i| u32::try_from(i).ok())
            .filter(|&i| i < size)
            .collect();
        self.inner.decode(&ids, true).unwrap_or_default()
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn bos(&self) -> i64 {
        self.bos
    }

    fn eos(&self) -> i64 {
        self.eos
    }

    fn pad(&self) -> i64 {
        self.pad
    }

    fn hf_files(&self) -> Vec<(String, Vec<u8>)> {
        self.files.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_tokenizer_round_trips_the_task_alphabet() {
        let t = CharTokenizer;
        let text = "47+385=432 1>5,2>7: d*3+ [1-] abc<";
        let ids = t.encode(text);
        assert_eq!(ids.len(), text.chars().count());
        assert!(ids
            .iter()
            .all(|&i| i >= SPECIALS && (i as usize) < t.vocab_size()));
        assert_eq!(t.decode(&ids), text);
        assert_eq!(t.encode("A"), [UNK]);
        assert_eq!(t.decode(&[t.bos(), ids[0], t.eos(), t.pad()]), "4");
        // Fits the built-in presets' 64-token vocabulary.
        assert!(t.vocab_size() <= 64);
    }

    #[test]
    fn hf_tokenizer_json_loads_and_encodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, WORD_LEVEL).unwrap();
        let t = HfTokenizer::from_file(&path).unwrap();
        assert_eq!(t.vocab_size(), 6);
        assert_eq!((t.pad(), t.bos(), t.eos()), (0, 1, 2));
        assert_eq!(t.encode("hello world"), [3, 4]);
        assert_eq!(t.encode("hello there"), [3, 5]); // an unknown word is [UNK]
        assert_eq!(t.decode(&[1, 3, 4, 2]), "hello world");
        // Ids beyond the tokenizer's vocabulary (a larger model vocab) are dropped.
        assert_eq!(t.decode(&[3, 40, 4]), "hello world");
        // The files saved beside checkpoints: tokenizer.json as loaded, and a
        // tokenizer_config.json naming the special tokens (copied when present).
        let files = t.hf_files();
        assert_eq!(
            files[0],
            ("tokenizer.json".into(), WORD_LEVEL.as_bytes().to_vec())
        );
        let config: serde_json::Value = serde_json::from_slice(&files[1].1).unwrap();
        assert_eq!(files[1].0, "tokenizer_config.json");
        assert_eq!(
            (config["bos_token"].as_str(), config["eos_token"].as_str()),
            (Some("<s>"), Some("</s>"))
        );
        std::fs::write(dir.path().join("tokenizer_config.json"), "{\"x\": 1}").unwrap();
        let t = HfTokenizer::from_file(&path).unwrap();
        assert_eq!(t.hf_files()[1].1, b"{\"x\": 1}");
        let err = HfTokenizer::from_file(&dir.path().join("missing.json"))
            .err()
            .unwrap();
        assert!(err.contains("missing.json"), "{err}");
    }

    /// A minimal word-level tokenizer.json as the `tokenizers` library writes it.
    const WORD_LEVEL: &str = r###"{
      "version": "1.0",
      "truncation": null,
      "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": null,
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
      "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "[UNK]": 5}, "unk_token": "[UNK]"}
    }"###;
}
