//! End-to-end: `lpo sweep --backend slurm` against a real one-node Slurm
//! cluster started on this machine by `scripts/slurm-local.sh` (which
//! installs Debian's slurm-wlm with apt-get when it is missing), and the
//! scripts a dry run prints.
#![allow(clippy::too_many_lines)]

mod common;
use common::{checkpoint_step, run_dirs, scratch, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A nano recipe: a few seconds per run on one CPU.
fn small(name: &str, steps: u32, sweep: &str, extra: &str) -> String {
    common::small_recipe(name, steps, 2, extra, sweep)
}

/// `lpo ARGS` in `dir`, talking to the cluster of `conf`.
fn lpo(dir: &Path, conf: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap()
}

fn summary(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()
}

/// `lpo sweep RECIPE --backend slurm --cpus 1 --results RES` against the cluster.
fn sweep_on_slurm(dir: &Path, conf: &Path, recipe: &str, res: &str) -> Output {
    let args = [
        "sweep",
        recipe,
        "--backend",
        "slurm",
        "--cpus",
        "1",
        "--results",
        res,
    ];
    lpo(dir, conf, &args)
}

fn jobs(recipe_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(recipe_dir.join("slurm/jobs.json")).unwrap()).unwrap()
}

/// A one-node cluster; stopped (its jobs cancelled, its daemons killed)
/// when dropped, also when the test fails.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        // Short: the munge socket's path must fit a Unix socket address.
        let dir = std::env::temp_dir().join(format!("lpo-slurm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = Cluster {
            conf: dir.join("slurm.conf"),
            dir,
        };
        let port = 20000 + std::process::id() % 20000;
        let out = cluster.script("start", &port.to_string(), 900);
        assert!(
            out.status.success(),
            "scripts/slurm-local.sh start failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        cluster
    }

    fn script(&self, action: &str, port: &str, seconds: u32) -> Output {
        Command::new("timeout")
            .arg(seconds.to_string())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh"))
            .args([action, self.dir.to_str().unwrap()])
            .env("LPO_SLURM_PORT", port)
            .output()
            .unwrap()
    }

    fn tool(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("30")
            .arg(tool)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        text(&out.stdout) + &text(&out.stderr)
    }

    /// What the cluster and the jobs' logs say, for a failure message.
    fn diagnostics(&self, results: &Path) -> String {
        let mut s = self.tool("squeue", &["-t", "all", "-r", "-o", "%i %A %T %r"]);
        for log in ["slurmctld", "slurmd"] {
            let text = std::fs::read_to_string(self.dir.join(format!("log/{log}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s += &format!(
                "\n--- {log}.log\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        for entry in walk(results) {
            if entry.extension().is_some_and(|e| e == "out") {
                s += &format!(
                    "\n--- {}\n{}",
                    entry.display(),
                    std::fs::read_to_string(&entry).unwrap_or_default()
                );
            }
        }
        s
    }

    /// Waits until `done` holds, polling every 100 ms; panics with
    /// the cluster's state after `seconds`.
    fn wait(&self, results: &Path, what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out after {seconds} s waiting for {what}:\n{}",
                self.diagnostics(results)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("waited {:.1} s for {what}", started.elapsed().as_secs_f64());
    }

    /// Whether the queue holds no pending or running job.
    fn idle(&self) -> bool {
        self.tool("squeue", &["-h", "-o", "%i"]).trim().is_empty()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.script("stop", "0", 120);
        if !out.status.success() {
            eprintln!("stopping the cluster: {}", text(&out.stderr));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn a_sweep_on_a_local_slurm_cluster_completes_resumes_and_reports_failures() {
    let dir = scratch("slurm-sweep");
    // Four runs; the three that compare with DPO wait for its task.
    let four = small(
        "four",
        200,
        r#"grid = { "loss.kind" = ["dpo", "lpo", "listmle", "infonca"] }"#,
        "baseline = \"dpo\"",
    );
    std::fs::write(dir.join("four.toml"), four).unwrap();
    // beta jumps to 3e38 (about the largest f32) at step 3: the loss or its
    // gradient becomes NaN or inf from there.
    let broken = small(
        "broken",
        6,
        r#"zip = { "label" = ["broken"], "loss.beta" = [{ kind = "step", values = [0.1, 3e38], at = [3] }] }"#,
        "",
    );
    std::fs::write(dir.join("broken.toml"), broken).unwrap();
    let cluster = Cluster::start();
    let conf = cluster.conf.clone();
    // A results directory with a space, through every script and #SBATCH line.
    let results = dir.join("my results");
    let res = results.to_str().unwrap();
    let four_dir = results.join("four");

    let out = sweep_on_slurm(&dir, &conf, "four.toml", res);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("4 to submit"), "{stderr}");
    let record = jobs(&four_dir);
    let kinds: Vec<&str> = record["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    // prepare, then DPO (level 0), then the three compared with it (level 1).
    assert_eq!(kinds, ["prepare", "runs", "runs"], "{record}");
    let prepare = record["jobs"][0]["job"].as_str().unwrap().to_string();
    let level0 = &record["jobs"][1];
    let level1 = &record["jobs"][2];
    assert_eq!(level0["runs"].as_array().unwrap().len(), 1, "{record}");
    assert_eq!(level1["runs"].as_array().unwrap().len(), 3, "{record}");
    let dpo_task = format!(
        "{}_{}",
        level0["job"].as_str().unwrap(),
        level0["runs"][0]["index"]
    );
    assert_eq!(level0["dependency"], format!("afterany:{prepare}"));
    assert_eq!(
        level1["dependency"],
        format!("afterany:{prepare},afterok:{dpo_task}")
    );

    // Submitting again while they are queued submits nothing.
    let out = lpo(
        &dir,
        &conf,
        &["sweep", "four.toml", "--backend", "slurm", "--results", res],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("0 complete, 4 queued, 0 to submit"),
        "{stderr}"
    );
    assert_eq!(jobs(&four_dir)["jobs"].as_array().unwrap().len(), 3);

    let out = sweep_on_slurm(&dir, &conf, "broken.toml", res);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A run compared with DPO, once it has a checkpoint: requeued (as on
    // preemption or node failure), it runs again and resumes; a second one
    // is cancelled.
    let task_of = |run: &Path| {
        let id = run.file_name().unwrap().to_str().unwrap();
        let runs = level1["runs"].as_array().unwrap();
        let index = runs.iter().find(|r| r["id"] == id).unwrap()["index"].clone();
        format!("{}_{index}", level1["job"].as_str().unwrap())
    };
    let checkpointed = |except: Option<&Path>| {
        run_dirs(&four_dir).into_iter().find(|d| {
            Some(d.as_path()) != except
                && summary(d).is_some_and(|s| s["status"] == "running" && s["label"] != "dpo")
                && checkpoint_step(d).is_some()
        })
    };
    let mut requeued = None;
    cluster.wait(&results, "a level-1 run with a checkpoint", 400, || {
        requeued = checkpointed(None);
        requeued.is_some()
    });
    let requeued = requeued.unwrap();
    let requeued_task = task_of(&requeued);
    let out = cluster.tool("scontrol", &["requeue", &requeued_task]);
    assert!(out.trim().is_empty(), "{out}");
    let mut victim = None;
    cluster.wait(
        &results,
        "another level-1 run with a checkpoint",
        400,
        || {
            victim = checkpointed(Some(&requeued));
            victim.is_some()
        },
    );
    let victim = victim.unwrap();
    let victim_id = victim.file_name().unwrap().to_str().unwrap().to_string();
    let victim_task = task_of(&victim);
    let out = cluster.tool("scancel", &[&victim_task]);
    assert!(out.trim().is_empty(), "{out}");
    cluster.wait(&results, "every job to end", 400, || cluster.idle());

    // The requeued run resumed in its own task; the cancelled one is
    // interrupted; the others are complete.
    let s = summary(&requeued).unwrap();
    assert_eq!(
        s["status"],
        "complete",
        "{s}\n{}",
        cluster.diagnostics(&results)
    );
    assert!(
        s["resumed_from"].as_u64().is_some_and(|step| step > 0),
        "{s}"
    );
    let out = lpo(&dir, &conf, &["status", "four.toml", "--results", res]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("3 of 4 runs complete"), "{table}");
    assert!(
        table.contains("Slurm states from squeue, since sacct is unavailable"),
        "{table}"
    );
    let line = table.lines().find(|l| l.contains(&victim_id)).unwrap();
    assert!(
        line.contains("interrupted") && line.contains(&format!("job {victim_task} cancelled")),
        "{line}"
    );
    let line = table
        .lines()
        .find(|l| l.contains(requeued.file_name().unwrap().to_str().unwrap()))
        .unwrap();
    assert!(
        line.contains(&format!("job {requeued_task} completed")),
        "{line}"
    );
    let line = table.lines().find(|l| l.contains(" dpo ")).unwrap();
    assert!(
        line.contains("complete") && line.contains(&format!("job {dpo_task} completed")),
        "{line}"
    );

    // The failing run is reported failed, with its job id.
    let out = lpo(&dir, &conf, &["status", "broken.toml", "--results", res]);
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let broken_job = jobs(&results.join("broken"))["jobs"][1]["job"]
        .as_str()
        .unwrap()
        .to_string();
    let line = table.lines().find(|l| l.contains("broken")).unwrap();
    assert!(
        line.contains("failed")
            && common::diverged_at(line, None)
            && line.contains(&format!("job {broken_job}_0 failed")),
        "{table}"
    );

    // Sweeping again submits only the cancelled run, which resumes.
    let out = sweep_on_slurm(&dir, &conf, "four.toml", res);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("3 complete, 0 queued, 1 to submit"),
        "{stderr}"
    );
    let record = jobs(&four_dir);
    let last = record["jobs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["runs"].as_array().unwrap().len(), 1, "{record}");
    assert_eq!(last["runs"][0]["id"], victim_id.as_str());
    // Its baseline is complete: it waits for the prepare job only.
    let dependency = last["dependency"].as_str().unwrap();
    assert!(
        dependency.starts_with("afterany:") && !dependency.contains("afterok"),
        "{dependency}"
    );
    cluster.wait(&results, "the resubmitted run", 300, || cluster.idle());
    let s = summary(&victim).unwrap();
    assert_eq!(
        s["status"],
        "complete",
        "{s}\n{}",
        cluster.diagnostics(&results)
    );
    assert!(
        s["resumed_from"].as_u64().is_some_and(|step| step > 0),
        "{s}"
    );

    let out = lpo(&dir, &conf, &["status", "four.toml", "--results", res]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("4 of 4 runs complete"));
    let out = lpo(&dir, &conf, &["report", "four.toml", "--results", res]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}{}", text(&out.stderr));
    for label in ["LPO", "ListMLE", "InfoNCA"] {
        assert!(
            report.to_lowercase().contains(&label.to_lowercase()),
            "{report}"
        );
    }
    // Everything complete: nothing more to submit.
    let out = lpo(
        &dir,
        &conf,
        &["sweep", "four.toml", "--backend", "slurm", "--results", res],
    );
    assert!(
        text(&out.stderr).contains("4 complete, 0 queued, 0 to submit"),
        "{}",
        text(&out.stderr)
    );

    two_tasks_train_one_run(&dir, &cluster, &results);
    drop(cluster);
}

/// A run of two ranks (`--ntasks 2` on the one node, started with srun in
/// its array task) trains what one process accumulating two micro-batches
/// trains.
fn two_tasks_train_one_run(dir: &Path, cluster: &Cluster, results: &Path) {
    let recipe =
        small("ranks", 8, "", "").replace("batch_size = 4", "batch_size = 8\ngrad_accum = 2");
    std::fs::write(dir.join("ranks.toml"), recipe).unwrap();
    let res = results.to_str().unwrap();
    let args = [
        "sweep",
        "ranks.toml",
        "--backend",
        "slurm",
        "--cpus",
        "1",
        "--ntasks",
        "2",
        "--results",
        res,
    ];
    let out = lpo(dir, &cluster.conf, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = std::fs::read_to_string(results.join("ranks/slurm/runs-1-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --ntasks=2"), "{script}");
    assert!(
        script.lines().last().unwrap().starts_with("exec srun "),
        "{script}"
    );
    cluster.wait(results, "the two-task run", 300, || cluster.idle());
    let run = run_dirs(&results.join("ranks")).pop().unwrap();
    let s = summary(&run).unwrap();
    assert_eq!(
        s["status"],
        "complete",
        "{s}\n{}",
        cluster.diagnostics(results)
    );
    assert_eq!(s["ranks"], 2, "{s}");
    // The same run in one process.
    let out = lpo(
        dir,
        &cluster.conf,
        &[
            "run",
            "ranks.toml",
            "--index",
            "0",
            "--no-bars",
            "--results",
            "alone",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alone = run_dirs(&dir.join("alone/ranks")).pop().unwrap();
    let losses = |run: &Path| -> Vec<f64> {
        let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
        reader
            .records()
            .map(|r| r.unwrap()[2].parse().unwrap())
            .collect()
    };
    let (two, one) = (losses(&run), losses(&alone));
    assert_eq!(two.len(), 8);
    for (a, b) in two.iter().zip(&one) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1e-30),
            "{two:?} vs {one:?}"
        );
    }
}

#[test]
fn a_dry_run_prints_the_scripts_and_submits_nothing() {
    let dir = scratch("slurm-dry-run");
    let recipe = small(
        "dry",
        6,
        r#"grid = { "loss.kind" = ["dpo", "lpo", "listmle"] }"#,
        "baseline = \"dpo\"",
    );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = common::lpo(
        &dir,
        &[
            "sweep",
            "r.toml",
            "--backend",
            "slurm",
            "--dry-run",
            "--results",
            "a b",
            "--partition",
            "gpu",
            "--gpus",
            "1",
            "--time",
            "0:30:00",
            "--sbatch=--qos=low",
            "--set",
            "train.steps=4",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let results = dir.join("a b");
    assert!(!results.exists(), "a dry run wrote {}", results.display());
    let logs = results.join("dry/slurm/logs");
    for line in [
        format!("# {}", results.join("dry/slurm/prepare-1.sbatch").display()),
        format!("# {}", results.join("dry/slurm/runs-1-0.sbatch").display()),
        format!("# {}", results.join("dry/slurm/runs-1-1.sbatch").display()),
        format!("#SBATCH --output=\"{}/prepare-%j.out\"", logs.display()),
        format!("#SBATCH --output=\"{}/run-%A_%a.out\"", logs.display()),
        "#SBATCH --array=0".into(),
        "#SBATCH --array=1-2".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --gpus=1".into(),
        "#SBATCH --time=0:30:00".into(),
        "#SBATCH --qos=low".into(),
        "#SBATCH --requeue".into(),
        "# submitted as: sbatch --parsable (job id: PREPARE)".into(),
        "# submitted as: sbatch --parsable --dependency=afterany:PREPARE --kill-on-invalid-dep=yes (job id: ARRAY1)".into(),
        "# submitted as: sbatch --parsable --dependency=afterany:PREPARE,afterok:ARRAY1_0 --kill-on-invalid-dep=yes (job id: ARRAY2)".into(),
        "dry run: 3 job(s) for 3 of 3 runs; nothing submitted".into(),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in:\n{stdout}");
    }
    let exec = format!(
        "--results '{}' --set train.steps=4 --no-bars",
        results.display()
    );
    assert!(stdout.contains(&exec), "{stdout}");
    // Each task runs the run it was submitted for, by id.
    assert!(
        stdout.contains(" run ") && stdout.contains(" --id \"$id\" "),
        "{stdout}"
    );
    assert!(!stdout.contains("--index"), "{stdout}");
    let plan = common::lpo(
        &dir,
        &[
            "plan",
            "r.toml",
            "--format",
            "json",
            "--set",
            "train.steps=4",
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for (index, run) in plan["runs"].as_array().unwrap().iter().enumerate() {
        let line = format!("    {index}) id={} ;;", run["id"].as_str().unwrap());
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    // Slurm options need the Slurm backend.
    let out = common::lpo(&dir, &["sweep", "r.toml", "--partition", "gpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("need --backend slurm"),
        "{}",
        text(&out.stderr)
    );
}

/// Each run's id and label in the plan of `recipe` in `dir`, by plan index.
fn planned(dir: &Path, recipe: &str) -> Vec<(String, String)> {
    let out = common::lpo(dir, &["plan", recipe, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (field("id"), field("label"))
        })
        .collect()
}

#[test]
fn a_task_whose_run_left_the_edited_recipe_runs_nothing_and_a_moved_one_runs_itself() {
    let dir = scratch("slurm-edited");
    let recipe = |kinds: &str| {
        small(
            "edited",
            4,
            &format!(r#"grid = {{ "loss.kind" = [{kinds}] }}"#),
            "",
        )
    };
    std::fs::write(dir.join("r.toml"), recipe(r#""dpo", "lpo""#)).unwrap();
    let before = planned(&dir, "r.toml");
    let out = slurm_sweep(&dir, &["--dry-run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // The run array: one level, tasks 0 (dpo) and 1 (lpo).
    let script = stdout
        .split("#!/bin/bash\n")
        .find(|s| s.contains("#SBATCH --array=0-1\n"))
        .unwrap();
    let script = format!(
        "#!/bin/bash\n{}",
        &script[..script.find("\n# submitted as").unwrap()]
    );
    for (task, (id, _)) in before.iter().enumerate() {
        assert!(
            script.contains(&format!("    {task}) id={id} ;;\n")),
            "{script}"
        );
    }
    std::fs::write(dir.join("runs.sbatch"), &script).unwrap();
    let task = |id: &str| {
        Command::new("bash")
            .arg("runs.sbatch")
            .current_dir(&dir)
            .env("SLURM_ARRAY_JOB_ID", "77")
            .env("SLURM_ARRAY_TASK_ID", id)
            .output()
            .unwrap()
    };

    // The recipe is edited while the array is queued: index 0 is now lpo,
    // and dpo is gone.
    std::fs::write(dir.join("r.toml"), recipe(r#""lpo", "listmle""#)).unwrap();
    let after = planned(&dir, "r.toml");
    assert_eq!(after[0], before[1], "{after:?}");
    assert!(after.iter().all(|(id, _)| *id != before[0].0), "{after:?}");

    // Task 0 was submitted for dpo: it refuses, naming the run and why,
    // and writes nothing (neither lpo, now at index 0, nor anything else).
    let out = task("0");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let dpo = &before[0].0;
    assert!(
        stderr.contains(&format!(
            "error: Slurm task 77_0 was submitted for run {dpo}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("changed since submission"), "{stderr}");
    assert!(stderr.contains("Nothing was run"), "{stderr}");
    assert!(
        !dir.join("res").exists(),
        "a refused task wrote under the results"
    );

    // `lpo run --id` by hand says the same without the Slurm task.
    let out = common::lpo(&dir, &["run", "r.toml", "--id", dpo, "--results", "res"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: no run {dpo} in the plan of r.toml (2 runs)"
        )),
        "{stderr}"
    );
    let out = common::lpo(&dir, &["run", "r.toml", "--index", "2", "--results", "res"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        !dir.join("res").exists(),
        "an unknown run wrote under the results"
    );

    // A task id the array was not submitted with runs nothing either.
    let out = task("2");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!dir.join("res").exists());

    // Task 1 was submitted for lpo, which moved to index 0: it runs lpo,
    // and only lpo.
    let out = task("1");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let runs = run_dirs(&dir.join("res/edited"));
    let lpo_dir = dir.join("res/edited").join(&before[1].0);
    assert_eq!(runs, std::slice::from_ref(&lpo_dir), "{stderr}");
    let s = summary(&lpo_dir).unwrap();
    assert_eq!(s["status"], "complete", "{s}");
}

#[test]
fn runs_after_lpo_prepare_write_the_same_bytes_as_runs_without_it() {
    let dir = scratch("slurm-prepare");
    let recipe = small("prep", 8, r#"grid = { "loss.kind" = ["dpo", "lpo"] }"#, "");
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = common::lpo(&dir, &["sweep", "r.toml", "--results", "alone"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = common::lpo(
        &dir,
        &["prepare", "r.toml", "--results", "prepared", "--no-bars"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // Both runs share one data setting: prepared once.
    assert!(
        stdout.contains("1 data setting(s) of 2 runs ready"),
        "{stdout}"
    );
    let cache = dir.join("prepared/_cache");
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for kind in ["reference-", "lists-", "reference-logps-"] {
        assert!(
            entries
                .iter()
                .any(|e| e.starts_with(kind) && !e.ends_with(".lock")),
            "{entries:?}"
        );
    }
    let out = common::lpo(&dir, &["sweep", "r.toml", "--results", "prepared"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let alone = run_dirs(&dir.join("alone/prep"));
    let prepared = run_dirs(&dir.join("prepared/prep"));
    assert_eq!(alone.len(), 2);
    for (a, p) in alone.iter().zip(&prepared) {
        assert_eq!(a.file_name(), p.file_name());
        for file in ["metrics.csv", "eval.csv", "heldout.csv"] {
            let (x, y) = (
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(p.join(file)).unwrap(),
            );
            assert!(
                x == y,
                "{} differs after lpo prepare",
                p.join(file).display()
            );
        }
    }
}

/// `lpo sweep r.toml --backend slurm --results res ARGS` in `dir`.
fn slurm_sweep(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sweep", "r.toml", "--backend", "slurm", "--results", "res"];
    args.extend_from_slice(extra);
    common::lpo(dir, &args)
}

#[test]
fn slurm_values_that_would_leave_their_sbatch_line_exit_2_and_write_nothing() {
    let dir = scratch("slurm-injection");
    let recipe = small("inj", 4, r#"grid = { "loss.kind" = ["dpo", "lpo"] }"#, "");
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    for (flag, value) in [
        ("--partition", "gpu\ntouch pwned"),
        ("--account", "lab\ntouch pwned"),
        ("--time", "4:00:00\ntouch pwned"),
        ("--mem", "16G\rtouch pwned"),
        ("--sbatch", "--qos=high\ntouch pwned"),
        ("--sbatch", "--qos=high\n#SBATCH --wrap=touch pwned"),
        // Not an option: sbatch would read it as the script's argument.
        ("--sbatch", "touch pwned"),
    ] {
        for dry in [true, false] {
            let arg = format!("{flag}={value}");
            let mut extra = vec![arg.as_str()];
            if dry {
                extra.push("--dry-run");
            }
            let out = slurm_sweep(&dir, &extra);
            let stderr = text(&out.stderr);
            let what = format!("{flag} {value:?} (dry run: {dry})");
            assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
            assert!(
                stderr.contains(&format!("error: {flag} \"")),
                "{what}: {stderr}"
            );
            assert!(text(&out.stdout).is_empty(), "{what} printed a script");
            assert!(!dir.join("res").exists(), "{what} wrote under the results");
            assert!(!dir.join("pwned").exists(), "{what} ran a command");
        }
    }
    let out = slurm_sweep(&dir, &["--gpus", "4", "--dry-run"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--gpus 4: one process uses one device") && stderr.contains("use --gpus 1"),
        "{stderr}"
    );
    // Ranks a run's task cannot hold, or values that are not counts: exit 2,
    // named, nothing written or submitted.
    for (extra, says) in [
        (&["--ntasks", "0"][..], "--ntasks 0: give at least 1"),
        (
            &["--nodes", "3", "--ntasks", "2"][..],
            "cannot fill 3 nodes",
        ),
        (
            &["--ntasks", "4", "--gpus-per-node", "1"][..],
            "need one GPU each",
        ),
        (&["--ntasks", "2;touch pwned"][..], "--ntasks"),
        (&["--gpus-per-node=-1"][..], "--gpus-per-node"),
    ] {
        let out = slurm_sweep(&dir, extra);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(
            !dir.join("res").exists(),
            "{extra:?} wrote under the results"
        );
        assert!(!dir.join("pwned").exists(), "{extra:?} ran a command");
    }
    // A results directory an #SBATCH line cannot carry: refused, not written.
    let quoted = "res\"q";
    let out = common::lpo(
        &dir,
        &["sweep", "r.toml", "--backend", "slurm", "--results", quoted],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("#SBATCH line cannot carry"), "{stderr}");
    assert!(!dir.join(quoted).exists());
    assert!(!dir.join("res").exists());
}

/// A word as the scripts quote it for the shell (`slurm::sh_quote`).
fn sh_quoted(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    match plain {
        true => word.to_string(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

#[test]
fn legitimate_values_and_hostile_paths_reach_sbatch_and_the_shell_intact() {
    let dir = scratch("slurm-quoting");
    let recipe = "r $(touch pwned); `touch pwned` 'q'.toml";
    std::fs::write(dir.join(recipe), small("quoted", 4, "", "")).unwrap();
    let results = "res $(touch pwned) 'x' #1";
    let label = "a $(touch pwned)";
    let set = format!("label={label}");
    let out = common::lpo(
        &dir,
        &[
            "sweep",
            recipe,
            "--backend",
            "slurm",
            "--dry-run",
            "--results",
            results,
            "--time",
            "4:00:00",
            "--mem",
            "16G",
            "--sbatch=--constraint=a100",
            "--partition",
            "gpu,debug",
            "--account",
            "my lab",
            "--sbatch",
            "--comment=run #1",
            "--gpus",
            "1",
            "--set",
            &set,
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let logs = dir.join(results).join("quoted/slurm/logs");
    let output = logs.to_str().unwrap().replace('#', "\\#");
    for line in [
        "#SBATCH --time=4:00:00".to_string(),
        "#SBATCH --mem=16G".into(),
        "#SBATCH --constraint=a100".into(),
        "#SBATCH --partition=gpu,debug".into(),
        "#SBATCH --account=\"my lab\"".into(),
        "#SBATCH --comment=\"run \\#1\"".into(),
        "#SBATCH --gpus=1".into(),
        format!("#SBATCH --output=\"{output}/run-%A_%a.out\""),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    // Each script, run by bash with lpo replaced by printf: every word
    // arrives intact, and nothing else runs.
    let exec = format!("exec {} ", sh_quoted(env!("CARGO_BIN_EXE_lpo")));
    let scripts: Vec<&str> = stdout.split("#!/bin/bash\n").skip(1).collect();
    assert_eq!(scripts.len(), 2, "{stdout}");
    for script in scripts {
        let end = script.find("\n# submitted as").unwrap();
        let script = &script[..end];
        assert!(script.contains(&exec), "{script}");
        let out = Command::new("bash")
            .arg("-c")
            .arg(script.replace(&exec, "exec printf '%s\\n' "))
            .current_dir(&dir)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let words = text(&out.stdout);
        let words: Vec<&str> = words.lines().collect();
        assert_eq!(words[1], dir.join(recipe).to_str().unwrap(), "{words:?}");
        let at = words.iter().position(|w| *w == "--results").unwrap();
        assert_eq!(words[at + 1], dir.join(results).to_str().unwrap());
        assert!(words.contains(&set.as_str()), "{words:?}");
    }
    assert!(!dir.join("pwned").exists(), "a script ran a command");
    assert!(!dir.join(results).exists(), "a dry run wrote");
}
