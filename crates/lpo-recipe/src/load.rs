//! Layered loading: built-in defaults < extends chain < the recipe <
//! `LPO_SECTION__KEY` environment variables < `--set key.path=value`.
//!
//! Each layer is checked on its own against [`crate::keys`] so problems name
//! their file, line and column (or the variable / `--set` argument); figment
//! then merges the layers, remembers which one set each key, and extracts the
//! typed [`Recipe`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use toml::Value;

use crate::diag::{line_col, Diagnostic, Diagnostics};
use crate::keys::{self, Ty};
use crate::schema::Recipe;

/// Layers above the recipe files.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `key.path=value` assignments, in order (later wins).
    pub sets: Vec<String>,
    /// `(name, value)` environment variables; only `LPO_<SECTION>__<KEY>` ones are read.
    pub env: Vec<(String, String)>,
}

impl Overrides {
    /// `--set` arguments plus the `LPO_…__…` variables of this process.
    pub fn from_process(sets: Vec<String>) -> Self {
        Overrides {
            sets,
            env: std::env::vars().collect(),
        }
    }
}

/// A recipe with its layers merged.
#[derive(Debug)]
pub struct Loaded {
    /// The typed, merged recipe (its sweep not yet expanded).
    pub recipe: Recipe,
    /// The recipe files, base of the extends chain first.
    pub files: Vec<PathBuf>,
    figment: Figment,
}

/// Which layer set a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The key asked about.
    pub key: String,
    /// Its value after merging, as TOML.
    pub value: String,
    /// The layer: "built-in defaults", "recipe file", "environment variable", "--set".
    pub layer: String,
    /// The file, when the layer is one.
    pub file: Option<PathBuf>,
}

impl Loaded {
    /// Says which layer set `key` and what its merged value is.
    pub fn explain(&self, key: &str) -> Result<Explanation, Diagnostics> {
        let value = self.figment.find_value(key).map_err(|_| {
            let help = crate::diag::did_you_mean(key, keys::KEYS.iter().map(|k| k.path));
            Diagnostics(vec![Diagnostic {
                message: format!("no key `{key}` in the resolved recipe"),
                location: "--explain".into(),
                help,
            }])
        })?;
        let metadata = self
            .figment
            .get_metadata(value.tag())
            .or_else(|| self.figment.find_metadata(key));
        let value: Value = value.deserialize().unwrap_or(Value::String("?".into()));
        let (layer, file) = match metadata {
            Some(m) => (
                m.name.to_string(),
                match &m.source {
                    Some(Source::File(path)) => Some(path.clone()),
                    _ => None,
                },
            ),
            None => ("built-in defaults".to_string(), None),
        };
        Ok(Explanation {
            key: key.to_string(),
            value: value.to_string(),
            layer,
            file,
        })
    }
}

/// One layer as figment sees it.
struct Layer {
    name: String,
    file: Option<PathBuf>,
    table: toml::Table,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.name.clone());
        match &self.file {
            Some(file) => metadata.source(Source::File(file.clone())),
            None => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = Value::Table(self.table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        Ok(Profile::Default.collect(dict))
    }
}

/// Loads `path` with its extends chain and the overrides, checking every layer.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Loaded, Diagnostics> {
    let mut problems = Vec::new();
    let mut layers = Vec::new();
    let mut files = Vec::new();
    read_chain(
        path,
        None,
        &mut Vec::new(),
        &mut layers,
        &mut files,
        &mut problems,
    );

    for (name, raw) in &overrides.env {
        let Some(rest) = name.strip_prefix("LPO_").filter(|r| r.contains("__")) else {
            continue;
        };
        let dotted = rest
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        let origin = format!("environment variable {name}");
        push_assignment(
            &dotted,
            raw,
            "environment variable",
            &origin,
            &mut layers,
            &mut problems,
        );
    }
    for set in &overrides.sets {
        let origin = format!("--set {set}");
        match set.split_once('=') {
            Some((dotted, raw)) if !dotted.trim().is_empty() => push_assignment(
                dotted.trim(),
                raw,
                "--set",
                &origin,
                &mut layers,
                &mut problems,
            ),
            _ => problems.push(Diagnostic {
                message: format!("`{set}` is not an assignment"),
                location: "--set".into(),
                help: Some("write --set key.path=value, e.g. --set train.steps=100".into()),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(Diagnostics(problems));
    }

    replace_coefficient_tables(&mut layers);
    let defaults = match Value::try_from(Recipe::default()) {
        Ok(Value::Table(table)) => table,
        _ => unreachable!("a recipe serializes to a table"),
    };
    let mut figment = Figment::from(Layer {
        name: "built-in defaults".into(),
        file: None,
        table: defaults,
    });
    for layer in layers {
        figment = figment.merge(layer);
    }
    let recipe: Recipe = figment.extract().map_err(|errors| {
        Diagnostics(
            errors
                .into_iter()
                .map(|e| {
                    // figment's path names array entries by number (`report.tables.0`).
                    let path: Vec<String> = e
                        .path
                        .iter()
                        .map(|s| match s.parse::<usize>() {
                            Ok(i) => format!("[{i}]"),
                            Err(_) => s.clone(),
                        })
                        .collect();
                    let location = e.metadata.as_ref().map_or_else(
                        || "the merged recipe".to_string(),
                        |m| match &m.source {
                            Some(Source::File(p)) => position_in(p, &[path], 1),
                            _ => m.name.to_string(),
                        },
                    );
                    let key = if e.path.is_empty() {
                        String::new()
                    } else {
                        format!("`{}`: ", e.path.join("."))
                    };
                    Diagnostic {
                        message: format!("{key}{}", e.kind),
                        location,
                        help: None,
                    }
                })
                .collect(),
        )
    })?;
    let loaded = Loaded {
        recipe,
        files,
        figment,
    };
    let cross = crate::validate::problems(&loaded.recipe);
    if !cross.is_empty() {
        return Err(Diagnostics(
            cross
                .into_iter()
                .map(|(key, message)| loaded.cross_key_diagnostic(&key, &message))
                .collect(),
        ));
    }
    Ok(loaded)
}

impl Loaded {
    /// A problem of `key` together with other keys: located where `key` was
    /// set (file:line:col, the `--set` or the variable), with where each
    /// other key its message names was set when that is elsewhere, so both
    /// ends of the conflict can be found.
    fn cross_key_diagnostic(&self, key: &str, message: &str) -> Diagnostic {
        let fallback = || {
            self.files
                .last()
                .map_or_else(|| "the merged recipe".into(), |f| f.display().to_string())
        };
        // A key at its built-in default is located where the keys its
        // message names were set (greedy `eval.decoding` for the default
        // `eval.samples`).
        let location = self
            .origin(key)
            .or_else(|| {
                let others = mentioned_keys(key, message);
                others.iter().find_map(|other| self.origin(other))
            })
            .unwrap_or_else(fallback);
        let others: Vec<String> = mentioned_keys(key, message)
            .into_iter()
            .filter_map(|other| {
                let at = self.origin(&other)?;
                (at != location).then(|| format!("`{other}` at {at}"))
            })
            .collect();
        let also = match others.is_empty() {
            true => String::new(),
            false => format!(" ({})", others.join(", ")),
        };
        Diagnostic {
            message: format!("`{key}` {message}{also}"),
            location,
            help: None,
        }
    }

    /// Where `key` was set: `file:line:col` in a recipe file, the `--set`
    /// or environment variable, or the preset; `None` for a built-in default.
    /// `key` may name an entry of an array of tables or one of its fields
    /// (`data.mix[1].path`, `sweep.zip[0]`): the layer that set the array
    /// set its entries (arrays are replaced whole), and a field the entry
    /// lacks (a missing `reward`) is located at its entry.
    fn origin(&self, key: &str) -> Option<String> {
        let array = key.split_once('[').map_or(key, |(array, _)| array);
        self.position(array, &[segments(key)])
    }

    /// `file:line:col` in the file that set `layer_key` of the first of
    /// `paths` it has, else of the longest prefix of the last one (at least
    /// as long as `layer_key`), else the file; the layer when no file set
    /// `layer_key`, `None` for a built-in default.
    fn position(&self, layer_key: &str, paths: &[Vec<String>]) -> Option<String> {
        let explained = self.explain(layer_key).ok()?;
        match explained.file {
            Some(file) => Some(position_in(&file, paths, layer_key.split('.').count())),
            None if explained.layer == "built-in defaults" => None,
            None => Some(explained.layer),
        }
    }

    /// Where the sweep sets `key` (or the array of tables `key` is an entry
    /// or field of): its axis in `sweep.grid` or in a `sweep.zip` group.
    fn axis_origin(&self, key: &str) -> Option<String> {
        let array = key.split_once('[').map_or(key, |(array, _)| array);
        let sweep = &self.recipe.sweep;
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if sweep.grid.contains_key(array) {
            return self.position("sweep.grid", &[path(&["sweep", "grid", array])]);
        }
        let group = sweep.zip.iter().position(|g| g.contains_key(array))?;
        // `[[sweep.zip]]` groups, or one `[sweep.zip]` table.
        let entry = format!("[{group}]");
        self.position(
            "sweep.zip",
            &[
                path(&["sweep", "zip", &entry, array]),
                path(&["sweep", "zip", array]),
            ],
        )
    }

    /// Problems found after loading (planning a sweep) located in the
    /// recipe files: a diagnostic whose location is a recipe key
    /// (`eval.baseline`, `data.mix[0].path`, `sweep.exclude`) is located
    /// where its value came from: the sweep axis that sets it, else the
    /// `file:line:col` (or `--set`, variable) that set it, else, for a key
    /// at its built-in default, where the first other key its message
    /// names was set. Other locations are kept.
    pub fn locate(&self, diagnostics: Diagnostics) -> Diagnostics {
        let locate = |key: &str, message: &str| {
            let at = |k: &str| self.axis_origin(k).or_else(|| self.origin(k));
            at(key).or_else(|| mentioned_keys(key, message).iter().find_map(|k| at(k)))
        };
        Diagnostics(
            diagnostics
                .0
                .into_iter()
                .map(|mut d| {
                    if let Some(location) = locate(&d.location, &d.message) {
                        d.location = location;
                    }
                    d
                })
                .collect(),
        )
    }
}

/// `file:line:col` in `file` of the first of `paths` it sets, else of the
/// longest prefix (at least `shortest` segments) of the last one; `file`
/// alone when it sets none.
fn position_in(file: &Path, paths: &[Vec<String>], shortest: usize) -> String {
    let text = lpo_results::read_config_text(file).unwrap_or_default();
    let spans = key_spans(&text);
    let at = paths
        .iter()
        .find_map(|p| spans.get(p).copied())
        .or_else(|| {
            let last = paths.last()?;
            (shortest..last.len())
                .rev()
                .find_map(|n| spans.get(&last[..n]).copied())
        });
    match at {
        Some(offset) => {
            let (line, col) = line_col(&text, offset);
            format!("{}:{line}:{col}", file.display())
        }
        None => file.display().to_string(),
    }
}

/// The path segments of a dotted key as [`key_spans`] names them:
/// `data.mix[1].path` is `data`, `mix`, `[1]`, `path`.
fn segments(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        out.push(name.to_string());
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            out.push(format!("[{index}"));
        }
    }
    out
}

/// The recipe keys other than `key` a cross-key message names: dotted keys
/// of the table, and bare field names of `key`'s own section (`heads 3 is
/// not divisible by kv_heads 2` names `model.heads` and `model.kv_heads`).
fn mentioned_keys(key: &str, message: &str) -> Vec<String> {
    let section = key.split_once('.').map_or("", |(s, _)| s);
    let words: Vec<&str> = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for spec in keys::KEYS.iter().filter(|k| !k.path.contains('[')) {
        let field = spec
            .path
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('.'));
        let named = words.iter().any(|w| *w == spec.path || Some(*w) == field);
        if named && spec.path != key && !out.iter().any(|o| o == spec.path) {
            out.push(spec.path.to_string());
        }
    }
    out
}

/// A coefficient set as a table (a schedule) replaces the layers below it
/// instead of merging with their table: a `linear` schedule must not inherit
/// a `step` schedule's fields.
fn replace_coefficient_tables(layers: &mut [Layer]) {
    let coefficients = keys::KEYS
        .iter()
        .filter(|k| matches!(k.ty, Ty::Coef { .. }))
        .map(|k| k.path);
    for path in coefficients {
        let (section, name) = path
            .split_once('.')
            .expect("coefficients live in a section");
        let Some(top) = layers
            .iter()
            .rposition(|l| l.table.get(section).and_then(|s| s.get(name)).is_some())
        else {
            continue;
        };
        for lower in &mut layers[..top] {
            if let Some(Value::Table(s)) = lower.table.get_mut(section) {
                s.remove(name);
            }
        }
    }
}

/// Reads `path` and the chain it extends into `layers`, base first. `via`
/// is where the file that extends `path` says so (`file:line:col` of its
/// `extends`): a file that cannot be read, or closes a cycle, is reported
/// there; `None` for the recipe itself.
fn read_chain(
    path: &Path,
    via: Option<&str>,
    stack: &mut Vec<PathBuf>,
    layers: &mut Vec<Layer>,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
) {
    let display = path.display().to_string();
    let identity = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&identity) {
        let cycle = stack
            .iter()
            .chain([&identity])
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" -> ");
        problems.push(Diagnostic {
            message: format!("`extends` forms a cycle: {cycle}"),
            location: via.map_or(display, String::from),
            help: None,
        });
        return;
    }
    let text = match lpo_results::read_config_text(path) {
        Ok(text) => text,
        Err(e) => {
            // Bytes that are not UTF-8 are a problem inside the file, at
            // their line; a file that cannot be read at all is one of the
            // `extends` that names it.
            let bad_text = e.root_cause().downcast_ref::<std::string::FromUtf8Error>();
            let (message, location) = match (bad_text, via) {
                (Some(bad), _) => {
                    let valid = &bad.as_bytes()[..bad.utf8_error().valid_up_to()];
                    let valid = std::str::from_utf8(valid).unwrap_or_default();
                    let (line, col) = line_col(valid, valid.len());
                    (
                        format!("cannot read recipe: {e:#}"),
                        format!("{display}:{line}:{col}"),
                    )
                }
                (None, Some(via)) => (
                    format!("cannot read the recipe `extends` names: {e:#}"),
                    via.to_string(),
                ),
                (None, None) => (format!("cannot read recipe: {e:#}"), display),
            };
            problems.push(Diagnostic {
                message,
                location,
                help: None,
            });
            return;
        }
    };
    let mut table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let location = e.span().map_or(display.clone(), |s| {
                let (line, col) = line_col(&text, s.start);
                format!("{display}:{line}:{col}")
            });
            problems.push(Diagnostic {
                message: format!("invalid TOML: {}", e.message().trim()),
                location,
                help: None,
            });
            return;
        }
    };
    if table.is_empty() {
        problems.push(Diagnostic {
            message: "the recipe sets no key: an empty file is most likely the wrong one".into(),
            location: format!("{display}:1:1"),
            help: Some(
                "name at least the recipe (`name = \"...\"`), or extend another with `extends`"
                    .into(),
            ),
        });
        return;
    }
    let spans = key_spans(&text);
    let located = |path: &[String]| match spans.get(path) {
        Some(&offset) => {
            let (line, col) = line_col(&text, offset);
            format!("{display}:{line}:{col}")
        }
        None => display.clone(),
    };
    for p in keys::check_table(&table) {
        let location = located(&p.path);
        problems.push(Diagnostic {
            message: p.message,
            location,
            help: p.help,
        });
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    crate::paths::resolve_in_file(&mut table, dir);
    if let Some(parent) = table.get("extends") {
        // Already resolved against `dir` like every path of the file.
        if let Some(resolved) = parent.as_str() {
            let base = PathBuf::from(resolved);
            let via = located(&["extends".to_string()]);
            stack.push(identity);
            read_chain(&base, Some(&via), stack, layers, files, problems);
            stack.pop();
        }
    }
    files.push(path.to_path_buf());
    layers.push(Layer {
        name: "recipe file".into(),
        file: Some(path.to_path_buf()),
        table,
    });
}

/// Byte offset of every key in `text`, by its path segments (array entries as `[i]`).
fn key_spans(text: &str) -> HashMap<Vec<String>, usize> {
    use toml::de::{DeTable, DeValue};
    fn walk(table: &DeTable<'_>, at: &mut Vec<String>, out: &mut HashMap<Vec<String>, usize>) {
        for (key, value) in table {
            at.push(key.get_ref().to_string());
            out.entry(at.clone()).or_insert(key.span().start);
            walk_value(value.get_ref(), value.span().start, at, out);
            at.pop();
        }
    }
    fn walk_value(
        value: &DeValue<'_>,
        start: usize,
        at: &mut Vec<String>,
        out: &mut HashMap<Vec<String>, usize>,
    ) {
        match value {
            DeValue::Table(t) => walk(t, at, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    at.push(format!("[{i}]"));
                    out.entry(at.clone())
                        .or_insert(item.span().start.max(start));
                    walk_value(item.get_ref(), item.span().start, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    if let Ok(table) = DeTable::parse(text) {
        walk(table.get_ref(), &mut Vec::new(), &mut out);
    }
    out
}

/// Parses `raw` as a TOML value, falling back to a bare string (`--set loss.kind=dpo`).
pub fn parse_value(raw: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Builds the nested table for `a.b.c = value`.
pub fn nest(dotted: &str, value: Value) -> toml::Table {
    let mut segments: Vec<&str> = dotted.split('.').collect();
    let last = segments.pop().unwrap_or_default();
    let mut table = toml::Table::new();
    table.insert(last.to_string(), value);
    while let Some(segment) = segments.pop() {
        let mut outer = toml::Table::new();
        outer.insert(segment.to_string(), Value::Table(table));
        table = outer;
    }
    table
}

fn push_assignment(
    dotted: &str,
    raw: &str,
    layer: &str,
    origin: &str,
    layers: &mut Vec<Layer>,
    problems: &mut Vec<Diagnostic>,
) {
    let table = nest(dotted, parse_value(raw));
    for p in keys::check_table(&table) {
        problems.push(Diagnostic {
            message: p.message,
            location: origin.to_string(),
            help: p.help,
        });
    }
    layers.push(Layer {
        name: layer.into(),
        file: None,
        table,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lpo-recipe-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn layers_override_in_order_and_explain_says_who() {
        let dir = tempdir("layers");
        write(&dir, "base.toml", "[train]\nsteps = 10\nbatch_size = 4\n[loss]\nalpha = { kind = \"step\", values = [1.0, 0.5], at = [3] }\n");
        let child = write(&dir, "child.toml", "extends = \"base.toml\"\n[train]\nsteps = 20\n[loss]\nalpha = { kind = \"linear\", from = 2.0, to = 1.0 }\n");
        let overrides = Overrides {
            sets: vec!["train.learning_rate=0.5".into(), "loss.kind=dpo".into()],
            env: vec![
                ("LPO_TRAIN__SEED".into(), "7".into()),
                ("LPO_UNRELATED".into(), "x".into()),
            ],
        };
        let loaded = load(&child, &overrides).unwrap();
        let r = &loaded.recipe;
        assert_eq!(
            (r.train.steps, r.train.batch_size, r.train.seed),
            (20, 4, 7)
        );
        assert_eq!(r.train.learning_rate, 0.5);
        assert_eq!(r.loss.kind, crate::schema::LossKind::Dpo.into());
        assert_eq!(
            r.loss.alpha,
            crate::schedule::Coef::Schedule(crate::schedule::Schedule::Linear {
                from: 2.0,
                to: 1.0
            })
        );
        assert_eq!(loaded.files.len(), 2);

        let e = loaded.explain("train.steps").unwrap();
        assert_eq!(
            (e.layer.as_str(), e.file.as_deref(), e.value.as_str()),
            ("recipe file", Some(child.as_path()), "20")
        );
        let e = loaded.explain("train.batch_size").unwrap();
        assert_eq!(e.file.as_deref(), Some(dir.join("base.toml").as_path()));
        assert_eq!(
            loaded.explain("train.learning_rate").unwrap().layer,
            "--set"
        );
        assert_eq!(
            loaded.explain("train.seed").unwrap().layer,
            "environment variable"
        );
        assert_eq!(
            loaded.explain("eval.prompts").unwrap().layer,
            "built-in defaults"
        );
    }

    #[test]
    fn cross_key_problems_name_where_each_key_was_set() {
        let dir = tempdir("cross-key");
        let base = write(
            &dir,
            "base.toml",
            "name = \"x\"\n[model]\nheads = 4\n[train]\nbatch_size = 8\n",
        );
        let path = write(
            &dir,
            "r.toml",
            "extends = \"base.toml\"\n\n[model]\nkv_heads = 3\n",
        );
        let text = load(&path, &Overrides::default()).unwrap_err().to_string();
        let (b, r) = (base.display(), path.display());
        assert!(
            text.contains(&format!("`model.kv_heads` heads 4 is not divisible by kv_heads 3 (`model.heads` at {b}:3:1) at {r}:4:1")),
            "{text}"
        );
        // A key from --set is located there, the other key in its file.
        let sets = Overrides {
            sets: vec!["train.grad_accum=3".into()],
            ..Overrides::default()
        };
        let ok = write(&dir, "ok.toml", "extends = \"base.toml\"\n");
        let text = load(&ok, &sets).unwrap_err().to_string();
        assert!(
            text.contains(&format!("(`train.batch_size` at {b}:5:1) at --set")),
            "{text}"
        );
    }

    #[test]
    fn all_problems_are_reported_with_file_line_col() {
        let dir = tempdir("problems");
        let path = write(&dir, "x.toml", "name = \"x\"\n\n[train]\nlerning_rate = 1e-4\nsteps = \"many\"\n[sweep]\ngrid = { \"loss.bta\" = [1.0] }\n");
        let err = load(&path, &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        let file = path.display().to_string();
        assert!(
            text.contains(&format!(
                "unknown key `train.lerning_rate` at {file}:4:1; did you mean `learning_rate`?"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "`train.steps` must be an integer, found string \"many\" at {file}:5:1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "sweep axis `loss.bta` is not a recipe key that can be swept at {file}:7:10"
            )),
            "{text}"
        );
    }

    #[test]
    fn cycles_and_syntax_errors_are_diagnosed() {
        let dir = tempdir("cycle");
        let a = write(&dir, "a.toml", "extends = \"b.toml\"\n");
        write(&dir, "b.toml", "extends = \"a.toml\"\n");
        assert!(load(&a, &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("forms a cycle"));
        let bad = write(&dir, "bad.toml", "[train]\nsteps = = 3\n");
        let text = load(&bad, &Overrides::default()).unwrap_err().to_string();
        assert!(
            text.contains("invalid TOML") && text.contains("bad.toml:2:"),
            "{text}"
        );
    }

    #[test]
    fn unreadable_extends_cycles_empty_and_non_utf8_files_name_a_line() {
        let dir = tempdir("extends-lines");
        let r = |body: &str| {
            let path = write(&dir, "r.toml", body);
            load(&path, &Overrides::default()).unwrap_err().to_string()
        };
        let at = |name: &str, lc: &str| format!("at {}:{lc}", dir.join(name).display());
        // A missing or special base is reported at the `extends` naming it.
        for base in ["missing.toml", "/dev/zero", "."] {
            let text = r(&format!("name = \"x\"\nextends = {base:?}\n"));
            assert!(
                text.contains("cannot read the recipe `extends` names")
                    && text.contains(&at("r.toml", "2:1")),
                "{text}"
            );
        }
        // A cycle, at the `extends` that closes it.
        write(&dir, "a.toml", "name = \"a\"\n\nextends = \"r.toml\"\n");
        let text = r("extends = \"a.toml\"\n");
        assert!(
            text.contains("forms a cycle") && text.contains(&at("a.toml", "3:1")),
            "{text}"
        );
        let text = r("# only a comment\n");
        assert!(text.contains(&at("r.toml", "1:1")), "{text}");
        let path = dir.join("r.toml");
        std::fs::write(&path, b"name = \"x\"\ndescription = \"caf\xe9\"\n").unwrap();
        let text = load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(
            text.contains("not UTF-8") && text.contains(&at("r.toml", "2:19")),
            "{text}"
        );
    }

    #[test]
    fn planning_problems_are_located_at_the_key_or_sweep_axis_that_set_them() {
        let dir = tempdir("locate");
        let path = write(
            &dir,
            "r.toml",
            "[eval]\nbaseline = \"x\"\n[data]\nmix = [\n  { task = \"arith\" },\n  { path = \"p.jsonl\", format = \"native\" },\n]\n\
             [sweep]\ngrid = { \"model.max_len\" = [16, 64] }\n[[sweep.zip]]\nlabel = [\"x\", \"y\"]\n",
        );
        let loaded = load(&path, &Overrides::default()).unwrap();
        let problem = |location: &str, message: &str| Diagnostic {
            message: message.into(),
            location: location.into(),
            help: None,
        };
        let located = loaded.locate(Diagnostics(vec![
            problem("data.mix[1].path", "p.jsonl does not exist"),
            problem("data.mix[1].reward", "is missing"),
            problem("eval.baseline", "no run is labelled so"),
            problem("label", "is empty"),
            problem(
                "eval.max_new_tokens",
                "is 32, but must be below model.max_len (16)",
            ),
            problem("not a key", "stays"),
        ]));
        let file = path.display();
        let locations: Vec<&str> = located.0.iter().map(|d| d.location.as_str()).collect();
        assert_eq!(
            locations,
            [
                format!("{file}:6:5").as_str(),
                &format!("{file}:6:3"),
                &format!("{file}:2:1"),
                &format!("{file}:11:1"),
                &format!("{file}:9:10"),
                "not a key",
            ]
        );
        // A table a file sets without its required name: at the table.
        let path = write(
            &dir,
            "t.toml",
            "name = \"t\"\n[[report.tables]]\nmetric = \"reward\"\n",
        );
        let text = load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(text.contains(&format!("{}:2:", path.display())), "{text}");
    }

    #[test]
    fn bad_overrides_name_their_origin() {
        let dir = tempdir("overrides");
        let path = write(&dir, "ok.toml", "");
        let overrides = Overrides {
            sets: vec!["trian.steps=3".into(), "noequals".into()],
            env: vec![("LPO_TRAIN__STEPS".into(), "lots".into())],
        };
        let text = load(&path, &overrides).unwrap_err().to_string();
        assert!(
            text.contains("unknown key `trian` at --set trian.steps=3; did you mean `train`?"),
            "{text}"
        );
        assert!(
            text.contains("at environment variable LPO_TRAIN__STEPS"),
            "{text}"
        );
        assert!(text.contains("`noequals` is not an assignment"), "{text}");
    }

    #[test]
    fn parse_value_reads_toml_or_falls_back_to_string() {
        assert_eq!(parse_value("3"), Value::Integer(3));
        assert_eq!(
            parse_value("[1, 2]"),
            Value::Array(vec![Value::Integer(1), Value::Integer(2)])
        );
        assert_eq!(parse_value("dpo"), Value::String("dpo".into()));
        assert_eq!(parse_value("\"quoted\""), Value::String("quoted".into()));
    }
}
