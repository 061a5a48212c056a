//! `report.html`: the report as one self-contained page (inline CSS and
//! SVG, no script, nothing fetched). Every table cell is the text
//! [`render`] prints in report.md; this module only lays it out, links runs
//! and tasks to their rows and embeds the plots.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use lpo_stats::stars;

use crate::compare::{HeadToHead, TaskTable};
use crate::render::{self, PaperTable};
use crate::{Chart, Report};

/// One run of the family, for the runs table.
pub struct RunLine {
    /// Run id.
    pub id: String,
    /// Its arm's name (the row name in the tables), else its label.
    pub method: String,
    /// Whether its arm is in the report (`method` names a row).
    pub in_arm: bool,
    /// Its seed, when it has results.
    pub seed: Option<u64>,
    /// `complete`, `missing`, `running`, `failed`, ...
    pub state: String,
    /// Why, when it is not in the tables.
    pub detail: Option<String>,
}

/// What the page shows besides the report.
pub struct Page<'a> {
    /// The report (tables, notes).
    pub report: &'a Report,
    /// Every run, complete or not.
    pub runs: &'a [RunLine],
    /// Paper tables by name.
    pub papers: &'a [(String, PaperTable)],
    /// The plots.
    pub charts: &'a [Chart],
    /// Notes about the plots.
    pub plot_notes: &'a [String],
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An element id from a prefix and parts: `run-lpo-3f2a`, `row-arith.dpo`.
/// Letters, digits and `-` stay; any other byte becomes `_XX` (hex), and
/// parts are joined by `.`, so different parts never give the same id.
pub fn anchor(prefix: &str, parts: &[&str]) -> String {
    let mut out = format!("{prefix}-");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "_{b:02x}");
            }
        }
    }
    out
}

fn link(id: &str, text: &str) -> String {
    format!("<a href=\"#{id}\">{}</a>", escape(text))
}

/// Escaped text with `` `code` `` spans as `<code>`.
fn inline_code(text: &str) -> String {
    let mut out = String::new();
    for (i, piece) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(piece));
        } else {
            out.push_str(&escape(piece));
        }
    }
    out
}

/// Escaped `text` with every run id of `ids` linked to its row (longest
/// id first where ids overlap).
fn link_runs(text: &str, ids: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for id in ids {
            if rest.starts_with(id) {
                out.push_str(&link(&anchor("run", &[id]), id));
                rest = &rest[id.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push_str(&escape(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A cell's escaped text with its bracketed interval set apart.
fn cell_text(text: &str) -> String {
    match text.find(" [") {
        Some(i) if text.ends_with(']') || text.contains("] ") => format!(
            "{}<span class=\"ci\">{}</span>",
            escape(&text[..i]),
            escape(&text[i..])
        ),
        _ => escape(text),
    }
}

/// `<tr>` of cells: `names` (already HTML; the first heads the row), then
/// `numbers` (plain text, right-aligned). In a `sig` row the last number,
/// the adjusted p, is bold.
fn tr(id: Option<&str>, class: &str, names: &[String], numbers: &[String]) -> String {
    let mut out = String::from("<tr");
    if let Some(id) = id {
        let _ = write!(out, " id=\"{id}\"");
    }
    if !class.is_empty() {
        let _ = write!(out, " class=\"{class}\"");
    }
    out.push('>');
    for (i, n) in names.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, "<th scope=\"row\">{n}</th>");
        } else {
            let _ = write!(out, "<td>{n}</td>");
        }
    }
    for (i, n) in numbers.iter().enumerate() {
        if class == "sig" && i + 1 == numbers.len() {
            let _ = write!(out, "<td class=\"n p\"><strong>{}</strong></td>", escape(n));
        } else {
            let _ = write!(out, "<td class=\"n\">{}</td>", cell_text(n));
        }
    }
    out.push_str("</tr>\n");
    out
}

fn sig_class(p_adjusted: f64, exploratory: bool) -> &'static str {
    if exploratory || stars(p_adjusted).is_empty() {
        ""
    } else {
        "sig"
    }
}

fn thead(header: &[String], text_cols: usize) -> String {
    let mut out = String::from("<thead><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if i < text_cols { "" } else { " class=\"n\"" };
        let _ = write!(out, "<th scope=\"col\"{class}>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n");
    out
}

fn table(head: &str, body: &str) -> String {
    format!("<div class=\"scroll\"><table>\n{head}<tbody>\n{body}</tbody></table></div>\n")
}

/// The ids of the report's tasks, for linking mentions of them.
struct Tasks(BTreeSet<String>);

impl Tasks {
    fn mention(&self, task: &str) -> String {
        if self.0.contains(task) {
            link(&anchor("task", &[task]), task)
        } else {
            escape(task)
        }
    }
}

fn method_link(method: &str, page: &Page<'_>) -> String {
    if page.runs.iter().any(|r| r.in_arm && r.method == method) {
        link(&anchor("arm", &[method]), method)
    } else {
        escape(method)
    }
}

fn task_section(t: &TaskTable, page: &Page<'_>) -> String {
    let report = page.report;
    let mut body = String::new();
    for r in &t.rows {
        let cells = render::task_cells(r, report);
        body.push_str(&tr(
            Some(&anchor("row", &[&t.task, &r.method])),
            sig_class(r.p_adjusted, r.inference.exploratory),
            &[method_link(&r.method, page)],
            &cells[1..],
        ));
    }
    let base = render::baseline_cells(t, report);
    body.push_str(&tr(
        Some(&anchor("base", &[&t.task])),
        "baseline",
        &[escape(&base[0])],
        &base[1..],
    ));
    let mut out = format!(
        "<section id=\"{}\">\n<h2>{} <span class=\"sub\">against {}, test split</span></h2>\n",
        anchor("task", &[&t.task]),
        escape(&t.task),
        escape(&t.baseline)
    );
    out.push_str(&table(&thead(&render::task_header(report), 1), &body));
    for note in [render::uneven_note(t), render::samples_note(t)]
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "<p class=\"foot\">{}</p>", escape(&note));
    }
    out.push_str("</section>\n");
    out
}

fn heldout_section(page: &Page<'_>, tasks: &Tasks) -> String {
    let mut body = String::new();
    for r in &page.report.heldout {
        let cells = render::heldout_cells(r);
        body.push_str(&tr(
            Some(&anchor("heldout", &[&r.method, &r.source])),
            "",
            &[method_link(&r.method, page), tasks.mention(&r.source)],
            &cells[2..],
        ));
    }
    format!(
        "<section id=\"heldout\">\n<h2>Held-out lists <span class=\"sub\">test split, never trained on</span></h2>\n{}</section>\n",
        table(&thead(&render::heldout_header(), 2), &body)
    )
}

fn h2h_section(h: &HeadToHead, report: &Report, tasks: &Tasks) -> String {
    let adj = report.adjustment.short();
    let id = anchor("h2h", &[&h.a, &h.b]);
    let mut out = format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n",
        escape(&render::h2h_title(h))
    );
    if !h.rows.is_empty() {
        let mut body = String::new();
        for (task, r) in &h.rows {
            let cells = render::h2h_cells(task, r, report);
            body.push_str(&tr(
                Some(&anchor("h2h", &[&h.a, &h.b, task])),
                sig_class(r.p_adjusted, r.inference.exploratory),
                &[tasks.mention(task)],
                &cells[1..],
            ));
        }
        out.push_str(&table(&thead(&render::h2h_header(report), 1), &body));
    }
    if !h.heldout.is_empty() {
        let mut body = String::new();
        for d in &h.heldout {
            let cells = render::h2h_heldout_cells(d);
            body.push_str(&tr(
                Some(&anchor("h2h", &[&h.a, &h.b, "lists", &d.source])),
                sig_class(d.p_adjusted, d.inference.exploratory),
                &[tasks.mention(&d.source)],
                &cells[1..],
            ));
        }
        let head = thead(&render::h2h_heldout_header(&h.a, &h.b, adj), 1);
        out.push_str(&table(&head, &body));
    }
    if h.rows.is_empty() && h.heldout.is_empty() {
        out.push_str("<p>Nothing could be paired.</p>\n");
    }
    for p in &h.problems {
        let _ = writeln!(out, "<p class=\"note\">not paired: {}</p>", escape(p));
    }
    out.push_str("</section>\n");
    out
}

fn power_section(report: &Report, header: &[String], rows: &[Vec<String>]) -> String {
    let mut body = String::new();
    for r in rows {
        body.push_str(&tr(None, "", &[escape(&r[0]), escape(&r[1])], &r[2..]));
    }
    format!(
        "<section id=\"power\">\n<h2>{}</h2>\n{}<p class=\"foot\">{}</p>\n</section>\n",
        escape(&render::power_title(report)),
        table(&thead(header, 2), &body),
        escape(&render::power_note(report))
    )
}

fn paper_section(name: &str, p: &PaperTable, tasks: &Tasks) -> String {
    let mut head = String::from("<thead><tr><th scope=\"col\">method</th>");
    for t in &p.tasks {
        let _ = write!(
            head,
            "<th scope=\"col\" class=\"n\">{}</th>",
            tasks.mention(t)
        );
    }
    head.push_str("</tr></thead>\n");
    let mut body = String::new();
    for (method, cells) in &p.rows {
        body.push_str(&tr(
            Some(&anchor("paper", &[name, method])),
            "",
            &[escape(method)],
            cells,
        ));
    }
    format!(
        "<section id=\"{}\">\n<h3>{} <span class=\"sub\">tables/{}.md</span></h3>\n<p>{}</p>\n{}</section>\n",
        anchor("paper", &[name]),
        escape(name),
        escape(name),
        escape(&p.caption),
        table(&head, &body)
    )
}

/// An SVG ready to sit in HTML: without its XML namespace declaration
/// (implied in HTML), so the page names no URL.
fn inline_svg(svg: &str) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

fn plots_section(page: &Page<'_>) -> String {
    let mut out = String::from("<section id=\"plots\">\n<h2>Plots</h2>\n");
    for c in ordered_charts(page.charts) {
        let stem = c.file.trim_end_matches(".svg");
        let _ = write!(
            out,
            "<figure id=\"{}\">\n{}<figcaption><a href=\"plots/{}\">plots/{}</a></figcaption>\n</figure>\n",
            anchor("plot", &[stem]),
            inline_svg(&c.svg),
            escape(&c.file),
            escape(&c.file)
        );
    }
    out.push_str("</section>\n");
    out
}

/// The frontier and win rates first, then held-out curves, then per-batch
/// curves.
fn ordered_charts(charts: &[Chart]) -> Vec<&Chart> {
    const ORDER: [&str; 8] = [
        "frontier.svg",
        "win_rate.svg",
        "likelihood.svg",
        "margin.svg",
        "ranking_accuracy.svg",
        "loss.svg",
        "batch_likelihood.svg",
        "batch_ranking_accuracy.svg",
    ];
    let mut out: Vec<&Chart> = charts.iter().collect();
    out.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|f| *f == c.file)
            .unwrap_or(ORDER.len())
    });
    out
}

fn runs_section(page: &Page<'_>) -> String {
    let header: Vec<String> = ["run", "method", "seed", "state"]
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut body = String::new();
    let mut groups: Vec<(&str, bool)> = Vec::new();
    for r in page.runs {
        if !groups.contains(&(r.method.as_str(), r.in_arm)) {
            groups.push((r.method.as_str(), r.in_arm));
        }
    }
    for (method, in_arm) in groups {
        let id = if in_arm {
            format!(" id=\"{}\"", anchor("arm", &[method]))
        } else {
            String::new()
        };
        let _ = writeln!(body, "<tbody{id}>");
        for r in page
            .runs
            .iter()
            .filter(|r| r.method == method && r.in_arm == in_arm)
        {
            body.push_str(&run_row(r, page));
        }
        body.push_str("</tbody>\n");
    }
    format!(
        "<section id=\"runs\">\n<h2>Runs <span class=\"sub\">{} in this family; their directories sit beside this page</span></h2>\n<div class=\"scroll\"><table>\n{}{body}</table></div>\n</section>\n",
        page.runs.len(),
        thead(&header, 4)
    )
}

fn run_row(r: &RunLine, page: &Page<'_>) -> String {
    let method = first_row(&r.method, page)
        .filter(|_| r.in_arm)
        .map_or_else(|| escape(&r.method), |id| link(&id, &r.method));
    let state = match &r.detail {
        Some(d) => format!("{}: {}", escape(&r.state), escape(d)),
        None => escape(&r.state),
    };
    let class = if r.state == "complete" { "" } else { "absent" };
    tr(
        Some(&anchor("run", &[&r.id])),
        class,
        &[
            format!(
                "<a class=\"id\" href=\"{}/\">{}</a>",
                escape(&r.id),
                escape(&r.id)
            ),
            method,
            r.seed.map_or_else(String::new, |s| s.to_string()),
            state,
        ],
        &[],
    )
}

/// The id of a method's first row in the tables.
fn first_row(method: &str, page: &Page<'_>) -> Option<String> {
    let report = page.report;
    if let Some(t) = report
        .tables
        .iter()
        .find(|t| t.rows.iter().any(|r| r.method == method))
    {
        return Some(anchor("row", &[&t.task, method]));
    }
    report
        .heldout
        .iter()
        .find(|h| h.method == method)
        .map(|h| anchor("heldout", &[method, &h.source]))
}

fn notes_section(page: &Page<'_>) -> String {
    let mut ids: Vec<&str> = page.runs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_by_key(|id| std::cmp::Reverse(id.len()));
    let mut out = String::from("<section id=\"notes\">\n<h2>Notes</h2>\n<ul class=\"notes\">\n");
    for n in page.report.notes.iter().chain(page.plot_notes) {
        let _ = writeln!(out, "<li>{}</li>", link_runs(n, &ids));
    }
    out.push_str("</ul>\n</section>\n");
    out
}

fn selection_section(report: &Report) -> String {
    let mut out = String::from(
        "<section id=\"selection\">\n<h2>Configurations selected on the validation split</h2>\n<ul>\n",
    );
    for line in render::selection_items(report) {
        let _ = writeln!(out, "<li>{}</li>", inline_code(&line));
    }
    out.push_str("</ul>\n<p>The tables report the picked configurations on the test split.</p>\n</section>\n");
    out
}

fn reading_section(report: &Report) -> String {
    format!(
        "<section id=\"reading\">\n<h2>How to read these numbers</h2>\n<p class=\"foot\">{}</p>\n</section>\n",
        escape(render::footer(report).trim_end())
    )
}

/// The table of contents: (id, title) of every section.
fn contents(page: &Page<'_>) -> Vec<(String, String)> {
    let report = page.report;
    let mut out = Vec::new();
    if !report.selections.is_empty() {
        out.push(("selection".into(), "Selected configurations".into()));
    }
    for t in &report.tables {
        out.push((anchor("task", &[&t.task]), format!("Task {}", t.task)));
    }
    if !report.heldout.is_empty() {
        out.push(("heldout".into(), "Held-out lists".into()));
    }
    for h in &report.head_to_head {
        out.push((anchor("h2h", &[&h.a, &h.b]), render::h2h_title(h)));
    }
    if render::power_table(report).is_some() {
        out.push(("power".into(), "Power".into()));
    }
    if !page.charts.is_empty() {
        out.push(("plots".into(), "Plots".into()));
    }
    if !page.papers.is_empty() {
        out.push(("papers".into(), "Paper tables".into()));
    }
    if !report.notes.is_empty() || !page.plot_notes.is_empty() {
        out.push(("notes".into(), "Notes".into()));
    }
    out.push(("runs".into(), "Runs".into()));
    out.push(("reading".into(), "How to read these numbers".into()));
    out
}

fn header(page: &Page<'_>) -> String {
    let report = page.report;
    let complete = page.runs.iter().filter(|r| r.state == "complete").count();
    let notes = report.notes.len() + page.plot_notes.len();
    let mut meta = format!(
        "baseline <b>{}</b> · {} of {} runs complete · p adjusted with {} over {} tests",
        escape(&report.baseline),
        complete,
        page.runs.len(),
        escape(report.adjustment.name()),
        report.family
    );
    if notes > 0 {
        let _ = write!(
            meta,
            " · <a class=\"warn\" href=\"#notes\">{notes} note{}</a>",
            if notes == 1 { "" } else { "s" }
        );
    }
    let mut toc = String::new();
    for (id, title) in contents(page) {
        let _ = write!(toc, "<li><a href=\"#{id}\">{}</a></li>", escape(&title));
    }
    format!(
        "<header>\n<p class=\"kicker\">lpo report</p>\n<h1>{}</h1>\n<p class=\"meta\">{meta}</p>\n<p class=\"legend\">Test split only. Rows whose adjusted p is below 0.05 are <span class=\"sig-key\">highlighted</span> and starred (* &lt; 0.05, ** &lt; 0.01, *** &lt; 0.001); brackets are 95% intervals.</p>\n</header>\n<nav aria-label=\"Contents\"><ol>{toc}</ol></nav>\n",
        escape(&report.name)
    )
}

const CSS: &str = "
:root { --fg: #1d2330; --muted: #5d6677; --line: #dfe3ea; --bg: #f6f7f9; --card: #fff;
  --accent: #2457c5; --sig: #e9f6ec; --sig-line: #2e9e4f; --warn: #a15c00; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 20px 64px; }
header h1 { margin: 0 0 4px; font-size: 30px; letter-spacing: -0.01em; }
.kicker { margin: 0; color: var(--accent); font-weight: 600; text-transform: uppercase;
  font-size: 12px; letter-spacing: 0.08em; }
.meta { margin: 0 0 6px; color: var(--muted); }
.legend { margin: 0; color: var(--muted); font-size: 13px; }
.sig-key { background: var(--sig); border-left: 3px solid var(--sig-line); padding: 0 4px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
a.warn { color: var(--warn); font-weight: 600; }
nav { margin: 18px 0 8px; }
nav ol { display: flex; flex-wrap: wrap; gap: 6px; margin: 0; padding: 0; list-style: none; }
nav li a { display: block; padding: 3px 10px; border: 1px solid var(--line); border-radius: 999px;
  background: var(--card); font-size: 13px; }
section { margin-top: 22px; padding: 16px 18px; background: var(--card);
  border: 1px solid var(--line); border-radius: 10px; }
section section { margin: 14px 0 0; padding: 0; border: 0; }
h2 { margin: 0 0 12px; font-size: 19px; }
h3 { margin: 0 0 6px; font-size: 16px; }
.sub { color: var(--muted); font-weight: 400; font-size: 14px; }
.scroll { overflow: auto; max-height: 80vh; border: 1px solid var(--line); border-radius: 6px; }
.scroll + .scroll { margin-top: 14px; }
table { border-collapse: separate; border-spacing: 0; width: 100%; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; vertical-align: top; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--line); }
thead th { position: sticky; top: 0; z-index: 1; background: #eef1f5; font-weight: 600;
  color: #39414f; font-size: 12.5px; white-space: normal; vertical-align: bottom; }
tbody th { font-weight: 600; white-space: normal; min-width: 5em; }
.n { text-align: right; }
.ci { display: block; color: var(--muted); font-size: 11.5px; }
tbody tr:hover td, tbody tr:hover th { background: #f2f5fb; }
tr.sig td, tr.sig th { background: var(--sig); }
tr.sig th { box-shadow: inset 3px 0 0 var(--sig-line); }
td.p strong { color: #17692f; }
tr.baseline td, tr.baseline th { color: var(--muted); font-style: italic; background: #fafbfc; }
tr.absent td, tr.absent th { color: var(--warn); }
tbody + tbody tr:first-child td, tbody + tbody tr:first-child th { border-top: 2px solid var(--line); }
tr:target td, tr:target th, tbody:target td, tbody:target th { background: #fff4cc; }
:target { scroll-margin-top: 12px; }
a.id, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
code { background: #f0f2f5; padding: 1px 4px; border-radius: 4px; }
.foot { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
ul.notes { margin: 0; padding-left: 20px; }
ul.notes li { margin: 4px 0; }
#notes { border-left: 4px solid var(--warn); }
figure { margin: 0 0 18px; text-align: center; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 12.5px; color: var(--muted); }
";

/// The whole page.
pub fn page(page: &Page<'_>) -> String {
    let report = page.report;
    let tasks = Tasks(report.tables.iter().map(|t| t.task.clone()).collect());
    let mut body = header(page);
    if !report.selections.is_empty() {
        body.push_str(&selection_section(report));
    }
    for t in &report.tables {
        body.push_str(&task_section(t, page));
    }
    if !report.heldout.is_empty() {
        body.push_str(&heldout_section(page, &tasks));
    }
    for h in &report.head_to_head {
        body.push_str(&h2h_section(h, report, &tasks));
    }
    if let Some((header, rows)) = render::power_table(report) {
        body.push_str(&power_section(report, &header, &rows));
    }
    if !page.charts.is_empty() {
        body.push_str(&plots_section(page));
    }
    if !page.papers.is_empty() {
        body.push_str("<section id=\"papers\">\n<h2>Paper tables</h2>\n");
        for (name, p) in page.papers {
            body.push_str(&paper_section(name, p, &tasks));
        }
        body.push_str("</section>\n");
    }
    if !report.notes.is_empty() || !page.plot_notes.is_empty() {
        body.push_str(&notes_section(page));
    }
    body.push_str(&runs_section(page));
    body.push_str(&reading_section(report));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{} · lpo report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(&report.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_ampersands_and_quotes() {
        assert_eq!(
            escape("<script>alert('x & \"y\"')</script>"),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("Δ reward −0.5 †"), "Δ reward −0.5 †");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn anchors_are_safe_and_injective() {
        assert_eq!(anchor("run", &["lpo-3f2a-s0"]), "run-lpo-3f2a-s0");
        assert_eq!(anchor("row", &["arith", "dpo"]), "row-arith.dpo");
        assert_eq!(anchor("row", &["a b", "<x>"]), "row-a_20b._3cx_3e");
        assert_ne!(anchor("row", &["a.b", "c"]), anchor("row", &["a", "b.c"]));
        assert_ne!(anchor("row", &["a_2e"]), anchor("row", &["a."]));
        let id = anchor("t", &["\"'&<>é|"]);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    }

    #[test]
    fn run_ids_in_notes_become_links_and_the_rest_is_escaped() {
        let ids = ["run-10", "run-1"];
        let html = link_runs("no results: run-1 & run-10 <b>", &ids);
        assert_eq!(
            html,
            "no results: <a href=\"#run-run-1\">run-1</a> &amp; <a href=\"#run-run-10\">run-10</a> &lt;b&gt;"
        );
    }

    #[test]
    fn intervals_are_set_apart_and_code_spans_escaped() {
        assert_eq!(
            cell_text("+0.58 [-0.05, +1.22]"),
            "+0.58<span class=\"ci\"> [-0.05, +1.22]</span>"
        );
        assert_eq!(cell_text("< 1e-300 ***"), "&lt; 1e-300 ***");
        assert_eq!(
            inline_code("picked `lr=<1>` (x)"),
            "picked <code>lr=&lt;1&gt;</code> (x)"
        );
    }
}
