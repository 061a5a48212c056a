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
            "train_prompts = 16\nmix = [{ task = \"rating\" }, { path = \"uf.jsonl\", format = \"ultrafeedback\" }]\non_bad_record = \"skip\"",
        ),
    )
    .unwrap();
    let out = lpo(&dir, &["data", "preview", "r.toml", "--show", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains("uf.jsonl: skipped 1 bad lines (first: line 2: completions[1]:"),
        "{stdout}"
    );
    assert!(stdout.contains("prompt: "), "{stdout}");
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
