//! `lpo`: the command-line front end of the lpo research framework.

mod data_cmd;
mod device;
mod doctor;
mod export_cmd;
mod launch;
mod loss_cmd;
mod memory;
mod prepare_cmd;
mod progress;
mod recipes;
mod report_cmd;
mod run_cmd;
mod score_cmd;
mod status_cmd;
mod sweep_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
// The exit statuses: one table for the commands and for the backends, which
// read them back from `lpo run` (`crate::exit` in every command).
use lpo_exec::exit;

/// Listwise preference optimization: recipes, sweeps, training and reports.
#[derive(Debug, Parser)]
#[command(name = "lpo", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the lpo and libtorch versions, CPU threads, CUDA devices and the results directory.
    Doctor(doctor::DoctorArgs),
    /// Print a recipe with all its layers resolved, or explain where keys come from.
    Config(recipes::ConfigArgs),
    /// Expand a recipe's sweep into runs and list them with their ids.
    Plan(recipes::PlanArgs),
    /// Evaluate a loss on given log-probabilities and rewards; print loss and gradient as JSON.
    Loss(loss_cmd::LossArgs),
    /// Train and evaluate every planned run of a recipe; complete runs are skipped, interrupted ones resume.
    Sweep(sweep_cmd::SweepArgs),
    /// Train and evaluate one planned run (the unit a cluster scheduler calls).
    Run(run_cmd::RunArgs),
    /// Build the data a sweep's runs share (SFT references, reward lists, reference log-probabilities) once, ahead of the runs.
    Prepare(prepare_cmd::PrepareArgs),
    /// Show where every planned run stands: complete, running, interrupted, failed or missing.
    Status(status_cmd::StatusArgs),
    /// Tabulate a sweep's test-split results: seed-aware intervals and tests, head-to-heads, held-out ranking metrics, plots.
    Report(report_cmd::ReportArgs),
    /// Write a finished run's policy as a full Hugging Face checkpoint (LoRA adapters merged into their base).
    Export(export_cmd::ExportArgs),
    /// Sample K responses for every record of a recipe's prompt files from its reference and score them with their reward: a reward-list file data.mix trains on.
    Score(score_cmd::ScoreArgs),
    /// Inspect the data a recipe trains on.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
}

fn main() -> ExitCode {
    lpo_torch::memory::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor(args) => doctor::run(&args),
        Command::Config(args) => recipe_outcome(recipes::config(&args)),
        Command::Plan(args) => recipe_outcome(recipes::plan(&args)),
        Command::Loss(args) => loss_cmd::run(&args),
        Command::Data(command) => data_cmd::run(&command),
        Command::Sweep(mut args) => {
            args.recipe.set_mlflow(args.mlflow.take());
            sweep_cmd::sweep(&args)
        }
        Command::Run(mut args) => {
            args.recipe.set_mlflow(args.mlflow.take());
            run_cmd::run_one(&args)
        }
        Command::Prepare(args) => prepare_cmd::run(&args),
        Command::Status(args) => status_cmd::run(&args),
        Command::Report(args) => report_cmd::run(&args),
        Command::Export(args) => export_cmd::run(&args),
        Command::Score(args) => score_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code(exit::FAILED)
        }
    }
}

/// Recipe problems print as a list and exit with status 2.
fn recipe_outcome(result: Result<(), recipes::RecipeError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(recipes::RecipeError(diagnostics)) => {
            print_diagnostics(&diagnostics);
            Ok(crate::exit::code(crate::exit::BAD_INPUT))
        }
    }
}

/// Prints recipe problems, one per line, with a count when there are several.
fn print_diagnostics(diagnostics: &lpo_recipe::Diagnostics) {
    for d in &diagnostics.0 {
        eprintln!("error: {d}");
    }
    if diagnostics.0.len() > 1 {
        eprintln!("{} problems found", diagnostics.0.len());
    }
}
