//! Executes a plan's runs: `lpo run` child processes on this machine
//! ([`local`]), or Slurm job arrays ([`slurm`]).
//!
//! Both backends run the same unit, `lpo run RECIPE --id ID`, and read its
//! exit status ([`exit`], the one table of `lpo`'s exit statuses); both
//! record the plan for `lpo report` ([`plan_record`]). Neither parses
//! arguments nor draws: the command line hands them plain options and, for
//! the local backend, an [`local::Observer`] that shows progress.

pub mod exit;
pub mod local;
pub mod plan_record;
pub mod slurm;
