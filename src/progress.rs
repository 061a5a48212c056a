//! Progress display.
//!
//! `lpo run` alone draws an indicatif bar per phase (SFT, sampling,
//! training, evaluation) with the loss, rate and ETA, and prints one summary
//! line per phase so logs without a terminal still say what happened.
//! Under `lpo sweep` a run instead writes machine-readable progress lines to
//! stdout ([`PIPE_TAG`]); the sweep's scheduler (`lpo_exec::local`) hands
//! each line to its observer, [`SweepBars`], which parses them and draws one
//! bar for the sweep and one per running run.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lpo_exec::local::Observer;

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

/// A run's progress reporter. Phases nest (a round's reference
/// log-probabilities start inside training): a phase started while another
/// is open suspends it, and finishing the inner one resumes the outer with
/// its own name, position and detail, so every summary line names its phase.
pub struct Bars {
    prefix: String,
    bar: Option<ProgressBar>,
    /// The open phase; suspended outer ones below it.
    phases: Vec<Phase>,
    mode: Mode,
}

/// One open phase.
struct Phase {
    name: String,
    started: Instant,
    total: u64,
    done: u64,
    detail: String,
}

impl Bars {
    /// A reporter labelled with `prefix`.
    pub fn new(prefix: impl Into<String>, mode: Mode) -> Bars {
        Bars {
            prefix: prefix.into(),
            bar: None,
            phases: Vec::new(),
            mode,
        }
    }

    fn pipe(&self, done: u64, total: u64) {
        let Some(phase) = self.phases.last() else {
            return;
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{PIPE_TAG}\t{}\t{done}\t{total}\t{}",
            phase.name, phase.detail
        );
        let _ = out.flush();
    }

    /// Shows the open phase (a new bar, or a pipe line) from its position.
    fn show(&mut self) {
        let Some(phase) = self.phases.last() else {
            return;
        };
        match self.mode {
            Mode::Bars => {
                let bar = ProgressBar::new(phase.total);
                bar.set_style(phase_style());
                bar.set_prefix(self.prefix.clone());
                bar.set_position(phase.done);
                bar.set_message(match phase.detail.is_empty() {
                    true => phase.name.clone(),
                    false => format!("{} {}", phase.name, phase.detail),
                });
                self.bar = Some(bar);
            }
            Mode::Lines => {}
            Mode::Pipe => self.pipe(phase.done, phase.total),
        }
    }
}

impl lpo_train::Progress for Bars {
    fn start(&mut self, phase: &str, total: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.phases.push(Phase {
            name: phase.to_string(),
            started: Instant::now(),
            total,
            done: 0,
            detail: String::new(),
        });
        self.show();
    }

    fn update(&mut self, done: u64, detail: &str) {
        let Some(phase) = self.phases.last_mut() else {
            return;
        };
        phase.done = done;
        phase.detail = detail.to_string();
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(done);
                if !detail.is_empty() {
                    bar.set_message(format!("{} {detail}", phase.name));
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
        let Some(phase) = self.phases.pop() else {
            return;
        };
        let detail = if phase.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", phase.detail)
        };
        let line = format!(
            "{} {} done in {:.1}s{detail}",
            self.prefix,
            phase.name,
            phase.started.elapsed().as_secs_f64()
        );
        if self.mode == Mode::Pipe {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
        self.show();
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
}

impl Observer for SweepBars {
    type Run = ProgressBar;

    /// A bar for a run that has just started.
    fn run_started(&self, prefix: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(1));
        bar.set_style(phase_style());
        bar.set_prefix(prefix.to_string());
        bar
    }

    /// Applies one line of a run's stdout to its bar (progress) or prints it.
    fn feed(&self, bar: &ProgressBar, line: &str) {
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

    /// One more run finished.
    fn run_finished(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
        self.sweep.inc(1);
    }

    /// A log line above the bars (plain stderr without a terminal).
    fn println(&self, line: &str) {
        if self.terminal {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Removes the bars.
    fn finish(&self) {
        self.sweep.finish_and_clear();
    }
}
