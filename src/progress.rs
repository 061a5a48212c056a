//! Terminal progress bars (indicatif) for long phases; one summary line per
//! phase on stderr so logs without a terminal still say what happened.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar per phase, prefixed with what it belongs to (e.g. a run id).
pub struct Bars {
    prefix: String,
    bar: Option<ProgressBar>,
    phase: String,
    started: Instant,
    detail: String,
    hidden: bool,
}

impl Bars {
    /// Hides the bars (phase summary lines are still printed).
    pub fn set_hidden(&mut self, hidden: bool) {
        self.hidden = hidden;
    }

    /// Bars labelled with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Bars {
        Bars {
            prefix: prefix.into(),
            bar: None,
            phase: String::new(),
            started: Instant::now(),
            detail: String::new(),
            hidden: false,
        }
    }
}

impl lpo_train::Progress for Bars {
    fn start(&mut self, phase: &str, total: u64) {
        let bar = if self.hidden {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {msg:<22} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(self.prefix.clone());
        bar.set_message(phase.to_string());
        self.bar = Some(bar);
        self.phase = phase.to_string();
        self.started = Instant::now();
        self.detail.clear();
    }

    fn update(&mut self, done: u64, detail: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            if !detail.is_empty() {
                bar.set_message(format!("{} {detail}", self.phase));
            }
        }
        self.detail = detail.to_string();
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.detail)
        };
        eprintln!(
            "{} {} done in {:.1}s{detail}",
            self.prefix,
            self.phase,
            self.started.elapsed().as_secs_f64()
        );
    }
}
