//! End-to-end: `lpo data preview` on built-in tasks and on imported files.

mod common;
use common::{lpo, scratch, text};

const SMALL: &str = r#"
name = "preview-test"
[reference]
sft_steps = 20
[data]
list_size = 3
train_prompts = 16
[eval]
max_new_tokens = 6
"#;

#[test]
fn preview_shows_lists_and_statistics_per_source() {
    let dir = scratch("preview-mixed");
    std::fs::write(
        dir.join("uf.jsonl"),
        concat!(
            r#"{"instruction": "hi", "completions": [{"response": "hello", "overall_score": 8}, {"response": "yo", "overall_score": 8}, {"response": "go", "overall_score": 2}]}"#,
            "\n",
            r#"{"instruction": "bye", "completions": [{"response": "ciao", "overall_score": 7}, {"response": "no"}]}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("r.toml"),
        SMALL.replace(
            "train_prompts = 16",
            "train_prompts = 16\nmix = [{ task = \"rating\" }, { path = \"uf.jsonl\", format = \"ultrafeedback\" }]\non_bad_record = \"skip\"\noversample = true",
        ),
    )
    .unwrap();
    let out = lpo(&dir, &["data", "preview", "r.toml", "--show", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains("uf.jsonl: skipped 1 bad records (first: uf.jsonl:2: completions[1]:"),
        "{stdout}"
    );
    assert!(stdout.contains("prompt: "), "{stdout}");
    // One usable record drawn for 7 lists: the 6 repeats are counted.
    assert!(
        stdout.contains("uf.jsonl: 6 training lists repeat a record (data.oversample = true)"),
        "{stdout}"
    );
    // Without data.oversample, drawing a record twice is an error naming the counts.
    let recipe = std::fs::read_to_string(dir.join("r.toml")).unwrap();
    std::fs::write(dir.join("r2.toml"), recipe.replace("oversample = true", "")).unwrap();
    let out = lpo(&dir, &["data", "preview", "r2.toml"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("gives 7 training lists to uf.jsonl, which has 1 training records")
            && stderr.contains("data.oversample = true"),
        "{stderr}"
    );
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("source"))
        .collect();
    assert!(table[0].contains("ties"), "{stdout}");
    assert!(table.iter().any(|l| l.starts_with("rating ")), "{stdout}");
    // The imported list ties 8 vs 8 once in three pairs.
    let uf = table
        .iter()
        .find(|l| l.starts_with("uf.jsonl"))
        .expect("uf row");
    assert!(uf.contains("33.3%"), "{uf}");
    assert!(dir.join("results/_cache").is_dir());
}

#[test]
fn preview_names_the_bad_line_when_records_must_be_valid() {
    let dir = scratch("preview-bad");
    std::fs::write(
        dir.join("lists.jsonl"),
        "{\"prompt\": \"a\", \"responses\": [{\"text\": \"x\", \"reward\": 1}, {\"text\": \"y\", \"reward\": 0}]}\n{\"prompt\": \"b\", \"responses\": [{\"text\": \"x\", \"reward\": NaN}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("r.toml"),
        SMALL.replace(
            "train_prompts = 16",
            "train_prompts = 16\nmix = [{ task = \"arith\" }, { path = \"lists.jsonl\", format = \"native\" }]",
        ),
    )
    .unwrap();
    let out = lpo(&dir, &["data", "preview", "r.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("lists.jsonl:2: invalid JSON"), "{stderr}");
}

/// A word-level `tokenizer.json` whose words are the numbers 0..=198 and the
/// arithmetic symbols, in the format the `tokenizers` library writes.
fn arithmetic_tokenizer() -> String {
    let mut vocab = vec![
        ("<pad>".to_string(), 0),
        ("<s>".to_string(), 1),
        ("</s>".to_string(), 2),
        ("[UNK]".to_string(), 3),
    ];
    for (i, sym) in ["+", "-", "="].iter().enumerate() {
        vocab.push((sym.to_string(), 4 + i));
    }
    for n in 0..=198 {
        vocab.push((n.to_string(), 7 + n));
    }
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab.into_iter().map(|(w, i)| (w, i.into())).collect();
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "<s>"), special(2, "</s>"), special(3, "[UNK]")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

#[test]
fn a_hugging_face_tokenizer_drives_a_whole_run() {
    let dir = scratch("hf-tokenizer-run");
    std::fs::write(dir.join("tokenizer.json"), arithmetic_tokenizer()).unwrap();
    let recipe = SMALL
        .replace(
            "[data]",
            "[model]\nvocab = 256\n[data]\ntokenizer = \"tokenizer.json\"\neos_token = \"</s>\"\nbos_token = \"<s>\"\npad_token = \"<pad>\"",
        )
        .replace(
            "[eval]",
            "[train]\nsteps = 3\nbatch_size = 4\n[eval]\nprompts = 10",
        );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = dir.join("results/preview-test");
    let run = common::run_dirs(&results).remove(0);
    let eval = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    assert_eq!(eval.lines().count(), 11, "{eval}");
    // Responses are decoded words of the tokenizer: numbers, symbols or nothing.
    let mut reader = csv::Reader::from_reader(eval.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "policy_response")
        .unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        for word in row[column].split_whitespace() {
            assert!(
                word.parse::<u32>().is_ok() || ["+", "-", "="].contains(&word),
                "{word:?}"
            );
        }
    }
    // A model vocabulary smaller than the tokenizer's is refused.
    let small_vocab = std::fs::read_to_string(dir.join("r.toml"))
        .unwrap()
        .replace("vocab = 256", "vocab = 64");
    std::fs::write(dir.join("r.toml"), small_vocab).unwrap();
    let out = lpo(
        &dir,
        &[
            "run",
            "r.toml",
            "--index",
            "0",
            "--no-bars",
            "--results",
            "other",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let summary = std::fs::read_dir(dir.join("other/preview-test"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let s = std::fs::read_to_string(summary.join("summary.json")).unwrap();
    assert!(
        s.contains("the tokenizer has 206 tokens but model.vocab is 64"),
        "{s}"
    );
}

/// Issue 13: prompts and responses longer than `model.max_len` are cut to
/// fit (prompt end kept, response start kept), counted per source in
/// `lpo data preview` and summary.json, and never reach the model's rotary
/// table past its last position (they used to panic inside `Rotary::apply`).
#[test]
fn sequences_longer_than_max_len_train_with_a_truncation_count() {
    let dir = scratch("long-sequences");
    let mut lines = String::new();
    for i in 0..12 {
        // Against max_len 32: half the records have prompts of 40-45
        // characters and short responses, half short prompts and responses of
        // 30-35 characters, so one batch pads a long prompt's short responses
        // to another list's long response.
        let (prompt, good, bad) = if i % 2 == 0 {
            (
                format!("{}+{}=", "1".repeat(20 + i / 2), "2".repeat(18)),
                "3".to_string(),
                "44".to_string(),
            )
        } else {
            (
                format!("{i}+1="),
                "3".repeat(30 + i / 2),
                "4".repeat(31 + i / 2),
            )
        };
        lines.push_str(&format!(
            "{{\"prompt\": \"{prompt}\", \"responses\": [{{\"text\": \"{good}\", \"reward\": 9}}, {{\"text\": \"{bad}\", \"reward\": 1}}, {{\"text\": \"5\", \"reward\": 4}}]}}\n"
        ));
    }
    std::fs::write(dir.join("long.jsonl"), lines).unwrap();
    let recipe = SMALL
        .replace(
            "[data]",
            "[model]\nmax_len = 32\n[data]\nmix = [{ task = \"arith\" }, { path = \"long.jsonl\", format = \"native\" }]\nmax_response_tokens = 24",
        )
        .replace(
            "[eval]",
            "[train]\nsteps = 3\nbatch_size = 6\n[eval]\nprompts = 6",
        );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    let out = lpo(&dir, &["run", "r.toml", "--index", "0", "--no-bars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = dir.join("results/preview-test");
    let run = common::run_dirs(&results).remove(0);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "complete", "{summary}");
    let cut = &summary["truncated"]["long.jsonl"];
    // Half the file's lists have a prompt too long for the window, half two
    // responses longer than max_response_tokens.
    let prompts = cut["prompts"].as_u64().unwrap();
    assert!(prompts >= 2, "{summary}");
    assert!(cut["responses"].as_u64().unwrap() >= 4, "{summary}");
    assert!(summary["truncated"].get("arith").is_none(), "{summary}");
    // The preview shows the same counts per source.
    let out = lpo(&dir, &["data", "preview", "r.toml", "--show", "0"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("cut-prompt"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("long.jsonl"))
        .expect("a row for the file");
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(numbers[numbers.len() - 2], prompts.to_string(), "{row}");
}

/// A binarized multi-turn file through the fixture tokenizer's chat template
/// (Zephyr's): the preview shows the earlier turns a prompt follows and cuts
/// the long prompts to `data.max_prompt_tokens`; without the template it says
/// how many records lose their earlier turns.
#[test]
fn preview_shows_conversations_and_what_no_template_drops() {
    let dir = scratch("chat-preview");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
    }
    let records = std::fs::read_to_string(fixtures.join("multiturn.jsonl")).unwrap();
    std::fs::write(dir.join("mt.jsonl"), records.repeat(5)).unwrap();
    std::fs::write(
        dir.join("r.toml"),
        "name = \"chat\"\n[model]\nvocab = 64\n[reference]\nsft_steps = 10\n[data]\ntokenizer = \"tokenizer.json\"\nlist_size = 2\ntrain_prompts = 8\nmix = [{ path = \"mt.jsonl\", format = \"ultrafeedback-binarized\" }]\nmax_prompt_tokens = 20\n[eval]\nmax_new_tokens = 4\n",
    )
    .unwrap();
    let out = lpo(&dir, &["data", "preview", "r.toml", "--show", "8"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("[mt.jsonl] after: system, user, assistant"),
        "{stdout}"
    );
    assert!(!stdout.contains("not part of the prompt"), "{stdout}");
    // The multi-turn prompts render to 25 tokens: cut to 20, counted.
    let row = stdout.lines().find(|l| l.starts_with("mt.jsonl ")).unwrap();
    let cut: usize = row.split_whitespace().nth_back(1).unwrap().parse().unwrap();
    let multi_turn = stdout.matches("after: system").count();
    assert!(cut > 0 && cut <= 8, "{stdout}");
    assert!(multi_turn > 0, "{stdout}");
    let out = lpo(
        &dir,
        &[
            "data",
            "preview",
            "r.toml",
            "--show",
            "0",
            "--set",
            "data.chat_template=\"none\"",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("mt.jsonl: 5 records have a system message or earlier turns that are not part of the prompt (no chat template)"),
        "{stdout}"
    );
}

#[test]
fn every_record_once_is_refused_for_a_built_in_task() {
    // data.train_prompts = 0 means every training record of every file
    // once; a built-in task has no fixed records, so plan, preview and
    // sweep all stop at plan time (exit 2) naming both keys' places.
    let dir = scratch("data-train-prompts-0");
    std::fs::write(
        dir.join("l.jsonl"),
        r#"{"prompt": "1+1=", "responses": [{"text": "2", "reward": 1}, {"text": "3", "reward": 0}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("r.toml"),
        "name = \"tp\"\n[data]\ntrain_prompts = 0\nmix = [{ task = \"arith\" }, { path = \"l.jsonl\", format = \"native\" }]\n",
    )
    .unwrap();
    for command in [
        &["plan", "r.toml"][..],
        &["data", "preview", "r.toml"],
        &["sweep", "r.toml"],
    ] {
        let out = lpo(&dir, command);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains("data.mix[0] is the built-in task \"arith\"")
                && stderr.contains("r.toml:3:1")
                && stderr.contains("r.toml:4:1"),
            "{command:?}: {stderr}"
        );
        assert!(!dir.join("results").exists(), "{command:?} wrote results");
    }
}
