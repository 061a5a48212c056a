//! `lpo data preview`: what a run would train on, before training it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lpo_data::stats::RewardStats;
use lpo_plan::PlannedRun;
use lpo_results::Layout;
use lpo_train::lists::{Lists, SourcedList};
use lpo_train::reference::Reference;
use lpo_train::sources::{Source, SourceKind};

use crate::progress::Bars;
use crate::recipes::RecipeArgs;

/// `lpo data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Build (or load from the cache) a run's reference and reward lists; show
    /// a few prompts with their K responses and rewards, and statistics per source.
    Preview(PreviewArgs),
}

/// Options of `lpo data preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Which planned run's data to show (its data settings may differ).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Prompts to print.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Results root holding the cache.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// Runs a `lpo data` subcommand.
pub fn run(command: &DataCommand) -> Result<std::process::ExitCode> {
    match command {
        DataCommand::Preview(args) => preview(args),
    }
}

fn preview(args: &PreviewArgs) -> Result<std::process::ExitCode> {
    let Some(plan) = crate::recipes::plan_or_report(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let run = plan.runs.get(args.index).with_context(|| {
        format!(
            "--index {} but the plan has {} runs",
            args.index,
            plan.runs.len()
        )
    })?;
    let recipe = &run.recipe;
    let data = RunData::obtain(run, &args.results)?;
    let (shown, dropped) = data.lists.in_form(recipe.data.form, recipe.train.seed);
    println!(
        "run {} (index {}) of {}: {} training lists, {} held out, form {:?}, K = {}",
        run.id,
        args.index,
        recipe.name,
        shown.len(),
        data.lists.heldout.len(),
        recipe.data.form,
        recipe.data.list_size
    );
    println!(
        "reference {} ({}), lists cached at {}",
        data.reference.meta.id,
        data.reference.meta.origin,
        data.lists.path.display()
    );
    if dropped > 0 {
        println!("binarization dropped {dropped} lists whose rewards all tie");
    }
    print_skipped_lines(&data.sources);
    println!();
    print_lists(&shown, args.show);
    println!();
    print_stats(&shown);
    Ok(std::process::ExitCode::SUCCESS)
}

/// What a run trains on: its sources, reference model and reward lists.
struct RunData {
    sources: Vec<Source>,
    reference: Reference,
    lists: Lists,
}

impl RunData {
    /// Builds `run`'s reference and reward lists, or loads them from the
    /// cache under the results root `results`.
    fn obtain(run: &PlannedRun, results: &Path) -> Result<RunData> {
        let recipe = &run.recipe;
        let layout = Layout::new(results);
        let device = crate::sweep::device_for(recipe)?;
        let sources = lpo_train::sources::load_sources(recipe)?;
        let (tokenizer, tokenizer_id) = lpo_train::sources::tokenizer(recipe)?;
        let mut bars = Bars::new(format!("[{}]", run.id), crate::progress::Mode::Bars);
        let reference = lpo_train::reference::obtain(
            recipe,
            &sources,
            tokenizer.as_ref(),
            &tokenizer_id,
            &layout,
            device,
            &mut bars,
        )?;
        let lists = lpo_train::lists::obtain(
            recipe,
            &sources,
            tokenizer.as_ref(),
            &reference,
            &layout,
            &mut bars,
        )?;
        Ok(RunData {
            sources,
            reference,
            lists,
        })
    }
}

/// For each file source with malformed lines: how many were skipped, and
/// the first.
fn print_skipped_lines(sources: &[Source]) {
    for source in sources {
        if let SourceKind::File { path, skipped, .. } = &source.kind {
            if !skipped.is_empty() {
                println!(
                    "{}: skipped {} bad lines (first: line {}: {})",
                    path.display(),
                    skipped.len(),
                    skipped[0].0,
                    skipped[0].1
                );
            }
        }
    }
}

/// The first `show` lists: each prompt with its responses and rewards.
fn print_lists(shown: &[SourcedList], show: usize) {
    for l in shown.iter().take(show) {
        println!("[{}] prompt: {:?}", l.source, l.list.prompt);
        for r in &l.list.responses {
            println!("    {:>5.2}  {:?}", r.reward, r.text);
        }
    }
}

/// A table of reward statistics per source.
fn print_stats(shown: &[SourcedList]) {
    let mut by_source: BTreeMap<&str, Vec<&lpo_data::RewardList>> = BTreeMap::new();
    for l in shown {
        by_source
            .entry(l.source.as_str())
            .or_default()
            .push(&l.list);
    }
    println!(
        "{:<24} {:>6} {:>8} {:>7} {:>7} {:>7} {:>9}",
        "source", "lists", "mean", "sd", "range", "ties", "all-tied"
    );
    for (source, group) in by_source {
        let s = RewardStats::of(group.iter().copied());
        println!(
            "{:<24} {:>6} {:>8.3} {:>7.3} {:>7.3} {:>6.1}% {:>9}",
            source,
            s.lists,
            s.mean,
            s.sd,
            s.mean_range,
            100.0 * s.tie_share,
            s.all_tied
        );
    }
}
