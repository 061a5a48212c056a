//! lpo's side of the sampling benchmark (`scripts/bench/cpu_bench.sh` runs
//! it beside `scripts/bench/torch_peer.py --mode sample`): K sampled
//! responses (temperature 1, top-p 1) of `--max-new-tokens` tokens to each of
//! `--batch` prompts of a native JSONL file, with the checkpoint in `--ckpt`,
//! through the generation path reward lists are sampled with.
//!
//! ```sh
//! cargo run --release -p lpo-train --example sample_bench -- \
//!     --ckpt DIR --data FILE [--batch 8] [--k 4] [--max-new-tokens 64] \
//!     [--steps 5] [--warmup 1] [--threads 1]
//! ```
//!
//! Prints one line, `LPOSAMPLE {json}`, with the median wall-clock and CPU
//! seconds of the timed calls. Rows never stop early (no end token), so
//! both sides produce the same number of tokens.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lpo_data::tokenizer::{CharTokenizer, Tokenize};
use lpo_model::generate::{generate_k, Decoding, GenerateOptions};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::Device;

struct Args {
    ckpt: PathBuf,
    data: PathBuf,
    batch: usize,
    k: usize,
    max_new_tokens: usize,
    steps: usize,
    warmup: usize,
    threads: i32,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        ckpt: PathBuf::new(),
        data: PathBuf::new(),
        batch: 8,
        k: 4,
        max_new_tokens: 64,
        steps: 5,
        warmup: 1,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag} {value}"))
        };
        match flag.as_str() {
            "--ckpt" => args.ckpt = value.into(),
            "--data" => args.data = value.into(),
            "--batch" => args.batch = number()?,
            "--k" => args.k = number()?,
            "--max-new-tokens" => args.max_new_tokens = number()?,
            "--steps" => args.steps = number()?,
            "--warmup" => args.warmup = number()?,
            "--threads" => args.threads = number()? as i32,
            _ => bail!("unknown flag {flag}"),
        }
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    Ok(args)
}

/// The prompts of a native JSONL file, encoded as lpo encodes them.
fn prompts(path: &PathBuf) -> Result<Vec<Vec<i64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let tokenizer = CharTokenizer;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line)?;
            let prompt = record["prompt"].as_str().context("a prompt")?;
            tokenizer
                .encode_prompt(&[], prompt)
                .map_err(anyhow::Error::msg)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let a = parse_args()?;
    tch::set_num_threads(a.threads);
    let (_vs, model) = lpo_model::checkpoint::load(&a.ckpt, Device::Cpu)?;
    let all = prompts(&a.data)?;
    if all.len() < a.batch {
        bail!(
            "{} has {} prompts, fewer than --batch",
            a.data.display(),
            all.len()
        );
    }
    let options = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        eos: -1, // never produced: every row runs to max_new_tokens
        pad: CharTokenizer.pad(),
        decoding: Decoding::Sample {
            temperature: 1.0,
            top_p: 1.0,
        },
    };
    let mut rng = StdRng::seed_from_u64(0);
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for step in 0..a.warmup + a.steps {
        let start = (step * a.batch) % (all.len() - a.batch + 1);
        // K rows per prompt, prompt-major, as reward lists are sampled.
        let prompts = &all[start..start + a.batch];
        let (t0, c0) = (Instant::now(), lpo_torch::process_cpu_seconds());
        let out = generate_k(&model, prompts, a.k, &options, &mut rng);
        let (dt, dc) = (
            t0.elapsed().as_secs_f64(),
            lpo_torch::process_cpu_seconds() - c0,
        );
        let tokens: usize = out.iter().map(Vec::len).sum();
        if tokens != a.batch * a.k * a.max_new_tokens {
            bail!("generated {tokens} tokens, expected every row to run to the end");
        }
        if step >= a.warmup {
            wall.push(dt);
            cpu.push(dc);
        }
    }
    println!(
        "LPOSAMPLE {}",
        serde_json::json!({
            "threads": tch::get_num_threads(),
            "steps": wall.len(),
            "median_s": median(wall.clone()),
            "median_cpu_s": median(cpu),
            "min_s": wall.iter().copied().fold(f64::INFINITY, f64::min),
            "tokens_per_call": a.batch * a.k * a.max_new_tokens,
        })
    );
    Ok(())
}
