//! Code rewards: a Python program (a HumanEval/MBPP completion followed by its
//! tests) run in a sandboxed `python3` subprocess.
//!
//! A response that loops, forks, allocates without bound, writes outside its
//! directory, opens a socket or runs a shell fails its tests with the cause
//! recorded ([`Cause`]); lpo itself never hangs (every run ends within
//! [`Limits::wall`] plus a small grace) and never dies (no panic on any
//! program, the child is killed and reaped).
//!
//! # Layers
//!
//! Defence in depth; [`Isolation`] records which layers hold on the machine,
//! found once by [`Sandbox::new`] by running probe programs (so a report can
//! say what was enforced, not what was hoped for). Runs after the probe
//! *require* the layers the probe found: a run never silently gets less.
//!
//! 1. **Process.** `python3 -I -S -B` (isolated mode, no `site`, so only the
//!    standard library; no `.pyc` writes) with a clean environment, stdin
//!    closed after a per-run secret, cwd a fresh private directory (mode
//!    0700, removed afterwards whatever happens), stdout/stderr read with a
//!    byte bound (past [`Limits::output_bytes`] the run is killed).
//! 2. **Resource limits** (`setrlimit`, everywhere): CPU seconds, address
//!    space, processes/threads (`RLIMIT_NPROC`), file size, open files, no
//!    core files; a new session so the whole process group can be killed;
//!    `PR_SET_NO_NEW_PRIVS`; `PR_SET_PDEATHSIG` so nothing outlives lpo.
//! 3. **Privileges.** `RLIMIT_NPROC` counts per real uid and is not enforced
//!    for root, so as root the program runs as a *dedicated unprivileged uid*
//!    (one of 4096 above `0x7F00_0000`), which also keeps it out of every
//!    file it does not own. Each run holds an exclusive lock on its uid for
//!    as long as it runs, so no two concurrent runs share one, in one lpo
//!    process or in several (`lpo sweep --jobs 2`). Not as
//!    root, the program runs as the caller inside a *user namespace*, where
//!    `RLIMIT_NPROC` counts only the namespace's processes.
//! 4. **Namespaces** where the kernel allows them: a network namespace (no
//!    interface is up, not even loopback: `127.0.0.1` is unreachable), a PID
//!    namespace (the program is its init: when it exits or is killed, the
//!    kernel kills everything it started, escaped sessions included) with a
//!    private `/proc`, and a mount namespace in which the whole filesystem is
//!    read-only except the sandbox directory (`mount_setattr`, Linux ≥ 5.12).
//! 5. **Audit hook** (PEP 578, Python ≥ 3.8) installed before the program
//!    runs. It refuses `os.system`, `os.fork`, `os.exec*`, `posix_spawn`,
//!    `subprocess`, `pty`, `os.kill` of another process, every `socket.*`
//!    operation except creating the object (so `connect`, `bind`, `sendto`,
//!    DNS lookups), `ctypes`, sqlite extensions, and writes, removals,
//!    renames, links, `chmod`s and the like of paths that resolve (symlinks
//!    followed) outside the sandbox directory. Each refusal raises
//!    `PermissionError` *and* reports itself on a private channel, so a
//!    program that swallows the exception still fails with
//!    [`Cause::Forbidden`]. The hook is what names the cause; it is not a
//!    security boundary on its own, the OS layers above are: code in the
//!    same interpreter can get around it (calling `_posixsubprocess`
//!    directly, opening relative to a `dir_fd`, a path object that changes
//!    its mind, introspecting the runner's frames).
//!
//! Finally, a program passes only if it runs *to its end* (the runner then
//! reports a per-run secret on the private channel) and exits with status 0:
//! `sys.exit(0)` or `os._exit(0)` before the tests finish is
//! [`Cause::EarlyExit`], not a pass. (A program that digs the secret out of
//! the runner's frames could forge the report: this stops the reward hack a
//! policy stumbles on, not an adversary that knows this runner.)
//!
//! # What holds where
//!
//! | machine | uid | NPROC | network | PID ns | read-only fs | hook |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | root (CI, containers with `CAP_SYS_ADMIN`) | dedicated | yes | namespace | yes | yes | yes |
//! | non-root, user namespaces allowed | caller's | per namespace | namespace | yes | yes | yes |
//! | root without namespaces (e.g. a default Docker seccomp profile) | dedicated | yes | hook only | no (orphans killed by the waiter) | no (uid permissions) | yes |
//! | non-root without user namespaces | caller's | approximate (caller's count + limit) | hook only | no (orphans killed by the waiter) | no | yes |
//!
//! In the last row the OS protects little beyond the resource limits: the
//! hook stops ordinary code, not hostile code. [`Isolation::notes`] says why
//! a layer is missing.
//!
//! # Where the code is
//!
//! - this file: the public types and [`Sandbox`]'s API;
//! - `python`: finding the interpreter; `probe`: what the machine allows,
//!   found by running a probe program, and the [`Isolation`] report;
//! - `runner`: one run, from the uid and directory to the reaped child (the
//!   Python side, audit hook included, is `runner.py`);
//! - `child`: the two processes between fork and exec (namespaces, mounts,
//!   resource limits, the uid drop), over the raw calls of `sys`;
//! - `monitor`: the parent's side of a running program: reading its pipes,
//!   the limits on wall time and output, killing and reaping;
//! - `classify`: the control records, exit status and stderr turned into an
//!   [`Execution`];
//! - `uids`: the dedicated uids, leased across processes, and their
//!   processes; `dir`: the private directory of a run.

mod child;
mod classify;
mod dir;
mod monitor;
mod probe;
mod python;
mod runner;
mod sys;
#[cfg(test)]
mod tests;
mod uids;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use child::Plan;

/// Resource limits of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time; past it the process group is killed ([`Cause::Timeout`]).
    pub wall: Duration,
    /// CPU seconds (`RLIMIT_CPU`: `SIGXCPU` then, a second later, `SIGKILL`).
    pub cpu_seconds: u64,
    /// Address space in bytes (`RLIMIT_AS`: virtual memory, not resident).
    pub memory_bytes: u64,
    /// Processes *and threads* the program may have at once (`RLIMIT_NPROC`).
    pub processes: u64,
    /// Bytes of stdout and stderr together; past it the run is killed
    /// ([`Cause::Output`]). Only a bounded tail of stderr is kept.
    pub output_bytes: usize,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(10),
            cpu_seconds: 5,
            memory_bytes: 1 << 30,
            processes: 64,
            output_bytes: 1 << 20,
            file_bytes: 16 << 20,
            open_files: 64,
        }
    }
}

/// Why an execution did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The tests failed: an assertion, an exception, a syntax error, or a
    /// non-zero exit; [`Execution::detail`] has the last traceback line.
    Failed,
    /// Killed at the wall-clock limit.
    Timeout,
    /// Killed at the CPU-time limit.
    CpuTime,
    /// Allocation refused at the address-space limit (`MemoryError`).
    Memory,
    /// A process or thread refused at the process limit.
    Processes,
    /// A write refused at the file-size limit.
    FileSize,
    /// Killed for writing more than [`Limits::output_bytes`].
    Output,
    /// Exited with status 0 before its tests finished (`sys.exit(0)`,
    /// `os._exit(0)`): not a pass.
    EarlyExit,
    /// The audit hook refused an operation: `os.fork`, `os.system`,
    /// `socket.connect`, `subprocess.Popen`, `ctypes.dlopen`,
    /// `open for writing outside the sandbox: /tmp/x`, ...
    Forbidden(String),
    /// Killed by this signal, for no reason above.
    Signal(i32),
    /// lpo could not run the program (an lpo-side error, not the response's).
    Sandbox(String),
}

impl Cause {
    /// A short stable name, for counting causes in reports.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Failed => "failed",
            Cause::Timeout => "timeout",
            Cause::CpuTime => "cpu_time",
            Cause::Memory => "memory",
            Cause::Processes => "processes",
            Cause::FileSize => "file_size",
            Cause::Output => "output",
            Cause::EarlyExit => "early_exit",
            Cause::Forbidden(_) => "forbidden",
            Cause::Signal(_) => "signal",
            Cause::Sandbox(_) => "sandbox",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Forbidden(what) => write!(f, "forbidden: {what}"),
            Cause::Signal(sig) => write!(f, "killed by signal {sig}"),
            Cause::Sandbox(why) => write!(f, "sandbox error: {why}"),
            other => f.write_str(other.label()),
        }
    }
}

/// The result of one program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// Ran to its end and exited with status 0, and nothing was refused.
    pub passed: bool,
    /// Why it did not pass (`None` exactly when `passed`).
    pub cause: Option<Cause>,
    /// A summary line and the last lines of stderr (at most ~2 KB).
    pub detail: String,
    /// Wall-clock milliseconds from start to reaping.
    pub wall_ms: u64,
    /// CPU milliseconds (user + system) of the program and the children it
    /// waited for.
    pub cpu_ms: u64,
}

impl Execution {
    fn sandbox_error(why: String, start: Instant) -> Execution {
        Execution {
            passed: false,
            detail: why.clone(),
            cause: Some(Cause::Sandbox(why)),
            wall_ms: start.elapsed().as_millis() as u64,
            cpu_ms: 0,
        }
    }
}

/// What a run enforces on this machine, found once by probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The interpreter the programs run with.
    pub python: String,
    /// Its version (`3.11.2`).
    pub python_version: String,
    /// The program runs without privileges (no capabilities, non-root uid).
    pub unprivileged_user: bool,
    /// Root dropped to a dedicated uid per concurrent run.
    pub dedicated_uid: bool,
    /// In a user namespace of its own (non-root callers).
    pub user_namespace: bool,
    /// In a network namespace of its own: no network, loopback included.
    pub network_namespace: bool,
    /// In a PID namespace of its own (everything dies with the program).
    pub pid_namespace: bool,
    /// `/proc` shows only the program's processes.
    pub private_proc: bool,
    /// The filesystem is read-only except the sandbox directory.
    pub read_only_filesystem: bool,
    /// `RLIMIT_NPROC` is enforced and counts only this run's processes.
    pub process_limit: bool,
    /// `PR_SET_NO_NEW_PRIVS` is set (no setuid binaries).
    pub no_new_privs: bool,
    /// The PEP 578 audit hook refuses forbidden operations.
    pub audit_hook: bool,
    /// Why a layer is missing, and other facts worth a report line.
    pub notes: Vec<String>,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Root gets a dedicated uid, anyone else a user namespace.
        let own_uid = match (self.dedicated_uid, self.user_namespace) {
            (true, _) => (true, "dedicated uid"),
            (false, true) => (true, "user namespace"),
            (false, false) => (false, "dedicated uid or user namespace"),
        };
        let layers = [
            own_uid,
            (self.unprivileged_user, "unprivileged"),
            (self.process_limit, "process limit"),
            (self.network_namespace, "network namespace"),
            (self.pid_namespace, "pid namespace"),
            (self.private_proc, "private /proc"),
            (self.read_only_filesystem, "read-only filesystem"),
            (self.no_new_privs, "no_new_privs"),
            (self.audit_hook, "audit hook"),
        ];
        let on: Vec<&str> = layers.iter().filter(|l| l.0).map(|l| l.1).collect();
        let off: Vec<&str> = layers.iter().filter(|l| !l.0).map(|l| l.1).collect();
        write!(
            f,
            "python {} ({}); enforced: resource limits, {}",
            self.python_version,
            self.python,
            on.join(", ")
        )?;
        if !off.is_empty() {
            write!(f, "; not available: {}", off.join(", "))?;
        }
        Ok(())
    }
}

/// How a [`Sandbox`] is set up; [`Options::default`] suits almost everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The interpreter. `None`: `python3` on `PATH`, resolved through shims
    /// (pyenv) to the real executable; as root, when the dedicated uid cannot
    /// run it (say it lives under `/root`), the first `python3` that it can
    /// run (`/usr/bin/python3`, ...), with a note. An explicit path is never
    /// replaced: the sandbox keeps root's uid instead (and says so).
    pub python: Option<PathBuf>,
    /// Try the namespaces. `false` runs without them, as on a machine that
    /// forbids them.
    pub namespaces: bool,
    /// Let programs import site-packages (third-party modules): drops `-S`.
    pub site_packages: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            python: None,
            namespaces: true,
            site_packages: false,
        }
    }
}

/// Runs programs in a sandboxed `python3`; cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    python: PathBuf,
    limits: Limits,
    site_packages: bool,
    plan: Plan,
    isolation: Isolation,
}

/// The HumanEval program: prompt + completion + `"\n"` + test + `"\n"` +
/// `check(entry_point)`.
pub fn humaneval_program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> String {
    format!("{prompt}{completion}\n{test}\ncheck({entry_point})\n")
}

impl Sandbox {
    /// Finds `python3` on `PATH` (the error names what is missing) and
    /// probes what isolation holds here (about 0.1 s: create one sandbox per
    /// run of lpo and share it).
    pub fn new(limits: Limits) -> Result<Sandbox> {
        Sandbox::with_options(limits, Options::default())
    }

    /// [`Sandbox::new`] with [`Options`].
    pub fn with_options(limits: Limits, options: Options) -> Result<Sandbox> {
        let chosen = probe::choose(&limits, &options)?;
        let mut sandbox = Sandbox {
            python: chosen.python,
            limits,
            site_packages: options.site_packages,
            plan: chosen.plan,
            isolation: chosen.isolation,
        };
        sandbox.check_audit_hook();
        Ok(sandbox)
    }

    /// What runs enforce here.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The limits of every run.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs one program. Never panics; returns within `limits.wall` plus
    /// about a second.
    pub fn run(&self, program: &str) -> Execution {
        self.execute(program, true)
    }

    /// Runs programs on up to `threads` threads (the run's thread budget:
    /// more threads than cores turns CPU limits into wall-clock timeouts);
    /// results in input order.
    pub fn run_all(&self, programs: &[String], threads: usize) -> Vec<Execution> {
        let threads = threads.clamp(1, programs.len().max(1));
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Execution>>> =
            programs.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(program) = programs.get(i) else {
                        break;
                    };
                    // A bug here must not take lpo down with the scope.
                    let run = std::panic::AssertUnwindSafe(|| self.run(program));
                    let execution = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        Execution::sandbox_error("the sandbox panicked".into(), Instant::now())
                    });
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(execution);
                });
            }
        });
        results
            .into_iter()
            .map(|slot| {
                let execution = slot.into_inner().unwrap_or_else(|e| e.into_inner());
                execution.unwrap_or_else(|| {
                    Execution::sandbox_error("worker thread died".into(), Instant::now())
                })
            })
            .collect()
    }

    /// Runs a program without the audit hook: the OS layers alone (tests).
    #[cfg(test)]
    fn run_unaudited(&self, program: &str) -> Execution {
        self.execute(program, false)
    }

    fn check_audit_hook(&mut self) {
        let probe = self.execute("import os\nos.system('true')\n", true);
        self.isolation.audit_hook = probe.cause == Some(Cause::Forbidden("os.system".into()));
        if !self.isolation.audit_hook {
            self.isolation
                .notes
                .push(format!("audit hook not effective: {}", probe.detail));
        }
    }

    fn execute(&self, program: &str, audit: bool) -> Execution {
        let start = Instant::now();
        match self.run_once(program, audit, start) {
            Ok(ran) => ran.finished.classify(&self.limits, start),
            Err(e) => Execution::sandbox_error(format!("{e:#}"), start),
        }
    }
}
