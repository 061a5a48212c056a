//! Hugging Face decoder configurations, read and written without libtorch,
//! so the planner can resolve a checkpoint's architecture and the model
//! crate can build it.
//!
//! - [`Config`]: a `config.json` of the Mistral, Llama or Qwen2 family, in
//!   the transformers 4.x layout (`rope_theta`, `rope_scaling`) or the 5.x
//!   one (`rope_parameters`); anything lpo cannot compute exactly as
//!   transformers does is an error, never ignored.
//! - [`RopeScaling`]: `linear`, `llama3` and `yarn` rotary frequencies.
//! - [`hub`]: Hub names (`org/name@revision`) resolved in the Hugging Face cache.

mod config;
pub mod hub;
mod rope;

pub use config::{Config, Family, Head};
pub use rope::RopeScaling;

#[cfg(test)]
mod tests;
