//! How this process computes on the CPU: the fastest kernels this CPU has
//! (the default), or reproducible mode (`train.reproducible`), where the same
//! run gives the same bytes on every x86-64 CPU at the same thread count.
//!
//! Float sums are rounded in the order the kernels add, and three libraries
//! pick kernels per CPU: ATen by its CPU capability (`ATEN_CPU_CAPABILITY`),
//! MKL's sgemm by the instruction set it finds, and lpo's own oneDNN
//! products on AVX-512 ([`crate::linear`]). Reproducible mode pins ATen to
//! its baseline kernels, asks MKL for its conditional numerical
//! reproducibility in the compatible mode (`MKL_CBWR=COMPATIBLE`, the same
//! code path on every x86-64 CPU) and turns lpo's oneDNN products off. All
//! three are read when the libraries initialise, so the mode is entered by
//! starting the process again with [`REPRODUCIBLE_ENV`] set
//! (`lpo run` does that), never half-way.

use std::sync::OnceLock;

/// Marks a process started in reproducible mode.
const MARKER: &str = "LPO_REPRODUCIBLE";

/// The environment of a reproducible process: set before libtorch starts.
pub const REPRODUCIBLE_ENV: [(&str, &str); 3] = [
    (MARKER, "1"),
    // ATen's kernels compiled without AVX2/AVX-512 (every x86-64 CPU).
    ("ATEN_CPU_CAPABILITY", "default"),
    // MKL: one code path on every CPU (needs the same thread count).
    ("MKL_CBWR", "COMPATIBLE"),
];

/// Whether this process runs in reproducible mode (started with
/// [`REPRODUCIBLE_ENV`]).
pub fn reproducible() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        REPRODUCIBLE_ENV
            .iter()
            .all(|(key, value)| std::env::var(key).is_ok_and(|v| v == *value))
    })
}

/// Turns lpo's oneDNN products off for this process (`LPO_ONEDNN=0`): every
/// linear runs on `at::linear` (MKL's sgemm on the CPU), as PyTorch eager's
/// do. For measuring lpo's design apart from its choice of BLAS
/// (`scripts/bench/cpu_bench.sh` with `ONEDNN=0`); results differ from the
/// default in the last bits, so cache identities name it.
pub const ONEDNN_ENV: &str = "LPO_ONEDNN";

/// Whether [`ONEDNN_ENV`] turns the oneDNN products off (`0`, `off`, `false`).
pub fn onednn_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| {
        std::env::var(ONEDNN_ENV).is_ok_and(|v| matches!(v.as_str(), "0" | "off" | "false"))
    })
}

/// Names how this process computes, in cache identities of what it computes
/// (SFT references, sampled lists, generated text): a new name whenever the
/// same weights and seed would give other numbers (v1: oneDNN products for
/// f32 on AVX-512 CPUs from 2^20 multiply-adds; v2: from
/// [`crate::linear::onednn_min_macs`], which depends on the CPU;
/// `aten-linear-v1`: those off by [`ONEDNN_ENV`];
/// `reproducible-v1`: [`REPRODUCIBLE_ENV`]).
pub fn identity() -> &'static str {
    if reproducible() {
        "reproducible-v1"
    } else if onednn_disabled() {
        "aten-linear-v1"
    } else {
        "onednn-linear-v2"
    }
}
