//! SHA-256 of large files (model weights), streamed, and remembered under
//! `_cache/file-sha256/` by the file's identity on disk, so a 14 GB
//! checkpoint is read once, not by every run that uses it.
//!
//! The remembered digest is keyed by the file's canonical path, length,
//! modification and status-change times (nanoseconds), inode and device.
//! Replacing a file's bytes in any ordinary way (a copy, a move, `rsync`,
//! an editor) changes its status-change time or inode, which user programs
//! cannot set back, so a stale digest is never reused; a metadata-only
//! change (`chmod`, `touch`) just hashes the file again.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::{sha256_hex, write_atomic};

/// Lower-case hex SHA-256 of the file at `path`, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::fsutil::regular_file(path)?;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The SHA-256 of `path`, from `cache_dir/file-sha256/` when the file is
/// unchanged since it was last hashed there, else computed and remembered.
pub fn sha256_file_cached(path: &Path, cache_dir: &Path) -> Result<String> {
    let canonical = path
        .canonicalize()
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let m = std::fs::metadata(&canonical)
        .with_context(|| format!("failed to read `{}`", canonical.display()))?;
    let identity = format!(
        "{}\n{}\n{}.{}\n{}.{}\n{}\n{}",
        canonical.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
        m.dev()
    );
    let entry = cache_dir
        .join("file-sha256")
        .join(sha256_hex(&[identity.as_bytes()], 16));
    if let Ok(text) = std::fs::read_to_string(&entry) {
        let digest = text.trim();
        if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(digest.to_string());
        }
    }
    let digest = sha256_file(&canonical)?;
    let dir = cache_dir.join("file-sha256");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&entry, format!("{digest}\n").as_bytes())?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_not_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("model.safetensors");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = format!("{:#}", sha256_file(&link).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = format!("{:#}", sha256_file(&fifo).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn streamed_digest_matches_and_a_replaced_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("_cache");
        let path = dir.path().join("w.bin");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &big).unwrap();
        let want = sha256_hex(&[&big], 32);
        assert_eq!(sha256_file(&path).unwrap(), want);
        assert_eq!(sha256_file_cached(&path, &cache).unwrap(), want);
        // Remembered: the entry answers (a planted wrong digest proves it is read).
        let entries: Vec<_> = std::fs::read_dir(cache.join("file-sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1);
        std::fs::write(&entries[0], format!("{}\n", "0".repeat(64))).unwrap();
        assert_eq!(sha256_file_cached(&path, &cache).unwrap(), "0".repeat(64));
        // Same length, new bytes, put in place by a rename: hashed again.
        let mut other = big.clone();
        other[17] ^= 1;
        let tmp = dir.path().join("w.tmp");
        std::fs::write(&tmp, &other).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(
            sha256_file_cached(&path, &cache).unwrap(),
            sha256_hex(&[&other], 32)
        );
    }
}
