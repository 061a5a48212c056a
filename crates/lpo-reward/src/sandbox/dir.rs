//! The private directory of one run.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use super::runner::nonce;

/// The private directory of one run: 0700, owned by the sandbox uid,
/// removed on drop (whatever the program did to its permissions).
pub(super) struct SandboxDir {
    pub(super) path: PathBuf,
}

impl SandboxDir {
    pub(super) fn create(owner: Option<u32>) -> Result<SandboxDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base =
            fs::canonicalize(std::env::temp_dir()).context("resolving the temp directory")?;
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "lpo-sandbox-{}-{n}-{}",
                std::process::id(),
                nonce()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = SandboxDir { path };
                    if let Some(uid) = owner {
                        std::os::unix::fs::chown(&dir.path, Some(uid), Some(uid))
                            .context("giving the sandbox directory to the sandbox uid")?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("creating a sandbox directory in {}", base.display())
                    })
                }
            }
        }
        bail!(
            "could not create a unique sandbox directory in {}",
            base.display()
        )
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.path).is_err() {
            make_removable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Gives the owner rwx on every directory below `path` (a program may have
/// removed them).
fn make_removable(path: &Path) {
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_removable(&entry.path());
            }
        }
    }
}
