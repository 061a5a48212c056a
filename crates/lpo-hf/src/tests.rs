use serde_json::{json, Value};

use crate::{Config, Family, RopeScaling};

fn nano() -> Value {
    Config::from_dims(&lpo_recipe::ModelConfig::default().dims()).to_hf_json()
}

fn json_with(edit: &str, value: Value) -> String {
    let mut v = nano();
    v[edit] = value;
    v.to_string()
}

fn err(text: &str) -> String {
    format!("{:#}", Config::from_hf_json(text).unwrap_err())
}

#[test]
fn malformed_configs_are_errors_naming_the_field() {
    for (field, value, expect) in [
        ("num_hidden_layers", json!(-1), "num_hidden_layers is -1"),
        ("num_attention_heads", json!(0), "num_attention_heads is 0"),
        ("sliding_window", json!(-5), "sliding_window is -5"),
        (
            "vocab_size",
            json!(1_000_000_000_000i64),
            "vocab_size is 1000000000000",
        ),
        ("num_key_value_heads", json!(3), "does not divide"),
        ("head_dim", json!(15), "must be even"),
        (
            "hidden_size",
            json!("64"),
            "`hidden_size` is \"64\", not an integer",
        ),
        (
            "intermediate_size",
            Value::Null,
            "missing field `intermediate_size`",
        ),
    ] {
        let e = err(&json_with(field, value));
        assert!(e.contains(expect), "{field}: {e}");
    }
    let mut v = nano();
    v["rope_parameters"]["rope_theta"] = json!(0.0);
    assert!(err(&v.to_string()).contains("rope_theta is 0"));
    let fine = json_with("sliding_window", Value::Null);
    assert_eq!(Config::from_hf_json(&fine).unwrap().sliding_window, None);
}

#[test]
fn configs_lpo_writes_read_back_equal() {
    let mut c = Config::from_dims(&lpo_recipe::ModelConfig::default().dims());
    c.bos_token_id = Some(1);
    c.eos_token_id = vec![2];
    c.pad_token_id = Some(0);
    for (family, scaling, tied) in [
        (Family::Mistral, None, false),
        (
            Family::Llama,
            Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 32.0,
            }),
            true,
        ),
        (
            Family::Llama,
            Some(RopeScaling::Linear { factor: 2.0 }),
            false,
        ),
        (
            Family::Llama,
            Some(RopeScaling::Yarn {
                factor: 4.0,
                original_max_position_embeddings: 32.0,
                beta_fast: Some(16.0),
                beta_slow: None,
                attention_factor: None,
                mscale: None,
                mscale_all_dim: None,
                truncate: Some(false),
            }),
            false,
        ),
        (Family::Qwen2, None, true),
    ] {
        c.family = family;
        c.rope_scaling = scaling;
        c.tie_word_embeddings = tied;
        if family != Family::Mistral {
            c.sliding_window = None;
        }
        let text = c.to_hf_json().to_string();
        assert_eq!(Config::from_hf_json(&text).unwrap(), c, "{text}");
    }
}

#[test]
fn transformers_4_and_5_layouts_read_the_same() {
    let v5 = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 128, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        "bos_token_id": 1, "eos_token_id": [2, 3], "tie_word_embeddings": true
    });
    let mut v4 = v5.clone();
    let o = v4.as_object_mut().unwrap();
    o.remove("rope_parameters");
    o.insert("rope_theta".into(), json!(500000.0));
    o.insert(
        "rope_scaling".into(),
        json!({"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    );
    let a = Config::from_hf_json(&v5.to_string()).unwrap();
    let b = Config::from_hf_json(&v4.to_string()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.family, Family::Llama);
    assert_eq!(a.head_dim, 16);
    assert_eq!(a.eos_token_id, [2, 3]);
    assert!(a.tie_word_embeddings);
    assert_eq!(a.rope_theta, 500000.0);
    assert!(matches!(a.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0));
    // A 4.x config without any rotary key: base 10000, no scaling.
    let o = v4.as_object_mut().unwrap();
    o.remove("rope_theta");
    o.remove("rope_scaling");
    let c = Config::from_hf_json(&v4.to_string()).unwrap();
    assert_eq!((c.rope_theta, c.rope_scaling), (10_000.0, None));
    // `rope_scaling: null` is the default rotary embedding.
    v4["rope_scaling"] = Value::Null;
    assert_eq!(
        Config::from_hf_json(&v4.to_string()).unwrap().rope_scaling,
        None
    );
}

#[test]
fn unsupported_architectures_and_rotary_types_are_errors() {
    let mut v = nano();
    v["model_type"] = json!("gpt2");
    assert!(err(&v.to_string()).contains("model_type `gpt2` is not supported"));
    let mut v = nano();
    v["architectures"] = json!(["MistralForTokenClassification"]);
    assert!(err(&v.to_string()).contains("MistralForTokenClassification"));
    // A sequence classifier (a reward model) reads as the same decoder; its
    // head says what it is.
    v["architectures"] = json!(["MistralForSequenceClassification"]);
    assert!(Config::from_hf_json(&v.to_string()).is_ok());
    assert_eq!(
        crate::Head::from_hf_json(&v.to_string()).unwrap(),
        crate::Head::Classifier { num_labels: 2 }
    );
    v["num_labels"] = json!(1);
    assert_eq!(
        crate::Head::from_hf_json(&v.to_string()).unwrap(),
        crate::Head::Classifier { num_labels: 1 }
    );
    v["architectures"] = json!(["MistralForCausalLM"]);
    assert_eq!(
        crate::Head::from_hf_json(&v.to_string()).unwrap(),
        crate::Head::CausalLm
    );
    let mut v = nano();
    v.as_object_mut().unwrap().remove("model_type");
    assert!(err(&v.to_string()).contains("no `model_type`"));
    for (kind, expect) in [
        ("dynamic", "`dynamic` is not supported"),
        ("longrope", "`longrope` is not supported"),
    ] {
        let mut v = nano();
        v["rope_parameters"] = json!({"rope_type": kind, "rope_theta": 1e4, "factor": 2.0});
        assert!(err(&v.to_string()).contains(expect), "{kind}");
    }
    let mut v = nano();
    v["rope_parameters"] = json!({"rope_type": "llama3", "rope_theta": 1e4, "factor": 2.0});
    assert!(err(&v.to_string()).contains("needs `low_freq_factor`"));
    let mut v = nano();
    v["hidden_act"] = json!("gelu");
    assert!(err(&v.to_string()).contains("hidden_act"));
    let mut v = nano();
    v["model_type"] = json!("llama");
    v["architectures"] = json!(["LlamaForCausalLM"]);
    v["attention_bias"] = json!(true);
    assert!(err(&v.to_string()).contains("attention_bias"));
    let mut v = nano();
    v["model_type"] = json!("qwen2");
    v["architectures"] = json!(["Qwen2ForCausalLM"]);
    v["use_sliding_window"] = json!(true);
    assert!(err(&v.to_string()).contains("sliding-window"));
    v["use_sliding_window"] = json!(false);
    v["sliding_window"] = json!(4096); // ignored without use_sliding_window, as in transformers
    let c = Config::from_hf_json(&v.to_string()).unwrap();
    assert_eq!(
        (c.family, c.sliding_window, c.qkv_bias()),
        (Family::Qwen2, None, true)
    );
}

#[test]
fn rotary_frequencies_follow_their_definitions() {
    let theta: f64 = 10_000.0;
    let plain: Vec<f64> = (0..4)
        .map(|i| theta.powf(-(2.0 * i as f64) / 8.0))
        .collect();
    let (f, a) = crate::rope::frequencies(8, theta, None);
    assert_eq!((f.clone(), a), (plain.clone(), 1.0));
    let (f, _) = crate::rope::frequencies(8, theta, Some(&RopeScaling::Linear { factor: 4.0 }));
    for (x, y) in f.iter().zip(&plain) {
        assert!((x * 4.0 - y).abs() < 1e-15);
    }
    // Llama 3: short wavelengths kept, long ones divided by the factor.
    let llama3 = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64.0,
    };
    let (f, _) = crate::rope::frequencies(8, theta, Some(&llama3));
    assert_eq!(f[0], plain[0]); // wavelength 2 pi < 16
    assert_eq!(f[3], plain[3] / 8.0); // wavelength 2 pi * 1000 > 64
                                      // YaRN: the attention factor 0.1 ln(s) + 1.
    let yarn = RopeScaling::Yarn {
        factor: 4.0,
        original_max_position_embeddings: 64.0,
        beta_fast: None,
        beta_slow: None,
        attention_factor: None,
        mscale: None,
        mscale_all_dim: None,
        truncate: None,
    };
    let (f, a) = crate::rope::frequencies(8, theta, Some(&yarn));
    assert!((a - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-15);
    assert_eq!(f[0], plain[0]);
    assert!((f[3] - plain[3] / 4.0).abs() < 1e-15);
}

#[test]
fn mixtral_configs_round_trip_and_refuse_what_lpo_does_not_route() {
    let dims = lpo_recipe::ModelDims {
        experts: 8,
        experts_per_token: 2,
        ..lpo_recipe::ModelConfig::default().dims()
    };
    let config = Config::from_dims(&dims);
    assert_eq!(config.family, Family::Mixtral);
    let v = config.to_hf_json();
    assert_eq!(v["num_local_experts"], 8);
    assert_eq!(v["architectures"][0], "MixtralForCausalLM");
    let back = Config::from_hf_json(&v.to_string()).unwrap();
    assert_eq!(back, config);
    assert_eq!(back.dims().unwrap(), dims);
    assert!(back.describe().contains("8 experts, top 2"));

    let with = |key: &str, value: Value| {
        let mut v = v.clone();
        v[key] = value;
        v.to_string()
    };
    // MixtralConfig's defaults when the keys are absent: 8 experts, top 2.
    let mut bare = v.clone();
    bare.as_object_mut().unwrap().remove("num_local_experts");
    bare.as_object_mut().unwrap().remove("num_experts_per_tok");
    let c = Config::from_hf_json(&bare.to_string()).unwrap();
    assert_eq!((c.num_local_experts, c.num_experts_per_tok), (8, 2));
    assert!(err(&with("router_jitter_noise", json!(0.01))).contains("router_jitter_noise"));
    assert!(err(&with("num_experts_per_tok", json!(9))).contains("num_experts_per_tok 9"));
    assert!(err(&with("num_local_experts", json!(0))).contains("num_local_experts 0"));
    // A dense family's config never has experts.
    assert_eq!(
        Config::from_hf_json(&nano().to_string())
            .unwrap()
            .num_local_experts,
        0
    );
}
