//! Writes a run's scalars to experiment trackers: TensorBoard event files,
//! and an MLflow tracking server when a recipe asks for one.
//!
//! - [`event`]: the few messages of TensorFlow's `Event` protobuf that
//!   scalars need, declared for `prost` with TensorFlow's field numbers.
//! - [`record`]: TFRecord framing (lengths and masked CRC-32C), and a
//!   reader that checks every CRC.
//! - [`writer`]: one event file, buffered and flushed every few seconds.
//! - [`run`]: a run's `tb/` directory: which tag each column of
//!   metrics.csv, curves.csv and the summary's headline becomes, and how a
//!   resumed run keeps one value per tag and step.
//! - [`mlflow`]: one MLflow run per lpo run over the REST API, from a
//!   background thread that never stalls training.
//!
//! W&B users sync the files with `wandb sync --sync-tensorboard <dir>`.

pub mod event;
pub mod mlflow;
pub mod record;
pub mod run;
pub mod writer;

pub use event::{Event, Summary, Value};
pub use record::{read_events, read_records};
pub use run::{accumulate, RunEvents, TB_DIR};
pub use writer::EventWriter;
