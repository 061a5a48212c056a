//! Reports: a recipe family's results as tables with honest uncertainty.
//!
//! [`collect`] reads the run directories, [`select`] groups runs into arms
//! (one method label and configuration, over seeds; optionally the
//! configuration best on validation), [`compare`] pairs every arm with a
//! baseline prompt by prompt on the test split (seed-aware intervals and
//! tests), head-to-heads and held-out list metrics, [`render`] writes
//! Markdown, LaTeX and CSV, [`svg`] draws the reward-vs-KL frontier,
//! training curves and win rates, and [`html`] lays all of it out as one
//! self-contained page. [`write_report`] does all of it for one
//! family. docs/results.md defines every number.

pub mod collect;
pub mod compare;
pub mod family;
pub mod html;
pub mod inference;
pub mod render;
pub mod select;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lpo_recipe::{Hypothesis, TableSpec};
use lpo_results::{write_atomic, CurveRow, MetricsRow, Split};
pub use lpo_stats::Adjustment;

use crate::collect::{Absent, Collection, RunResult};
use crate::compare::{HeadToHead, HeldoutRow, TaskTable, Unpaired};
use crate::select::{Arms, SelectBy, Selection};

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

/// What to report and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// `reference` or a method label.
    pub baseline: String,
    /// Printed format.
    pub format: Format,
    /// Paper tables to write under `results_root/tables/`.
    pub specs: Vec<TableSpec>,
    /// Head-to-heads `(A, B)`: A minus B.
    pub compare: Vec<(String, String)>,
    /// Pick one configuration per method.
    pub select_by: Option<SelectBy>,
    /// Multiple-comparison adjustment over the report's tests.
    pub adjustment: Adjustment,
    /// The declared family of hypotheses (`[report] family`); empty: every
    /// test of the report.
    pub family: Vec<Hypothesis>,
    /// TOST margin D: equivalence within ±D (`--equivalence-margin`).
    pub equivalence_margin: Option<f64>,
    /// Print the power section (`--power`).
    pub power: bool,
    /// The difference whose seeds the power section gives (`--effect`).
    pub effect: Option<f64>,
}

impl Options {
    /// Defaults: against `baseline`, Markdown, Holm, no head-to-heads.
    pub fn new(baseline: impl Into<String>) -> Options {
        Options {
            baseline: baseline.into(),
            format: Format::Markdown,
            specs: Vec::new(),
            compare: Vec::new(),
            select_by: None,
            adjustment: Adjustment::Holm,
            family: Vec::new(),
            equivalence_margin: None,
            power: false,
            effect: None,
        }
    }
}

/// Everything a report shows.
pub struct Report {
    /// Family name.
    pub name: String,
    /// Baseline of the main tables.
    pub baseline: String,
    /// Per task: every arm against the baseline.
    pub tables: Vec<TaskTable>,
    /// Held-out list metrics per arm and source.
    pub heldout: Vec<HeldoutRow>,
    /// Head-to-heads.
    pub head_to_head: Vec<HeadToHead>,
    /// Runs that could not be compared, and why.
    pub unpaired: Vec<Unpaired>,
    /// Configurations picked on validation.
    pub selections: Vec<Selection>,
    /// Notes for the reader (configurations, runs not compared, absent runs).
    pub notes: Vec<String>,
    /// The adjustment applied.
    pub adjustment: Adjustment,
    /// Tests in the family (main tables, head-to-heads and paper tables;
    /// the declared hypotheses when `[report] family` declares them).
    pub family: usize,
    /// Of those, in the main tables.
    pub family_main: usize,
    /// How the family was formed: declared hypotheses, untested ones,
    /// exploratory tests.
    pub family_outcome: family::Outcome,
    /// Per paper table (`Options::specs`, same order): its comparisons,
    /// their p-values from the report's family.
    pub papers: Vec<Vec<TaskTable>>,
    /// TOST margin, if asked.
    pub equivalence_margin: Option<f64>,
    /// Whether the power section is shown.
    pub power: bool,
    /// The difference the power section sizes seeds for.
    pub effect: Option<f64>,
}

/// What [`write_report`] produced.
pub struct Written {
    /// The report in the requested format.
    pub text: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// An earlier report's optional tables this report does not have
    /// (`report-compare.csv` without `--compare`, ...), removed.
    pub removed: Vec<PathBuf>,
    /// Planned runs without results.
    pub absent: Vec<Absent>,
    /// Runs that could not be compared with the baseline, with the reason.
    pub unpaired: Vec<(String, String)>,
    /// The report.
    pub report: Report,
}

fn write(path: PathBuf, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    write_atomic(&path, text.as_bytes())?;
    files.push(path);
    Ok(())
}

/// The arm a family label designates; `None` when no run of it is
/// complete (the hypothesis is then untested), an error when ambiguous.
fn family_arm(arms: &Arms<'_>, label: &str) -> Result<Option<String>, String> {
    if label == "reference" {
        return Ok(Some(label.to_string()));
    }
    match compare::resolve(arms, label) {
        Ok(arm) => Ok(Some(arm.name.clone())),
        Err(_) if arms.of_label(label).is_empty() => Ok(None),
        Err(why) => Err(why),
    }
}

/// The declared hypotheses with arm names; those without complete runs
/// keep their labels (no test matches them: untested).
fn declared(arms: &Arms<'_>, family: &[Hypothesis]) -> Result<Vec<family::Declared>> {
    let mut out = Vec::new();
    for (i, h) in family.iter().enumerate() {
        let arm = |field: &str, label: &str| -> Result<String> {
            match family_arm(arms, label) {
                Ok(name) => Ok(name.unwrap_or_else(|| label.to_string())),
                Err(why) => bail!("report.family[{i}].{field}: {why}"),
            }
        };
        out.push(family::Declared {
            a: arm("a", &h.a)?,
            b: arm("b", &h.b)?,
            task: h.task.clone(),
        });
    }
    Ok(out)
}

/// The head-to-heads: `--compare`, then each declared hypothesis between
/// two methods that no task table or earlier head-to-head holds.
fn head_to_heads(
    arms: &Arms<'_>,
    options: &Options,
    declared: &[family::Declared],
    baseline: &str,
) -> Result<Vec<HeadToHead>> {
    let mut out: Vec<HeadToHead> = Vec::new();
    for (a, b) in &options.compare {
        match compare::head_to_head(arms, a, b) {
            Ok(h) => out.push(h),
            Err(why) => bail!("--compare {a},{b}: {why}"),
        }
    }
    for d in declared {
        let shown = |x: &str, y: &str| {
            out.iter()
                .any(|h| (h.a == x && h.b == y) || (h.a == y && h.b == x))
        };
        let in_tables = d.a == baseline || d.b == baseline;
        let runs = |name: &str| arms.arms.iter().any(|a| a.name == name);
        if in_tables || shown(&d.a, &d.b) || !runs(&d.a) || !runs(&d.b) {
            continue;
        }
        out.push(
            compare::head_to_head(arms, &d.a, &d.b)
                .map_err(|why| anyhow::anyhow!("report.family: {} − {}: {why}", d.a, d.b))?,
        );
    }
    Ok(out)
}

/// Builds the report of `collection` (no files written).
pub fn build<'a>(collection: &'a Collection, options: &Options) -> Result<(Report, Arms<'a>)> {
    if collection.runs.is_empty() {
        bail!(
            "no complete runs in {} ({} planned runs absent)",
            collection.dir.display(),
            collection.absent.len()
        );
    }
    let arms = select::arms(collection, options.select_by)?;
    let (mut tables, unpaired) = compare::compare(&arms, &options.baseline);
    let heldout = compare::heldout(&arms);
    let baseline = match options.baseline.as_str() {
        "reference" => "reference".to_string(),
        b => compare::resolve(&arms, b).map_or_else(|_| b.to_string(), |a| a.name.clone()),
    };
    let declared = match options.family.is_empty() {
        true => None,
        false => Some(declared(&arms, &options.family)?),
    };
    let mut head_to_head = head_to_heads(
        &arms,
        options,
        declared.as_deref().unwrap_or_default(),
        &baseline,
    )?;
    let mut papers: Vec<Vec<TaskTable>> = options
        .specs
        .iter()
        .map(|spec| {
            compare::compare(&arms, spec.baseline.as_deref().unwrap_or(&options.baseline)).0
        })
        .collect();
    if tables.is_empty() && heldout.is_empty() && head_to_head.is_empty() {
        bail!(
            "nothing to report for {}: no run could be compared with `{}` ({}) and no run has \
             held-out lists",
            collection.name,
            options.baseline,
            unpaired.first().map_or("no evaluations", |u| u.1.as_str())
        );
    }
    let outcome = family::assign(
        &mut tables,
        &mut head_to_head,
        &mut papers,
        options.adjustment,
        declared.as_deref(),
        inference::Questions {
            margin: options.equivalence_margin,
            effect: options.effect,
        },
    );
    let mut notes = arms.notes.clone();
    for h in &outcome.untested {
        notes.push(format!(
            "untested: the declared hypothesis {h} has no paired runs; it counts in the family with p = 1"
        ));
    }
    for (id, why) in &unpaired {
        notes.push(format!("not compared: run {id}: {why}"));
    }
    for a in &collection.absent {
        let mut n = format!("no results: run {} ({}): {}", a.id, a.label, a.state);
        if let Some(d) = &a.detail {
            n.push_str(&format!(" — {d}"));
        }
        notes.push(n);
    }
    if tables.is_empty() && !heldout.is_empty() {
        notes.push(
            "no generation table: these runs have no eval.csv (their data has no built-in \
             task to generate and score answers), so only held-out list metrics are reported"
                .into(),
        );
    }
    Ok((
        Report {
            name: collection.name.clone(),
            baseline: tables
                .first()
                .map_or_else(|| options.baseline.clone(), |t| t.baseline.clone()),
            tables,
            heldout,
            head_to_head,
            unpaired,
            selections: arms.selections.clone(),
            notes,
            adjustment: options.adjustment,
            family: outcome.size,
            family_main: outcome.in_main,
            family_outcome: outcome,
            papers,
            equivalence_margin: options.equivalence_margin,
            power: options.power || options.effect.is_some(),
            effect: options.effect,
        },
        arms,
    ))
}

/// Compares `collection` against `options.baseline` and writes
/// `report.{md,tex,csv}`, `report-heldout.csv`, `report-compare.csv`,
/// `plots/*.svg` and `report.html` (all of them on one page) into its
/// directory, and each paper table of
/// `options.specs` into `results_root/tables/`.
pub fn write_report(
    collection: &Collection,
    options: &Options,
    results_root: &Path,
) -> Result<Written> {
    let (report, arms) = build(collection, options)?;
    let mut files = Vec::new();
    let md = render::markdown(&report);
    let tex = render::latex(&report);
    let csv = render::csv(&report)?;
    let heldout_csv = render::heldout_csv(&report.heldout)?;
    write(collection.dir.join("report.md"), &md, &mut files)?;
    write(collection.dir.join("report.tex"), &tex, &mut files)?;
    write(collection.dir.join("report.csv"), &csv, &mut files)?;
    // The optional tables: written when this report has them; an older
    // report's copy is removed, so a file beside report.csv is never from
    // another invocation (another --compare, another family of tests).
    let mut removed = Vec::new();
    let heldout = (!report.heldout.is_empty()).then(|| heldout_csv.clone());
    let compare = match report.head_to_head.is_empty() {
        true => None,
        false => Some(render::compare_csv(&report)?),
    };
    for (name, text) in [
        ("report-heldout.csv", heldout),
        ("report-compare.csv", compare),
    ] {
        let path = collection.dir.join(name);
        match text {
            Some(text) => write(path, &text, &mut files)?,
            None if path.exists() => {
                std::fs::remove_file(&path)
                    .with_context(|| format!("failed to remove `{}`", path.display()))?;
                removed.push(path);
            }
            None => {}
        }
    }
    let (plot_notes, charts) = plots(collection, &arms, &report, &mut files)?;
    let mut papers = Vec::new();
    for (spec, tables) in options.specs.iter().zip(&report.papers) {
        let paper = write_paper_table(spec, tables, results_root, &mut files)?;
        papers.push((spec.name.clone(), paper));
    }
    let page = html::page(&html::Page {
        report: &report,
        runs: &run_lines(collection, &arms),
        papers: &papers,
        charts: &charts,
        plot_notes: &plot_notes,
    });
    write(collection.dir.join("report.html"), &page, &mut files)?;
    let text = match options.format {
        Format::Markdown => {
            let mut md = md;
            for n in plot_notes {
                md.push_str(&format!("- {n}\n"));
            }
            md
        }
        Format::Latex => tex,
        Format::Csv if report.tables.is_empty() => heldout_csv,
        Format::Csv => csv,
    };
    Ok(Written {
        text,
        files,
        removed,
        absent: collection.absent.clone(),
        unpaired: report.unpaired.clone(),
        report,
    })
}

/// Writes a paper table (its comparisons with the table's baseline, their
/// p-values from the report's family) to
/// `results_root/tables/NAME.{md,tex,csv}`.
fn write_paper_table(
    spec: &TableSpec,
    tables: &[TaskTable],
    results_root: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<render::PaperTable> {
    let paper = render::paper_table(spec, tables)?;
    let dir = results_root.join("tables");
    write(
        dir.join(format!("{}.md", spec.name)),
        &paper.markdown,
        files,
    )?;
    write(dir.join(format!("{}.tex", spec.name)), &paper.latex, files)?;
    write(dir.join(format!("{}.csv", spec.name)), &paper.csv, files)?;
    Ok(paper)
}

/// Every run of the family for the page's runs table: complete runs by
/// arm (runs of a configuration not selected after them), then the absent.
fn run_lines(collection: &Collection, arms: &Arms<'_>) -> Vec<html::RunLine> {
    let mut out = Vec::new();
    for arm in &arms.arms {
        for run in &arm.runs {
            out.push(html::RunLine {
                id: run.summary.run_id.clone(),
                method: arm.name.clone(),
                in_arm: true,
                seed: Some(run.seed()),
                state: "complete".into(),
                detail: None,
            });
        }
    }
    for run in &collection.runs {
        if !out.iter().any(|l| l.id == run.summary.run_id) {
            out.push(html::RunLine {
                id: run.summary.run_id.clone(),
                method: run.label().to_string(),
                in_arm: false,
                seed: Some(run.seed()),
                state: "complete".into(),
                detail: Some("its configuration was not selected".into()),
            });
        }
    }
    for a in &collection.absent {
        out.push(html::RunLine {
            id: a.id.clone(),
            method: a.label.clone(),
            in_arm: false,
            seed: None,
            state: a.state.clone(),
            detail: a.detail.clone(),
        });
    }
    out
}

/// Mean of `f` per x over several runs' rows (x = step).
fn mean_curve<T>(
    runs: &[Vec<T>],
    step: impl Fn(&T) -> u32,
    f: impl Fn(&T) -> f64,
) -> Vec<(f64, f64)> {
    let mut sums: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for rows in runs {
        for r in rows {
            let v = f(r);
            if v.is_finite() {
                let e = sums.entry(step(r)).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(s, (v, n))| (f64::from(s), v / n as f64))
        .collect()
}

/// Test-split means of a run: (KL, reward), `None` without test prompts.
fn frontier_point(run: &RunResult) -> Option<(f64, f64)> {
    let rows: Vec<_> = run.eval_split(Split::Test).collect();
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    Some((
        rows.iter().map(|r| r.policy_kl).sum::<f64>() / n,
        rows.iter().map(|r| r.policy_reward).sum::<f64>() / n,
    ))
}

/// A plot: its file name under `plots/` and its SVG.
pub struct Chart {
    /// File name (`frontier.svg`).
    pub file: String,
    /// The SVG document.
    pub svg: String,
}

#[derive(Default)]
struct Charts(Vec<Chart>);

impl Charts {
    fn push(&mut self, file: &str, svg: String) {
        self.0.push(Chart {
            file: file.into(),
            svg,
        });
    }
}

/// The plots: frontier, held-out curves, per-batch curves, win rates,
/// written to `plots/`. Returns them with notes about runs whose curves
/// could not be read.
fn plots(
    collection: &Collection,
    arms: &Arms<'_>,
    report: &Report,
    files: &mut Vec<PathBuf>,
) -> Result<(Vec<String>, Vec<Chart>)> {
    let dir = collection.dir.join("plots");
    let charts = draw(collection, arms, report);
    for c in &charts.1 {
        write(dir.join(&c.file), &c.svg, files)?;
    }
    Ok(charts)
}

/// Draws the plots of [`plots`] without writing them.
fn draw(collection: &Collection, arms: &Arms<'_>, report: &Report) -> (Vec<String>, Vec<Chart>) {
    let name = &collection.name;
    let mut notes = Vec::new();
    let mut charts = Charts::default();
    // Reward-vs-KL frontier: one point per run.
    let mut points = Vec::new();
    let mut legend = Vec::new();
    let mut reference: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (i, arm) in arms.arms.iter().enumerate() {
        let mut any = false;
        for run in &arm.runs {
            if let Some((kl, reward)) = frontier_point(run) {
                any = true;
                points.push(svg::Point {
                    x: kl,
                    y: reward,
                    color: Some(i),
                    tip: format!("{} seed {} ({})", arm.name, run.seed(), run.summary.run_id),
                });
            }
            for r in run
                .eval_split(Split::Test)
                .filter(|r| r.baseline == "reference")
            {
                reference.insert(
                    (run.eval_key.clone(), r.prompt_id.clone()),
                    r.baseline_reward,
                );
            }
        }
        if any {
            legend.push((arm.name.clone(), Some(i)));
        }
    }
    if !points.is_empty() {
        if !reference.is_empty() {
            points.push(svg::Point {
                x: 0.0,
                y: reference.values().sum::<f64>() / reference.len() as f64,
                color: None,
                tip: "reference (SFT)".into(),
            });
            legend.push(("reference".into(), None));
        }
        charts.push(
            "frontier.svg",
            svg::scatter_chart(
                &format!("{name}: mean test reward against KL to the reference, one point per run"),
                "KL(π || π_ref) per response, nats (mean over test samples)",
                "mean reward (test prompts)",
                &points,
                &legend,
            ),
        );
    }
    // Held-out curves (curves.csv), averaged over seeds.
    let mut curves: Vec<(usize, &str, Vec<Vec<CurveRow>>)> = Vec::new();
    let mut metrics: Vec<(usize, &str, Vec<Vec<MetricsRow>>)> = Vec::new();
    for (i, arm) in arms.arms.iter().enumerate() {
        let mut c = Vec::new();
        let mut m = Vec::new();
        for run in &arm.runs {
            match run.curves() {
                Ok(Some(rows)) => c.push(rows),
                Ok(None) => {}
                Err(e) => notes.push(format!("plots: {e:#}")),
            }
            match run.metrics() {
                Ok(rows) => m.push(rows),
                Err(e) => notes.push(format!("plots: {e:#}")),
            }
        }
        if !c.is_empty() {
            curves.push((i, arm.name.as_str(), c));
        }
        if !m.is_empty() {
            metrics.push((i, arm.name.as_str(), m));
        }
    }
    if !curves.is_empty() {
        let mut likelihood = Vec::new();
        let mut margin = Vec::new();
        let mut accuracy = Vec::new();
        for (i, label, runs) in &curves {
            likelihood.push(svg::Series::line(
                format!("{label} chosen"),
                mean_curve(runs, |r| r.step, |r| r.chosen_logp),
                *i,
                false,
            ));
            likelihood.push(svg::Series::line(
                format!("{label} rejected"),
                mean_curve(runs, |r| r.step, |r| r.rejected_logp),
                *i,
                true,
            ));
            margin.push(svg::Series::line(
                *label,
                mean_curve(runs, |r| r.step, |r| r.margin),
                *i,
                false,
            ));
            accuracy.push(svg::Series::line(
                *label,
                mean_curve(runs, |r| r.step, |r| r.ranking_accuracy),
                *i,
                false,
            ));
        }
        charts.push(
            "likelihood.svg",
            svg::line_chart(
                &format!("{name}: log-likelihood of the best (chosen, solid) and worst (rejected, dashed) response, held-out lists"),
                "step (0 = reference)",
                "mean log π(y | x)",
                &likelihood,
            ),
        );
        charts.push(
            "margin.svg",
            svg::line_chart(
                &format!("{name}: implicit-reward margin of ordered pairs, held-out lists"),
                "step (0 = reference)",
                "mean s_i − s_j",
                &margin,
            ),
        );
        charts.push(
            "ranking_accuracy.svg",
            svg::line_chart(
                &format!("{name}: ranking accuracy of the implicit reward, held-out lists"),
                "step (0 = reference)",
                "accuracy",
                &accuracy,
            ),
        );
    }
    // Per-batch curves: EMA over a faint raw series.
    if !metrics.is_empty() {
        let steps = metrics
            .iter()
            .flat_map(|(_, _, runs)| runs.iter().map(Vec::len))
            .max()
            .unwrap_or(1);
        let span = svg::ema_span(steps);
        let smoothed = |series: &mut Vec<svg::Series>,
                        name: String,
                        raw: Vec<(f64, f64)>,
                        i: usize,
                        dashed: bool| {
            series.push(svg::Series::faint(raw.clone(), i, dashed));
            series.push(svg::Series::line(name, svg::ema(&raw, span), i, dashed));
        };
        let mut loss = Vec::new();
        let mut likelihood = Vec::new();
        let mut accuracy = Vec::new();
        for (i, label, runs) in &metrics {
            smoothed(
                &mut loss,
                label.to_string(),
                mean_curve(runs, |r| r.step, |r| r.loss),
                *i,
                false,
            );
            smoothed(
                &mut likelihood,
                format!("{label} chosen"),
                mean_curve(runs, |r| r.step, |r| r.chosen_logp),
                *i,
                false,
            );
            smoothed(
                &mut likelihood,
                format!("{label} rejected"),
                mean_curve(runs, |r| r.step, |r| r.rejected_logp),
                *i,
                true,
            );
            smoothed(
                &mut accuracy,
                label.to_string(),
                mean_curve(runs, |r| r.step, |r| r.ranking_accuracy),
                *i,
                false,
            );
        }
        let sub = format!("per batch; lines: EMA (span {span:.0}), faint: raw");
        charts.push(
            "loss.svg",
            svg::line_chart(
                &format!("{name}: training loss ({sub})"),
                "step",
                "loss",
                &loss,
            ),
        );
        charts.push(
            "batch_likelihood.svg",
            svg::line_chart(
                &format!("{name}: log-likelihood of chosen (solid) and rejected (dashed) training responses ({sub})"),
                "step",
                "mean log π(y | x)",
                &likelihood,
            ),
        );
        charts.push(
            "batch_ranking_accuracy.svg",
            svg::line_chart(
                &format!("{name}: ranking accuracy on training batches ({sub})"),
                "step",
                "accuracy",
                &accuracy,
            ),
        );
    }
    // Win rates W / (W + L) with their intervals.
    let names: Vec<&str> = arms.arms.iter().map(|a| a.name.as_str()).collect();
    let bars: Vec<svg::Bar> = report
        .tables
        .iter()
        .flat_map(|t| {
            t.rows.iter().filter_map(|r| {
                let ci = r.win_rate_ci?;
                Some(svg::Bar {
                    label: format!("{} {}", t.task, r.method),
                    value: r.win_rate?,
                    lo: ci.lo,
                    hi: ci.hi,
                    color: names.iter().position(|l| *l == r.method).unwrap_or(0),
                })
            })
        })
        .collect();
    if !bars.is_empty() {
        charts.push(
            "win_rate.svg",
            svg::bar_chart(
                &format!(
                    "{name}: win rate W / (W + L) against {} (test split, 95% intervals)",
                    report.baseline
                ),
                "win rate",
                &bars,
                Some(0.5),
            ),
        );
    }
    (notes, charts.0)
}

#[cfg(test)]
mod tests;
