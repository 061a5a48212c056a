//! The device and CPU threads a command computes with: `lpo run`, `prepare`,
//! `score` and `data`.

use anyhow::Result;
use lpo_recipe::{DeviceChoice, Recipe};
use lpo_torch::DeviceRequest;

/// The device a run computes on; sets the CPU thread count when configured.
pub fn device_for(recipe: &Recipe) -> Result<tch::Device> {
    if recipe.train.threads > 0 {
        tch::set_num_threads(recipe.train.threads as i32);
    }
    let device = lpo_torch::resolve_device(match recipe.train.device {
        DeviceChoice::Auto => DeviceRequest::Auto,
        DeviceChoice::Cpu => DeviceRequest::Cpu,
        DeviceChoice::Cuda => DeviceRequest::Cuda,
    })?;
    // Whether the model fits is the memory estimate's call (`crate::memory`).
    Ok(device)
}

/// Sets `recipe`'s CPU threads: `--threads` (`cli`), else train.threads,
/// else, inside a Slurm job, the CPUs Slurm gave it (`SLURM_CPUS_PER_TASK`);
/// 0 leaves libtorch's default (every core of the machine).
pub fn apply_threads(recipe: &mut Recipe, cli: Option<u32>) {
    if let Some(threads) = cli {
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
