//! Hugging Face Hub names (`org/name`, `org/name@revision`) resolved in the
//! standard Hugging Face cache, laid out as `huggingface_hub` lays it out:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
//!                else ~/.cache/huggingface/hub)
//!   models--org--name/refs/main              the commit `main` points at
//!   models--org--name/snapshots/<commit>/…   the files of that commit
//!   datasets--org--name/…                    the same for datasets
//! ```
//!
//! Planning only reads the cache: a name that is not there is an error
//! carrying the `hf download` command that fetches it, so `lpo plan` never
//! touches the network. The commands that run (`lpo sweep`, `run`,
//! `prepare`, `data preview`) first [`download`] what is missing with
//! Hugging Face's own client, the `hf` command of `huggingface_hub` (its
//! authentication, mirrors and storage backends included), unless
//! `HF_HUB_OFFLINE` is set, as transformers' `from_pretrained` would.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What kind of Hub repository a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model (`models--…`).
    Model,
    /// A dataset (`datasets--…`).
    Dataset,
}

impl RepoKind {
    fn folder_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

/// The Hugging Face hub cache directory of this environment.
pub fn cache_root() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// `name` (`org/name` or `org/name@revision`) resolved in the cache at
/// `root`: the snapshot directory of the revision (default `main`), whose
/// last component is the commit.
pub fn resolve_in(root: &Path, name: &str, kind: RepoKind) -> Result<PathBuf> {
    let (repo, revision) = split_name(name);
    check_repo_id(repo)?;
    check_revision(revision)?;
    let folder = root.join(format!(
        "{}--{}",
        kind.folder_prefix(),
        repo.replace('/', "--")
    ));
    let missing = |what: String| -> anyhow::Error {
        let fetch = fetch_command(name, kind).join(" ");
        anyhow::anyhow!(
            "`{name}` is not a local path, and the Hugging Face cache {} has no {what}: \
             fetch it with `{fetch}` (the `hf` command of `pip install huggingface_hub`; \
             `lpo sweep`, `run`, `prepare` and `data preview` run it themselves unless HF_HUB_OFFLINE is set), \
             or point HF_HUB_CACHE or HF_HOME at the cache that holds it",
            root.display()
        )
    };
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let reference = folder.join("refs").join(revision);
        if !reference.is_file() {
            return Err(missing(format!(
                "{}",
                reference.strip_prefix(root).unwrap_or(&reference).display()
            )));
        }
        let bytes = read_ref(&reference)?;
        let commit = bytes.trim().to_string();
        if !is_commit(&commit) {
            bail!(
                "`{}` does not hold a commit hash (it holds {commit:?})",
                reference.display()
            );
        }
        commit
    };
    let snapshot = folder.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(missing(format!(
            "{}",
            snapshot.strip_prefix(root).unwrap_or(&snapshot).display()
        )));
    }
    Ok(snapshot)
}

/// The command that fetches `name` into the cache, as words.
pub fn fetch_command(name: &str, kind: RepoKind) -> Vec<String> {
    let (repo, revision) = split_name(name);
    let mut words = vec!["hf".to_string(), "download".to_string()];
    if kind == RepoKind::Dataset {
        words.extend(["--repo-type".to_string(), "dataset".to_string()]);
    }
    words.push(repo.to_string());
    if revision != "main" {
        words.extend(["--revision".to_string(), revision.to_string()]);
    }
    words
}

/// `name` split into repository and revision (default `main`).
fn split_name(name: &str) -> (&str, &str) {
    match name.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, rev),
        _ => (name, "main"),
    }
}

/// Whether `HF_HUB_OFFLINE` forbids downloads (`1`, `true`, `yes`, `on`).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Brings `name` into the environment's cache unless it is there: runs
/// `hf download …` (progress on standard error) and resolves it again.
/// Offline, without the `hf` command, or when the download fails, the error
/// says so and names the command.
pub fn download(name: &str, kind: RepoKind) -> Result<PathBuf> {
    if let Ok(dir) = resolve(name, kind) {
        return Ok(dir);
    }
    let (repo, revision) = split_name(name);
    check_repo_id(repo)?;
    check_revision(revision)?;
    let words = fetch_command(name, kind);
    let shown = words.join(" ");
    if offline() {
        bail!("`{name}` is not in the Hugging Face cache and HF_HUB_OFFLINE is set: fetch it with `{shown}` where the network allows");
    }
    eprintln!(
        "fetching {name} into {} with `{shown}`",
        cache_root().display()
    );
    let status = std::process::Command::new(&words[0])
        .args(&words[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .status();
    match status {
        Ok(s) if s.success() => resolve(name, kind),
        Ok(s) => bail!("`{shown}` failed ({s}): see its messages above"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{name}` is not in the Hugging Face cache, and there is no `hf` command to fetch it: \
             `pip install huggingface_hub`, then `{shown}`"
        ),
        Err(e) => bail!("could not run `{shown}`: {e}"),
    }
}

/// [`resolve_in`] the environment's cache ([`cache_root`]).
pub fn resolve(name: &str, kind: RepoKind) -> Result<PathBuf> {
    resolve_in(&cache_root(), name, kind)
}

/// How a snapshot directory of the cache is shown in tables and file
/// names: `org/name@<7 digits of the commit>` (`None` for another path).
pub fn display_name(path: &Path) -> Option<String> {
    let commit = path.file_name()?.to_str()?;
    let snapshots = path.parent()?;
    let folder = snapshots.parent()?.file_name()?.to_str()?;
    if snapshots.file_name()? != "snapshots" || !is_commit(commit) {
        return None;
    }
    let (_, repo) = folder
        .strip_prefix("models--")
        .or_else(|| folder.strip_prefix("datasets--"))
        .map(|r| ((), r))?;
    let (org, name) = repo.split_once("--")?;
    Some(format!("{org}/{name}@{}", &commit[..7]))
}

/// A `refs/<revision>` file: a 40-character commit and a newline at most.
fn read_ref(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(text)
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A Hub repository id: `org/name`, each part letters, digits, `-`, `_`,
/// `.`, not starting or ending with `-` or `.`, no `--` or `..`.
fn check_repo_id(repo: &str) -> Result<()> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    match repo.split_once('/') {
        Some((org, name)) if part_ok(org) && part_ok(name) => Ok(()),
        _ => bail!("`{repo}` is not a Hugging Face repository id (`org/name`)"),
    }
}

/// A revision that can name a `refs/` file: a branch or tag name without
/// `..`, leading `/` or control characters (a commit hash is one too).
fn check_revision(revision: &str) -> Result<()> {
    if revision.contains("..")
        || revision.starts_with('/')
        || revision.chars().any(|c| c.is_control() || c == '\\')
    {
        bail!("`{revision}` is not a revision name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A cache with `models--org--tiny` at COMMIT, `main` pointing at it.
    fn cache() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--tiny");
        std::fs::create_dir_all(repo.join("snapshots").join(COMMIT)).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        root
    }

    #[test]
    fn names_resolve_to_the_snapshot_of_their_revision() {
        let root = cache();
        let want = root.path().join("models--org--tiny/snapshots").join(COMMIT);
        assert_eq!(
            resolve_in(root.path(), "org/tiny", RepoKind::Model).unwrap(),
            want
        );
        let pinned = format!("org/tiny@{COMMIT}");
        assert_eq!(
            resolve_in(root.path(), &pinned, RepoKind::Model).unwrap(),
            want
        );
        std::fs::write(
            root.path().join("models--org--tiny/refs/v1"),
            format!("{COMMIT}\n"),
        )
        .unwrap();
        assert_eq!(
            resolve_in(root.path(), "org/tiny@v1", RepoKind::Model).unwrap(),
            want
        );
    }

    #[test]
    fn snapshots_are_shown_by_their_name_and_short_commit() {
        let root = cache();
        let dir = resolve_in(root.path(), "org/tiny", RepoKind::Model).unwrap();
        assert_eq!(display_name(&dir).as_deref(), Some("org/tiny@0123456"));
        let data = Path::new("/c/hub/datasets--o--d-x/snapshots").join(COMMIT);
        assert_eq!(display_name(&data).as_deref(), Some("o/d-x@0123456"));
        for other in [
            "/data/train.parquet",
            "/c/models--o--x/snapshots/abc",
            "/c/x--o--y/snapshots",
        ] {
            assert_eq!(display_name(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn an_absent_name_names_the_command_that_fetches_it() {
        let root = cache();
        let e = resolve_in(root.path(), "org/other", RepoKind::Model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hf download org/other`"), "{e}");
        assert!(e.contains("models--org--other/refs/main"), "{e}");
        let e = resolve_in(root.path(), "org/tiny@v2", RepoKind::Model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hf download org/tiny --revision v2`"), "{e}");
        let e = resolve_in(root.path(), "org/tiny", RepoKind::Dataset)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`hf download --repo-type dataset org/tiny`"),
            "{e}"
        );
        let other = "f".repeat(40);
        let e = resolve_in(root.path(), &format!("org/tiny@{other}"), RepoKind::Model)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("snapshots/{other}")), "{e}");
    }

    #[test]
    fn malformed_names_refs_and_revisions_are_errors() {
        let root = cache();
        for bad in [
            "org",
            "a/b/c",
            "../x",
            "org/..",
            "-o/x",
            "o--x/y",
            "org/na me",
        ] {
            let e = resolve_in(root.path(), bad, RepoKind::Model)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a Hugging Face repository id"), "{bad}: {e}");
        }
        for bad in ["org/tiny@../../etc", "org/tiny@a\nb"] {
            let e = resolve_in(root.path(), bad, RepoKind::Model)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a revision name"), "{bad:?}: {e}");
        }
        std::fs::write(
            root.path().join("models--org--tiny/refs/main"),
            "not a commit",
        )
        .unwrap();
        let e = resolve_in(root.path(), "org/tiny", RepoKind::Model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not hold a commit hash"), "{e}");
    }
}
