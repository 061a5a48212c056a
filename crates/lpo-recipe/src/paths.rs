//! One rule for relative paths: a path written in a recipe file — `extends`,
//! data files, tokenizers, checkpoints — is relative to the directory of the
//! file that writes it; a path given with `--set` or an `LPO_…` variable is
//! relative to the working directory.
//!
//! Recipe files are rewritten when they are read: each relative
//! [`Ty::Path`] value (also inside `data.mix` entries and sweep axes)
//! becomes the file's directory joined with it, lexically normalised
//! (`recipes/paper/../../data/x.jsonl` → `data/x.jsonl`). The result is
//! relative to the working directory when the recipe was named relative to
//! it, so run ids stay the same from one clone to another.
//!
//! A Hugging Face Hub name (`org/name`, `org/name@revision`) is taken as a
//! Hub name where no such local path exists (as transformers'
//! `from_pretrained` does) and written `hf://org/name` from then on, so the
//! planner resolves it in the Hugging Face cache (`lpo_hf::hub`); `hf://`
//! may also be written in the recipe to say so explicitly.

use std::path::{Component, Path, PathBuf};

use toml::Value;

use crate::keys::{Ty, KEYS};

/// Resolves every relative path value of `table` (a recipe file's own
/// table) against `dir`, the directory of that file.
pub fn resolve_in_file(table: &mut toml::Table, dir: &Path) {
    for spec in KEYS.iter().filter(|k| matches!(k.ty, Ty::Path)) {
        let segments: Vec<&str> = spec.path.split('.').collect();
        resolve_at(table, &segments, dir);
    }
    for axes in sweep_axis_tables(table) {
        for (key, values) in axes.iter_mut() {
            let Some(values) = values.as_array_mut() else {
                continue;
            };
            for value in values {
                resolve_axis_value(key, value, dir);
            }
        }
    }
}

/// `dir` joined with `path` unless `path` is absolute, with `.` dropped and
/// `..` folded into a preceding normal component.
pub fn join(dir: &Path, path: &str) -> String {
    if Path::new(path).is_absolute() {
        return path.to_string();
    }
    let mut out = PathBuf::new();
    for component in dir.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        ".".to_string()
    } else {
        out.to_string_lossy().into_owned()
    }
}

/// The prefix of a path value that names a Hugging Face Hub repository.
pub const HUB_PREFIX: &str = "hf://";

/// A path value of a recipe file, resolved: a Hub name stays (as
/// `hf://org/name`), a path is joined to the file's directory.
fn resolve_value(dir: &Path, value: &str) -> String {
    if value.starts_with(HUB_PREFIX) {
        return value.to_string();
    }
    let joined = join(dir, value);
    if !Path::new(&joined).exists() && looks_like_hub_name(value) {
        return format!("{HUB_PREFIX}{value}");
    }
    joined
}

/// The Hub name a path value stands for: `hf://…` with the prefix removed,
/// or a value shaped `org/name` (`@revision` allowed) that is not an
/// existing local path. `None` for a local path.
pub fn hub_name(value: &str) -> Option<&str> {
    if let Some(name) = value.strip_prefix(HUB_PREFIX) {
        return Some(name);
    }
    (looks_like_hub_name(value) && !Path::new(value).exists()).then_some(value)
}

/// `org/name` or `org/name@revision`: two plain parts, one slash, no dots
/// in front (which a relative path like `./x` or `../x` would have), and no
/// data or tokenizer file extension (`tok/tokenizer.json` is a file).
fn looks_like_hub_name(value: &str) -> bool {
    let repo = value.split_once('@').map_or(value, |(r, _)| r);
    const FILES: [&str; 7] = [
        ".json",
        ".jsonl",
        ".parquet",
        ".safetensors",
        ".toml",
        ".csv",
        ".txt",
    ];
    if FILES.iter().any(|ext| repo.ends_with(ext)) {
        return false;
    }
    let plain = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    matches!(repo.split_once('/'), Some((org, name)) if plain(org) && plain(name))
}

/// Walks `segments` (`data.mix[]` descends into every entry) and resolves
/// the string at the end.
fn resolve_at(table: &mut toml::Table, segments: &[&str], dir: &Path) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let (name, each) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let Some(value) = table.get_mut(name) else {
        return;
    };
    match (value, rest.is_empty(), each) {
        (Value::String(s), true, false) => *s = resolve_value(dir, s),
        (Value::Table(t), false, false) => resolve_at(t, rest, dir),
        (Value::Array(items), false, true) => {
            for item in items {
                if let Value::Table(t) = item {
                    resolve_at(t, rest, dir);
                }
            }
        }
        _ => {}
    }
}

/// The `sweep.grid` table and every `sweep.zip` group: key → list of values.
fn sweep_axis_tables(table: &mut toml::Table) -> Vec<&mut toml::Table> {
    let Some(Value::Table(sweep)) = table.get_mut("sweep") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in sweep.iter_mut() {
        match (name.as_str(), value) {
            ("grid", Value::Table(grid)) => out.push(grid),
            ("zip", Value::Array(groups)) => {
                out.extend(groups.iter_mut().filter_map(|g| match g {
                    Value::Table(t) => Some(t),
                    _ => None,
                }))
            }
            _ => {}
        }
    }
    out
}

/// One value of sweep axis `key`: a path key's string, or a table key whose
/// entries hold paths (`data.mix` → each source's `path`).
fn resolve_axis_value(key: &str, value: &mut Value, dir: &Path) {
    for spec in KEYS.iter().filter(|k| matches!(k.ty, Ty::Path)) {
        if spec.path == key {
            if let Value::String(s) = value {
                *s = resolve_value(dir, s);
            }
        } else if let Some(field) = spec
            .path
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix("[]."))
        {
            let mut wrapper = toml::Table::new();
            wrapper.insert("v".into(), value.clone());
            resolve_at(&mut wrapper, &["v[]", field], dir);
            *value = wrapper.remove("v").expect("inserted above");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_stay_names_where_no_local_path_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("models/tiny")).unwrap();
        assert_eq!(
            resolve_value(d, "Qwen/Qwen2-0.5B-Instruct"),
            "hf://Qwen/Qwen2-0.5B-Instruct"
        );
        assert_eq!(resolve_value(d, "org/x@v1.0"), "hf://org/x@v1.0");
        assert_eq!(resolve_value(d, "hf://org/x"), "hf://org/x");
        // An existing local directory wins, as in transformers.
        assert_eq!(
            resolve_value(d, "models/tiny"),
            d.join("models/tiny").display().to_string()
        );
        // Paths that cannot be names stay paths.
        for path in [
            "./org/x",
            "../org/x",
            "a/b/c.jsonl",
            "x.jsonl",
            "/abs/x",
            "tok/tokenizer.json",
            "data/x.parquet",
        ] {
            assert!(!resolve_value(d, path).starts_with(HUB_PREFIX), "{path}");
        }
        assert_eq!(hub_name("hf://org/x"), Some("org/x"));
        assert_eq!(hub_name("org/x-not-here"), Some("org/x-not-here"));
        assert_eq!(hub_name("src/lib.rs"), None); // exists (tests run in the crate directory)
    }

    #[test]
    fn join_folds_parents_and_keeps_absolute_paths() {
        let dir = Path::new("recipes/paper");
        assert_eq!(join(dir, "../../data/x.jsonl"), "data/x.jsonl");
        assert_eq!(join(dir, "./x.jsonl"), "recipes/paper/x.jsonl");
        assert_eq!(join(dir, "/abs/x.jsonl"), "/abs/x.jsonl");
        assert_eq!(join(Path::new(""), "x.jsonl"), "x.jsonl");
        assert_eq!(join(Path::new(""), "../x.jsonl"), "../x.jsonl");
        assert_eq!(join(Path::new("a"), ".."), ".");
        assert_eq!(join(Path::new("/r/a"), "../b"), "/r/b");
    }

    #[test]
    fn file_paths_sources_and_sweep_axes_are_resolved_and_nothing_else() {
        let mut table: toml::Table = toml::from_str(
            r#"
            description = "data/not-a-path"
            [reference]
            checkpoint = "ckpt"
            [data]
            tokenizer = "/abs/tokenizer.json"
            mix = [{ task = "arith" }, { path = "a.jsonl", format = "native" }]
            [sweep.grid]
            "data.tokenizer" = ["t.json"]
            "data.mix" = [[{ path = "b.jsonl" }], [{ task = "arith" }]]
            [[sweep.zip]]
            "reference.checkpoint" = ["c1", "../c2"]
            "#,
        )
        .unwrap();
        resolve_in_file(&mut table, Path::new("recipes/x"));
        let expected: toml::Table = toml::from_str(
            r#"
            description = "data/not-a-path"
            [reference]
            checkpoint = "recipes/x/ckpt"
            [data]
            tokenizer = "/abs/tokenizer.json"
            mix = [{ task = "arith" }, { path = "recipes/x/a.jsonl", format = "native" }]
            [sweep.grid]
            "data.tokenizer" = ["recipes/x/t.json"]
            "data.mix" = [[{ path = "recipes/x/b.jsonl" }], [{ task = "arith" }]]
            [[sweep.zip]]
            "reference.checkpoint" = ["recipes/x/c1", "recipes/c2"]
            "#,
        )
        .unwrap();
        assert_eq!(table, expected);
    }
}
