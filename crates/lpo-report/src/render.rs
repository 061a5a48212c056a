//! Tables as Markdown, LaTeX (booktabs) and CSV.

use anyhow::Result;
use lpo_recipe::{TableMetric, TableSpec};
use lpo_stats::stars;

use crate::compare::{Row, TaskTable};

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |a| format!("{:.1}%", 100.0 * a))
}

/// A p-value with three significant digits (scientific below 0.001).
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
}

fn signed(x: f64) -> String {
    format!("{x:+.2}")
}

fn seeds_cell(r: &Row) -> String {
    match r.seed_win_rate.interval {
        Some(_) => format!("{:.3} ± {:.3}", r.seed_win_rate.mean, r.seed_win_rate.sd),
        None => "-".into(),
    }
}

/// Markdown: one section per task.
pub fn markdown(name: &str, tables: &[TaskTable]) -> String {
    let mut out = format!("# {name}\n\n");
    for t in tables {
        let pairs: u64 = t.rows.first().map_or(0, |r| r.tally.n());
        out.push_str(&format!(
            "## {} (baseline: {}, {} paired prompts per method)\n\n",
            t.task, t.baseline, pairs
        ));
        out.push_str("| method | seeds | win rate [95% CI] | W / T / L | Δ reward [95% CI] | reward | accuracy | p (Holm) | win rate over seeds |\n");
        out.push_str("| --- | ---: | --- | --- | --- | ---: | ---: | --- | --- |\n");
        for r in &t.rows {
            out.push_str(&format!(
                "| {} | {} | {:.3} [{:.3}, {:.3}] | {} / {} / {} | {} [{}, {}] | {:.2} | {} | {} {} | {} |\n",
                r.method,
                r.seeds,
                r.win_rate,
                r.wilson.lo,
                r.wilson.hi,
                r.tally.wins,
                r.tally.ties,
                r.tally.losses,
                signed(r.reward_diff),
                signed(r.reward_diff_ci.lo),
                signed(r.reward_diff_ci.hi),
                r.reward,
                pct(r.accuracy),
                format_p(r.p_holm),
                stars(r.p_holm),
                seeds_cell(r),
            ));
        }
        out.push_str(&format!(
            "| {} (baseline) | | - | - | - | {:.2} | {} | - | - |\n\n",
            t.baseline,
            t.baseline_reward,
            pct(t.baseline_accuracy)
        ));
    }
    out.push_str(
        "Win rate counts ties as half; interval: Wilson 95%. p: exact two-sided sign test \
         (ties dropped), Holm-adjusted across the methods of a task; * p < 0.05, ** p < 0.01, \
         *** p < 0.001. Δ reward: mean paired difference with a 10,000-resample bootstrap 95% \
         interval. Win rate over seeds: mean ± sd of per-seed win rates.\n",
    );
    out
}

/// Escapes LaTeX special characters.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            _ => out.push(c),
        }
    }
    out
}

fn tex_stars(p: f64) -> String {
    let s = stars(p);
    if s.is_empty() {
        String::new()
    } else {
        format!("$^{{{s}}}$")
    }
}

/// LaTeX: one booktabs `table` per task (needs `\usepackage{booktabs}`).
pub fn latex(name: &str, tables: &[TaskTable]) -> String {
    let mut out = format!("% lpo report: {}\n", latex_escape(name));
    for t in tables {
        out.push_str("\\begin{table}[t]\n\\centering\n\\begin{tabular}{lrlrrr}\n\\toprule\n");
        out.push_str("Method & Seeds & Win rate [95\\% CI] & $\\Delta$ reward & Reward & Accuracy \\\\\n\\midrule\n");
        for r in &t.rows {
            out.push_str(&format!(
                "{} & {} & {:.3} [{:.3}, {:.3}]{} & {:+.2} & {:.2} & {} \\\\\n",
                latex_escape(&r.method),
                r.seeds,
                r.win_rate,
                r.wilson.lo,
                r.wilson.hi,
                tex_stars(r.p_holm),
                r.reward_diff,
                r.reward,
                latex_escape(&pct(r.accuracy)),
            ));
        }
        out.push_str(&format!(
            "\\midrule\n{} (baseline) & & -- & -- & {:.2} & {} \\\\\n\\bottomrule\n\\end{{tabular}}\n",
            latex_escape(&t.baseline),
            t.baseline_reward,
            latex_escape(&pct(t.baseline_accuracy))
        ));
        out.push_str(&format!(
            "\\caption{{{}: {} against {} (Wilson 95\\% intervals; Holm-adjusted sign test: $^{{*}}p<0.05$, $^{{**}}p<0.01$, $^{{***}}p<0.001$).}}\n\\end{{table}}\n\n",
            latex_escape(name),
            latex_escape(&t.task),
            latex_escape(&t.baseline)
        ));
    }
    out
}

/// CSV: one row per (method, task).
pub fn csv(tables: &[TaskTable]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "task",
        "method",
        "baseline",
        "seeds",
        "prompts",
        "wins",
        "ties",
        "losses",
        "win_rate",
        "win_rate_lo",
        "win_rate_hi",
        "p_value",
        "p_holm",
        "reward_diff",
        "reward_diff_lo",
        "reward_diff_hi",
        "reward",
        "baseline_reward",
        "accuracy",
        "baseline_accuracy",
        "seed_win_rate_mean",
        "seed_win_rate_sd",
        "seed_win_rate_lo",
        "seed_win_rate_hi",
    ])?;
    let opt = |x: Option<f64>| x.map_or_else(String::new, |v| v.to_string());
    for t in tables {
        for r in &t.rows {
            w.write_record([
                t.task.clone(),
                r.method.clone(),
                t.baseline.clone(),
                r.seeds.to_string(),
                r.tally.n().to_string(),
                r.tally.wins.to_string(),
                r.tally.ties.to_string(),
                r.tally.losses.to_string(),
                r.win_rate.to_string(),
                r.wilson.lo.to_string(),
                r.wilson.hi.to_string(),
                r.p.to_string(),
                r.p_holm.to_string(),
                r.reward_diff.to_string(),
                r.reward_diff_ci.lo.to_string(),
                r.reward_diff_ci.hi.to_string(),
                r.reward.to_string(),
                r.baseline_reward.to_string(),
                opt(r.accuracy),
                opt(r.baseline_accuracy),
                r.seed_win_rate.mean.to_string(),
                r.seed_win_rate.sd.to_string(),
                opt(r.seed_win_rate.interval.map(|i| i.lo)),
                opt(r.seed_win_rate.interval.map(|i| i.hi)),
            ])?;
        }
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}

/// A paper table: rows are methods, columns tasks; cells per `spec.metric`.
pub struct PaperTable {
    /// Markdown.
    pub markdown: String,
    /// LaTeX (booktabs).
    pub latex: String,
    /// CSV (method, then one column per task).
    pub csv: String,
}

fn cell(r: &Row, metric: TableMetric) -> (String, String, String) {
    match metric {
        TableMetric::WinRate => (
            format!(
                "{:.3} [{:.3}, {:.3}]{}",
                r.win_rate,
                r.wilson.lo,
                r.wilson.hi,
                stars(r.p_holm)
            ),
            format!(
                "{:.3} [{:.3}, {:.3}]{}",
                r.win_rate,
                r.wilson.lo,
                r.wilson.hi,
                tex_stars(r.p_holm)
            ),
            r.win_rate.to_string(),
        ),
        TableMetric::Reward => (
            format!("{:.2}", r.reward),
            format!("{:.2}", r.reward),
            r.reward.to_string(),
        ),
        TableMetric::Accuracy => (
            pct(r.accuracy),
            latex_escape(&pct(r.accuracy)),
            r.accuracy.map_or_else(String::new, |a| a.to_string()),
        ),
    }
}

/// Builds a paper table from per-task comparisons.
pub fn paper_table(spec: &TableSpec, tables: &[TaskTable]) -> Result<PaperTable> {
    let tasks: Vec<&str> = tables.iter().map(|t| t.task.as_str()).collect();
    let mut methods: Vec<String> = Vec::new();
    for t in tables {
        for r in &t.rows {
            if !methods.contains(&r.method) {
                methods.push(r.method.clone());
            }
        }
    }
    let metric_name = match spec.metric {
        TableMetric::WinRate => "win rate vs",
        TableMetric::Reward => "mean reward; baseline",
        TableMetric::Accuracy => "accuracy; baseline",
    };
    let caption = spec.caption.clone().unwrap_or_else(|| {
        format!(
            "{} ({metric_name} {})",
            spec.name,
            tables.first().map_or("-", |t| t.baseline.as_str())
        )
    });
    let mut md = format!(
        "{caption}\n\n| method | {} |\n| --- |{}\n",
        tasks.join(" | "),
        " --- |".repeat(tasks.len())
    );
    let mut tex = format!(
        "\\begin{{table}}[t]\n\\centering\n\\begin{{tabular}}{{l{}}}\n\\toprule\nMethod & {} \\\\\n\\midrule\n",
        "r".repeat(tasks.len()),
        tasks.iter().map(|t| latex_escape(t)).collect::<Vec<_>>().join(" & ")
    );
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["method".to_string()];
    header.extend(tasks.iter().map(|t| t.to_string()));
    w.write_record(&header)?;
    for m in &methods {
        let cells: Vec<(String, String, String)> = tables
            .iter()
            .map(|t| {
                t.rows
                    .iter()
                    .find(|r| &r.method == m)
                    .map_or(("-".into(), "--".into(), String::new()), |r| {
                        cell(r, spec.metric)
                    })
            })
            .collect();
        md.push_str(&format!(
            "| {m} | {} |\n",
            cells
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        tex.push_str(&format!(
            "{} & {} \\\\\n",
            latex_escape(m),
            cells
                .iter()
                .map(|c| c.1.as_str())
                .collect::<Vec<_>>()
                .join(" & ")
        ));
        let mut record = vec![m.clone()];
        record.extend(cells.into_iter().map(|c| c.2));
        w.write_record(&record)?;
    }
    tex.push_str(&format!(
        "\\bottomrule\n\\end{{tabular}}\n\\caption{{{}}}\n\\end{{table}}\n",
        latex_escape(&caption)
    ));
    Ok(PaperTable {
        markdown: md,
        latex: tex,
        csv: String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?,
    })
}
