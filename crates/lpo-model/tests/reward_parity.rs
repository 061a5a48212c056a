//! lpo's reward-model scores against transformers' on the fixtures of
//! tests/fixtures/reward (made by scripts/make_reward_fixtures.py): tiny
//! random-weight `LlamaForSequenceClassification` (pad = eos, so a trailing
//! end token is skipped by the pooling), `MistralForSequenceClassification`
//! (sliding window shorter than most cases) and
//! `Qwen2ForSequenceClassification` (q/k/v biases), num_labels = 1.

use std::path::{Path, PathBuf};

use lpo_model::reward_model::RewardModel;
use tch::Device;

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/reward/{name}"))
}

fn expected(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn scores_match_transformers_for_every_family() {
    for family in ["llama", "mistral", "qwen2", "mixtral"] {
        let dir = fixture(family);
        let want = expected(&dir);
        let (_vs, model) = RewardModel::load(&dir, Device::Cpu).unwrap();
        let cases = want["cases"].as_array().unwrap();
        let mut sequences: Vec<Vec<i64>> = cases.iter().map(|c| ids(&c["input_ids"])).collect();
        let mut scores: Vec<f64> = cases.iter().map(|c| c["score"].as_f64().unwrap()).collect();
        for (c, s) in cases.iter().zip(&sequences) {
            let index = c["pool_index"].as_u64().unwrap() as usize;
            assert_eq!(model.pooling_index(s), index, "{family}: pooling index");
        }
        // The template family also scores the raw text, which must differ.
        for c in cases.iter().filter(|c| c.get("raw_input_ids").is_some()) {
            sequences.push(ids(&c["raw_input_ids"]));
            scores.push(c["raw_score"].as_f64().unwrap());
        }
        // All in batches (right-padded), and one at a time.
        let batched = model.scores(&sequences, 8).unwrap();
        for (i, s) in sequences.iter().enumerate() {
            let alone = model.scores(std::slice::from_ref(s), 1).unwrap()[0];
            for (how, got) in [("batched", batched[i]), ("alone", alone)] {
                assert!(
                    (got - scores[i]).abs() <= TOLERANCE,
                    "{family} case {i} ({how}): lpo {got}, transformers {}",
                    scores[i]
                );
            }
        }
    }
}

#[test]
fn a_trailing_pad_token_is_skipped_as_transformers_does() {
    // llama's pad is its eos: a sequence ending with it is scored at the
    // token before, so appending more pads changes nothing.
    let (_vs, model) = RewardModel::load(&fixture("llama"), Device::Cpu).unwrap();
    let want = expected(&fixture("llama"));
    let pad = want["pad_token_id"].as_i64().unwrap();
    let case = &want["cases"][0];
    let mut s = ids(&case["input_ids"]);
    let before = model.scores(std::slice::from_ref(&s), 1).unwrap()[0];
    s.extend([pad, pad]);
    let after = model.scores(std::slice::from_ref(&s), 1).unwrap()[0];
    assert!((before - after).abs() < 1e-6, "{before} vs {after}");
}

#[test]
fn causal_lms_and_multi_label_classifiers_are_not_reward_models() {
    let lm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama3");
    let err = RewardModel::load(&lm, Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("not a reward model"), "{err:#}");
    // A reward model is not a policy either.
    let err = lpo_model::checkpoint::load(&fixture("qwen2"), Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("a reward model"), "{err:#}");
    // num_labels = 2 is a classifier, not a scalar reward.
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("mistral").join(f), tmp.path().join(f)).unwrap();
    }
    let config = std::fs::read_to_string(fixture("mistral").join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v["id2label"] = serde_json::json!({"0": "bad", "1": "good"});
    v.as_object_mut().unwrap().remove("num_labels");
    std::fs::write(tmp.path().join("config.json"), v.to_string()).unwrap();
    let err = RewardModel::load(tmp.path(), Device::Cpu).unwrap_err();
    assert!(format!("{err:#}").contains("num_labels = 2"), "{err:#}");
}
