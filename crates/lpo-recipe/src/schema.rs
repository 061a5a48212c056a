//! The typed recipe: what one experiment family configures.
//!
//! Every key, its type, default and range is also listed in [`crate::keys::KEYS`],
//! which drives validation and docs/recipes.md; a unit test keeps the two in step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schedule::Coef;

/// A resolved recipe: one experiment family (before its sweep is expanded) or one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    /// Family name; results land in `results/<name>/`. Cosmetic: not part of run ids.
    pub name: String,
    /// Free text. Cosmetic.
    pub description: String,
    /// Method label used by reports to group runs (default: the loss kind). Cosmetic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Another recipe merged underneath this one, relative to this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Policy and reference architecture.
    pub model: ModelConfig,
    /// How the frozen reference (the SFT model) is obtained.
    pub reference: ReferenceConfig,
    /// Training objective and its coefficients.
    pub loss: LossConfig,
    /// Data form and sources.
    pub data: DataConfig,
    /// Optimisation settings.
    pub train: TrainConfig,
    /// Held-out evaluation settings.
    pub eval: EvalConfig,
    /// How the family expands into runs.
    pub sweep: SweepConfig,
    /// Paper-style tables `lpo report` regenerates. Cosmetic.
    pub report: ReportConfig,
    /// Settings of the reward sources that file sources name
    /// (`data.mix[].reward`); absent from run ids while at its defaults.
    #[serde(skip_serializing_if = "RewardConfig::is_default")]
    pub reward: RewardConfig,
    /// Experiment trackers the runs also log to. Not part of run ids.
    #[serde(skip_serializing_if = "TrackingConfig::is_default")]
    pub tracking: TrackingConfig,
}

/// `[tracking]`: experiment trackers beside the run directory's own files
/// (TensorBoard's are always written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingConfig {
    /// An MLflow tracking server (`http://` or `https://`); none: no MLflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// The MLflow experiment (default: the recipe's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

impl TrackingConfig {
    /// Whether nothing is set (then config.toml leaves the section out).
    pub fn is_default(&self) -> bool {
        self == &TrackingConfig::default()
    }
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            name: "unnamed".into(),
            description: String::new(),
            label: None,
            extends: None,
            model: ModelConfig::default(),
            reference: ReferenceConfig::default(),
            loss: LossConfig::default(),
            data: DataConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            sweep: SweepConfig::default(),
            report: ReportConfig::default(),
            reward: RewardConfig::default(),
            tracking: TrackingConfig::default(),
        }
    }
}

impl Recipe {
    /// The reward kinds of the mix's prompt files, once each, in mix order.
    pub fn reward_kinds(&self) -> Vec<RewardKind> {
        let mut out = Vec::new();
        for kind in self.data.mix.iter().filter_map(|s| s.reward) {
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        out
    }

    /// Replaces the top-level field `name` (a section such as `train`, or a
    /// root key such as `label`) with `from`'s. False for a name that is not
    /// a field.
    pub fn copy_field(&mut self, from: &Recipe, name: &str) -> bool {
        match name {
            "name" => self.name = from.name.clone(),
            "description" => self.description = from.description.clone(),
            "label" => self.label = from.label.clone(),
            "extends" => self.extends = from.extends.clone(),
            "model" => self.model = from.model.clone(),
            "reference" => self.reference = from.reference.clone(),
            "loss" => self.loss = from.loss.clone(),
            "data" => self.data = from.data.clone(),
            "train" => self.train = from.train.clone(),
            "eval" => self.eval = from.eval.clone(),
            "sweep" => self.sweep = from.sweep.clone(),
            "report" => self.report = from.report.clone(),
            "reward" => self.reward = from.reward.clone(),
            "tracking" => self.tracking = from.tracking.clone(),
            _ => return false,
        }
        true
    }

    /// The method label reports group by: `label`, else the loss kind.
    pub fn method_label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.loss.kind.label())
    }
}

/// Named model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SizePreset {
    /// ~0.1M parameters: tests, seconds on a CPU.
    Nano,
    /// ~0.8M parameters: quickstart on 2 CPU cores.
    Tiny,
    /// ~5M parameters.
    Small,
    /// ~125M parameters (32k vocabulary).
    Base,
    /// Mistral 7B v0.1 (GPU only).
    #[serde(rename = "mistral-7b")]
    Mistral7b,
    /// Mixtral 8x7B v0.1: Mistral 7B's attention with 8 SwiGLU experts per
    /// block, 2 active per token (46.7B parameters, 12.9B active; GPU only).
    #[serde(rename = "mixtral-8x7b")]
    Mixtral8x7b,
}

/// Model section: a size preset with optional per-field overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Size preset the other fields override (`None`: `nano`, unless
    /// `reference.checkpoint` gives the architecture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizePreset>,
    /// Decoder blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// Residual width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_model: Option<u32>,
    /// Query heads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<u32>,
    /// Key/value heads (grouped-query attention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    /// SwiGLU hidden width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_ff: Option<u32>,
    /// Vocabulary size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab: Option<u32>,
    /// Longest sequence (prompt + response) in tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u32>,
    /// Rotary embedding base.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Sliding attention window in tokens (0 = full causal attention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<u32>,
    /// Experts of each block's sparse feed-forward (0 = a dense SwiGLU MLP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experts: Option<u32>,
    /// Experts each token is routed to (top-k).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experts_per_token: Option<u32>,
    /// Weight of the router's load-balancing loss added to the training
    /// loss (transformers' `router_aux_loss_coef` with
    /// `output_router_logits`); 0 = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_aux_loss_coef: Option<f64>,
    /// Low-rank adapters (off unless `rank > 0`).
    #[serde(skip_serializing_if = "LoraConfig::is_off")]
    pub lora: LoraConfig,
}

/// `[model.lora]`: train low-rank adapters `W + (alpha / rank) B A` on the
/// named linear layers, with the base weights frozen (PEFT's LoRA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Adapter rank r; 0 = full fine-tuning.
    pub rank: u32,
    /// Scale numerator: adapters are multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f64,
    /// Linear layers that get adapters (PEFT's `target_modules`).
    pub targets: Vec<LoraTarget>,
}

/// A linear layer of a decoder block (Hugging Face module names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// Query projection.
    QProj,
    /// Key projection.
    KProj,
    /// Value projection.
    VProj,
    /// Attention output projection.
    OProj,
    /// SwiGLU gate projection.
    GateProj,
    /// SwiGLU up projection.
    UpProj,
    /// SwiGLU down projection.
    DownProj,
    /// Mixtral: every expert's gate projection (`w1`).
    W1,
    /// Mixtral: every expert's down projection (`w2`).
    W2,
    /// Mixtral: every expert's up projection (`w3`).
    W3,
    /// Mixtral: the router (`block_sparse_moe.gate`).
    Gate,
}

impl LoraTarget {
    /// The module name (`q_proj`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LoraTarget::QProj => "q_proj",
            LoraTarget::KProj => "k_proj",
            LoraTarget::VProj => "v_proj",
            LoraTarget::OProj => "o_proj",
            LoraTarget::GateProj => "gate_proj",
            LoraTarget::UpProj => "up_proj",
            LoraTarget::DownProj => "down_proj",
            LoraTarget::W1 => "w1",
            LoraTarget::W2 => "w2",
            LoraTarget::W3 => "w3",
            LoraTarget::Gate => "gate",
        }
    }

    /// Whether the layer exists in a model with (`moe`) or without experts:
    /// the dense MLP's projections only in dense blocks, the experts' and
    /// the router only in sparse ones; attention in both.
    pub fn exists(self, moe: bool) -> bool {
        match self {
            LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj | LoraTarget::OProj => true,
            LoraTarget::GateProj | LoraTarget::UpProj | LoraTarget::DownProj => !moe,
            LoraTarget::W1 | LoraTarget::W2 | LoraTarget::W3 | LoraTarget::Gate => moe,
        }
    }
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 0,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec![
                LoraTarget::QProj,
                LoraTarget::KProj,
                LoraTarget::VProj,
                LoraTarget::OProj,
            ],
        }
    }
}

impl LoraConfig {
    /// Whether adapters are off (full fine-tuning).
    pub fn is_off(&self) -> bool {
        self.rank == 0
    }
}

/// Concrete architecture: a preset with its overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelDims {
    /// Decoder blocks.
    pub layers: u32,
    /// Residual width.
    pub d_model: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// SwiGLU hidden width.
    pub d_ff: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Longest sequence in tokens.
    pub max_len: u32,
    /// Rotary embedding base.
    pub rope_theta: f64,
    /// Sliding attention window (0 = none).
    pub sliding_window: u32,
    /// Experts of each block's sparse feed-forward (0 = dense). Absent from
    /// run ids when 0, so dense ids are as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub experts: u32,
    /// Experts each token is routed to (0 when dense).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub experts_per_token: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SizePreset {
    /// The preset's architecture.
    pub fn dims(self) -> ModelDims {
        let (experts, experts_per_token) = match self {
            SizePreset::Mixtral8x7b => (8, 2),
            _ => (0, 0),
        };
        let (layers, d_model, heads, kv_heads, d_ff, vocab, max_len, rope_theta, sliding_window) =
            match self {
                SizePreset::Nano => (2, 64, 4, 2, 176, 64, 128, 10_000.0, 0),
                SizePreset::Tiny => (4, 128, 4, 2, 352, 64, 256, 10_000.0, 0),
                SizePreset::Small => (6, 256, 8, 4, 704, 64, 256, 10_000.0, 0),
                SizePreset::Base => (12, 768, 12, 4, 2048, 32_000, 1024, 10_000.0, 0),
                SizePreset::Mistral7b => (32, 4096, 32, 8, 14_336, 32_000, 32_768, 10_000.0, 4096),
                SizePreset::Mixtral8x7b => (32, 4096, 32, 8, 14_336, 32_000, 32_768, 1e6, 0),
            };
        ModelDims {
            layers,
            d_model,
            heads,
            kv_heads,
            d_ff,
            vocab,
            max_len,
            rope_theta,
            sliding_window,
            experts,
            experts_per_token,
        }
    }

    /// The name recipes use.
    pub fn as_str(self) -> &'static str {
        match self {
            SizePreset::Nano => "nano",
            SizePreset::Tiny => "tiny",
            SizePreset::Small => "small",
            SizePreset::Base => "base",
            SizePreset::Mistral7b => "mistral-7b",
            SizePreset::Mixtral8x7b => "mixtral-8x7b",
        }
    }
}

impl ModelConfig {
    /// The architecture after overrides.
    pub fn dims(&self) -> ModelDims {
        let p = self.size.unwrap_or(SizePreset::Nano).dims();
        let experts = self.experts.unwrap_or(p.experts);
        let experts_per_token = match (self.experts_per_token, experts, p.experts) {
            (Some(k), _, _) => k,
            (None, 0, _) => 0,
            (None, _, 0) => 2, // transformers' MixtralConfig default
            (None, _, _) => p.experts_per_token,
        };
        ModelDims {
            layers: self.layers.unwrap_or(p.layers),
            d_model: self.d_model.unwrap_or(p.d_model),
            heads: self.heads.unwrap_or(p.heads),
            kv_heads: self.kv_heads.unwrap_or(p.kv_heads),
            d_ff: self.d_ff.unwrap_or(p.d_ff),
            vocab: self.vocab.unwrap_or(p.vocab),
            max_len: self.max_len.unwrap_or(p.max_len),
            rope_theta: self.rope_theta.unwrap_or(p.rope_theta),
            sliding_window: self.sliding_window.unwrap_or(p.sliding_window),
            experts,
            experts_per_token,
        }
    }

    /// The router's load-balancing loss weight (0 = off).
    pub fn router_aux_loss_coef(&self) -> f64 {
        self.router_aux_loss_coef.unwrap_or(0.0)
    }
}

impl ModelDims {
    /// Width of one attention head.
    pub fn head_dim(&self) -> u64 {
        u64::from(self.d_model / self.heads.max(1))
    }

    /// Trainable parameters of the Mistral-style decoder (untied embeddings).
    ///
    /// Per block: two RMSNorm gains, Q and O (d x d), K and V (d x kv_heads*head_dim),
    /// and the SwiGLU gate, up and down projections (3 x d x d_ff); with
    /// experts, those three of every expert plus the router (experts x d).
    pub fn parameter_count(&self) -> u64 {
        self.count(u64::from(self.experts.max(1)))
    }

    /// Parameters a token passes through: every expert's weights counted for
    /// the `experts_per_token` it is routed to (the router counted once).
    /// Equals [`ModelDims::parameter_count`] for a dense model.
    pub fn active_parameter_count(&self) -> u64 {
        match self.experts {
            0 => self.parameter_count(),
            _ => self.count(u64::from(self.experts_per_token)),
        }
    }

    fn count(&self, experts: u64) -> u64 {
        let d = u64::from(self.d_model);
        let kv = u64::from(self.kv_heads) * self.head_dim();
        let router = u64::from(self.experts) * d;
        let ffn = experts * 3 * d * u64::from(self.d_ff) + router;
        let block = 2 * d + 2 * d * d + 2 * d * kv + ffn;
        let embeddings = 2 * u64::from(self.vocab) * d;
        u64::from(self.layers) * block + embeddings + d
    }

    /// Whether each block's feed-forward is a sparse mixture of experts.
    pub fn is_moe(&self) -> bool {
        self.experts > 0
    }

    /// Cross-field problems (divisibility of heads), as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            problems.push((
                "model.heads",
                format!(
                    "d_model {} is not divisible by heads {}",
                    self.d_model, self.heads
                ),
            ));
        } else if !self.head_dim().is_multiple_of(2) {
            problems.push((
                "model.heads",
                format!(
                    "head width {} must be even for rotary embeddings",
                    self.head_dim()
                ),
            ));
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            problems.push((
                "model.kv_heads",
                format!(
                    "heads {} is not divisible by kv_heads {}",
                    self.heads, self.kv_heads
                ),
            ));
        }
        match (self.experts, self.experts_per_token) {
            (0, 0) => {}
            (0, k) => problems.push((
                "model.experts_per_token",
                format!("is {k}, but the model has no experts (set model.experts)"),
            )),
            (e, k) if k == 0 || k > e => problems.push((
                "model.experts_per_token",
                format!("is {k}, but must be between 1 and model.experts ({e})"),
            )),
            _ => {}
        }
        problems
    }
}

/// Reference section: supervised fine-tuning on demonstrations, some of them
/// wrong, so the reference is good but imperfect; or a checkpoint directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceConfig {
    /// SFT optimizer steps on built-in task demonstrations.
    pub sft_steps: u32,
    /// Demonstrations per SFT step.
    pub sft_batch_size: u32,
    /// SFT AdamW learning rate.
    pub sft_learning_rate: f64,
    /// Share of demonstrations replaced by a wrong answer.
    pub error_rate: f64,
    /// Temperature when sampling the K responses of each training prompt.
    pub sample_temperature: f64,
    /// A Hugging Face Mistral checkpoint directory used instead of SFT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            sft_steps: 2000,
            sft_batch_size: 32,
            sft_learning_rate: 3e-3,
            error_rate: 0.2,
            sample_temperature: 1.0,
            checkpoint: None,
        }
    }
}

pub use crate::losses::{LossKind, Objective};

/// LPO's per-response weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoefficientMode {
    /// `c_i = p_i / sum_W p_k` (reward-adaptive).
    Adaptive,
    /// `c_i = 1 / |W|`.
    Uniform,
}

/// How DPO reduces a list to pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// Highest against lowest reward.
    BestWorst,
    /// Highest against each other response.
    BestRest,
    /// Every ordered pair with r_i > r_j.
    All,
}

/// How sequence log-probabilities aggregate tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Sum over response tokens.
    Sum,
    /// Mean over response tokens.
    Mean,
}

/// Loss section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Which objective: one kind or a weighted sum of kinds.
    pub kind: Objective,
    /// Implicit-reward scale beta (> 0).
    pub beta: Coef,
    /// Reward temperature alpha of the target distribution softmax(r / alpha) (> 0).
    pub alpha: Coef,
    /// Weight of LPO's anchor term (>= 0).
    pub gamma: Coef,
    /// LPO's loss coefficient.
    pub coefficient: CoefficientMode,
    /// Weight each prompt by its reward spread (LPO).
    pub margin_weight: bool,
    /// Reward scale dividing the spread when `margin_weight` is on.
    pub reward_scale: f64,
    /// DPO pair construction for K > 2.
    pub pairing: Pairing,
    /// Token aggregation of sequence log-probabilities.
    pub normalize: Normalize,
    /// Weight of the supervised term (length-normalised NLL of the best response) (>= 0).
    pub sft_weight: Coef,
    /// Probability that a preference label is flipped, in [0, 0.5) (robust).
    pub label_smoothing: f64,
    /// EXO's epsilon in (0, 1): the target probability of the rejected response (exo_pair).
    pub exo_epsilon: f64,
    /// DiscoPOP's temperature tau (> 0).
    pub discopop_tau: f64,
    /// SimPO's target reward margin gamma (>= 0).
    pub simpo_gamma: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            kind: Objective::One(LossKind::Lpo),
            beta: Coef::Value(0.1),
            alpha: Coef::Value(1.0),
            gamma: Coef::Value(0.0),
            coefficient: CoefficientMode::Adaptive,
            margin_weight: false,
            reward_scale: 10.0,
            pairing: Pairing::BestWorst,
            normalize: Normalize::Sum,
            sft_weight: Coef::Value(0.0),
            label_smoothing: 0.0,
            exo_epsilon: 1e-3,
            discopop_tau: 0.05,
            simpo_gamma: 0.5,
        }
    }
}

/// Whether the trainer sees scored lists or binarized pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataForm {
    /// K responses with scalar rewards.
    Reward,
    /// Each list binarized to (best, random other), as binarized UltraFeedback.
    Preference,
}

/// File formats the importers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// `{"prompt": …, "responses": [{"text": …, "reward": …}]}` per line.
    Native,
    /// UltraFeedback raw: instruction + completions with scores.
    Ultrafeedback,
    /// UltraFeedback binarized: prompt/chosen/rejected with scores.
    UltrafeedbackBinarized,
    /// TRL's standard and conversational preference formats.
    Trl,
    /// Prompts (with reference answers or tests) for a reward source.
    Prompts,
    /// GSM8K's question/answer records.
    Gsm8k,
    /// HumanEval's prompt/test/entry_point records.
    Humaneval,
}

impl FileFormat {
    /// Whether the records are prompts whose responses lpo samples and a
    /// reward source scores.
    pub fn is_prompts(self) -> bool {
        matches!(
            self,
            FileFormat::Prompts | FileFormat::Gsm8k | FileFormat::Humaneval
        )
    }
}

/// How a prompt source's sampled responses are scored (docs/data.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// The final answer against the record's `answer` (10 if equal, else 0).
    Math,
    /// The program against the record's `tests` in a sandbox (10 if they pass, else 0).
    Code,
    /// The score of `reward.model`, a sequence-classification checkpoint.
    Model,
}

impl RewardKind {
    /// The name recipes use.
    pub fn name(self) -> &'static str {
        match self {
            RewardKind::Math => "math",
            RewardKind::Code => "code",
            RewardKind::Model => "model",
        }
    }
}

/// How the math reward finds a response's final answer (`reward.math_style`).
pub use lpo_reward::math::AnswerStyle;

/// Settings of the reward sources (`[reward]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// Reward-model checkpoint (directory or Hub name) for `reward = "model"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Answer extraction of the math reward.
    pub math_style: AnswerStyle,
    /// Wall-clock limit of one code execution, seconds.
    pub code_timeout: f64,
    /// Address-space limit of one code execution, MiB.
    pub code_memory_mb: u32,
    /// Sequences per reward-model forward pass (not in run ids).
    pub model_batch: u32,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            model: None,
            math_style: AnswerStyle::Auto,
            code_timeout: 10.0,
            code_memory_mb: 1024,
            model_batch: 8,
        }
    }
}

impl RewardConfig {
    /// Whether every setting is the default (then absent from run ids).
    pub fn is_default(&self) -> bool {
        *self == RewardConfig::default()
    }

    /// The settings that change what the reward `kinds` compute (the keys
    /// of the others, and `model_batch`, change nothing).
    pub fn relevant_keys(&self, kinds: &[RewardKind]) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for kind in kinds {
            keys.extend_from_slice(match kind {
                RewardKind::Math => &["math_style"][..],
                RewardKind::Code => &["code_timeout", "code_memory_mb"],
                RewardKind::Model => &["model"],
            });
        }
        keys
    }
}

/// Whether prompts go through the tokenizer's chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplateUse {
    /// The `chat_template` of `tokenizer_config.json`, when it has one.
    Auto,
    /// `[bos] + prompt`, without a template.
    None,
}

/// What to do with a malformed dataset line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRecord {
    /// Stop with an error naming file and line.
    Error,
    /// Skip it and count it.
    Skip,
}

impl OnBadRecord {
    /// Whether this is `error` (the default).
    pub fn is_error(&self) -> bool {
        *self == OnBadRecord::Error
    }
}

impl ChatTemplateUse {
    /// Whether this is `auto` (the default).
    pub fn is_auto(&self) -> bool {
        *self == ChatTemplateUse::Auto
    }
}

/// The built-in explicit-reward tasks a data source may name.
pub const BUILTIN_TASKS: &[&str] = &["arith", "program", "rating"];

/// One entry of `data.mix`: a built-in task or a file, with a sampling weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// Built-in task name (one of [`BUILTIN_TASKS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// JSONL file, relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Format of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// Relative sampling weight (> 0).
    #[serde(default = "one")]
    pub weight: f64,
    /// Split of a dataset directory `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Split of the same directory that is this source's held-out lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_split: Option<String>,
    /// The reward source scoring a prompt file's sampled responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardKind>,
}

fn one() -> f64 {
    1.0
}

/// Data section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Reward lists or preference pairs.
    pub form: DataForm,
    /// Responses per prompt K (>= 2).
    pub list_size: u32,
    /// Training prompts drawn from the mix.
    pub train_prompts: u32,
    /// Weighted sources.
    pub mix: Vec<DataSource>,
    /// Malformed line policy.
    pub on_bad_record: OnBadRecord,
    /// Hugging Face `tokenizer.json` for text data (default: the character tokenizer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Share of lists held out from training for ranking metrics: of each
    /// file's records, and of `train_prompts` for built-in tasks.
    pub eval_fraction: f64,
    // Real data (issue 13).
    /// Chat template use (in run ids only when not `auto`, so ids from
    /// before the key existed stay).
    #[serde(skip_serializing_if = "ChatTemplateUse::is_auto")]
    pub chat_template: ChatTemplateUse,
    /// Which named chat template (default: `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template_name: Option<String>,
    /// Whether file records may be drawn more than once (in run ids only when set).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oversample: bool,
    /// Beginning-of-sequence token text (overrides tokenizer_config.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    /// End-of-sequence token text (overrides tokenizer_config.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_token: Option<String>,
    /// Padding token text (overrides tokenizer_config.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_token: Option<String>,
    /// Longest prompt in tokens (its end is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u32>,
    /// Longest response in tokens (cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_tokens: Option<u32>,
    /// Records with characters outside the character tokenizer's alphabet
    /// (in run ids only when not `error`).
    #[serde(skip_serializing_if = "OnBadRecord::is_error")]
    pub unknown_chars: OnBadRecord,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            form: DataForm::Reward,
            list_size: 4,
            train_prompts: 512,
            mix: vec![DataSource {
                task: Some("arith".into()),
                path: None,
                format: None,
                weight: 1.0,
                split: None,
                eval_split: None,
                reward: None,
            }],
            on_bad_record: OnBadRecord::Error,
            tokenizer: None,
            eval_fraction: 0.1,
            chat_template: ChatTemplateUse::Auto,
            chat_template_name: None,
            oversample: false,
            bos_token: None,
            eos_token: None,
            pad_token: None,
            max_prompt_tokens: None,
            max_response_tokens: None,
            unknown_chars: OnBadRecord::Error,
        }
    }
}

/// The reference of on-policy rounds after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceUpdate {
    /// The SFT reference throughout.
    Fixed,
    /// The policy as it was at the start of the round.
    Round,
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Constant after warmup.
    Constant,
    /// Linear decay to zero.
    Linear,
    /// Cosine decay to zero.
    Cosine,
}

/// Where a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// CPU.
    Cpu,
    /// CUDA (error without a GPU).
    Cuda,
}

/// Train section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps (per on-policy round).
    pub steps: u32,
    /// Whole passes over the training lists per round instead of `steps`
    /// (the steps follow from the number of lists, known once they are built).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// On-policy rounds: after each, the training prompts' lists are sampled
    /// again from the current policy (1 = offline training).
    pub rounds: u32,
    /// Whether the reference stays the SFT model or moves to the policy at
    /// the start of each round.
    pub reference_update: ReferenceUpdate,
    /// Prompts per optimizer step (each with its K responses).
    pub batch_size: u32,
    /// Peak AdamW learning rate.
    pub learning_rate: f64,
    /// Decay after warmup.
    pub lr_schedule: LrSchedule,
    /// Linear learning-rate warmup steps.
    pub warmup_steps: u32,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Micro-batches accumulated per step.
    pub grad_accum: u32,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Device (an execution setting: not part of run ids).
    pub device: DeviceChoice,
    /// CPU threads (0 = all; an execution setting: not part of run ids).
    pub threads: u32,
    /// Save a resumable checkpoint every this many steps (0 = only at the
    /// end; an execution setting: not part of run ids).
    pub checkpoint_every: u32,
    /// Seed of data sampling, initialisation and evaluation.
    pub seed: u64,
    /// Keep only each block's input in the forward pass and recompute the
    /// block during backward (same gradients, less memory; an execution
    /// setting: not part of run ids).
    pub activation_checkpointing: bool,
    /// Precision of AdamW's moments.
    #[serde(skip_serializing_if = "Moments::is_f32")]
    pub moments: Moments,
    /// Byte-identical CPU results across x86-64 CPUs at the same thread
    /// count (docs/performance.md: reproducible mode); part of run ids when
    /// on, since it computes other (equally valid) roundings.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reproducible: bool,
    /// Training passes of the policy compute real tokens only (padding-free
    /// lists; docs/performance.md, "Packed lists"); part of run ids when on,
    /// since float sums then run in another order.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub packed: bool,
}

impl TrainConfig {
    /// The CPU threads a run computes with when the recipe fixes them:
    /// `threads`, or 1 in reproducible mode (sums are ordered by the thread
    /// count, so a machine-dependent default would move the bytes); `None`
    /// leaves the choice to the executor.
    pub fn fixed_threads(&self) -> Option<u32> {
        match (self.threads, self.reproducible) {
            (0, true) => Some(1),
            (0, false) => None,
            (n, _) => Some(n),
        }
    }
}

/// Storage of AdamW's first and second moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Moments {
    /// float32.
    #[default]
    F32,
    /// bfloat16: half the optimizer memory; the update is computed in
    /// float32 and rounded when stored.
    Bf16,
}

impl Moments {
    /// Whether this is the default.
    pub fn is_f32(&self) -> bool {
        *self == Moments::F32
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 200,
            epochs: None,
            rounds: 1,
            reference_update: ReferenceUpdate::Fixed,
            batch_size: 8,
            learning_rate: 1e-4,
            lr_schedule: LrSchedule::Cosine,
            warmup_steps: 10,
            grad_clip: 1.0,
            grad_accum: 1,
            weight_decay: 0.0,
            device: DeviceChoice::Auto,
            threads: 0,
            checkpoint_every: 25,
            seed: 0,
            activation_checkpointing: false,
            reproducible: false,
            packed: false,
            moments: Moments::F32,
        }
    }
}

/// Decoding at evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// Argmax.
    Greedy,
    /// Temperature / top-p sampling.
    Sample,
}

/// Eval section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Held-out prompts.
    pub prompts: u32,
    /// Responses sampled per held-out prompt and model.
    pub samples: u32,
    /// Share of held-out prompts and lists used for validation (the rest is test).
    pub validation_fraction: f64,
    /// Measure the held-out list curves every this many steps (0 = off).
    pub every: u32,
    /// Decoding strategy.
    pub decoding: Decoding,
    /// Sampling temperature (> 0).
    pub temperature: f64,
    /// Nucleus mass (0, 1].
    pub top_p: f64,
    /// Longest generated response in tokens.
    pub max_new_tokens: u32,
    /// `reference` (the SFT model) or another run's label in the same sweep.
    pub baseline: String,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            prompts: 200,
            samples: 8,
            validation_fraction: 0.5,
            every: 25,
            decoding: Decoding::Sample,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 32,
            baseline: "reference".into(),
        }
    }
}

/// What a paper table's cells show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableMetric {
    /// Win rate against the baseline, with its interval and significance.
    WinRate,
    /// Mean reward of the method's responses.
    Reward,
    /// Share of responses with the full reward (tasks with an exact answer).
    Accuracy,
}

/// One paper table: rows are methods, columns tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// File stem under `results/tables/`.
    pub name: String,
    /// Cell contents.
    #[serde(default = "win_rate")]
    pub metric: TableMetric,
    /// `reference` or a method label (default: `eval.baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

fn win_rate() -> TableMetric {
    TableMetric::WinRate
}

/// Report section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Tables to regenerate.
    pub tables: Vec<TableSpec>,
    /// The declared family of hypotheses the multiple-comparison adjustment
    /// runs over; empty: every test the report shows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub family: Vec<Hypothesis>,
    /// Equivalence margin D: a paired TOST at 0.05 for |Δ reward| < D on
    /// every comparison with two or more seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equivalence_margin: Option<f64>,
}

/// One declared hypothesis: method `a` minus `b` (`reference` or a method
/// label) differ in mean reward, on `task` or on every task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// The method label tested.
    pub a: String,
    /// What it is compared with: `reference` or a method label.
    pub b: String,
    /// One task (or data source); default: every task both have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// One group of axes that move together.
pub type ZipGroup = BTreeMap<String, Vec<toml::Value>>;

/// Sweep section: how a family expands into runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Cartesian product over dotted keys.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Groups of equal-length axes that move together; groups cross each other.
    #[serde(deserialize_with = "zip_groups")]
    pub zip: Vec<ZipGroup>,
    /// Replicate seeds (override `train.seed`); empty = the recipe's seed once.
    pub seeds: Vec<u64>,
    /// Runs matching every key of any entry are dropped.
    pub exclude: Vec<BTreeMap<String, toml::Value>>,
}

/// Accepts `zip` as one table or an array of tables.
fn zip_groups<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ZipGroup>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(ZipGroup),
        Many(Vec<ZipGroup>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(group) if group.is_empty() => Vec::new(),
        OneOrMany::One(group) => vec![group],
        OneOrMany::Many(groups) => groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_field_knows_every_top_level_field() {
        let mut from = Recipe {
            name: "other".into(),
            description: "d".into(),
            label: Some("x".into()),
            extends: Some("base.toml".into()),
            ..Recipe::default()
        };
        from.train.steps += 1;
        from.eval.prompts += 1;
        let table = toml::Value::try_from(&from).unwrap();
        let mut to = Recipe::default();
        for key in table.as_table().unwrap().keys() {
            assert!(to.copy_field(&from, key), "{key}");
        }
        assert_eq!(to, from);
        assert!(!to.copy_field(&from, "nonsense"));
    }

    #[test]
    fn mistral_7b_has_its_published_parameter_count() {
        // Mistral 7B v0.1: 7,241,732,096 parameters (Hugging Face model card / safetensors index).
        assert_eq!(
            SizePreset::Mistral7b.dims().parameter_count(),
            7_241_732_096
        );
    }

    #[test]
    fn presets_are_consistent_and_grow() {
        let sizes = [
            SizePreset::Nano,
            SizePreset::Tiny,
            SizePreset::Small,
            SizePreset::Base,
            SizePreset::Mistral7b,
        ];
        let counts: Vec<u64> = sizes.iter().map(|s| s.dims().parameter_count()).collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
        for size in sizes {
            assert!(
                size.dims().problems().is_empty(),
                "{size:?}: {:?}",
                size.dims().problems()
            );
        }
        let base = SizePreset::Base.dims().parameter_count();
        assert!(
            (100_000_000..150_000_000).contains(&base),
            "base has {base}"
        );
    }

    #[test]
    fn overrides_replace_preset_fields() {
        let m = ModelConfig {
            size: Some(SizePreset::Tiny),
            layers: Some(7),
            ..ModelConfig::default()
        };
        assert_eq!(m.dims().layers, 7);
        assert_eq!(m.dims().d_model, SizePreset::Tiny.dims().d_model);
    }

    #[test]
    fn head_problems_are_reported() {
        let dims = ModelDims {
            heads: 3,
            ..SizePreset::Nano.dims()
        };
        assert_eq!(dims.problems()[0].0, "model.heads");
    }

    #[test]
    fn zip_accepts_table_or_array() {
        let one: SweepConfig =
            toml::from_str("zip = { \"loss.kind\" = [\"lpo\", \"dpo\"] }").unwrap();
        assert_eq!(one.zip.len(), 1);
        let many: SweepConfig = toml::from_str("[[zip]]\na = [1]\n[[zip]]\nb = [2]").unwrap();
        assert_eq!(many.zip.len(), 2);
    }
}
