//! Mistral, Llama and Qwen2 decoders on libtorch.
//!
//! - [`Mistral`]: token embedding, RMSNorm, rotary embeddings (optionally
//!   scaled: linear, llama3, yarn), grouped-query causal attention (optional
//!   sliding window, optional q/k/v biases), SwiGLU MLP, output head (or the
//!   tied embedding). The architecture is an [`lpo_hf::Config`].
//! - [`moe`]: Mixtral's sparse mixture of SwiGLU experts in place of the
//!   MLP (top-k routing, tokens grouped by expert) and the router's
//!   load-balancing loss.
//! - [`generate`](generate::generate): batched KV-cache decoding, greedy or
//!   temperature/top-p, seeded.
//! - [`response_logps`](logps::response_logps): sequence log-probabilities of K
//!   responses per prompt with the prompt computed once.
//! - [`checkpoint`]: Hugging Face directories (config.json + safetensors).

pub mod checkpoint;
pub mod generate;
mod layer;
mod linear;
pub mod logps;
pub mod lora;
pub mod model;
pub mod moe;
pub mod reward_model;

pub use lpo_hf::{Config, Family, RopeScaling};
pub use model::{KvCache, Mistral};

/// Names how this process computes the model's numbers, in cache
/// identities: [`lpo_torch::numerics::identity`].
pub fn products() -> &'static str {
    lpo_torch::numerics::identity()
}

#[cfg(test)]
mod tests;
