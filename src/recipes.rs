//! `lpo config` and `lpo plan`: resolve a recipe's layers and expand its sweep.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use lpo_recipe::{Diagnostics, Loaded, Overrides};

/// Arguments shared by every command that reads a recipe.
#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// The recipe file (TOML).
    pub recipe: PathBuf,
    /// Override a key: `--set train.steps=100` (value parsed as TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Byte-identical results on every x86-64 CPU at the same thread count,
    /// slower (`--set train.reproducible=true`; part of run ids).
    #[arg(long)]
    pub reproducible: bool,
}

impl RecipeArgs {
    /// Folds `--mlflow URI` into the overrides as `tracking.mlflow`, so it
    /// reaches every run (child processes and Slurm jobs get `--set`).
    pub fn set_mlflow(&mut self, uri: Option<String>) {
        if let Some(uri) = uri {
            self.sets.push(format!("tracking.mlflow={uri}"));
        }
    }

    /// The `--set` overrides, `--reproducible` among them.
    pub fn overrides(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if self.reproducible {
            sets.push("train.reproducible=true".into());
        }
        sets
    }

    /// Loads the recipe with `--set` and `LPO_…__…` layers.
    pub fn load(&self) -> Result<Loaded, Diagnostics> {
        lpo_recipe::load(&self.recipe, &Overrides::from_process(self.overrides()))
    }
}

/// Options of `lpo config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Say which layer (and file) set this key instead of printing the recipe.
    #[arg(long, value_name = "KEY")]
    pub explain: Vec<String>,
}

/// Output format of `lpo plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Aligned text table.
    Table,
    /// Every run's id and full resolved configuration.
    Json,
}

/// Options of `lpo plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PlanFormat,
    /// After the table, each run's estimated peak memory term by term, and
    /// whether it fits the memory available.
    #[arg(long)]
    pub memory: bool,
    /// Check runs on CUDA against a GPU of this many GB (10^9 bytes, as
    /// vendors state it: 80 for an H100, 141 for an H200) instead of this
    /// machine's.
    #[arg(long, value_name = "GB", value_parser = gpu_gigabytes)]
    pub gpu_memory: Option<u64>,
}

/// `--gpu-memory`: a positive number of GB, as bytes.
fn gpu_gigabytes(text: &str) -> Result<u64, String> {
    match text.trim().parse::<f64>() {
        Ok(gb) if gb.is_finite() && gb > 0.0 && gb < 1e6 => Ok((gb * 1e9) as u64),
        _ => Err(format!("`{text}` is not a positive number of GB")),
    }
}

/// `--results DIR`, the results root, declared once for every command that
/// takes it (as ripgrep defines each flag once).
#[derive(Debug, Clone, clap::Args)]
pub struct ResultsRoot {
    /// Results root: run directories, reports and the shared `_cache/`.
    #[arg(long = "results", value_name = "DIR", default_value = "results")]
    pub dir: std::path::PathBuf,
}

impl ResultsRoot {
    /// The layout of the results root.
    pub fn layout(&self) -> lpo_results::Layout {
        lpo_results::Layout::new(&self.dir)
    }
}

/// Recipe problems are reported together and exit with status 2.
pub struct RecipeError(pub Diagnostics);

/// Expands a recipe's sweep and checks what only the executor knows: that
/// the built-in tasks can supply each run's distinct prompts
/// ([`lpo_train::lists::prompt_shortfalls`]). Runs that draw the same
/// prompts are checked once. Problems are located where the recipe sets
/// the key they concern ([`Loaded::locate`]).
pub fn plan_recipe(loaded: &Loaded) -> Result<lpo_plan::Plan, Diagnostics> {
    let plan = lpo_plan::plan(&loaded.recipe).map_err(|d| loaded.locate(d))?;
    // `[report] family` names method labels: each must be one the plan has.
    let labels = plan.runs.iter().map(|r| r.recipe.method_label()).collect();
    let family = lpo_recipe::validate::family_label_problems(&loaded.recipe.report, &labels);
    if !family.is_empty() {
        return Err(loaded.locate(Diagnostics(family)));
    }
    // Once per distinct data draw: the scalars that shape it as a hash key,
    // the mix (nearly always one per plan) compared beside it.
    let mut checked: std::collections::HashMap<_, Vec<&[lpo_recipe::DataSource]>> =
        Default::default();
    let mut problems = Vec::new();
    for run in &plan.runs {
        let r = &run.recipe;
        let key = (
            r.train.seed,
            r.data.train_prompts,
            r.data.eval_fraction.to_bits(),
            r.eval.prompts,
        );
        let mixes = checked.entry(key).or_default();
        if mixes.contains(&r.data.mix.as_slice()) {
            continue;
        }
        mixes.push(&r.data.mix);
        problems.extend(
            lpo_train::lists::prompt_shortfalls(r)
                .into_iter()
                .map(|message| lpo_recipe::Diagnostic {
                    // Each message starts with the key it is about.
                    location: message.split('`').nth(1).unwrap_or_default().to_string(),
                    message: format!("{message} (run {}, {})", run.id, r.method_label()),
                    help: Some("lower it, or raise the task's share of data.mix".into()),
                }),
        );
    }
    match problems.is_empty() {
        true => Ok(plan),
        false => Err(loaded.locate(Diagnostics(problems))),
    }
}

/// Loads and plans a recipe; recipe problems are printed and give `None`
/// (the caller exits with status 2). Never touches the network.
pub fn plan_or_report(args: &RecipeArgs) -> Result<Option<lpo_plan::Plan>> {
    load_and_plan(args, |_| {})
}

/// The planned run at `--index`, or an error naming the plan's size.
pub fn planned_run(plan: &lpo_plan::Plan, index: usize) -> Result<&lpo_plan::PlannedRun> {
    plan.runs
        .get(index)
        .ok_or_else(|| anyhow::anyhow!("--index {index} but the plan has {} runs", plan.runs.len()))
}

/// [`plan_or_report`] for the commands that run: the Hugging Face Hub
/// names the recipe uses that the cache lacks are fetched first
/// ([`lpo_hf::hub::download`]; a failed fetch is printed, and planning then
/// reports the name as absent).
pub fn fetch_and_plan(args: &RecipeArgs) -> Result<Option<lpo_plan::Plan>> {
    load_and_plan(args, |loaded| {
        for (name, kind) in lpo_plan::hub_names(&loaded.recipe) {
            if let Err(e) = lpo_hf::hub::download(&name, kind) {
                eprintln!("error: {e:#}");
            }
        }
    })
}

/// Loads the recipe, runs `before` on it, then plans it; problems are
/// printed and give `None`.
fn load_and_plan(
    args: &RecipeArgs,
    before: impl FnOnce(&Loaded),
) -> Result<Option<lpo_plan::Plan>> {
    let planned = args.load().and_then(|loaded| {
        before(&loaded);
        plan_recipe(&loaded)
    });
    match planned {
        Ok(plan) => Ok(Some(plan)),
        Err(diagnostics) => {
            crate::print_diagnostics(&diagnostics);
            Ok(None)
        }
    }
}

/// `lpo config`: print the resolved recipe, or explain keys.
pub fn config(args: &ConfigArgs) -> Result<(), RecipeError> {
    let loaded = args.recipe.load().map_err(RecipeError)?;
    if args.explain.is_empty() {
        let text = toml::to_string_pretty(&loaded.recipe).expect("recipes serialize to TOML");
        print!("{text}");
        return Ok(());
    }
    for key in &args.explain {
        let e = loaded.explain(key).map_err(RecipeError)?;
        match e.file {
            Some(file) => println!(
                "{} = {}  (set by {} {})",
                e.key,
                e.value,
                e.layer,
                file.display()
            ),
            None => println!("{} = {}  (set by {})", e.key, e.value, e.layer),
        }
    }
    Ok(())
}

/// `lpo plan`: list every run of the sweep.
pub fn plan(args: &PlanArgs) -> Result<(), RecipeError> {
    let loaded = args.recipe.load().map_err(RecipeError)?;
    let plan = plan_recipe(&loaded).map_err(RecipeError)?;
    // The process ends after printing: freeing a large plan's recipes one
    // by one would only delay the exit.
    let plan = std::mem::ManuallyDrop::new(plan);
    let mut memory = crate::memory::Estimates::new(&plan);
    if let Some(bytes) = args.gpu_memory {
        memory.set_cuda_limit(bytes);
    }
    match args.format {
        PlanFormat::Json => print_plan_json(&plan, &loaded.recipe.name, &memory),
        PlanFormat::Table => print_plan_table(&plan, &loaded.recipe.name, &memory),
    }
    if args.memory && args.format == PlanFormat::Table {
        for line in memory.terms(&plan) {
            println!("{line}");
        }
    }
    for line in memory.oversized(&plan) {
        eprintln!("warning: {line}; `lpo run` and `lpo sweep` refuse it");
    }
    note_identical(&plan);
    Ok(())
}

/// Notes on stderr, one per group of planned runs that compute the same
/// numbers under different ids ([`lpo_plan::identical`]): `lpo plan` and
/// `lpo sweep` print them; every run still runs.
/// Notes on stderr about runs that compute the same numbers, and about the
/// baseline run of a sweep (compared with the reference, not itself).
pub fn note_identical(plan: &lpo_plan::Plan) {
    for group in lpo_plan::identical::groups(plan) {
        eprintln!("note: {}", group.note(plan));
    }
    for run in lpo_plan::self_baselines(plan) {
        eprintln!(
            "note: run {} ({}) is the baseline the sweep's other runs compare with (eval.baseline = \"{}\"); it is itself compared with the reference",
            run.id,
            run.recipe.method_label(),
            run.recipe.eval.baseline
        );
    }
}

fn print_plan_json(plan: &lpo_plan::Plan, name: &str, memory: &crate::memory::Estimates) {
    let runs: Vec<_> = plan
        .runs
        .iter()
        .map(|run| {
            serde_json::json!({
                "index": run.index,
                "id": run.id,
                "label": run.recipe.method_label(),
                "swept": run.assignments.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
                "parameters": run.recipe.model.dims().parameter_count(),
                "memory": memory.json(run.index),
                "config": run.recipe,
            })
        })
        .collect();
    let out = serde_json::json!({ "recipe": name, "runs": runs, "excluded": plan.excluded, "duplicates": plan.duplicates });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("plans serialize")
    );
}

fn print_plan_table(plan: &lpo_plan::Plan, name: &str, memory: &crate::memory::Estimates) {
    // `label` already has its own column.
    let axes: Vec<&String> = plan.axes.iter().filter(|a| a.as_str() != "label").collect();
    let mut header = vec!["#".to_string(), "id".into(), "label".into()];
    header.extend(axes.iter().map(|a| a.to_string()));
    header.push("params".into());
    header.push("memory".into());
    let rows: Vec<Vec<String>> = plan
        .runs
        .iter()
        .map(|run| {
            let mut row = vec![
                run.index.to_string(),
                run.id.clone(),
                run.recipe.method_label(),
            ];
            for axis in &axes {
                let value = run
                    .assignments
                    .iter()
                    .find(|(k, _)| k == *axis)
                    .map(|(_, v)| short(v))
                    .unwrap_or_default();
                row.push(value);
            }
            row.push(crate::memory::human_count(
                run.recipe.model.dims().parameter_count(),
            ));
            row.push(memory.cell(run.index));
            row
        })
        .collect();
    print_table(&header, &rows);
    let mut summary = format!("{} runs in recipe `{name}`", plan.runs.len());
    if plan.excluded > 0 {
        summary.push_str(&format!("; {} excluded", plan.excluded));
    }
    if plan.duplicates > 0 {
        summary.push_str(&format!(
            "; {} duplicate combinations merged (the loss ignores the swept key)",
            plan.duplicates
        ));
    }
    println!("{summary}");
}

/// A swept value as a table cell: strings bare, scalars as TOML writes them
/// (formatted directly: the TOML writer costs microseconds per call, seconds
/// over a 100,000-run plan).
fn short(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Float(f) if f.is_finite() => {
            let text = f.to_string();
            match text.contains(['.', 'e']) {
                true => text,
                false => text + ".0",
            }
        }
        other => other.to_string(),
    }
}

/// Prints left-aligned columns separated by two spaces.
pub fn print_table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // One buffered writer: stdout flushes every line otherwise, a system
    // call per row of a 100,000-run plan.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut text = String::new();
    let mut line = |cells: &[String]| -> std::io::Result<()> {
        text.clear();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        writeln!(out, "{}", text.trim_end())
    };
    let written = std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .try_for_each(&mut line)
        .and_then(|()| out.flush());
    // A closed pipe (`lpo plan | head`) just ends the listing.
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the table: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::short;
    use toml::Value;

    #[test]
    fn table_cells_write_scalars_as_toml_does() {
        let floats = [
            0.05, 1e-5, 3e-4, 1.0, -2.0, 0.1, 1e20, 1e-7, 123.456, -0.0, 5e300, 2.5e-300,
        ];
        for f in floats {
            assert_eq!(short(&Value::Float(f)), Value::Float(f).to_string(), "{f}");
        }
        for v in [Value::Integer(-3), Value::Integer(0), Value::Boolean(true)] {
            assert_eq!(short(&v), v.to_string());
        }
        assert_eq!(short(&Value::String("lpo".into())), "lpo");
    }
}
