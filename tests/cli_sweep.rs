//! End-to-end: `lpo sweep` and `lpo run` on the nano model: failures are
//! isolated, interrupted sweeps resume without redoing or duplicating runs,
//! and CPU runs are deterministic.
#![allow(clippy::too_many_lines)]

mod common;
use common::{checkpoint_step, kill_when, lpo, scratch, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A recipe small enough for seconds on a CPU.
fn small(steps: u32, checkpoint_every: u32, sweep: &str) -> String {
    common::small_recipe("small", steps, checkpoint_every, "", sweep)
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// The run directories of the `small` family (none before it exists).
fn run_dirs(results: &Path) -> Vec<PathBuf> {
    common::run_dirs(&results.join("small"))
}

#[test]
fn a_nan_run_fails_with_its_step_while_the_others_complete() {
    let dir = scratch("sweep-nan");
    // beta jumps to 3e38 (about the largest f32) at step 3: the loss or its
    // gradient becomes NaN or inf at the first step from there where a
    // pair's implicit rewards point the wrong way (step 4 on this project's
    // machine; the step depends on the CPU's summation order).
    let sweep = r#"zip = { "label" = ["lpo", "dpo", "broken"], "loss.kind" = ["lpo", "dpo", "dpo"], "loss.beta" = [0.1, 0.1, { kind = "step", values = [0.1, 3e38], at = [3] }] }"#;
    std::fs::write(dir.join("r.toml"), small(6, 0, sweep)).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml", "--jobs", "2"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let mut statuses = Vec::new();
    let mut failed_step = 0;
    for run in run_dirs(&dir.join("results")) {
        let s = summary(&run);
        statuses.push((
            s["label"].as_str().unwrap().to_string(),
            s["status"].as_str().unwrap().to_string(),
        ));
        if s["label"] == "broken" {
            assert_eq!(s["status"], "failed");
            let step = s["failed_step"].as_u64().unwrap();
            assert!((3..6).contains(&step), "{s}");
            failed_step = step;
            assert!(
                common::diverged_at(s["error"].as_str().unwrap(), Some(step)),
                "{s}"
            );
            // Steps before the failure are kept.
            let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
            assert_eq!(metrics.lines().count() as u64, 1 + step);
        } else {
            assert_eq!(s["status"], "complete", "{s}");
            let eval = std::fs::read_to_string(run.join("eval.csv")).unwrap();
            assert_eq!(eval.lines().count(), 1 + 12);
            assert!(run.join("checkpoint/model.safetensors").exists());
            assert!(run.join("config.toml").exists());
        }
    }
    statuses.sort();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(stderr.contains("failed"), "{stderr}");
    // `lpo status` tells the same without running anything.
    let out = lpo(&dir, &["status", "r.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(table.contains("2 of 3 runs complete"), "{table}");
    let broken = table.lines().find(|l| l.contains("broken")).unwrap();
    assert!(
        broken.contains("failed")
            && broken.contains(&format!("{failed_step}/6"))
            && common::diverged_at(broken, Some(failed_step)),
        "{broken}"
    );
}

#[test]
fn sigkill_mid_sweep_then_rerun_finishes_without_redoing_or_duplicating() {
    let dir = scratch("sweep-kill");
    std::fs::write(
        dir.join("r.toml"),
        small(
            300,
            10,
            r#"grid = { "loss.kind" = ["lpo", "dpo", "listmle"] }"#,
        ),
    )
    .unwrap();
    let results = dir.join("results");
    // Wait until one run is complete and another has a checkpoint, then kill.
    let found = kill_when(&dir, &["sweep", "r.toml"], || {
        if !results.join("small").is_dir() {
            return None;
        }
        let dirs = run_dirs(&results);
        let complete = dirs
            .iter()
            .find(|d| d.join("summary.json").exists() && summary(d)["status"] == "complete")?;
        let partial = dirs.iter().find(|d| {
            d.join("checkpoint/state.json").exists() && summary(d)["status"] == "running"
        })?;
        Some((complete.clone(), partial.clone()))
    });
    let (complete, partial) = found.expect("the sweep made no progress in 10 minutes");
    // The child `lpo run` dies with the sweep and releases the run's lock.
    let lock = partial.join(".lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if lpo_results::FileLock::try_acquire(&lock).unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the interrupted run still holds its lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let complete_before = std::fs::read(complete.join("summary.json")).unwrap();
    let eval_before = std::fs::read(complete.join("eval.csv")).unwrap();

    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dirs = run_dirs(&results);
    assert_eq!(dirs.len(), 3, "no duplicated run directories: {dirs:?}");
    // The complete run was not redone: its files are byte-identical.
    assert_eq!(
        std::fs::read(complete.join("summary.json")).unwrap(),
        complete_before
    );
    assert_eq!(
        std::fs::read(complete.join("eval.csv")).unwrap(),
        eval_before
    );
    // The interrupted run resumed from its checkpoint, and has every step once.
    let s = summary(&partial);
    assert_eq!(s["status"], "complete");
    assert!(s["resumed_from"].as_u64().unwrap() > 0, "{s}");
    let metrics = std::fs::read_to_string(partial.join("metrics.csv")).unwrap();
    let steps: Vec<u32> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (0..300).collect::<Vec<_>>());
    for d in &dirs {
        assert_eq!(summary(d)["status"], "complete");
    }
    // A third sweep has nothing to do.
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(
        text(&out.stderr).contains("(3 complete already)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn same_seed_gives_byte_identical_metrics_and_eval_on_cpu() {
    let dir = scratch("sweep-determinism");
    std::fs::write(dir.join("r.toml"), small(8, 3, "")).unwrap();
    let mut files = Vec::new();
    for results in ["a", "b"] {
        let out = lpo(
            &dir,
            &[
                "run",
                "r.toml",
                "--index",
                "0",
                "--results",
                results,
                "--no-bars",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let run = run_dirs(&dir.join(results)).remove(0);
        files.push((
            std::fs::read(run.join("metrics.csv")).unwrap(),
            std::fs::read(run.join("eval.csv")).unwrap(),
        ));
    }
    assert_eq!(files[0].0, files[1].0, "metrics.csv differs");
    assert_eq!(files[0].1, files[1].1, "eval.csv differs");
    assert_eq!(text(&files[0].0).lines().count(), 1 + 8);
}

#[test]
fn run_by_id_and_unknown_ids() {
    let dir = scratch("run-by-id");
    std::fs::write(dir.join("r.toml"), small(2, 0, "")).unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--id", "000000000000"]);
    assert_eq!(out.status.code(), Some(2)); // an unknown run is bad input (lpo_exec::exit)
    assert!(text(&out.stderr).contains("no run 000000000000 in the plan of r.toml"));
}

#[test]
fn a_label_baseline_is_run_first_and_compared_prompt_by_prompt() {
    let dir = scratch("sweep-label-baseline");
    let recipe = small(
        3,
        0,
        r#"zip = { "label" = ["lpo", "dpo"], "loss.kind" = ["lpo", "dpo"] }"#,
    )
    .replace("[eval]\n", "[eval]\nbaseline = \"dpo\"\n");
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The DPO run is the baseline itself: said, not silent.
    assert!(
        stderr.contains("(dpo) is the baseline the sweep's other runs compare with")
            && stderr.contains("it is itself compared with the reference"),
        "{stderr}"
    );
    let dirs = run_dirs(&dir.join("results"));
    let by_label = |label: &str| {
        dirs.iter()
            .find(|d| summary(d)["label"] == label)
            .unwrap()
            .clone()
    };
    let (lpo_dir, dpo_dir) = (by_label("lpo"), by_label("dpo"));
    let dpo_id = dpo_dir.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(summary(&lpo_dir)["headline"]["baseline"], dpo_id.as_str());
    // The DPO run itself is compared with the reference.
    assert_eq!(summary(&dpo_dir)["headline"]["baseline"], "reference");
    // The baseline columns of the LPO run are the DPO run's responses.
    let (lpo_rows, dpo_rows) = (eval_rows(&lpo_dir), eval_rows(&dpo_dir));
    assert!(!lpo_rows.is_empty());
    assert_eq!(lpo_rows.len(), dpo_rows.len());
    for (l, d) in lpo_rows.iter().zip(&dpo_rows) {
        assert_eq!(l["prompt_id"], d["prompt_id"]);
        assert_eq!(l["baseline_response"], d["policy_response"]);
        assert_eq!(l["baseline_reward"], d["policy_reward"]);
        assert_eq!(l["baseline_pass"], d["policy_pass"]);
    }
}

/// The rows of a run's eval.csv, each as column name -> value.
fn eval_rows(run: &Path) -> Vec<std::collections::HashMap<String, String>> {
    csv::Reader::from_path(run.join("eval.csv"))
        .unwrap()
        .deserialize()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn sampled_evaluation_uses_common_random_numbers() {
    // A policy that does not move (lr 1e-12 changes no f32 weight) samples
    // exactly what the reference samples: every prompt ties.
    let dir = scratch("sweep-crn");
    let recipe = small(2, 0, "")
        .replace("learning_rate = 1e-3", "learning_rate = 1e-12")
        .replace(
            "[eval]\n",
            "[eval]\ndecoding = \"sample\"\ntemperature = 1.5\nsamples = 3\n",
        );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = run_dirs(&dir.join("results")).remove(0);
    let rows = eval_rows(&run);
    assert_eq!(rows.len(), 12);
    let distinct: std::collections::HashSet<&str> =
        rows.iter().map(|r| r["policy_response"].as_str()).collect();
    assert!(distinct.len() > 1, "sampling should vary across prompts");
    for r in &rows {
        assert_eq!(
            r["policy_response"], r["baseline_response"],
            "policy and reference responses differ"
        );
        assert_eq!(r["policy_reward"], r["baseline_reward"]);
        assert_eq!(r["policy_kl"], "0.0");
        assert_eq!(r["outcome"], "tie");
    }
}

#[test]
fn a_run_locked_by_another_process_is_left_alone() {
    let dir = scratch("run-locked");
    std::fs::write(dir.join("r.toml"), small(2, 0, "")).unwrap();
    let plan = lpo(&dir, &["plan", "r.toml", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let id = plan["runs"][0]["id"].as_str().unwrap().to_string();
    let run_dir = dir.join("results/small").join(&id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let held = lpo_results::FileLock::try_acquire(&run_dir.join(".lock"))
        .unwrap()
        .unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--id", &id, "--no-bars"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("being written by another process"));
    assert!(!run_dir.join("summary.json").exists(), "nothing written");
    // Nothing failed: the only unfinished run is another process's (exit 3).
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("locked by another process"),
        "{}",
        text(&out.stderr)
    );
    drop(held);
    let out = lpo(&dir, &["run", "r.toml", "--id", &id, "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Child processes of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the command name: state, then parent pid.
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[test]
fn a_run_killed_by_the_os_is_marked_failed_and_resumed_by_the_next_sweep() {
    let dir = scratch("sweep-oom-kill");
    std::fs::write(dir.join("r.toml"), small(300, 10, "")).unwrap();
    let sweep = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(["sweep", "r.toml"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let results = dir.join("results");
    let deadline = Instant::now() + Duration::from_secs(300);
    let run = loop {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
        if results.join("small").is_dir() {
            if let Some(d) = run_dirs(&results)
                .into_iter()
                .find(|d| d.join("checkpoint/state.json").exists())
            {
                break d;
            }
        }
    };
    // Kill the `lpo run` child, as the kernel's out-of-memory killer would.
    let child = children_of(sweep.id());
    assert_eq!(child.len(), 1, "{child:?}");
    Command::new("kill")
        .args(["-9", &child[0].to_string()])
        .status()
        .unwrap();
    let out = sweep.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("failed: killed by a signal"),
        "{}",
        text(&out.stderr)
    );
    let s = summary(&run);
    assert_eq!(s["status"], "failed");
    assert!(
        s["error"].as_str().unwrap().contains("killed by signal 9"),
        "{s}"
    );
    // The next sweep retries it from its checkpoint.
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&run);
    assert_eq!(s["status"], "complete");
    assert!(s["resumed_from"].as_u64().unwrap() > 0, "{s}");
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn status_writes_nothing_and_takes_no_lock() {
    let dir = scratch("status-read-only");
    std::fs::write(
        dir.join("r.toml"),
        small(2, 0, r#"grid = { "loss.kind" = ["lpo", "dpo"] }"#),
    )
    .unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = run_dirs(&dir.join("results")).remove(0);
    let before = tree(&dir);
    // Another process holds the finished run's lock: status neither waits
    // for it nor takes it.
    let lock = lpo_results::FileLock::try_acquire(&run.join(".lock"))
        .unwrap()
        .unwrap();
    let out = lpo(&dir, &["status", "r.toml"]);
    // Exit 1: not every planned run is complete.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("complete") && table.contains("missing"),
        "{table}"
    );
    drop(lock);
    assert_eq!(tree(&dir), before, "lpo status created or removed files");
}

#[test]
fn stale_temporaries_of_killed_writers_are_swept() {
    let dir = scratch("stale-temporaries");
    std::fs::write(dir.join("r.toml"), small(2, 0, "")).unwrap();
    let plan = lpo(&dir, &["plan", "r.toml", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let id = plan["runs"][0]["id"].as_str().unwrap();
    // Temporaries as a SIGKILLed writer leaves them (the pid of a process
    // that has exited), in the cache and in the run directory.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let cache = dir.join("results/_cache");
    let run = dir.join("results/small").join(id);
    let stale = [
        cache.join(format!(".reference-0123.tmp{dead}")),
        run.join(format!(".summary.json.tmp{dead}")),
    ];
    for p in &stale {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"half").unwrap();
    }
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for p in &stale {
        assert!(!p.exists(), "{} survived", p.display());
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(text(&out.stderr).contains(&name), "{}", text(&out.stderr));
    }
}

#[test]
fn a_corrupt_summary_is_listed_redone_and_stops_nothing() {
    let dir = scratch("corrupt-summary");
    std::fs::write(
        dir.join("r.toml"),
        small(3, 0, r#"grid = { "loss.kind" = ["lpo", "dpo"] }"#),
    )
    .unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = run_dirs(&dir.join("results"));
    let (damaged, intact) = (&runs[0], &runs[1]);
    let metrics = std::fs::read(damaged.join("metrics.csv")).unwrap();
    let bytes = std::fs::read(damaged.join("summary.json")).unwrap();
    std::fs::write(damaged.join("summary.json"), &bytes[..bytes.len() / 2]).unwrap();

    // status and report go on with the other run and name the damaged one.
    let status = lpo(&dir, &["status", "r.toml"]);
    assert_eq!(status.status.code(), Some(1));
    let table = text(&status.stdout);
    assert!(table.contains("corrupt"), "{table}");
    let report = lpo(&dir, &["report", "r.toml"]);
    assert!(report.status.success(), "{}", text(&report.stderr));
    let printed = text(&report.stdout);
    assert!(printed.contains("corrupt summary.json"), "{printed}");
    let intact_label = summary_label(intact);
    assert!(
        printed.contains(&format!("| {intact_label} |")),
        "{printed}"
    );

    // The next sweep runs it again and heals it; the intact run is untouched.
    let intact_before = std::fs::read(intact.join("summary.json")).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(summary(damaged)["status"], "complete");
    assert_eq!(std::fs::read(damaged.join("metrics.csv")).unwrap(), metrics);
    assert_eq!(
        std::fs::read(intact.join("summary.json")).unwrap(),
        intact_before
    );
}

fn summary_label(run: &Path) -> String {
    summary(run)["label"].as_str().unwrap().to_string()
}

#[test]
fn a_checkpoint_that_lost_its_weights_falls_back_and_a_thread_change_is_warned() {
    let dir = scratch("checkpoint-fallback");
    std::fs::write(dir.join("r.toml"), small(300, 10, "")).unwrap();
    let args = [
        "run",
        "r.toml",
        "--index",
        "0",
        "--no-bars",
        "--threads",
        "1",
    ];
    let saved = kill_when(&dir, &args, || {
        let run = run_dirs(&dir.join("results")).pop()?;
        let step = checkpoint_step(&run).filter(|s| (10..300).contains(s))?;
        Some((run, step))
    });
    let (run, step) = saved.expect("no checkpoint inside the run");
    // The newest checkpoint claims to be whole but lost its weights; the
    // previous one is the only good copy.
    std::fs::rename(run.join("checkpoint"), run.join("checkpoint-old")).unwrap();
    std::fs::create_dir(run.join("checkpoint-new")).unwrap();
    std::fs::write(run.join("checkpoint-new/state.json"), r#"{"step": 250}"#).unwrap();
    let out = lpo(
        &dir,
        &[
            "run",
            "r.toml",
            "--index",
            "0",
            "--no-bars",
            "--threads",
            "2",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("checkpoint-new is unusable"), "{stderr}");
    assert!(
        stderr.contains("with 2 CPU threads, but it was trained with 1"),
        "{stderr}"
    );
    let s = summary(&run);
    assert_eq!(s["status"], "complete");
    assert_eq!(s["resumed_from"].as_u64(), Some(step), "{s}");
    assert_eq!(s["threads"], 2);
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let steps: Vec<u32> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (0..300).collect::<Vec<_>>());
    tensorboard_has_each_step_once(&run, 300);
}

/// The run's `tb/` after a resume: one event file (every CRC checked by
/// `accumulate`), each step's tags at steps 0..steps exactly once, the
/// held-out curves in strictly increasing steps, the headline at the end.
fn tensorboard_has_each_step_once(run: &Path, steps: i64) {
    let tb = run.join(lpo_track::TB_DIR);
    assert_eq!(std::fs::read_dir(&tb).unwrap().count(), 1, "one event file");
    let scalars = lpo_track::accumulate(&tb).unwrap();
    for tag in ["train/loss", "train/lr", "coef/beta", "rewards/margin"] {
        let seen: Vec<i64> = scalars[tag].iter().map(|v| v.0).collect();
        assert_eq!(seen, (0..steps).collect::<Vec<_>>(), "{tag}");
    }
    for (tag, values) in &scalars {
        assert!(values.windows(2).all(|w| w[0].0 < w[1].0), "{tag}");
    }
    assert_eq!(scalars["heldout/accuracy"].last().unwrap().0, steps);
    assert_eq!(scalars["final/win_rate"].len(), 1);
}

#[test]
fn failures_at_step_0_and_in_evaluation_are_recorded_as_such() {
    let dir = scratch("failure-points");
    // Preference pairs, never tied, so the huge beta meets a nonzero
    // difference in the first batch (tied lists would give a zero loss).
    let sweep = r#"zip = { "label" = ["base", "user"], "loss.beta" = [3e38, 0.1], "eval.baseline" = ["reference", "base"], "data.form" = ["preference", "preference"] }"#;
    std::fs::write(dir.join("r.toml"), small(3, 0, sweep)).unwrap();
    let by_label = |label: &str| {
        run_dirs(&dir.join("results"))
            .into_iter()
            .find(|d| summary(d)["label"] == label)
            .unwrap()
    };
    // beta = 3e38 (about the largest f32): the first step's gradient is NaN.
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert_eq!(out.status.code(), Some(1));
    let base = by_label("base");
    assert_eq!(summary(&base)["failed_step"], 0);
    let metrics = std::fs::read_to_string(base.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("step,round,loss,"), "{metrics:?}");
    assert_eq!(metrics.lines().count(), 1, "only the header: {metrics:?}");
    // The other run trains, then cannot be compared with the failed one:
    // its failure belongs to evaluation, not to a training step.
    let out = lpo(&dir, &["run", "r.toml", "--index", "1", "--no-bars"]);
    assert_eq!(out.status.code(), Some(1));
    let user = summary(&by_label("user"));
    assert_eq!(user["steps_done"], 3);
    assert!(user["failed_step"].is_null(), "{user}");
    assert!(
        user["error"].as_str().unwrap().starts_with("evaluation: "),
        "{user}"
    );
}

#[test]
fn runs_record_their_memory_and_one_that_cannot_fit_is_refused_before_it_starts() {
    let dir = scratch("sweep-memory");
    std::fs::write(dir.join("r.toml"), small(2, 0, "seeds = [0]")).unwrap();
    // The plan shows each run's estimate; JSON has its terms.
    let out = lpo(&dir, &["plan", "r.toml", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let estimate = &plan["runs"][0]["memory"];
    assert_eq!(estimate["device"], "cpu", "{estimate}");
    let total = estimate["total"].as_u64().unwrap();
    assert!(
        total > estimate["weights"].as_u64().unwrap() && total < 1 << 30,
        "{estimate}"
    );
    // A run measures its peak (this process's VmHWM on the CPU).
    let out = lpo(&dir, &["run", "r.toml", "--index", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&run_dirs(&dir.join("results"))[0]);
    assert_eq!(s["memory"]["estimated_bytes"].as_u64(), Some(total), "{s}");
    assert_eq!(s["memory"]["measured"], "host-peak-rss");
    let peak = s["memory"]["peak_bytes"].as_u64().unwrap();
    assert!(peak > 16 << 20, "{peak}");

    // mistral-7b in f32 at a batch of 65536 lists needs more than any
    // machine has: refused with the estimate, before any model is built or
    // file written.
    let big = small(2, 0, "seeds = [0]")
        .replace(
            "name = \"small\"",
            "name = \"big\"\n[model]\nsize = \"mistral-7b\"",
        )
        .replace("[train]\n", "[train]\ndevice = \"cpu\"\n")
        .replace("batch_size = 4", "batch_size = 65536");
    std::fs::write(dir.join("big.toml"), big).unwrap();
    let out = lpo(&dir, &["plan", "big.toml"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("warning: run"),
        "{}",
        text(&out.stderr)
    );
    for command in [
        &["run", "big.toml", "--index", "0"][..],
        &["sweep", "big.toml"][..],
    ] {
        let started = Instant::now();
        let out = lpo(&dir, command);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(
            err.contains("estimated peak memory") && err.contains("AdamW moments"),
            "{err}"
        );
        assert!(err.contains("--ignore-memory-estimate"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refused before allocating"
        );
    }
    assert!(
        !dir.join("results/big").exists(),
        "nothing written for the refused run"
    );
}

/// Activation checkpointing and packed lists (`train.packed`) train the
/// same run as the plain padded loop, to float rounding; packing enters the
/// run id (it sums in another order), checkpointing does not.
#[test]
fn activation_checkpointing_and_packed_lists_train_the_same_run() {
    let dir = scratch("sweep-checkpointing");
    std::fs::write(dir.join("r.toml"), small(4, 0, "seeds = [0]")).unwrap();
    let losses = |results: &str, sets: &[&str]| {
        let mut args = vec!["run", "r.toml", "--index", "0", "--results", results];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = lpo(&dir, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let run = run_dirs(&dir.join(results)).remove(0);
        let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
        let headers = reader.headers().unwrap().clone();
        let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (loss, norm) = (at("loss"), at("grad_norm"));
        let rows = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (
                    r[loss].parse::<f64>().unwrap(),
                    r[norm].parse::<f64>().unwrap(),
                )
            })
            .collect::<Vec<_>>();
        (rows, run.file_name().unwrap().to_owned())
    };
    let (plain, plain_id) = losses("plain", &[]);
    assert_eq!(plain.len(), 4);
    let checkpointing = "train.activation_checkpointing=true";
    for (results, sets, same_id) in [
        ("checkpointed", &[checkpointing][..], true),
        ("packed", &["train.packed=true"][..], false),
        ("both", &["train.packed=true", checkpointing][..], false),
    ] {
        let (other, id) = losses(results, sets);
        assert_eq!(id == plain_id, same_id, "{results}: {id:?} vs {plain_id:?}");
        assert_eq!(plain.len(), other.len());
        for (a, b) in plain.iter().zip(&other) {
            assert!(
                (a.0 - b.0).abs() < 1e-4 * a.0.abs().max(1.0),
                "{results}: loss {a:?} vs {b:?}"
            );
            assert!(
                (a.1 - b.1).abs() < 1e-4 * a.1.abs().max(1.0),
                "{results}: grad norm {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn a_lora_run_trains_only_its_adapters_saves_them_as_peft_and_exports_merged() {
    let dir = scratch("sweep-lora");
    let recipe = small(6, 3, "seeds = [0]").replace(
        "name = \"small\"",
        "name = \"small\"\n[model.lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q_proj\", \"v_proj\", \"down_proj\"]",
    );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--index", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = &run_dirs(&dir.join("results"))[0];
    assert_eq!(summary(run)["status"], "complete");
    // The checkpoint is PEFT's layout, naming the reference as its base.
    let ckpt = run.join("checkpoint");
    assert!(!ckpt.join("model.safetensors").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["down_proj", "q_proj", "v_proj"])
    );
    let base = PathBuf::from(config["base_model_name_or_path"].as_str().unwrap());
    assert!(
        base.join("model.safetensors").exists(),
        "{}",
        base.display()
    );
    // Exported: adapted matrices moved away from the base, everything else
    // (embeddings, norms, k/o/gate/up) is the base's, bit for bit.
    let out = lpo(&dir, &["export", run.to_str().unwrap(), "--out", "merged"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let meta: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header]).unwrap();
        let data = &bytes[8 + header..];
        meta.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| {
                let o = v["data_offsets"].as_array().unwrap();
                let (a, b) = (
                    o[0].as_u64().unwrap() as usize,
                    o[1].as_u64().unwrap() as usize,
                );
                (k.clone(), data[a..b].to_vec())
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (merged, reference) = (
        read(&dir.join("merged/model.safetensors")),
        read(&base.join("model.safetensors")),
    );
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );
    let mut changed: Vec<&String> = merged
        .iter()
        .filter(|(k, v)| reference[*k] != **v)
        .map(|(k, _)| k)
        .collect();
    changed.sort();
    let adapted = |k: &str| {
        ["q_proj", "v_proj", "down_proj"]
            .iter()
            .any(|t| k.contains(t))
    };
    assert!(!changed.is_empty());
    assert!(changed.iter().all(|k| adapted(k)), "{changed:?}");
    assert_eq!(
        changed.len(),
        2 * 3,
        "every adapted matrix of both layers moved: {changed:?}"
    );
    // Exporting onto a non-empty directory is refused.
    let out = lpo(&dir, &["export", run.to_str().unwrap(), "--out", "merged"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not empty"));

    // A copied results directory exports from its own cache, though the
    // adapters name the original's base by its absolute path.
    let copy = dir.join("copied");
    common::copy_tree(&dir.join("results"), &copy);
    std::fs::rename(dir.join("results"), dir.join("moved-away")).unwrap();
    let copied_run = copy.join(run.strip_prefix(dir.join("results")).unwrap());
    let out = lpo(
        &dir,
        &["export", copied_run.to_str().unwrap(), "--out", "merged2"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(dir.join("merged2/model.safetensors")).unwrap(),
        std::fs::read(dir.join("merged/model.safetensors")).unwrap()
    );
    // Without the cache, the error names the command that rebuilds it.
    std::fs::remove_dir_all(copy.join("_cache")).unwrap();
    let out = lpo(
        &dir,
        &["export", copied_run.to_str().unwrap(), "--out", "merged3"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the adapters' base model is gone") && stderr.contains("lpo prepare"),
        "{stderr}"
    );
}

#[test]
fn lora_dropout_under_checkpointing_is_refused_at_plan_time() {
    let dir = scratch("sweep-lora-bad");
    let recipe =
        "[model.lora]\nrank = 2\ndropout = 0.1\n[train]\nactivation_checkpointing = true\n";
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["plan", "r.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("would draw other dropout masks"),
        "{stderr}"
    );
}

#[test]
fn a_running_run_writes_its_step_metrics_before_any_checkpoint() {
    let dir = scratch("live-metrics");
    // No checkpoint before the end (checkpoint_every = 0): what reaches the
    // run directory while it trains is the live metrics.
    std::fs::write(dir.join("r.toml"), small(5000, 0, "")).unwrap();
    let args = [
        "run",
        "r.toml",
        "--index",
        "0",
        "--no-bars",
        "--threads",
        "1",
    ];
    let seen = kill_when(&dir, &args, || {
        let run = run_dirs(&dir.join("results")).pop()?;
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).ok()?;
        (metrics.lines().count() > 2).then_some((run, metrics))
    });
    let (run, metrics) = seen.expect("no metrics reached the run directory while it trained");
    assert!(!run.join("checkpoint").exists(), "a checkpoint was written");
    assert_eq!(summary(&run)["status"], "running");
    // Whole rows, steps from 0 in order (the file is replaced atomically).
    let header = metrics.lines().next().unwrap();
    assert!(header.starts_with("step,"), "{header}");
    for (i, row) in metrics.lines().skip(1).enumerate() {
        assert_eq!(row.split(',').count(), header.split(',').count(), "{row}");
        assert!(row.starts_with(&format!("{i},")), "{metrics}");
    }
}

#[test]
fn a_summary_or_plan_that_is_a_directory_is_one_corrupt_entry_not_a_stop() {
    let dir = scratch("record-dirs");
    let sweep = r#"grid = { "loss.kind" = ["lpo", "dpo"] }"#;
    std::fs::write(dir.join("r.toml"), small(4, 0, sweep)).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = run_dirs(&dir.join("results"));
    let (damaged, intact) = (&runs[0], &runs[1]);
    std::fs::remove_file(damaged.join("summary.json")).unwrap();
    std::fs::create_dir(damaged.join("summary.json")).unwrap();
    let plan = dir.join("results/small/plan.json");
    std::fs::remove_file(&plan).unwrap();
    std::fs::create_dir(&plan).unwrap();
    let intact_before = std::fs::read(intact.join("summary.json")).unwrap();

    // Status lists every run (exit 1: not all complete) instead of stopping.
    let out = lpo(&dir, &["status", "r.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("1 of 2 runs complete"), "{stdout}");
    assert!(
        stdout.contains("corrupt") && stdout.contains("not a regular file"),
        "{stdout}"
    );
    let out = lpo(&dir, &["report", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("corrupt summary.json"), "{stderr}");
    // A report of the directory reads plan.json: ignored with a warning.
    let out = lpo(&dir, &["report", "results/small"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("plan.json: not a regular file"), "{stderr}");
    // The sweep leaves the intact run alone; the damaged one cannot write
    // its summary over a directory and fails on its own.
    let out = lpo(&dir, &["sweep", "r.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("plan.json is not a regular file"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(intact.join("summary.json")).unwrap(),
        intact_before
    );
}

/// The `loss` and `grad_norm` columns of a run's metrics.csv.
fn loss_and_grad_norm(run: &Path) -> Vec<(f64, f64)> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (loss, norm) = (col("loss"), col("grad_norm"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[loss].parse().unwrap(), r[norm].parse().unwrap())
        })
        .collect()
}

#[test]
fn gradient_accumulation_splits_the_batch_without_changing_the_trajectory() {
    let dir = scratch("accumulation");
    // As TRL's tests/invariant: batch 8 in one micro-batch, or 2, 4, 8.
    // Reward lists of 3 where some lists tie throughout (no LPO term): the
    // micro-batches hold different numbers of contributing prompts.
    let sweep = r#"grid = { "train.grad_accum" = [1, 2, 4, 8] }"#;
    let recipe =
        common::small_recipe("small", 6, 0, "", sweep).replace("batch_size = 4", "batch_size = 8");
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = run_dirs(&dir.join("results"));
    assert_eq!(runs.len(), 4);
    let by_accum: Vec<(u64, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| {
            let accum = summary(r)["assignments"]["train.grad_accum"]
                .as_u64()
                .unwrap();
            (accum, loss_and_grad_norm(r))
        })
        .collect();
    let (_, whole) = by_accum.iter().find(|(a, _)| *a == 1).unwrap();
    assert_eq!(whole.len(), 6);
    for (accum, split) in &by_accum {
        for (step, (a, b)) in whole.iter().zip(split).enumerate() {
            assert!(
                (a.0 - b.0).abs() <= 1e-5 && (a.1 - b.1).abs() <= 1e-5,
                "accum {accum}, step {step}: loss {} vs {}, grad norm {} vs {}",
                b.0,
                a.0,
                b.1,
                a.1
            );
        }
    }
    // Micro-batches must split the batch evenly.
    let out = lpo(&dir, &["plan", "r.toml", "--set", "train.grad_accum=3"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("must divide train.batch_size (8)"),
        "{stderr}"
    );
}

#[test]
fn a_tampered_checkpoint_is_not_resumed_and_the_run_ends_as_an_uninterrupted_one() {
    let args = [
        "run",
        "r.toml",
        "--index",
        "0",
        "--no-bars",
        "--threads",
        "1",
    ];
    // The uninterrupted run, for comparison.
    let clean = scratch("tamper-clean");
    std::fs::write(clean.join("r.toml"), small(40, 10, "")).unwrap();
    let out = lpo(&clean, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = std::fs::read(run_dirs(&clean.join("results"))[0].join("metrics.csv")).unwrap();

    type Tamper = fn(&Path);
    let tampers: [(&str, Tamper, &str); 3] = [
        (
            "step",
            |c| std::fs::write(c.join("state.json"), r#"{"step": 99999}"#).unwrap(),
            "says step 99999, but the run has 40 steps",
        ),
        (
            "metrics",
            |c| {
                let text = std::fs::read_to_string(c.join("metrics.csv")).unwrap();
                let cut: Vec<&str> = text.lines().take(4).collect();
                std::fs::write(c.join("metrics.csv"), cut.join("\n") + "\n").unwrap();
            },
            "metrics.csv changed since the checkpoint was sealed",
        ),
        (
            "weights",
            |c| {
                let path = c.join("model.safetensors");
                let mut bytes = std::fs::read(&path).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x40; // a weight's byte, same length
                std::fs::write(&path, bytes).unwrap();
            },
            "model.safetensors changed since the checkpoint was sealed",
        ),
    ];
    for (name, tamper, reason) in tampers {
        let dir = scratch(&format!("tamper-{name}"));
        std::fs::write(dir.join("r.toml"), small(40, 10, "")).unwrap();
        let saved = kill_when(&dir, &args, || {
            let run = run_dirs(&dir.join("results")).pop()?;
            checkpoint_step(&run).filter(|s| (10..40).contains(s))?;
            Some(run)
        });
        let run = saved.expect("no checkpoint inside the run");
        let _ = std::fs::remove_dir_all(run.join("checkpoint-old"));
        let _ = std::fs::remove_dir_all(run.join("checkpoint-new"));
        tamper(&run.join("checkpoint"));
        let out = lpo(&dir, &args);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("checkpoint is unusable") && stderr.contains(reason),
            "{name}: {stderr}"
        );
        let s = summary(&run);
        assert_eq!(s["status"], "complete", "{name}");
        assert_eq!(
            s["resumed_from"],
            serde_json::Value::Null,
            "{name}: started over"
        );
        assert_eq!(
            std::fs::read(run.join("metrics.csv")).unwrap(),
            want,
            "{name}"
        );
    }
}

#[test]
fn reference_free_losses_train_without_reference_log_probs() {
    let dir = scratch("sweep-reference-free");
    let sweep = r#"grid = { "loss.kind" = ["simpo", "orpo"] }"#;
    std::fs::write(dir.join("r.toml"), small(4, 0, sweep)).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for run in run_dirs(&dir.join("results")) {
        let s = summary(&run);
        assert_eq!(s["status"], "complete", "{s}");
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 1 + 4, "{metrics}");
    }
    // The reference still samples the lists and is the evaluation's
    // baseline, but no run scored the training lists under it.
    let cache: Vec<String> = std::fs::read_dir(dir.join("results/_cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cache.iter().any(|f| f.starts_with("reference-")),
        "{cache:?}"
    );
    assert!(
        !cache.iter().any(|f| f.starts_with("reference-logps")),
        "{cache:?}"
    );
}

/// A weighted `loss.kind` (with gradient accumulation, and a reference-free
/// part beside reference ones): each step's parts go to loss_parts.csv and
/// TensorBoard, sum with their weights to the step's loss, and survive a
/// resume from a checkpoint.
#[test]
fn a_weighted_loss_logs_each_part_and_a_resume_keeps_them() {
    let dir = scratch("sweep-weighted-loss");
    let sweep = r#"zip = { "train.grad_accum" = [2], "loss.kind" = [[{ kind = "dpo", weight = 0.8 }, { kind = "bco_pair", weight = 0.2 }, { kind = "simpo", weight = 0.5 }]] }"#;
    std::fs::write(dir.join("r.toml"), small(40, 10, sweep)).unwrap();
    let args = [
        "run",
        "r.toml",
        "--index",
        "0",
        "--no-bars",
        "--threads",
        "1",
    ];
    let saved = kill_when(&dir, &args, || {
        let run = run_dirs(&dir.join("results")).pop()?;
        checkpoint_step(&run).filter(|s| (10..40).contains(s))?;
        Some(run)
    });
    let run = saved.expect("no checkpoint inside the run");
    let out = lpo(&dir, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&run);
    assert_eq!(s["status"], "complete", "{s}");
    assert!(s["resumed_from"].as_u64().is_some(), "{s}");
    assert_eq!(s["label"], "0.8*dpo+0.2*bco_pair+0.5*simpo");
    let parts = std::fs::read_to_string(run.join("loss_parts.csv")).unwrap();
    let mut lines = parts.lines();
    assert_eq!(lines.next(), Some("step,dpo,bco_pair,simpo"));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let loss_column = header.iter().position(|c| *c == "loss").unwrap();
    let mut steps = 0;
    for (row, metrics_row) in lines.zip(metrics.lines().skip(1)) {
        let v: Vec<f64> = row.split(',').map(|x| x.parse().unwrap()).collect();
        let loss: f64 = metrics_row
            .split(',')
            .nth(loss_column)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v[0], f64::from(steps), "{parts}");
        let sum = 0.8 * v[1] + 0.2 * v[2] + 0.5 * v[3];
        assert!(
            (sum - loss).abs() <= 1e-5 * loss.abs().max(1.0),
            "step {steps}: {sum} vs {loss}"
        );
        steps += 1;
    }
    assert_eq!(steps, 40, "{parts}");
    let tb = lpo_track::accumulate(&run.join("tb")).unwrap();
    let dpo: Vec<i64> = tb["loss_parts/dpo"].iter().map(|v| v.0).collect();
    assert_eq!(dpo, (0..40).collect::<Vec<i64>>());
}
