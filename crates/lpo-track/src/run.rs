//! A run's TensorBoard directory, `results/<recipe>/<id>/tb/`.
//!
//! Tags are `group/name`, so the scalars dashboard shows one section per
//! group: `train/`, `coef/`, `rewards/`, `logps/` per optimizer step (the
//! columns of metrics.csv), `loss_parts/<kind>` for a weighted `loss.kind`
//! (loss_parts.csv), `heldout/` (curves.csv), `final/` (the summary's
//! headline numbers, at the last step).
//!
//! Resuming: TensorBoard keeps every value it reads. Its accumulator
//! purges a restarted run's stale steps only on a `SessionLog.START`
//! event, and a resumed run re-trains the steps after its checkpoint, so a
//! second file appended beside the first would show those steps twice.
//! Instead, every start of a run ([`RunEvents::start`]) writes the run's
//! history as the checkpoint restored it (metrics.csv and curves.csv, the
//! source of truth) into one new file in `tb-new/`, and swaps that
//! directory in for `tb/` by renames; training then appends to that file.
//! So `tb/` always holds one file with one value per tag and step, in step
//! order. The replayed events carry the wall time of the restart:
//! metrics.csv records no clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lpo_results::records::{Headline, HeldoutHeadline};
use lpo_results::{CurveRow, MetricsRow, Summary};

use crate::writer::{system_clock, Clock, EventWriter};

/// The run directory's TensorBoard directory.
pub const TB_DIR: &str = "tb";

/// The tags and values of one row of metrics.csv.
pub fn metrics_scalars(row: &MetricsRow) -> Vec<(&'static str, f64)> {
    vec![
        ("train/loss", row.loss),
        ("train/sft_loss", row.sft_loss),
        ("train/grad_norm", row.grad_norm),
        ("train/lr", row.lr),
        ("train/tokens", row.tokens as f64),
        ("train/round", f64::from(row.round)),
        ("coef/beta", row.beta),
        ("coef/alpha", row.alpha),
        ("coef/gamma", row.gamma),
        ("coef/sft_weight", row.sft_weight),
        ("rewards/chosen", row.chosen_reward),
        ("rewards/rejected", row.rejected_reward),
        ("rewards/margin", row.chosen_reward - row.rejected_reward),
        ("rewards/accuracy", row.ranking_accuracy),
        ("logps/chosen", row.chosen_logp),
        ("logps/rejected", row.rejected_logp),
    ]
}

/// The tags and values of one optimizer step: [`metrics_scalars`], then a
/// weighted `loss.kind`'s parts as `loss_parts/<kind>` (loss_parts.csv).
pub fn step_scalars(row: &MetricsRow) -> Vec<(String, f64)> {
    let columns = metrics_scalars(row)
        .into_iter()
        .map(|(tag, value)| (tag.to_string(), value));
    let parts = row
        .parts
        .iter()
        .map(|p| (format!("loss_parts/{}", p.kind), p.loss));
    columns.chain(parts).collect()
}

/// The scalars as the writers take them.
pub fn borrowed(values: &[(String, f64)]) -> Vec<(&str, f64)> {
    values.iter().map(|(t, v)| (t.as_str(), *v)).collect()
}

/// The tags and values of one row of curves.csv.
pub fn curve_scalars(row: &CurveRow) -> Vec<(&'static str, f64)> {
    vec![
        ("heldout/logps_chosen", row.chosen_logp),
        ("heldout/logps_rejected", row.rejected_logp),
        ("heldout/rewards_chosen", row.chosen_reward),
        ("heldout/rewards_rejected", row.rejected_reward),
        ("heldout/margin", row.margin),
        ("heldout/accuracy", row.ranking_accuracy),
    ]
}

/// The tags and values of a complete run's headline numbers (those it has).
pub fn final_scalars(
    headline: Option<&Headline>,
    heldout: Option<&HeldoutHeadline>,
) -> Vec<(&'static str, f64)> {
    let mut values = Vec::new();
    if let Some(h) = headline {
        values.extend([
            ("final/win_rate", h.win_rate),
            ("final/policy_reward", h.policy_reward),
            ("final/baseline_reward", h.baseline_reward),
            ("final/kl", h.kl),
        ]);
        if let Some(a) = h.policy_accuracy {
            values.push(("final/policy_pass_rate", a));
        }
        if let Some(a) = h.baseline_accuracy {
            values.push(("final/baseline_pass_rate", a));
        }
    }
    if let Some(h) = heldout {
        values.extend([
            ("final/heldout_accuracy", h.ranking_accuracy),
            ("final/heldout_margin", h.margin),
            ("final/heldout_ndcg", h.ndcg),
        ]);
    }
    values
}

/// The event file of a running run.
pub struct RunEvents {
    writer: EventWriter,
}

impl RunEvents {
    /// Starts `run_dir/tb/` afresh with the run's history so far (see the
    /// module's documentation), on the system clock.
    pub fn start(run_dir: &Path, metrics: &[MetricsRow], curves: &[CurveRow]) -> Result<Self> {
        RunEvents::start_with(run_dir, metrics, curves, system_clock(), None)
    }

    /// [`RunEvents::start`] with a given clock, and the file's name
    /// (TensorBoard's pattern, with this process, when `None`).
    pub fn start_with(
        run_dir: &Path,
        metrics: &[MetricsRow],
        curves: &[CurveRow],
        clock: Clock,
        name: Option<&str>,
    ) -> Result<Self> {
        let (new, current, old) = (
            run_dir.join("tb-new"),
            run_dir.join(TB_DIR),
            run_dir.join("tb-old"),
        );
        let _ = std::fs::remove_dir_all(&new);
        std::fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
        let writer = match name {
            Some(name) => EventWriter::create(&new.join(name), clock)?,
            None => EventWriter::create_in(&new, clock)?,
        };
        let mut events = RunEvents { writer };
        for row in metrics {
            events.metrics(row)?;
        }
        for row in curves {
            events.curve(row)?;
        }
        events.writer.sync()?;
        let _ = std::fs::remove_dir_all(&old);
        if current.exists() {
            rename(&current, &old)?;
        }
        rename(&new, &current)?;
        let _ = std::fs::remove_dir_all(&old);
        let file: PathBuf = current.join(events.writer.path().file_name().expect("a file"));
        events.writer.moved_to(file);
        Ok(events)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Appends one row of metrics.csv, with its parts' losses (loss_parts.csv).
    pub fn metrics(&mut self, row: &MetricsRow) -> Result<()> {
        self.scalars(i64::from(row.step), &borrowed(&step_scalars(row)))
    }

    /// Appends scalars at `step` (a step's, computed once for every
    /// tracker by the caller).
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        self.writer.scalars(step, values)
    }

    /// Appends one row of curves.csv.
    pub fn curve(&mut self, row: &CurveRow) -> Result<()> {
        self.writer
            .scalars(i64::from(row.step), &curve_scalars(row))
    }

    /// Appends the headline numbers of a complete run at `step` (its last)
    /// and flushes.
    pub fn finish(&mut self, summary: &Summary, step: u32) -> Result<()> {
        self.finish_with(summary.headline.as_ref(), summary.heldout.as_ref(), step)
    }

    /// [`RunEvents::finish`] with the headline numbers given.
    pub fn finish_with(
        &mut self,
        headline: Option<&Headline>,
        heldout: Option<&HeldoutHeadline>,
        step: u32,
    ) -> Result<()> {
        let values = final_scalars(headline, heldout);
        if !values.is_empty() {
            self.writer.scalars(i64::from(step), &values)?;
        }
        self.writer.flush()
    }

    /// Flushes when a few seconds have passed since the last flush.
    pub fn flush_if_due(&mut self) -> Result<()> {
        self.writer.flush_if_due()
    }

    /// Hands everything written to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// What TensorBoard's `EventAccumulator` shows of the scalars in `dir`:
/// per tag, the (step, value) of every scalar, from the event files
/// (`*tfevents*`) in name order, each file's events in order. Files of
/// version `brain.Event:2` are never purged by step order (only by a
/// `SessionLog.START` event, which lpo does not write), so a repeated step
/// shows here as it would there. Every record's CRC is checked.
pub fn accumulate(dir: &Path) -> Result<BTreeMap<String, Vec<(i64, f32)>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
    });
    files.sort();
    let mut scalars: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for file in files {
        for event in crate::record::read_events(&file)? {
            for value in event.summary.iter().flat_map(|s| &s.value) {
                if let Some(v) = value.simple_value {
                    scalars
                        .entry(value.tag.clone())
                        .or_default()
                        .push((event.step, v));
                }
            }
        }
    }
    Ok(scalars)
}
