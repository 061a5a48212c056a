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
//!    (one of 4096 above `0x7F00_0000`, a different one for each concurrent
//!    run), which also keeps it out of every file it does not own. Not as
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

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

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
        let explicit = options.python.is_some();
        let candidates = match &options.python {
            Some(path) => vec![resolve_python(path)?],
            None => python_candidates()?,
        };
        let root = unsafe { libc::geteuid() } == 0;
        let wanted = Plan {
            user_ns: !root && options.namespaces,
            net_ns: options.namespaces,
            pid_ns: options.namespaces,
            mount_ns: options.namespaces,
            private_proc: options.namespaces,
            drop_uid: root,
            best_effort: true,
        };
        // Why earlier interpreters were passed over.
        let mut skipped = Vec::new();
        let mut found = None;
        for python in &candidates {
            match probe(python, &limits, options.site_packages, wanted) {
                Ok(p) if !root || p.dropped || explicit => {
                    found = Some((python.clone(), p));
                    break;
                }
                Ok(_) => skipped.push(format!(
                    "{}: could not drop to the sandbox uid",
                    python.display()
                )),
                Err(e) => skipped.push(format!("{e:#}")),
            }
        }
        let mut notes = Vec::new();
        if let (Some((python, _)), false) = (&found, skipped.is_empty()) {
            notes.push(format!(
                "using {} ({})",
                python.display(),
                skipped.join("; ")
            ));
        }
        if found.is_none() && root {
            // No interpreter the sandbox uid can run: keep root's uid.
            let plan = Plan {
                drop_uid: false,
                ..wanted
            };
            match probe(&candidates[0], &limits, options.site_packages, plan) {
                Ok(p) => {
                    notes.push(format!(
                        "no python3 runnable by an unprivileged uid ({}); {} runs as root",
                        skipped.join("; "),
                        candidates[0].display()
                    ));
                    found = Some((candidates[0].clone(), p));
                }
                Err(e) => skipped.push(format!("{e:#}")),
            }
        }
        let Some((python, probed)) = found else {
            bail!(
                "python3 could not be started in the sandbox: {}",
                skipped.join("; ")
            );
        };
        let mut sandbox = Sandbox {
            python: python.clone(),
            limits,
            site_packages: options.site_packages,
            plan: probed.plan,
            isolation: probed.isolation(&python, wanted, notes),
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
        let uid = if self.plan.drop_uid {
            next_sandbox_uid()
        } else {
            unsafe { libc::getuid() }
        };
        let dir = match SandboxDir::create(self.plan.drop_uid.then_some(uid)) {
            Ok(dir) => dir,
            Err(e) => return Execution::sandbox_error(format!("{e:#}"), start),
        };
        let finished = self.execute_in(&dir, program, audit, uid, start);
        if !self.plan.pid_ns && self.plan.drop_uid {
            kill_uid(uid);
        }
        drop(dir);
        match finished {
            Ok(finished) => finished.classify(&self.limits, start),
            Err(e) => Execution::sandbox_error(format!("{e:#}"), start),
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
        let mut command = Command::new(&self.python);
        command.arg("-I").arg("-B");
        if !self.site_packages {
            command.arg("-S");
        }
        let tmp = dir.path.as_os_str();
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
            .current_dir(&dir.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure only makes async-signal-safe system calls on
        // data prepared before the fork (see `ChildSetup`).
        unsafe {
            command.pre_exec(move || setup.run());
        }
        let spawned = command.spawn();
        drop(ctl_write);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let mut ctl = Stream::new(ctl_read, CTL_KEEP, false)?;
                ctl.read_available();
                let step = match parse_records(&ctl.kept).failed {
                    Some(failed) => describe_step(failed),
                    None => format!("exec: {e}"),
                };
                bail!("could not start {}: {step}", self.python.display());
            }
        };
        let pid = child.id() as libc::pid_t;
        let nonce = nonce();
        if let Some(mut stdin) = child.stdin.take() {
            // The runner reads the secret, then the program sees EOF.
            let _ = stdin.write_all(format!("{nonce}\n").as_bytes());
        }
        let streams = (|| -> Result<[Stream; 3]> {
            let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
                bail!("child pipes missing");
            };
            Ok([
                Stream::new(OwnedFd::from(out), STDOUT_KEEP, false)?,
                Stream::new(OwnedFd::from(err), STDERR_KEEP, true)?,
                Stream::new(ctl_read, CTL_KEEP, false)?,
            ])
        })();
        let streams = match streams {
            Ok(streams) => streams,
            Err(e) => {
                // Never leave a child behind.
                kill_group(pid);
                reap(pid);
                return Err(e);
            }
        };
        let deadline = start + self.limits.wall;
        let mut finished = monitor(pid, streams, deadline, self.limits.output_bytes, || {
            if !self.plan.pid_ns && self.plan.drop_uid {
                kill_uid(uid);
            }
        });
        finished.nonce = nonce;
        Ok(finished)
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

// ---------------------------------------------------------------------------
// The Python side.

/// The runner: reads the per-run secret, compiles `program.py`, installs the
/// audit hook, runs the program as `__main__`, and reports the secret on the
/// private channel only if the program ran to its end.
const RUNNER: &str = r#"
import os, sys

def _lpo_hook(ctl, root):
    import stat
    write, getcwd, getpid, lstat, readlink = os.write, os.getcwd, os.getpid, os.lstat, os.readlink
    fsdecode, islnk, PathLike = os.fsdecode, stat.S_ISLNK, os.PathLike
    prefix = root + "/"
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    always = frozenset(["/dev/null", "/dev/stdout", "/dev/stderr"])
    banned = frozenset([
        "os.system", "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
        "os.startfile", "subprocess.Popen", "pty.spawn", "os.killpg", "os.chroot",
        "os.unshare", "os.setns", "sys.remote_exec", "sqlite3.enable_load_extension",
        "sqlite3.load_extension",
    ])
    # event: (indices of paths that must stay inside, indices of dir_fd arguments)
    paths = {
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
        "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
        "os.truncate": ((0,), ()), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
        "os.utime": ((0,), (3,)), "os.mkfifo": ((0,), (2,)), "os.mknod": ((0,), (3,)),
        "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "os.chflags": ((0,), ()),
        "os.lchflags": ((0,), ()), "shutil.rmtree": ((0,), (1,)), "shutil.copyfile": ((1,), ()),
        "shutil.copymode": ((1,), ()), "shutil.copystat": ((1,), ()), "shutil.chown": ((0,), ()),
        "shutil.make_archive": ((0,), ()), "shutil.unpack_archive": ((1,), ()),
        "sqlite3.connect": ((0,), ()),
    }
    refused = [0]

    def refuse(what):
        if refused[0] < 16:
            refused[0] += 1
            try:
                write(ctl, ("FORBIDDEN " + what.replace("\n", " ")[:300] + "\n").encode("utf-8", "replace"))
            except Exception:
                pass
        raise PermissionError("lpo sandbox: " + what + " is not allowed")

    def show(path):
        if isinstance(path, bytes):
            return fsdecode(path)
        return path if isinstance(path, str) else type(path).__name__

    def resolve(path):
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        done, todo, hops = [], path.split("/"), 0
        todo.reverse()
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join(done + [part])
            try:
                mode = lstat(current).st_mode
            except (OSError, ValueError):
                done.append(part)
                continue
            if islnk(mode):
                hops += 1
                if hops > 40:
                    return None
                target = readlink(current)
                if target.startswith("/"):
                    done = []
                more = target.split("/")
                more.reverse()
                todo.extend(more)
            else:
                done.append(part)
        return "/" + "/".join(done)

    def inside(path):
        if path is None or isinstance(path, int):
            return True
        try:
            if isinstance(path, PathLike):
                path = path.__fspath__()
            if isinstance(path, bytes):
                path = fsdecode(path)
            if not isinstance(path, str):
                return False
            if path in always or path == ":memory:" or path == "":
                return True
            resolved = resolve(path)
        except Exception:
            return False
        return resolved is not None and (resolved == root or resolved.startswith(prefix))

    def hook(event, args):
        if event in banned or event.startswith("ctypes."):
            refuse(event)
        if event.startswith("socket.") and event != "socket.__new__":
            refuse(event)
        if event == "os.kill":
            if not (len(args) > 0 and args[0] == getpid()):
                refuse(event)
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if isinstance(mode, str):
                writes = "w" in mode or "a" in mode or "x" in mode or "+" in mode
            else:
                writes = isinstance(flags, int) and (flags & writing_flags) != 0
            if writes and not inside(path):
                refuse("open for writing outside the sandbox: " + show(path))
            return
        spec = paths.get(event)
        if spec is not None:
            for i in spec[1]:
                if i < len(args) and args[i] is not None and args[i] != -1:
                    refuse(event + " relative to a directory descriptor")
            for i in spec[0]:
                if i < len(args) and not inside(args[i]):
                    refuse(event + " outside the sandbox: " + show(args[i]))

    return hook

def _lpo_run():
    audit, ctl, write = sys.argv[1] == "1", int(sys.argv[2]), os.write
    secret = os.read(0, 256).decode("ascii", "replace").strip()
    with open("program.py", "rb") as f:
        source = f.read()
    code = compile(source, "program.py", "exec", dont_inherit=True)
    if audit:
        if hasattr(sys, "addaudithook"):
            sys.addaudithook(_lpo_hook(ctl, os.path.realpath(os.getcwd())))
        else:
            write(ctl, b"NOHOOK\n")
    main = type(sys)("__main__")
    main.__file__ = "program.py"
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["program.py"]
    exec(code, main.__dict__)
    write(ctl, ("DONE " + secret + "\n").encode("ascii"))

_lpo_run()
"#;

/// The probe program (run without the hook): facts the parent compares with
/// its own.
fn probe_program(outside: &Path) -> String {
    format!(
        r#"
import os, sys, socket, resource
def ns(name):
    try:
        return os.readlink("/proc/self/ns/" + name)
    except OSError:
        return "?"
print("version=" + sys.version.split()[0])
print("executable=" + sys.executable)
print("pid=%d" % os.getpid())
print("uid=%d" % os.getuid())
for name in ("net", "pid", "user", "mnt"):
    print("ns_%s=%s" % (name, ns(name)))
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key in ("CapEff", "NoNewPrivs"):
            print("%s=%s" % (key, value.strip()))
print("nproc=%d" % resource.getrlimit(resource.RLIMIT_NPROC)[0])
print("procs=%d" % sum(1 for e in os.listdir("/proc") if e.isdigit()))
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", 9))
    print("loopback=connected")
except OSError as e:
    print("loopback=%s" % e.errno)
target = {outside:?}
try:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(target)
    print("outside=written")
except OSError as e:
    print("outside=%s" % e.errno)
"#,
        outside = outside.display().to_string()
    )
}

// ---------------------------------------------------------------------------
// Probing.

/// The layers a run sets up. `best_effort` (the probe) skips what fails and
/// reports it; otherwise (every run after the probe) a failing layer is an
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Plan {
    user_ns: bool,
    net_ns: bool,
    pid_ns: bool,
    mount_ns: bool,
    private_proc: bool,
    drop_uid: bool,
    best_effort: bool,
}

const L_USER: u8 = 1;
const L_NET: u8 = 2;
const L_PID: u8 = 4;
const L_MNT: u8 = 8;
const L_PROC: u8 = 16;
const L_DROP: u8 = 32;
const L_NNP: u8 = 64;

impl Plan {
    fn from_mask(mask: u8) -> Plan {
        Plan {
            user_ns: mask & L_USER != 0,
            net_ns: mask & L_NET != 0,
            pid_ns: mask & L_PID != 0,
            mount_ns: mask & L_MNT != 0,
            private_proc: mask & L_PROC != 0,
            drop_uid: mask & L_DROP != 0,
            best_effort: false,
        }
    }
}

struct Probed {
    plan: Plan,
    dropped: bool,
    mask: u8,
    facts: Vec<(String, String)>,
    /// Layers that failed in the probe: (step, errno).
    skipped: Vec<(u8, i32)>,
    sandbox_uid: u32,
}

fn probe(python: &Path, limits: &Limits, site: bool, wanted: Plan) -> Result<Probed> {
    let probe_sandbox = Sandbox {
        python: python.to_path_buf(),
        limits: Limits {
            wall: Duration::from_secs(20),
            ..limits.clone()
        },
        site_packages: site,
        plan: wanted,
        isolation: Isolation::empty(),
    };
    let start = Instant::now();
    let uid = if wanted.drop_uid {
        next_sandbox_uid()
    } else {
        unsafe { libc::getuid() }
    };
    let dir = SandboxDir::create(wanted.drop_uid.then_some(uid))?;
    let outside = dir
        .path
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join(format!("lpo-sandbox-probe-{}", nonce()));
    let program = probe_program(&outside);
    let finished = probe_sandbox.execute_in(&dir, &program, false, uid, start);
    if !wanted.pid_ns && wanted.drop_uid {
        kill_uid(uid);
    }
    let _ = fs::remove_file(&outside);
    drop(dir);
    let finished = finished?;
    let records = parse_records(&finished.ctl);
    let mask = records.waiter | records.init;
    let facts: Vec<(String, String)> = String::from_utf8_lossy(&finished.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if !finished.exited_zero() || !facts.iter().any(|(k, _)| k == "version") {
        let execution = finished.classify(limits, start);
        bail!("the probe failed: {}", execution.detail);
    }
    let mut plan = Plan::from_mask(mask);
    // The private /proc needs both namespaces; keep the plan consistent.
    plan.private_proc &= plan.pid_ns && plan.mount_ns;
    Ok(Probed {
        plan,
        dropped: mask & L_DROP != 0,
        mask,
        facts,
        skipped: records.skipped,
        sandbox_uid: uid,
    })
}

impl Probed {
    fn fact(&self, key: &str) -> &str {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn isolation(&self, python: &Path, wanted: Plan, mut notes: Vec<String>) -> Isolation {
        let ours = |name: &str| fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let differs = |name: &str| {
            let theirs = self.fact(&format!("ns_{name}"));
            ours(name).is_some_and(|o| o.as_os_str().as_bytes() != theirs.as_bytes())
                && theirs != "?"
        };
        let cap_eff = u64::from_str_radix(self.fact("CapEff"), 16).unwrap_or(u64::MAX);
        let uid: u32 = self.fact("uid").parse().unwrap_or(0);
        let unprivileged = cap_eff == 0 && uid != 0;
        let dedicated = self.mask & L_DROP != 0 && uid == self.sandbox_uid;
        let user_ns = self.mask & L_USER != 0 && differs("user");
        let network = self.mask & L_NET != 0
            && differs("net")
            && self.fact("loopback") != "connected"
            && self.fact("loopback") != libc::ECONNREFUSED.to_string();
        let pid_ns = self.mask & L_PID != 0 && self.fact("pid") == "1";
        let private_proc =
            self.plan.private_proc && self.fact("procs").parse::<u32>().is_ok_and(|n| n <= 2);
        let read_only = self.mask & L_MNT != 0 && self.fact("outside") == libc::EROFS.to_string();
        let process_limit = unprivileged && (dedicated || user_ns);
        let no_new_privs = self.fact("NoNewPrivs") == "1";
        let layers = [
            (wanted.user_ns, user_ns, S_USER),
            (wanted.net_ns, network, S_NET),
            (wanted.pid_ns, pid_ns, S_PID),
            (wanted.private_proc, private_proc, S_PROC),
            (wanted.mount_ns, read_only, S_MNT),
            (wanted.drop_uid, dedicated, S_DROP),
        ];
        for (want, have, step) in layers {
            if want && !have {
                let name = step_name(step);
                notes.push(match self.skipped.iter().find(|s| s.0 == step) {
                    Some(&(_, errno)) => format!(
                        "{name}: not available here ({})",
                        io::Error::from_raw_os_error(errno)
                    ),
                    None => format!("{name}: not available here"),
                });
            }
        }
        if !process_limit && wanted.drop_uid {
            notes.push("RLIMIT_NPROC is not enforced for root: no process limit".into());
        } else if !process_limit {
            notes.push(
                "RLIMIT_NPROC counts all of the caller's processes: the process limit is \
                 approximate (the caller's count at start plus the limit)"
                    .into(),
            );
        }
        if !network {
            notes.push("no network namespace: only the audit hook keeps sockets shut".into());
        }
        Isolation {
            python: python.display().to_string(),
            python_version: self.fact("version").to_string(),
            unprivileged_user: unprivileged,
            dedicated_uid: dedicated,
            user_namespace: user_ns,
            network_namespace: network,
            pid_namespace: pid_ns,
            private_proc,
            read_only_filesystem: read_only,
            process_limit,
            no_new_privs,
            audit_hook: false,
            notes,
        }
    }
}

impl Isolation {
    fn empty() -> Isolation {
        Isolation {
            python: String::new(),
            python_version: String::new(),
            unprivileged_user: false,
            dedicated_uid: false,
            user_namespace: false,
            network_namespace: false,
            pid_namespace: false,
            private_proc: false,
            read_only_filesystem: false,
            process_limit: false,
            no_new_privs: false,
            audit_hook: false,
            notes: Vec::new(),
        }
    }
}

/// `python3` on `PATH` first, then the usual system locations, each
/// resolved to the real executable (through pyenv-style shims).
fn python_candidates() -> Result<Vec<PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .filter(|p| is_executable(p))
        .collect();
    if found.is_empty() {
        bail!(
            "python3 not found on PATH ({}): code rewards need a python3 interpreter",
            path.to_string_lossy()
        );
    }
    for system in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] {
        let p = PathBuf::from(system);
        if is_executable(&p) {
            found.push(p);
        }
    }
    let mut resolved: Vec<PathBuf> = Vec::new();
    let mut first_error = None;
    for candidate in found {
        match resolve_python(&candidate) {
            Ok(real) => {
                if !resolved.contains(&real) {
                    resolved.push(real);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (resolved.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        (true, None) => bail!("no usable python3 found"),
        _ => Ok(resolved),
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The real executable behind `python` (pyenv shims are shell scripts that
/// need the caller's environment), asked of the interpreter itself, with a
/// timeout.
fn resolve_python(python: &Path) -> Result<PathBuf> {
    let mut child = Command::new(python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; sys.stdout.write(sys.executable)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not answer within 20 s", python.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    if !status.success() || out.is_empty() {
        bail!(
            "{} does not run ({status}): {}",
            python.display(),
            err.trim()
        );
    }
    let real = PathBuf::from(out);
    Ok(fs::canonicalize(&real).unwrap_or(real))
}

// ---------------------------------------------------------------------------
// The child: everything between fork and exec.

/// Step codes reported on the control channel when a layer fails.
const STEPS: [&str; 15] = [
    "?",
    "setsid",
    "PR_SET_PDEATHSIG",
    "lpo exited",
    "control channel",
    "user namespace",
    "network namespace",
    "pid namespace",
    "mount namespace",
    "resource limits",
    "fork",
    "private /proc",
    "dropping to the sandbox uid",
    "PR_SET_NO_NEW_PRIVS",
    "sandbox directory",
];
const S_SETSID: u8 = 1;
const S_PDEATH: u8 = 2;
const S_PARENT: u8 = 3;
const S_CTL: u8 = 4;
const S_USER: u8 = 5;
const S_NET: u8 = 6;
const S_PID: u8 = 7;
const S_MNT: u8 = 8;
const S_RLIMIT: u8 = 9;
const S_FORK: u8 = 10;
const S_PROC: u8 = 11;
const S_DROP: u8 = 12;
const S_NNP: u8 = 13;
const S_DIR: u8 = 14;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const ZERO: libc::c_ulong = 0;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Everything the child needs, prepared before the fork: between fork and
/// exec only async-signal-safe calls are allowed (no allocation, no locks).
///
/// Two processes run this. The first (the *waiter*) makes a new session,
/// enters the namespaces, sets up the mounts and the resource limits, and
/// forks; the second (the namespace's init) mounts `/proc`, drops to the
/// sandbox uid and execs python, while the waiter closes every descriptor,
/// waits for it and exits the same way (same status or same signal), so
/// lpo's child dies exactly as python does. Without a PID namespace the
/// waiter is also a child subreaper: the program's orphans, sessions it
/// escaped to included, are re-parented to it, and it kills and reaps them
/// all before it exits.
struct ChildSetup {
    plan: Plan,
    parent: libc::pid_t,
    ctl: RawFd,
    uid: libc::uid_t,
    gid: libc::gid_t,
    rlimits: [(u8, u64, u64); 6],
    dir: CString,
    slash: CString,
    proc_path: CString,
    proc_type: CString,
    setgroups_path: CString,
    uid_map_path: CString,
    gid_map_path: CString,
    children_path: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl ChildSetup {
    fn new(
        plan: Plan,
        limits: &Limits,
        nproc: u64,
        uid: u32,
        dir: &Path,
        ctl: &OwnedFd,
    ) -> Result<ChildSetup> {
        let own_uid = unsafe { libc::getuid() };
        let own_gid = unsafe { libc::getgid() };
        let c = |s: &str| CString::new(s).expect("no NUL");
        Ok(ChildSetup {
            plan,
            parent: std::process::id() as libc::pid_t,
            ctl: ctl.as_raw_fd(),
            uid,
            gid: if plan.drop_uid { uid } else { own_gid },
            rlimits: [
                (
                    R_CPU,
                    limits.cpu_seconds.max(1),
                    limits.cpu_seconds.max(1) + 1,
                ),
                (R_AS, limits.memory_bytes, limits.memory_bytes),
                (R_NPROC, nproc, nproc),
                (R_FSIZE, limits.file_bytes, limits.file_bytes),
                (
                    R_NOFILE,
                    limits.open_files.max(16),
                    limits.open_files.max(16),
                ),
                (R_CORE, 0, 0),
            ],
            dir: CString::new(dir.as_os_str().as_bytes()).context("NUL in temp dir path")?,
            slash: c("/"),
            proc_path: c("/proc"),
            proc_type: c("proc"),
            setgroups_path: c("/proc/self/setgroups"),
            uid_map_path: c("/proc/self/uid_map"),
            gid_map_path: c("/proc/self/gid_map"),
            children_path: c("/proc/thread-self/children"),
            uid_map: format!("{own_uid} {own_uid} 1\n").into_bytes(),
            gid_map: format!("{own_gid} {own_gid} 1\n").into_bytes(),
        })
    }

    /// The `pre_exec` hook, in the waiter.
    fn run(&self) -> io::Result<()> {
        // SAFETY: async-signal-safe system calls on prepared data only.
        unsafe { self.waiter() }
    }

    fn record(&self, bytes: &[u8]) {
        // SAFETY: write(2) on our pipe; a short or failed write only loses
        // a diagnostic.
        unsafe {
            libc::write(self.ctl, bytes.as_ptr().cast(), bytes.len());
        }
    }

    /// Reports a failed step (with errno) and returns it as the error.
    fn fail(&self, step: u8) -> io::Error {
        let err = io::Error::last_os_error();
        let code = err.raw_os_error().unwrap_or(0).to_le_bytes();
        self.record(&[b'E', step, code[0], code[1], code[2], code[3]]);
        err
    }

    /// Whether a layer's outcome allows going on: on failure, the probe goes
    /// on without it, a real run stops.
    fn layer(&self, ok: bool, step: u8) -> io::Result<bool> {
        if ok {
            Ok(true)
        } else if self.plan.best_effort {
            let err = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(0)
                .to_le_bytes();
            self.record(&[b'W', step, err[0], err[1], err[2], err[3]]);
            Ok(false)
        } else {
            Err(self.fail(step))
        }
    }

    unsafe fn waiter(&self) -> io::Result<()> {
        if libc::setsid() < 0 {
            return Err(self.fail(S_SETSID));
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if !prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) {
            return Err(self.fail(S_PDEATH));
        }
        if libc::getppid() != self.parent {
            return Err(self.fail(S_PARENT));
        }
        // The control channel must survive exec in the init (it is CLOEXEC).
        if libc::fcntl(self.ctl, libc::F_SETFD, 0) < 0 {
            return Err(self.fail(S_CTL));
        }
        let mut mask = 0u8;
        if self.plan.user_ns {
            let ok = unshare(libc::CLONE_NEWUSER) && self.write_id_maps();
            if self.layer(ok, S_USER)? {
                mask |= L_USER;
            }
        }
        let namespaces = [
            (self.plan.net_ns, libc::CLONE_NEWNET, L_NET, S_NET),
            (self.plan.pid_ns, libc::CLONE_NEWPID, L_PID, S_PID),
        ];
        for (wanted, flag, bit, step) in namespaces {
            if wanted && self.layer(unshare(flag), step)? {
                mask |= bit;
            }
        }
        if self.plan.mount_ns {
            let ok = unshare(libc::CLONE_NEWNS) && self.read_only_mounts();
            if self.layer(ok, S_MNT)? {
                mask |= L_MNT;
            }
        }
        // Again: after the bind mount the old cwd is on the read-only mount.
        if libc::chdir(self.dir.as_ptr()) < 0 {
            return Err(self.fail(S_DIR));
        }
        // After the user namespace: RLIMIT_NPROC then counts its processes.
        for (resource, soft, hard) in self.rlimits {
            if !set_rlimit(resource, soft, hard) {
                return Err(self.fail(S_RLIMIT));
            }
        }
        // Without a PID namespace, orphans of the program come to the
        // waiter (not to lpo or init), which kills and reaps them.
        let subreaper = mask & L_PID == 0 && prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        self.record(&[b'L', mask]);
        let pid = libc::fork();
        if pid < 0 {
            return Err(self.fail(S_FORK));
        }
        if pid == 0 {
            return self.init(mask);
        }
        self.wait_and_mirror(pid, subreaper)
    }

    unsafe fn write_id_maps(&self) -> bool {
        write_file(&self.setgroups_path, b"deny")
            && write_file(&self.uid_map_path, &self.uid_map)
            && write_file(&self.gid_map_path, &self.gid_map)
    }

    /// In the new mount namespace: nothing propagates back, the sandbox
    /// directory becomes its own (writable) mount, everything else read-only.
    unsafe fn read_only_mounts(&self) -> bool {
        let null = std::ptr::null::<libc::c_char>();
        if libc::mount(
            null,
            self.slash.as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) < 0
        {
            return false;
        }
        if libc::mount(
            self.dir.as_ptr(),
            self.dir.as_ptr(),
            null,
            libc::MS_BIND,
            std::ptr::null(),
        ) < 0
        {
            return false;
        }
        let read_only = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let writable = MountAttr {
            attr_set: 0,
            attr_clr: MOUNT_ATTR_RDONLY,
            propagation: 0,
            userns_fd: 0,
        };
        let size = std::mem::size_of::<MountAttr>();
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            self.slash.as_ptr(),
            AT_RECURSIVE,
            &read_only as *const MountAttr,
            size,
        ) == 0
            && libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                self.dir.as_ptr(),
                0 as libc::c_uint,
                &writable as *const MountAttr,
                size,
            ) == 0
    }

    /// The second process: init of the PID namespace, then python.
    unsafe fn init(&self, c1_mask: u8) -> io::Result<()> {
        // A group of its own: lpo kills the program's group and leaves the
        // waiter alive to reap it and clean up.
        libc::setpgid(0, 0);
        let mut mask = 0u8;
        if self.plan.private_proc && c1_mask & L_PID != 0 && c1_mask & L_MNT != 0 {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
            let ok = libc::mount(
                self.proc_type.as_ptr(),
                self.proc_path.as_ptr(),
                self.proc_type.as_ptr(),
                flags,
                std::ptr::null(),
            ) == 0;
            if self.layer(ok, S_PROC)? {
                mask |= L_PROC;
            }
        }
        if self.plan.drop_uid {
            let ok = libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(self.gid) == 0
                && libc::setuid(self.uid) == 0;
            if self.layer(ok, S_DROP)? {
                mask |= L_DROP;
            }
        }
        let ok = prctl(libc::PR_SET_NO_NEW_PRIVS, 1);
        if self.layer(ok, S_NNP)? {
            mask |= L_NNP;
        }
        // After the uid change (which clears it): die with the waiter.
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        // No descriptor of lpo's but stdio and the control channel reaches
        // python (libraries may have opened some without CLOEXEC).
        mark_cloexec(3, self.ctl - 1);
        mark_cloexec(self.ctl + 1, libc::c_uint::MAX as libc::c_int);
        self.record(&[b'C', mask]);
        Ok(())
    }

    /// As subreaper after python exited: kills every child left (orphaned
    /// descendants, escaped sessions included, are re-parented here) until
    /// none is left, reaping as it goes; their own orphans come next round.
    unsafe fn kill_orphans(&self) {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        for _ in 0..5000 {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            let fd = libc::open(
                self.children_path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return; // No CONFIG_PROC_CHILDREN: lpo kills what it can find.
            }
            let mut buf = [0u8; 4096];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            let mut any = false;
            let mut pid: libc::pid_t = 0;
            for &b in &buf[..n.max(0) as usize] {
                if b.is_ascii_digit() {
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as libc::pid_t);
                } else if pid > 0 {
                    libc::kill(pid, libc::SIGKILL);
                    any = true;
                    pid = 0;
                }
            }
            if pid > 0 {
                libc::kill(pid, libc::SIGKILL);
                any = true;
            }
            if !any {
                return;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }

    /// The waiter: holds nothing open, waits for python, dies the same way.
    unsafe fn wait_and_mirror(&self, pid: libc::pid_t, subreaper: bool) -> ! {
        if libc::syscall(
            libc::SYS_close_range,
            0 as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        ) != 0
        {
            for fd in 0..65536 {
                libc::close(fd);
            }
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(125);
            }
        }
        if subreaper {
            self.kill_orphans();
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            prctl(libc::PR_SET_DUMPABLE, 0);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(125)
    }
}

const R_CPU: u8 = 0;
const R_AS: u8 = 1;
const R_NPROC: u8 = 2;
const R_FSIZE: u8 = 3;
const R_NOFILE: u8 = 4;
const R_CORE: u8 = 5;

/// setrlimit, lowering the wish to the hard limit a non-root caller cannot
/// raise. Async-signal-safe.
unsafe fn set_rlimit(which: u8, soft: u64, hard: u64) -> bool {
    macro_rules! apply {
        ($res:expr) => {{
            let mut current = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit($res, &mut current) < 0 {
                return false;
            }
            let hard = (hard as libc::rlim_t).min(current.rlim_max);
            let soft = (soft as libc::rlim_t).min(hard);
            let wanted = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            libc::setrlimit($res, &wanted) == 0
        }};
    }
    match which {
        R_CPU => apply!(libc::RLIMIT_CPU),
        R_AS => apply!(libc::RLIMIT_AS),
        R_NPROC => apply!(libc::RLIMIT_NPROC),
        R_FSIZE => apply!(libc::RLIMIT_FSIZE),
        R_NOFILE => apply!(libc::RLIMIT_NOFILE),
        _ => apply!(libc::RLIMIT_CORE),
    }
}

/// unshare(2) through `syscall`: glibc's `unshare` is a raw stub that hands
/// the kernel the whole 64-bit register, whose upper half a caller may leave
/// dirty for an `int` argument (the kernel then answers EINVAL).
unsafe fn unshare(flags: libc::c_int) -> bool {
    libc::syscall(libc::SYS_unshare, flags as libc::c_ulong) == 0
}

/// prctl(2) with all four arguments as `unsigned long` (the unused ones
/// zero, as `PR_SET_NO_NEW_PRIVS` requires).
unsafe fn prctl(option: libc::c_int, arg: libc::c_ulong) -> bool {
    libc::prctl(option, arg, ZERO, ZERO, ZERO) == 0
}

/// Async-signal-safe write of a whole small file.
unsafe fn write_file(path: &CString, data: &[u8]) -> bool {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    n == data.len() as isize
}

/// Marks descriptors `first..=last` close-on-exec (keeps std's own
/// exec-error channel working until the exec).
unsafe fn mark_cloexec(first: libc::c_int, last: libc::c_int) {
    if first > last {
        return;
    }
    let r = libc::syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        last as libc::c_uint,
        CLOSE_RANGE_CLOEXEC,
    );
    if r != 0 {
        for fd in first..=last.min(65535) {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

// ---------------------------------------------------------------------------
// The parent: reading, waiting, killing.

const STDOUT_KEEP: usize = 16 << 10;
const STDERR_KEEP: usize = 16 << 10;
const CTL_KEEP: usize = 64 << 10;
/// How long the pipes may stay open after the program exited.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long the waiter may take to reap a killed program before lpo kills it
/// too.
const ESCALATE_AFTER: Duration = Duration::from_secs(1);
/// How long a killed program may take to be reaped before lpo gives up.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// One pipe from the child, read without blocking; keeps a bounded head (or
/// tail) and counts the rest.
struct Stream {
    fd: OwnedFd,
    open: bool,
    total: usize,
    kept: Vec<u8>,
    keep: usize,
    tail: bool,
}

impl Stream {
    fn new(fd: OwnedFd, keep: usize, tail: bool) -> Result<Stream> {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error()).context("making a pipe non-blocking");
            }
        }
        Ok(Stream {
            fd,
            open: true,
            total: 0,
            kept: Vec::new(),
            keep,
            tail,
        })
    }

    /// Reads what is there now.
    fn read_available(&mut self) {
        let mut buf = [0u8; 16384];
        while self.open {
            // SAFETY: read(2) into a local buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                self.take(&buf[..n as usize]);
            } else if n == 0 {
                self.open = false;
            } else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => break,
                    _ => self.open = false,
                }
            }
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        if self.tail {
            self.kept.extend_from_slice(bytes);
            if self.kept.len() > 2 * self.keep {
                let cut = self.kept.len() - self.keep;
                self.kept.drain(..cut);
            }
        } else if self.kept.len() < self.keep {
            let room = self.keep - self.kept.len();
            self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

/// Why lpo killed the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    Timeout,
    Output,
}

/// What a run left: status, usage, output, control messages.
struct Finished {
    /// The wait status, `None` if the child could not be reaped.
    status: Option<libc::c_int>,
    cpu_ms: u64,
    killed: Option<Killed>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output_total: usize,
    ctl: Vec<u8>,
    nonce: String,
}

impl Finished {
    fn exited_zero(&self) -> bool {
        self.status
            .is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
    }
}

fn monitor(
    pid: libc::pid_t,
    mut streams: [Stream; 3],
    deadline: Instant,
    output_limit: usize,
    cleanup: impl Fn(),
) -> Finished {
    // SAFETY: pidfd_open on our own child (not yet reaped).
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) as RawFd;
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    };
    let mut killed: Option<(Killed, Instant)> = None;
    let mut exited_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if exited_at.is_none() && has_exited(pid) {
            // The waiter is a zombie: its group id cannot be reused yet.
            kill_group(pid);
            cleanup();
            exited_at = Some(now);
        }
        if let Some(at) = exited_at {
            if streams.iter().all(|s| !s.open) || now > at + DRAIN_GRACE {
                break;
            }
        } else if killed.is_none() {
            let output = streams[0].total + streams[1].total;
            let reason = if output > output_limit {
                Some(Killed::Output)
            } else if now >= deadline {
                Some(Killed::Timeout)
            } else {
                None
            };
            if let Some(reason) = reason {
                if !kill_program(pid) {
                    kill_group(pid);
                    cleanup();
                }
                killed = Some((reason, now));
            }
        } else if let Some((_, at)) = killed {
            if now > at + KILL_GRACE {
                break;
            }
            if now > at + ESCALATE_AFTER {
                // The waiter did not finish: kill it too.
                kill_group(pid);
                cleanup();
            }
        }
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if let (Some(fd), None) = (&pidfd, exited_at) {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let tick = if pidfd.is_some() { 100 } else { 10 };
        let until_deadline = deadline
            .saturating_duration_since(now)
            .as_millis()
            .min(1000) as i32;
        let timeout = if killed.is_some() || exited_at.is_some() {
            10
        } else {
            until_deadline.clamp(1, tick)
        };
        // SAFETY: poll(2) on descriptors we own.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout);
        }
        for stream in streams.iter_mut() {
            stream.read_available();
        }
    }
    let (status, cpu_ms) = reap(pid);
    let [stdout, stderr, ctl] = streams;
    Finished {
        status,
        cpu_ms,
        killed: killed.map(|k| k.0),
        output_total: stdout.total + stderr.total,
        stdout: stdout.kept,
        stderr: stderr.kept,
        ctl: ctl.kept,
        nonce: String::new(),
    }
}

/// Whether the child has exited, without reaping it.
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid(2) with WNOWAIT on our child.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r < 0 || info.si_pid() != 0
    }
}

/// Reaps the child: wait status and CPU milliseconds.
fn reap(pid: libc::pid_t) -> (Option<libc::c_int>, u64) {
    let until = Instant::now() + KILL_GRACE;
    loop {
        // SAFETY: wait4(2) on our child.
        let (r, status, usage) = unsafe {
            let mut status = 0;
            let mut usage: libc::rusage = std::mem::zeroed();
            let r = libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage);
            (r, status, usage)
        };
        if r == pid {
            let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
            return (Some(status), ms(usage.ru_utime) + ms(usage.ru_stime));
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return (None, 0);
        }
        if Instant::now() > until {
            return (None, 0);
        }
        kill_group(pid);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL to the program (python's process group, python being the
/// waiter's only child), leaving the waiter to reap it and kill its orphans;
/// `false` when python could not be found (then kill the waiter's group).
fn kill_program(waiter: libc::pid_t) -> bool {
    let path = format!("/proc/{waiter}/task/{waiter}/children");
    let Ok(children) = fs::read_to_string(path) else {
        return false;
    };
    let mut any = false;
    for child in children
        .split_whitespace()
        .filter_map(|p| p.parse::<libc::pid_t>().ok())
    {
        // SAFETY: kill(2) on the waiter's child, not yet reaped.
        unsafe {
            libc::killpg(child, libc::SIGKILL);
            libc::kill(child, libc::SIGKILL);
        }
        any = true;
    }
    any
}

/// SIGKILL to the waiter's process group.
fn kill_group(pid: libc::pid_t) {
    // SAFETY: kill(2); the group id is our unreaped child's pid.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills every process of a dedicated sandbox uid (without a PID namespace,
/// processes that left the group with `setsid` are found this way).
fn kill_uid(uid: u32) {
    for _ in 0..100 {
        let pids = pids_of_uid(uid);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Live processes (not zombies) whose real uid is `uid`.
fn pids_of_uid(uid: u32) -> Vec<libc::pid_t> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            };
            field("Uid:").as_deref() == Some(uid.to_string().as_str())
                && field("State:").as_deref() != Some("Z")
        })
        .collect()
}

/// Tasks (threads included: what `RLIMIT_NPROC` counts) of a uid.
fn count_tasks_of(uid: u32) -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 1024;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let mut owner = None;
        let mut threads = 1;
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("Uid:") {
                owner = v
                    .split_whitespace()
                    .next()
                    .and_then(|u| u.parse::<u32>().ok());
            } else if let Some(v) = line.strip_prefix("Threads:") {
                threads = v.trim().parse().unwrap_or(1);
            }
        }
        if owner == Some(uid) {
            count += threads;
        }
    }
    count
}

// ---------------------------------------------------------------------------
// Classification.

/// The control channel: binary records from the two child processes (`W`
/// step errno: a layer the probe went without; `E` step errno: the setup
/// failed; `L` mask: the waiter's layers; `C` mask: the init's, last before
/// exec), then the runner's text lines (`FORBIDDEN what`, `DONE secret`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Records {
    waiter: u8,
    init: u8,
    skipped: Vec<(u8, i32)>,
    failed: Option<(u8, i32)>,
    text: String,
}

fn parse_records(ctl: &[u8]) -> Records {
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

fn step_name(step: u8) -> &'static str {
    STEPS.get(step as usize).copied().unwrap_or("?")
}

/// `step: error` for a step record.
fn describe_step((step, errno): (u8, i32)) -> String {
    let error = io::Error::from_raw_os_error(errno);
    format!("{}: {error}", step_name(step))
}

impl Finished {
    fn classify(&self, limits: &Limits, start: Instant) -> Execution {
        let wall_ms = start.elapsed().as_millis() as u64;
        let stderr = String::from_utf8_lossy(&self.stderr);
        let records = parse_records(&self.ctl);
        let text = records.text;
        let forbidden = text
            .lines()
            .find_map(|l| l.strip_prefix("FORBIDDEN "))
            .map(str::to_string);
        let done = text.lines().any(|l| {
            l.strip_prefix("DONE ") == Some(self.nonce.as_str()) && !self.nonce.is_empty()
        });
        let last = last_exception(&stderr);
        let signal = self
            .status
            .filter(|s| libc::WIFSIGNALED(*s))
            .map(|s| libc::WTERMSIG(s));
        let exit = self
            .status
            .filter(|s| libc::WIFEXITED(*s))
            .map(|s| libc::WEXITSTATUS(s));
        let cpu_exhausted = self.cpu_ms + 100 >= limits.cpu_seconds.saturating_mul(1000);
        let (cause, summary): (Option<Cause>, String) = if let Some(what) = forbidden {
            let summary = format!("refused by the sandbox: {what}");
            (Some(Cause::Forbidden(what)), summary)
        } else if self.killed == Some(Killed::Output) || self.output_total > limits.output_bytes {
            // Also when it got out before the kill: the rule must not depend
            // on timing.
            let summary = format!(
                "{} bytes of output or more (limit {})",
                self.output_total, limits.output_bytes
            );
            (Some(Cause::Output), summary)
        } else if self.killed == Some(Killed::Timeout) {
            let summary = format!("killed at the wall-clock limit ({:?})", limits.wall);
            (Some(Cause::Timeout), summary)
        } else if self.status.is_none() {
            let summary = "the program could not be reaped".to_string();
            (Some(Cause::Sandbox(summary.clone())), summary)
        } else if exit == Some(0) && done {
            (None, String::new())
        } else if signal == Some(libc::SIGXCPU) || (signal == Some(libc::SIGKILL) && cpu_exhausted)
        {
            let summary = format!("killed at the CPU limit ({} s)", limits.cpu_seconds);
            (Some(Cause::CpuTime), summary)
        } else if last.starts_with("MemoryError")
            || (signal.is_some() && stderr.contains("MemoryError"))
        {
            let summary = format!("out of memory (limit {} bytes)", limits.memory_bytes);
            (Some(Cause::Memory), summary)
        } else if last.starts_with("BlockingIOError: [Errno 11]")
            || last.contains("can't start new thread")
            || (signal.is_some() && stderr.contains("BlockingIOError: [Errno 11]"))
        {
            let summary = format!("process limit reached ({})", limits.processes);
            (Some(Cause::Processes), summary)
        } else if last.contains("[Errno 27]") || signal == Some(libc::SIGXFSZ) {
            let summary = format!("file size limit reached ({} bytes)", limits.file_bytes);
            (Some(Cause::FileSize), summary)
        } else if let Some(sig) = signal {
            (Some(Cause::Signal(sig)), format!("killed by signal {sig}"))
        } else if exit == Some(0) {
            let summary = "exited with status 0 before its tests finished".to_string();
            (Some(Cause::EarlyExit), summary)
        } else if let Some(failed) = records.failed {
            let summary = format!("sandbox setup failed: {}", describe_step(failed));
            (Some(Cause::Sandbox(summary.clone())), summary)
        } else {
            let code = exit.unwrap_or(-1);
            let summary = if last.is_empty() {
                format!("exit status {code}")
            } else {
                last.to_string()
            };
            (Some(Cause::Failed), summary)
        };
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

// ---------------------------------------------------------------------------
// Small helpers.

/// The private directory of one run: 0700, owned by the sandbox uid,
/// removed on drop (whatever the program did to its permissions).
struct SandboxDir {
    path: PathBuf,
}

impl SandboxDir {
    fn create(owner: Option<u32>) -> Result<SandboxDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base =
            fs::canonicalize(std::env::temp_dir()).context("resolving the temp directory")?;
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "lpo-sandbox-{}-{n}-{}",
                std::process::id(),
                nonce()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = SandboxDir { path };
                    if let Some(uid) = owner {
                        std::os::unix::fs::chown(&dir.path, Some(uid), Some(uid))
                            .context("giving the sandbox directory to the sandbox uid")?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("creating a sandbox directory in {}", base.display())
                    })
                }
            }
        }
        bail!(
            "could not create a unique sandbox directory in {}",
            base.display()
        )
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.path).is_err() {
            make_removable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Gives the owner rwx on every directory below `path` (a program may have
/// removed them).
fn make_removable(path: &Path) {
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_removable(&entry.path());
            }
        }
    }
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
fn nonce() -> String {
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

/// Dedicated uids for root: 4096 above `0x7F00_0000` (below 2^31, above the
/// ranges distributions and container runtimes hand out), one per
/// concurrent run, offset by the process id so concurrent lpo processes
/// rarely share one.
const UID_BASE: u32 = 0x7F00_0000;
const UID_SLOTS: u32 = 4096;

fn next_sandbox_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let salt = std::process::id().wrapping_mul(2_654_435_761) % UID_SLOTS;
    UID_BASE + (salt + NEXT.fetch_add(1, Ordering::Relaxed)) % UID_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::OnceLock;

    fn limits() -> Limits {
        Limits {
            wall: Duration::from_secs(3),
            cpu_seconds: 1,
            memory_bytes: 512 << 20,
            processes: 16,
            output_bytes: 64 << 10,
            file_bytes: 1 << 20,
            open_files: 64,
        }
    }

    fn sandbox() -> &'static Sandbox {
        static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
        SANDBOX.get_or_init(|| {
            let sandbox = Sandbox::new(limits()).expect("python3 is needed for these tests");
            eprintln!("sandbox: {}", sandbox.isolation());
            for note in &sandbox.isolation().notes {
                eprintln!("  note: {note}");
            }
            sandbox
        })
    }

    const PROMPT: &str = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n";
    const TEST: &str = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n";

    fn humaneval(completion: &str) -> String {
        humaneval_program(PROMPT, completion, TEST, "add")
    }

    fn unique(tag: &str) -> PathBuf {
        PathBuf::from(format!(
            "/tmp/lpo-sandbox-{tag}-{}-{}",
            std::process::id(),
            nonce()
        ))
    }

    /// Processes whose command line contains `marker`.
    fn processes_with(marker: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(marker) {
                    found.push(format!(
                        "{}: {cmdline}",
                        entry.file_name().to_string_lossy()
                    ));
                }
            }
        }
        found
    }

    /// Zombies of sandbox uids left to init: a waiter died before reaping
    /// (where lpo is PID 1 of a container, they would pile up in lpo).
    fn orphaned_sandbox_zombies() -> Vec<String> {
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("")
                    .to_string()
            };
            let uid: u32 = field("Uid:").parse().unwrap_or(0);
            let sandboxed = (UID_BASE..UID_BASE + UID_SLOTS).contains(&uid);
            if sandboxed && field("State:") == "Z" && field("PPid:") == "1" {
                found.push(status.lines().next().unwrap_or("").to_string());
            }
        }
        found
    }

    #[test]
    fn humaneval_program_layout() {
        let program = humaneval_program(
            "def f():\n",
            "    return 1",
            "def check(c):\n    assert c() == 1\n",
            "f",
        );
        assert_eq!(
            program,
            "def f():\n    return 1\ndef check(c):\n    assert c() == 1\n\ncheck(f)\n"
        );
    }

    #[test]
    fn isolation_is_probed() {
        let isolation = sandbox().isolation();
        assert!(!isolation.python_version.is_empty());
        assert!(isolation.audit_hook, "{isolation:?}");
        if unsafe { libc::geteuid() } == 0 {
            // Root on a Linux that allows namespaces (this container, CI).
            assert!(
                isolation.dedicated_uid && isolation.unprivileged_user,
                "{isolation:?}"
            );
            assert!(isolation.process_limit, "{isolation:?}");
        }
    }

    /// Where util-linux's `unshare` gets namespaces, so must the sandbox.
    #[test]
    fn namespaces_are_used_where_the_machine_allows_them() {
        let isolation = sandbox().isolation();
        let root = unsafe { libc::geteuid() } == 0;
        let mut args = vec!["--net", "--pid", "--fork", "--mount"];
        if !root {
            args.insert(0, "--user");
        }
        let works = Command::new("unshare")
            .args(&args)
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            eprintln!("skipped: `unshare {}` does not work here", args.join(" "));
            return;
        }
        assert!(isolation.network_namespace, "{isolation:?}");
        assert!(
            isolation.pid_namespace && isolation.private_proc,
            "{isolation:?}"
        );
        assert!(isolation.read_only_filesystem, "{isolation:?}");
        assert!(isolation.user_namespace || root, "{isolation:?}");
    }

    #[test]
    fn correct_solution_passes() {
        let execution = sandbox().run(&humaneval("    return a + b"));
        assert!(execution.passed, "{execution:?}");
        assert_eq!(execution.cause, None);
    }

    #[test]
    fn wrong_solution_fails_with_the_assertion() {
        let execution = sandbox().run(&humaneval("    return a - b"));
        assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
        assert!(
            execution.detail.starts_with("AssertionError"),
            "{execution:?}"
        );
        let execution = sandbox().run(&humaneval("    return a +* b"));
        assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
        assert!(execution.detail.contains("SyntaxError"), "{execution:?}");
    }

    #[test]
    fn early_exit_is_not_a_pass() {
        for exit in ["    raise SystemExit(0)", "    import os; os._exit(0)"] {
            let execution = sandbox().run(&humaneval(exit));
            assert_eq!(
                execution.cause,
                Some(Cause::EarlyExit),
                "{exit}: {execution:?}"
            );
        }
        // A wrong solution that leaves before its tests run.
        let execution = sandbox().run(&humaneval("    return a - b\nimport sys\nsys.exit(0)"));
        assert_eq!(execution.cause, Some(Cause::EarlyExit), "{execution:?}");
    }

    #[test]
    fn busy_loop_hits_the_cpu_or_wall_limit() {
        let execution = sandbox().run(&humaneval("    while True:\n        pass"));
        assert!(
            matches!(execution.cause, Some(Cause::CpuTime | Cause::Timeout)),
            "{execution:?}"
        );
        assert!(execution.wall_ms < 5000, "{execution:?}");
    }

    #[test]
    fn sleeping_loop_times_out() {
        let execution = sandbox().run("import time\nwhile True:\n    time.sleep(1)\n");
        assert_eq!(execution.cause, Some(Cause::Timeout), "{execution:?}");
        assert!((3000..5000).contains(&execution.wall_ms), "{execution:?}");
        // The waiter reaped python: nothing was left to init.
        assert_eq!(orphaned_sandbox_zombies(), Vec::<String>::new());
    }

    #[test]
    fn fork_bomb_is_refused_by_the_hook() {
        let execution = sandbox().run("import os\nwhile True:\n    os.fork()\n");
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden("os.fork".into())),
            "{execution:?}"
        );
        // Swallowing the exception does not hide it.
        let program = "import os\nfor _ in range(3):\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
        let execution = sandbox().run(program);
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden("os.fork".into())),
            "{execution:?}"
        );
    }

    #[test]
    fn fork_bomb_without_the_hook_is_contained_by_the_os() {
        let isolation = sandbox().isolation();
        if !isolation.process_limit {
            eprintln!("skipped: no enforceable process limit here ({isolation})");
            return;
        }
        let marker = format!("{}", 100_000_000 + std::process::id());
        // Children leave the process group (setsid) and sleep with a marker
        // in their command line, holding the output pipes open; the parent
        // forks until the limit refuses.
        let program = format!(
            "import os\nwhile True:\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\n"
        );
        let execution = sandbox().run_unaudited(&program);
        assert_eq!(execution.cause, Some(Cause::Processes), "{execution:?}");
        assert!(execution.wall_ms < 3000, "{execution:?}");
        assert_eq!(processes_with(&marker), Vec::<String>::new());
        // The exponential kind.
        let execution = sandbox().run_unaudited("import os\nwhile True:\n    os.fork()\n");
        assert!(
            matches!(
                execution.cause,
                Some(Cause::Processes | Cause::CpuTime | Cause::Timeout)
            ),
            "{execution:?}"
        );
    }

    #[test]
    fn limits_hold_against_a_program_that_fights_them() {
        let programs: Vec<String> = vec![
            // Ignoring SIGXCPU: the hard limit's SIGKILL a second later.
            "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n".into(),
            // Threads count as processes.
            "import threading, time\nfor _ in range(1000):\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n".into(),
            "open('big', 'wb').write(b'x' * (4 << 20))\n".into(),
            // Closed stdio and a flood of refusals on the control channel.
            "import os\nos.close(1)\nos.close(2)\nfor _ in range(100000):\n    try:\n        os.system('true')\n    except PermissionError:\n        pass\n".into(),
        ];
        let results = sandbox().run_all(&programs, 2);
        let causes: Vec<Option<Cause>> = results.iter().map(|e| e.cause.clone()).collect();
        assert!(
            matches!(causes[0], Some(Cause::CpuTime | Cause::Timeout)),
            "{results:?}"
        );
        assert_eq!(causes[1], Some(Cause::Processes), "{results:?}");
        assert_eq!(causes[2], Some(Cause::FileSize), "{results:?}");
        assert_eq!(
            causes[3],
            Some(Cause::Forbidden("os.system".into())),
            "{results:?}"
        );
    }

    #[test]
    fn huge_allocation_is_a_memory_failure() {
        let execution = sandbox().run(&humaneval(
            "    x = bytearray(10 * 1024**3)\n    return a + b",
        ));
        assert_eq!(execution.cause, Some(Cause::Memory), "{execution:?}");
    }

    #[test]
    fn writes_outside_the_sandbox_are_refused() {
        let target = unique("escape");
        let completion = format!(
            "    open({:?}, 'w').write('x')\n    return a + b",
            target.display().to_string()
        );
        let execution = sandbox().run(&humaneval(&completion));
        let expected = format!("open for writing outside the sandbox: {}", target.display());
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden(expected)),
            "{execution:?}"
        );
        assert!(!target.exists());
        // Through a symlink made inside the sandbox.
        let completion = format!(
            "    import os\n    os.symlink({:?}, 'link')\n    open('link', 'w').write('x')\n    return a + b",
            target.display().to_string()
        );
        let execution = sandbox().run(&humaneval(&completion));
        assert!(
            matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("open for writing outside")),
            "{execution:?}"
        );
        assert!(!target.exists());
        // Removing a file outside.
        let victim = unique("victim");
        fs::write(&victim, "keep").unwrap();
        let completion = format!(
            "    import os\n    os.remove({:?})\n    return a + b",
            victim.display().to_string()
        );
        let execution = sandbox().run(&humaneval(&completion));
        assert!(
            matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("os.remove outside")),
            "{execution:?}"
        );
        assert!(victim.exists());
        fs::remove_file(&victim).unwrap();
    }

    #[test]
    fn writes_outside_fail_without_the_hook_too() {
        let isolation = sandbox().isolation();
        if !isolation.read_only_filesystem {
            eprintln!("skipped: no read-only filesystem here");
            return;
        }
        let target = unique("escape-os");
        let program = format!("open({:?}, 'w').write('x')\n", target.display().to_string());
        let execution = sandbox().run_unaudited(&program);
        assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
        assert!(
            execution.detail.contains("Read-only file system"),
            "{execution:?}"
        );
        assert!(!target.exists());
    }

    #[test]
    fn writes_inside_the_sandbox_are_allowed() {
        let completion = "    import os, tempfile\n    with open('scratch.txt', 'w') as f:\n        f.write(str(a + b))\n    os.makedirs('sub', exist_ok=True)\n    os.rename('scratch.txt', 'sub/s.txt')\n    with tempfile.NamedTemporaryFile('w') as t:\n        t.write('x')\n    with open('/dev/null', 'w') as n:\n        n.write('x')\n    return int(open('sub/s.txt').read())";
        let execution = sandbox().run(&humaneval(completion));
        assert!(execution.passed, "{execution:?}");
    }

    #[test]
    fn socket_connect_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let program = format!(
            "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\ns.sendall(b'hi')\n"
        );
        let execution = sandbox().run(&program);
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden("socket.connect".into())),
            "{execution:?}"
        );
        if sandbox().isolation().network_namespace {
            let execution = sandbox().run_unaudited(&program);
            assert_eq!(execution.cause, Some(Cause::Failed), "{execution:?}");
            assert!(execution.detail.contains("unreachable"), "{execution:?}");
        }
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the listener got a connection: {accepted:?}"
        );
    }

    #[test]
    fn os_system_is_refused() {
        let target = unique("system");
        let program = format!("import os\nos.system('echo hi > {}')\n", target.display());
        let execution = sandbox().run(&program);
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden("os.system".into())),
            "{execution:?}"
        );
        assert!(!target.exists());
        let execution = sandbox().run("import subprocess\nsubprocess.run(['true'])\n");
        assert_eq!(
            execution.cause,
            Some(Cause::Forbidden("subprocess.Popen".into())),
            "{execution:?}"
        );
        let execution = sandbox().run("import ctypes\n");
        assert!(
            matches!(&execution.cause, Some(Cause::Forbidden(w)) if w.starts_with("ctypes.")),
            "{execution:?}"
        );
    }

    #[test]
    fn huge_output_is_bounded() {
        let execution = sandbox().run("while True:\n    print('x' * 1000)\n");
        assert_eq!(execution.cause, Some(Cause::Output), "{execution:?}");
        assert!(execution.detail.len() < 4000, "{}", execution.detail.len());
        assert!(execution.wall_ms < 3000, "{execution:?}");
        let execution =
            sandbox().run("import sys\nwhile True:\n    sys.stderr.write('y' * 1000 + '\\n')\n");
        assert_eq!(execution.cause, Some(Cause::Output), "{execution:?}");
        assert!(execution.detail.len() < 4000, "{}", execution.detail.len());
    }

    #[test]
    fn lingering_children_do_not_hold_the_run() {
        // Without the hook: a child that leaves the group and keeps the
        // output pipes open must not keep lpo waiting.
        let marker = format!("{}", 200_000_000 + std::process::id());
        let program = format!(
            "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\nprint('parent done')\n"
        );
        let execution = sandbox().run_unaudited(&program);
        assert!(execution.passed, "{execution:?}");
        assert!(execution.wall_ms < 2500, "{execution:?}");
        // The PID namespace, or else the waiter as subreaper (which needs
        // CONFIG_PROC_CHILDREN), killed the child that escaped.
        let isolation = sandbox().isolation();
        if isolation.pid_namespace || Path::new("/proc/thread-self/children").exists() {
            assert_eq!(processes_with(&marker), Vec::<String>::new());
        } else {
            for line in processes_with(&marker) {
                if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    #[test]
    fn run_all_keeps_order_and_completes() {
        let programs: Vec<String> = vec![
            humaneval("    return a + b"),
            humaneval("    return a - b"),
            "while True:\n    pass\n".into(),
            "import os\nos.fork()\n".into(),
            "x = bytearray(10 * 1024**3)\n".into(),
            "import time\ntime.sleep(10)\n".into(),
            "import os\nos.system('true')\n".into(),
            humaneval("    return b + a"),
        ];
        let started = Instant::now();
        let results = sandbox().run_all(&programs, 2);
        assert_eq!(results.len(), programs.len());
        let causes: Vec<Option<&str>> = results
            .iter()
            .map(|e| e.cause.as_ref().map(Cause::label))
            .collect();
        assert_eq!(causes[0], None, "{results:?}");
        assert_eq!(causes[1], Some("failed"));
        assert!(
            matches!(causes[2], Some("cpu_time" | "timeout")),
            "{results:?}"
        );
        assert_eq!(causes[3], Some("forbidden"));
        assert_eq!(causes[4], Some("memory"));
        assert_eq!(causes[5], Some("timeout"));
        assert_eq!(causes[6], Some("forbidden"));
        assert_eq!(causes[7], None, "{results:?}");
        assert!(started.elapsed() < Duration::from_secs(12));
    }

    #[test]
    fn without_namespaces_the_essentials_still_hold() {
        let options = Options {
            namespaces: false,
            ..Options::default()
        };
        let sandbox = Sandbox::with_options(limits(), options).unwrap();
        let isolation = sandbox.isolation();
        assert!(
            !isolation.network_namespace && !isolation.pid_namespace,
            "{isolation:?}"
        );
        assert!(!isolation.read_only_filesystem && !isolation.user_namespace);
        assert!(isolation.audit_hook, "{isolation:?}");
        assert!(sandbox.run(&humaneval("    return a + b")).passed);
        let programs: Vec<String> = vec![
            "import os\nos.fork()\n".into(),
            "import socket\nsocket.create_connection(('127.0.0.1', 9))\n".into(),
            "x = bytearray(10 * 1024**3)\n".into(),
            "import time\ntime.sleep(10)\n".into(),
        ];
        let causes: Vec<Option<Cause>> = sandbox
            .run_all(&programs, 2)
            .into_iter()
            .map(|e| e.cause)
            .collect();
        assert_eq!(causes[0], Some(Cause::Forbidden("os.fork".into())));
        // create_connection resolves first: socket.getaddrinfo is refused.
        assert!(
            matches!(&causes[1], Some(Cause::Forbidden(w)) if w.starts_with("socket.")),
            "{causes:?}"
        );
        assert_eq!(causes[2..], [Some(Cause::Memory), Some(Cause::Timeout)]);
        assert_eq!(orphaned_sandbox_zombies(), Vec::<String>::new());
        if isolation.dedicated_uid {
            // Root without a PID namespace: the processes of the dedicated
            // uid are hunted down, escaped sessions included.
            let marker = format!("{}", 300_000_000 + std::process::id());
            let program = format!(
                "import os\nwhile True:\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sleep', ['sleep', '600', '{marker}'])\n"
            );
            let execution = sandbox.run_unaudited(&program);
            assert_eq!(execution.cause, Some(Cause::Processes), "{execution:?}");
            assert_eq!(processes_with(&marker), Vec::<String>::new());
        }
    }

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
