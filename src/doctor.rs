//! `lpo doctor`: what this installation runs on.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lpo_torch::CudaBackend;

/// Options of `lpo doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the report; exit status 1 when libtorch cannot run a backward pass.
pub fn run(args: &DoctorArgs) -> Result<ExitCode> {
    let backend = lpo_torch::load_cuda_backend();
    let devices = lpo_torch::cuda_devices();
    let smoke = lpo_torch::smoke_test(tch::Device::Cpu);
    let loaded = lpo_torch::loaded_libtorch_path().unwrap_or_else(|| "not mapped".into());
    let results =
        std::path::absolute(&args.results.dir).unwrap_or_else(|_| args.results.dir.clone());
    let cuda_note = match backend {
        CudaBackend::Loaded => "libtorch_cuda loaded".to_string(),
        CudaBackend::Unavailable(why) => {
            format!("CUDA backend not installed ({})", first_line(why))
        }
    };

    if args.json {
        let report = serde_json::json!({
            "lpo_version": env!("CARGO_PKG_VERSION"),
            "libtorch_version": lpo_torch::LIBTORCH_VERSION,
            "libtorch_path": loaded,
            "cpu_threads": tch::get_num_threads(),
            "cpu_model": cpu_model(),
            "cpu_products": lpo_torch::linear::product_path(),
            "cuda_backend": cuda_note,
            "cuda_devices": devices.iter().map(|d| serde_json::json!({
                "index": d.index, "name": d.name, "memory_bytes": d.total_memory,
            })).collect::<Vec<_>>(),
            "results_dir": results,
            "libtorch_ok": smoke.is_ok(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("lpo         {}", env!("CARGO_PKG_VERSION"));
        println!("libtorch    {} ({loaded})", lpo_torch::LIBTORCH_VERSION);
        println!("cpu threads {}", tch::get_num_threads());
        if let Some(model) = cpu_model() {
            println!("cpu         {model}");
        }
        println!("products    {}", lpo_torch::linear::product_path());
        if devices.is_empty() {
            println!("cuda        none ({cuda_note})");
        }
        for device in &devices {
            println!(
                "cuda:{}      {} ({:.1} GiB)",
                device.index,
                device.name,
                device.total_memory as f64 / (1u64 << 30) as f64
            );
        }
        println!("results     {}", results.display());
    }
    match smoke {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: libtorch failed a forward/backward pass: {error:#}");
            Ok(crate::exit::code(crate::exit::FAILED))
        }
    }
}

/// The CPU's model name (`/proc/cpuinfo`), when the system says.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
