//! The one way a shared cache entry is made and read: under the entry's
//! lock, a present entry that verifies is read; anything else is computed,
//! written, and sealed with a manifest written last.
//!
//! The manifest (`<entry>.manifest.json`) records the length and SHA-256 of
//! a file entry, or of every file of a directory entry (a reference model:
//! its digests are remembered by file identity in `file-sha256/`, so an
//! unchanged multi-gigabyte file is hashed once, and any write to it, which
//! changes its status-change time, makes it hashed again). Manifests of
//! earlier versions recorded a directory's lengths only; such an entry is
//! checked by length and then sealed again with digests. An entry without a
//! manifest was never completed and is removed; one that
//! does not match its manifest (truncated, a flipped byte, a lost file) is
//! moved aside with a warning naming both paths. Either is made again: a
//! damaged cache heals instead of failing, or silently feeding wrong data
//! to, every later run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{sha256_hex, write_atomic, FileLock};

/// What a sealed entry holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Manifest {
    /// One file: its length and SHA-256.
    File { bytes: u64, sha256: String },
    /// A directory: the length of each file in it (earlier versions).
    Dir { files: BTreeMap<String, u64> },
    /// A directory: the length and SHA-256 of each file in it.
    Hashed {
        files: BTreeMap<String, (u64, String)>,
    },
}

/// The manifest path of `entry`.
pub fn manifest_path(entry: &Path) -> PathBuf {
    let name = entry
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    entry.with_file_name(format!("{name}.manifest.json"))
}

fn describe(entry: &Path) -> Result<Manifest> {
    if entry.is_dir() {
        // Digests are remembered beside the cache's entries.
        let cache_dir = entry.parent().unwrap_or(Path::new("."));
        let mut files = BTreeMap::new();
        let listing =
            std::fs::read_dir(entry).with_context(|| format!("reading {}", entry.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("reading {}", entry.display()))?;
            let meta = item
                .metadata()
                .with_context(|| format!("reading {}", item.path().display()))?;
            if meta.is_file() {
                let digest = crate::file_hash::sha256_file_cached(&item.path(), cache_dir)?;
                files.insert(
                    item.file_name().to_string_lossy().into_owned(),
                    (meta.len(), digest),
                );
            }
        }
        Ok(Manifest::Hashed { files })
    } else {
        let bytes = std::fs::read(entry).with_context(|| format!("reading {}", entry.display()))?;
        Ok(Manifest::File {
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&[&bytes], 32),
        })
    }
}

/// Writes `entry`'s manifest (after the entry itself is complete).
pub fn seal(entry: &Path) -> Result<()> {
    let manifest = serde_json::to_vec_pretty(&describe(entry)?)?;
    write_atomic(&manifest_path(entry), &manifest)
}

/// Whether `entry` matches its manifest; the error says how it does not.
pub fn verify(entry: &Path) -> Result<()> {
    let path = manifest_path(entry);
    let text = std::fs::read(&path).with_context(|| format!("no manifest {}", path.display()))?;
    let expected: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    let found = describe(entry)?;
    match (&expected, &found) {
        // A manifest of an earlier version: lengths only; sealed again with digests.
        (Manifest::Dir { files: lengths }, Manifest::Hashed { files }) => {
            let found: BTreeMap<String, u64> = files
                .iter()
                .map(|(n, (len, _))| (n.clone(), *len))
                .collect();
            if &found != lengths {
                bail!("{} does not match its manifest", entry.display());
            }
            seal(entry)
        }
        (Manifest::Hashed { files: want }, Manifest::Hashed { files: got }) => {
            if let Some(name) = want
                .keys()
                .chain(got.keys())
                .find(|n| want.get(*n) != got.get(*n))
            {
                bail!(
                    "{} does not match its manifest ({name} differs)",
                    entry.display()
                );
            }
            Ok(())
        }
        _ if found != expected => bail!("{} does not match its manifest", entry.display()),
        _ => Ok(()),
    }
}

/// Moves a damaged `entry` (and its manifest) aside to a free
/// `<entry>.damaged-<n>` name; returns where it went.
fn move_aside(entry: &Path) -> Result<PathBuf> {
    let name = entry
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let aside = (1..)
        .map(|n| entry.with_file_name(format!("{name}.damaged-{n}")))
        .find(|p| !p.exists())
        .expect("a free name");
    std::fs::rename(entry, &aside)
        .with_context(|| format!("moving {} to {}", entry.display(), aside.display()))?;
    let _ = std::fs::remove_file(manifest_path(entry));
    Ok(aside)
}

fn remove(entry: &Path) -> Result<()> {
    if entry.is_dir() {
        std::fs::remove_dir_all(entry)
    } else {
        std::fs::remove_file(entry)
    }
    .with_context(|| format!("removing {}", entry.display()))
}

/// The cache entry at `entry`, guarded by `lock`: read with `read` when it
/// is present and verifies; else (moving a damaged one aside) made with
/// `make`, which writes the entry and returns its value, then sealed.
pub fn cached<T>(
    entry: &Path,
    lock: &Path,
    read: impl FnOnce(&Path) -> Result<T>,
    make: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let _lock = FileLock::acquire(lock)?;
    if entry.exists() {
        if !manifest_path(entry).exists() {
            // A write that never finished (killed before sealing): nothing
            // to inspect, so it goes.
            remove(entry)?;
            eprintln!(
                "warning: cache entry {} was never completed; removed it and making it again",
                entry.display()
            );
        } else if let Err(why) = verify(entry) {
            let aside = move_aside(entry)?;
            eprintln!(
                "warning: cache entry {} is damaged ({why:#}); moved it to {} and making it again",
                entry.display(),
                aside.display()
            );
        } else {
            return read(entry);
        }
    }
    let value = make(entry)?;
    seal(entry)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn lines(entry: &Path, made: &Cell<u32>) -> Result<String> {
        let lock = entry.with_extension("lock");
        cached(
            entry,
            &lock,
            |p| Ok(std::fs::read_to_string(p)?),
            |p| {
                made.set(made.get() + 1);
                let text = "a 1\nb 2\n".to_string();
                write_atomic(p, text.as_bytes())?;
                Ok(text)
            },
        )
    }

    #[test]
    fn entries_are_made_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("lists-x.jsonl");
        let made = Cell::new(0);
        assert_eq!(lines(&entry, &made).unwrap(), "a 1\nb 2\n");
        assert_eq!(lines(&entry, &made).unwrap(), "a 1\nb 2\n");
        assert_eq!(made.get(), 1);
        assert!(manifest_path(&entry).exists());
    }

    #[test]
    fn damaged_or_unsealed_entries_are_moved_aside_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("lists-x.jsonl");
        let made = Cell::new(0);
        lines(&entry, &made).unwrap();
        // A flipped value, same length: caught by the hash.
        std::fs::write(&entry, "a 1\nb 3\n").unwrap();
        assert_eq!(lines(&entry, &made).unwrap(), "a 1\nb 2\n");
        assert_eq!(made.get(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("lists-x.jsonl.damaged-1")).unwrap(),
            "a 1\nb 3\n"
        );
        // Truncated at a line boundary.
        std::fs::write(&entry, "a 1\n").unwrap();
        lines(&entry, &made).unwrap();
        assert!(dir.path().join("lists-x.jsonl.damaged-2").exists());
        // Zero bytes and no manifest (a write killed before sealing): removed.
        std::fs::write(&entry, "").unwrap();
        std::fs::remove_file(manifest_path(&entry)).unwrap();
        assert_eq!(lines(&entry, &made).unwrap(), "a 1\nb 2\n");
        assert_eq!(made.get(), 4);
        assert!(!dir.path().join("lists-x.jsonl.damaged-3").exists());
    }

    #[test]
    fn directory_entries_check_every_file_length() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("reference-x");
        std::fs::create_dir(&entry).unwrap();
        std::fs::write(entry.join("model.safetensors"), b"weights").unwrap();
        std::fs::write(entry.join("meta.json"), b"{}").unwrap();
        seal(&entry).unwrap();
        verify(&entry).unwrap();
        std::fs::write(entry.join("model.safetensors"), b"weig").unwrap();
        assert!(verify(&entry).is_err());
        std::fs::write(entry.join("model.safetensors"), b"weights").unwrap();
        std::fs::remove_file(entry.join("meta.json")).unwrap();
        assert!(verify(&entry).is_err());
    }

    #[test]
    fn a_flipped_byte_of_the_same_length_in_a_directory_entry_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("reference-x");
        std::fs::create_dir(&entry).unwrap();
        std::fs::write(entry.join("model.safetensors"), b"weights").unwrap();
        seal(&entry).unwrap();
        verify(&entry).unwrap();
        std::fs::write(entry.join("model.safetensors"), b"weighTs").unwrap();
        let e = verify(&entry).unwrap_err().to_string();
        assert!(e.contains("model.safetensors differs"), "{e}");
        // Through `cached`: moved aside and made again.
        let lock = dir.path().join("x.lock");
        let made = cached(
            &entry,
            &lock,
            |_| Ok(false),
            |e| {
                std::fs::create_dir_all(e).unwrap();
                std::fs::write(e.join("model.safetensors"), b"weights").unwrap();
                Ok(true)
            },
        )
        .unwrap();
        assert!(made);
        assert!(dir.path().join("reference-x.damaged-1").exists());
    }

    #[test]
    fn a_manifest_of_lengths_only_is_checked_by_length_then_sealed_with_digests() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("reference-x");
        std::fs::create_dir(&entry).unwrap();
        std::fs::write(entry.join("model.safetensors"), b"weights").unwrap();
        std::fs::write(
            manifest_path(&entry),
            br#"{"kind": "dir", "files": {"model.safetensors": 7}}"#,
        )
        .unwrap();
        verify(&entry).unwrap();
        let manifest = std::fs::read_to_string(manifest_path(&entry)).unwrap();
        assert!(
            manifest.contains("\"hashed\"")
                && manifest.contains(&crate::sha256_hex(&[b"weights"], 32)),
            "{manifest}"
        );
        std::fs::write(entry.join("model.safetensors"), b"weighTs").unwrap();
        assert!(verify(&entry).is_err());
    }
}
