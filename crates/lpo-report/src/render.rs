//! Tables as Markdown, LaTeX (booktabs) and CSV.

use anyhow::Result;
use lpo_recipe::{TableMetric, TableSpec};
use lpo_stats::{stars, Interval, P_FLOOR};

use crate::compare::{HeadToHead, HeldoutDiff, HeldoutRow, Row, TaskTable, Test, TestKind};
use crate::Report;

pub use lpo_stats::format_p;

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "-".into()
    }
}

fn pct_ci(x: f64, ci: Option<Interval>) -> String {
    match ci {
        Some(i) => format!("{} [{}, {}]", pct(x), pct(i.lo), pct(i.hi)),
        None => pct(x),
    }
}

fn signed(x: f64) -> String {
    if x.is_finite() {
        format!("{x:+.2}")
    } else {
        "-".into()
    }
}

fn signed_ci(x: f64, ci: Option<Interval>) -> String {
    match ci {
        Some(i) => format!("{} [{}, {}]", signed(x), signed(i.lo), signed(i.hi)),
        None => signed(x),
    }
}

fn signed_pct_ci(x: f64, ci: Option<Interval>) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let s = |v: f64| format!("{:+.1}%", 100.0 * v);
    match ci {
        Some(i) => format!("{} [{}, {}]", s(x), s(i.lo), s(i.hi)),
        None => s(x),
    }
}

fn rate_ci(x: Option<f64>, ci: Option<Interval>) -> String {
    match (x, ci) {
        (Some(x), Some(i)) => format!("{x:.3} [{:.3}, {:.3}]", i.lo, i.hi),
        (Some(x), None) => format!("{x:.3}"),
        _ => "-".into(),
    }
}

fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "-".into()
    }
}

fn opt_num(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".into(), |v| num(v, decimals))
}

/// A test by name and statistic: `t(2) = 3.10`, or `sign` (its counts
/// are W / L). Its interval is the one in the estimate's column
/// ([`delta_cell`]; the win rate's with one seed).
pub fn test_cell(t: &Test) -> String {
    match t.kind {
        TestKind::AcrossSeeds => format!("{} = {}", t.name(), statistic(t.statistic)),
        TestKind::Sign => "sign".into(),
    }
}

/// A t statistic: two decimals, `+∞`/`−∞` when the differences do not vary.
fn statistic(t: f64) -> String {
    match t {
        f64::INFINITY => "+∞".into(),
        f64::NEG_INFINITY => "−∞".into(),
        _ => num(t, 2),
    }
}

/// ` (98.3%)` after an interval whose confidence is not 95%.
fn level_suffix(level: f64) -> String {
    if (level - 0.95).abs() < 1e-12 {
        String::new()
    } else {
        let pct = 100.0 * level;
        let text = format!("{pct:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!(" ({text}%)")
    }
}

/// Δ with the interval that agrees with the row's test: with two or more
/// seeds the mean per-seed Δ and its t interval at the level matching the
/// p shown; with one seed the pooled Δ and its prompt bootstrap (95%).
pub fn delta_cell(r: &Row) -> String {
    match r.inference.ci {
        Some(ci) => format!(
            "{}{}",
            signed_ci(r.test.estimate, Some(ci)),
            level_suffix(r.inference.level())
        ),
        None => signed_ci(r.reward_diff, r.reward_diff_ci),
    }
}

/// The win rate W / (W + L) and its interval (with one seed the sign
/// test's, at the level of its p).
fn win_cell(r: &Row) -> String {
    let suffix = match r.seeds {
        1 if r.win_rate_ci.is_some() => level_suffix(r.inference.level()),
        _ => String::new(),
    };
    format!("{}{suffix}", rate_ci(r.win_rate, r.win_rate_ci))
}

/// The p a row shows: adjusted with its stars, or unadjusted and marked
/// `(expl.)` outside a declared family (no stars).
pub fn shown_p(p: f64, exploratory: bool) -> String {
    if exploratory {
        format!("{} (expl.)", format_p(p))
    } else {
        p_cell(p)
    }
}

/// Stars of a row's p: none for an exploratory test.
pub fn shown_stars(p: f64, exploratory: bool) -> &'static str {
    if exploratory {
        ""
    } else {
        stars(p)
    }
}

/// The equivalence cell: `equivalent within ±0.15 (p = 0.012)`, `not shown
/// (p = 0.31)`, or `-` (one seed: TOST runs across seeds).
pub fn equivalence_cell(r: &Row) -> String {
    let p = |p: f64| match format_p(p) {
        bound if bound.starts_with('<') => format!("p {bound}"),
        value => format!("p = {value}"),
    };
    match r.inference.tost {
        Some(t) if t.equivalent() => format!("equivalent within ±{} ({})", t.upp, p(t.p)),
        Some(t) => format!("not shown ({})", p(t.p)),
        None => "-".into(),
    }
}

fn p_cell(p: f64) -> String {
    let s = stars(p);
    if s.is_empty() {
        format_p(p)
    } else {
        format!("{} {s}", format_p(p))
    }
}

/// A p-value for CSV: the number, or `< 1e-300` below the float floor.
pub fn csv_p(p: f64) -> String {
    if p < P_FLOOR {
        "< 1e-300".into()
    } else {
        p.to_string()
    }
}

fn prompts_cell(r: &Row) -> String {
    if r.uneven_prompts() {
        format!("{} †", r.prompts)
    } else {
        r.prompts.to_string()
    }
}

fn counts(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The methods footer: which test, which interval, which adjustment, over
/// which family.
pub fn footer(report: &Report) -> String {
    let mut out = String::from(
        "Test split only. Δ intervals agree with the test and the p beside them: with ≥ 2 \
         seeds, the t interval of the mean per-seed Δ (df = seeds − 1) at 95%, or, for a test \
         adjusted in the family, at the level shown in parentheses, chosen so that the \
         interval excludes 0 exactly when the adjusted p < 0.05 (docs/results.md, \"Intervals \
         that agree with the tests\"); with 1 seed, the prompt bootstrap (95%; the test is then \
         the sign test, whose interval is the win rate's). Other intervals in brackets are 95% \
         hierarchical bootstraps (resample seeds, then prompts or lists within each drawn seed; \
         10,000 resamples, SplitMix64 seed 0, percentile). ",
    );
    if !report.tables.is_empty() || report.head_to_head.iter().any(|h| !h.rows.is_empty()) {
        out.push_str(
            "Δ reward: mean over prompts of (policy mean reward − baseline mean reward) over \
             each prompt's samples (with ≥ 2 seeds: the mean of the per-seed means, which the \
             t-test tests); pass rate: share of samples with the full reward (10); KL: \
             mean log π − log π_ref of the policy's samples (nats per response). W / T / L \
             compare per-prompt mean rewards; win rate = W / (W + L), ties dropped. Test: with \
             ≥ 2 seeds, a paired t-test across seeds on the per-seed mean Δ reward, df = seeds − 1 \
             (prompts of different seeds are never pooled as independent); with 1 seed, the \
             exact two-sided sign test on prompts (W / L, ties dropped), shown with the Wilson \
             interval of the win rate. Stars and highlights on win rates come from this test of \
             Δ reward (with 1 seed, the sign test of the win rate itself). ",
        );
    }
    if !report.heldout.is_empty() {
        out.push_str(
            "Held-out lists (never trained on): ranking accuracy = correctly ordered pairs / \
             strictly ordered pairs under the implicit reward s = β(log π − log π_ref); margin: \
             mean over lists of the mean s_i − s_j over ordered pairs; NDCG: reward-weighted \
             NDCG of the order by s. ",
        );
    }
    if report.family > 0 {
        out.push_str(&family_sentence(report));
    }
    if let Some(d) = report.equivalence_margin {
        out.push_str(&format!(
            "Equivalence: paired TOST across seeds at 0.05 for |Δ| < {d} (two one-sided \
             t-tests, p = the larger; equivalent exactly when the 90% t interval lies inside \
             ±{d}; unadjusted; needs ≥ 2 seeds). ",
        ));
    }
    out.push_str("Definitions and formulas: docs/results.md.\n");
    out
}

/// Which tests were adjusted together.
fn family_sentence(report: &Report) -> String {
    let o = &report.family_outcome;
    let name = report.adjustment.name();
    let mut out = match &o.declared {
        Some(hypotheses) => format!(
            "p: adjusted with {name} over the declared family of {} tests (report.family: {}); \
             ",
            report.family,
            hypotheses.join("; ")
        ),
        None => format!(
            "p: adjusted with {name} over all {} tests of this report ({} in the tables against \
             {}, the others head-to-head or in paper tables; a comparison shown twice is one \
             test); ",
            report.family, report.family_main, report.baseline,
        ),
    };
    if o.exploratory > 0 {
        out.push_str(&format!(
            "{} tests outside it are exploratory: unadjusted p marked (expl.), no stars, 95% \
             intervals; ",
            o.exploratory
        ));
    }
    out.push_str("* p < 0.05, ** p < 0.01, *** p < 0.001 (adjusted). ");
    out
}

/// One line per label chosen on validation: the picked configuration (in
/// backticks) and the ones not picked.
pub fn selection_items(report: &Report) -> Vec<String> {
    let mut items = Vec::new();
    for s in &report.selections {
        let (best, score, seeds) = &s.candidates[0];
        let mut line = format!(
            "{}: picked `{best}` ({} {score:.4}, {seeds} seeds)",
            s.label, s.metric
        );
        let others: Vec<String> = s.candidates[1..]
            .iter()
            .map(|(c, v, n)| format!("`{c}` {v:.4} ({n} seeds)"))
            .collect();
        if !others.is_empty() {
            line.push_str(&format!("; not picked: {}", others.join(", ")));
        }
        items.push(line);
    }
    items
}

fn selection_lines(report: &Report) -> String {
    if report.selections.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Configurations selected on the validation split\n\n");
    for line in selection_items(report) {
        out.push_str(&format!("- {line}\n"));
    }
    out.push_str("\nThe tables report the picked configurations on the test split.\n\n");
    out
}

/// Text for a Markdown table cell: a `|` in a label or source would end the cell.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A Markdown table row: `| a | b |`, an empty cell as `| |`.
fn md_row(cells: &[String]) -> String {
    let mut out = String::from("|");
    for c in cells {
        if c.is_empty() {
            out.push_str(" |");
        } else {
            out.push_str(&format!(" {} |", md_cell(c)));
        }
    }
    out.push('\n');
    out
}

/// A Markdown table: header, alignment (`true`: right) and rows.
fn md_table(header: &[String], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut out = md_row(header);
    out.push('|');
    for r in right {
        out.push_str(if *r { " ---: |" } else { " --- |" });
    }
    out.push('\n');
    for row in rows {
        out.push_str(&md_row(row));
    }
    out
}

fn strings(cells: &[&str]) -> Vec<String> {
    cells.iter().map(ToString::to_string).collect()
}

/// Columns of a task table.
pub fn task_header(report: &Report) -> Vec<String> {
    let mut h = strings(&[
        "method",
        "seeds",
        "prompts",
        "reward",
        "Δ reward [CI]",
        "pass rate [95% CI]",
        "KL",
        "W / T / L",
        "win rate [CI]",
        "test",
    ]);
    h.push(format!("p ({})", report.adjustment.short()));
    if let Some(d) = report.equivalence_margin {
        h.push(format!("equivalence (±{d})"));
    }
    h
}

fn task_right(report: &Report) -> Vec<bool> {
    let mut r = vec![
        false, true, true, true, false, false, true, false, false, false, false,
    ];
    if report.equivalence_margin.is_some() {
        r.push(false);
    }
    r
}

/// The cells of a method's row of a task table.
pub fn task_cells(r: &Row, report: &Report) -> Vec<String> {
    let mut cells = vec![
        r.method.clone(),
        r.seeds.to_string(),
        prompts_cell(r),
        num(r.reward, 2),
        delta_cell(r),
        pct_ci(r.pass, r.pass_ci),
        num(r.kl, 3),
        wtl(r),
        win_cell(r),
        test_cell(&r.test),
        shown_p(r.p_adjusted, r.inference.exploratory),
    ];
    if report.equivalence_margin.is_some() {
        cells.push(equivalence_cell(r));
    }
    cells
}

fn wtl(r: &Row) -> String {
    format!("{} / {} / {}", r.tally.wins, r.tally.ties, r.tally.losses)
}

/// The cells of a task table's baseline row.
pub fn baseline_cells(t: &TaskTable, report: &Report) -> Vec<String> {
    let dash = || "-".to_string();
    let mut cells = vec![
        format!("{} (baseline)", t.baseline),
        String::new(),
        t.baseline_prompts.to_string(),
        num(t.baseline_reward, 2),
        dash(),
        pct(t.baseline_pass),
        dash(),
        dash(),
        dash(),
        dash(),
        dash(),
    ];
    if report.equivalence_margin.is_some() {
        cells.push(dash());
    }
    cells
}

/// The note under a task table on rows whose seeds evaluated different
/// numbers of prompts.
pub fn uneven_note(t: &TaskTable) -> Option<String> {
    let uneven: Vec<String> = t
        .rows
        .iter()
        .filter(|r| r.uneven_prompts())
        .map(|r| format!("{} ({})", r.method, counts(&r.prompt_counts)))
        .collect();
    (!uneven.is_empty()).then(|| {
        format!(
            "† the seeds of these rows evaluated different numbers of test prompts of this task \
             (Δ reward pools prompts, so larger seeds weigh more; the t-test weighs seeds \
             equally): {}",
            uneven.join("; ")
        )
    })
}

/// The note under a task table on rows whose runs sampled different
/// numbers of responses.
pub fn samples_note(t: &TaskTable) -> Option<String> {
    let samples: Vec<String> = t
        .rows
        .iter()
        .filter(|r| r.samples.len() > 1)
        .map(|r| format!("{} ({:?})", r.method, r.samples))
        .collect();
    (!samples.is_empty()).then(|| {
        format!(
            "Runs of these rows sampled different numbers of responses per prompt: {}",
            samples.join("; ")
        )
    })
}

/// The heading of a task's section.
pub fn task_title(t: &TaskTable) -> String {
    format!("{} (baseline: {}, test split)", t.task, t.baseline)
}

fn markdown_task(t: &TaskTable, report: &Report) -> String {
    let mut rows: Vec<Vec<String>> = t.rows.iter().map(|r| task_cells(r, report)).collect();
    rows.push(baseline_cells(t, report));
    let mut out = format!("## {}\n\n", task_title(t));
    out.push_str(&md_table(&task_header(report), &task_right(report), &rows));
    out.push('\n');
    for note in [uneven_note(t), samples_note(t)].into_iter().flatten() {
        out.push_str(&format!("{note}\n\n"));
    }
    out
}

/// Columns of the held-out table.
pub fn heldout_header() -> Vec<String> {
    strings(&[
        "method",
        "source",
        "seeds",
        "lists",
        "ranking accuracy [95% CI]",
        "margin",
        "NDCG",
    ])
}

const HELDOUT_RIGHT: [bool; 7] = [false, false, true, true, false, true, true];

/// The cells of a held-out row.
pub fn heldout_cells(r: &HeldoutRow) -> Vec<String> {
    let lists = if r.list_counts.windows(2).any(|w| w[0] != w[1]) {
        format!("{} ({})", r.lists, counts(&r.list_counts))
    } else {
        r.lists.to_string()
    };
    vec![
        r.method.clone(),
        r.source.clone(),
        r.seeds.to_string(),
        lists,
        rate_ci(r.accuracy, r.accuracy_ci),
        opt_num(r.margin, 3),
        opt_num(r.ndcg, 3),
    ]
}

fn markdown_heldout(rows: &[HeldoutRow]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(heldout_cells).collect();
    let mut out = String::from("## Held-out lists (test split)\n\n");
    out.push_str(&md_table(&heldout_header(), &HELDOUT_RIGHT, &rows));
    out.push('\n');
    out
}

/// Columns of a head-to-head's generation table.
pub fn h2h_header(report: &Report) -> Vec<String> {
    let mut h = strings(&[
        "task",
        "seeds",
        "prompts",
        "Δ reward [CI]",
        "Δ pass rate [95% CI]",
        "W / T / L",
        "win rate [CI]",
        "test",
    ]);
    h.push(format!("p ({})", report.adjustment.short()));
    if let Some(d) = report.equivalence_margin {
        h.push(format!("equivalence (±{d})"));
    }
    h
}

fn h2h_right(report: &Report) -> Vec<bool> {
    let mut r = vec![false, true, true, false, false, false, false, false, false];
    if report.equivalence_margin.is_some() {
        r.push(false);
    }
    r
}

/// The cells of a head-to-head's row on one task.
pub fn h2h_cells(task: &str, r: &Row, report: &Report) -> Vec<String> {
    let mut cells = vec![
        task.to_string(),
        r.seeds.to_string(),
        prompts_cell(r),
        delta_cell(r),
        signed_pct_ci(r.pass_diff, r.pass_diff_ci),
        wtl(r),
        win_cell(r),
        test_cell(&r.test),
        shown_p(r.p_adjusted, r.inference.exploratory),
    ];
    if report.equivalence_margin.is_some() {
        cells.push(equivalence_cell(r));
    }
    cells
}

/// Columns of a head-to-head's held-out table.
pub fn h2h_heldout_header(a: &str, b: &str, adj: &str) -> Vec<String> {
    vec![
        "source".into(),
        "seeds".into(),
        "lists".into(),
        format!("ranking accuracy {a} / {b}"),
        "Δ ranking accuracy [CI]".into(),
        "test".into(),
        format!("p ({adj})"),
    ]
}

const H2H_HELDOUT_RIGHT: [bool; 7] = [false, true, true, false, false, false, false];

/// The cells of a head-to-head's row on one held-out source.
pub fn h2h_heldout_cells(d: &HeldoutDiff) -> Vec<String> {
    vec![
        d.source.clone(),
        d.seeds.to_string(),
        d.lists.to_string(),
        format!("{:.3} / {:.3}", d.a_accuracy, d.b_accuracy),
        diff_ci(d),
        heldout_test_cell(&d.test),
        shown_p(d.p_adjusted, d.inference.exploratory),
    ]
}

/// The heading of a head-to-head's section.
pub fn h2h_title(h: &HeadToHead) -> String {
    format!("Head-to-head: {} − {} (test split)", h.a, h.b)
}

fn markdown_h2h(report: &Report) -> String {
    let adj = report.adjustment.short();
    let mut out = String::new();
    for h in &report.head_to_head {
        out.push_str(&format!("## {}\n\n", h2h_title(h)));
        if !h.rows.is_empty() {
            let rows: Vec<Vec<String>> = h
                .rows
                .iter()
                .map(|(t, r)| h2h_cells(t, r, report))
                .collect();
            out.push_str(&md_table(&h2h_header(report), &h2h_right(report), &rows));
            out.push('\n');
        }
        if !h.heldout.is_empty() {
            let rows: Vec<Vec<String>> = h.heldout.iter().map(h2h_heldout_cells).collect();
            let header = h2h_heldout_header(&h.a, &h.b, adj);
            out.push_str(&md_table(&header, &H2H_HELDOUT_RIGHT, &rows));
            out.push('\n');
        }
        if h.rows.is_empty() && h.heldout.is_empty() {
            out.push_str("Nothing could be paired.\n\n");
        }
        for p in &h.problems {
            out.push_str(&format!("- not paired: {p}\n"));
        }
        if !h.problems.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// The ranking-accuracy difference with the interval that agrees with its
/// test (as [`delta_cell`]).
fn diff_ci(d: &HeldoutDiff) -> String {
    let f = |v: f64| format!("{v:+.3}");
    let (estimate, ci, suffix) = match d.inference.ci {
        Some(ci) => (d.test.estimate, Some(ci), level_suffix(d.inference.level())),
        None => (d.diff, d.ci, String::new()),
    };
    match ci {
        Some(i) => format!("{} [{}, {}]{suffix}", f(estimate), f(i.lo), f(i.hi)),
        None => f(estimate),
    }
}

fn heldout_test_cell(t: &Test) -> String {
    match t.kind {
        TestKind::AcrossSeeds => format!("{} = {}", t.name(), statistic(t.statistic)),
        TestKind::Sign => format!(
            "sign on lists: {}",
            rate_ci(t.estimate.is_finite().then_some(t.estimate), t.interval)
        ),
    }
}

/// The heading of the power section.
pub fn power_title(report: &Report) -> String {
    format!(
        "Power (80%, two-sided paired t-test across seeds{})",
        report.effect.map_or(String::new(), |e| format!(
            "; seeds for a difference of {e}"
        ))
    )
}

/// How the power section is computed.
pub fn power_note(report: &Report) -> String {
    format!(
        "From the standard deviation of each comparison's per-seed mean Δ reward (taken as the \
         true one, so with few seeds itself uncertain): the smallest |Δ| the design detects with \
         probability 0.8 by the two-sided t-test at level α, and{} the seeds (continuous; round \
         up) that detect it. α is 0.05 / m for the {} tests of the family (Bonferroni, the \
         strictest step of {}), 0.05 for exploratory tests. Noncentral t; equals statsmodels' \
         TTestPower (docs/results.md, \"Power\").",
        report
            .effect
            .map_or(" with --effect".to_string(), |e| format!(
                " for a difference of {e}"
            )),
        report.family,
        report.adjustment.short()
    )
}

/// The power table: one row per comparison of reward (task tables, then
/// head-to-heads); `None` unless asked for or without comparisons.
pub fn power_table(report: &Report) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    if !report.power {
        return None;
    }
    let mut header = strings(&[
        "comparison",
        "task",
        "seeds",
        "sd of per-seed Δ",
        "α",
        "detectable Δ (80%)",
    ]);
    if let Some(e) = report.effect {
        header.push(format!("seeds for Δ = ±{e}"));
    }
    let mut rows = Vec::new();
    let mut push = |name: String, task: &str, r: &Row| {
        let mut cells = vec![name, task.to_string(), r.seeds.to_string()];
        match r.inference.power {
            Some(p) => {
                cells.push(num(p.sd, 3));
                cells.push(format!("{:.4}", p.alpha));
                cells.push(p.detectable.map_or("-".into(), |d| num(d, 3)));
                if report.effect.is_some() {
                    cells.push(p.seeds_needed.map_or("-".into(), |n| num(n, 1)));
                }
            }
            None => {
                let n = header.len() - cells.len();
                cells.extend(std::iter::repeat_n("- (1 seed)".to_string(), n));
            }
        }
        rows.push(cells);
    };
    for t in &report.tables {
        for r in &t.rows {
            push(format!("{} − {}", r.method, t.baseline), &t.task, r);
        }
    }
    for h in &report.head_to_head {
        for (task, r) in &h.rows {
            push(format!("{} − {}", h.a, h.b), task, r);
        }
    }
    (!rows.is_empty()).then_some((header, rows))
}

/// Markdown: selections, one section per task, held-out lists,
/// head-to-heads, the footer, then notes.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# {}\n\n", report.name);
    out.push_str(&selection_lines(report));
    for t in &report.tables {
        out.push_str(&markdown_task(t, report));
    }
    if !report.heldout.is_empty() {
        out.push_str(&markdown_heldout(&report.heldout));
    }
    out.push_str(&markdown_h2h(report));
    if let Some((header, rows)) = power_table(report) {
        out.push_str(&format!("## {}\n\n", power_title(report)));
        let right: Vec<bool> = (0..header.len()).map(|i| i >= 2).collect();
        out.push_str(&md_table(&header, &right, &rows));
        out.push_str(&format!("\n{}\n\n", power_note(report)));
    }
    out.push_str(&footer(report));
    if !report.notes.is_empty() {
        out.push('\n');
        for n in &report.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
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
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '−' => out.push('-'),
            'Δ' => out.push_str("$\\Delta$"),
            '†' => out.push_str("\\textdagger{}"),
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

fn tex_p(p: f64) -> String {
    format!("{}{}", latex_escape(&format_p(p)), tex_stars(p))
}

fn tex_shown_p(r: &Row) -> String {
    match r.inference.exploratory {
        true => latex_escape(&shown_p(r.p_adjusted, true)),
        false => tex_p(r.p_adjusted),
    }
}

/// LaTeX: one booktabs `table` per task, one for held-out lists and one per
/// head-to-head (needs `\usepackage{booktabs}`).
pub fn latex(report: &Report) -> String {
    let name = latex_escape(&report.name);
    let adj = report.adjustment.short();
    let mut out = format!("% lpo report: {name}\n");
    for t in &report.tables {
        out.push_str("\\begin{table}[t]\n\\centering\n\\begin{tabular}{lrrllrlll}\n\\toprule\n");
        out.push_str(&format!(
            "Method & Seeds & Reward & $\\Delta$ reward [95\\% CI] & Pass rate [95\\% CI] & KL & W/T/L & Win rate [95\\% CI] & $p$ ({adj}) \\\\\n\\midrule\n"
        ));
        for r in &t.rows {
            out.push_str(&format!(
                "{} & {} & {} & {} & {} & {} & {}/{}/{} & {} & {} \\\\\n",
                latex_escape(&r.method),
                r.seeds,
                num(r.reward, 2),
                latex_escape(&delta_cell(r)),
                latex_escape(&pct_ci(r.pass, r.pass_ci)),
                num(r.kl, 3),
                r.tally.wins,
                r.tally.ties,
                r.tally.losses,
                latex_escape(&win_cell(r)),
                tex_shown_p(r),
            ));
        }
        out.push_str(&format!(
            "\\midrule\n{} (baseline) & & {} & -- & {} & -- & -- & -- & -- \\\\\n\\bottomrule\n\\end{{tabular}}\n",
            latex_escape(&t.baseline),
            num(t.baseline_reward, 2),
            latex_escape(&pct(t.baseline_pass))
        ));
        out.push_str(&format!(
            "\\caption{{{name}: {} against {} on the test split. $\\Delta$ reward: with $\\geq 2$ seeds the mean per-seed difference and its $t$ interval, at 95\\% or the level in parentheses, which excludes 0 exactly when the adjusted $p < 0.05$ (1 seed: 95\\% prompt bootstrap); pass rate and win rate: 95\\% hierarchical bootstrap over seeds and prompts (1 seed: the win rate's Wilson interval at the level of $p$); $p$: paired t-test across seeds (1 seed: exact sign test), {adj}-adjusted over {} tests (``expl.'': outside the declared family, unadjusted); stars on win rates come from this test; $^{{*}}p<0.05$, $^{{**}}p<0.01$, $^{{***}}p<0.001$.}}\n\\end{{table}}\n\n",
            latex_escape(&t.task),
            latex_escape(&t.baseline),
            report.family,
        ));
    }
    if !report.heldout.is_empty() {
        out.push_str("\\begin{table}[t]\n\\centering\n\\begin{tabular}{llrrlrr}\n\\toprule\n");
        out.push_str("Method & Source & Seeds & Lists & Ranking accuracy [95\\% CI] & Margin & NDCG \\\\\n\\midrule\n");
        for r in &report.heldout {
            out.push_str(&format!(
                "{} & {} & {} & {} & {} & {} & {} \\\\\n",
                latex_escape(&r.method),
                latex_escape(&r.source),
                r.seeds,
                r.lists,
                rate_ci(r.accuracy, r.accuracy_ci),
                opt_num(r.margin, 3),
                opt_num(r.ndcg, 3),
            ));
        }
        out.push_str(&format!(
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{{name}: implicit-reward ranking metrics on held-out lists (test split); 95\\% hierarchical bootstrap over lists by seed.}}\n\\end{{table}}\n\n"
        ));
    }
    for h in &report.head_to_head {
        if h.rows.is_empty() {
            continue;
        }
        out.push_str("\\begin{table}[t]\n\\centering\n\\begin{tabular}{lrrllll}\n\\toprule\n");
        out.push_str(&format!(
            "Task & Seeds & Prompts & $\\Delta$ reward [95\\% CI] & W/T/L & Win rate [95\\% CI] & $p$ ({adj}) \\\\\n\\midrule\n"
        ));
        for (task, r) in &h.rows {
            out.push_str(&format!(
                "{} & {} & {} & {} & {}/{}/{} & {} & {} \\\\\n",
                latex_escape(task),
                r.seeds,
                r.prompts,
                latex_escape(&delta_cell(r)),
                r.tally.wins,
                r.tally.ties,
                r.tally.losses,
                latex_escape(&win_cell(r)),
                tex_shown_p(r),
            ));
        }
        out.push_str(&format!(
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{{name}: {} minus {} prompt by prompt on the test split.}}\n\\end{{table}}\n\n",
            latex_escape(&h.a),
            latex_escape(&h.b)
        ));
    }
    out
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<String> {
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| v.to_string())
}

fn fin(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

const ROW_COLUMNS: [&str; 33] = [
    "seeds",
    "prompts",
    "prompt_counts",
    "samples",
    "wins",
    "ties",
    "losses",
    "win_rate",
    "win_rate_lo",
    "win_rate_hi",
    "win_rate_interval",
    "win_rate_ties_half",
    "reward",
    "baseline_reward",
    "reward_diff",
    "reward_diff_lo",
    "reward_diff_hi",
    "pass_rate",
    "pass_rate_lo",
    "pass_rate_hi",
    "baseline_pass_rate",
    "pass_diff",
    "pass_diff_lo",
    "pass_diff_hi",
    "kl",
    "test",
    "df",
    "statistic",
    "test_estimate",
    "test_lo",
    "test_hi",
    "p_value",
    "p_adjusted",
];

fn row_cells(r: &Row) -> Vec<String> {
    vec![
        r.seeds.to_string(),
        r.prompts.to_string(),
        r.prompt_counts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";"),
        r.samples
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";"),
        r.tally.wins.to_string(),
        r.tally.ties.to_string(),
        r.tally.losses.to_string(),
        opt(r.win_rate),
        opt(r.win_rate_ci.map(|i| i.lo)),
        opt(r.win_rate_ci.map(|i| i.hi)),
        r.win_rate_interval().to_string(),
        r.tally.win_rate().to_string(),
        fin(r.reward),
        fin(r.baseline_reward),
        fin(r.reward_diff),
        opt(r.reward_diff_ci.map(|i| i.lo)),
        opt(r.reward_diff_ci.map(|i| i.hi)),
        fin(r.pass),
        opt(r.pass_ci.map(|i| i.lo)),
        opt(r.pass_ci.map(|i| i.hi)),
        fin(r.baseline_pass),
        fin(r.pass_diff),
        opt(r.pass_diff_ci.map(|i| i.lo)),
        opt(r.pass_diff_ci.map(|i| i.hi)),
        fin(r.kl),
        match r.test.kind {
            TestKind::AcrossSeeds => "t-across-seeds".into(),
            TestKind::Sign => "sign".into(),
        },
        if r.test.kind == TestKind::AcrossSeeds {
            r.test.df.to_string()
        } else {
            String::new()
        },
        r.test.statistic.to_string(),
        fin(r.test.estimate),
        opt(r.test.interval.map(|i| i.lo)),
        opt(r.test.interval.map(|i| i.hi)),
        csv_p(r.test.p),
        adjusted_cell(r.p_adjusted, r.inference.exploratory),
    ]
}

/// Columns after `adjustment` and `family` (issue 29): the p shown and the
/// interval, equivalence and power readings of [`crate::inference`].
const READING_COLUMNS: [&str; 17] = [
    "p_shown",
    "exploratory",
    "ci_estimate",
    "ci_lo",
    "ci_hi",
    "ci_level",
    "win_rate_level",
    "equivalence_margin",
    "tost_p",
    "tost_lo",
    "tost_hi",
    "equivalent",
    "power_alpha",
    "seed_sd",
    "detectable_diff",
    "effect",
    "seeds_needed",
];

/// The cells of [`READING_COLUMNS`] for a test with these readings.
fn reading_cells(
    p_shown: f64,
    estimate: f64,
    inference: &crate::inference::Inference,
    win_rate_level: Option<f64>,
    margin: Option<f64>,
) -> Vec<String> {
    let i = inference;
    let tost = i.tost;
    let power = i.power;
    vec![
        csv_p(p_shown),
        i.exploratory.to_string(),
        opt(i.ci.map(|_| estimate)),
        opt(i.ci.map(|c| c.lo)),
        opt(i.ci.map(|c| c.hi)),
        opt(i.ci.map(|_| i.level())),
        opt(win_rate_level),
        opt(margin),
        opt(tost.map(|t| t.p)),
        opt(tost.map(|t| t.interval.lo)),
        opt(tost.map(|t| t.interval.hi)),
        tost.map_or(String::new(), |t| t.equivalent().to_string()),
        opt(power.map(|p| p.alpha)),
        opt(power.map(|p| p.sd)),
        opt(power.and_then(|p| p.detectable)),
        opt(power.and_then(|p| p.effect)),
        opt(power.and_then(|p| p.seeds_needed)),
    ]
}

fn row_reading(r: &Row, margin: Option<f64>) -> Vec<String> {
    let win_level = (r.win_rate_ci.is_some()).then(|| match r.seeds {
        1 => r.inference.level(),
        _ => 0.95,
    });
    reading_cells(
        r.p_adjusted,
        r.test.estimate,
        &r.inference,
        win_level,
        margin,
    )
}

/// `p_adjusted` of a row: empty for an exploratory test (its p is not
/// adjusted; `p_shown` has it).
fn adjusted_cell(p: f64, exploratory: bool) -> String {
    if exploratory {
        String::new()
    } else {
        csv_p(p)
    }
}

/// CSV of the main tables: one row per (task, method).
pub fn csv(report: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["task", "method", "baseline"];
    header.extend(ROW_COLUMNS);
    header.extend(["adjustment", "family"]);
    header.extend(READING_COLUMNS);
    w.write_record(&header)?;
    for t in &report.tables {
        for r in &t.rows {
            let mut rec = vec![t.task.clone(), r.method.clone(), t.baseline.clone()];
            rec.extend(row_cells(r));
            rec.push(report.adjustment.short().to_string());
            rec.push(report.family.to_string());
            rec.extend(row_reading(r, report.equivalence_margin));
            w.write_record(&rec)?;
        }
    }
    finish(w)
}

/// CSV of the held-out list table: one row per (method, source).
pub fn heldout_csv(rows: &[HeldoutRow]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "method",
        "source",
        "seeds",
        "lists",
        "list_counts",
        "pairs",
        "correct",
        "ranking_accuracy",
        "ranking_accuracy_lo",
        "ranking_accuracy_hi",
        "margin",
        "ndcg",
    ])?;
    for r in rows {
        w.write_record([
            r.method.clone(),
            r.source.clone(),
            r.seeds.to_string(),
            r.lists.to_string(),
            r.list_counts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";"),
            r.pairs.to_string(),
            r.correct.to_string(),
            opt(r.accuracy),
            opt(r.accuracy_ci.map(|i| i.lo)),
            opt(r.accuracy_ci.map(|i| i.hi)),
            opt(r.margin),
            opt(r.ndcg),
        ])?;
    }
    finish(w)
}

/// CSV of the head-to-heads: generation rows (per task) use the main
/// table's columns; held-out rows fill `reward_diff*` with the
/// ranking-accuracy difference.
pub fn compare_csv(report: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["kind", "a", "b", "task"];
    header.extend(ROW_COLUMNS);
    header.extend(["adjustment", "family"]);
    header.extend(READING_COLUMNS);
    w.write_record(&header)?;
    let tail = [
        report.adjustment.short().to_string(),
        report.family.to_string(),
    ];
    for h in &report.head_to_head {
        for (task, r) in &h.rows {
            let mut rec = vec!["generation".into(), h.a.clone(), h.b.clone(), task.clone()];
            rec.extend(row_cells(r));
            rec.extend(tail.clone());
            rec.extend(row_reading(r, report.equivalence_margin));
            w.write_record(&rec)?;
        }
        for d in &h.heldout {
            let mut rec = vec![
                "ranking-accuracy".into(),
                h.a.clone(),
                h.b.clone(),
                d.source.clone(),
            ];
            let mut cells = vec![String::new(); ROW_COLUMNS.len()];
            let set = |cells: &mut Vec<String>, col: &str, v: String| {
                let i = ROW_COLUMNS.iter().position(|c| *c == col).expect("column");
                cells[i] = v;
            };
            set(&mut cells, "seeds", d.seeds.to_string());
            set(&mut cells, "prompts", d.lists.to_string());
            set(&mut cells, "reward", d.a_accuracy.to_string());
            set(&mut cells, "baseline_reward", d.b_accuracy.to_string());
            set(&mut cells, "reward_diff", d.diff.to_string());
            set(&mut cells, "reward_diff_lo", opt(d.ci.map(|i| i.lo)));
            set(&mut cells, "reward_diff_hi", opt(d.ci.map(|i| i.hi)));
            set(
                &mut cells,
                "test",
                match d.test.kind {
                    TestKind::AcrossSeeds => "t-across-seeds".into(),
                    TestKind::Sign => "sign".into(),
                },
            );
            if d.test.kind == TestKind::AcrossSeeds {
                set(&mut cells, "df", d.test.df.to_string());
            }
            set(&mut cells, "statistic", d.test.statistic.to_string());
            set(&mut cells, "test_estimate", fin(d.test.estimate));
            set(&mut cells, "test_lo", opt(d.test.interval.map(|i| i.lo)));
            set(&mut cells, "test_hi", opt(d.test.interval.map(|i| i.hi)));
            set(&mut cells, "p_value", csv_p(d.test.p));
            set(
                &mut cells,
                "p_adjusted",
                adjusted_cell(d.p_adjusted, d.inference.exploratory),
            );
            rec.extend(cells);
            rec.extend(tail.clone());
            rec.extend(reading_cells(
                d.p_adjusted,
                d.test.estimate,
                &d.inference,
                None,
                report.equivalence_margin,
            ));
            w.write_record(&rec)?;
        }
    }
    finish(w)
}

/// A paper table: rows are methods, columns tasks; cells per `spec.metric`.
pub struct PaperTable {
    /// Markdown.
    pub markdown: String,
    /// LaTeX (booktabs).
    pub latex: String,
    /// CSV (method, then one column per task).
    pub csv: String,
    /// Its caption.
    pub caption: String,
    /// Its columns: the tasks.
    pub tasks: Vec<String>,
    /// Per method, its cells as the Markdown shows them.
    pub rows: Vec<(String, Vec<String>)>,
}

fn cell(r: &Row, metric: TableMetric) -> (String, String, String) {
    match metric {
        TableMetric::WinRate => {
            let stars = shown_stars(r.p_adjusted, r.inference.exploratory);
            let tex = match stars {
                "" => String::new(),
                s => format!("$^{{{s}}}$"),
            };
            (
                format!("{}{stars}", win_cell(r)),
                format!("{}{tex}", latex_escape(&win_cell(r))),
                opt(r.win_rate),
            )
        }
        TableMetric::Reward => (num(r.reward, 2), num(r.reward, 2), fin(r.reward)),
        TableMetric::Accuracy => (pct(r.pass), latex_escape(&pct(r.pass)), fin(r.pass)),
    }
}

/// Builds a paper table from per-task comparisons (their p-values adjusted
/// over the table's own tests).
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
        TableMetric::WinRate => "win rate W/(W+L) vs",
        TableMetric::Reward => "mean reward; baseline",
        TableMetric::Accuracy => "pass rate; baseline",
    };
    let caption = spec.caption.clone().unwrap_or_else(|| {
        format!(
            "{} ({metric_name} {}, test split)",
            spec.name,
            tables.first().map_or("-", |t| t.baseline.as_str())
        )
    });
    let caption = match spec.metric {
        TableMetric::WinRate => format!(
            "{caption}. Stars: the paired test of Δ reward against the baseline (across seeds; \
             sign test with one seed), p as in report.md (adjusted over the report's family; none \
             for exploratory tests)"
        ),
        _ => caption,
    };
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
    let mut rows = Vec::new();
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
            "| {} | {} |\n",
            md_cell(m),
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
        record.extend(cells.iter().map(|c| c.2.clone()));
        w.write_record(&record)?;
        rows.push((m.clone(), cells.into_iter().map(|c| c.0).collect()));
    }
    tex.push_str(&format!(
        "\\bottomrule\n\\end{{tabular}}\n\\caption{{{}}}\n\\end{{table}}\n",
        latex_escape(&caption)
    ));
    Ok(PaperTable {
        markdown: md,
        latex: tex,
        csv: finish(w)?,
        tasks: tasks.iter().map(ToString::to_string).collect(),
        caption,
        rows,
    })
}
