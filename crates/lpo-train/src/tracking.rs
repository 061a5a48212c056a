//! The run's TensorBoard event file (`tb/`, written by [`lpo_track`]):
//! started once the resume point has restored the run's history, so it
//! holds that history and then each step and curve as training makes them;
//! the headline numbers at the end. Never read back: metrics.csv and
//! curves.csv stay the source of truth.

use std::path::Path;

use anyhow::Result;
use lpo_results::{CurveRow, MetricsRow, Summary};
use lpo_track::RunEvents;

/// The run's events, once training has started.
#[derive(Default)]
pub(crate) struct Tracker {
    events: Option<RunEvents>,
}

impl Tracker {
    /// Replaces `run_dir/tb/` by one file with `metrics` and `curves` (the
    /// history a resume restored; none for a fresh run).
    pub(crate) fn start(
        &mut self,
        run_dir: &Path,
        metrics: &[MetricsRow],
        curves: &[CurveRow],
    ) -> Result<()> {
        self.events = Some(RunEvents::start(run_dir, metrics, curves)?);
        Ok(())
    }

    /// Appends a step's metrics (flushed every few seconds).
    pub(crate) fn metrics(&mut self, row: &MetricsRow) -> Result<()> {
        self.events.as_mut().map_or(Ok(()), |e| e.metrics(row))
    }

    /// Appends a held-out curve point.
    pub(crate) fn curve(&mut self, row: &CurveRow) -> Result<()> {
        self.events.as_mut().map_or(Ok(()), |e| e.curve(row))
    }

    /// Appends a complete run's headline numbers at its last step, `step`.
    pub(crate) fn finish(&mut self, summary: &Summary, step: u32) -> Result<()> {
        self.events
            .as_mut()
            .map_or(Ok(()), |e| e.finish(summary, step))
    }

    /// Hands what is buffered to the file (a failed run's last steps).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.events.as_mut().map_or(Ok(()), RunEvents::flush)
    }
}
