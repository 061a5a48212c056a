//! End-to-end: reproducible mode (`train.reproducible`, `--reproducible`)
//! gives byte-identical metrics.csv and eval.csv whichever kernels the CPU
//! would pick: ATen's capability (`ATEN_CPU_CAPABILITY`), MKL's and
//! oneDNN's instruction sets are varied the way other x86-64 CPUs vary
//! them. Issue 29.

mod common;
use common::{lpo, run_dirs, scratch, text};

use std::path::Path;
use std::process::Command;

/// No `train.threads`: reproducible mode computes with one thread unless
/// told otherwise, whichever default the executor would pick.
const RECIPE: &str = r#"
name = "repro"
[reference]
sft_steps = 40
sft_batch_size = 16
[data]
list_size = 3
train_prompts = 32
[train]
steps = 40
batch_size = 4
learning_rate = 1e-3
warmup_steps = 2
[eval]
prompts = 12
samples = 2
max_new_tokens = 5
every = 0
"#;

/// Kernel choices of three kinds of x86-64 CPU: this one's own, an AVX2
/// one's, and one with no AVX (ATen's `default` kernels).
const CPUS: [&[(&str, &str)]; 3] = [
    &[],
    &[
        ("ATEN_CPU_CAPABILITY", "avx2"),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
        ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ],
    &[
        ("ATEN_CPU_CAPABILITY", "default"),
        ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2"),
        ("ONEDNN_MAX_CPU_ISA", "SSE41"),
    ],
];

/// Runs `lpo args` in `dir` with `env` set (and the mode's own variables
/// cleared, as on a fresh shell).
fn lpo_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .env_remove("LPO_REPRODUCIBLE")
        .env_remove("MKL_CBWR")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The bytes of metrics.csv and eval.csv of the one run under `results`.
fn outputs(results: &Path) -> (Vec<u8>, Vec<u8>) {
    let runs = run_dirs(&results.join("repro"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    let read = |f: &str| std::fs::read(runs[0].join(f)).unwrap();
    (read("metrics.csv"), read("eval.csv"))
}

#[test]
fn reproducible_runs_are_byte_identical_across_cpu_kernels() {
    let dir = scratch("reproducible");
    std::fs::write(dir.join("r.toml"), RECIPE).unwrap();
    std::fs::write(
        dir.join("r-on.toml"),
        format!("{RECIPE}\n").replace("[train]\n", "[train]\nreproducible = true\n"),
    )
    .unwrap();
    // The three ways in: the flag on a sweep, `--set` on a run, the key.
    let ways: [&[&str]; 3] = [
        &[
            "sweep",
            "r.toml",
            "--reproducible",
            "--jobs",
            "1",
            "--results",
        ],
        &[
            "run",
            "r.toml",
            "--set",
            "train.reproducible=true",
            "--index",
            "0",
            "--no-bars",
            "--results",
        ],
        &["run", "r-on.toml", "--index", "0", "--no-bars", "--results"],
    ];
    let mut seen = Vec::new();
    for (i, (cpu, way)) in CPUS.iter().zip(ways).enumerate() {
        let results = format!("on-{i}");
        lpo_with(&dir, cpu, &[way, &[results.as_str()]].concat());
        seen.push(outputs(&dir.join(&results)));
    }
    assert!(!seen[0].0.is_empty() && !seen[0].1.is_empty());
    for (i, other) in seen.iter().enumerate().skip(1) {
        assert!(other.0 == seen[0].0, "metrics.csv differs on CPU {i}");
        assert!(other.1 == seen[0].1, "eval.csv differs on CPU {i}");
    }

    // The same runs, out of the mode: ATen's AVX2 and baseline kernels
    // round differently, which is what the mode removes.
    if std::arch::is_x86_feature_detected!("avx2") {
        let off: Vec<_> = [1, 2]
            .into_iter()
            .map(|i| {
                let results = format!("off-{i}");
                let args = [
                    "run",
                    "r.toml",
                    "--index",
                    "0",
                    "--no-bars",
                    "--threads",
                    "1",
                ];
                lpo_with(
                    &dir,
                    CPUS[i],
                    &[&args[..], &["--results", &results]].concat(),
                );
                outputs(&dir.join(&results))
            })
            .collect();
        assert!(off[0] != off[1], "the kernels did not change the numbers");
    }

    // The mode is part of the run id: a plan with and without it differ.
    let ids = |extra: &[&str]| {
        let out = lpo(
            &dir,
            &[&["plan", "r.toml", "--format", "json"], extra].concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_ne!(ids(&[]), ids(&["--reproducible"]));
}
