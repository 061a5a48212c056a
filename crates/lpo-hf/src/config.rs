//! The architecture of a decoder, and its Hugging Face `config.json` form.

use anyhow::{bail, ensure, Context, Result};
use lpo_recipe::ModelDims;
use serde_json::{Map, Value};

use crate::RopeScaling;

/// A decoder family lpo computes exactly as transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `MistralForCausalLM`: optional sliding window over every layer.
    Mistral,
    /// `LlamaForCausalLM`: no sliding window; rotary scaling (Llama 3.1+).
    Llama,
    /// `Qwen2ForCausalLM`: biases on the query, key and value projections.
    Qwen2,
    /// `Qwen3ForCausalLM` (dense): per-head RMSNorm of queries and keys
    /// (`q_norm`, `k_norm`) before the rotary embedding, no biases.
    Qwen3,
    /// `MixtralForCausalLM`: Mistral's attention, and a sparse mixture of
    /// SwiGLU experts (a router picks the top k per token) for the MLP.
    Mixtral,
}

impl Family {
    /// Every supported family.
    pub const ALL: [Family; 5] = [
        Family::Mistral,
        Family::Llama,
        Family::Qwen2,
        Family::Qwen3,
        Family::Mixtral,
    ];

    /// The `model_type` of its config.json.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Mistral => "mistral",
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Mixtral => "mixtral",
        }
    }

    /// Its causal-LM class, the config's `architectures` entry.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Mistral => "MistralForCausalLM",
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Mixtral => "MixtralForCausalLM",
        }
    }

    /// Its sequence-classification class (a reward model: the decoder and a
    /// `score` head at the last non-padding token).
    pub fn classifier_architecture(self) -> &'static str {
        match self {
            Family::Mistral => "MistralForSequenceClassification",
            Family::Llama => "LlamaForSequenceClassification",
            Family::Qwen2 => "Qwen2ForSequenceClassification",
            Family::Qwen3 => "Qwen3ForSequenceClassification",
            Family::Mixtral => "MixtralForSequenceClassification",
        }
    }
}

/// What sits on top of a checkpoint's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `XForCausalLM` (or no `architectures`): next-token logits.
    CausalLm,
    /// `XForSequenceClassification`: `num_labels` scores per sequence.
    Classifier {
        /// Outputs of the `score` head (`num_labels`, transformers' default 2).
        num_labels: i64,
    },
}

impl Head {
    /// The head a `config.json` declares (its `architectures`).
    pub fn from_hf_json(text: &str) -> Result<Head> {
        let value: Value = serde_json::from_str(text)?;
        let o = value
            .as_object()
            .context("config.json is not a JSON object")?;
        let family = family_of(o)?;
        let classifier = o
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|a| a.as_str() == Some(family.classifier_architecture()))
            });
        if !classifier {
            return Ok(Head::CausalLm);
        }
        let num_labels = match (o.get("num_labels"), o.get("id2label")) {
            (Some(n), _) if !n.is_null() => n
                .as_i64()
                .with_context(|| format!("`num_labels` is {n}, not an integer"))?,
            (_, Some(Value::Object(labels))) => labels.len() as i64,
            _ => 2, // PretrainedConfig's default
        };
        Ok(Head::Classifier { num_labels })
    }

    /// The head of the checkpoint in `dir` (its `config.json`).
    pub fn read(dir: &std::path::Path) -> Result<Head> {
        let path = dir.join("config.json");
        let text = lpo_results::read_config_text(&path)?;
        Head::from_hf_json(&text).with_context(|| format!("in `{}`", path.display()))
    }
}

/// Decoder hyper-parameters (names as in Hugging Face's configs).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The family (`model_type`).
    pub family: Family,
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
    /// Width of one attention head (usually hidden_size / num_attention_heads).
    pub head_dim: i64,
    /// Longest sequence.
    pub max_position_embeddings: i64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Rotary scaling (`None` = plain rotary embeddings).
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Sliding attention window (`None` = full attention).
    pub sliding_window: Option<i64>,
    /// The output head is the transposed token embedding (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token ids (generation stops at any of them).
    pub eos_token_id: Vec<i64>,
    /// Padding token id.
    pub pad_token_id: Option<i64>,
    /// Experts of each block's sparse feed-forward (Mixtral's
    /// `num_local_experts`); 0 for a dense MLP.
    pub num_local_experts: i64,
    /// Experts each token is routed to (`num_experts_per_tok`); 0 when dense.
    pub num_experts_per_tok: i64,
}

impl Config {
    /// The configuration of a recipe's model section (a Mistral decoder).
    pub fn from_dims(d: &ModelDims) -> Config {
        Config {
            family: match d.experts {
                0 => Family::Mistral,
                _ => Family::Mixtral,
            },
            vocab_size: i64::from(d.vocab),
            hidden_size: i64::from(d.d_model),
            intermediate_size: i64::from(d.d_ff),
            num_hidden_layers: i64::from(d.layers),
            num_attention_heads: i64::from(d.heads),
            num_key_value_heads: i64::from(d.kv_heads),
            head_dim: i64::from(d.d_model / d.heads.max(1)),
            max_position_embeddings: i64::from(d.max_len),
            rope_theta: d.rope_theta,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            sliding_window: (d.sliding_window > 0).then_some(i64::from(d.sliding_window)),
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: Vec::new(),
            pad_token_id: None,
            num_local_experts: i64::from(d.experts),
            num_experts_per_tok: i64::from(d.experts_per_token),
        }
    }

    /// The recipe's view of this architecture: the fields `model.*` can set
    /// (`None` when one does not fit a recipe field).
    pub fn dims(&self) -> Option<ModelDims> {
        let u = |x: i64| u32::try_from(x).ok();
        Some(ModelDims {
            layers: u(self.num_hidden_layers)?,
            d_model: u(self.hidden_size)?,
            heads: u(self.num_attention_heads)?,
            kv_heads: u(self.num_key_value_heads)?,
            d_ff: u(self.intermediate_size)?,
            vocab: u(self.vocab_size)?,
            max_len: u(self.max_position_embeddings)?,
            rope_theta: self.rope_theta,
            sliding_window: u(self.sliding_window.unwrap_or(0))?,
            experts: u(self.num_local_experts)?,
            experts_per_token: u(self.num_experts_per_tok)?,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.head_dim
    }

    /// Whether each block's feed-forward is a sparse mixture of experts.
    pub fn is_moe(&self) -> bool {
        self.num_local_experts > 0
    }

    /// Whether the query, key and value projections have biases (Qwen2).
    pub fn qkv_bias(&self) -> bool {
        self.family == Family::Qwen2
    }

    /// Whether queries and keys get a per-head RMSNorm before the rotary
    /// embedding (Qwen3's `q_norm` and `k_norm`).
    pub fn qk_norm(&self) -> bool {
        self.family == Family::Qwen3
    }

    /// The rotary inverse frequencies (`head_dim / 2`) and the factor cos and
    /// sin are multiplied by.
    pub fn rope_frequencies(&self) -> (Vec<f64>, f64) {
        crate::rope::frequencies(self.head_dim, self.rope_theta, self.rope_scaling.as_ref())
    }

    /// A one-line description: family, size and rotary scaling.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} layers x {} ({} heads, {} kv heads, ffn {}, vocab {}, {} positions)",
            self.family.model_type(),
            self.num_hidden_layers,
            self.hidden_size,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.intermediate_size,
            self.vocab_size,
            self.max_position_embeddings
        );
        if self.is_moe() {
            s.push_str(&format!(
                ", {} experts, top {}",
                self.num_local_experts, self.num_experts_per_tok
            ));
        }
        if let Some(r) = &self.rope_scaling {
            s.push_str(&format!(", rope {}", r.kind()));
        }
        if self.tie_word_embeddings {
            s.push_str(", tied embeddings");
        }
        s
    }

    /// The `config.json` transformers 5.x reads (and writes: rotary
    /// parameters under `rope_parameters`).
    pub fn to_hf_json(&self) -> Value {
        let mut rope = self
            .rope_scaling
            .as_ref()
            .map_or_else(Map::new, RopeScaling::to_json);
        rope.entry("rope_type").or_insert_with(|| "default".into());
        rope.insert("rope_theta".into(), self.rope_theta.into());
        let mut v = serde_json::json!({
            "architectures": [self.family.architecture()],
            "model_type": self.family.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "hidden_act": "silu",
            "rope_parameters": rope,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": "float32",
            "bos_token_id": self.bos_token_id,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_json(),
        });
        let o = v.as_object_mut().expect("an object");
        match self.family {
            Family::Mistral => {
                o.insert("sliding_window".into(), self.sliding_window.into());
            }
            Family::Llama => {
                o.insert("attention_bias".into(), false.into());
                o.insert("mlp_bias".into(), false.into());
            }
            Family::Qwen2 => {
                o.insert("use_sliding_window".into(), false.into());
            }
            Family::Qwen3 => {
                o.insert("use_sliding_window".into(), false.into());
                o.insert("attention_bias".into(), false.into());
            }
            Family::Mixtral => {
                o.insert("sliding_window".into(), self.sliding_window.into());
                o.insert("num_local_experts".into(), self.num_local_experts.into());
                o.insert(
                    "num_experts_per_tok".into(),
                    self.num_experts_per_tok.into(),
                );
                o.insert("router_jitter_noise".into(), 0.0.into());
                o.insert("output_router_logits".into(), false.into());
            }
        }
        v
    }

    fn eos_json(&self) -> Value {
        match self.eos_token_id.as_slice() {
            [] => Value::Null,
            [one] => (*one).into(),
            many => many.into(),
        }
    }

    /// The `generation_config.json` beside a checkpoint: its special tokens,
    /// so `generate()` stops at the end token.
    pub fn generation_json(&self) -> Value {
        serde_json::json!({
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_json(),
            "pad_token_id": self.pad_token_id,
        })
    }

    /// Problems that would make the model wrong or its allocation absurd:
    /// sizes out of range, heads that do not divide, a non-positive window,
    /// rotary base or epsilon.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value, max) in [
            ("vocab_size", self.vocab_size, 1 << 22),
            ("hidden_size", self.hidden_size, 1 << 16),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, 1 << 10),
            ("num_attention_heads", self.num_attention_heads, 1 << 10),
            ("num_key_value_heads", self.num_key_value_heads, 1 << 10),
            ("head_dim", self.head_dim, 1 << 12),
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
        if self.head_dim % 2 != 0 {
            out.push(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim
            ));
        }
        if self.num_key_value_heads > 0 && self.num_attention_heads % self.num_key_value_heads != 0
        {
            out.push(format!(
                "num_key_value_heads {} does not divide num_attention_heads {}",
                self.num_key_value_heads, self.num_attention_heads
            ));
        }
        match (
            self.family,
            self.num_local_experts,
            self.num_experts_per_tok,
        ) {
            (Family::Mixtral, e, k) if !(1..=1 << 10).contains(&e) || !(1..=e).contains(&k) => {
                out.push(format!(
                    "num_local_experts {e} and num_experts_per_tok {k}: need 1 <= num_experts_per_tok <= num_local_experts <= 1024"
                ));
            }
            (Family::Mixtral, ..) | (_, 0, 0) => {}
            (family, ..) => out.push(format!("a {} decoder has no experts", family.model_type())),
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

    /// Reads the `config.json` of a checkpoint directory; errors name the file.
    pub fn read(dir: &std::path::Path) -> Result<Config> {
        let path = dir.join("config.json");
        let text = lpo_results::read_config_text(&path)?;
        Config::from_hf_json(&text).with_context(|| format!("in `{}`", path.display()))
    }

    /// Reads a Hugging Face `config.json` of a supported family, in the
    /// transformers 4.x or 5.x layout. Keys that change the computation but
    /// that lpo does not implement are errors; others (dtype, dropout,
    /// `use_cache`, ...) are ignored.
    pub fn from_hf_json(text: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(text)?;
        let o = value
            .as_object()
            .context("config.json is not a JSON object")?;
        let family = family_of(o)?;
        let int = |key: &str| -> Result<Option<i64>> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .with_context(|| format!("`{key}` is {v}, not an integer")),
            }
        };
        let need = |key: &str| -> Result<i64> {
            int(key)?.with_context(|| format!("missing field `{key}`"))
        };
        let flag = |key: &str| -> Result<bool> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(v) => bail!("`{key}` is {v}, not true or false"),
            }
        };
        let hidden_size = need("hidden_size")?;
        let heads = need("num_attention_heads")?;
        let max_positions = need("max_position_embeddings")?;
        refuse_unimplemented(o, family, &flag)?;
        let (rope_theta, rope_scaling) = rope_of(o, max_positions)?;
        let config = Config {
            family,
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: int("num_key_value_heads")?.unwrap_or(match family {
                Family::Mistral => 8, // MistralConfig's default
                _ => heads,
            }),
            num_local_experts: match family {
                Family::Mixtral => int("num_local_experts")?.unwrap_or(8), // MixtralConfig's defaults
                _ => 0,
            },
            num_experts_per_tok: match family {
                Family::Mixtral => int("num_experts_per_tok")?.unwrap_or(2),
                _ => 0,
            },
            head_dim: match int("head_dim")? {
                Some(h) => h,
                None if family == Family::Qwen3 => 128, // Qwen3Config's default
                None if heads > 0 => hidden_size / heads,
                None => 0,
            },
            max_position_embeddings: max_positions,
            rope_theta,
            rope_scaling,
            rms_norm_eps: match o.get("rms_norm_eps") {
                None | Some(Value::Null) => 1e-6,
                Some(v) => v
                    .as_f64()
                    .with_context(|| format!("`rms_norm_eps` is {v}, not a number"))?,
            },
            sliding_window: match family {
                // MistralConfig's default window when the key is absent.
                Family::Mistral if !o.contains_key("sliding_window") => Some(4096),
                Family::Mistral | Family::Mixtral => int("sliding_window")?,
                Family::Llama | Family::Qwen2 | Family::Qwen3 => None,
            },
            tie_word_embeddings: flag("tie_word_embeddings")?,
            bos_token_id: int("bos_token_id")?,
            eos_token_id: match o.get("eos_token_id") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(ids)) => ids
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .with_context(|| format!("`eos_token_id` holds {v}, not an integer"))
                    })
                    .collect::<Result<_>>()?,
                Some(v) => vec![v
                    .as_i64()
                    .with_context(|| format!("`eos_token_id` is {v}, not an integer"))?],
            },
            pad_token_id: int("pad_token_id")?,
        };
        let problems = config.problems();
        ensure!(
            problems.is_empty(),
            "invalid config: {}",
            problems.join("; ")
        );
        Ok(config)
    }
}

/// The family from `model_type` and `architectures`.
fn family_of(o: &Map<String, Value>) -> Result<Family> {
    let supported = || {
        Family::ALL
            .iter()
            .map(|f| f.model_type())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = o
        .get("model_type")
        .and_then(Value::as_str)
        .with_context(|| format!("no `model_type` (lpo runs {})", supported()))?;
    let family = Family::ALL
        .into_iter()
        .find(|f| f.model_type() == kind)
        .with_context(|| {
            format!(
                "model_type `{kind}` is not supported (lpo runs {} decoders)",
                supported()
            )
        })?;
    if let Some(archs) = o.get("architectures").filter(|v| !v.is_null()) {
        let archs = archs
            .as_array()
            .with_context(|| format!("`architectures` is {archs}, not a list"))?;
        for a in archs {
            ensure!(
                a.as_str() == Some(family.architecture())
                    || a.as_str() == Some(family.classifier_architecture()),
                "architecture {a} is not supported: a `{kind}` checkpoint must be a {} or a {}",
                family.architecture(),
                family.classifier_architecture()
            );
        }
    }
    Ok(family)
}

/// Keys whose non-default values transformers computes but lpo does not.
fn refuse_unimplemented(
    o: &Map<String, Value>,
    family: Family,
    flag: &dyn Fn(&str) -> Result<bool>,
) -> Result<()> {
    if let Some(act) = o.get("hidden_act").filter(|v| !v.is_null()) {
        ensure!(
            act.as_str() == Some("silu"),
            "hidden_act {act} is not supported (lpo's MLP is SwiGLU with silu)"
        );
    }
    if family == Family::Llama {
        for key in ["attention_bias", "mlp_bias"] {
            ensure!(!flag(key)?, "`{key} = true` is not supported for llama");
        }
    }
    if family == Family::Qwen3 {
        ensure!(
            !flag("attention_bias")?,
            "`attention_bias = true` is not supported for qwen3"
        );
    }
    if matches!(family, Family::Qwen2 | Family::Qwen3) {
        let sliding_layers = o
            .get("layer_types")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|l| l.as_str() != Some("full_attention")));
        ensure!(
            !flag("use_sliding_window")? && !sliding_layers,
            "{} sliding-window layers (`use_sliding_window`, `layer_types`) are not supported",
            family.model_type()
        );
    }
    if let Some(f) = o.get("partial_rotary_factor").and_then(Value::as_f64) {
        ensure!(f == 1.0, "partial_rotary_factor {f} is not supported");
    }
    if family == Family::Mixtral {
        // transformers multiplies the router's input by uniform noise while
        // training; lpo routes exactly.
        if let Some(j) = o.get("router_jitter_noise").filter(|v| !v.is_null()) {
            ensure!(
                j.as_f64() == Some(0.0),
                "router_jitter_noise {j} is not supported (lpo routes without noise)"
            );
        }
    }
    Ok(())
}

/// The rotary base and scaling, as transformers 5.x standardizes them:
/// `rope_scaling` (4.x) or else `rope_parameters` (5.x), with `rope_theta`
/// from inside them, else the top level, else 10000.
fn rope_of(o: &Map<String, Value>, max_positions: i64) -> Result<(f64, Option<RopeScaling>)> {
    let dict = |key: &str| -> Result<Option<&Map<String, Value>>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) if m.is_empty() => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => bail!("`{key}` is {v}, not an object"),
        }
    };
    let empty = Map::new();
    let params = match (dict("rope_scaling")?, dict("rope_parameters")?) {
        (Some(s), _) => s,
        (None, Some(p)) => p,
        (None, None) => &empty,
    };
    if params.values().any(Value::is_object) {
        bail!("per-layer rotary parameters (nested `rope_parameters`) are not supported");
    }
    let theta = match params.get("rope_theta").or_else(|| o.get("rope_theta")) {
        None | Some(Value::Null) => 10_000.0,
        Some(v) => v
            .as_f64()
            .with_context(|| format!("`rope_theta` is {v}, not a number"))?,
    };
    if let Some(f) = params.get("partial_rotary_factor").and_then(Value::as_f64) {
        ensure!(f == 1.0, "partial_rotary_factor {f} is not supported");
    }
    let kind = match params.get("rope_type").or_else(|| params.get("type")) {
        None | Some(Value::Null) => "default",
        Some(v) => v
            .as_str()
            .with_context(|| format!("`rope_type` is {v}, not a string"))?,
    };
    Ok((theta, RopeScaling::parse(kind, params, max_positions)?))
}
