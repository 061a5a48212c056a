//! The architecture of a decoder, and its Hugging Face `config.json` form.

use lpo_recipe::ModelDims;
use serde::{Deserialize, Serialize};

/// Decoder hyper-parameters (names as in Hugging Face's `MistralConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Residual width.
    pub hidden_size: i64,
    /// SwiGLU hidden width.
    pub intermediate_size: i64,
    /// Decoder blocks.
    pub num_hidden_layers: i64,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads.
    pub num_key_value_heads: i64,
    /// Longest sequence.
    pub max_position_embeddings: i64,
    /// Rotary base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Sliding attention window (`null`/absent = full attention).
    #[serde(default)]
    pub sliding_window: Option<i64>,
}

impl Config {
    /// The configuration of a recipe's model section.
    pub fn from_dims(d: &ModelDims) -> Config {
        Config {
            vocab_size: i64::from(d.vocab),
            hidden_size: i64::from(d.d_model),
            intermediate_size: i64::from(d.d_ff),
            num_hidden_layers: i64::from(d.layers),
            num_attention_heads: i64::from(d.heads),
            num_key_value_heads: i64::from(d.kv_heads),
            max_position_embeddings: i64::from(d.max_len),
            rope_theta: d.rope_theta,
            rms_norm_eps: 1e-5,
            sliding_window: (d.sliding_window > 0).then_some(i64::from(d.sliding_window)),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// The `config.json` a Hugging Face `MistralForCausalLM` reads.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        let o = v.as_object_mut().expect("object");
        o.insert(
            "architectures".into(),
            serde_json::json!(["MistralForCausalLM"]),
        );
        o.insert("model_type".into(), "mistral".into());
        o.insert("hidden_act".into(), "silu".into());
        o.insert("head_dim".into(), self.head_dim().into());
        o.insert("tie_word_embeddings".into(), false.into());
        o.insert("torch_dtype".into(), "float32".into());
        v
    }

    /// Problems that would make the model wrong or its allocation absurd:
    /// sizes out of range, heads that do not divide the width, a
    /// non-positive window, rotary base or epsilon.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, 1 << 22),
            ("hidden_size", self.hidden_size, 1 << 16),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, 1 << 10),
            ("num_attention_heads", self.num_attention_heads, 1 << 10),
            ("num_key_value_heads", self.num_key_value_heads, 1 << 10),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 22,
            ),
        ] {
            if !(1..=max).contains(&value) {
                out.push(format!("{name} is {value}, outside 1..={max}"));
            }
        }
        if self.num_attention_heads > 0 && self.hidden_size % self.num_attention_heads != 0 {
            out.push(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.num_key_value_heads > 0 && self.num_attention_heads % self.num_key_value_heads != 0
        {
            out.push(format!(
                "num_key_value_heads {} does not divide num_attention_heads {}",
                self.num_key_value_heads, self.num_attention_heads
            ));
        }
        if let Some(w) = self.sliding_window {
            if w < 1 {
                out.push(format!(
                    "sliding_window is {w}; use null for full attention"
                ));
            }
        }
        for (name, value) in [
            ("rope_theta", self.rope_theta),
            ("rms_norm_eps", self.rms_norm_eps),
        ] {
            if !(value.is_finite() && value > 0.0) {
                out.push(format!("{name} is {value}, but must be a positive number"));
            }
        }
        out
    }

    /// Reads a Hugging Face `config.json` (extra keys are ignored).
    pub fn from_hf_json(text: &str) -> anyhow::Result<Config> {
        let config: Config = serde_json::from_str(text)?;
        let problems = config.problems();
        anyhow::ensure!(
            problems.is_empty(),
            "invalid config: {}",
            problems.join("; ")
        );
        let value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(kind) = value.get("model_type").and_then(|v| v.as_str()) {
            anyhow::ensure!(
                kind == "mistral" || kind == "llama",
                "model_type `{kind}` is not a Mistral-style decoder"
            );
        }
        if let Some(head_dim) = value.get("head_dim").and_then(|v| v.as_i64()) {
            anyhow::ensure!(
                head_dim == config.head_dim(),
                "head_dim {head_dim} differs from hidden_size / num_attention_heads = {}",
                config.head_dim()
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(edit: &str, value: serde_json::Value) -> String {
        let mut v = Config::from_dims(&lpo_recipe::ModelConfig::default().dims()).to_hf_json();
        v[edit] = value;
        v.to_string()
    }

    #[test]
    fn malformed_configs_are_errors_naming_the_field() {
        for (field, value, expect) in [
            (
                "num_hidden_layers",
                serde_json::json!(-1),
                "num_hidden_layers is -1",
            ),
            (
                "num_attention_heads",
                serde_json::json!(0),
                "num_attention_heads is 0",
            ),
            (
                "sliding_window",
                serde_json::json!(-5),
                "sliding_window is -5",
            ),
            (
                "vocab_size",
                serde_json::json!(1_000_000_000_000i64),
                "vocab_size is 1000000000000",
            ),
            (
                "num_key_value_heads",
                serde_json::json!(3),
                "does not divide",
            ),
            ("rope_theta", serde_json::json!(0.0), "rope_theta is 0"),
        ] {
            let err = Config::from_hf_json(&json(field, value))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{field}: {err}");
        }
        let fine = json("sliding_window", serde_json::Value::Null);
        assert!(Config::from_hf_json(&fine).is_ok());
    }
}
