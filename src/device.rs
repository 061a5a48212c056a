//! The device and CPU threads a command computes with: `lpo run`, `prepare`,
//! `score` and `data`.

use std::os::unix::process::CommandExt;

use anyhow::{Context, Result};
use lpo_recipe::{DeviceChoice, Recipe};
use lpo_torch::DeviceRequest;

/// The device a run computes on; sets the CPU thread count when configured.
/// A reproducible recipe restarts the process in reproducible mode first
/// ([`enter_reproducible_mode`]) and computes on the CPU.
pub fn device_for(recipe: &Recipe) -> Result<tch::Device> {
    enter_reproducible_mode(recipe)?;
    if let Some(threads) = recipe.train.fixed_threads() {
        tch::set_num_threads(threads as i32);
    }
    let device = lpo_torch::resolve_device(match recipe.train.device {
        DeviceChoice::Auto if recipe.train.reproducible => DeviceRequest::Cpu,
        DeviceChoice::Auto => DeviceRequest::Auto,
        DeviceChoice::Cpu => DeviceRequest::Cpu,
        DeviceChoice::Cuda => DeviceRequest::Cuda,
    })?;
    // Whether the model fits is the memory estimate's call (`crate::memory`).
    Ok(device)
}

/// Sets `recipe`'s CPU threads: `--threads` (`cli`), else train.threads,
/// else 1 in reproducible mode, else, inside a Slurm job, the CPUs Slurm
/// gave it (`SLURM_CPUS_PER_TASK`); 0 leaves libtorch's default (every core
/// of the machine).
pub fn apply_threads(recipe: &mut Recipe, cli: Option<u32>) {
    if let Some(threads) = cli.or(recipe.train.fixed_threads()) {
        recipe.train.threads = threads;
        return;
    }
    if recipe.train.threads == 0 {
        let slurm = std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok());
        if let Some(cpus) = slurm.filter(|&n| n > 0) {
            recipe.train.threads = cpus;
        }
    }
}

/// Starts this process again in reproducible mode when `recipe` asks for it
/// and the process is not in it yet ([`lpo_torch::numerics`]): the same
/// arguments, with [`lpo_torch::numerics::REPRODUCIBLE_ENV`] set before
/// libtorch initialises. Returns only when there is nothing to do, or with
/// the reason the restart failed.
pub fn enter_reproducible_mode(recipe: &Recipe) -> Result<()> {
    if !recipe.train.reproducible || lpo_torch::numerics::reproducible() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the lpo executable")?;
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .envs(lpo_torch::numerics::REPRODUCIBLE_ENV)
        .exec();
    Err(error)
        .with_context(|| format!("failed to restart `{}` in reproducible mode", exe.display()))
}
