//! Verifiable rewards: responses scored by checking them, not by a model.
//!
//! - [`math`]: the final answer of a response (GSM8K `#### 42` or MATH
//!   `\boxed{...}`) against a reference answer, with numeric normalisation.
//! - [`sandbox`]: a Python program (a HumanEval/MBPP completion and its
//!   tests) run in a sandboxed `python3` subprocess with time, memory and
//!   process limits, a private directory and no network.

pub mod math;
pub mod sandbox;
