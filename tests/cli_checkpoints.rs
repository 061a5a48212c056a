//! End-to-end: checkpoints as references. The checkpoint's config gives the
//! model (plan, config.toml), contradictions are errors, replacing the
//! weights in a reference directory makes new cache entries, and the
//! checkpoints lpo writes carry their special tokens and tokenizer.

mod common;
use common::{lpo, scratch, text};

use std::path::{Path, PathBuf};

fn recipe(name: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
[reference]
sft_steps = 30
sft_batch_size = 16
{extra}
[data]
list_size = 3
train_prompts = 24
[train]
steps = 3
batch_size = 4
learning_rate = 3e-3
warmup_steps = 0
checkpoint_every = 0
threads = 1
[eval]
prompts = 6
max_new_tokens = 5
every = 0
"#
    )
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The one run directory of recipe `name`.
fn run_dir(dir: &Path, name: &str) -> PathBuf {
    let runs = common::run_dirs(&dir.join("results").join(name));
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// (chosen_reward, rejected_reward) of step 0 in metrics.csv.
fn step0_rewards(run: &Path) -> (f64, f64) {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let get = |name: &str| -> f64 {
        let i = header.iter().position(|h| h == name).unwrap();
        row[i].parse().unwrap()
    };
    assert_eq!(get("step"), 0.0);
    (get("chosen_reward"), get("rejected_reward"))
}

fn sweep(dir: &Path, file: &str) {
    let out = lpo(dir, &["sweep", file]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The checkpoint lpo wrote: special tokens, generation config, tokenizer.
fn check_written_checkpoint(ckpt: &Path) {
    let config = json(&ckpt.join("config.json"));
    assert_eq!(
        (
            &config["bos_token_id"],
            &config["eos_token_id"],
            &config["pad_token_id"]
        ),
        (&1.into(), &2.into(), &0.into()),
        "{config}"
    );
    assert_eq!(
        json(&ckpt.join("generation_config.json"))["eos_token_id"],
        2
    );
    assert_eq!(
        json(&ckpt.join("tokenizer_config.json"))["eos_token"],
        "<EOS>"
    );
    assert_eq!(json(&ckpt.join("tokenizer.json"))["model"]["type"], "BPE");
}

/// `mine/`: config.json and weights of the cached SFT reference.
fn copy_of_the_sft_reference(dir: &Path) -> PathBuf {
    let reference = std::fs::read_dir(dir.join("results/_cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("reference-")
        })
        .expect("the SFT reference in the cache");
    let mine = dir.join("mine");
    std::fs::create_dir(&mine).unwrap();
    // A checkpoint goes with its tokenizer (the SFT reference saves the
    // character tokenizer as tokenizer.json).
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(reference.join(file), mine.join(file)).unwrap();
    }
    mine
}

#[test]
fn a_checkpoint_reference_gives_the_model_and_its_weights_enter_the_cache_ids() {
    let dir = scratch("checkpoint-reference");
    // An SFT run: its reference and its trained policy are two models of one shape.
    std::fs::write(dir.join("sft.toml"), recipe("sft", "")).unwrap();
    sweep(&dir, "sft.toml");
    let sft_run = run_dir(&dir, "sft");
    let ckpt = sft_run.join("checkpoint");
    check_written_checkpoint(&ckpt);
    let mine = copy_of_the_sft_reference(&dir);

    // The plan shows the checkpoint's model; a contradicting field is exit 2.
    std::fs::write(dir.join("a.toml"), recipe("a", "checkpoint = \"mine\"")).unwrap();
    let out = lpo(&dir, &["plan", "a.toml", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let model = &plan["runs"][0]["config"]["model"];
    assert_eq!(
        (&model["layers"], &model["d_model"]),
        (&2.into(), &64.into()),
        "{model}"
    );
    assert!(model.get("size").is_none(), "{model}");
    let out = lpo(&dir, &["plan", "a.toml", "--set", "model.layers=3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`model.layers` is 3") && stderr.contains("num_hidden_layers = 2"),
        "{stderr}"
    );

    sweep(&dir, "a.toml");
    let a = run_dir(&dir, "a");
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(
        config.contains("layers = 2") && !config.contains("\nsize ="),
        "{config}"
    );
    let first = json(&a.join("summary.json"));
    let (chosen, rejected) = step0_rewards(&a);
    assert!(
        chosen.abs() < 1e-5 && rejected.abs() < 1e-5,
        "{chosen} {rejected}"
    );

    // New weights in the same directory (same config): new reference id,
    // new lists, and the policy starts equal to the new reference.
    std::fs::copy(
        ckpt.join("model.safetensors"),
        mine.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(dir.join("b.toml"), recipe("b", "checkpoint = \"mine\"")).unwrap();
    sweep(&dir, "b.toml");
    let b = run_dir(&dir, "b");
    let (chosen, rejected) = step0_rewards(&b);
    assert!(
        chosen.abs() < 1e-5 && rejected.abs() < 1e-5,
        "{chosen} {rejected}"
    );
    let second = json(&b.join("summary.json"));
    assert_ne!(first["reference"], second["reference"]);
    assert_ne!(first["lists"], second["lists"]);
    // Run `a`, complete against the old weights, is not silently reused.
    let out = lpo(&dir, &["run", "a.toml", "--index", "0"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("its weights or config changed"), "{stderr}");
    // The digests were remembered: one per file hashed, the checkpoint's
    // two weight files (old and new bytes) and each file of the cached SFT
    // reference (its manifest holds their digests), never one twice.
    let cache = dir.join("results/_cache");
    let reference_files: usize = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("reference-")
        })
        .map(|p| std::fs::read_dir(p).unwrap().count())
        .sum();
    let hashed = std::fs::read_dir(cache.join("file-sha256"))
        .unwrap()
        .count();
    assert_eq!(hashed, 2 + reference_files);
}
