//! Turns a run's recipe into results on libtorch.
//!
//! - [`reference`]: the frozen reference (SFT with errors, cached; or a checkpoint).
//! - [`lists`]: the reward-list dataset (K sampled responses per prompt,
//!   scored by the task; or imported lists), cached; held-out eval prompts.
//! - [`sources`]: data sources, tokenizer, encoding.
//! - [`data_parallel`]: one run over several ranks (c10d): micro-batch shares, gradient all-reduce.
//! - [`optim`]: AdamW with schedules and clipping, checkpointable.
//! - [`eval`]: sampled evaluation against a baseline, KL to the reference,
//!   implicit-reward metrics and curves on held-out lists.
//! - [`request`]: what one run is asked to do and how it ended.
//! - `rounds`: the lists each (on-policy) training round reads.
//! - [`run`]: one planned run: training with checkpoints, evaluation, results files.
//! - `tracking`: the run's TensorBoard event file (`tb/`).

pub mod batch;
pub mod checkpoints;
pub mod data_parallel;
pub mod eval;
pub mod lists;
pub mod optim;
pub mod reference;
pub mod request;
pub mod rewards;
mod rounds;
pub mod run;
pub mod sources;
mod tracking;

/// Reports the progress of a long phase (SFT, generation, training).
pub trait Progress {
    /// A phase of `total` units begins.
    fn start(&mut self, phase: &str, total: u64);
    /// `done` units are complete; `detail` is a short status (e.g. the loss).
    fn update(&mut self, done: u64, detail: &str);
    /// The phase ended.
    fn finish(&mut self);
}

/// Progress that reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn update(&mut self, _: u64, _: &str) {}
    fn finish(&mut self) {}
}
