//! Estimated peak memory of a run: weights, gradients, optimizer state, the
//! reference model, and activations at the configured batch and lengths.
//!
//! An estimate for refusing runs that cannot fit and for choosing LoRA or
//! activation checkpointing, not a measurement: `summary.json` records the
//! measured peak of every run (docs/performance.md compares the two).

use lpo_recipe::{LoraTarget, Moments, Recipe};
use lpo_tasks::Task;
use serde::Serialize;

/// Where a run's tensors live, which sets their precision: on the CPU all
/// float32; on CUDA bfloat16 weights, gradients and activations with
/// float32 master weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Host memory.
    Cpu,
    /// One CUDA device.
    Cuda,
}

/// Bytes by what holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// Policy weights (base weights and adapters with LoRA).
    pub weights: u64,
    /// float32 master copy of the trainable weights (CUDA).
    pub master: u64,
    /// Gradients of the trainable weights.
    pub gradients: u64,
    /// AdamW's two moments.
    pub optimizer: u64,
    /// A separate reference model (none with LoRA: the base is the reference).
    pub reference: u64,
    /// Saved activations of one micro-batch's forward pass.
    pub activations: u64,
    /// Output logits, their log-softmax and its gradient (float32).
    pub logits: u64,
    /// Rotary cos/sin tables of the policy and the reference (`max_len x
    /// head_dim` each, float32) and the float64 temporaries of building one.
    pub rotary: u64,
    /// The KL estimate after training, no gradients: `eval.samples`
    /// responses of [`EVAL_LOGPS_CHUNK`] prompts at once, their logits and
    /// one block's activations. Not at the same time as training's
    /// activations and logits: the peak takes the larger.
    pub evaluation: u64,
    /// libtorch's own allocations (CPU runtime, or the CUDA context).
    pub runtime: u64,
    /// The reward model's weights (`reward.model`), resident for the whole
    /// run when a source is scored by it.
    pub reward_model: u64,
}

/// Prompts whose responses' log-probabilities are computed in one forward
/// pass at evaluation (the KL estimate, held-out lists): defined here, where
/// the estimate counts them, and used by lpo-train's evaluation.
pub const EVAL_LOGPS_CHUNK: usize = 32;

/// libtorch's runtime and allocator slack (measured about 0.4 GiB on CPU).
const RUNTIME_BYTES: u64 = 512 << 20;

impl MemoryEstimate {
    /// The estimated peak.
    pub fn total(&self) -> u64 {
        self.weights
            + self.master
            + self.gradients
            + self.optimizer
            + self.reference
            + self.rotary
            + (self.activations + self.logits).max(self.evaluation)
            + self.runtime
            + self.reward_model
    }
}

/// Longest prompt and response (tokens) a run's batches can hold: for the
/// built-in tasks their longest prompt plus BOS and `eval.max_new_tokens`;
/// with a file source `data.max_response_tokens` and `data.max_prompt_tokens`
/// within `model.max_len` (the worst case it allows when they are unset).
pub fn sequence_lengths(recipe: &Recipe) -> (u64, u64) {
    let max_len = u64::from(recipe.model.dims().max_len);
    let tasks: Option<Vec<Task>> = recipe
        .data
        .mix
        .iter()
        .map(|s| s.task.as_deref().and_then(Task::from_name))
        .collect();
    match tasks {
        Some(tasks) => {
            let prompt = tasks.iter().map(|t| t.longest_prompt()).max().unwrap_or(0) as u64 + 1;
            let response = u64::from(recipe.eval.max_new_tokens);
            (prompt.min(max_len), response.min(max_len))
        }
        None => {
            // The longest response the limits allow, then the longest prompt
            // beside it (prompt + response <= max_len).
            let cap =
                |limit: Option<u32>, room: u64| limit.map_or(room, u64::from).min(room).max(1);
            let response = cap(recipe.data.max_response_tokens, max_len.saturating_sub(1));
            let prompt = cap(
                recipe.data.max_prompt_tokens,
                max_len.saturating_sub(response),
            );
            (prompt, response)
        }
    }
}

/// The estimated peak memory of training `recipe` on `placement`.
pub fn estimate(recipe: &Recipe, placement: Placement) -> MemoryEstimate {
    let dims = recipe.model.dims();
    let params = dims.parameter_count();
    let lora = &recipe.model.lora;
    let adapters = adapter_parameters(recipe);
    let trainable = if lora.is_off() { params } else { adapters };
    let (weight_bytes, act_bytes) = match placement {
        Placement::Cpu => (4, 4),
        Placement::Cuda => (2, 2),
    };
    let moment_bytes = match recipe.train.moments {
        Moments::F32 => 4,
        Moments::Bf16 => 2,
    };
    let (activations, logits) = activation_bytes(recipe, placement, act_bytes);
    MemoryEstimate {
        rotary: rotary_bytes(recipe),
        evaluation: evaluation_bytes(recipe, act_bytes),
        weights: (params + adapters) * weight_bytes,
        master: match placement {
            Placement::Cuda => trainable * 4,
            Placement::Cpu => 0,
        },
        gradients: trainable * weight_bytes,
        optimizer: 2 * trainable * moment_bytes,
        reference: if lora.is_off() {
            params * weight_bytes
        } else {
            0
        },
        activations,
        logits,
        runtime: RUNTIME_BYTES,
        reward_model: reward_model_bytes(recipe, weight_bytes),
    }
}

/// The weights of `reward.model` when a source is scored by it (from its
/// config.json; 0 when it cannot be read, which planning reports anyway).
fn reward_model_bytes(recipe: &Recipe, weight_bytes: u64) -> u64 {
    let uses = recipe
        .reward_kinds()
        .contains(&lpo_recipe::RewardKind::Model);
    let Some(dir) = recipe.reward.model.as_deref().filter(|_| uses) else {
        return 0;
    };
    lpo_hf::Config::read(std::path::Path::new(dir))
        .ok()
        .and_then(|c| c.dims())
        .map_or(0, |d| d.parameter_count() * weight_bytes)
}

/// Two rotary tables (policy and reference), `2 x max_len x head_dim`
/// float32 each, plus the three float64 `max_len x head_dim` temporaries
/// of building one (angles, cos or sin, scaled).
fn rotary_bytes(recipe: &Recipe) -> u64 {
    let dims = recipe.model.dims();
    let cells = u64::from(dims.max_len) * dims.head_dim();
    2 * (2 * cells * 4) + 3 * cells * 8
}

/// The evaluation's KL forward passes: [`EVAL_LOGPS_CHUNK`] prompts with
/// `eval.samples` responses each, without gradients: their logits with the
/// log-softmax beside them (float32), and the live activations of a block,
/// about half of what a training pass saves per token (a nano run with
/// `eval.samples = 1024`: 4.85 GB measured, 5.2 GB estimated).
fn evaluation_bytes(recipe: &Recipe, bytes: u64) -> u64 {
    let dims = recipe.model.dims();
    let (prompt, _) = sequence_lengths(recipe);
    let response = u64::from(recipe.eval.max_new_tokens) + 1;
    let rows = EVAL_LOGPS_CHUNK as u64 * u64::from(recipe.eval.samples);
    let kv = u64::from(dims.kv_heads) * dims.head_dim();
    let (d, ff) = (u64::from(dims.d_model), u64::from(dims.d_ff));
    let tokens = EVAL_LOGPS_CHUNK as u64 * prompt + rows * response;
    let logits = 3 * rows * response * u64::from(dims.vocab) * 4;
    let active = u64::from(dims.experts_per_token.max(1)); // experts a token passes
    logits + tokens * (6 * d + 2 * kv + 3 * ff * active) * bytes
}

/// Adapter parameters: `rank * (in + out)` per targeted linear layer (each
/// expert's `w1`, `w2`, `w3` is a layer of its own).
fn adapter_parameters(recipe: &Recipe) -> u64 {
    let lora = &recipe.model.lora;
    if lora.is_off() {
        return 0;
    }
    let dims = recipe.model.dims();
    let d = u64::from(dims.d_model);
    let kv = u64::from(dims.kv_heads) * dims.head_dim();
    let ff = u64::from(dims.d_ff);
    let experts = u64::from(dims.experts);
    let per_block: u64 = lora
        .targets
        .iter()
        .map(|t| match t {
            LoraTarget::QProj | LoraTarget::OProj => d + d,
            LoraTarget::KProj | LoraTarget::VProj => d + kv,
            LoraTarget::GateProj | LoraTarget::UpProj | LoraTarget::DownProj => d + ff,
            LoraTarget::W1 | LoraTarget::W2 | LoraTarget::W3 => experts * (d + ff),
            LoraTarget::Gate => d + experts,
        })
        .sum();
    u64::from(lora.rank) * per_block * u64::from(dims.layers)
}

/// Saved activations and logits of one micro-batch: its prompts once, then
/// their K responses attending to them. Per token and block the backward
/// pass keeps about `12 D + 4 KV + 5 F` values (norm inputs and outputs,
/// q/k/v before and after rotary, grouped K/V expanded to every head, the
/// attention output, the SwiGLU gate, up, activation and product); on the
/// CPU the attention probabilities (`H x T x S` per sequence) as well.
/// With experts, each token's input, SwiGLU values and output are kept for
/// each of the k experts it is routed to (`k (2 D + 5 F)`), plus the router's
/// logits and probabilities (`2 E`): the active experts', not all of them.
/// Activation checkpointing keeps each block's input (`D` per token) plus
/// one block's full set.
fn activation_bytes(recipe: &Recipe, placement: Placement, bytes: u64) -> (u64, u64) {
    let dims = recipe.model.dims();
    let (d, h, ff) = (
        u64::from(dims.d_model),
        u64::from(dims.heads),
        u64::from(dims.d_ff),
    );
    let kv = u64::from(dims.kv_heads) * dims.head_dim();
    let k = u64::from(recipe.data.list_size);
    let batch = u64::from(recipe.train.batch_size).div_ceil(u64::from(recipe.train.grad_accum));
    let (prompt, response) = sequence_lengths(recipe);
    let tokens = batch * (prompt + k * response);
    let attention = match placement {
        Placement::Cpu => batch * h * (prompt * prompt + k * response * (prompt + response)),
        Placement::Cuda => 0,
    };
    // LoRA saves each adapted layer's rank-wide intermediate (x A) per token,
    // and its dropped-out input when dropout is on.
    let lora = &recipe.model.lora;
    let adapters = match lora.is_off() {
        true => 0,
        false => {
            let per_layer = u64::from(lora.rank) + if lora.dropout > 0.0 { d } else { 0 };
            lora.targets.len() as u64 * per_layer
        }
    };
    let ffn = match dims.experts {
        0 => 5 * ff,
        e => u64::from(dims.experts_per_token) * (2 * d + 5 * ff) + 2 * u64::from(e),
    };
    let per_block = tokens * (12 * d + 4 * kv + ffn + adapters) + attention;
    let layers = u64::from(dims.layers);
    let activations = if recipe.train.activation_checkpointing {
        layers * tokens * d + per_block
    } else {
        layers * per_block
    };
    let logits = 3 * batch * k * response * u64::from(dims.vocab) * 4;
    (activations * bytes, logits)
}

/// `bytes` as GiB with two decimals (MiB below 1 GiB).
pub fn human(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(text: &str) -> Recipe {
        let table: toml::Table = toml::from_str(text).unwrap();
        toml::Value::Table(table).try_into().unwrap()
    }

    #[test]
    fn state_terms_follow_the_parameter_count() {
        let r = recipe("[model]\nsize = \"tiny\"\n");
        let p = r.model.dims().parameter_count();
        let cpu = estimate(&r, Placement::Cpu);
        assert_eq!(
            (
                cpu.weights,
                cpu.master,
                cpu.gradients,
                cpu.optimizer,
                cpu.reference
            ),
            (4 * p, 0, 4 * p, 8 * p, 4 * p)
        );
        let cuda = estimate(&r, Placement::Cuda);
        assert_eq!(
            (
                cuda.weights,
                cuda.master,
                cuda.gradients,
                cuda.optimizer,
                cuda.reference
            ),
            (2 * p, 4 * p, 2 * p, 8 * p, 2 * p)
        );
        let bf16 = estimate(
            &recipe("[train]\nmoments = \"bf16\"\n[model]\nsize = \"tiny\"\n"),
            Placement::Cuda,
        );
        assert_eq!(bf16.optimizer, 4 * p);
    }

    #[test]
    fn mistral_7b_full_fine_tuning_needs_what_the_issue_measured() {
        // Issue 14: full AdamW with f32 master weights and moments needs
        // ~116 GB (16 bytes a parameter) before activations, plus the
        // bf16 reference copy.
        let r = recipe("[model]\nsize = \"mistral-7b\"\n");
        let e = estimate(&r, Placement::Cuda);
        let state = e.weights + e.master + e.gradients + e.optimizer;
        assert_eq!(e.reference * 8, state);
        let gb = state as f64 / 1e9;
        assert!((110.0..125.0).contains(&gb), "{gb} GB");
    }

    #[test]
    fn lora_trains_only_adapters_and_needs_no_reference_copy() {
        let r = recipe("[model]\nsize = \"tiny\"\n[model.lora]\nrank = 8\ntargets = [\"q_proj\", \"k_proj\"]\n");
        let dims = r.model.dims();
        let (d, kv) = (
            u64::from(dims.d_model),
            u64::from(dims.kv_heads) * dims.head_dim(),
        );
        let adapters = 8 * ((d + d) + (d + kv)) * u64::from(dims.layers);
        let e = estimate(&r, Placement::Cpu);
        assert_eq!(e.gradients, 4 * adapters);
        assert_eq!(e.optimizer, 8 * adapters);
        assert_eq!(e.reference, 0);
        assert_eq!(e.weights, 4 * (dims.parameter_count() + adapters));
    }

    #[test]
    fn checkpointing_keeps_block_inputs_plus_one_block() {
        let base = "[model]\nsize = \"small\"\n[train]\nbatch_size = 4\n";
        let full = estimate(&recipe(base), Placement::Cpu).activations;
        let ckpt = estimate(
            &recipe(&format!("{base}activation_checkpointing = true\n")),
            Placement::Cpu,
        )
        .activations;
        let r = recipe(base);
        let dims = r.model.dims();
        let (p, resp) = sequence_lengths(&r);
        let tokens = 4 * (p + 4 * resp);
        let layers = u64::from(dims.layers);
        assert_eq!(
            ckpt,
            4 * layers * tokens * u64::from(dims.d_model) + full / layers
        );
        assert!(ckpt < full / 2);
        // Micro-batches divide the batch.
        let accum =
            estimate(&recipe(&format!("{base}grad_accum = 4\n")), Placement::Cpu).activations;
        assert_eq!(accum * 4, full);
    }

    #[test]
    fn task_lengths_come_from_the_tasks_and_file_lengths_from_max_len() {
        let r = recipe("[eval]\nmax_new_tokens = 20\n[data]\nmix = [{ task = \"arith\" }, { task = \"program\" }]\n");
        assert_eq!(sequence_lengths(&r), (19, 20));
        let f = recipe("[data]\nmix = [{ path = \"x.jsonl\", format = \"native\" }]\n");
        assert_eq!(sequence_lengths(&f), (1, 127));
        let limited = recipe(
            "[data]\nmax_prompt_tokens = 40\nmax_response_tokens = 60\nmix = [{ path = \"x.jsonl\", format = \"native\" }]\n",
        );
        assert_eq!(sequence_lengths(&limited), (40, 60));
        let over = recipe(
            "[data]\nmax_prompt_tokens = 100\nmax_response_tokens = 100\nmix = [{ path = \"x.jsonl\", format = \"native\" }]\n",
        );
        assert_eq!(sequence_lengths(&over), (28, 100));
    }
}
