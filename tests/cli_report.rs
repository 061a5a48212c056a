//! End-to-end: `lpo report` on a real (small) sweep: Markdown, LaTeX, CSV,
//! agreement with eval.csv, head-to-head baselines, paper tables, plots and
//! partial sweeps.

mod common;
use common::{lpo, text};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const RECIPE: &str = r#"
name = "rep"
[reference]
sft_steps = 40
sft_batch_size = 16
[data]
list_size = 3
train_prompts = 32
mix = [{ task = "arith" }, { task = "rating" }]
[train]
steps = 4
batch_size = 4
learning_rate = 1e-3
checkpoint_every = 0
[eval]
prompts = 40
max_new_tokens = 5
[sweep]
grid = { "loss.kind" = ["lpo", "dpo"] }
seeds = [0, 1]
[[report.tables]]
name = "rep-main"
metric = "win-rate"
caption = "LPO and DPO against the reference"
"#;

/// One sweep shared by the tests of this file (built once).
fn swept() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-sweep");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.toml"), RECIPE).unwrap();
        let out = lpo(&dir, &["sweep", "r.toml", "--jobs", "2"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        dir
    })
}

fn csv_rows(data: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(data.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn markdown_table_per_task_with_baseline_row() {
    let dir = swept();
    let out = lpo(dir, &["report", "r.toml"]);
    let md = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // 40 held-out prompts per seed, split between the tasks by weight.
    let mut pairs = 0;
    for task in ["arith", "rating"] {
        let head = format!("## {task} (baseline: reference, ");
        let at = md
            .find(&head)
            .unwrap_or_else(|| panic!("no {task} table: {md}"));
        let n: u32 = md[at + head.len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        pairs += n;
    }
    assert_eq!(pairs, 80, "{md}");
    assert!(
        md.contains("| lpo | 2 |") && md.contains("| dpo | 2 |"),
        "{md}"
    );
    assert!(md.contains("| reference (baseline) |"), "{md}");
    assert!(dir.join("results/rep/report.md").exists());
}

#[test]
fn csv_has_one_row_per_method_and_task_and_agrees_with_eval_csv() {
    let dir = swept();
    let out = lpo(dir, &["report", "r.toml", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = csv_rows(&text(&out.stdout));
    assert_eq!(rows.len(), 4, "2 methods x 2 tasks");
    // Recompute from the runs' eval.csv files.
    let results = dir.join("results/rep");
    let mut tallies: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
    for entry in std::fs::read_dir(&results).unwrap() {
        let run = entry.unwrap().path();
        if !run.join("eval.csv").exists() {
            continue;
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        let label = summary["label"].as_str().unwrap().to_string();
        for r in csv_rows(&std::fs::read_to_string(run.join("eval.csv")).unwrap()) {
            let t = tallies
                .entry((r["task"].clone(), label.clone()))
                .or_default();
            let (m, b): (f64, f64) = (
                r["policy_reward"].parse().unwrap(),
                r["baseline_reward"].parse().unwrap(),
            );
            // The outcome column agrees with the rewards.
            let expected = if m > b {
                "win"
            } else if m < b {
                "loss"
            } else {
                "tie"
            };
            assert_eq!(r["outcome"], expected);
            match expected {
                "win" => t.0 += 1,
                "tie" => t.1 += 1,
                _ => t.2 += 1,
            }
        }
    }
    for row in &rows {
        let (w, t, l) = tallies[&(row["task"].clone(), row["method"].clone())];
        assert_eq!(row["wins"], w.to_string());
        assert_eq!(row["ties"], t.to_string());
        assert_eq!(row["losses"], l.to_string());
        let rate: f64 = row["win_rate"].parse().unwrap();
        assert!((rate - (w as f64 + 0.5 * t as f64) / (w + t + l) as f64).abs() < 1e-12);
        // Exact two-sided sign test, recomputed independently.
        let n = w + l;
        let k = w.min(l);
        let tail: f64 = (0..=k).map(|i| binomial(n, i)).sum::<f64>() / 2f64.powi(n as i32);
        let p: f64 = row["p_value"].parse().unwrap();
        assert!(
            (p - (2.0 * tail).min(1.0)).abs() < 1e-9,
            "{p} vs {}",
            2.0 * tail
        );
    }
}

fn binomial(n: u64, k: u64) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

#[test]
fn latex_is_a_well_formed_booktabs_document_body() {
    let dir = swept();
    let out = lpo(dir, &["report", "r.toml", "--format", "latex"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tex = text(&out.stdout);
    assert_eq!(tex.matches("\\begin{table}").count(), 2);
    assert_eq!(
        tex.matches("\\begin{tabular}").count(),
        tex.matches("\\end{tabular}").count()
    );
    for rule in ["\\toprule", "\\midrule", "\\bottomrule"] {
        assert!(tex.contains(rule), "{rule}");
    }
    // Every row of a tabular has as many cells as the column spec.
    for table in tex.split("\\begin{tabular}{").skip(1) {
        let spec: String = table.chars().take_while(|&c| c != '}').collect();
        let body = table
            .split("\\toprule")
            .nth(1)
            .unwrap()
            .split("\\bottomrule")
            .next()
            .unwrap();
        for line in body.lines().filter(|l| l.ends_with("\\\\")) {
            let cells = line.replace("\\&", "").matches('&').count() + 1;
            assert_eq!(cells, spec.len(), "{line}");
        }
    }
    let braces = tex.matches('{').count() as i64 - tex.matches('}').count() as i64;
    assert_eq!(braces, 0);
    // Compile it when pdflatex is installed.
    if Command::new("pdflatex").arg("--version").output().is_ok() {
        let doc = format!("\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n{tex}\\end{{document}}\n");
        let work = dir.join("latex");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("r.tex"), doc).unwrap();
        let status = Command::new("pdflatex")
            .args(["-interaction=nonstopmode", "-halt-on-error", "r.tex"])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", text(&status.stdout));
    }
}

#[test]
fn head_to_head_against_dpo_pairs_the_same_prompts() {
    let dir = swept();
    let out = lpo(
        dir,
        &["report", "r.toml", "--baseline", "dpo", "--format", "csv"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = csv_rows(&text(&out.stdout));
    assert_eq!(rows.len(), 2, "lpo vs dpo on two tasks");
    assert!(rows
        .iter()
        .all(|r| r["method"] == "lpo" && r["baseline"] == "dpo"));
    let pairs: u32 = rows
        .iter()
        .map(|r| r["prompts"].parse::<u32>().unwrap())
        .sum();
    assert_eq!(pairs, 80);
}

#[test]
fn paper_tables_and_plots_are_written() {
    let dir = swept();
    let out = lpo(dir, &["report", "r.toml"]);
    assert!(out.status.success());
    let tables = dir.join("results/tables");
    let md = std::fs::read_to_string(tables.join("rep-main.md")).unwrap();
    assert!(md.starts_with("LPO and DPO against the reference"), "{md}");
    assert!(md.contains("| method | arith | rating |"), "{md}");
    assert!(std::fs::read_to_string(tables.join("rep-main.tex"))
        .unwrap()
        .contains("\\toprule"));
    assert_eq!(
        csv_rows(&std::fs::read_to_string(tables.join("rep-main.csv")).unwrap()).len(),
        2
    );
    for plot in ["loss", "likelihood", "ranking_accuracy", "win_rate"] {
        let svg =
            std::fs::read_to_string(dir.join(format!("results/rep/plots/{plot}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot}.svg: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("polyline") || n.has_tag_name("rect")));
    }
}

#[test]
fn partial_sweeps_report_what_exists_and_list_the_rest() {
    let dir = swept();
    // A copy of the results with one run removed and one marked failed.
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-partial");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(copy.join("results/rep")).unwrap();
    std::fs::copy(dir.join("r.toml"), copy.join("r.toml")).unwrap();
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir.join("results/rep")).unwrap() {
        let path = entry.unwrap().path();
        if path.join("summary.json").exists() {
            runs.push(path);
        }
    }
    runs.sort();
    for (i, run) in runs.iter().enumerate().skip(1) {
        let target = copy.join("results/rep").join(run.file_name().unwrap());
        std::fs::create_dir_all(&target).unwrap();
        for f in ["summary.json", "eval.csv", "config.toml", "metrics.csv"] {
            std::fs::copy(run.join(f), target.join(f)).unwrap();
        }
        if i == 1 {
            let mut s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(target.join("summary.json")).unwrap())
                    .unwrap();
            s["status"] = "failed".into();
            s["failed_step"] = 2.into();
            s["error"] = "loss is NaN at step 2".into();
            std::fs::write(target.join("summary.json"), s.to_string()).unwrap();
        }
    }
    let out = lpo(&copy, &["report", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let missing = runs[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stderr.contains(&format!("not in the report: {missing}")) && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed at step 2: loss is NaN at step 2"),
        "{stderr}"
    );
    let md = text(&out.stdout);
    assert!(md.contains("2 planned runs have no results"), "{md}");
}
