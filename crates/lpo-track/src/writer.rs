//! One event file, written as events come and flushed every few seconds.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prost::Message;

use crate::event::Event;
use crate::record::write_record;

/// How long written events may wait in the buffer: TensorBoard polls its
/// directories every few seconds, so a shorter wait shows nothing sooner.
pub const FLUSH_EVERY: Duration = Duration::from_secs(3);

/// Where an event's wall time comes from: the system clock, or a fixed
/// value in tests (wall time is part of each event's bytes).
pub type Clock = Box<dyn FnMut() -> f64 + Send>;

/// The system clock in seconds since the Unix epoch.
pub fn system_clock() -> Clock {
    Box::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// An event file being written.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
    clock: Clock,
    flushed: Instant,
}

impl EventWriter {
    /// A new event file in `dir` named as TensorBoard expects:
    /// `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>` (it loads the
    /// files of a directory in name order, so a later process's file sorts
    /// after an earlier one's).
    pub fn create_in(dir: &Path, clock: Clock) -> Result<EventWriter> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "events.out.tfevents.{secs:010}.{}.{}.0",
            hostname(),
            std::process::id()
        );
        EventWriter::create(&dir.join(name), clock)
    }

    /// A new event file at `path`, its first event the file version.
    pub fn create(path: &Path, mut clock: Clock) -> Result<EventWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let wall_time = clock();
        let mut writer = EventWriter {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
            clock,
            flushed: Instant::now(),
        };
        writer.write(&Event::version_event(wall_time))?;
        Ok(writer)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notes that the file was renamed (its directory swapped in) to `path`;
    /// the open file is the same.
    pub(crate) fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Writes `values` (tag, value) at `step`, stamped with the clock.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let wall_time = (self.clock)();
        self.write(&Event::scalars(wall_time, step, values))?;
        self.flush_if_due()
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        write_record(&mut self.out, &event.encode_to_vec())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes when [`FLUSH_EVERY`] has passed since the last flush.
    pub fn flush_if_due(&mut self) -> Result<()> {
        if self.flushed.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands everything written to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.flushed = Instant::now();
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes and syncs the file to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

/// This machine's name (part of TensorBoard's file names), with anything
/// but letters, digits, `-` and `_` replaced, so the name stays one token.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}
