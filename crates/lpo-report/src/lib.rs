//! Reports: a recipe family's results as tables with honest uncertainty.
//!
//! [`collect`] reads the run directories, [`compare`] pairs every method with
//! a baseline prompt by prompt (per task, pooled over seeds, Holm-adjusted),
//! [`render`] writes Markdown, LaTeX and CSV, and [`svg`] draws the training
//! curves and win rates. [`write_report`] does all of it for one family.

pub mod collect;
pub mod compare;
pub mod render;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use lpo_recipe::TableSpec;
use lpo_results::write_atomic;

use crate::collect::{Absent, Collection};
use crate::compare::TaskTable;

/// Output format of the printed report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Markdown tables.
    Markdown,
    /// LaTeX booktabs tables.
    Latex,
    /// CSV, one row per (method, task).
    Csv,
}

/// What [`write_report`] produced.
pub struct Written {
    /// The report in the requested format.
    pub text: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Planned runs without results.
    pub absent: Vec<Absent>,
    /// Runs that could not be paired with the baseline, with the reason.
    pub unpaired: Vec<(String, String)>,
    /// The comparisons.
    pub tables: Vec<TaskTable>,
}

fn write(path: PathBuf, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    write_atomic(&path, text.as_bytes())?;
    files.push(path);
    Ok(())
}

/// Compares `collection` against `baseline` and writes `report.{md,tex,csv}`
/// and `plots/*.svg` into its directory, and each paper table of `specs`
/// into `results_root/tables/`.
pub fn write_report(
    collection: &Collection,
    baseline: &str,
    format: Format,
    specs: &[TableSpec],
    results_root: &Path,
) -> Result<Written> {
    if collection.runs.is_empty() {
        bail!(
            "no complete runs in {} ({} planned runs absent)",
            collection.dir.display(),
            collection.absent.len()
        );
    }
    let (tables, unpaired) = compare::compare(collection, baseline);
    if tables.is_empty() {
        bail!(
            "no run of {} could be compared with `{baseline}`: {}",
            collection.name,
            unpaired.first().map_or("no evaluations", |u| u.1.as_str())
        );
    }
    let mut files = Vec::new();
    let mut md = render::markdown(&collection.name, &tables);
    md.push_str(&absent_notes(&collection.absent, &unpaired));
    let tex = render::latex(&collection.name, &tables);
    let csv = render::csv(&tables)?;
    write(collection.dir.join("report.md"), &md, &mut files)?;
    write(collection.dir.join("report.tex"), &tex, &mut files)?;
    write(collection.dir.join("report.csv"), &csv, &mut files)?;
    plots(collection, &tables, &mut files)?;
    for spec in specs {
        let base = spec.baseline.as_deref().unwrap_or(baseline);
        let (spec_tables, _) = compare::compare(collection, base);
        let paper = render::paper_table(spec, &spec_tables)?;
        let dir = results_root.join("tables");
        write(
            dir.join(format!("{}.md", spec.name)),
            &paper.markdown,
            &mut files,
        )?;
        write(
            dir.join(format!("{}.tex", spec.name)),
            &paper.latex,
            &mut files,
        )?;
        write(
            dir.join(format!("{}.csv", spec.name)),
            &paper.csv,
            &mut files,
        )?;
    }
    let text = match format {
        Format::Markdown => md,
        Format::Latex => tex,
        Format::Csv => csv,
    };
    Ok(Written {
        text,
        files,
        absent: collection.absent.clone(),
        unpaired,
        tables,
    })
}

fn absent_notes(absent: &[Absent], unpaired: &[(String, String)]) -> String {
    let mut out = String::new();
    if !absent.is_empty() {
        out.push_str(&format!(
            "\n{} planned runs have no results:\n\n",
            absent.len()
        ));
        for a in absent {
            out.push_str(&format!("- {} ({}): {}", a.id, a.label, a.state));
            if let Some(d) = &a.detail {
                out.push_str(&format!(" — {d}"));
            }
            out.push('\n');
        }
    }
    if !unpaired.is_empty() {
        out.push_str("\nRuns left out of the comparison:\n\n");
        for (id, why) in unpaired {
            out.push_str(&format!("- {id}: {why}\n"));
        }
    }
    out
}

/// Training curves (averaged over the runs of each method) and win rates.
fn plots(collection: &Collection, tables: &[TaskTable], files: &mut Vec<PathBuf>) -> Result<()> {
    let mut by_label: BTreeMap<String, Vec<Vec<lpo_results::MetricsRow>>> = BTreeMap::new();
    for run in &collection.runs {
        by_label
            .entry(run.label().to_string())
            .or_default()
            .push(run.metrics()?);
    }
    let mean_curve = |runs: &[Vec<lpo_results::MetricsRow>],
                      f: &dyn Fn(&lpo_results::MetricsRow) -> f64| {
        let mut sums: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
        for rows in runs {
            for r in rows {
                let e = sums.entry(r.step).or_default();
                e.0 += f(r);
                e.1 += 1;
            }
        }
        sums.into_iter()
            .map(|(s, (v, n))| (f64::from(s), v / n as f64))
            .collect::<Vec<_>>()
    };
    let mut loss = Vec::new();
    let mut likelihood = Vec::new();
    let mut accuracy = Vec::new();
    for (i, (label, runs)) in by_label.iter().enumerate() {
        loss.push(svg::Series {
            name: label.clone(),
            points: mean_curve(runs, &|r| r.loss),
            dashed: false,
            color: i,
        });
        likelihood.push(svg::Series {
            name: format!("{label} chosen"),
            points: mean_curve(runs, &|r| r.chosen_logp),
            dashed: false,
            color: i,
        });
        likelihood.push(svg::Series {
            name: format!("{label} rejected"),
            points: mean_curve(runs, &|r| r.rejected_logp),
            dashed: true,
            color: i,
        });
        accuracy.push(svg::Series {
            name: label.clone(),
            points: mean_curve(runs, &|r| r.ranking_accuracy),
            dashed: false,
            color: i,
        });
    }
    let dir = collection.dir.join("plots");
    write(
        dir.join("loss.svg"),
        &svg::line_chart(
            &format!("{}: training loss", collection.name),
            "step",
            "loss",
            &loss,
        ),
        files,
    )?;
    write(
        dir.join("likelihood.svg"),
        &svg::line_chart(
            &format!(
                "{}: policy log-likelihood of the best (chosen) and worst (rejected) response",
                collection.name
            ),
            "step",
            "log-likelihood",
            &likelihood,
        ),
        files,
    )?;
    write(
        dir.join("ranking_accuracy.svg"),
        &svg::line_chart(
            &format!(
                "{}: ranking accuracy of the implicit reward",
                collection.name
            ),
            "step",
            "accuracy",
            &accuracy,
        ),
        files,
    )?;
    let labels: Vec<&String> = by_label.keys().collect();
    let bars: Vec<svg::Bar> = tables
        .iter()
        .flat_map(|t| {
            t.rows.iter().map(|r| svg::Bar {
                label: format!("{} {}", t.task, r.method),
                value: r.win_rate,
                lo: r.wilson.lo,
                hi: r.wilson.hi,
                color: labels.iter().position(|l| **l == r.method).unwrap_or(0),
            })
        })
        .collect();
    let baseline = tables.first().map_or("baseline", |t| t.baseline.as_str());
    write(
        dir.join("win_rate.svg"),
        &svg::bar_chart(
            &format!("{}: win rate vs {baseline} (Wilson 95%)", collection.name),
            "win rate",
            &bars,
            Some(0.5),
        ),
        files,
    )?;
    Ok(())
}
