//! One run: the uid it runs as, its directory, the command line, the spawn
//! through [`ChildSetup`], the per-run secret on stdin, and the watch until
//! the child is reaped; then the cleanup, whatever happened.
//!
//! The command is `python3 -I -B [-S] -c RUNNER audit ctl`, where `RUNNER`
//! (`runner.py`) reads the secret, compiles `program.py`, installs the audit
//! hook (`audit` = `1`), runs the program as `__main__`, and reports the
//! secret on the control pipe (descriptor `ctl`) only if the program ran to
//! its end. The hook reports each refusal on the same pipe.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::child::{describe_step, ChildSetup};
use super::classify::parse_records;
use super::dir::SandboxDir;
use super::monitor::{
    kill_group, monitor, reap, Finished, Stream, CTL_KEEP, STDERR_KEEP, STDOUT_KEEP,
};
use super::uids::{count_tasks_of, kill_uid, RunAs};
use super::Sandbox;

/// The Python side of a run (see the module documentation).
const RUNNER: &str = include_str!("runner.py");

/// What a run left, and the uid it ran as.
pub(super) struct Ran {
    pub(super) finished: Finished,
    pub(super) uid: u32,
}

impl Sandbox {
    /// Runs `program` once (with the audit hook if `audit`) in a fresh
    /// directory, as a uid leased for the run (as root) or the caller's.
    pub(super) fn run_once(&self, program: &str, audit: bool, start: Instant) -> Result<Ran> {
        let run_as = RunAs::new(self.plan.drop_uid)?;
        let uid = run_as.uid();
        // Ours now: anything still running as it was left by a run whose
        // process died.
        self.kill_escaped(uid);
        let dir = SandboxDir::create(run_as.dedicated())?;
        let finished = self.execute_in(&dir, program, audit, uid, start);
        self.kill_escaped(uid);
        drop(dir);
        // The uid goes back only now that its processes are gone.
        drop(run_as);
        Ok(Ran {
            finished: finished?,
            uid,
        })
    }

    /// Without a PID namespace, kills the processes of a dedicated uid
    /// (those that left the process group with `setsid` are found this way).
    fn kill_escaped(&self, uid: u32) {
        if !self.plan.pid_ns && self.plan.drop_uid {
            kill_uid(uid);
        }
    }

    fn execute_in(
        &self,
        dir: &SandboxDir,
        program: &str,
        audit: bool,
        uid: u32,
        start: Instant,
    ) -> Result<Finished> {
        fs::write(dir.path.join("program.py"), program).context("writing program.py")?;
        let (ctl_read, ctl_write) = pipe()?;
        let nproc = self.nproc_limit(uid);
        let setup = ChildSetup::new(self.plan, &self.limits, nproc, uid, &dir.path, &ctl_write)?;
        let mut command = self.command(&dir.path, audit, &ctl_write);
        // SAFETY: the closure only makes async-signal-safe system calls on
        // data prepared before the fork (see `ChildSetup`).
        unsafe {
            command.pre_exec(move || setup.run());
        }
        let spawned = command.spawn();
        drop(ctl_write);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return Err(self.start_failure(ctl_read, e)),
        };
        let pid = child.id() as libc::pid_t;
        let nonce = nonce();
        if let Some(mut stdin) = child.stdin.take() {
            // The runner reads the secret, then the program sees EOF.
            let _ = stdin.write_all(format!("{nonce}\n").as_bytes());
        }
        let streams = match streams(&mut child, ctl_read) {
            Ok(streams) => streams,
            Err(e) => {
                // Never leave a child behind.
                kill_group(pid);
                reap(pid);
                return Err(e);
            }
        };
        let deadline = start + self.limits.wall;
        let output_limit = self.limits.output_bytes;
        let mut finished = monitor(pid, streams, deadline, output_limit, || {
            self.kill_escaped(uid);
        });
        finished.nonce = nonce;
        Ok(finished)
    }

    /// The python command line, in `dir` with a clean environment.
    fn command(&self, dir: &Path, audit: bool, ctl_write: &OwnedFd) -> Command {
        let mut command = Command::new(&self.python);
        command.arg("-I").arg("-B");
        if !self.site_packages {
            command.arg("-S");
        }
        let tmp = dir.as_os_str();
        command
            .arg("-c")
            .arg(RUNNER)
            .arg(if audit { "1" } else { "0" })
            .arg(ctl_write.as_raw_fd().to_string())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", tmp)
            .env("TMPDIR", tmp)
            .env("LANG", "C.UTF-8")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Why the child could not start: the step it reported, else exec's
    /// error.
    fn start_failure(&self, ctl_read: OwnedFd, error: io::Error) -> anyhow::Error {
        let mut ctl = match Stream::new(ctl_read, CTL_KEEP, false) {
            Ok(ctl) => ctl,
            Err(e) => return e,
        };
        ctl.read_available();
        let step = match parse_records(&ctl.kept).failed {
            Some(failed) => describe_step(failed),
            None => format!("exec: {error}"),
        };
        anyhow::anyhow!("could not start {}: {step}", self.python.display())
    }

    fn nproc_limit(&self, uid: u32) -> u64 {
        let wanted = self.limits.processes.max(1);
        if self.plan.drop_uid {
            wanted
        } else if self.plan.user_ns {
            // The first process in the namespace (the waiter) counts too.
            wanted + 1
        } else {
            // Counted over all of the caller's processes: allow what exists.
            count_tasks_of(uid) + wanted
        }
    }
}

/// stdout, stderr and the control channel, read without blocking.
fn streams(child: &mut Child, ctl_read: OwnedFd) -> Result<[Stream; 3]> {
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("child pipes missing");
    };
    Ok([
        Stream::new(OwnedFd::from(out), STDOUT_KEEP, false)?,
        Stream::new(OwnedFd::from(err), STDERR_KEEP, true)?,
        Stream::new(ctl_read, CTL_KEEP, false)?,
    ])
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2(2) into a local array; the fds are ours.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error()).context("creating a pipe");
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        Ok((above_stdio(read)?, above_stdio(write)?))
    }
}

/// A descriptor numbered 3 or more (when lpo runs with stdio closed, a pipe
/// could get 0–2, which the child's stdio would overwrite).
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(2) duplicating a descriptor we own.
    unsafe {
        let new = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3);
        if new < 0 {
            return Err(io::Error::last_os_error()).context("duplicating a pipe");
        }
        Ok(OwnedFd::from_raw_fd(new))
    }
}

/// 128 random bits in hex (the per-run secret; also unique names).
pub(super) fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let random = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
