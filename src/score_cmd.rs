//! `lpo score`: a recipe's prompt files become a scored reward-list file.
//!
//! Every record of every prompt source (`data.mix[].reward`) gets
//! `data.list_size` responses sampled from the run's reference (the
//! `reference.checkpoint`, which a prompt file needs) at
//! `reference.sample_temperature`, at most `eval.max_new_tokens` long, seeded
//! by `train.seed`, scored by the source's reward. A record that already
//! holds (unscored) responses has those scored instead. The output is the
//! native format, which `data.mix` trains on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lpo_data::Scored;
use lpo_results::Layout;
use lpo_train::lists::Sampling;
use lpo_train::rewards::{Rewards, Scorable};
use lpo_train::sources::{Source, SourceKind, SourcedList};

use crate::progress::Bars;
use crate::recipes::RecipeArgs;

/// Options of `lpo score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The reward-list file to write (native JSONL).
    #[arg(long)]
    pub out: PathBuf,
    /// Which planned run's model and settings to use.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
}

/// Runs `lpo score`.
pub fn run(args: &ScoreArgs) -> Result<std::process::ExitCode> {
    let Some(plan) = crate::recipes::fetch_and_plan(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let run = crate::recipes::planned_run(&plan, args.index)?;
    let recipe = &run.recipe;
    if recipe.data.mix.iter().all(|s| s.reward.is_none()) {
        eprintln!(
            "error: {} has no prompt source: `lpo score` scores the sources with a `reward` (docs/data.md)",
            args.recipe.recipe.display()
        );
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let layout = Layout::new(&args.results.dir);
    let device = crate::device::device_for(recipe)?;
    let mut bars = Bars::new(format!("[{}]", run.id), crate::progress::Mode::Bars);
    let lpo_train::reference::Basis {
        sources,
        tokenizer,
        reference,
        rewards,
    } = lpo_train::reference::basis(recipe, &layout, device, &mut bars)?;
    let sampling = Sampling {
        recipe,
        tokenizer: tokenizer.as_ref(),
        rewards: &rewards,
    };
    let (to_sample, given) = items(&sources);
    let mut lists = lpo_train::lists::sample_scored(
        &sampling,
        &reference.model,
        &to_sample,
        "score-sampling",
        &mut bars,
    )?;
    lists.extend(score_given(&rewards, &given)?);
    write(&args.out, &lists)?;
    print_summary(&args.out, &lists, rewards.isolation());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Every record of every prompt source: those to sample for, and those
/// whose own responses are scored.
fn items(sources: &[Source]) -> (Vec<Scorable>, Vec<Scorable>) {
    let mut sample = Vec::new();
    let mut given = Vec::new();
    for source in sources {
        let SourceKind::File {
            records,
            heldout,
            reward: Some(kind),
            ..
        } = &source.kind
        else {
            continue;
        };
        let held = heldout
            .iter()
            .flat_map(|(name, r)| r.iter().map(move |r| (name, r)));
        for (name, record) in records.iter().map(|r| (&source.name, r)).chain(held) {
            let item = Scorable::Record {
                source: name.clone(),
                kind: *kind,
                record: record.clone(),
            };
            match record.responses.is_empty() {
                true => sample.push(item),
                false => given.push(item),
            }
        }
    }
    (sample, given)
}

/// The records' own responses, scored.
fn score_given(rewards: &Rewards, items: &[Scorable]) -> Result<Vec<SourcedList>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Scorable::Record { source, record, .. } = item else {
            continue;
        };
        let pairs: Vec<(&Scorable, &str)> = record
            .responses
            .iter()
            .map(|r| (item, r.text.as_str()))
            .collect();
        let scored = rewards.score(&pairs, None)?;
        let responses = record
            .responses
            .iter()
            .zip(scored.rewards)
            .map(|(r, reward)| Scored {
                text: r.text.clone(),
                reward,
            })
            .collect();
        let mut list = item.list(source, responses);
        list.outcomes = scored.outcomes.into_iter().flatten().collect();
        out.push(list);
    }
    Ok(out)
}

/// Writes the lists as native JSONL records (prompt, context, scored
/// responses, and the answer or tests they were scored against).
fn write(path: &std::path::Path, lists: &[SourcedList]) -> Result<()> {
    let mut bytes = Vec::new();
    for l in lists {
        serde_json::to_writer(&mut bytes, &l.list)?;
        bytes.write_all(b"\n")?;
    }
    lpo_results::write_atomic(path, &bytes)
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// Records, responses and mean reward per source; what the sandbox enforced.
fn print_summary(
    out: &std::path::Path,
    lists: &[SourcedList],
    isolation: Option<&lpo_reward::sandbox::Isolation>,
) {
    let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in lists.iter().flat_map(|l| &l.outcomes) {
        *causes.entry(outcome).or_default() += 1;
    }
    let mut per_source: BTreeMap<&str, (usize, Vec<f64>)> = BTreeMap::new();
    for l in lists {
        let entry = per_source.entry(&l.source).or_default();
        entry.0 += 1;
        entry.1.extend(l.list.responses.iter().map(|r| r.reward));
    }
    for (source, (records, rewards)) in per_source {
        let mean = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
        println!(
            "{source}: {records} records, {} responses, mean reward {mean:.3}",
            rewards.len()
        );
    }
    if !causes.is_empty() {
        let total: usize = causes.values().sum();
        let counts: Vec<String> = causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("code executions: {total} ({})", counts.join(", "));
    }
    if let Some(isolation) = isolation {
        println!("code ran with {isolation}");
    }
    println!("wrote {}", out.display());
}
