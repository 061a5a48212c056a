//! Finding the interpreter: `python3` on `PATH` and the usual system
//! locations, each resolved to the real executable.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `python3` on `PATH` first, then the usual system locations, each
/// resolved to the real executable (through pyenv-style shims).
pub(super) fn python_candidates() -> Result<Vec<PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .filter(|p| is_executable(p))
        .collect();
    if found.is_empty() {
        bail!(
            "python3 not found on PATH ({}): code rewards need a python3 interpreter",
            path.to_string_lossy()
        );
    }
    for system in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] {
        let p = PathBuf::from(system);
        if is_executable(&p) {
            found.push(p);
        }
    }
    let mut resolved: Vec<PathBuf> = Vec::new();
    let mut first_error = None;
    for candidate in found {
        match resolve_python(&candidate) {
            Ok(real) => {
                if !resolved.contains(&real) {
                    resolved.push(real);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (resolved.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        (true, None) => bail!("no usable python3 found"),
        _ => Ok(resolved),
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The real executable behind `python` (pyenv shims are shell scripts that
/// need the caller's environment), asked of the interpreter itself, with a
/// timeout.
pub(super) fn resolve_python(python: &Path) -> Result<PathBuf> {
    let mut child = Command::new(python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; sys.stdout.write(sys.executable)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not answer within 20 s", python.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    if !status.success() || out.is_empty() {
        bail!(
            "{} does not run ({status}): {}",
            python.display(),
            err.trim()
        );
    }
    let real = PathBuf::from(out);
    Ok(fs::canonicalize(&real).unwrap_or(real))
}
