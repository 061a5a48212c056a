//! The results directory: where every artefact of a sweep lives.
//!
//! ```text
//! results/
//!   _cache/reference-<id>/      SFT reference checkpoint (shared by runs)
//!   _cache/lists-<id>.jsonl     generated reward lists (native format)
//!   <recipe name>/<run id>/     one run (see results/README.md)
//! ```
//!
//! Every file is written atomically ([`write_atomic`]); concurrent writers
//! are kept apart with `flock` ([`FileLock`]).

pub mod cache;
pub mod file_hash;
mod fsutil;
pub mod records;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use fsutil::{
    publish, read_config_text, read_regular, regular_file, remove_stale_temporaries,
    temporary_sibling, write_atomic, FileLock, MAX_CONFIG_FILE,
};
pub use records::{
    CurveRow, EvalRecord, Headline, HeldoutHeadline, HeldoutRecord, MetricsRow, Outcome,
    PlanRecord, PlannedEntry, RecordFile, RewardSummary, Split, Status, Summary, SummaryFile,
    TimingRow, Timings, Truncation,
};

/// Paths inside a results root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (usually `results/`).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Shared, content-addressed artefacts.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("_cache")
    }

    /// A cached reference model directory.
    pub fn reference_dir(&self, id: &str) -> PathBuf {
        self.cache_dir().join(format!("reference-{id}"))
    }

    /// A cached reward-list dataset.
    pub fn lists_file(&self, id: &str) -> PathBuf {
        self.cache_dir().join(format!("lists-{id}.jsonl"))
    }

    /// A cache entry's file (`<kind>-<id>.<ext>`) and the lock guarding its creation.
    pub fn cache_entry(&self, kind: &str, id: &str, ext: &str) -> (PathBuf, PathBuf) {
        (
            self.cache_dir().join(format!("{kind}-{id}.{ext}")),
            self.cache_lock(&format!("{kind}-{id}")),
        )
    }

    /// Lock guarding the creation of a cache entry.
    pub fn cache_lock(&self, entry: &str) -> PathBuf {
        self.cache_dir().join(format!("{entry}.lock"))
    }

    /// All runs of a recipe family.
    pub fn recipe_dir(&self, recipe: &str) -> PathBuf {
        self.root.join(recipe)
    }

    /// One run.
    pub fn run_dir(&self, recipe: &str, run_id: &str) -> PathBuf {
        self.recipe_dir(recipe).join(run_id)
    }
}

/// A stable content identity: 16 hex digits of the SHA-256 of `value`'s JSON.
/// Struct fields serialize in declaration order and maps should be ordered
/// (`BTreeMap`), so equal values give equal ids across runs and machines.
pub fn content_id(domain: &str, value: &impl Serialize) -> String {
    let json = serde_json::to_vec(value).expect("identity values serialize");
    sha256_hex(&[domain.as_bytes(), &[0], &json], 8)
}

/// Lower-case hex of the first `bytes` bytes of the SHA-256 of `parts`
/// concatenated: the one hash-to-text helper behind content ids, run ids,
/// evaluation keys and file digests.
pub fn sha256_hex(parts: &[&[u8]], bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()[..bytes.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A u64 seed derived from a base seed and a purpose, so data sampling,
/// initialisation and evaluation draw independent streams.
pub fn derive_seed(seed: u64, purpose: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(purpose.as_bytes());
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_the_published_digest() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(
            sha256_hex(&[b"a", b"bc"], 32),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(&[b"abc"], 4), "ba7816bf");
    }

    #[test]
    fn ids_are_stable_and_domain_separated() {
        // Expected values from Python's hashlib, independently:
        // sha256(b"reference\0" + b'["arith",3]').hexdigest()[:16] and
        // int.from_bytes(sha256((7).to_bytes(8, "little") + b"sft").digest()[:8], "little").
        let a = content_id("reference", &("arith", 3u32));
        assert_eq!(a, "a8c1dc5142a02d6d");
        assert_eq!(derive_seed(7, "sft"), 14770815365712658499);
        assert_ne!(a, content_id("lists", &("arith", 3u32)));
        assert_ne!(a, content_id("reference", &("arith", 4u32)));
        assert_ne!(derive_seed(0, "sft"), derive_seed(0, "eval"));
    }
}
