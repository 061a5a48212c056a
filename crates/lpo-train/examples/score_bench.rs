//! What scoring costs per 1,000 responses on this machine (docs/data.md,
//! "Scoring cost"): a reward model's forward passes, and code executions in
//! the sandbox.
//!
//! ```sh
//! cargo run --release -p lpo-train --example score_bench -- \
//!     [--rm-size small|base] [--rm-responses 200] [--tokens 256] \
//!     [--code-responses 1000] [--threads 2]
//! ```
//!
//! The reward model has random weights at the dimensions of a model preset
//! (`small`: 6 layers, width 256; `base`: 12 layers, width 768, vocabulary
//! 32,000) and scores `--rm-responses` sequences of `--tokens` tokens in
//! batches of 8. The code side runs the canonical solutions of
//! `data/real/humaneval/HumanEval-20.jsonl` against their tests, cycling
//! through the 20 problems, `--threads` at a time. Prints one line per
//! measurement, `LPOSCORE {json}`, with seconds per 1,000 responses.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lpo_model::reward_model::RewardModel;
use lpo_recipe::SizePreset;
use lpo_reward::sandbox::{humaneval_program, Limits, Sandbox};
use tch::{nn, Device};

struct Args {
    rm_size: SizePreset,
    rm_responses: usize,
    tokens: usize,
    code_responses: usize,
    threads: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rm_size: SizePreset::Small,
        rm_responses: 200,
        tokens: 256,
        code_responses: 1000,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rm-size" => {
                args.rm_size = match value.as_str() {
                    "small" => SizePreset::Small,
                    "base" => SizePreset::Base,
                    other => bail!("--rm-size {other}: small or base"),
                }
            }
            "--rm-responses" => args.rm_responses = value.parse()?,
            "--tokens" => args.tokens = value.parse()?,
            "--code-responses" => args.code_responses = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    tch::set_num_threads(args.threads as i32);
    reward_model(&args)?;
    code(&args)
}

/// Seconds per 1,000 sequences of a random reward model of the preset's size.
fn reward_model(args: &Args) -> Result<()> {
    let mut dims = args.rm_size.dims();
    dims.max_len = dims.max_len.max(args.tokens as u32);
    let mut config = lpo_model::Config::from_dims(&dims);
    config.pad_token_id = Some(0);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = RewardModel::new(&vs.root(), &config);
    let vocab = config.vocab_size;
    let sequences: Vec<Vec<i64>> = (0..args.rm_responses)
        .map(|i| {
            (0..args.tokens)
                .map(|t| 1 + ((i * 31 + t * 7) as i64 % (vocab - 1)))
                .collect()
        })
        .collect();
    model.scores(&sequences[..8.min(sequences.len())], 8)?; // warm-up
    let started = Instant::now();
    model.scores(&sequences, 8)?;
    let seconds = started.elapsed().as_secs_f64();
    let params: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    println!(
        "LPOSCORE {}",
        serde_json::json!({
            "what": "reward model",
            "preset": format!("{:?}", args.rm_size).to_lowercase(),
            "parameters": params,
            "tokens_per_response": args.tokens,
            "responses": args.rm_responses,
            "threads": args.threads,
            "seconds": seconds,
            "seconds_per_1000": seconds * 1000.0 / args.rm_responses as f64,
        })
    );
    Ok(())
}

/// Seconds per 1,000 sandboxed executions of HumanEval's canonical solutions.
fn code(args: &Args) -> Result<()> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/real/humaneval/HumanEval-20.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let problems: Vec<String> = text
        .lines()
        .map(|l| -> Result<String> {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Ok(humaneval_program(
                &s("prompt"),
                &s("canonical_solution"),
                &s("test"),
                &s("entry_point"),
            ))
        })
        .collect::<Result<_>>()?;
    let programs: Vec<String> = (0..args.code_responses)
        .map(|i| problems[i % problems.len()].clone())
        .collect();
    let sandbox = Sandbox::new(Limits::default())?;
    let started = Instant::now();
    let runs = sandbox.run_all(&programs, args.threads);
    let seconds = started.elapsed().as_secs_f64();
    let passed = runs.iter().filter(|r| r.passed).count();
    println!(
        "LPOSCORE {}",
        serde_json::json!({
            "what": "code",
            "responses": programs.len(),
            "passed": passed,
            "threads": args.threads,
            "isolation": sandbox.isolation().to_string(),
            "seconds": seconds,
            "seconds_per_1000": seconds * 1000.0 / programs.len() as f64,
        })
    );
    Ok(())
}
