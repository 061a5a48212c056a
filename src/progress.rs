//! Progress display.
//!
//! `lpo run` alone draws an indicatif bar per phase (SFT, sampling,
//! training, evaluation) with the loss, rate and ETA, and prints one summary
//! line per phase so logs without a terminal still say what happened.
//! Under `lpo sweep` a run instead writes machine-readable progress lines to
//! stdout ([`PIPE_TAG`]); the sweep parses them and draws one bar for the
//! sweep and one per running run ([`SweepBars`]).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Prefix of a progress line a run writes for its sweep.
pub const PIPE_TAG: &str = "@lpo-progress";

fn phase_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg:<28} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
        .expect("valid template")
        .progress_chars("=> ")
}

/// How a run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars on the terminal.
    Bars,
    /// Summary lines only.
    Lines,
    /// Machine-readable lines on stdout for `lpo sweep`.
    Pipe,
}

/// A run's progress reporter.
pub struct Bars {
    prefix: String,
    bar: Option<ProgressBar>,
    phase: String,
    started: Instant,
    detail: String,
    mode: Mode,
}

impl Bars {
    /// A reporter labelled with `prefix`.
    pub fn new(prefix: impl Into<String>, mode: Mode) -> Bars {
        Bars {
            prefix: prefix.into(),
            bar: None,
            phase: String::new(),
            started: Instant::now(),
            detail: String::new(),
            mode,
        }
    }

    fn pipe(&self, done: u64, total: u64) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{PIPE_TAG}\t{}\t{done}\t{total}\t{}",
            self.phase, self.detail
        );
        let _ = out.flush();
    }
}

impl lpo_train::Progress for Bars {
    fn start(&mut self, phase: &str, total: u64) {
        self.phase = phase.to_string();
        self.started = Instant::now();
        self.detail.clear();
        match self.mode {
            Mode::Bars => {
                let bar = ProgressBar::new(total);
                bar.set_style(phase_style());
                bar.set_prefix(self.prefix.clone());
                bar.set_message(phase.to_string());
                self.bar = Some(bar);
            }
            Mode::Lines => {}
            Mode::Pipe => self.pipe(0, total),
        }
    }

    fn update(&mut self, done: u64, detail: &str) {
        self.detail = detail.to_string();
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(done);
                if !detail.is_empty() {
                    bar.set_message(format!("{} {detail}", self.phase));
                }
            }
            (None, Mode::Pipe) => self.pipe(done, 0),
            _ => {}
        }
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
        let line = format!(
            "{} {} done in {:.1}s{detail}",
            self.prefix,
            self.phase,
            self.started.elapsed().as_secs_f64()
        );
        if self.mode == Mode::Pipe {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// The sweep's display: a bar for the runs and one per running run.
pub struct SweepBars {
    multi: MultiProgress,
    sweep: ProgressBar,
    terminal: bool,
}

impl SweepBars {
    /// A display for `total` runs, `done` of them complete already.
    pub fn new(total: u64, done: u64) -> SweepBars {
        let multi = MultiProgress::new();
        let sweep = multi.add(ProgressBar::new(total));
        sweep.set_style(
            ProgressStyle::with_template(
                "sweep [{bar:30}] {pos}/{len} runs, {elapsed} elapsed, ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        sweep.set_position(done);
        SweepBars {
            multi,
            sweep,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// A bar for a run that has just started.
    pub fn run_bar(&self, prefix: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(1));
        bar.set_style(phase_style());
        bar.set_prefix(prefix.to_string());
        bar
    }

    /// Applies one line of a run's stdout to its bar (progress) or prints it.
    pub fn feed(&self, bar: &ProgressBar, line: &str) {
        let Some(rest) = line.strip_prefix(PIPE_TAG) else {
            self.println(line);
            return;
        };
        let fields: Vec<&str> = rest.trim_start_matches('\t').splitn(4, '\t').collect();
        if let [phase, done, total, detail] = fields.as_slice() {
            let total: u64 = total.parse().unwrap_or(0);
            if total > 0 {
                bar.reset();
                bar.set_length(total);
            }
            bar.set_position(done.parse().unwrap_or(0));
            bar.set_message(if detail.is_empty() {
                phase.to_string()
            } else {
                format!("{phase} {detail}")
            });
        }
    }

    /// A log line above the bars (plain stderr without a terminal).
    pub fn println(&self, line: &str) {
        if self.terminal {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// One more run finished.
    pub fn run_finished(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
        self.sweep.inc(1);
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.sweep.finish_and_clear();
    }
}
