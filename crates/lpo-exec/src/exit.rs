//! The exit statuses of `lpo`, in one place (clap's own usage errors also
//! exit with 2). The command-line front end exits with them, and the
//! backends read them back from the `lpo run` processes they start.

use std::process::ExitCode;

/// Everything asked for is done (every planned run complete, for `sweep`
/// and `status`).
pub const OK: u8 = 0;
/// A run failed or is not complete, or an error stopped the command.
pub const FAILED: u8 = 1;
/// The input was rejected before anything ran: a recipe problem (printed
/// with file:line), an unknown run, a malformed `lpo loss` input.
pub const BAD_INPUT: u8 = 2;
/// Runs were left alone because another process holds their lock, and
/// nothing else is unfinished.
pub const LOCKED: u8 = 3;

/// The process exit code for one of the statuses above.
pub fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}
