//! The token ids a reward model reads, against transformers' on the
//! fixtures of tests/fixtures/reward (scripts/make_reward_fixtures.py):
//! with a chat template (qwen2, ChatML) the rendered conversation, without
//! one (llama, mistral) `prompt + response` with the tokenizer's specials.

use std::path::{Path, PathBuf};

use lpo_data::tokenizer::{HfOptions, HfTokenizer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/reward/{name}"))
}

#[test]
fn conversations_tokenize_as_transformers_does() {
    let options = HfOptions {
        chat_template: true,
        ..HfOptions::default()
    };
    for family in ["llama", "mistral", "qwen2"] {
        let dir = fixture(family);
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        let want: serde_json::Value = serde_json::from_str(&text).unwrap();
        let tokenizer = HfTokenizer::from_file(&dir, &options).unwrap();
        for (i, case) in want["cases"].as_array().unwrap().iter().enumerate() {
            let ids: Vec<i64> = serde_json::from_value(case["input_ids"].clone()).unwrap();
            let got = tokenizer
                .encode_conversation(
                    &[],
                    case["prompt"].as_str().unwrap(),
                    case["response"].as_str().unwrap(),
                )
                .unwrap();
            assert_eq!(got, ids, "{family} case {i}");
            if let Some(raw) = case.get("raw_text") {
                let raw_ids: Vec<i64> =
                    serde_json::from_value(case["raw_input_ids"].clone()).unwrap();
                assert_eq!(
                    tokenizer.encode_with_specials(raw.as_str().unwrap()),
                    raw_ids,
                    "{family} case {i} (raw)"
                );
                assert_ne!(raw_ids, ids, "the template changes what is scored");
            }
        }
    }
}
