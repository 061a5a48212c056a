//! Reward sources on a researcher's own data (issue 24): a prompt file
//! scored by the math reward trains in on-policy rounds (full fine-tuning
//! and LoRA), each round sampling and scoring new lists, and `lpo report`
//! shows the sampled-evaluation table for the file as for a built-in task.
//! The model is the tiny random Qwen2 of tests/fixtures/hf (ChatML), so
//! this proves the machinery, not the science.

mod common;

use std::path::{Path, PathBuf};

use common::{lpo, run_dirs, scratch, text};

fn checkpoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2-chatml")
}

/// 24 prompts with one-digit answers, which the random model's samples
/// sometimes end with.
fn prompt_file(dir: &Path) {
    let lines: Vec<String> = (0..24)
        .map(|i| {
            format!(
                r#"{{"prompt": "Question {i}: what is {}?", "answer": "{}"}}"#,
                i % 10,
                (i * 7) % 10
            )
        })
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn recipe(extra: &str) -> String {
    format!(
        r#"
name = "math"
[reference]
checkpoint = "{}"
[data]
list_size = 4
train_prompts = 0
eval_fraction = 0.25
mix = [{{ path = "prompts.jsonl", format = "prompts", reward = "math" }}]
[train]
steps = 3
rounds = 2
batch_size = 6
learning_rate = 1e-3
warmup_steps = 1
threads = 1
[eval]
every = 0
samples = 4
max_new_tokens = 16
{extra}"#,
        checkpoint().display()
    )
}

/// The lists of a cache file: per list, its prompt and (text, reward) pairs.
fn read_lists(path: &Path) -> Vec<(String, Vec<(String, f64)>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let responses = v["responses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["text"].as_str().unwrap().to_string(),
                        r["reward"].as_f64().unwrap(),
                    )
                })
                .collect();
            (v["prompt"].as_str().unwrap().to_string(), responses)
        })
        .collect()
}

/// 24 records: the 4 whose prompt hashes into the 0.25 share (questions 10,
/// 11, 16 and 19; docs/data.md) are evaluation prompts, the 20 others train.
fn held_out_are_not_trained(lists: &[(String, Vec<(String, f64)>)]) {
    for held in [10, 11, 16, 19] {
        let question = format!("Question {held}:");
        assert!(
            !lists.iter().any(|l| l.0.starts_with(&question)),
            "{question} trained on"
        );
    }
}

/// Runs the recipe and checks its two rounds and its report.
fn rounds_sample_and_score_new_lists(name: &str, extra: &str) -> PathBuf {
    let dir = scratch(name);
    prompt_file(&dir);
    std::fs::write(dir.join("math.toml"), recipe(extra)).unwrap();
    let out = lpo(&dir, &["sweep", "math.toml"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run = run_dirs(&dir.join("results/math")).pop().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let ids: Vec<&str> = summary["round_lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{summary}");
    // Each round's training rewards are logged, with the solved share.
    let logged = summary["round_rewards"].as_array().unwrap();
    assert_eq!(logged.len(), 2, "{summary}");
    for round in logged {
        let r = &round["prompts.jsonl"];
        assert_eq!(r["responses"], 20 * 4, "{summary}");
        let (mean, solved) = (r["mean"].as_f64().unwrap(), r["solved"].as_f64().unwrap());
        assert!((mean - 10.0 * solved).abs() < 1e-9, "{summary}");
    }
    let cache = dir.join("results/_cache");
    let first = read_lists(&cache.join(format!("lists-{}.jsonl", ids[0])));
    let second = read_lists(&cache.join(format!("lists-{}.jsonl", ids[1])));
    assert_eq!((first.len(), second.len()), (20, 20));
    held_out_are_not_trained(&first);
    // The same prompts, new samples.
    let prompts =
        |l: &[(String, Vec<(String, f64)>)]| l.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(prompts(&first), prompts(&second));
    let texts = |l: &[(String, Vec<(String, f64)>)]| {
        l.iter()
            .flat_map(|x| x.1.iter().map(|r| r.0.clone()))
            .collect::<Vec<_>>()
    };
    assert_ne!(
        texts(&first),
        texts(&second),
        "round 2 sampled the same responses"
    );
    // Math rewards: 10 for the record's answer, else 0; a rewarded
    // response holds the answer's digit.
    for (prompt, responses) in first.iter().chain(&second) {
        let i: usize = prompt["Question ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let answer = ((i * 7) % 10).to_string();
        for (text, reward) in responses {
            assert!(*reward == 0.0 || *reward == 10.0, "{reward}");
            if *reward == 10.0 {
                assert!(text.contains(&answer), "{text:?} rewarded for {answer}");
            }
        }
    }
    // Sampled evaluation of the file's held-out prompts, as for a task.
    let eval = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    assert_eq!(eval.lines().count(), 1 + 4, "{eval}");
    assert!(
        eval.lines().skip(1).all(|l| l.contains("prompts")),
        "{eval}"
    );
    let out = lpo(&dir, &["report", "math.toml"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("## prompts (baseline: reference, test split)"),
        "{stdout}"
    );
    assert!(!stdout.contains("no generation table"), "{stdout}");
    run
}

#[test]
fn a_prompt_file_with_math_rewards_trains_in_on_policy_rounds() {
    let run = rounds_sample_and_score_new_lists("rewards-math", "");
    assert!(run.join("round-start/model.safetensors").is_file());
}

#[test]
fn lora_runs_take_on_policy_rounds_with_adapters_as_the_round_start() {
    let run = rounds_sample_and_score_new_lists("rewards-math-lora", "[model.lora]\nrank = 4\n");
    // The round's start is the adapters, in PEFT's layout.
    assert!(run.join("round-start/adapter_model.safetensors").is_file());
    assert!(!run.join("round-start/model.safetensors").exists());
}

#[test]
fn reward_sources_are_checked_at_plan_time() {
    let dir = scratch("rewards-plan");
    prompt_file(&dir);
    let base = recipe("");
    for (from, to, message) in [
        (
            r#"format = "prompts", reward = "math""#,
            r#"format = "prompts""#,
            "a prompt file's responses are sampled and need a reward source",
        ),
        (
            r#"format = "prompts", reward = "math""#,
            r#"format = "native", reward = "math""#,
            "a reward source scores prompt files",
        ),
        (
            r#"reward = "math""#,
            r#"reward = "model""#,
            "reward.model names no reward model",
        ),
        (r#"reward = "math""#, r#"reward = "maths""#, "data.mix"),
        (
            "[reference]\ncheckpoint",
            "[reference]\nsft_steps = 10\n#",
            "a prompt file has no demonstrations to train an SFT reference on",
        ),
    ] {
        std::fs::write(dir.join("r.toml"), base.replace(from, to)).unwrap();
        let out = lpo(&dir, &["plan", "r.toml"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert!(stderr.contains(message), "{to}: {stderr}");
    }
    // A record without the answer the math reward needs names its line.
    std::fs::write(
        dir.join("prompts.jsonl"),
        "{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\"}\n",
    )
    .unwrap();
    std::fs::write(dir.join("r.toml"), &base).unwrap();
    let out = lpo(&dir, &["sweep", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("prompts.jsonl:2") && stderr.contains("reference `answer`"),
        "{stderr}"
    );
}

#[test]
fn lpo_score_writes_a_reward_list_file_that_data_mix_trains_on() {
    let dir = scratch("rewards-score");
    // Two records with their own responses (scored as given) and two
    // without (K = 3 sampled from the checkpoint).
    let records = [
        r#####"{"prompt": "What is 6 times 7?", "answer": "42", "responses": ["6 * 7 = 42. The answer is 42.", "#### 41", {"text": "It is \\boxed{42}"}]}"#####,
        r#"{"prompt": "Add 1,000 and 234.", "answer": "1234", "responses": ["1,234", "The answer is 1243."]}"#,
        r#"{"prompt": "What is 2 + 2?", "answer": "4"}"#,
        r#"{"prompt": "What is 3 + 3?", "answer": "6"}"#,
    ];
    std::fs::write(dir.join("questions.jsonl"), records.join("\n") + "\n").unwrap();
    let code = [
        r#"{"prompt": "def add(a, b):\n", "tests": {"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}, "responses": ["    return a + b\n", "    return a - b\n", "    while True:\n        pass\n"]}"#,
    ];
    std::fs::write(dir.join("code.jsonl"), code.join("\n") + "\n").unwrap();
    let recipe = format!(
        r#"
name = "score"
[reference]
checkpoint = "{}"
[data]
list_size = 3
mix = [
  {{ path = "questions.jsonl", format = "prompts", reward = "math" }},
  {{ path = "code.jsonl", format = "prompts", reward = "code" }},
]
[reward]
code_timeout = 2.0
[eval]
max_new_tokens = 8
"#,
        checkpoint().display()
    );
    std::fs::write(dir.join("score.toml"), recipe).unwrap();
    let out = lpo(&dir, &["score", "score.toml", "--out", "scored.jsonl"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("code ran with python"), "{stdout}");
    // One passed, one failed its assertion, one looped into a limit.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("code executions: 3 ("))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("failed 1") && line.contains("passed 1"),
        "{line}"
    );
    assert!(
        line.contains("cpu_time 1") || line.contains("timeout 1"),
        "{line}"
    );
    let lists: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("scored.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lists.len(), 5);
    let rewards = |prompt: &str| -> Vec<f64> {
        let l = lists.iter().find(|l| l["prompt"] == prompt).unwrap();
        l["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reward"].as_f64().unwrap())
            .collect()
    };
    // Given responses, scored as the rules say (docs/data.md).
    assert_eq!(rewards("What is 6 times 7?"), [10.0, 0.0, 10.0]);
    assert_eq!(rewards("Add 1,000 and 234."), [10.0, 0.0]);
    // The correct program passes; the wrong one and the endless loop fail.
    assert_eq!(rewards("def add(a, b):\n"), [10.0, 0.0, 0.0]);
    // Sampled: list_size responses, each 0 or 10.
    for prompt in ["What is 2 + 2?", "What is 3 + 3?"] {
        let r = rewards(prompt);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|&x| x == 0.0 || x == 10.0), "{r:?}");
    }
    trains_as_native(&dir);
}

/// The output of `lpo score` in `dir` trains as a native reward-list file;
/// the prompt file it came from, still holding responses, does not.
fn trains_as_native(dir: &Path) {
    let train = format!(
        r#"
name = "trained"
[reference]
checkpoint = "{}"
[data]
list_size = 2
train_prompts = 0
eval_fraction = 0.0
mix = [{{ path = "scored.jsonl", format = "native" }}]
[train]
steps = 2
batch_size = 2
threads = 1
[eval]
every = 0
max_new_tokens = 8
"#,
        checkpoint().display()
    );
    std::fs::write(dir.join("train.toml"), train).unwrap();
    let out = lpo(dir, &["sweep", "train.toml"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A prompt file that still holds responses is not trained on as if sampled.
    let out = lpo(
        dir,
        &["sweep", "score.toml", "--set", "data.train_prompts=0"],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("score them with `lpo score`"), "{stderr}");
}

fn reward_fixture(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/reward/{family}"))
}

/// A recipe whose prompt file `path` is scored by the qwen2 reward model
/// fixture, in two on-policy rounds.
fn rm_recipe(path: &str) -> String {
    format!(
        r#"
name = "rm"
[reference]
checkpoint = "{}"
[reward]
model = "{}"
[data]
list_size = 4
train_prompts = 0
eval_fraction = 0.25
mix = [{{ path = "{path}", format = "prompts", reward = "model" }}]
[train]
steps = 2
rounds = 2
batch_size = 4
threads = 1
[eval]
every = 0
samples = 2
max_new_tokens = 8
"#,
        checkpoint().display(),
        reward_fixture("qwen2").display()
    )
}

#[test]
fn a_reward_model_scores_as_transformers_does_and_drives_rounds() {
    let dir = scratch("rewards-model");
    // The fixture's conversations as given responses: `lpo score` must give
    // transformers' scores of the ChatML-rendered conversation.
    let rm = reward_fixture("qwen2");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rm.join("expected.json")).unwrap()).unwrap();
    let cases = want["cases"].as_array().unwrap();
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            serde_json::json!({"prompt": c["prompt"], "responses": [c["response"]]}).to_string()
        })
        .collect();
    std::fs::write(dir.join("given.jsonl"), lines.join("\n") + "\n").unwrap();

    std::fs::write(dir.join("score.toml"), rm_recipe("given.jsonl")).unwrap();
    let out = lpo(&dir, &["score", "score.toml", "--out", "scored.jsonl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scored = std::fs::read_to_string(dir.join("scored.jsonl")).unwrap();
    for (line, case) in scored.lines().zip(cases) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let got = v["responses"][0]["reward"].as_f64().unwrap();
        let score = case["score"].as_f64().unwrap();
        assert!(
            (got - score).abs() <= 1e-4,
            "lpo {got}, transformers {score}"
        );
    }
    // On-policy rounds scored by the reward model: the per-round log shows
    // the scores' spread, and there is no solved level.
    let prompts: Vec<String> = (0..12)
        .map(|i| {
            serde_json::json!({"prompt": format!("Say something nice about {i}.")}).to_string()
        })
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), prompts.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("rm.toml"), rm_recipe("prompts.jsonl")).unwrap();
    let out = lpo(&dir, &["sweep", "rm.toml"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run = run_dirs(&dir.join("results/rm")).pop().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let rounds = summary["round_rewards"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        let r = &r["prompts.jsonl"];
        assert!(r["sd"].as_f64().unwrap() > 0.0, "{summary}");
        assert!(r.get("solved").is_none(), "{summary}");
    }
    assert!(
        summary["headline"]["prompts"].as_u64().unwrap() > 0,
        "{summary}"
    );
    no_pass_rate(&dir, &run);
}

/// Without a solved level there is no pass rate: empty cells in `eval.csv`
/// and `-` in the report of `rm.toml` in `dir`.
fn no_pass_rate(dir: &Path, run: &Path) {
    let eval = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(eval.as_bytes());
    let header = rows.headers().unwrap().clone();
    let column = header.iter().position(|h| h == "policy_pass").unwrap();
    for row in rows.records() {
        assert_eq!(&row.unwrap()[column], "", "{eval}");
    }
    let out = lpo(dir, &["report", "rm.toml"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| lpo |"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(row.split('|').nth(6).unwrap().trim(), "-", "{row}");
}

#[test]
fn the_real_recipes_run_with_a_tiny_model() {
    // recipes/real/{gsm8k,humaneval}.toml as a GPU user runs them, with the
    // tiny random checkpoint and a few steps: the machinery, not the science.
    let dir = scratch("rewards-real");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = format!("reference.checkpoint={}", checkpoint().display());
    for (name, source) in [("gsm8k", "test-20"), ("humaneval", "HumanEval-20")] {
        let recipe = root.join(format!("recipes/real/{name}.toml"));
        let recipe = recipe.to_str().unwrap();
        let mut args = vec!["sweep", recipe, "--set", &model];
        for set in [
            "train.steps=2",
            "data.list_size=2",
            "eval.samples=1",
            "eval.max_new_tokens=16",
            "train.threads=1",
        ] {
            args.extend(["--set", set]);
        }
        let out = lpo(&dir, &args);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        if name == "humaneval" {
            // The run says what the sandbox enforced.
            let run = run_dirs(&dir.join("results/humaneval")).pop().unwrap();
            let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
            let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
            let sandbox = summary["sandbox"].as_str().unwrap_or_default();
            assert!(sandbox.contains("audit hook"), "{summary}");
        }
        args[0] = "report";
        let out = lpo(&dir, &args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("## {source} (baseline: reference, test split)")),
            "{name}: {stdout}"
        );
    }
}
