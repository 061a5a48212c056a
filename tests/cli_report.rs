//! End-to-end: `lpo report` on a real (small) 2-seed x 2-method sweep.
//! The acceptance test recomputes every interval and p-value of the report
//! from the runs' eval.csv and heldout.csv with an independent
//! implementation written here (SplitMix64 and the documented hierarchical
//! bootstrap, closed-form t with 1 degree of freedom, binomial sums for the
//! sign test, Wilson, Holm). Also: LaTeX, head-to-heads, paper tables,
//! plots, partial sweeps, a recipe whose data are only a JSONL file, and
//! report.html rendered by headless Chromium.
#![allow(clippy::too_many_lines)]

mod chromium;
mod common;
use common::{lpo, scratch, text};

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
train_prompts = 40
eval_fraction = 0.3
mix = [{ task = "arith" }, { task = "rating" }]
[train]
steps = 4
batch_size = 4
learning_rate = 1e-3
checkpoint_every = 0
[eval]
prompts = 48
samples = 3
every = 2
max_new_tokens = 5
[sweep]
grid = { "loss.kind" = ["lpo", "dpo"] }
seeds = [0, 1]
[[report.tables]]
name = "rep-main"
metric = "win-rate"
caption = "LPO and DPO against the reference"
"#;

/// One sweep shared by the tests of this file (built once), and a lock its
/// holder keeps while it reports on it: a report rewrites the family's
/// report files and removes the optional tables it does not have, so two at
/// once would read each other's.
fn swept() -> (std::sync::MutexGuard<'static, ()>, &'static PathBuf) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static REPORTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let lock = REPORTING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = DIR.get_or_init(|| {
        let dir = scratch("report-sweep");
        std::fs::write(dir.join("r.toml"), RECIPE).unwrap();
        let out = lpo(&dir, &["sweep", "r.toml", "--jobs", "2"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        dir
    });
    (lock, dir)
}

type CsvRow = BTreeMap<String, String>;

fn csv_rows(data: &str) -> Vec<CsvRow> {
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

fn num(row: &CsvRow, key: &str) -> f64 {
    let v = &row[key];
    if v.starts_with('<') {
        0.0 // "< 1e-300"
    } else {
        v.parse()
            .unwrap_or_else(|_| panic!("{key} = {v:?} in {row:?}"))
    }
}

/// A run: its seed, label and directory.
struct Run {
    seed: u64,
    label: String,
    dir: PathBuf,
}

fn runs(family: &Path) -> Vec<Run> {
    let mut out: Vec<Run> = std::fs::read_dir(family)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("summary.json").exists())
        .map(|dir| {
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
            Run {
                seed: s["seed"].as_u64().unwrap(),
                label: s["label"].as_str().unwrap().to_string(),
                dir,
            }
        })
        .collect();
    out.sort_by_key(|r| r.seed);
    out
}

/// Test-split eval.csv rows of a label's runs for one task, per seed in
/// ascending seed order, in file order.
fn test_rows(family: &Path, label: &str, task: &str) -> Vec<Vec<CsvRow>> {
    runs(family)
        .iter()
        .filter(|r| r.label == label)
        .map(|r| {
            csv_rows(&std::fs::read_to_string(r.dir.join("eval.csv")).unwrap())
                .into_iter()
                .filter(|e| e["split"] == "test" && e["task"] == task)
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

// ---- An independent implementation of the documented statistics. ----

/// SplitMix64, as docs/results.md writes it.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn idx(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

/// Hierarchical percentile bootstrap of sum(num) / sum(den): 10,000
/// resamples, seed 0, seeds then items within seed.
fn bootstrap(groups: &[Vec<(f64, f64)>]) -> Option<(f64, f64)> {
    let mut rng = Mix(0);
    let s = groups.len();
    let mut stats = Vec::new();
    for _ in 0..10_000 {
        let (mut a, mut b) = (0.0, 0.0);
        for _ in 0..s {
            let g = &groups[rng.idx(s)];
            for _ in 0..g.len() {
                let (x, y) = g[rng.idx(g.len())];
                a += x;
                b += y;
            }
        }
        if b != 0.0 {
            stats.push(a / b);
        }
    }
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let q = |p: f64| {
        let pos = p * (stats.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        stats[lo] + (stats[hi] - stats[lo]) * (pos - lo as f64)
    };
    Some((q(0.025), q(0.975)))
}

fn mean_groups(values: &[Vec<f64>]) -> Vec<Vec<(f64, f64)>> {
    values
        .iter()
        .map(|g| g.iter().map(|&v| (v, 1.0)).collect())
        .collect()
}

/// Two-seed paired t-test: df = 1, T is Cauchy, so
/// P(|T| > t) = 1 - 2 atan(|t|) / pi and t_0.975 = tan(0.475 pi).
fn t_test_two_seeds(d: &[f64]) -> (f64, (f64, f64)) {
    assert_eq!(d.len(), 2);
    let m = (d[0] + d[1]) / 2.0;
    let sd = ((d[0] - m).powi(2) + (d[1] - m).powi(2)).sqrt();
    let se = sd / 2f64.sqrt();
    let half = (0.475 * std::f64::consts::PI).tan() * se;
    let p = if se == 0.0 {
        if m == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - 2.0 * (m / se).abs().atan() / std::f64::consts::PI
    };
    (p, (m - half, m + half))
}

fn binomial(n: u64, k: u64) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Exact two-sided sign test by binomial sums.
fn sign_p(w: u64, l: u64) -> f64 {
    let n = w + l;
    let tail: f64 = (0..=w.min(l)).map(|i| binomial(n, i)).sum::<f64>() / 2f64.powi(n as i32);
    (2.0 * tail).min(1.0)
}

fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.959963984540054;
    let p = k / n;
    let c = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let h = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((c - h).max(0.0), (c + h).min(1.0))
}

fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].partial_cmp(&p[b]).unwrap());
    let mut out = vec![0.0; m];
    let mut run: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        run = run.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = run;
    }
    out
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: report {a} vs recomputed {b}"
    );
}

fn f(row: &CsvRow, key: &str) -> f64 {
    num(row, key)
}

/// Checks one CSV row of paired per-prompt values (`a` policy, `b`
/// baseline, per seed) against the independent recomputation.
fn check_paired_row(row: &CsvRow, a: &[Vec<(f64, f64)>], b: &[Vec<(f64, f64)>], what: &str) {
    // a, b: per seed, per prompt (reward, pass).
    let seeds = a.len();
    assert_eq!(f(row, "seeds") as usize, seeds, "{what}");
    let diffs: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(ga, gb)| ga.iter().zip(gb).map(|(x, y)| x.0 - y.0).collect())
        .collect();
    let n: usize = diffs.iter().map(Vec::len).sum();
    assert_eq!(f(row, "prompts") as usize, n, "{what}");
    let all: Vec<f64> = diffs.iter().flatten().copied().collect();
    close(
        f(row, "reward_diff"),
        all.iter().sum::<f64>() / n as f64,
        1e-12,
        what,
    );
    let (lo, hi) = bootstrap(&mean_groups(&diffs)).unwrap();
    close(f(row, "reward_diff_lo"), lo, 1e-12, what);
    close(f(row, "reward_diff_hi"), hi, 1e-12, what);
    let pass: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(ga, gb)| ga.iter().zip(gb).map(|(x, y)| x.1 - y.1).collect())
        .collect();
    let (lo, hi) = bootstrap(&mean_groups(&pass)).unwrap();
    close(f(row, "pass_diff_lo"), lo, 1e-12, what);
    close(f(row, "pass_diff_hi"), hi, 1e-12, what);
    let (mut w, mut t, mut l) = (0, 0, 0);
    let wl: Vec<Vec<(f64, f64)>> = diffs
        .iter()
        .map(|g| {
            g.iter()
                .map(|&d| {
                    if d > 0.0 {
                        w += 1;
                        (1.0, 1.0)
                    } else if d < 0.0 {
                        l += 1;
                        (0.0, 1.0)
                    } else {
                        t += 1;
                        (0.0, 0.0)
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(
        (f(row, "wins"), f(row, "ties"), f(row, "losses")),
        (w as f64, t as f64, l as f64),
        "{what}"
    );
    if w + l > 0 {
        close(f(row, "win_rate"), w as f64 / (w + l) as f64, 1e-12, what);
    }
    if seeds >= 2 {
        // Seed-aware: bootstrap win-rate interval, t-test across seeds.
        if let Some((lo, hi)) = bootstrap(&wl) {
            close(f(row, "win_rate_lo"), lo, 1e-12, what);
            close(f(row, "win_rate_hi"), hi, 1e-12, what);
        }
        assert_eq!(row["test"], "t-across-seeds", "{what}");
        let per_seed: Vec<f64> = diffs
            .iter()
            .map(|g| g.iter().sum::<f64>() / g.len() as f64)
            .collect();
        let (p, (lo, hi)) = t_test_two_seeds(&per_seed);
        close(f(row, "p_value"), p, 1e-9, what);
        close(f(row, "test_lo"), lo, 1e-6, what);
        close(f(row, "test_hi"), hi, 1e-6, what);
        // The t interval excludes 0 exactly when p < 0.05, and the
        // interval the table prints exactly when the p it prints is.
        assert_eq!(lo > 0.0 || hi < 0.0, p < 0.05, "{what}");
        let (clo, chi) = (f(row, "ci_lo"), f(row, "ci_hi"));
        assert_eq!(clo > 0.0 || chi < 0.0, f(row, "p_shown") < 0.05, "{what}");
        assert!(
            clo <= lo + 1e-12 && chi >= hi - 1e-12,
            "{what}: 95% or wider"
        );
    } else {
        assert_eq!(row["test"], "sign", "{what}");
        let p = sign_p(w, l);
        close(f(row, "p_value"), p, 1e-9, what);
        if w + l > 0 {
            let (lo, hi) = wilson(w as f64, (w + l) as f64);
            close(f(row, "test_lo"), lo, 1e-9, what);
            close(f(row, "test_hi"), hi, 1e-9, what);
            // The win rate's Wilson interval is at the level of the p shown
            // (95% or wider), and excludes 1/2 exactly when it is < 0.05.
            let (wlo, whi) = (f(row, "win_rate_lo"), f(row, "win_rate_hi"));
            assert!(wlo <= lo + 1e-12 && whi >= hi - 1e-12, "{what}");
            if f(row, "win_rate_level") == 0.95 {
                close(wlo, lo, 1e-9, what);
                close(whi, hi, 1e-9, what);
            }
            assert_eq!(wlo > 0.5 || whi < 0.5, f(row, "p_shown") < 0.05, "{what}");
        }
    }
}

/// (reward, pass) of a column pair of eval.csv rows.
fn values(rows: &[Vec<CsvRow>], who: &str) -> Vec<Vec<(f64, f64)>> {
    rows.iter()
        .map(|g| {
            g.iter()
                .map(|r| {
                    (
                        r[&format!("{who}_reward")].parse().unwrap(),
                        r[&format!("{who}_pass")].parse().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn intervals_and_p_values_agree_with_an_independent_recomputation() {
    let (_reporting, dir) = swept();
    let out = lpo(
        dir,
        &[
            "report",
            "r.toml",
            "--format",
            "csv",
            "--compare",
            "lpo,dpo",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let family = dir.join("results/rep");
    let rows = csv_rows(&text(&out.stdout));
    assert_eq!(rows.len(), 4, "2 methods x 2 tasks");
    let mut raw = Vec::new();
    let mut adjusted = Vec::new();
    for row in &rows {
        let (task, method) = (&row["task"], &row["method"]);
        let groups = test_rows(&family, method, task);
        assert_eq!(groups.len(), 2, "two seeds");
        for g in &groups {
            for r in g {
                // Prompt ids carry the seed, so no two seeds share one.
                assert!(r["prompt_id"].contains("-s"), "{r:?}");
            }
        }
        let what = format!("{task} {method}");
        check_paired_row(
            row,
            &values(&groups, "policy"),
            &values(&groups, "baseline"),
            &what,
        );
        // Pass rate and KL of the policy.
        let pass: Vec<Vec<f64>> = values(&groups, "policy")
            .iter()
            .map(|g| g.iter().map(|v| v.1).collect())
            .collect();
        let (lo, hi) = bootstrap(&mean_groups(&pass)).unwrap();
        close(f(row, "pass_rate_lo"), lo, 1e-12, &what);
        close(f(row, "pass_rate_hi"), hi, 1e-12, &what);
        let kl: Vec<f64> = groups
            .iter()
            .flatten()
            .map(|r| r["policy_kl"].parse::<f64>().unwrap())
            .collect();
        close(
            f(row, "kl"),
            kl.iter().sum::<f64>() / kl.len() as f64,
            1e-12,
            &what,
        );
        raw.push(f(row, "p_value"));
        adjusted.push(f(row, "p_adjusted"));
    }
    // Head-to-head lpo - dpo, prompt by prompt within seed.
    let compare = csv_rows(&std::fs::read_to_string(family.join("report-compare.csv")).unwrap());
    let generation: Vec<&CsvRow> = compare
        .iter()
        .filter(|r| r["kind"] == "generation")
        .collect();
    assert_eq!(generation.len(), 2);
    for row in generation {
        let task = &row["task"];
        let a = test_rows(&family, "lpo", task);
        let b = test_rows(&family, "dpo", task);
        // Pair B's rows to A's by prompt id, within the seed.
        let b_aligned: Vec<Vec<CsvRow>> = a
            .iter()
            .zip(&b)
            .map(|(ga, gb)| {
                ga.iter()
                    .map(|ra| {
                        gb.iter()
                            .find(|rb| rb["prompt_id"] == ra["prompt_id"])
                            .expect("same prompts")
                            .clone()
                    })
                    .collect()
            })
            .collect();
        check_paired_row(
            row,
            &values(&a, "policy"),
            &values(&b_aligned, "policy"),
            &format!("lpo - dpo on {task}"),
        );
        raw.push(f(row, "p_value"));
        adjusted.push(f(row, "p_adjusted"));
    }
    // Ranking-accuracy difference on the same held-out test lists.
    for row in compare.iter().filter(|r| r["kind"] == "ranking-accuracy") {
        let source = &row["task"];
        let lists = |label: &str| -> Vec<Vec<CsvRow>> {
            runs(&family)
                .iter()
                .filter(|r| r.label == label)
                .map(|r| {
                    csv_rows(&std::fs::read_to_string(r.dir.join("heldout.csv")).unwrap())
                        .into_iter()
                        .filter(|h| h["split"] == "test" && &h["source"] == source)
                        .collect()
                })
                .collect()
        };
        let (a, b) = (lists("lpo"), lists("dpo"));
        let per_seed: Vec<Vec<(f64, f64)>> = a
            .iter()
            .zip(&b)
            .map(|(ga, gb)| {
                ga.iter()
                    .map(|ha| {
                        let hb = gb.iter().find(|h| h["list_id"] == ha["list_id"]).unwrap();
                        let c = |h: &CsvRow, k: &str| h[k].parse::<f64>().unwrap();
                        (c(ha, "correct") - c(hb, "correct"), c(ha, "pairs"))
                    })
                    .collect()
            })
            .collect();
        let (num_, den): (f64, f64) = per_seed
            .iter()
            .flatten()
            .fold((0.0, 0.0), |s, x| (s.0 + x.0, s.1 + x.1));
        let what = format!("ranking accuracy lpo - dpo on {source}");
        close(f(row, "reward_diff"), num_ / den, 1e-12, &what);
        if let Some((lo, hi)) = bootstrap(&per_seed) {
            close(f(row, "reward_diff_lo"), lo, 1e-12, &what);
            close(f(row, "reward_diff_hi"), hi, 1e-12, &what);
        }
        let d: Vec<f64> = per_seed
            .iter()
            .map(|s| {
                let p: f64 = s.iter().map(|x| x.1).sum();
                if p > 0.0 {
                    s.iter().map(|x| x.0).sum::<f64>() / p
                } else {
                    0.0
                }
            })
            .collect();
        close(f(row, "p_value"), t_test_two_seeds(&d).0, 1e-9, &what);
        raw.push(f(row, "p_value"));
        adjusted.push(f(row, "p_adjusted"));
    }
    // Holm over the whole report's family: main table and head-to-head.
    for (a, e) in adjusted.iter().zip(holm(&raw)) {
        close(*a, e, 1e-12, "Holm");
    }
    for row in rows.iter().chain(compare.iter()) {
        assert_eq!(num(row, "family") as usize, raw.len());
        assert_eq!(row["adjustment"], "Holm");
    }
}

#[test]
fn one_seed_rows_use_the_sign_test_with_the_wilson_interval() {
    let (_reporting, dir) = swept();
    // A family directory holding only the seed-0 runs.
    let copy = scratch("report-one-seed");
    let family = copy.join("results/rep1");
    for run in runs(&dir.join("results/rep"))
        .iter()
        .filter(|r| r.seed == 0)
    {
        let target = family.join(run.dir.file_name().unwrap());
        std::fs::create_dir_all(&target).unwrap();
        for f in ["summary.json", "eval.csv", "config.toml", "metrics.csv"] {
            std::fs::copy(run.dir.join(f), target.join(f)).unwrap();
        }
    }
    let out = lpo(&copy, &["report", "results/rep1", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = csv_rows(&text(&out.stdout));
    assert_eq!(rows.len(), 4);
    let mut raw = Vec::new();
    for row in &rows {
        let groups = test_rows(&family, &row["method"], &row["task"]);
        assert_eq!(groups.len(), 1);
        check_paired_row(
            row,
            &values(&groups, "policy"),
            &values(&groups, "baseline"),
            &format!("{} {} (1 seed)", row["task"], row["method"]),
        );
        raw.push(f(row, "p_value"));
    }
    for (row, e) in rows.iter().zip(holm(&raw)) {
        close(f(row, "p_adjusted"), e, 1e-12, "Holm");
    }
    let md = text(&lpo(&copy, &["report", "results/rep1"]).stdout);
    assert!(md.contains("| sign |"), "{md}");
    assert!(md.contains("exact two-sided sign test"), "{md}");
}

#[test]
fn markdown_table_per_task_with_baseline_row_and_footer() {
    let (_reporting, dir) = swept();
    let out = lpo(dir, &["report", "r.toml"]);
    let md = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let family = dir.join("results/rep");
    for task in ["arith", "rating"] {
        assert!(
            md.contains(&format!("## {task} (baseline: reference, test split)")),
            "{md}"
        );
    }
    for method in ["lpo", "dpo"] {
        let prompts: usize = ["arith", "rating"]
            .iter()
            .map(|t| {
                test_rows(&family, method, t)
                    .iter()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum();
        let cells: usize = md
            .lines()
            .filter(|l| l.starts_with(&format!("| {method} | 2 | ")))
            .map(|l| {
                l.split('|')
                    .nth(3)
                    .unwrap()
                    .trim()
                    .trim_end_matches(" †")
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(cells, prompts, "{md}");
    }
    assert!(md.contains("| reference (baseline) |"), "{md}");
    assert!(md.contains("## Held-out lists (test split)"), "{md}");
    assert!(
        md.contains("paired t-test across seeds")
            && md.contains("Holm–Bonferroni")
            && md.contains("over all 4 tests"),
        "{md}"
    );
    assert!(family.join("report.md").exists());
    // --adjust bh and --select-by validation (one configuration per method).
    let out = lpo(
        dir,
        &[
            "report",
            "r.toml",
            "--adjust",
            "bh",
            "--select-by",
            "validation",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Benjamini–Hochberg"));
}

#[test]
fn latex_is_a_well_formed_booktabs_document_body() {
    let (_reporting, dir) = swept();
    let out = lpo(dir, &["report", "r.toml", "--format", "latex"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tex = text(&out.stdout);
    // Two tasks and the held-out lists.
    assert_eq!(tex.matches("\\begin{table}").count(), 3);
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
    let (_reporting, dir) = swept();
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
    let family = dir.join("results/rep");
    for row in &rows {
        let n: usize = test_rows(&family, "lpo", &row["task"])
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(row["prompts"], n.to_string());
    }
}

#[test]
fn paper_tables_and_plots_are_written() {
    let (_reporting, dir) = swept();
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
    for plot in [
        "frontier",
        "likelihood",
        "margin",
        "ranking_accuracy",
        "loss",
        "batch_likelihood",
        "batch_ranking_accuracy",
        "win_rate",
    ] {
        let svg =
            std::fs::read_to_string(dir.join(format!("results/rep/plots/{plot}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot}.svg: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("polyline") || n.has_tag_name("rect")));
    }
    // The frontier: a dot per run (4) and the reference, with a legend.
    let svg = std::fs::read_to_string(dir.join("results/rep/plots/frontier.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let dots = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.children().any(|c| c.has_tag_name("title")))
        .count();
    assert_eq!(dots, 5);
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for label in ["lpo", "dpo", "reference"] {
        assert!(texts.contains(&label), "{texts:?}");
    }
}

#[test]
fn partial_sweeps_report_what_exists_and_list_the_rest() {
    let (_reporting, dir) = swept();
    // A copy of the results with one run removed, one marked failed and one
    // with an empty eval.csv.
    let copy = scratch("report-partial");
    std::fs::create_dir_all(copy.join("results/rep")).unwrap();
    std::fs::copy(dir.join("r.toml"), copy.join("r.toml")).unwrap();
    let mut all: Vec<PathBuf> = runs(&dir.join("results/rep"))
        .into_iter()
        .map(|r| r.dir)
        .collect();
    all.sort();
    for (i, run) in all.iter().enumerate().skip(1) {
        let target = copy.join("results/rep").join(run.file_name().unwrap());
        std::fs::create_dir_all(&target).unwrap();
        for f in [
            "summary.json",
            "eval.csv",
            "config.toml",
            "metrics.csv",
            "heldout.csv",
            "curves.csv",
        ] {
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
        if i == 2 {
            let eval = std::fs::read_to_string(target.join("eval.csv")).unwrap();
            let header = eval.lines().next().unwrap();
            std::fs::write(target.join("eval.csv"), format!("{header}\n")).unwrap();
        }
    }
    let out = lpo(&copy, &["report", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let missing = all[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stderr.contains(&format!("not in the report: {missing}")) && stderr.contains("missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed at step 2: loss is NaN at step 2"),
        "{stderr}"
    );
    let emptied = all[2].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stderr.contains(&format!("not compared: {emptied}"))
            && stderr.contains("eval.csv has no rows"),
        "{stderr}"
    );
    let md = text(&out.stdout);
    assert!(md.contains(&format!("not compared: run {emptied}")), "{md}");
    assert!(md.contains(&format!("no results: run {missing}")), "{md}");
    // A non-finite reward stops the report, naming the file and line.
    let target = copy.join("results/rep").join(all[3].file_name().unwrap());
    let eval = std::fs::read_to_string(target.join("eval.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(eval.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "policy_reward").unwrap();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers).unwrap();
    let mut line_of_second = 0;
    for (i, r) in reader.records().enumerate() {
        let r = r.unwrap();
        if i == 1 {
            line_of_second = r.position().unwrap().line();
        }
        let mut fields: Vec<String> = r.iter().map(String::from).collect();
        if i == 1 {
            fields[col] = "NaN".into();
        }
        writer.write_record(&fields).unwrap();
    }
    std::fs::write(target.join("eval.csv"), writer.into_inner().unwrap()).unwrap();
    let out = lpo(&copy, &["report", "r.toml"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "eval.csv line {line_of_second}: policy_reward is NaN"
        )),
        "{stderr}"
    );
}

#[test]
fn a_recipe_with_only_a_jsonl_file_reports_ranking_accuracy() {
    let dir = scratch("report-files");
    // Native reward lists: reversing a word is best, partial credit else.
    let mut lines = String::new();
    let words = [
        "abc", "bcd", "cde", "def", "efg", "fgh", "ghi", "hij", "ijk", "jkl", "klm", "lmn",
    ];
    for i in 0..60 {
        let w = words[i % words.len()];
        let rev: String = w.chars().rev().collect();
        let p = format!("{w}{}<", i % 10);
        lines.push_str(&format!(
            "{{\"prompt\": \"{p}\", \"responses\": [{{\"text\": \"{rev}\", \"reward\": 10}}, {{\"text\": \"{w}\", \"reward\": 3}}, {{\"text\": \"{}\", \"reward\": 6}}, {{\"text\": \"zz\", \"reward\": 0}}]}}\n",
            &rev[..2]
        ));
    }
    std::fs::write(dir.join("prefs.jsonl"), lines).unwrap();
    std::fs::write(
        dir.join("f.toml"),
        r#"
name = "files"
[reference]
sft_steps = 20
sft_batch_size = 8
[data]
list_size = 4
train_prompts = 36
eval_fraction = 0.3
mix = [{ path = "prefs.jsonl", format = "native" }]
[train]
steps = 3
batch_size = 4
learning_rate = 1e-3
checkpoint_every = 0
[eval]
every = 1
[sweep]
grid = { "loss.kind" = ["lpo", "dpo"] }
seeds = [0, 1]
"#,
    )
    .unwrap();
    let out = lpo(&dir, &["sweep", "f.toml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lpo(&dir, &["report", "f.toml", "--compare", "lpo,dpo"]);
    let (md, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not compared"), "{stderr}");
    assert!(md.contains("## Held-out lists (test split)"), "{md}");
    for method in ["lpo", "dpo"] {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {method} | ")) && l.contains("prefs.jsonl"))
            .unwrap_or_else(|| panic!("no {method} row: {md}"));
        // Ranking accuracy with its interval: `0.xxx [0.xxx, 0.xxx]`.
        let cell = row.split('|').nth(5).unwrap().trim();
        assert!(cell.contains(" [") && cell.ends_with(']'), "{row}");
    }
    assert!(md.contains("no generation table"), "{md}");
    assert!(md.contains("Head-to-head: lpo − dpo"), "{md}");
    assert!(dir.join("results/files/report-heldout.csv").exists());
    assert!(dir
        .join("results/files/plots/ranking_accuracy.svg")
        .exists());
    // A report without --compare leaves no earlier head-to-head beside it.
    let compare = dir.join("results/files/report-compare.csv");
    assert!(compare.exists());
    let out = lpo(&dir, &["report", "f.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!compare.exists(), "a stale report-compare.csv is left");
    assert!(
        text(&out.stderr).contains("removed "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let (_reporting, dir) = swept();
    let out = lpo(dir, &["report", "r.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = dir.join("results/rep/report.html");
    assert!(
        text(&out.stderr).contains(&format!(
            "open in a browser: {}",
            Path::new("results/rep/report.html").display()
        )),
        "{}",
        text(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["http://", "https://", "src=", "<script"] {
        assert!(!html.contains(external), "report.html has {external}");
    }
    chromium::ensure_installed();
    let work = scratch("report-chromium");
    let png = work.join("report.png");
    let shot = chromium::screenshot(&page, &png, 2000, &work.join("profile"));
    let log = text(&shot.stderr);
    assert!(
        shot.status.success(),
        "chromium failed ({}):\n{log}",
        shot.status
    );
    let errors = chromium::page_errors(&log);
    assert!(
        errors.is_empty(),
        "the page logged errors:\n{}",
        errors.join("\n")
    );
    let image = chromium::decode_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((image.width, image.height), (1280, 2000));
    let colours: std::collections::BTreeSet<[u8; 3]> = image.rgb.iter().copied().collect();
    let white = image.rgb.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(
        colours.len() > 50,
        "{} colours: a blank page?",
        colours.len()
    );
    assert!(
        white < image.rgb.len() * 95 / 100,
        "{white} of {} pixels are white",
        image.rgb.len()
    );
}

#[test]
fn equivalence_power_and_a_declared_family_from_the_command_line() {
    let (_lock, dir) = swept();
    let args = [
        "report",
        "r.toml",
        "--format",
        "csv",
        "--equivalence-margin",
        "0.15",
        "--effect",
        "0.1",
    ];
    let out = lpo(dir, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for row in csv_rows(&text(&out.stdout)) {
        // Two seeds: a TOST and a power reading on every row.
        assert_eq!(row["equivalence_margin"], "0.15");
        let p = f(&row, "tost_p");
        assert_eq!(row["equivalent"], (p < 0.05).to_string());
        if f(&row, "seed_sd") > 0.0 {
            assert!(f(&row, "detectable_diff") > 0.0 && f(&row, "seeds_needed") >= 2.0);
        } else {
            // No spread across seeds: nothing to size a design from.
            assert_eq!(
                (
                    row["detectable_diff"].as_str(),
                    row["seeds_needed"].as_str()
                ),
                ("", "")
            );
        }
        close(f(&row, "power_alpha"), 0.05 / 4.0, 1e-15, "alpha / m");
    }
    let md = text(&lpo(dir, &["report", "r.toml", "--power"]).stdout);
    assert!(md.contains("## Power (80%"), "{md}");
    // A declared family: LPO − DPO per task; the rest exploratory.
    let family_recipe = RECIPE.replace(
        "[[report.tables]]",
        "[report]\nfamily = [{ a = \"lpo\", b = \"dpo\" }]\n\n[[report.tables]]",
    );
    std::fs::write(dir.join("f.toml"), family_recipe).unwrap();
    let out = lpo(dir, &["report", "f.toml", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for row in csv_rows(&text(&out.stdout)) {
        assert_eq!(row["exploratory"], "true");
        assert_eq!(row["p_adjusted"], "");
        assert_eq!(row["p_shown"], row["p_value"]);
    }
    let compare = std::fs::read_to_string(dir.join("results/rep/report-compare.csv")).unwrap();
    let rows = csv_rows(&compare);
    let generation: Vec<&CsvRow> = rows.iter().filter(|r| r["kind"] == "generation").collect();
    assert_eq!(generation.len(), 2, "{compare}");
    let raw: Vec<f64> = generation.iter().map(|r| f(r, "p_value")).collect();
    for (row, e) in generation.iter().zip(holm(&raw)) {
        close(
            f(row, "p_adjusted"),
            e,
            1e-12,
            "Holm over the declared family",
        );
        assert_eq!(row["family"], "2");
    }
}

#[test]
fn a_declared_family_with_an_unknown_label_is_refused_at_plan_time() {
    let dir = scratch("report-family-typo");
    let recipe = RECIPE.replace(
        "[[report.tables]]",
        "[report]\nfamily = [{ a = \"lpx\", b = \"dpo\" }]\n\n[[report.tables]]",
    );
    std::fs::write(dir.join("r.toml"), recipe).unwrap();
    for command in ["plan", "report"] {
        let out = lpo(&dir, &[command, "r.toml"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("report.family[0].a")
                && err.contains("\"lpx\"")
                && err.contains("r.toml:"),
            "{command}: {err}"
        );
        assert!(err.contains("did you mean `lpo`?"), "{err}");
    }
}
