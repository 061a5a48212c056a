//! A run's resumable checkpoints on disk: which ones exist, and their seal.
//!
//! A checkpoint is written to `checkpoint-new/` and swapped in by renames;
//! its `state.json` is written last and seals it: the step, the CPU threads,
//! and the SHA-256 of every other file in it. A checkpoint whose files do not
//! match their seal (a flipped weight byte, a cut metrics.csv, a lost file),
//! or whose step disagrees with its own metrics, is unusable: the run falls
//! back to an older checkpoint, or starts over, instead of resuming from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The seal of a checkpoint, `state.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps taken.
    pub step: u32,
    /// CPU threads the run used: libtorch's reductions depend on it, so a
    /// resume with another count does not reproduce an uninterrupted run.
    #[serde(default)]
    pub threads: Option<i32>,
    /// SHA-256 of every other file of the checkpoint, by path relative to
    /// it (absent in checkpoints of earlier versions, which are not checked).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// The file that seals a checkpoint.
pub const STATE: &str = "state.json";

/// The largest `state.json` read (it lists a few dozen digests).
const MAX_STATE: u64 = 1 << 20;

/// The checkpoints a run directory may resume from, newest first: the
/// current one, then what a crash between the swapping renames can leave
/// (`checkpoint-new/`, whole since its state is written last, or
/// `checkpoint-old/`).
pub fn candidates(run_dir: &Path) -> Vec<PathBuf> {
    ["checkpoint", "checkpoint-new", "checkpoint-old"]
        .iter()
        .map(|name| run_dir.join(name))
        .filter(|d| d.join(STATE).exists())
        .collect()
}

/// Writes `dir/state.json` for a checkpoint whose other files are all
/// written: `step`, the threads in use and the digest of every file.
pub fn seal(dir: &Path, step: u32) -> Result<()> {
    let state = CheckpointState {
        step,
        threads: Some(tch::get_num_threads()),
        files: digests(dir)?,
    };
    lpo_results::write_atomic(&dir.join(STATE), &serde_json::to_vec(&state)?)
}

/// The seal of checkpoint `dir`, after checking that its files are the
/// ones it sealed (same names, same SHA-256).
pub fn verify(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE);
    let bytes = lpo_results::read_regular(&path, MAX_STATE)?;
    let state: CheckpointState =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    if state.files.is_empty() {
        return Ok(state); // sealed by an earlier version: nothing to check
    }
    let found = digests(dir)?;
    for (name, want) in &state.files {
        match found.get(name) {
            None => bail!("{} is missing", dir.join(name).display()),
            Some(got) if got != want => bail!(
                "{} changed since the checkpoint was sealed (SHA-256 {got}, sealed {want})",
                dir.join(name).display()
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().find(|n| !state.files.contains_key(*n)) {
        bail!(
            "{} was not part of the sealed checkpoint",
            dir.join(extra).display()
        );
    }
    Ok(state)
}

/// SHA-256 of every regular file under `dir` but the seal, by relative path.
fn digests(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let listing =
            std::fs::read_dir(&at).with_context(|| format!("reading {}", at.display()))?;
        for entry in listing {
            let path = entry
                .with_context(|| format!("reading {}", at.display()))?
                .path();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                pending.push(path);
            } else if name != STATE {
                out.insert(name, lpo_results::file_hash::sha256_file(&path)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), b"weights").unwrap();
        std::fs::write(dir.path().join("metrics.csv"), b"step,loss\n0,1\n").unwrap();
        std::fs::create_dir(dir.path().join("additional_chat_templates")).unwrap();
        std::fs::write(dir.path().join("additional_chat_templates/a.jinja"), b"x").unwrap();
        seal(dir.path(), 1).unwrap();
        dir
    }

    #[test]
    fn a_sealed_checkpoint_verifies_and_any_change_is_named() {
        let dir = checkpoint();
        let state = verify(dir.path()).unwrap();
        assert_eq!((state.step, state.files.len()), (1, 3));
        // A flipped byte of the same length.
        std::fs::write(dir.path().join("model.safetensors"), b"weighTs").unwrap();
        let e = format!("{:#}", verify(dir.path()).unwrap_err());
        assert!(e.contains("model.safetensors changed since"), "{e}");
        let dir = checkpoint();
        std::fs::write(dir.path().join("metrics.csv"), b"step,loss\n").unwrap();
        let e = format!("{:#}", verify(dir.path()).unwrap_err());
        assert!(e.contains("metrics.csv changed since"), "{e}");
        let dir = checkpoint();
        std::fs::remove_file(dir.path().join("additional_chat_templates/a.jinja")).unwrap();
        let e = format!("{:#}", verify(dir.path()).unwrap_err());
        assert!(e.contains("a.jinja is missing"), "{e}");
        let dir = checkpoint();
        std::fs::write(dir.path().join("extra.bin"), b"?").unwrap();
        let e = format!("{:#}", verify(dir.path()).unwrap_err());
        assert!(e.contains("extra.bin was not part of"), "{e}");
    }

    #[test]
    fn a_seal_of_an_earlier_version_is_read_without_digests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE), br#"{"step": 4, "threads": 2}"#).unwrap();
        let state = verify(dir.path()).unwrap();
        assert_eq!((state.step, state.threads), (4, Some(2)));
    }
}
