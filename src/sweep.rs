//! Running planned runs: devices and threads.

use anyhow::Result;
use lpo_recipe::{DeviceChoice, Recipe};
use lpo_torch::DeviceRequest;

/// The device a run computes on; sets the CPU thread count when configured.
pub fn device_for(recipe: &Recipe) -> Result<tch::Device> {
    if recipe.train.threads > 0 {
        tch::set_num_threads(recipe.train.threads as i32);
    }
    lpo_torch::resolve_device(match recipe.train.device {
        DeviceChoice::Auto => DeviceRequest::Auto,
        DeviceChoice::Cpu => DeviceRequest::Cpu,
        DeviceChoice::Cuda => DeviceRequest::Cuda,
    })
}
