//! `lpo data preview`: what a run would train on, before training it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use lpo_data::stats::RewardStats;
use lpo_plan::PlannedRun;
use lpo_results::Layout;
use lpo_train::lists::Lists;
use lpo_train::reference::Reference;
use lpo_train::sources::{Source, SourceKind, SourcedList};

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
    /// Also print the token ids of each shown prompt, as the model receives
    /// them (chat template applied), to compare with transformers'
    /// `apply_chat_template(..., add_generation_prompt=True)`.
    #[arg(long)]
    pub tokens: bool,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
}

/// Runs a `lpo data` subcommand.
pub fn run(command: &DataCommand) -> Result<std::process::ExitCode> {
    match command {
        DataCommand::Preview(args) => preview(args),
    }
}

fn preview(args: &PreviewArgs) -> Result<std::process::ExitCode> {
    let Some(plan) = crate::recipes::fetch_and_plan(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let run = crate::recipes::planned_run(&plan, args.index)?;
    let recipe = &run.recipe;
    let data = RunData::obtain(run, &args.results.dir)?;
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
    print_prompt_files(&data.sources);
    for (source, n) in lpo_train::lists::repeated_draws(&data.sources, &data.lists.lists) {
        println!("{source}: {n} training lists repeat a record (data.oversample = true)");
    }
    let (batch, accum) = (recipe.train.batch_size, recipe.train.grad_accum);
    let epoch = lpo_train::batch::epoch_steps(shown.len(), batch);
    println!(
        "one epoch over the {} training lists is {epoch} optimizer steps (batch_size {batch} lists a step, in {accum} micro-batch(es))",
        shown.len(),
    );
    if let Some(epochs) = recipe.train.epochs {
        println!(
            "train.epochs = {epochs}: {} optimizer steps per round",
            epochs as usize * epoch
        );
    }
    let k = match recipe.data.form {
        lpo_recipe::DataForm::Reward => recipe.data.list_size as usize,
        lpo_recipe::DataForm::Preference => 2,
    };
    let max_len = data.reference.model.config().max_position_embeddings as usize;
    let window = lpo_train::sources::Window::new(recipe, max_len);
    let set = lpo_train::batch::TrainSet::build(&shown, data.tokenizer.as_ref(), k, &window)?;
    print_padding(&set, recipe, epoch);
    println!();
    let tokens = args.tokens.then_some(data.tokenizer.as_ref());
    print_lists(&shown, args.show, tokens)?;
    println!();
    print_stats(&shown, &set.truncated);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The share of padding in the token slots one epoch's micro-batches
/// compute (in the training order, prompts shared by their K responses).
fn print_padding(set: &lpo_train::batch::TrainSet, recipe: &lpo_recipe::Recipe, epoch: usize) {
    use lpo_train::batch::{batch_indices, Padding};
    let t = &recipe.train;
    let micro = t.grad_accum.max(1) as usize;
    let per_micro = (t.batch_size as usize / micro).max(1);
    let mut total = Padding::default();
    for step in 0..epoch {
        for m in 0..micro {
            let indices = batch_indices(set.len(), per_micro, micro, step, m, t.seed);
            total.add(set.padding(&indices));
        }
    }
    let pct = |slots, tokens| 100.0 * Padding::share(slots, tokens);
    println!(
        "padding in one epoch's micro-batches of {per_micro} lists: prompts {:.1}% of {} token slots, \
         responses {:.1}% of {}, all {:.1}% ({})",
        pct(total.prompt_slots, total.prompt_tokens),
        total.prompt_slots,
        pct(total.response_slots, total.response_tokens),
        total.response_slots,
        pct(
            total.prompt_slots + total.response_slots,
            total.prompt_tokens + total.response_tokens
        ),
        match t.packed {
            true => "train.packed: the policy's training passes compute none of it outside attention",
            false => "train.packed = true skips it outside attention in the policy's training passes",
        },
    );
}

/// What a run trains on: its sources, reference model and reward lists.
struct RunData {
    sources: Vec<Source>,
    tokenizer: std::sync::Arc<dyn lpo_data::tokenizer::Tokenize>,
    reference: Reference,
    lists: Lists,
}

impl RunData {
    /// Builds `run`'s reference and reward lists, or loads them from the
    /// cache under the results root `results`.
    fn obtain(run: &PlannedRun, results: &Path) -> Result<RunData> {
        let recipe = &run.recipe;
        let layout = Layout::new(results);
        let device = crate::device::device_for(recipe)?;
        let mut bars = Bars::new(format!("[{}]", run.id), crate::progress::Mode::Bars);
        let lpo_train::reference::Basis {
            sources,
            tokenizer,
            reference,
            rewards,
        } = lpo_train::reference::basis(recipe, &layout, device, &mut bars)?;
        let lists = lpo_train::lists::obtain(
            recipe,
            &sources,
            tokenizer.as_ref(),
            &reference,
            &rewards,
            &layout,
            &mut bars,
        )?;
        Ok(RunData {
            sources,
            tokenizer,
            reference,
            lists,
        })
    }
}

/// For each prompt file: its reward, and how many of its records are
/// training prompts and how many evaluation prompts.
fn print_prompt_files(sources: &[Source]) {
    for source in sources {
        if let SourceKind::File {
            records,
            heldout,
            reward: Some(kind),
            ..
        } = &source.kind
        {
            let (held, train) = source.file_split();
            let eval = heldout.as_ref().map_or(held.len(), |(_, r)| r.len());
            println!(
                "{}: prompt file scored by the {} reward: {} training prompts (of {} records), {eval} evaluation prompts",
                source.name,
                kind.name(),
                train.len(),
                records.len()
            );
        }
    }
}

/// For each file source: records skipped (malformed, unrenderable, or with
/// characters outside the character tokenizer's alphabet), with the first of
/// each, and records whose earlier turns no chat template renders.
fn print_skipped_lines(sources: &[Source]) {
    for source in sources {
        if let SourceKind::File {
            skipped,
            unknown,
            context_dropped,
            ..
        } = &source.kind
        {
            for (list, what) in [
                (skipped, "bad records"),
                (unknown, "records with unknown characters"),
            ] {
                if let Some((at, why)) = list.first() {
                    println!(
                        "{}: skipped {} {what} (first: {at}: {why})",
                        source.name,
                        list.len()
                    );
                }
            }
            if *context_dropped > 0 {
                println!(
                    "{}: {context_dropped} records have a system message or earlier turns that are not part of the prompt (no chat template)",
                    source.name
                );
            }
        }
    }
}

/// The first `show` lists: each prompt (and its token ids with `tokens`)
/// with its responses and rewards.
fn print_lists(
    shown: &[SourcedList],
    show: usize,
    tokens: Option<&dyn lpo_data::tokenizer::Tokenize>,
) -> Result<()> {
    for l in shown.iter().take(show) {
        if !l.list.context.is_empty() {
            let roles: Vec<&str> = l.list.context.iter().map(|m| m.role.as_str()).collect();
            println!("[{}] after: {}", l.source, roles.join(", "));
        }
        println!("[{}] prompt: {:?}", l.source, l.list.prompt);
        if let Some(tokenizer) = tokens {
            let ids = tokenizer
                .encode_prompt(&l.list.context, &l.list.prompt)
                .map_err(anyhow::Error::msg)?;
            println!("    tokens: {ids:?}");
        }
        for r in &l.list.responses {
            println!("    {:>5.2}  {:?}", r.reward, r.text);
        }
    }
    Ok(())
}

/// A table of reward statistics per source, with the prompts and responses
/// cut to the token limits.
fn print_stats(shown: &[SourcedList], truncated: &BTreeMap<String, lpo_results::Truncation>) {
    let mut by_source: BTreeMap<&str, Vec<&lpo_data::RewardList>> = BTreeMap::new();
    for l in shown {
        by_source
            .entry(l.source.as_str())
            .or_default()
            .push(&l.list);
    }
    println!(
        "{:<24} {:>6} {:>8} {:>7} {:>7} {:>7} {:>9} {:>10} {:>10}",
        "source", "lists", "mean", "sd", "range", "ties", "all-tied", "cut-prompt", "cut-resp"
    );
    for (source, group) in by_source {
        let s = RewardStats::of(group.iter().copied());
        let cut = truncated.get(source).copied().unwrap_or_default();
        println!(
            "{:<24} {:>6} {:>8.3} {:>7.3} {:>7.3} {:>6.1}% {:>9} {:>10} {:>10}",
            source,
            s.lists,
            s.mean,
            s.sd,
            s.mean_range,
            100.0 * s.tie_share,
            s.all_tied,
            cut.prompts,
            cut.responses
        );
    }
}
