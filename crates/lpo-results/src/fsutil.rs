//! Atomic writes and advisory locks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A temporary name next to `path` (same directory, so rename is atomic).
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Removes the temporaries ([`temporary_sibling`]) in `dir` whose writing
/// process is gone: a write killed before its rename leaves one behind (a
/// whole model copy, for a cached reference). A temporary of a live process
/// is kept; so is any other file. Returns what was removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let Some(pid) = temporary_pid(&path) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if alive {
            continue;
        }
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.with_context(|| format!("removing stale temporary {}", path.display()))?;
        removed.push(path);
    }
    Ok(removed)
}

/// The writer's pid of a temporary name `.<name>.tmp<pid>`.
fn temporary_pid(path: &Path) -> Option<i32> {
    let name = path.file_name()?.to_str()?;
    let (_, pid) = name.strip_prefix('.')?.rsplit_once(".tmp")?;
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename.
/// Readers see the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = temporary_sibling(path);
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    publish(&tmp, path)
}

/// Makes the finished temporary file `tmp` durable (fsync) and renames it
/// onto `path`: after a power loss `path` is the old file or the whole new
/// one, never a name pointing at unwritten data.
pub fn publish(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// The largest configuration file lpo reads whole (a recipe, a
/// `config.json`, an index, an adapter config): far above any real one.
pub const MAX_CONFIG_FILE: u64 = 64 << 20;

/// [`read_regular`] as UTF-8 text, bounded by [`MAX_CONFIG_FILE`].
pub fn read_config_text(path: &Path) -> Result<String> {
    let bytes = read_regular(path, MAX_CONFIG_FILE)?;
    String::from_utf8(bytes)
        .with_context(|| format!("failed to read `{}`: not UTF-8 text", path.display()))
}

/// The metadata of `path` if it is a regular file after following links,
/// checked before it is opened: opening a FIFO waits for a writer, and
/// `/dev/zero` never ends.
pub fn regular_file(path: &Path) -> Result<std::fs::Metadata> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "failed to read `{}`: not a regular file",
        path.display()
    );
    Ok(meta)
}

/// Reads `path` whole if it is a regular file (after following links) of
/// at most `limit` bytes: the one way lpo reads a configuration, tokenizer
/// or recipe file, so `/dev/zero`, a FIFO or a runaway file is an error
/// naming the path instead of a hang or an unbounded allocation.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = regular_file(path)?;
    anyhow::ensure!(
        meta.len() <= limit,
        "failed to read `{}`: {} bytes, more than the {limit} lpo reads from such a file",
        path.display(),
        meta.len()
    );
    let file = File::open(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: never read past the bound.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= limit,
        "failed to read `{}`: it grew past {limit} bytes while being read",
        path.display()
    );
    Ok(bytes)
}

/// An exclusive advisory lock (`flock`) on a file, released when dropped or
/// when the process dies, even by SIGKILL, so no lock outlives its holder.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock, or returns `None` at once if another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = open_lock_file(path)?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(FileLock {
                _file: file,
                path: path.to_path_buf(),
            }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(err).with_context(|| format!("locking {}", path.display()))
        }
    }

    /// Takes the lock, waiting for the holder to release it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = open_lock_file(path)?;
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock {
                    _file: file,
                    path: path.to_path_buf(),
                });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some process holds the lock at `path`, found without creating
    /// the file or taking any lock (a read of `/proc/locks`), so read-only
    /// commands such as `lpo status` never make a writer's `try_acquire` fail.
    pub fn is_held(path: &Path) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let dev = meta.dev();
        let id = format!(
            "{:02x}:{:02x}:{}",
            libc::major(dev),
            libc::minor(dev),
            meta.ino()
        );
        let locks = std::fs::read_to_string("/proc/locks").context("reading /proc/locks")?;
        Ok(locks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked
            // waiters carry a "->" marker and hold nothing.
            fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str())
        }))
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_regular_refuses_special_files_and_files_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("a.json");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(read_regular(&small, 2).unwrap(), b"{}");
        let e = read_regular(&small, 1).unwrap_err().to_string();
        assert!(e.contains("a.json") && e.contains("2 bytes"), "{e}");
        let e = format!(
            "{:#}",
            read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err()
        );
        assert!(
            e.contains("/dev/zero") && e.contains("not a regular file"),
            "{e}"
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = format!("{:#}", read_regular(&link, 1 << 20).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = format!("{:#}", read_regular(&fifo, 1 << 20).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            read_regular(&dir.path().join("none"), 9).unwrap_err()
        );
        assert!(e.contains("none"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A writer that has exited: a child process we waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale_file = dir.path().join(format!(".lists-x.jsonl.tmp{dead}"));
        let stale_dir = dir.path().join(format!(".reference-x.tmp{dead}"));
        let live = temporary_sibling(&dir.path().join("summary.json"));
        let other = dir.path().join("notes.tmp123");
        std::fs::write(&stale_file, b"half").unwrap();
        std::fs::create_dir(&stale_dir).unwrap();
        std::fs::write(stale_dir.join("model.safetensors"), b"half").unwrap();
        std::fs::write(&live, b"being written").unwrap();
        std::fs::write(&other, b"not ours").unwrap();
        let mut removed = remove_stale_temporaries(dir.path()).unwrap();
        removed.sort();
        let mut expected = vec![stale_file.clone(), stale_dir.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(live.exists() && other.exists());
        assert!(remove_stale_temporaries(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn holders_are_seen_without_creating_or_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        assert!(!FileLock::is_held(&path).unwrap());
        assert!(!path.exists(), "is_held created the lock file");
        let lock = FileLock::try_acquire(&path).unwrap().unwrap();
        assert!(FileLock::is_held(&path).unwrap());
        drop(lock);
        assert!(!FileLock::is_held(&path).unwrap());
        // Checking does not lock: a writer can take it right after.
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_held_lock_refuses_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let first = FileLock::try_acquire(&path).unwrap().expect("free");
        // flock locks belong to open file descriptions: a second open conflicts
        // even within one process.
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}
