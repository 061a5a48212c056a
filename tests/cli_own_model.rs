//! A researcher's own checkpoint and dataset, end to end (issue 23): a
//! Qwen2 checkpoint saved by transformers 5.x (tokenizer.json, a minimal
//! tokenizer_config.json, the ChatML template in chat_template.jinja) and a
//! Hub-layout parquet dataset with train and test splits, both from
//! tests/fixtures/hf (scripts/make_hf_fixtures.py), reached by their Hub
//! names through a Hugging Face cache built on disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run_dirs, scratch, text};

const MODEL_COMMIT: &str = "1111111111111111111111111111111111111111";
const DATA_COMMIT: &str = "2222222222222222222222222222222222222222";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

/// A Hugging Face cache holding `org/tiny-qwen2` and the dataset `org/pairs`
/// at their `main` revisions, laid out as huggingface_hub lays it out.
fn hub_cache(root: &Path) -> PathBuf {
    let hub = root.join("hub");
    for (repo, commit, source) in [
        ("models--org--tiny-qwen2", MODEL_COMMIT, "qwen2-chatml"),
        ("datasets--org--pairs", DATA_COMMIT, "pairs"),
    ] {
        let dir = hub.join(repo);
        common::copy_tree(
            &fixtures().join(source),
            &dir.join("snapshots").join(commit),
        );
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), commit).unwrap();
    }
    hub
}

/// `lpo ARGS` in `dir` with the Hugging Face cache `hub`.
fn lpo(dir: &Path, hub: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_CACHE", hub)
        .output()
        .unwrap()
}

const RECIPE: &str = r#"
name = "own"
[reference]
checkpoint = "org/tiny-qwen2"
[model.lora]
rank = 4
[data]
list_size = 2
train_prompts = 0
mix = [{ path = "org/pairs", split = "train", eval_split = "test", format = "trl" }]
[train]
steps = 6
batch_size = 8
learning_rate = 1e-3
warmup_steps = 1
checkpoint_every = 3
threads = 1
[eval]
every = 3
max_new_tokens = 8
[sweep]
grid = { "loss.kind" = ["dpo", "lpo"] }
"#;

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_transformers_checkpoint_and_a_hub_dataset_go_from_plan_to_export() {
    let dir = scratch("own-model");
    let hub = hub_cache(&dir);
    std::fs::write(dir.join("own.toml"), RECIPE).unwrap();

    let out = lpo(&dir, &hub, &["plan", "own.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The checkpoint's tokenizer and template: the ids of a rendered record
    // are transformers' apply_chat_template ids.
    let out = lpo(
        &dir,
        &hub,
        &["data", "preview", "own.toml", "--tokens", "--show", "48"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let want = &expected()["checkpoints"]["qwen2-chatml"]["records"][0];
    let prompt = want["prompt"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with(&format!("prompt: {prompt:?}")))
        .unwrap_or_else(|| panic!("no list for {prompt:?} in\n{stdout}"));
    let ids: Vec<i64> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
    assert_eq!(lines[at + 1].trim(), format!("tokens: {ids:?}"));
    // Every training record once; the test split is the held-out set.
    assert!(
        stdout.contains("48 training lists, 16 held out"),
        "{stdout}"
    );

    let out = lpo(&dir, &hub, &["sweep", "own.toml"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let runs = run_dirs(&dir.join("results/own"));
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let heldout = std::fs::read_to_string(run.join("heldout.csv")).unwrap();
        let rows: Vec<&str> = heldout.lines().skip(1).collect();
        assert_eq!(rows.len(), 16, "{heldout}");
        assert!(
            rows.iter().all(|r| r.contains(",org/pairs@2222222[test],")),
            "held-out lists come from the test split:\n{heldout}"
        );
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(
            config.contains(&format!("snapshots/{MODEL_COMMIT}/tokenizer.json")),
            "the run names the checkpoint's tokenizer:\n{config}"
        );
    }

    let out = lpo(&dir, &hub, &["report", "own.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let export = dir.join("export");
    let out = lpo(
        &dir,
        &hub,
        &[
            "export",
            runs[0].to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let base = fixtures().join("qwen2-chatml");
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        assert_eq!(
            std::fs::read(export.join(name)).unwrap(),
            std::fs::read(base.join(name)).unwrap(),
            "{name} of the export equals the base's"
        );
    }
    assert!(export.join("model.safetensors").exists());
}

#[test]
fn a_checkpoint_without_tokenizer_or_an_absent_hub_name_is_exit_2() {
    let dir = scratch("own-model-bad");
    let hub = hub_cache(&dir);
    let bare = dir.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("qwen2-chatml").join(name), bare.join(name)).unwrap();
    }
    let recipe = |checkpoint: &str| RECIPE.replace("\"org/tiny-qwen2\"", checkpoint);
    std::fs::write(dir.join("bare.toml"), recipe("\"bare\"")).unwrap();
    let out = lpo(&dir, &hub, &["plan", "bare.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has no tokenizer.json") && stderr.contains("bare/tokenizer.json"),
        "{stderr}"
    );
    // With data.tokenizer the same checkpoint plans.
    let tokenizer = fixtures().join("qwen2-chatml");
    let with = recipe("\"bare\"").replace(
        "[data]\n",
        &format!(
            "[data]\ntokenizer = {:?}\n",
            tokenizer.display().to_string()
        ),
    );
    std::fs::write(dir.join("with.toml"), with).unwrap();
    let out = lpo(&dir, &hub, &["plan", "with.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // An evaluation split the dataset does not have names the splits it has.
    let no_split = RECIPE.replace("eval_split = \"test\"", "eval_split = \"validation\"");
    std::fs::write(dir.join("no-split.toml"), no_split).unwrap();
    let out = lpo(&dir, &hub, &["data", "preview", "no-split.toml"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("validation") && stderr.contains("test"),
        "{stderr}"
    );

    std::fs::write(dir.join("absent.toml"), recipe("\"org/absent\"")).unwrap();
    let out = lpo(&dir, &hub, &["plan", "absent.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`hf download org/absent`"), "{stderr}");
    // Nothing was written.
    assert!(!dir.join("results").exists());
}

/// A stand-in for huggingface_hub's `hf` command in `bin/`: it logs its
/// arguments to `hf.log` and lays `org/tiny-qwen2` into `$HF_HUB_CACHE` as
/// `hf download org/tiny-qwen2` would (any other repository: exit 1).
fn fake_hf(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixture = fixtures().join("qwen2-chatml");
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> "{log}"
[ "$1 $2" = "download org/tiny-qwen2" ] || {{ echo "404: repository not found: $*" >&2; exit 1; }}
repo="$HF_HUB_CACHE/models--org--tiny-qwen2"
mkdir -p "$repo/refs" "$repo/snapshots/{MODEL_COMMIT}"
cp "{fixture}"/* "$repo/snapshots/{MODEL_COMMIT}/"
printf {MODEL_COMMIT} > "$repo/refs/main"
"#,
        log = dir.join("hf.log").display(),
        fixture = fixture.display(),
    );
    let path = bin.join("hf");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `lpo ARGS` with the cache `hub`, `bin` first on PATH, and more variables.
fn lpo_with(dir: &Path, hub: &Path, bin: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new(env!("CARGO_BIN_EXE_lpo"))
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_CACHE", hub)
        .env("PATH", path)
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn commands_that_run_fetch_absent_hub_names_with_hf_and_plan_never_does() {
    let dir = scratch("own-model-fetch");
    let hub = hub_cache(&dir);
    std::fs::remove_dir_all(hub.join("models--org--tiny-qwen2")).unwrap();
    let bin = fake_hf(&dir);
    std::fs::write(dir.join("own.toml"), RECIPE).unwrap();
    let log = dir.join("hf.log");

    // lpo plan only reads the cache.
    let out = lpo_with(&dir, &hub, &bin, &[], &["plan", "own.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!log.exists(), "plan ran hf");
    // Offline, nothing is fetched either.
    let offline = [("HF_HUB_OFFLINE", "1")];
    let out = lpo_with(&dir, &hub, &bin, &offline, &["data", "preview", "own.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HF_HUB_OFFLINE is set"), "{stderr}");
    assert!(!log.exists(), "hf ran offline");
    // A command that runs fetches the model, then plans with it.
    let out = lpo_with(&dir, &hub, &bin, &[], &["data", "preview", "own.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("with `hf download org/tiny-qwen2`"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "download org/tiny-qwen2\n"
    );
    // Present now: not fetched again.
    let out = lpo_with(&dir, &hub, &bin, &[], &["data", "preview", "own.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);

    // A repository hf cannot fetch: its failure, then exit 2 naming the command.
    let other = RECIPE.replace("\"org/pairs\"", "\"org/missing-data\"");
    std::fs::write(dir.join("other.toml"), other).unwrap();
    let out = lpo_with(&dir, &hub, &bin, &[], &["data", "preview", "other.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("404: repository not found: download --repo-type dataset org/missing-data")
            && stderr.contains("`hf download --repo-type dataset org/missing-data` failed"),
        "{stderr}"
    );
}

#[test]
fn train_epochs_counts_the_steps_from_the_lists_and_train_steps_leaves_the_id() {
    let dir = scratch("own-model-epochs");
    let hub = hub_cache(&dir);
    let recipe = RECIPE
        .replace("steps = 6\n", "steps = 6\nepochs = 2\n")
        .replace("grid = { \"loss.kind\" = [\"dpo\", \"lpo\"] }", "");
    std::fs::write(dir.join("e.toml"), recipe).unwrap();
    let id = |extra: &str| {
        let out = lpo(
            &dir,
            &hub,
            &["plan", "e.toml", "--format", "json", "--set", extra],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["runs"][0]["id"].as_str().unwrap().to_string()
    };
    assert_eq!(id("train.steps=5"), id("train.steps=7"));
    assert_ne!(id("train.epochs=3"), id("train.epochs=2"));

    let out = lpo(&dir, &hub, &["data", "preview", "e.toml"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("one epoch over the 48 training lists is 6 optimizer steps"),
        "{stdout}"
    );
    assert!(
        stdout.contains("train.epochs = 2: 12 optimizer steps per round"),
        "{stdout}"
    );
    // Accumulation splits a step's lists; an epoch takes as many steps.
    let set = ["data", "preview", "e.toml", "--set", "train.grad_accum=2"];
    let stdout = text(&lpo(&dir, &hub, &set).stdout);
    assert!(
        stdout.contains("one epoch over the 48 training lists is 6 optimizer steps (batch_size 8 lists a step, in 2 micro-batch(es))"),
        "{stdout}"
    );
    let padding = stdout
        .lines()
        .find(|l| l.starts_with("padding in one epoch's micro-batches of 4 lists: prompts "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        padding.contains("% of ") && padding.contains(", all "),
        "{padding}"
    );
    let out = lpo(&dir, &hub, &["sweep", "e.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = &run_dirs(&dir.join("results/own"))[0];
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (&summary["steps"], &summary["steps_done"]),
        (&12.into(), &12.into())
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 12, "{metrics}");
}
