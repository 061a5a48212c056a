//! `lpo prepare`: the work a sweep's runs share (SFT references, reward
//! lists, their reference log-probabilities), done once ahead of the runs.
//! A Slurm sweep submits it as the job its run arrays depend on; locally it
//! is optional, since every run obtains the same cache entries under their
//! locks.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use lpo_recipe::Recipe;
use lpo_train::request::{Baseline, RunRequest};

use crate::progress::{Bars, Mode};
use crate::recipes::RecipeArgs;

/// Options of `lpo prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
    /// CPU threads (overrides train.threads; use the runs' count for identical bytes).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Log one line per phase instead of drawing progress bars.
    #[arg(long)]
    pub no_bars: bool,
}

/// What the shared work of a run depends on: runs with equal keys share
/// their reference, lists and reference log-probabilities, so one of them
/// is prepared. (A key too fine only costs a cache lookup.)
fn shared_key(recipe: &Recipe) -> Result<String> {
    serde_json::to_string(&(
        &recipe.model,
        &recipe.reference,
        &recipe.data,
        recipe.train.seed,
        recipe.train.device,
        recipe.eval.max_new_tokens,
        lpo_plan::relevant_reward(recipe),
    ))
    .context("serializing a run's data settings")
}

/// `lpo prepare`: builds (or finds in the cache) the shared data of every
/// planned run, one line per distinct data setting.
pub fn run(args: &PrepareArgs) -> Result<ExitCode> {
    let Some(plan) = crate::recipes::fetch_and_plan(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let layout = args.results.layout();
    let mode = if args.no_bars {
        Mode::Lines
    } else {
        Mode::Bars
    };
    // One process computes in one mode (lpo_torch::numerics).
    let reproducible = plan
        .runs
        .iter()
        .filter(|r| r.recipe.train.reproducible)
        .count();
    if reproducible > 0 && reproducible < plan.runs.len() {
        anyhow::bail!(
            "{reproducible} of the plan's {} runs have train.reproducible and the others not: one process computes in one mode, so prepare them apart (--set train.reproducible=...)",
            plan.runs.len()
        );
    }
    let mut seen = HashSet::new();
    for run in &plan.runs {
        if !seen.insert(shared_key(&run.recipe)?) {
            continue;
        }
        let mut recipe = (*run.recipe).clone();
        crate::device::apply_threads(&mut recipe, args.threads);
        let device = crate::device::device_for(&recipe)?;
        let request = RunRequest {
            recipe: &recipe,
            run_id: &run.id,
            assignments: BTreeMap::new(),
            layout: &layout,
            device,
            baseline: Baseline::Reference,
            group: None,
        };
        let mut bars = Bars::new(format!("[prepare {}]", run.id), mode);
        let prepared = lpo_train::run::prepare(&request, &mut bars)
            .with_context(|| format!("preparing the data of run {}", run.id))?;
        println!(
            "run {} (and the runs sharing its data): reference {}, lists {}, reference log-probabilities of {} lists",
            run.id, prepared.reference, prepared.lists, prepared.lists_scored
        );
    }
    println!(
        "{} data setting(s) of {} runs ready in {}",
        seen.len(),
        plan.runs.len(),
        layout.cache_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
