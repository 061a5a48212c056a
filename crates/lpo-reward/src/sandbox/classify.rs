//! Classification: what a run left (wait status, CPU time, lpo's kills, the
//! control records and stderr) turned into an [`Execution`] with its
//! [`Cause`].

use std::time::Instant;

use super::child::describe_step;
use super::monitor::{Finished, Killed};
use super::{Cause, Execution, Limits};

/// The control channel: binary records from the two child processes (`W`
/// step errno: a layer the probe went without; `E` step errno: the setup
/// failed; `L` mask: the waiter's layers; `C` mask: the init's, last before
/// exec), then the runner's text lines (`FORBIDDEN what`, `DONE secret`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Records {
    pub(super) waiter: u8,
    pub(super) init: u8,
    pub(super) skipped: Vec<(u8, i32)>,
    pub(super) failed: Option<(u8, i32)>,
    pub(super) text: String,
}

pub(super) fn parse_records(ctl: &[u8]) -> Records {
    let mut records = Records::default();
    let mut rest = ctl;
    loop {
        match rest {
            [b'L', mask, tail @ ..] => {
                records.waiter = *mask;
                rest = tail;
            }
            [b'C', mask, tail @ ..] => {
                records.init = *mask;
                rest = tail;
                break;
            }
            [tag @ (b'W' | b'E'), step, a, b, c, d, tail @ ..] => {
                let entry = (*step, i32::from_le_bytes([*a, *b, *c, *d]));
                if *tag == b'W' {
                    records.skipped.push(entry);
                } else {
                    records.failed.get_or_insert(entry);
                }
                rest = tail;
            }
            _ => break,
        }
    }
    records.text = String::from_utf8_lossy(rest).into_owned();
    records
}

/// A cause (`None`: passed) and its summary line.
type Verdict = (Option<Cause>, String);

/// How the program ended, in the terms of the causes below lpo's own kills.
struct Ending<'a> {
    signal: Option<i32>,
    exit: Option<i32>,
    stderr: &'a str,
    /// The last exception line of stderr.
    last: &'a str,
}

impl Finished {
    /// The [`Execution`] of this run.
    pub(super) fn classify(&self, limits: &Limits, start: Instant) -> Execution {
        let wall_ms = start.elapsed().as_millis() as u64;
        let stderr = String::from_utf8_lossy(&self.stderr);
        let (cause, summary) = self.verdict(limits, &stderr);
        let tail = stderr_tail(&stderr);
        let detail = match (summary.is_empty(), tail.is_empty()) {
            (true, _) => tail,
            (false, true) => summary,
            (false, false) => format!("{summary}\n{tail}"),
        };
        Execution {
            passed: cause.is_none(),
            cause,
            detail,
            wall_ms,
            cpu_ms: self.cpu_ms,
        }
    }

    /// The first rule that applies, in this order: a refusal of the hook,
    /// a kill by lpo, a pass, a resource limit, then how it ended.
    fn verdict(&self, limits: &Limits, stderr: &str) -> Verdict {
        let records = parse_records(&self.ctl);
        let forbidden = records
            .text
            .lines()
            .find_map(|l| l.strip_prefix("FORBIDDEN "));
        if let Some(what) = forbidden {
            let summary = format!("refused by the sandbox: {what}");
            return (Some(Cause::Forbidden(what.to_string())), summary);
        }
        if let Some(stopped) = self.stopped_by_lpo(limits) {
            return stopped;
        }
        let ending = Ending {
            signal: self
                .status
                .filter(|s| libc::WIFSIGNALED(*s))
                .map(|s| libc::WTERMSIG(s)),
            exit: self
                .status
                .filter(|s| libc::WIFEXITED(*s))
                .map(|s| libc::WEXITSTATUS(s)),
            stderr,
            last: last_exception(stderr),
        };
        if ending.exit == Some(0) && self.ran_to_its_end(&records.text) {
            return (None, String::new());
        }
        if let Some(limit) = self.limit_reached(&ending, limits) {
            return limit;
        }
        ending.otherwise(records.failed)
    }

    /// The runner reported this run's secret: the program ran to its end.
    fn ran_to_its_end(&self, text: &str) -> bool {
        text.lines()
            .any(|l| l.strip_prefix("DONE ") == Some(self.nonce.as_str()) && !self.nonce.is_empty())
    }

    /// Killed by lpo (output, wall clock), or never reaped.
    fn stopped_by_lpo(&self, limits: &Limits) -> Option<Verdict> {
        if self.killed == Some(Killed::Output) || self.output_total > limits.output_bytes {
            // Also when it got out before the kill: the rule must not depend
            // on timing.
            let summary = format!(
                "{} bytes of output or more (limit {})",
                self.output_total, limits.output_bytes
            );
            Some((Some(Cause::Output), summary))
        } else if self.killed == Some(Killed::Timeout) {
            let summary = format!("killed at the wall-clock limit ({:?})", limits.wall);
            Some((Some(Cause::Timeout), summary))
        } else if self.status.is_none() {
            let summary = "the program could not be reaped".to_string();
            Some((Some(Cause::Sandbox(summary.clone())), summary))
        } else {
            None
        }
    }

    /// A resource limit the program ran into: CPU, memory, processes, file
    /// size.
    fn limit_reached(&self, ending: &Ending, limits: &Limits) -> Option<Verdict> {
        let (signal, last, stderr) = (ending.signal, ending.last, ending.stderr);
        let cpu_exhausted = self.cpu_ms + 100 >= limits.cpu_seconds.saturating_mul(1000);
        if signal == Some(libc::SIGXCPU) || (signal == Some(libc::SIGKILL) && cpu_exhausted) {
            let summary = format!("killed at the CPU limit ({} s)", limits.cpu_seconds);
            Some((Some(Cause::CpuTime), summary))
        } else if last.starts_with("MemoryError")
            || (signal.is_some() && stderr.contains("MemoryError"))
        {
            let summary = format!("out of memory (limit {} bytes)", limits.memory_bytes);
            Some((Some(Cause::Memory), summary))
        } else if last.starts_with("BlockingIOError: [Errno 11]")
            || last.contains("can't start new thread")
            || (signal.is_some() && stderr.contains("BlockingIOError: [Errno 11]"))
        {
            let summary = format!("process limit reached ({})", limits.processes);
            Some((Some(Cause::Processes), summary))
        } else if last.contains("[Errno 27]") || signal == Some(libc::SIGXFSZ) {
            let summary = format!("file size limit reached ({} bytes)", limits.file_bytes);
            Some((Some(Cause::FileSize), summary))
        } else {
            None
        }
    }
}

impl Ending<'_> {
    /// A signal, an early exit, a failed setup, or else failed tests.
    fn otherwise(&self, setup_failed: Option<(u8, i32)>) -> Verdict {
        if let Some(sig) = self.signal {
            (Some(Cause::Signal(sig)), format!("killed by signal {sig}"))
        } else if self.exit == Some(0) {
            let summary = "exited with status 0 before its tests finished".to_string();
            (Some(Cause::EarlyExit), summary)
        } else if let Some(failed) = setup_failed {
            let summary = format!("sandbox setup failed: {}", describe_step(failed));
            (Some(Cause::Sandbox(summary.clone())), summary)
        } else {
            let code = self.exit.unwrap_or(-1);
            let summary = if self.last.is_empty() {
                format!("exit status {code}")
            } else {
                self.last.to_string()
            };
            (Some(Cause::Failed), summary)
        }
    }
}

/// The last line of stderr that starts in column 0 and is not part of the
/// traceback header: `AssertionError`, `NameError: name 'x' is not defined`.
fn last_exception(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .map(str::trim_end)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with(' ')
                && !l.starts_with('\t')
                && !l.starts_with("Traceback ")
                && !l.starts_with("During handling")
                && !l.starts_with("The above exception")
        })
        .unwrap_or("")
}

/// The last lines of stderr, at most 20 lines and about 2000 bytes.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut size = 0;
    for line in lines.iter().rev().take(20) {
        let line = if line.len() > 400 {
            let mut end = 400;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            &line[..end]
        } else {
            line
        };
        size += line.len() + 1;
        if size > 2000 {
            break;
        }
        kept.push(line);
    }
    kept.reverse();
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::child::{S_FORK, S_USER};

    #[test]
    fn classification_of_exception_lines() {
        let stderr = "Traceback (most recent call last):\n  File \"program.py\", line 3, in <module>\n    f()\nAssertionError: bad\n";
        assert_eq!(last_exception(stderr), "AssertionError: bad");
        assert_eq!(last_exception(""), "");
        let long: String = "é".repeat(3000);
        assert!(stderr_tail(&long).len() <= 400);
        let records = parse_records(b"W\x05\x01\x00\x00\x00L\x06C\x60DONE x\nLC");
        assert_eq!(
            records,
            Records {
                waiter: 6,
                init: 0x60,
                skipped: vec![(S_USER, 1)],
                failed: None,
                text: "DONE x\nLC".into(),
            }
        );
        let records = parse_records(b"L\x07E\x0a\x0b\x00\x00\x00");
        assert_eq!(records.failed, Some((S_FORK, 11)));
        assert!(describe_step((S_FORK, 11)).starts_with("fork: Resource temporarily unavailable"));
    }
}
