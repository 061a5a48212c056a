//! Peak memory of one forward + backward pass of `response_logps`, with and
//! without activation checkpointing, each in a fresh process (the peak RSS
//! of a process only grows):
//!
//! ```sh
//! cargo run --release -p lpo-model --example checkpointing_memory
//! ```
//!
//! Prints the peak RSS above the model's own footprint for both modes and
//! their ratio. A benchmark, not a test: the numbers depend on the allocator.

use std::process::Command;

use lpo_model::logps::{checkpointed_response_logps, response_logps, Layout};
use lpo_model::{Config, Mistral};
use lpo_recipe::{ModelDims, SizePreset};
use tch::{nn, Device, Kind};

const B: usize = 16;
const K: usize = 4;
const PROMPT: usize = 32;
const RESPONSE: usize = 96;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some(mode @ ("plain" | "checkpointed")) => println!("{}", measure(mode == "checkpointed")),
        _ => compare(),
    }
}

/// Runs both modes in child processes and prints the comparison.
fn compare() {
    let exe = std::env::current_exe().expect("own path");
    let run = |mode: &str| -> u64 {
        let out = Command::new(&exe).arg(mode).output().expect("child runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("bytes")
    };
    let (plain, checkpointed) = (run("plain"), run("checkpointed"));
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "small model ({} layers), B={B} K={K} prompt {PROMPT} response {RESPONSE} tokens, f32 on the CPU",
        SizePreset::Small.dims().layers
    );
    println!(
        "peak RSS above the model, plain:        {:8.1} MiB",
        mib(plain)
    );
    println!(
        "peak RSS above the model, checkpointed: {:8.1} MiB",
        mib(checkpointed)
    );
    println!(
        "checkpointed / plain: {:.2}",
        checkpointed as f64 / plain as f64
    );
}

/// Peak RSS growth (bytes) of one pass after the model is built.
fn measure(checkpointed: bool) -> u64 {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let dims = ModelDims {
        max_len: 256,
        vocab: 512,
        ..SizePreset::Small.dims()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Mistral::new(&vs.root(), &Config::from_dims(&dims));
    let token = |i: usize| (i * 7919 % 500 + 3) as i64;
    let prompts: Vec<Vec<i64>> = (0..B)
        .map(|b| (0..PROMPT).map(|t| token(b * 31 + t)).collect())
        .collect();
    let responses: Vec<Vec<i64>> = (0..B * K)
        .map(|r| (0..RESPONSE).map(|t| token(r * 17 + t)).collect())
        .collect();
    let before = lpo_torch::memory::host_peak().expect("VmHWM");
    if checkpointed {
        let (out, recompute) =
            checkpointed_response_logps(&model, &prompts, &responses, K, 0, Layout::Padded);
        out.sum.sum(Kind::Float).backward();
        recompute.backward();
    } else {
        let out = response_logps(&model, &prompts, &responses, K, 0);
        out.sum.sum(Kind::Float).backward();
    }
    lpo_torch::memory::host_peak().expect("VmHWM") - before
}
