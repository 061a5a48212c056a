//! `lpo report`: tables, paper tables and plots from a sweep's results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lpo_recipe::{Overrides, TableSpec};
use lpo_report::collect::{self, Collection, PlannedId};
use lpo_report::select::SelectBy;
use lpo_report::{Adjustment, Format, Options, Written};

/// Output format of `lpo report`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Markdown.
    Md,
    /// LaTeX (booktabs).
    Latex,
    /// CSV, one row per (method, task); the held-out list table when the
    /// runs have no generation evaluation.
    Csv,
}

/// How `--select-by` picks one configuration per method.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SelectArg {
    /// Best mean reward on the validation prompts (files only: best
    /// ranking accuracy on the validation lists).
    Validation,
}

/// Multiple-comparison adjustment.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AdjustArg {
    /// Holm–Bonferroni (family-wise error rate).
    Holm,
    /// Benjamini–Hochberg (false discovery rate).
    Bh,
}

/// Options of `lpo report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A recipe (.toml) or one family's results directory; default: every
    /// family under --results.
    pub target: Option<PathBuf>,
    /// Compare with this method label instead of the recipe's eval.baseline
    /// (`reference` = the SFT model), prompt by prompt.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Printed format (all three are written next to the results).
    #[arg(long, value_enum, default_value = "md")]
    pub format: FormatArg,
    /// Head-to-head: method A minus method B, prompt by prompt within each
    /// seed, per task (and ranking accuracy per held-out source); repeatable.
    #[arg(long, value_name = "A,B")]
    pub compare: Vec<String>,
    /// Per method, keep the swept configuration that is best on the
    /// validation split and report its test numbers.
    #[arg(long, value_enum)]
    pub select_by: Option<SelectArg>,
    /// Adjustment of p-values over the family: the recipe's `[report]
    /// family`, else every test of the report.
    #[arg(long, value_enum, default_value = "holm")]
    pub adjust: AdjustArg,
    /// Equivalence margin D: a paired TOST at 0.05 across seeds for |Δ| < D
    /// on every comparison with two or more seeds (default: the recipe's
    /// `[report] equivalence_margin`).
    #[arg(long, value_name = "D", value_parser = positive)]
    pub equivalence_margin: Option<f64>,
    /// Add the power section: the smallest difference each comparison's
    /// seeds detect at 80% power at the family's level.
    #[arg(long)]
    pub power: bool,
    /// With the power section, the seeds that detect a difference of E
    /// (implies --power).
    #[arg(long, value_name = "E", value_parser = positive)]
    pub effect: Option<f64>,
    /// Recipe overrides, as for `lpo sweep` (so the plan matches).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// As for `lpo sweep` (`--set train.reproducible=true`), so the plan matches.
    #[arg(long)]
    pub reproducible: bool,
    /// Also log the report's files to this MLflow tracking server (default:
    /// the recipe's `tracking.mlflow`, else its runs').
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    #[command(flatten)]
    pub results: crate::recipes::ResultsRoot,
}

/// A finite number above 0, for `--equivalence-margin` and `--effect`.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a number above 0")),
    }
}

struct Family {
    dir: PathBuf,
    /// The recipe's `[tracking]`, when read from a recipe.
    tracking: Option<lpo_recipe::TrackingConfig>,
    planned: Option<Vec<PlannedId>>,
    specs: Vec<TableSpec>,
    /// The recipe's `[report]` (family, equivalence margin).
    report: Option<lpo_recipe::ReportConfig>,
    baseline: Option<String>,
}

fn from_recipe(args: &ReportArgs, path: &Path) -> Result<Option<Family>> {
    let mut sets = args.sets.clone();
    if args.reproducible {
        sets.push("train.reproducible=true".into());
    }
    let loaded = match lpo_recipe::load(path, &Overrides::from_process(sets)) {
        Ok(l) => l,
        Err(d) => {
            crate::print_diagnostics(&d);
            return Ok(None);
        }
    };
    let plan = match lpo_plan::plan(&loaded.recipe) {
        Ok(p) => p,
        Err(d) => {
            crate::print_diagnostics(&loaded.locate(d));
            return Ok(None);
        }
    };
    // `[report] family` names method labels: each must be one the plan has.
    let labels = plan.runs.iter().map(|r| r.recipe.method_label()).collect();
    let unknown = lpo_recipe::validate::family_label_problems(&loaded.recipe.report, &labels);
    if !unknown.is_empty() {
        crate::print_diagnostics(&loaded.locate(lpo_recipe::Diagnostics(unknown)));
        return Ok(None);
    }
    let planned = plan
        .runs
        .iter()
        .map(|r| (r.id.clone(), r.recipe.method_label()))
        .collect();
    Ok(Some(Family {
        dir: args.results.dir.join(&loaded.recipe.name),
        tracking: Some(loaded.recipe.tracking.clone()),
        planned: Some(planned),
        specs: loaded.recipe.report.tables.clone(),
        report: Some(loaded.recipe.report.clone()),
        baseline: Some(loaded.recipe.eval.baseline.clone()),
    }))
}

fn from_dir(dir: &Path) -> Result<Family> {
    Ok(Family {
        dir: dir.to_path_buf(),
        tracking: None,
        planned: collect::read_plan_json(dir)?,
        specs: Vec::new(),
        report: None,
        baseline: None,
    })
}

/// Runs `lpo report`.
pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    if let Some(problem) = args
        .mlflow
        .as_deref()
        .and_then(lpo_recipe::validate::mlflow_uri_problem)
    {
        eprintln!("error: --mlflow {problem}");
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    }
    let Some(families) = families(args)? else {
        return Ok(crate::exit::code(crate::exit::BAD_INPUT));
    };
    let compare = compare_pairs(&args.compare)?;
    for family in families {
        let collection: Collection = collect::collect(&family.dir, family.planned.as_deref())?;
        let target = mlflow_target(args, &family, &collection);
        let options = options_for(args, family, &collection, &compare);
        let written = lpo_report::write_report(&collection, &options, &args.results.dir)?;
        print_written(&written);
        if let Some(target) = target {
            log_to_mlflow(&target, &collection, &written.files);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the report is logged in MLflow, if anywhere: `--mlflow`, else the
/// recipe's `[tracking]`, else its first run's; the experiment is the
/// tracking section's, else the family's name.
fn mlflow_target(
    args: &ReportArgs,
    family: &Family,
    collection: &Collection,
) -> Option<lpo_track::mlflow::Target> {
    let tracking = family
        .tracking
        .clone()
        .or_else(|| collection.runs.first().map(|r| r.recipe.tracking.clone()))
        .unwrap_or_default();
    let name = family.dir.file_name()?.to_string_lossy().into_owned();
    Some(lpo_track::mlflow::Target {
        uri: args.mlflow.clone().or(tracking.mlflow)?,
        experiment: tracking.experiment.unwrap_or(name),
    })
}

/// Uploads the report's files; a server that fails is a warning (the files
/// are written).
fn log_to_mlflow(target: &lpo_track::mlflow::Target, collection: &Collection, files: &[PathBuf]) {
    let family = collection
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    match lpo_track::mlflow::upload_report(target, &family.unwrap_or_default(), files) {
        Ok(run) => println!(
            "logged the report to MLflow run {run} (experiment `{}` at {})",
            target.experiment, target.uri
        ),
        Err(e) => eprintln!(
            "warning: MLflow at {}: the report was not logged ({e:#}); its files are in {}",
            target.uri,
            collection.dir.display()
        ),
    }
}

/// The families `args.target` names: a recipe's, one results directory's,
/// or (no target) every family under `--results`; `None` when the recipe
/// has problems (printed).
fn families(args: &ReportArgs) -> Result<Option<Vec<Family>>> {
    Ok(Some(match &args.target {
        Some(path) if path.is_file() => match from_recipe(args, path)? {
            Some(f) => vec![f],
            None => return Ok(None),
        },
        Some(path) if path.is_dir() => vec![from_dir(path)?],
        Some(path) => bail!(
            "{} is neither a recipe file nor a results directory",
            path.display()
        ),
        None => every_family(&args.results.dir)?,
    }))
}

/// Every family under the results root `results`: its directories with a
/// plan.json, sorted.
fn every_family(results: &Path) -> Result<Vec<Family>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .with_context(|| format!("reading {}", results.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join("plan.json").exists())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "no sweep results under {} (run `lpo sweep RECIPE` first)",
            results.display()
        );
    }
    dirs.iter().map(|d| from_dir(d)).collect()
}

/// The `--compare A,B` pairs, labels trimmed.
fn compare_pairs(pairs: &[String]) -> Result<Vec<(String, String)>> {
    let mut compare = Vec::new();
    for pair in pairs {
        match pair.split_once(',') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                compare.push((a.trim().to_string(), b.trim().to_string()));
            }
            _ => bail!("--compare {pair}: expected two method labels, `A,B`"),
        }
    }
    Ok(compare)
}

/// The report options of `family`: the baseline is `--baseline`, else the
/// recipe's, else the first run's eval.baseline, else the reference; the
/// tables are the recipe's, else the first run's.
fn options_for(
    args: &ReportArgs,
    family: Family,
    collection: &Collection,
    compare: &[(String, String)],
) -> Options {
    let first = collection.runs.first();
    let baseline = args
        .baseline
        .clone()
        .or(family.baseline)
        .or_else(|| first.map(|r| r.recipe.eval.baseline.clone()))
        .unwrap_or_else(|| "reference".into());
    let specs = if family.specs.is_empty() {
        first
            .map(|r| r.recipe.report.tables.clone())
            .unwrap_or_default()
    } else {
        family.specs
    };
    // The recipe's [report], else the first run's.
    let report = family
        .report
        .or_else(|| first.map(|r| r.recipe.report.clone()))
        .unwrap_or_default();
    Options {
        baseline,
        format: match args.format {
            FormatArg::Md => Format::Markdown,
            FormatArg::Latex => Format::Latex,
            FormatArg::Csv => Format::Csv,
        },
        specs,
        compare: compare.to_vec(),
        select_by: args
            .select_by
            .map(|SelectArg::Validation| SelectBy::Validation),
        adjustment: match args.adjust {
            AdjustArg::Holm => Adjustment::Holm,
            AdjustArg::Bh => Adjustment::BenjaminiHochberg,
        },
        family: report.family,
        equivalence_margin: args.equivalence_margin.or(report.equivalence_margin),
        power: args.power,
        effect: args.effect,
    }
}

/// Prints the report to stdout; selections, runs left out, unpaired runs,
/// the files written and the report page to stderr.
fn print_written(written: &Written) {
    print!("{}", written.text);
    for s in &written.report.selections {
        eprintln!(
            "selected on validation: {} -> {} ({} {:.4})",
            s.label, s.candidates[0].0, s.metric, s.candidates[0].1
        );
    }
    for a in &written.absent {
        eprintln!(
            "not in the report: {} ({}) {}{}",
            a.id,
            a.label,
            a.state,
            a.detail
                .as_ref()
                .map_or(String::new(), |d| format!(": {d}"))
        );
    }
    for (id, why) in &written.unpaired {
        eprintln!("not compared: {id}: {why}");
    }
    eprintln!(
        "wrote {}",
        written
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for path in &written.removed {
        eprintln!(
            "removed {}: an earlier report's, and this report has no such table",
            path.display()
        );
    }
    if let Some(page) = written.files.iter().find(|f| f.ends_with("report.html")) {
        eprintln!("open in a browser: {}", page.display());
    }
}
