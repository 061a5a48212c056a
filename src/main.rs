//! `lpo`: the command-line front end of the lpo research framework.

mod doctor;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor(args) => doctor::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
