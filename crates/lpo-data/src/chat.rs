//! `tokenizer_config.json` and Hugging Face chat templates.
//!
//! A Hugging Face tokenizer directory holds `tokenizer.json` (the vocabulary
//! and merges) and `tokenizer_config.json` (special tokens, `add_bos_token`,
//! and the Jinja `chat_template` that turns a conversation into the text the
//! model was trained on). [`ChatTemplate`] renders such templates with
//! minijinja, configured as transformers configures Jinja for them
//! (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, a
//! `tojson` without HTML escaping, Python string methods through
//! minijinja-contrib's pycompat). `strftime_now` is deliberately not defined:
//! templates that use it (Llama 3.x) fall back to their fixed date, so a
//! rendered prompt never depends on the day it was rendered.
//!
//! A template is code from a downloaded file, so a render is bounded: it has
//! [`TEMPLATE_FUEL`] of minijinja fuel (instructions and the data it creates,
//! checked before a string is allocated) and writes at most
//! [`MAX_TEMPLATE_OUTPUT`] bytes; past either it stops with an error that
//! names the bound, instead of hanging or aborting the process.

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

use crate::Message;

/// Name of the template used when none is chosen, as in transformers.
pub const DEFAULT_TEMPLATE: &str = "default";

/// The largest tokenizer file lpo reads (`tokenizer.json` of a 256k-token
/// vocabulary is about 35 MB; the bound only stops a runaway read).
pub const MAX_TOKENIZER_FILE: u64 = 512 << 20;

/// The parts of a Hugging Face tokenizer directory lpo uses: the special
/// tokens of `tokenizer_config.json` and the chat templates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// `bos_token` (text of the token), if set.
    pub bos_token: Option<String>,
    /// `eos_token`, if set.
    pub eos_token: Option<String>,
    /// `pad_token`, if set.
    pub pad_token: Option<String>,
    /// `unk_token`, if set.
    pub unk_token: Option<String>,
    /// `add_bos_token` (whether plain text is encoded after a bos token), if set.
    pub add_bos_token: Option<bool>,
    /// Chat templates by name: `chat_template.jinja` (transformers >= 4.43
    /// saves the template there), else the config's `chat_template`, is
    /// `default`; named ones come from `additional_chat_templates/<name>.jinja`
    /// or the config's list of `{name, template}`.
    pub templates: std::collections::BTreeMap<String, String>,
}

impl TokenizerConfig {
    /// Reads `tokenizer_config.json` beside `tokenizer_json`, and the template
    /// files transformers saves beside it, as `AutoTokenizer` reads them: a
    /// `chat_template.jinja` replaces the config's template. `None` when the
    /// directory has neither a config nor a template file.
    pub fn beside(tokenizer_json: &Path) -> Result<Option<TokenizerConfig>, String> {
        let path = tokenizer_json.with_file_name("tokenizer_config.json");
        let mut config = if path.exists() {
            let text = read_text(&path)?;
            let json: Json = serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
            TokenizerConfig::from_json(&json, &path)?
        } else {
            TokenizerConfig {
                path: path.clone(),
                ..TokenizerConfig::default()
            }
        };
        let files = template_files(tokenizer_json)?;
        if !path.exists() && files.is_empty() {
            return Ok(None);
        }
        for (name, file) in files {
            config.templates.insert(name, read_text(&file)?);
        }
        Ok(Some(config))
    }

    /// The configuration in `json` (read from `path`).
    pub fn from_json(json: &Json, path: &Path) -> Result<TokenizerConfig, String> {
        let token = |name: &str| -> Result<Option<String>, String> {
            match json.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                // An `AddedToken` written out: {"content": "<s>", "__type": "AddedToken", …}.
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => Ok(Some(s.clone())),
                    _ => Err(format!(
                        "{}: `{name}` has no string `content`",
                        path.display()
                    )),
                },
                Some(other) => Err(format!(
                    "{}: `{name}` is neither a string nor a token: {other}",
                    path.display()
                )),
            }
        };
        Ok(TokenizerConfig {
            path: path.to_path_buf(),
            bos_token: token("bos_token")?,
            eos_token: token("eos_token")?,
            pad_token: token("pad_token")?,
            unk_token: token("unk_token")?,
            add_bos_token: json.get("add_bos_token").and_then(Json::as_bool),
            templates: config_templates(json, path)?,
        })
    }

    /// The template called `name` (`None`: the default one), as transformers'
    /// `apply_chat_template(chat_template=name)` picks it; `Ok(None)` when the
    /// tokenizer has no template at all.
    pub fn template(&self, name: Option<&str>) -> Result<Option<&str>, String> {
        if self.templates.is_empty() {
            return match name {
                None => Ok(None),
                Some(name) => Err(format!(
                    "data.chat_template_name is {name:?} but {} has no chat template",
                    self.dir_display()
                )),
            };
        }
        let wanted = name.unwrap_or(DEFAULT_TEMPLATE);
        match self.templates.get(wanted) {
            Some(source) => Ok(Some(source)),
            None => Err(format!(
                "{} has no chat template named {wanted:?} (it has {}); set data.chat_template_name to one of them",
                self.dir_display(),
                self.templates
                    .keys()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn dir_display(&self) -> String {
        self.path
            .parent()
            .map_or_else(|| ".".into(), |d| d.display().to_string())
    }
}

/// The `chat_template` of a `tokenizer_config.json`: one template (named
/// `default`) or a list of `{"name": …, "template": …}`.
fn config_templates(
    json: &Json,
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut templates = std::collections::BTreeMap::new();
    match json.get("chat_template") {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => {
            templates.insert(DEFAULT_TEMPLATE.to_string(), s.clone());
        }
        Some(Json::Array(named)) => {
            for entry in named {
                let (Some(name), Some(template)) = (
                    entry.get("name").and_then(Json::as_str),
                    entry.get("template").and_then(Json::as_str),
                ) else {
                    return Err(format!(
                        "{}: an entry of `chat_template` lacks a string `name` or `template`",
                        path.display()
                    ));
                };
                templates.insert(name.to_string(), template.to_string());
            }
        }
        Some(other) => {
            return Err(format!(
                "{}: `chat_template` is neither a string nor a list: {other}",
                path.display()
            ))
        }
    }
    Ok(templates)
}

/// The template files beside `tokenizer_json`, by template name:
/// `chat_template.jinja` (`default`) and `additional_chat_templates/<name>.jinja`.
pub fn template_files(tokenizer_json: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    let default = tokenizer_json.with_file_name(CHAT_TEMPLATE_FILE);
    if default.exists() {
        out.push((DEFAULT_TEMPLATE.to_string(), default));
    }
    let dir = tokenizer_json.with_file_name(ADDITIONAL_TEMPLATES_DIR);
    if dir.is_dir() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut named = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
                .path();
            if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jinja"))
            {
                named.push((name.to_string(), path.clone()));
            }
        }
        named.sort();
        out.extend(named);
    }
    Ok(out)
}

/// The file transformers (>= 4.43) saves the default chat template in.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The directory of its named templates (`<name>.jinja`).
pub const ADDITIONAL_TEMPLATES_DIR: &str = "additional_chat_templates";

/// A tokenizer file as text: a regular file of at most [`MAX_TOKENIZER_FILE`] bytes.
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = read_bounded(path)?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

/// A tokenizer file's bytes: a regular file of at most [`MAX_TOKENIZER_FILE`] bytes.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    lpo_results::read_regular(path, MAX_TOKENIZER_FILE).map_err(|e| format!("{e:#}"))
}

/// The minijinja fuel of one render. One fuel pays for one instruction or 64
/// bytes of data the template creates (strings built by `~`, `+`, `*`,
/// filters and methods, and the output), and an allocation whose size is
/// known is refused before it happens, so this bounds both the time of a
/// render (about a million instructions) and what it allocates (about 64 MB).
/// Real templates use far less: a 20-message conversation of short turns
/// takes 635 (Zephyr), 659 (Llama 3) and 737 (Mistral) fuel (a test checks
/// that it stays under a thousandth), about 1,360 times less than this; long
/// messages add about 0.05 (Zephyr, Mistral) to 0.08 (Llama 3) fuel per byte,
/// so the budget fits about 12 MB of conversation text. (minijinja's `range`
/// has its own bound: at most 100,000 items.)
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// The most bytes a chat template may render: far more than any prompt a
/// model trains on, small enough that a runaway template stops early.
pub const MAX_TEMPLATE_OUTPUT: usize = 16 << 20;

/// The special tokens a template may print (`bos_token`, `eos_token`, …), as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTexts {
    /// Beginning of sequence.
    pub bos: Option<String>,
    /// End of sequence.
    pub eos: Option<String>,
    /// Padding.
    pub pad: Option<String>,
    /// Unknown.
    pub unk: Option<String>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    specials: SpecialTexts,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("specials", &self.specials)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `specials` are the values of `bos_token` etc.
    pub fn new(source: &str, specials: SpecialTexts) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| e.to_string())?;
        env.set_syntax(syntax);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| format!("chat template does not compile: {}", describe(&e)))?;
        Ok(ChatTemplate { env, specials })
    }

    /// The text of `messages`, followed by the start of an assistant turn when
    /// `add_generation_prompt` (what a response continues).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        self.render_counted(messages, add_generation_prompt)
            .map(|(text, _)| text)
    }

    /// [`render`](Self::render), with the fuel the render used.
    fn render_counted(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, u64), String> {
        let template = self.env.get_template(NAME).map_err(|e| describe(&e))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        // Unset special tokens are `none`, as transformers passes `None`.
        let token = |t: &Option<String>| t.as_deref().map_or(Value::from(()), Value::from);
        let s = &self.specials;
        let ctx = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", token(&s.bos)),
            ("eos_token", token(&s.eos)),
            ("pad_token", token(&s.pad)),
            ("unk_token", token(&s.unk)),
        ]);
        let mut out = BoundedOutput::default();
        let rendered = template.render_captured_to(ctx, &mut out);
        if out.exceeded {
            return Err(format!(
                "chat template: the rendered text is larger than {} MiB (a runaway loop?)",
                MAX_TEMPLATE_OUTPUT >> 20
            ));
        }
        let fuel = match rendered {
            Ok(captured) => captured.state().fuel_levels().map_or(0, |(used, _)| used),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => {
                let line = e
                    .line()
                    .map_or_else(String::new, |l| format!(" at line {l}"));
                return Err(format!(
                    "chat template: ran out of fuel{line} after {TEMPLATE_FUEL} instructions \
                     or 64-byte blocks of data (an unbounded loop or a runaway string?)"
                ));
            }
            Err(e) => return Err(format!("chat template: {}", describe(&e))),
        };
        let text = String::from_utf8(out.bytes)
            .map_err(|_| "chat template: the rendered text is not UTF-8".to_string())?;
        Ok((text, fuel))
    }
}

/// The rendered text, refused past [`MAX_TEMPLATE_OUTPUT`] bytes.
#[derive(Default)]
struct BoundedOutput {
    bytes: Vec<u8>,
    exceeded: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_TEMPLATE_OUTPUT {
            self.exceeded = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error with its causes (a `raise_exception` message is the detail).
fn describe(e: &Error) -> String {
    let mut out = match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_string(),
        _ => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// JSON as Python's `json.dumps(ensure_ascii=False)` writes it (transformers'
/// `tojson`): no HTML escaping; `indent` as keyword.
fn tojson(state: &State, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut meter = FuelMeter::new(state);
    // The value may be huge or lazy (`[0] * 100000000`) and the indent is
    // written on every line: pay for the indent, then walk the value once into
    // a writer that pays for each byte, so the copies below are bounded by the
    // fuel. Other serialization errors are left to `to_value` to report.
    let indent = match indent {
        Some(n) => {
            meter.pay(n as u64)?;
            Some(" ".repeat(n))
        }
        None => None,
    };
    let _ = match &indent {
        None => serde_json::to_writer(&mut meter, &value),
        Some(indent) => {
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut meter, formatter);
            serde::Serialize::serialize(&value, &mut ser)
        }
    };
    if let Some(e) = meter.out_of_fuel {
        return Err(e);
    }
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let text = match indent {
        None => python_compact(&json),
        Some(indent) => {
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(&json, &mut ser)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            String::from_utf8(out).expect("serde_json writes UTF-8")
        }
    };
    Ok(Value::from_safe_string(text))
}

/// pycompat's Python methods (`str.strip`, `str.format`, …), with the string
/// methods whose result can be far larger than what they are given paid for
/// before they run (pycompat charges them after, or not at all): `format`
/// (widths, precisions and fields that repeat an argument), `join` (every item
/// and separator) and `split`/`splitlines` (a list slot per piece).
fn python_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let mut meter = FuelMeter::new(state);
        match method {
            "format" => meter.pay(format_bound(s, args))?,
            "join" => {
                if let Some(items) = args.first().and_then(|v| v.try_iter().ok()) {
                    for item in items {
                        let len = item.as_str().map_or(0, str::len) + s.len();
                        meter.pay(FuelMeter::ITEM + len as u64)?;
                    }
                }
            }
            "split" => {
                let pieces = match args.first().and_then(Value::as_str) {
                    Some(sep) if !sep.is_empty() => s.matches(sep).count() + 1,
                    _ => s.split_whitespace().count(),
                };
                meter.pay(pieces as u64 * FuelMeter::ITEM)?;
            }
            "splitlines" => meter.pay((s.lines().count() as u64 + 1) * FuelMeter::ITEM)?,
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// At least the length of `fmt.format(*args)`: the format string, the widths
/// and precisions of its fields (they pad to that many characters), and the
/// longest string argument for every field.
fn format_bound(fmt: &str, args: &[Value]) -> u64 {
    let unescaped = fmt.replace("{{", "");
    let mut fields = 0u64;
    let mut padding = 0u64;
    for field in unescaped.split('{').skip(1) {
        fields += 1;
        let field = field.split('}').next().unwrap_or_default();
        if let Some((_, spec)) = field.split_once(':') {
            for digits in spec.split(|c: char| !c.is_ascii_digit()) {
                if !digits.is_empty() {
                    padding = padding.saturating_add(digits.parse().unwrap_or(u64::MAX));
                }
            }
        }
    }
    let string_len = |v: &Value| v.as_str().map_or(0, str::len) as u64;
    let mut longest = 0;
    for arg in args {
        longest = longest.max(string_len(arg));
        // Keyword arguments come as one map.
        if arg.kind() == minijinja::value::ValueKind::Map {
            for key in arg.try_iter().into_iter().flatten() {
                if let Ok(v) = arg.get_item(&key) {
                    longest = longest.max(string_len(&v));
                }
            }
        }
    }
    (fmt.len() as u64)
        .saturating_add(padding)
        .saturating_add(fields.saturating_mul(longest))
}

/// A writer that keeps nothing and charges the render's fuel, in minijinja's
/// units (64 to one fuel, one a byte of data made): [`pay`](Self::pay) for
/// data about to be made, and [`SERIALIZED`](Self::SERIALIZED) a byte for
/// what is written to it (minijinja's price for serializing).
struct FuelMeter<'a, 'env, 'source> {
    state: &'a State<'env, 'source>,
    unpaid: u64,
    out_of_fuel: Option<Error>,
}

impl<'a, 'env, 'source> FuelMeter<'a, 'env, 'source> {
    const UNITS_PER_FUEL: u64 = 64;
    /// A byte serialized (walking the value costs more than copying it).
    const SERIALIZED: u64 = 16;
    /// An item visited, or a slot of a list.
    const ITEM: u64 = 32;

    fn new(state: &'a State<'env, 'source>) -> Self {
        FuelMeter {
            state,
            unpaid: 0,
            out_of_fuel: None,
        }
    }

    /// Pays `units`: an out-of-fuel error once the render's fuel is used up.
    fn pay(&mut self, units: u64) -> Result<(), Error> {
        self.unpaid = self.unpaid.saturating_add(units);
        let fuel = self.unpaid / Self::UNITS_PER_FUEL;
        self.unpaid %= Self::UNITS_PER_FUEL;
        self.state.consume_fuel(fuel)
    }
}

impl std::io::Write for FuelMeter<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(e) = self.pay((buf.len() as u64).saturating_mul(Self::SERIALIZED)) {
            self.out_of_fuel = Some(e);
            return Err(std::io::Error::other("out of fuel"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `json.dumps` separators: `", "` and `": "`.
fn python_compact(json: &Json) -> String {
    match json {
        Json::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(python_compact)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Json::String(k.clone()), python_compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// `HuggingFaceH4/zephyr-7b-beta`'s template, verbatim.
    pub const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    /// `meta-llama/Meta-Llama-3-8B-Instruct`'s template, verbatim.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// `mistralai/Mistral-7B-Instruct-v0.1`'s template, verbatim: it raises on
    /// roles that do not alternate.
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    fn specials(bos: &str, eos: &str) -> SpecialTexts {
        SpecialTexts {
            bos: Some(bos.into()),
            eos: Some(eos.into()),
            ..SpecialTexts::default()
        }
    }

    #[test]
    fn zephyr_renders_system_and_earlier_turns() {
        let t = ChatTemplate::new(ZEPHYR, specials("<s>", "</s>")).unwrap();
        let chat = [
            m("system", "Be brief."),
            m("user", "Hi"),
            m("assistant", "Hello."),
            m("user", "2+2?"),
        ];
        // As transformers' apply_chat_template renders it (trim_blocks and
        // lstrip_blocks remove the template's own newlines).
        assert_eq!(
            t.render(&chat, true).unwrap(),
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\n2+2?</s>\n<|assistant|>\n"
        );
        assert!(!t.render(&chat, false).unwrap().ends_with("<|assistant|>\n"));
    }

    #[test]
    fn llama3_trims_and_starts_with_bos() {
        let t = ChatTemplate::new(LLAMA3, specials("<|begin_of_text|>", "<|eot_id|>")).unwrap();
        let got = t
            .render(&[m("system", " S "), m("user", "Q")], true)
            .unwrap();
        assert_eq!(
            got,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error_with_the_templates_message() {
        let t = ChatTemplate::new(MISTRAL, specials("<s>", "</s>")).unwrap();
        assert_eq!(
            t.render(&[m("user", "a"), m("assistant", "b"), m("user", "c")], true)
                .unwrap(),
            "<s>[INST] a [/INST]b</s> [INST] c [/INST]"
        );
        let e = t
            .render(&[m("system", "s"), m("user", "a")], true)
            .unwrap_err();
        assert!(e.contains("Conversation roles must alternate"), "{e}");
        let e = ChatTemplate::new("{% if %}", SpecialTexts::default()).unwrap_err();
        assert!(e.starts_with("chat template does not compile"), "{e}");
    }

    #[test]
    fn python_methods_and_tojson_work_as_in_transformers() {
        let src = "{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}{{ {'k': '<x>', 'n': [1, 2]} | tojson }}";
        let t = ChatTemplate::new(src, SpecialTexts::default()).unwrap();
        assert_eq!(
            t.render(&[m("user", " ab ")], false).unwrap(),
            "AB!{\"k\": \"<x>\", \"n\": [1, 2]}"
        );
    }

    /// 20 messages (user first, alternating) of a few words each.
    fn twenty_turns() -> Vec<Message> {
        (0..20)
            .map(|i| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                m(
                    role,
                    &format!("Turn {i}: a question or an answer of a few words."),
                )
            })
            .collect()
    }

    /// `src` rendered for one user message, and how long that took.
    fn render_timed(src: &str) -> (Result<String, String>, std::time::Duration) {
        let t = ChatTemplate::new(src, specials("<s>", "</s>")).unwrap();
        let start = std::time::Instant::now();
        let got = t.render(&[m("user", "hi")], true);
        (got, start.elapsed())
    }

    #[test]
    fn real_templates_use_a_thousandth_of_the_fuel() {
        let chat = twenty_turns();
        for (name, src) in [("zephyr", ZEPHYR), ("llama3", LLAMA3), ("mistral", MISTRAL)] {
            let t = ChatTemplate::new(src, specials("<s>", "</s>")).unwrap();
            let (text, fuel) = t.render_counted(&chat, true).unwrap();
            assert!(text.contains("Turn 19"), "{name}: {text}");
            assert!(fuel * 1000 < TEMPLATE_FUEL, "{name} used {fuel} fuel");
        }
    }

    #[test]
    fn an_unbounded_loop_runs_out_of_fuel() {
        let (got, took) = render_timed(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}{{ k }}{% endfor %}{% endfor %}{% endfor %}",
        );
        let e = got.map(|text| text.len()).unwrap_err();
        assert!(
            e.starts_with("chat template: ran out of fuel at line 1 after 1000000 instructions"),
            "{e}"
        );
        assert!(took.as_secs() < 10, "{took:?}");
    }

    #[test]
    fn a_runaway_string_runs_out_of_fuel_before_it_is_allocated() {
        for src in [
            // 2^40 bytes by doubling: the first step the fuel cannot pay for
            // (32 MiB) is refused before it is allocated.
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
            // 100 MB at once (minijinja's own limit on `*`).
            "{{ ('x' * 99999999)|length }}",
        ] {
            let (got, took) = render_timed(src);
            let e = got.map(|text| text.len()).unwrap_err();
            assert!(e.starts_with("chat template: ran out of fuel"), "{src}: {e}");
            assert!(took.as_secs() < 10, "{src}: {took:?}");
        }
    }

    #[test]
    fn python_methods_and_tojson_pay_for_what_they_make_before_they_make_it() {
        for src in [
            // A 4 GB padding, a 4 GB precision, and 46 copies of 50 MB.
            "{{ '{:>4000000000}'.format('x')|length }}",
            "{{ '{:.4000000000f}'.format(1.5)|length }}",
            "{% set x = 'x' * 50000000 %}{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format(x)|length }}",
            // 10^8 items of 1 MB joined.
            "{{ ''.join(['y' * 1000000] * 100000000)|length }}",
            // 10^7 pieces.
            "{{ ('x ' * 10000000).split()|length }}",
            // A lazy list of 10^8 items, and a 1 GB indent.
            "{{ ([0] * 100000000)|tojson|length }}",
            "{{ {'a': 1}|tojson(indent=1000000000)|length }}",
        ] {
            let (got, took) = render_timed(src);
            let e = got.map(|text| text.len()).unwrap_err();
            assert!(e.starts_with("chat template: ran out of fuel"), "{src}: {e}");
            assert!(took.as_secs() < 10, "{src}: {took:?}");
        }
        let (got, _) = render_timed(
            "{{ '{} {:>4}|{:.2f}|{{x}}|{a}'.format('x', 'y', 1.5, a='z') }} {{ '-'.join(['a', 'b']) }} {{ 'a b'.split()|length }}{{ {'k': [1]}|tojson(indent=2) }}",
        );
        assert_eq!(
            got.unwrap(),
            "x    y|1.50|{x}|z a-b 2{\n  \"k\": [\n    1\n  ]\n}"
        );
    }

    #[test]
    fn the_rendered_text_is_bounded() {
        // 20 MB of output made of cheap 1 MB strings: within the fuel.
        let (got, _) = render_timed("{% for i in range(20) %}{{ 'x' * 1000000 }}{% endfor %}");
        assert_eq!(
            got.map(|text| text.len()).unwrap_err(),
            "chat template: the rendered text is larger than 16 MiB (a runaway loop?)"
        );
        let (got, _) = render_timed("{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}");
        assert_eq!(got.unwrap().len(), 10_000_000);
    }

    #[test]
    fn tokenizer_config_reads_strings_added_tokens_and_named_templates() {
        let json: Json = serde_json::from_str(
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                "eos_token": "</s>", "pad_token": null, "add_bos_token": true,
                "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "y"}]}"#,
        )
        .unwrap();
        let c = TokenizerConfig::from_json(&json, Path::new("t/tokenizer_config.json")).unwrap();
        assert_eq!(c.bos_token.as_deref(), Some("<s>"));
        assert_eq!(c.eos_token.as_deref(), Some("</s>"));
        assert_eq!((&c.pad_token, c.add_bos_token), (&None, Some(true)));
        assert_eq!(c.template(None).unwrap(), Some("y"));
        assert_eq!(c.template(Some("tool_use")).unwrap(), Some("x"));
        let e = c.template(Some("rag")).unwrap_err();
        assert!(e.starts_with("t has no chat template named \"rag\""), "{e}");
        let bad: Json = serde_json::from_str(r#"{"eos_token": 3}"#).unwrap();
        let e = TokenizerConfig::from_json(&bad, Path::new("t/tokenizer_config.json")).unwrap_err();
        assert!(e.starts_with("t/tokenizer_config.json: `eos_token`"), "{e}");
    }
}
