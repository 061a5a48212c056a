//! Tokenizers: characters for the built-in tasks, `tokenizer.json` for text data.

use std::path::{Path, PathBuf};

use crate::chat::{ChatTemplate, SpecialTexts, TokenizerConfig};
use crate::Message;

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
    /// Token ids of a prompt: the conversation `context` followed by the user
    /// message `prompt`. Without a chat template: `[bos] + prompt` (the context
    /// is not part of the input); a chat template renders the whole
    /// conversation with the start of an assistant turn.
    fn encode_prompt(&self, context: &[Message], prompt: &str) -> Result<Vec<i64>, String> {
        let _ = context;
        let mut ids = vec![self.bos()];
        ids.extend(self.encode(prompt));
        Ok(ids)
    }
    /// Whether prompts go through a chat template.
    fn has_chat_template(&self) -> bool {
        false
    }
    /// `(file name, bytes)` of the Hugging Face tokenizer files that load
    /// this tokenizer (`tokenizer.json`, `tokenizer_config.json`), saved
    /// beside every checkpoint.
    fn hf_files(&self) -> Vec<(String, Vec<u8>)>;
}

/// One token per character of [`lpo_tasks::ALPHABET`], after four specials:
/// pad 0, bos 1, eos 2, unknown 3. Imported files are checked against the
/// alphabet before they reach it ([`CharTokenizer::unknown_char`]), so the
/// unknown id only ever stands for nothing a run trains on.
#[derive(Debug, Clone, Default)]
pub struct CharTokenizer;

const SPECIALS: i64 = 4;
const UNK: i64 = 3;

impl CharTokenizer {
    /// The first character of `text` outside the alphabet, if any.
    pub fn unknown_char(text: &str) -> Option<char> {
        text.chars().find(|&c| !lpo_tasks::ALPHABET.contains(c))
    }
}

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

/// Special tokens chosen by the recipe (`data.bos_token`, …) as token text;
/// each wins over `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HfOptions {
    /// Beginning of sequence.
    pub bos: Option<String>,
    /// End of sequence (ends every response).
    pub eos: Option<String>,
    /// Padding.
    pub pad: Option<String>,
    /// Render prompts with the tokenizer's chat template when it has one.
    pub chat_template: bool,
    /// Which of its named templates (`None`: `default`, as transformers).
    pub template_name: Option<String>,
}

/// A Hugging Face `tokenizer.json`, with the special tokens and chat template
/// of the `tokenizer_config.json` beside it.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// The files it was loaded from, as saved beside checkpoints.
    files: Vec<(String, Vec<u8>)>,
    bos: Option<i64>,
    eos: i64,
    pad: i64,
    add_bos: bool,
    template: Option<ChatTemplate>,
}

impl HfTokenizer {
    /// Loads a tokenizer directory (or its `tokenizer.json`): the
    /// `tokenizer_config.json` and chat template files beside it too.
    /// The end-of-sequence token is `options.eos`, else the config's
    /// `eos_token`; neither is an error (it is never guessed from names).
    /// bos: `options.bos`, else the config's (none: prompts start with eos);
    /// pad: `options.pad`, else the config's `pad_token`, `unk_token`, eos.
    pub fn from_file(path: &Path, options: &HfOptions) -> Result<HfTokenizer, String> {
        let path = &tokenizer_json(path);
        let bytes =
            crate::chat::read_bounded(path).map_err(|e| format!("cannot load tokenizer: {e}"))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        let config = TokenizerConfig::beside(path)?.unwrap_or_default();
        let id = |text: &str, key: &str| {
            inner
                .token_to_id(text)
                .map(i64::from)
                .ok_or_else(|| format!("{key} {text:?} is not a token of {}", path.display()))
        };
        let from = |recipe: &Option<String>, config_value: &Option<String>, name: &str| match (
            recipe,
            config_value,
        ) {
            (Some(t), _) => id(t, &format!("data.{name}")).map(|i| Some((t.clone(), i))),
            (None, Some(t)) => {
                id(t, &format!("{}'s {name}", config.path.display())).map(|i| Some((t.clone(), i)))
            }
            (None, None) => Ok(None),
        };
        let eos = from(&options.eos, &config.eos_token, "eos_token")?.ok_or_else(|| {
            let beside = path.with_file_name("tokenizer_config.json");
            format!(
                "no end-of-sequence token for {}: set data.eos_token, or put a tokenizer_config.json with an eos_token beside it ({} {})",
                path.display(),
                beside.display(),
                if beside.exists() { "has none" } else { "does not exist" }
            )
        })?;
        let bos = from(&options.bos, &config.bos_token, "bos_token")?;
        let pad = match from(&options.pad, &config.pad_token, "pad_token")? {
            Some(p) => Some(p),
            None => from(&None, &config.unk_token, "unk_token")?,
        };
        let source = match options.chat_template {
            true => config.template(options.template_name.as_deref())?,
            false => None,
        };
        let template = match source {
            Some(source) => Some(
                ChatTemplate::new(
                    source,
                    SpecialTexts {
                        bos: bos.as_ref().map(|b| b.0.clone()),
                        eos: Some(eos.0.clone()),
                        pad: pad.as_ref().map(|p| p.0.clone()),
                        unk: config.unk_token.clone(),
                    },
                )
                .map_err(|e| format!("{}: {e}", config.path.display()))?,
            ),
            None => None,
        };
        let files = saved_files(path, bytes, (&bos, &eos, &pad))?;
        Ok(HfTokenizer {
            inner,
            files,
            bos: bos.map(|b| b.1),
            eos: eos.1,
            pad: pad.map_or(eos.1, |p| p.1),
            add_bos: config.add_bos_token != Some(false),
            template,
        })
    }
}

impl HfTokenizer {
    /// Token ids of `text` with the special tokens the tokenizer's
    /// post-processor adds (transformers' `tokenizer(text)`, e.g. Llama's `<s>`).
    pub fn encode_with_specials(&self, text: &str) -> Vec<i64> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().iter().map(|&i| i64::from(i)).collect())
            .unwrap_or_default()
    }

    /// Token ids of a whole conversation ending in `response`, as a reward
    /// model reads it: with a chat template, the rendered messages (context,
    /// the user's `prompt`, the assistant's `response`; no generation
    /// prompt) tokenized as they are (`apply_chat_template(tokenize=True)`);
    /// without one, `prompt + response` with the tokenizer's special tokens
    /// (`tokenizer(prompt + response)`; the context is not part of it).
    pub fn encode_conversation(
        &self,
        context: &[Message],
        prompt: &str,
        response: &str,
    ) -> Result<Vec<i64>, String> {
        let Some(template) = &self.template else {
            return Ok(self.encode_with_specials(&format!("{prompt}{response}")));
        };
        let mut messages = context.to_vec();
        messages.push(Message {
            role: "user".into(),
            content: prompt.into(),
        });
        messages.push(Message {
            role: "assistant".into(),
            content: response.into(),
        });
        Ok(self.encode(&template.render(&messages, false)?))
    }
}

/// A special token as (text, id).
type Special = (String, i64);

/// The `tokenizer.json` of `path`: the file itself, or the one in a
/// tokenizer (or checkpoint) directory.
pub fn tokenizer_json(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(TOKENIZER_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The file of a Hugging Face fast tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The other files of a tokenizer directory that lpo copies as they are
/// (besides the chat templates), so `AutoTokenizer` loads what lpo used.
const COPIED: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// The files of the tokenizer directory of `tokenizer_json` that exist, by
/// name relative to the directory: `tokenizer.json`, `tokenizer_config.json`,
/// `special_tokens_map.json`, `chat_template.jinja` and
/// `additional_chat_templates/*.jinja`: what `AutoTokenizer` reads.
pub fn tokenizer_dir_files(tokenizer_json: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut files = Vec::new();
    for name in std::iter::once(TOKENIZER_FILE).chain(COPIED) {
        let file = tokenizer_json.with_file_name(name);
        if file.exists() {
            files.push((name.to_string(), file));
        }
    }
    let dir = tokenizer_json.parent().unwrap_or(Path::new("."));
    for (_, file) in crate::chat::template_files(tokenizer_json)? {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        files.push((relative.to_string_lossy().into_owned(), file.clone()));
    }
    Ok(files)
}

/// The tokenizer's files as saved beside checkpoints, byte-equal to the
/// loaded ones ([`tokenizer_dir_files`]; `tokenizer.json` is `bytes`, as
/// loaded), with a `tokenizer_config.json` naming the special tokens in use
/// when the directory has none.
fn saved_files(
    path: &Path,
    bytes: Vec<u8>,
    (bos, eos, pad): (&Option<Special>, &Special, &Option<Special>),
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = vec![(TOKENIZER_FILE.to_string(), bytes)];
    let present = tokenizer_dir_files(path)?;
    if !present.iter().any(|(name, _)| name == COPIED[0]) {
        let text = |t: &Option<Special>| t.as_ref().map_or(eos.0.clone(), |t| t.0.clone());
        let config = crate::hf_files::tokenizer_config(&text(bos), &eos.0, &text(pad), None);
        files.push((COPIED[0].to_string(), config.into_bytes()));
    }
    for (name, file) in present.into_iter().filter(|(n, _)| n != TOKENIZER_FILE) {
        files.push((name, crate::chat::read_bounded(&file)?));
    }
    Ok(files)
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

    /// The bos token; a tokenizer without one starts prompts with eos.
    fn bos(&self) -> i64 {
        self.bos.unwrap_or(self.eos)
    }

    fn eos(&self) -> i64 {
        self.eos
    }

    fn pad(&self) -> i64 {
        self.pad
    }

    /// With a chat template: the rendered conversation, tokenized as it is
    /// (the template writes bos itself when the model wants one).
    fn encode_prompt(&self, context: &[Message], prompt: &str) -> Result<Vec<i64>, String> {
        let Some(template) = &self.template else {
            // `add_bos_token: false` (e.g. Qwen2) encodes plain text without
            // bos, unless that leaves the prompt empty.
            let text = self.encode(prompt);
            let mut ids = Vec::with_capacity(text.len() + 1);
            if self.add_bos || text.is_empty() {
                ids.push(self.bos());
            }
            ids.extend(text);
            return Ok(ids);
        };
        let mut messages = context.to_vec();
        messages.push(Message {
            role: "user".into(),
            content: prompt.into(),
        });
        let ids = self.encode(&template.render(&messages, true)?);
        if ids.is_empty() {
            return Err("the chat template renders an empty prompt".into());
        }
        Ok(ids)
    }

    fn has_chat_template(&self) -> bool {
        self.template.is_some()
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
        let t = HfTokenizer::from_file(&path, &HfOptions::default())
            .err()
            .unwrap();
        assert!(t.starts_with("no end-of-sequence token for"), "{t}");
        assert!(t.contains("tokenizer_config.json does not exist"), "{t}");
        let options = HfOptions {
            eos: Some("</s>".into()),
            bos: Some("<s>".into()),
            pad: Some("<pad>".into()),
            chat_template: true,
            template_name: None,
        };
        let t = HfTokenizer::from_file(&path, &options).unwrap();
        assert_eq!(t.encode_prompt(&[], "hello").unwrap(), [1, 3]);
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
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            "{\"eos_token\": \"</s>\"}",
        )
        .unwrap();
        let t = HfTokenizer::from_file(&path, &options).unwrap();
        assert_eq!(t.hf_files()[1].1, b"{\"eos_token\": \"</s>\"}");
        std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
        let err = HfTokenizer::from_file(&dir.path().join("missing.json"), &options)
            .err()
            .unwrap();
        assert!(err.contains("missing.json"), "{err}");
    }

    #[test]
    fn template_files_replace_the_configs_template_and_are_saved_byte_equal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("tokenizer.json"), WORD_LEVEL).unwrap();
        let config = r#"{"eos_token": "</s>", "bos_token": "<s>", "chat_template": "CONFIG {{ messages[0].content }}"}"#;
        std::fs::write(d.join("tokenizer_config.json"), config).unwrap();
        let options = HfOptions {
            chat_template: true,
            ..HfOptions::default()
        };
        // Only the config's template: it is used. A directory loads like its tokenizer.json.
        let t = HfTokenizer::from_file(d, &options).unwrap();
        assert_eq!(
            t.encode_prompt(&[], "hello").unwrap(),
            t.encode("CONFIG hello")
        );
        // chat_template.jinja clobbers it, as transformers' from_pretrained does.
        std::fs::write(
            d.join("chat_template.jinja"),
            "{{ messages[0].content }} world",
        )
        .unwrap();
        std::fs::create_dir(d.join("additional_chat_templates")).unwrap();
        std::fs::write(d.join("additional_chat_templates/tool_use.jinja"), "world").unwrap();
        std::fs::write(d.join("special_tokens_map.json"), "{}").unwrap();
        let t = HfTokenizer::from_file(&d.join("tokenizer.json"), &options).unwrap();
        assert_eq!(t.encode_prompt(&[], "hello").unwrap(), [3, 4]);
        let named = HfOptions {
            template_name: Some("tool_use".into()),
            ..options.clone()
        };
        let t2 = HfTokenizer::from_file(d, &named).unwrap();
        assert_eq!(t2.encode_prompt(&[], "hello").unwrap(), [4]);
        let missing = HfOptions {
            template_name: Some("rag".into()),
            ..options
        };
        let e = HfTokenizer::from_file(d, &missing).err().unwrap();
        assert!(
            e.contains("no chat template named \"rag\"") && e.contains("\"tool_use\""),
            "{e}"
        );
        // Every file of the directory is saved as it was read.
        let files = t.hf_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "chat_template.jinja",
                "additional_chat_templates/tool_use.jinja"
            ]
        );
        for (name, bytes) in &files {
            assert_eq!(bytes, &std::fs::read(d.join(name)).unwrap(), "{name}");
        }
    }

    #[test]
    fn a_tokenizer_file_that_is_not_a_regular_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("tokenizer.json");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = HfTokenizer::from_file(&link, &HfOptions::default())
            .err()
            .unwrap();
        assert!(
            e.contains("tokenizer.json") && e.contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn tokenizer_config_names_the_special_tokens_and_whether_text_starts_with_bos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, WORD_LEVEL).unwrap();
        let config = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &config,
            r#"{"eos_token": "</s>", "bos_token": null, "add_bos_token": false}"#,
        )
        .unwrap();
        let t = HfTokenizer::from_file(&path, &HfOptions::default()).unwrap();
        // No bos: plain prompts start with their text; an empty one with eos.
        assert_eq!((t.eos(), t.bos(), t.pad()), (2, 2, 2));
        assert_eq!(t.encode_prompt(&[], "hello world").unwrap(), [3, 4]);
        assert_eq!(t.encode_prompt(&[], "").unwrap(), [2]);
        assert!(!t.has_chat_template());
        std::fs::write(&config, r#"{"eos_token": "<eot>"}"#).unwrap();
        let e = HfTokenizer::from_file(&path, &HfOptions::default())
            .err()
            .unwrap();
        assert!(e.contains("eos_token \"<eot>\" is not a token of"), "{e}");
        std::fs::write(&config, r#"{"bos_token": "<s>"}"#).unwrap();
        let e = HfTokenizer::from_file(&path, &HfOptions::default())
            .err()
            .unwrap();
        assert!(e.contains("tokenizer_config.json has none"), "{e}");
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
