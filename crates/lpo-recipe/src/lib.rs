//! lpo's recipe schema: the typed configuration of an experiment family, its
//! layered loading (defaults < extends chain < file < `LPO_` environment <
//! `--set`), and diagnostics that name the file, line and key.

pub mod schedule;
pub mod schema;
