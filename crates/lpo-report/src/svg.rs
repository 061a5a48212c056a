//! Small, dependency-free SVG charts: line charts of training curves and
//! bars with interval whiskers. Written by hand because the charts are
//! simple and a plotting crate would pull in font handling that a headless
//! CI machine may not have.

use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - TOP - BOTTOM)
    }
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        (W - RIGHT + LEFT) / 2.0,
        escape(title)
    );
}

fn axes(out: &mut String, f: &Frame, x_label: &str, y_label: &str, x_ticks: bool) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = writeln!(
        out,
        r#"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        x1 - x0,
        y1 - y0
    );
    for t in ticks(f.y.0, f.y.1) {
        let y = f.py(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    if x_ticks {
        for t in ticks(f.x.0, f.x.1) {
            let x = f.px(t);
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
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (y0 + y1) / 2.0,
        escape(y_label)
    );
}

fn fmt_tick(t: f64) -> String {
    if t.abs() >= 1000.0 || (t != 0.0 && t.abs() < 0.01) {
        format!("{t:.1e}")
    } else {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn legend(out: &mut String, names: &[(String, &str, bool)]) {
    for (i, (name, color, dashed)) in names.iter().enumerate() {
        let y = TOP + 12.0 + 18.0 * i as f64;
        let x = W - RIGHT + 12.0;
        let dash = if *dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            x + 22.0,
            x + 28.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// One line of a chart: name, points, dashed or not.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed stroke.
    pub dashed: bool,
    /// Colour index (series sharing a method share a colour).
    pub color: usize,
}

/// A line chart.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in finite {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let f = Frame {
        x: (x0, x1.max(x0 + 1.0)),
        y: (y0 - pad, y1 + pad),
    };
    let mut out = String::new();
    header(&mut out, title);
    axes(&mut out, &f, x_label, y_label, true);
    for s in series {
        let color = COLORS[s.color % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
            pts.join(" ")
        );
    }
    let names: Vec<(String, &str, bool)> = series
        .iter()
        .map(|s| (s.name.clone(), COLORS[s.color % COLORS.len()], s.dashed))
        .collect();
    legend(&mut out, &names);
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
        .fold(reference.unwrap_or(0.0), f64::max);
    let f = Frame {
        x: (0.0, bars.len().max(1) as f64),
        y: (0.0, (y1 * 1.1).max(1e-6)),
    };
    let mut out = String::new();
    header(&mut out, title);
    axes(&mut out, &f, "", y_label, false);
    let slot = (W - LEFT - RIGHT) / bars.len().max(1) as f64;
    for (i, b) in bars.iter().enumerate() {
        let color = COLORS[b.color % COLORS.len()];
        let x = LEFT + slot * (i as f64 + 0.15);
        let width = slot * 0.7;
        let top = f.py(b.value);
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{color}" opacity="0.8"/>"#,
            f.py(0.0) - top
        );
        let cx = x + width / 2.0;
        let (lo, hi) = (f.py(b.lo), f.py(b.hi));
        let _ = writeln!(
            out,
            r#"<line x1="{cx:.1}" y1="{lo:.1}" x2="{cx:.1}" y2="{hi:.1}" stroke="black"/><line x1="{:.1}" y1="{lo:.1}" x2="{:.1}" y2="{lo:.1}" stroke="black"/><line x1="{:.1}" y1="{hi:.1}" x2="{:.1}" y2="{hi:.1}" stroke="black"/>"#,
            cx - 6.0,
            cx + 6.0,
            cx - 6.0,
            cx + 6.0
        );
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
            W - RIGHT
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

    #[test]
    fn charts_escape_text_and_close_the_document() {
        let svg = line_chart(
            "a<b",
            "step",
            "loss",
            &[Series {
                name: "x&y".into(),
                points: vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 0.5)],
                dashed: false,
                color: 0,
            }],
        );
        assert!(
            svg.contains("a&lt;b") && svg.contains("x&amp;y") && svg.trim_end().ends_with("</svg>")
        );
        assert!(!svg.contains("NaN"));
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
        assert!(bars.contains("<rect") && bars.trim_end().ends_with("</svg>"));
    }
}
