//! Small, dependency-free SVG charts: line charts of training curves (with
//! optional faint raw series under smoothed ones), scatter plots (the
//! reward-vs-KL frontier) and bars with interval whiskers. Written by hand
//! because the charts are simple and a plotting crate would pull in font
//! handling that a headless CI machine may not have.
//!
//! Text widths are estimated (0.6 em per character), and every chart is
//! made wide enough for its title and legend, so nothing is cut at an edge.

use std::fmt::Write as _;

const MIN_W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 72.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 52.0;
const PLOT_MIN_W: f64 = 440.0;
const TITLE_SIZE: f64 = 15.0;
const TEXT_SIZE: f64 = 12.0;
/// Colours of methods, in order.
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Estimated width in pixels of `text` at `size` (sans-serif, 0.6 em per
/// character: generous for lower case, about right for digits).
pub fn text_width(text: &str, size: f64) -> f64 {
    0.6 * size * text.chars().count() as f64
}

/// About five round tick values covering [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    // Integer multiples of the step, rounded to its decimals so 3 x 0.2
    // prints (and compares) as 0.6.
    let decimals = 10f64.powi((-step.log10().floor()).max(0.0) as i32);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let out: Vec<f64> = (first..=last)
        .map(|k| (k as f64 * step * decimals).round() / decimals)
        .collect();
    out
}

/// Geometry of one chart: the plot area and the data ranges.
struct Frame {
    w: f64,
    right: f64,
    x: (f64, f64),
    y: (f64, f64),
    /// Only integer x ticks (steps).
    x_integral: bool,
}

impl Frame {
    /// A frame wide enough for `title` and a legend of `legend` names.
    fn new(title: &str, legend: &[&str], x: (f64, f64), y: (f64, f64)) -> Frame {
        let longest = legend
            .iter()
            .map(|n| text_width(n, TEXT_SIZE))
            .fold(0.0, f64::max);
        let right = if legend.is_empty() {
            24.0
        } else {
            longest + 52.0
        };
        let w = (LEFT + PLOT_MIN_W + right)
            .max(text_width(title, TITLE_SIZE) + 40.0)
            .max(MIN_W)
            .ceil();
        Frame {
            w,
            right,
            x,
            y,
            x_integral: false,
        }
    }

    fn x1(&self) -> f64 {
        self.w - self.right
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (self.x1() - LEFT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - TOP - BOTTOM)
    }

    /// Opening tag, background and the title centred on the whole canvas.
    fn header(&self, out: &mut String, title: &str) {
        let w = self.w;
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{H}" viewBox="0 0 {w} {H}" font-family="sans-serif" font-size="{TEXT_SIZE}">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="{TITLE_SIZE}">{}</text>
"#,
            w / 2.0,
            escape(title)
        );
    }

    fn axes(&self, out: &mut String, x_label: &str, y_label: &str, x_ticks: bool) {
        let (x0, x1, y0, y1) = (LEFT, self.x1(), TOP, H - BOTTOM);
        let _ = writeln!(
            out,
            r#"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            x1 - x0,
            y1 - y0
        );
        for t in ticks(self.y.0, self.y.1) {
            let y = self.py(t);
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                fmt_tick(t)
            );
        }
        if x_ticks {
            let integral = self.x_integral;
            for t in ticks(self.x.0, self.x.1)
                .into_iter()
                .filter(|t| !integral || t.fract() == 0.0)
            {
                let x = self.px(t);
                let _ = writeln!(
                    out,
                    r#"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                    y1 + 5.0,
                    y1 + 18.0,
                    fmt_tick(t)
                );
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            H - 12.0,
            escape(x_label)
        );
        let _ = writeln!(
            out,
            r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            escape(y_label)
        );
    }

    /// Legend entries: a line (dashed or not) or a dot, and the name.
    fn legend(&self, out: &mut String, entries: &[Legend]) {
        for (i, e) in entries.iter().enumerate() {
            let y = TOP + 12.0 + 18.0 * i as f64;
            let x = self.x1() + 12.0;
            match e.mark {
                Mark::Line { dashed } => {
                    let dash = if dashed {
                        r#" stroke-dasharray="5 3""#
                    } else {
                        ""
                    };
                    let _ = write!(
                        out,
                        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/>"#,
                        x + 22.0,
                        e.color
                    );
                }
                Mark::Dot => {
                    let _ = write!(
                        out,
                        r#"<circle cx="{}" cy="{y}" r="5" fill="{}"/>"#,
                        x + 11.0,
                        e.color
                    );
                }
            }
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}">{}</text>"#,
                x + 28.0,
                y + 4.0,
                escape(&e.name)
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Mark {
    Line { dashed: bool },
    Dot,
}

struct Legend {
    name: String,
    color: &'static str,
    mark: Mark,
}

fn fmt_tick(t: f64) -> String {
    if t.abs() >= 1000.0 || (t != 0.0 && t.abs() < 0.01) {
        format!("{t:.1e}")
    } else {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Bounds of finite points, or the unit square.
fn bounds<'a>(points: impl Iterator<Item = &'a (f64, f64)>) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in points.filter(|p| p.0.is_finite() && p.1.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return (0.0, 1.0, 0.0, 1.0);
    }
    (x0, x1, y0, y1)
}

/// One line of a chart.
pub struct Series {
    /// Legend name (faint series have no legend entry).
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed stroke.
    pub dashed: bool,
    /// Colour index (series sharing a method share a colour).
    pub color: usize,
    /// Drawn thin and translucent under the others (raw per-batch values).
    pub faint: bool,
}

impl Series {
    /// A solid or dashed line with a legend entry.
    pub fn line(
        name: impl Into<String>,
        points: Vec<(f64, f64)>,
        color: usize,
        dashed: bool,
    ) -> Series {
        Series {
            name: name.into(),
            points,
            dashed,
            color,
            faint: false,
        }
    }

    /// A faint raw series with no legend entry.
    pub fn faint(points: Vec<(f64, f64)>, color: usize, dashed: bool) -> Series {
        Series {
            name: String::new(),
            points,
            dashed,
            color,
            faint: true,
        }
    }
}

/// Exponential moving average with `ema_0 = x_0` and weight
/// `alpha = 2 / (span + 1)`: `ema_t = alpha x_t + (1 - alpha) ema_{t-1}`.
pub fn ema(points: &[(f64, f64)], span: f64) -> Vec<(f64, f64)> {
    let alpha = 2.0 / (span.max(1.0) + 1.0);
    let mut out = Vec::with_capacity(points.len());
    let mut acc: Option<f64> = None;
    for &(x, y) in points {
        if !y.is_finite() {
            continue;
        }
        let v = acc.map_or(y, |a| alpha * y + (1.0 - alpha) * a);
        acc = Some(v);
        out.push((x, v));
    }
    out
}

/// The EMA span used for per-batch curves of `steps` steps: steps / 20,
/// at least 1.
pub fn ema_span(steps: usize) -> f64 {
    (steps as f64 / 20.0).max(1.0)
}

/// A line chart.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (x0, x1, y0, y1) = bounds(series.iter().flat_map(|s| s.points.iter()));
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let names: Vec<&str> = series
        .iter()
        .filter(|s| !s.faint)
        .map(|s| s.name.as_str())
        .collect();
    let mut f = Frame::new(title, &names, (x0, x1.max(x0 + 1.0)), (y0 - pad, y1 + pad));
    f.x_integral = series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|p| !p.0.is_finite() || p.0.fract() == 0.0);
    let mut out = String::new();
    f.header(&mut out, title);
    f.axes(&mut out, x_label, y_label, true);
    // Faint series first, so the smoothed lines are drawn over them.
    let mut ordered: Vec<&Series> = series.iter().filter(|s| s.faint).collect();
    ordered.extend(series.iter().filter(|s| !s.faint));
    for s in ordered {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let style = if s.faint {
            r#" stroke-width="1" stroke-opacity="0.25""#
        } else {
            r#" stroke-width="2""#
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}"{style}{dash} points="{}"/>"#,
            color(s.color),
            pts.join(" ")
        );
    }
    let legend: Vec<Legend> = series
        .iter()
        .filter(|s| !s.faint)
        .map(|s| Legend {
            name: s.name.clone(),
            color: color(s.color),
            mark: Mark::Line { dashed: s.dashed },
        })
        .collect();
    f.legend(&mut out, &legend);
    out.push_str("</svg>\n");
    out
}

/// One point of a scatter plot.
pub struct Point {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// Colour index (`None`: black, e.g. the reference).
    pub color: Option<usize>,
    /// Tooltip (e.g. the run id).
    pub tip: String,
}

/// A scatter plot with a legend of `(name, colour index)`; `None` is black.
/// The x range always includes 0 (KL of the reference).
pub fn scatter_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[Point],
    legend: &[(String, Option<usize>)],
) -> String {
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.y)).collect();
    let (x0, x1, y0, y1) = bounds(xy.iter());
    let (x0, x1) = (x0.min(0.0), x1.max(0.0));
    let xpad = ((x1 - x0) * 0.05).max(1e-3);
    let ypad = ((y1 - y0) * 0.08).max(1e-3);
    let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
    let f = Frame::new(
        title,
        &names,
        (x0 - xpad, x1 + xpad),
        (y0 - ypad, y1 + ypad),
    );
    let mut out = String::new();
    f.header(&mut out, title);
    f.axes(&mut out, x_label, y_label, true);
    let fill = |c: Option<usize>| c.map_or("black", color);
    for p in points.iter().filter(|p| p.x.is_finite() && p.y.is_finite()) {
        let _ = writeln!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}" fill-opacity="0.85" stroke="white"><title>{}</title></circle>"#,
            f.px(p.x),
            f.py(p.y),
            fill(p.color),
            escape(&p.tip)
        );
    }
    let entries: Vec<Legend> = legend
        .iter()
        .map(|(name, c)| Legend {
            name: name.clone(),
            color: fill(*c),
            mark: Mark::Dot,
        })
        .collect();
    f.legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

/// One bar: label, value and interval.
pub struct Bar {
    /// Label under the bar.
    pub label: String,
    /// Height.
    pub value: f64,
    /// Interval whisker.
    pub lo: f64,
    /// Interval whisker.
    pub hi: f64,
    /// Colour index.
    pub color: usize,
}

/// Bars with interval whiskers and an optional reference line (e.g. 0.5).
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar], reference: Option<f64>) -> String {
    let y1 = bars
        .iter()
        .map(|b| b.hi)
        .filter(|v| v.is_finite())
        .fold(reference.unwrap_or(0.0), f64::max);
    let f = Frame::new(
        title,
        &[],
        (0.0, bars.len().max(1) as f64),
        (0.0, (y1 * 1.1).max(1e-6)),
    );
    let mut out = String::new();
    f.header(&mut out, title);
    f.axes(&mut out, "", y_label, false);
    let slot = (f.x1() - LEFT) / bars.len().max(1) as f64;
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * (i as f64 + 0.15);
        let width = slot * 0.7;
        let top = f.py(b.value);
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{}" opacity="0.8"/>"#,
            f.py(0.0) - top,
            color(b.color)
        );
        let cx = x + width / 2.0;
        if b.lo.is_finite() && b.hi.is_finite() {
            let (lo, hi) = (f.py(b.lo), f.py(b.hi));
            let _ = writeln!(
                out,
                r#"<line x1="{cx:.1}" y1="{lo:.1}" x2="{cx:.1}" y2="{hi:.1}" stroke="black"/><line x1="{:.1}" y1="{lo:.1}" x2="{:.1}" y2="{lo:.1}" stroke="black"/><line x1="{:.1}" y1="{hi:.1}" x2="{:.1}" y2="{hi:.1}" stroke="black"/>"#,
                cx - 6.0,
                cx + 6.0,
                cx - 6.0,
                cx + 6.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text transform="translate({cx:.1} {}) rotate(30)" font-size="11">{}</text>"#,
            H - BOTTOM + 14.0,
            escape(&b.label)
        );
    }
    if let Some(r) = reference {
        let y = f.py(r);
        let _ = writeln!(
            out,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="black" stroke-dasharray="4 3"/>"#,
            f.x1()
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        // A step of 2 would need 8 ticks; 5 needs 3.
        assert_eq!(ticks(-3.7, 12.2), [0.0, 5.0, 10.0]);
        assert_eq!(ticks(-0.35, 0.1), [-0.3, -0.2, -0.1, 0.0, 0.1]);
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"))
    }

    /// Every text's estimated extent lies inside the canvas.
    fn assert_text_inside(svg: &str) {
        let doc = parse(svg);
        let root = doc.root_element();
        let w: f64 = root.attribute("width").unwrap().parse().unwrap();
        for t in doc.descendants().filter(|n| n.has_tag_name("text")) {
            let Some(x) = t.attribute("x") else { continue };
            let x: f64 = x.parse().unwrap();
            let size: f64 = t
                .attribute("font-size")
                .map_or(TEXT_SIZE, |s| s.parse().unwrap());
            let width = text_width(t.text().unwrap_or(""), size);
            let (lo, hi) = match t.attribute("text-anchor") {
                Some("middle") => (x - width / 2.0, x + width / 2.0),
                Some("end") => (x - width, x),
                _ => (x, x + width),
            };
            assert!(lo >= 0.0 && hi <= w, "{:?} at {lo}..{hi} of {w}", t.text());
        }
    }

    #[test]
    fn charts_escape_text_and_parse_as_xml() {
        let svg = line_chart(
            "a<b",
            "step",
            "loss",
            &[
                Series::line(
                    "x&y",
                    vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 0.5)],
                    0,
                    false,
                ),
                Series::faint(vec![(0.0, 1.2), (1.0, 0.8), (2.0, 0.4)], 0, false),
            ],
        );
        assert!(svg.contains("a&lt;b") && svg.contains("x&amp;y"));
        assert!(!svg.contains("NaN"));
        let doc = parse(&svg);
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .collect();
        assert_eq!(lines.len(), 2);
        // The faint raw series is drawn first (underneath) and translucent.
        assert_eq!(lines[0].attribute("stroke-opacity"), Some("0.25"));
        assert_eq!(lines[1].attribute("stroke-opacity"), None);
        let bars = bar_chart(
            "t",
            "win rate",
            &[Bar {
                label: "lpo".into(),
                value: 0.6,
                lo: 0.5,
                hi: 0.7,
                color: 0,
            }],
            Some(0.5),
        );
        assert!(parse(&bars).descendants().any(|n| n.has_tag_name("rect")));
    }

    #[test]
    fn long_titles_and_legends_widen_the_canvas_instead_of_being_cut() {
        let title = "quickstart: policy log-likelihood of the best (chosen) and worst (rejected) response on held-out lists";
        let svg = line_chart(
            title,
            "step",
            "log-likelihood",
            &[Series::line(
                "a rather long method name [loss.beta=0.1, train.learning_rate=0.0001] chosen",
                vec![(0.0, -20.0), (10.0, -25.0)],
                1,
                false,
            )],
        );
        let doc = parse(&svg);
        let w: f64 = doc
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap();
        assert!(w > MIN_W, "{w}");
        assert_text_inside(&svg);
        assert_text_inside(&line_chart("short", "x", "y", &[]));
    }

    #[test]
    fn scatter_has_a_dot_per_point_a_legend_and_zero_in_range() {
        let svg = scatter_chart(
            "frontier",
            "KL",
            "reward",
            &[
                Point {
                    x: 0.0,
                    y: 4.0,
                    color: None,
                    tip: "reference".into(),
                },
                Point {
                    x: 1.5,
                    y: 5.0,
                    color: Some(0),
                    tip: "run a".into(),
                },
                Point {
                    x: 2.5,
                    y: 4.5,
                    color: Some(1),
                    tip: "run b".into(),
                },
            ],
            &[
                ("reference".into(), None),
                ("lpo".into(), Some(0)),
                ("dpo".into(), Some(1)),
            ],
        );
        let doc = parse(&svg);
        // 3 points + 3 legend dots.
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            6
        );
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for t in ["KL", "reward", "lpo", "dpo", "reference", "0"] {
            assert!(texts.contains(&t), "{t}: {texts:?}");
        }
        assert_text_inside(&svg);
    }

    #[test]
    fn ema_starts_at_the_first_value_and_smooths() {
        let raw = vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN), (3.0, 3.0)];
        let s = ema(&raw, 3.0); // alpha = 0.5
        assert_eq!(s, vec![(0.0, 1.0), (1.0, 2.0), (3.0, 2.5)]);
        assert_eq!(ema(&raw, 1.0)[1], (1.0, 3.0));
        assert_eq!(ema_span(10), 1.0);
        assert_eq!(ema_span(400), 20.0);
    }
}
