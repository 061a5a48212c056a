//! End-to-end: one run over two ranks (data parallelism on Gloo). `--nproc 2`
//! and ranks started by hand from torchrun's variables train what one
//! process with `train.grad_accum = 2` trains; a rank killed mid-run makes
//! the other fail within 60 s naming it, and a rerun resumes.

mod common;
use common::{lpo, run_dirs, scratch, small_recipe, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// 8 lists a step in 2 micro-batches; 40 eval prompts x 8 samples, so the
/// evaluation's generation (64 rows a chunk) and KL passes (32 prompts a
/// chunk) have chunks on both ranks.
fn recipe(steps: u32, checkpoint_every: u32) -> String {
    small_recipe("dp", steps, checkpoint_every, "every = 5", "")
        .replace("batch_size = 4", "batch_size = 8\ngrad_accum = 2")
        .replace("prompts = 12", "prompts = 40")
}

/// `lpo run r.toml --index 0 --results RESULTS` as rank `rank` of 2, from
/// torchrun's environment variables.
fn rank(dir: &Path, results: &str, rank: usize, port: u16) -> Child {
    rank_with(dir, results, rank, port, &[])
}

/// [`rank`] with more arguments.
fn rank_with(dir: &Path, results: &str, rank: usize, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args([
            "run",
            "r.toml",
            "--index",
            "0",
            "--no-bars",
            "--results",
            results,
        ])
        .args(extra)
        .current_dir(dir)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn the_run(results: &Path) -> PathBuf {
    let runs = run_dirs(&results.join("dp"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap()
}

/// Every column of every row of a CSV file, as numbers where they parse.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-30)
}

/// Two CSV files hold the same rows, numbers to 1e-5 relative.
fn assert_same_csv(a: &Path, b: &Path, skip: &[usize]) {
    let (ra, rb) = (csv_rows(a), csv_rows(b));
    assert_eq!(ra.len(), rb.len(), "{} vs {}", a.display(), b.display());
    for (x, y) in ra.iter().zip(&rb) {
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            if skip.contains(&i) {
                continue;
            }
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) => assert!(close(p, q), "{}: {u} vs {v}", a.display()),
                _ => assert_eq!(u, v, "{}", a.display()),
            }
        }
    }
}

/// Name → f32 values of a safetensors file (F32 tensors only).
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(String, Vec<f32>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, t)| {
            assert_eq!(t["dtype"], "F32", "{name}");
            let (s, e) = (
                t["data_offsets"][0].as_u64().unwrap(),
                t["data_offsets"][1].as_u64().unwrap(),
            );
            let values = data[s as usize..e as usize]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name.clone(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let scale = va.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        for (x, y) in va.iter().zip(vb) {
            assert!(((x - y).abs() / scale) <= 1e-5, "{na}: {x} vs {y}");
        }
    }
}

/// The files of two runs that must agree: losses and gradient norms per
/// step (timing.csv's seconds are not compared), curves, evaluation, weights.
fn assert_same_run(one: &Path, two: &Path) {
    assert_same_csv(&one.join("metrics.csv"), &two.join("metrics.csv"), &[]);
    for file in ["curves.csv", "heldout.csv", "eval.csv"] {
        assert_same_csv(&one.join(file), &two.join(file), &[]);
    }
    assert_same_weights(
        &one.join("checkpoint/model.safetensors"),
        &two.join("checkpoint/model.safetensors"),
    );
}

/// Runs `recipe` (as `dir/r.toml`) in one process (results `one/`) and on
/// two ranks with `--nproc 2` (results `two/`); both must succeed. Returns
/// the two run directories.
fn alone_and_on_two_ranks(dir: &Path, recipe: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    for (results, extra) in [("one", &[][..]), ("two", &["--nproc", "2"][..])] {
        let mut args = vec![
            "run",
            "r.toml",
            "--index",
            "0",
            "--no-bars",
            "--results",
            results,
        ];
        args.extend(extra);
        let out = lpo(dir, &args);
        assert!(out.status.success(), "{results}: {}", text(&out.stderr));
    }
    (the_run(&dir.join("one")), the_run(&dir.join("two")))
}

#[test]
fn two_ranks_train_what_one_process_accumulating_two_micro_batches_trains() {
    let dir = scratch("dp-equal");
    let (one, two) = alone_and_on_two_ranks(&dir, &recipe(20, 10));
    assert_eq!(
        one.file_name(),
        two.file_name(),
        "the run id does not depend on N"
    );
    let rows = csv_rows(&one.join("metrics.csv"));
    assert_eq!(rows.len(), 20);
    // The run trains: losses move and gradients flow.
    let losses: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(losses.iter().any(|&l| l > 0.1), "{losses:?}");
    assert_same_run(&one, &two);
    assert_eq!(summary(&two)["status"], "complete");
    assert_eq!(summary(&two)["ranks"], 2);
    assert!(summary(&one).get("ranks").is_none());

    // Ranks started by hand from torchrun's variables: the same run.
    let port = free_port();
    let ranks: Vec<Child> = (0..2).map(|r| rank(&dir, "env", r, port)).collect();
    for (r, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {r}: {}", text(&out.stderr));
        if r == 1 {
            assert!(
                out.stdout.is_empty(),
                "rank 1 reports nothing: {}",
                text(&out.stdout)
            );
        }
    }
    assert_same_run(&one, &the_run(&dir.join("env")));
}

#[test]
fn rank_variables_that_describe_no_group_and_batches_ranks_cannot_share_are_refused() {
    let dir = scratch("dp-refused");
    std::fs::write(dir.join("r.toml"), recipe(20, 10)).unwrap();
    // A rank asked to start ranks, and variables that describe no group,
    // are refused before anything runs.
    for (vars, says) in [
        (
            vec![("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")],
            "already rank 0 of a group of 2",
        ),
        (
            vec![("RANK", "0"), ("WORLD_SIZE", "two"), ("MASTER_PORT", "1")],
            "WORLD_SIZE=\"two\" is not a whole number",
        ),
        (
            vec![("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")],
            "rank 2 is not below the world size 2",
        ),
        (
            vec![("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "99999")],
            "is not a TCP port",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lpo"))
            .args([
                "run",
                "r.toml",
                "--index",
                "0",
                "--results",
                "bad",
                "--nproc",
                "2",
            ])
            .current_dir(&dir)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {stderr}");
        assert!(stderr.contains(says), "{vars:?}: {stderr}");
    }
    assert!(!dir.join("bad").exists());
    // Counts that are not counts.
    for bad in [
        ["--nproc", "0"],
        ["--nproc=-2", "--no-bars"],
        ["--dist-timeout", "0"],
        ["--nproc", "2;touch pwned"],
    ] {
        let mut args = vec!["run", "r.toml", "--index", "0", "--results", "bad"];
        args.extend(bad);
        let out = lpo(&dir, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        let flag = bad[0].split('=').next().unwrap();
        assert!(stderr.contains(flag), "{bad:?}: {stderr}");
    }
    assert!(!dir.join("bad").exists() && !dir.join("pwned").exists());

    // A grad_accum the ranks cannot share is refused before anything runs.
    let out = lpo(
        &dir,
        &[
            "run",
            "r.toml",
            "--index",
            "0",
            "--results",
            "odd",
            "--nproc",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("multiple of the number of ranks"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("odd/dp").exists() || run_dirs(&dir.join("odd/dp")).is_empty());
}

#[test]
fn on_policy_rounds_on_two_ranks_train_what_one_process_trains() {
    let dir = scratch("dp-rounds");
    let recipe = recipe(6, 0).replace(
        "[train]\n",
        "[train]\nrounds = 2\nreference_update = \"round\"\n",
    );
    let (one, two) = alone_and_on_two_ranks(&dir, &recipe);
    assert_eq!(csv_rows(&one.join("metrics.csv")).len(), 12);
    assert_eq!(summary(&two)["round_lists"].as_array().unwrap().len(), 2);
    assert_same_run(&one, &two);
}

#[test]
fn lora_with_dropout_on_two_ranks_draws_the_masks_one_process_draws() {
    let dir = scratch("dp-lora");
    let recipe = recipe(6, 0)
        + "[model.lora]\nrank = 4\ndropout = 0.2\ntargets = [\"q_proj\", \"v_proj\", \"up_proj\"]\n";
    let (one, two) = alone_and_on_two_ranks(&dir, &recipe);
    assert_same_csv(&one.join("metrics.csv"), &two.join("metrics.csv"), &[]);
    assert_same_csv(&one.join("eval.csv"), &two.join("eval.csv"), &[]);
    assert_same_weights(
        &one.join("checkpoint/adapter_model.safetensors"),
        &two.join("checkpoint/adapter_model.safetensors"),
    );
}

/// The run under `family` once it has a checkpoint at step `step` or later.
fn checkpointed(family: &Path, step: u64) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no checkpoint within 5 minutes");
        let runs = run_dirs(family);
        if let Some(saved) = runs.first().and_then(|r| common::checkpoint_step(r)) {
            if saved >= step {
                return runs[0].clone();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_rank_is_named_by_the_other_once_the_timeout_passes() {
    let dir = scratch("dp-hang");
    std::fs::write(dir.join("r.toml"), recipe(400, 5)).unwrap();
    let port = free_port();
    let timeout = ["--dist-timeout", "15"];
    let mut ranks: Vec<Child> = (0..2)
        .map(|r| rank_with(&dir, "results", r, port, &timeout))
        .collect();
    let run = checkpointed(&dir.join("results/dp"), 10);
    // SIGSTOP: rank 1 stays alive, its connections open, and answers nothing.
    let pid = ranks[1].id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = Instant::now();
    let out = ranks.remove(0).wait_with_output().unwrap();
    let waited = stopped.elapsed();
    let _ = ranks[0].kill();
    let _ = ranks[0].wait();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        waited < Duration::from_secs(60),
        "rank 0 took {waited:?}: {stderr}"
    );
    assert!(stderr.contains("rank 1 of 2 does not answer"), "{stderr}");
    assert_eq!(summary(&run)["status"], "failed");
}

#[test]
fn a_killed_rank_is_named_by_the_other_within_a_minute_and_a_rerun_resumes() {
    let dir = scratch("dp-kill");
    std::fs::write(dir.join("r.toml"), recipe(400, 5)).unwrap();
    let port = free_port();
    let mut ranks: Vec<Child> = (0..2).map(|r| rank(&dir, "results", r, port)).collect();
    let run = checkpointed(&dir.join("results/dp"), 10);
    ranks[1].kill().unwrap(); // SIGKILL
    ranks[1].wait().unwrap();
    let killed = Instant::now();
    let rank0 = ranks.remove(0);
    let out = rank0.wait_with_output().unwrap();
    let waited = killed.elapsed();
    let stderr = text(&out.stderr) + &text(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        waited < Duration::from_secs(60),
        "rank 0 took {waited:?}: {stderr}"
    );
    assert!(stderr.contains("rank 1 of 2 does not answer"), "{stderr}");
    let s = summary(&run);
    assert_eq!(s["status"], "failed", "{s}");
    assert!(s["error"].as_str().unwrap().contains("rank 1 of 2"), "{s}");
    let saved = common::checkpoint_step(&run).unwrap();
    assert!((10..400).contains(&saved), "{saved}");

    // Ranks that would resume from different steps (rank 1 sees another
    // results directory, without the checkpoint) stop before training.
    let port = free_port();
    let ranks = [
        rank(&dir, "results", 0, port),
        rank(&dir, "elsewhere", 1, port),
    ];
    for (r, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr) + &text(&out.stdout);
        assert!(!out.status.success(), "rank {r}: {stderr}");
        assert!(
            stderr.contains("rank(s) 1 of 2 run a different checkpoint (the step to resume from)"),
            "rank {r}: {stderr}"
        );
    }
    assert_eq!(common::checkpoint_step(&run), Some(saved));

    // A rerun (here with --nproc 2) resumes from the checkpoint and completes.
    let out = lpo(
        &dir,
        &["run", "r.toml", "--index", "0", "--no-bars", "--nproc", "2"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = summary(&run);
    assert_eq!(s["status"], "complete", "{s}");
    assert!(s["resumed_from"].as_u64().unwrap() >= saved, "{s}");
    assert_eq!(csv_rows(&run.join("metrics.csv")).len(), 400);
}
