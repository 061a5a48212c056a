//! `lpo status`: where every planned run of a recipe stands, without running anything.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lpo_results::{Layout, Status, Summary, SummaryFile};

use crate::recipes::RecipeArgs;

/// Options of `lpo status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
}

/// Prints one line per planned run: status, progress, headline or error,
/// and its Slurm job and state when the recipe was swept on Slurm.
/// Exits 0 when every run is complete, 1 otherwise.
pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    let Some(plan) = crate::recipes::plan_or_report(&args.recipe)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let layout = args.results.layout();
    let mut header: Vec<String> = ["#", "id", "label", "status", "steps", "win rate", "note"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows = Vec::new();
    let mut complete = 0;
    for run in &plan.runs {
        let (row, done) = row(run, &layout)?;
        complete += usize::from(done);
        rows.push(row);
    }
    let slurm = match plan.runs.first() {
        Some(first) => lpo_exec::slurm::status_column(&plan, &layout, &first.recipe.name)?,
        None => None,
    };
    if let Some((cells, _)) = &slurm {
        header.push("slurm".into());
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.push(cell.clone());
        }
    }
    crate::recipes::print_table(&header, &rows);
    if let Some((_, source)) = &slurm {
        println!("{source}");
    }
    println!("{complete} of {} runs complete", plan.runs.len());
    Ok(if complete == plan.runs.len() {
        ExitCode::SUCCESS
    } else {
        crate::exit::code(crate::exit::FAILED)
    })
}

/// The row of one run, and whether it is complete.
fn row(run: &lpo_plan::PlannedRun, layout: &Layout) -> Result<(Vec<String>, bool)> {
    let dir = layout.run_dir(&run.recipe.name, &run.id);
    let summary = Summary::load(&dir)?;
    // Read-only: no lock file is created and no lock taken.
    let locked = lpo_results::FileLock::is_held(&dir.join(".lock"))?;
    let mut complete = false;
    let (status, steps, win, note) = match &summary {
        SummaryFile::Missing => (
            "missing".to_string(),
            "-".to_string(),
            "-".to_string(),
            String::new(),
        ),
        SummaryFile::Corrupt(why) => (
            "corrupt".to_string(),
            "-".to_string(),
            "-".to_string(),
            format!("{why} (the next sweep runs it again)"),
        ),
        SummaryFile::Present(s) => {
            let status = match s.status {
                Status::Complete => {
                    complete = true;
                    "complete"
                }
                Status::Failed => "failed",
                Status::Running if locked => "running",
                Status::Running => "interrupted",
            };
            let win = s.headline.as_ref().map_or("-".into(), |h| {
                format!("{:.3} vs {}", h.win_rate, h.baseline)
            });
            let note = match (&s.error, s.resumed_from) {
                (Some(e), _) => e.clone(),
                (None, Some(step)) => format!("resumed from step {step}"),
                _ => String::new(),
            };
            (
                status.to_string(),
                format!("{}/{}", s.steps_done, s.steps),
                win,
                note,
            )
        }
    };
    let row = vec![
        run.index.to_string(),
        run.id.clone(),
        run.recipe.method_label(),
        status,
        steps,
        win,
        note,
    ];
    Ok((row, complete))
}
