//! End-to-end: on-policy rounds (`train.rounds`) sample each later round's
//! lists from the policy, and a run killed mid-round resumes to the same
//! bytes as an uninterrupted one.
#![allow(clippy::too_many_lines)]

mod common;
use common::{checkpoint_step, kill_when, lpo, scratch, text};

use std::path::{Path, PathBuf};

/// Two rounds of `steps` steps each, the reference moving to the policy.
fn recipe(steps: u32) -> String {
    format!(
        r#"
name = "rounds"
[reference]
sft_steps = 30
sft_batch_size = 16
[data]
list_size = 3
train_prompts = 24
[train]
steps = {steps}
rounds = 2
reference_update = "round"
batch_size = 4
learning_rate = 1e-3
warmup_steps = 2
checkpoint_every = 10
threads = 1
[eval]
prompts = 8
samples = 2
max_new_tokens = 5
every = 50
"#
    )
}

fn run_dir(results: &Path) -> PathBuf {
    common::run_dirs(&results.join("rounds"))
        .into_iter()
        .next()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The bytes of the deterministic files of a finished run.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["metrics.csv", "curves.csv", "eval.csv", "heldout.csv"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

#[test]
fn a_run_killed_mid_round_two_resumes_to_the_same_bytes() {
    let steps = 200;
    let dir = scratch("rounds-kill");
    std::fs::write(dir.join("r.toml"), recipe(steps)).unwrap();
    let args = ["run", "r.toml", "--index", "0", "--no-bars", "--results"];

    // Uninterrupted.
    let out = lpo(&dir, &[&args[..], &["whole"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let whole = run_dir(&dir.join("whole"));
    let summary = json(&whole.join("summary.json"));
    let ids = summary["round_lists"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{summary}");
    assert_eq!(ids[0], summary["lists"]);
    assert_ne!(ids[0], ids[1], "round 2's lists are sampled anew");
    // Round 2's lists are the same prompts answered by the policy.
    let cache = dir.join("whole/_cache");
    let read = |id: &serde_json::Value| {
        let path = cache.join(format!("lists-{}.jsonl", id.as_str().unwrap()));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l.get("heldout").is_none())
            .collect::<Vec<_>>()
    };
    let (first, second) = (read(&ids[0]), read(&ids[1]));
    assert_eq!(first.len(), second.len());
    assert!(first
        .iter()
        .zip(&second)
        .all(|(a, b)| a["prompt"] == b["prompt"]));
    assert_ne!(first, second);
    // No evaluation prompt (validation or test) is a prompt of either
    // round's training lists (issue 29: test prompts unseen by training).
    let eval: Vec<lpo_results::EvalRecord> = csv::Reader::from_path(whole.join("eval.csv"))
        .unwrap()
        .deserialize()
        .map(Result::unwrap)
        .collect();
    assert_eq!(eval.len(), 8);
    for row in &eval {
        for list in first.iter().chain(&second) {
            assert_ne!(
                list["prompt"],
                row.prompt.as_str(),
                "{} is trained on",
                row.prompt
            );
        }
    }
    // metrics.csv counts rounds.
    let metrics = std::fs::read_to_string(whole.join("metrics.csv")).unwrap();
    let rounds: Vec<&str> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert!(metrics.starts_with("step,round,"));
    assert_eq!(rounds.len(), 2 * steps as usize);
    assert!(rounds[..steps as usize].iter().all(|r| *r == "0"));
    assert!(rounds[steps as usize..].iter().all(|r| *r == "1"));

    // Killed once a checkpoint inside round 2 exists, then run again.
    let killed_at = kill_when(&dir, &[&args[..], &["killed"]].concat(), || {
        let run = dir
            .join("killed/rounds")
            .read_dir()
            .ok()?
            .next()?
            .ok()?
            .path();
        checkpoint_step(&run).filter(|&step| step > u64::from(steps))
    })
    .expect("the run never reached round 2");
    assert!(
        killed_at < 2 * u64::from(steps),
        "killed only after the end"
    );
    let out = lpo(&dir, &[&args[..], &["killed"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let killed = run_dir(&dir.join("killed"));
    let resumed = json(&killed.join("summary.json"));
    assert!(
        resumed["resumed_from"].as_u64().unwrap() > u64::from(steps),
        "{resumed}"
    );
    assert_eq!(resumed["round_lists"], summary["round_lists"]);
    // Each round's training rewards, rebuilt from the cached lists on resume.
    assert_eq!(summary["round_rewards"].as_array().unwrap().len(), 2);
    assert_eq!(resumed["round_rewards"], summary["round_rewards"]);
    for ((name, a), (_, b)) in outputs(&whole).iter().zip(outputs(&killed)) {
        assert!(!a.is_empty(), "{name} is empty");
        assert!(*a == b, "{name} differs after the resume");
    }
}

#[test]
fn rounds_need_a_reward_for_every_source() {
    let dir = scratch("rounds-files");
    std::fs::write(
        dir.join("l.jsonl"),
        r#"{"prompt": "1+1=", "responses": [{"text": "2", "reward": 1}, {"text": "3", "reward": 0}]}"#,
    )
    .unwrap();
    let recipe = recipe(5).replace(
        "[data]",
        "[data]\nmix = [{ path = \"l.jsonl\", format = \"native\" }]",
    );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["plan", "r.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("train.rounds")
            && text(&out.stderr).contains("a file of scored responses"),
        "{}",
        text(&out.stderr)
    );
}
