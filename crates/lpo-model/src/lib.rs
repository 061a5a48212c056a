//! A Mistral-style decoder on libtorch.
//!
//! - [`Mistral`]: token embedding, RMSNorm, rotary embeddings, grouped-query
//!   causal attention (optional sliding window), SwiGLU MLP, output head.
//! - [`generate`](generate::generate): batched KV-cache decoding, greedy or
//!   temperature/top-p, seeded.
//! - [`response_logps`](logps::response_logps): sequence log-probabilities of K
//!   responses per prompt with the prompt computed once.
//! - [`checkpoint`]: Hugging Face Mistral directories (config.json + safetensors).

pub mod checkpoint;
mod config;
pub mod generate;
pub mod logps;
pub mod model;

pub use config::Config;
pub use model::{KvCache, Mistral};

#[cfg(test)]
mod tests;
