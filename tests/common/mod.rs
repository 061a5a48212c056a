//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A nano recipe small enough for seconds on a CPU: `eval_extra` lines go in
/// its `[eval]` section and `sweep` in its `[sweep]`.
pub fn small_recipe(
    name: &str,
    steps: u32,
    checkpoint_every: u32,
    eval_extra: &str,
    sweep: &str,
) -> String {
    format!(
        r#"
name = "{name}"
[reference]
sft_steps = 30
sft_batch_size = 16
[data]
list_size = 3
train_prompts = 32
[train]
steps = {steps}
batch_size = 4
learning_rate = 1e-3
warmup_steps = 2
checkpoint_every = {checkpoint_every}
threads = 1
[eval]
prompts = 12
max_new_tokens = 5
{eval_extra}
[sweep]
{sweep}
"#
    )
}

/// Runs the `lpo` binary in `dir`.
pub fn lpo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Lossy UTF-8 of a command's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory under the target's test scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `lpo ARGS` in `dir`, polls `ready` every few milliseconds until it
/// returns something (at most 10 minutes), then kills the process with
/// SIGKILL and returns what `ready` found (`None` at the deadline).
pub fn kill_when<T>(dir: &Path, args: &[&str], mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let found = loop {
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
        if let Some(found) = ready() {
            break Some(found);
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    found
}

/// The step of the newest checkpoint of `run`, if one is saved.
pub fn checkpoint_step(run: &Path) -> Option<u64> {
    let bytes = std::fs::read(run.join("checkpoint/state.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["step"].as_u64()
}

/// The run directories of one recipe's results (`results/<name>/`), sorted;
/// none while it does not exist yet. A Slurm sweep's `slurm/` folder is not
/// a run.
pub fn run_dirs(family: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(family) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "slurm"))
        .collect();
    dirs.sort();
    dirs
}

/// Copies the tree `from` to `to` (files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Whether `error` (a summary's error, a status line) says the loss or the
/// gradient norm became non-finite at `step` (`None`: at some step). Which
/// of the two and whether NaN or inf depends on the CPU's summation order.
pub fn diverged_at(error: &str, step: Option<u64>) -> bool {
    let at = step.map_or_else(|| " at step ".to_string(), |s| format!(" at step {s}"));
    ["loss", "gradient norm"].iter().any(|what| {
        ["NaN", "inf", "-inf"]
            .iter()
            .any(|value| error.contains(&format!("{what} is {value}{at}")))
    })
}
