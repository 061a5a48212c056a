//! lpo's recipe schema: the typed configuration of an experiment family, its
//! layered loading (defaults < extends chain < file < `LPO_` environment <
//! `--set`), and diagnostics that name the file, line and key.

pub mod diag;
pub mod keys;
pub mod load;
pub mod losses;
pub mod paths;
pub mod schedule;
pub mod schema;
pub mod validate;

pub use diag::{Diagnostic, Diagnostics};
pub use load::{load, Explanation, Loaded, Overrides};
pub use losses::{LossSpec, Objective, Part, LOSSES, LOSS_NAMES};
pub use schedule::{Coef, Schedule};
pub use schema::*;
