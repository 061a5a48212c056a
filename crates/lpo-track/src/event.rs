//! The part of TensorFlow's `tensorflow/core/util/event.proto` and
//! `summary.proto` that scalar summaries use, with TensorFlow's field
//! numbers. Declared by hand for `prost` so that no `protoc` or build
//! script is needed; fields not declared here are skipped by decoders, as
//! protobuf allows, so TensorBoard reads these messages as its own.

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch when the event was written.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The training step the values belong to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// Member of the `what` oneof: the first event of a file says
    /// `brain.Event:2`. Optional so that presence, not value, decides
    /// whether it is written, as for a oneof.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Member of the `what` oneof: the values of this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`: the values of one event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// One value per tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// `tensorflow.Summary.Value` with its `simple_value` (a scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The series name; `group/name` puts it in the dashboard's `group`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Member of the `value` oneof: optional so that a value of 0 is still
    /// written (a proto3 scalar field at its default would be left out, and
    /// the reader would see no value at all).
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

impl Event {
    /// The first event of every file: TensorBoard reads the file's format
    /// version from it.
    pub fn version_event(wall_time: f64) -> Event {
        Event {
            wall_time,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        }
    }

    /// An event with `values` (tag, value) at `step`.
    pub fn scalars(wall_time: f64, step: i64, values: &[(&str, f64)]) -> Event {
        let value = values
            .iter()
            .map(|&(tag, v)| Value {
                tag: tag.to_string(),
                // TensorBoard's simple_value is a float (f32).
                simple_value: Some(v as f32),
            })
            .collect();
        Event {
            wall_time,
            step,
            file_version: None,
            summary: Some(Summary { value }),
        }
    }
}
