//! The parent's side of a running program: its three pipes read without
//! blocking and with bounds, the wall-clock and output limits, killing (the
//! program first, so that the waiter reaps it and its orphans; then the
//! waiter's whole group) and reaping.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub(super) const STDOUT_KEEP: usize = 16 << 10;
pub(super) const STDERR_KEEP: usize = 16 << 10;
pub(super) const CTL_KEEP: usize = 64 << 10;
/// How long the pipes may stay open after the program exited.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How long the waiter may take to reap a killed program before lpo kills it
/// too.
const ESCALATE_AFTER: Duration = Duration::from_secs(1);
/// How long a killed program may take to be reaped before lpo gives up.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// One pipe from the child, read without blocking; keeps a bounded head (or
/// tail) and counts the rest.
pub(super) struct Stream {
    fd: OwnedFd,
    open: bool,
    total: usize,
    pub(super) kept: Vec<u8>,
    keep: usize,
    tail: bool,
}

impl Stream {
    pub(super) fn new(fd: OwnedFd, keep: usize, tail: bool) -> Result<Stream> {
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
    pub(super) fn read_available(&mut self) {
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
pub(super) enum Killed {
    Timeout,
    Output,
}

/// What a run left: status, usage, output, control messages.
pub(super) struct Finished {
    /// The wait status, `None` if the child could not be reaped.
    pub(super) status: Option<libc::c_int>,
    pub(super) cpu_ms: u64,
    pub(super) killed: Option<Killed>,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) output_total: usize,
    pub(super) ctl: Vec<u8>,
    pub(super) nonce: String,
}

impl Finished {
    pub(super) fn exited_zero(&self) -> bool {
        self.status
            .is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
    }
}

/// Watches the waiter `pid` until it exited and its pipes closed (or a
/// grace after), killing it at the `deadline` or past `output_limit` bytes;
/// `cleanup` kills what may have escaped the group (the sandbox uid's
/// processes, without a PID namespace). Then reaps it.
pub(super) fn monitor(
    pid: libc::pid_t,
    mut streams: [Stream; 3],
    deadline: Instant,
    output_limit: usize,
    cleanup: impl Fn(),
) -> Finished {
    let pidfd = pidfd_open(pid);
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
            killed = over_limit(&streams, now, deadline, output_limit).map(|reason| {
                if !kill_program(pid) {
                    kill_group(pid);
                    cleanup();
                }
                (reason, now)
            });
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
        let timeout = match killed.is_some() || exited_at.is_some() {
            true => 10,
            false => poll_timeout(now, deadline, pidfd.is_some()),
        };
        let exit_fd = pidfd.as_ref().filter(|_| exited_at.is_none());
        poll_and_read(&mut streams, exit_fd, timeout);
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

/// A pidfd of our child (readable when it exits), where the kernel has them.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open on our own child (not yet reaped).
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) as RawFd;
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// Why the program must be killed now, if it must.
fn over_limit(
    streams: &[Stream; 3],
    now: Instant,
    deadline: Instant,
    output_limit: usize,
) -> Option<Killed> {
    let output = streams[0].total + streams[1].total;
    if output > output_limit {
        Some(Killed::Output)
    } else if now >= deadline {
        Some(Killed::Timeout)
    } else {
        None
    }
}

/// Milliseconds to wait for output while the program runs: until the
/// deadline, at most a tick (short without a pidfd to wake on exit).
fn poll_timeout(now: Instant, deadline: Instant, pidfd: bool) -> i32 {
    let tick = if pidfd { 100 } else { 10 };
    let until_deadline = deadline
        .saturating_duration_since(now)
        .as_millis()
        .min(1000) as i32;
    until_deadline.clamp(1, tick)
}

/// Waits up to `timeout` ms for output (or the exit of the child, on its
/// pidfd), then reads what every open stream has.
fn poll_and_read(streams: &mut [Stream; 3], exit_fd: Option<&OwnedFd>, timeout: i32) {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .filter(|s| s.open)
        .map(|s| s.fd.as_raw_fd())
        .chain(exit_fd.map(|fd| fd.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on descriptors we own.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout);
    }
    for stream in streams.iter_mut() {
        stream.read_available();
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
pub(super) fn reap(pid: libc::pid_t) -> (Option<libc::c_int>, u64) {
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
pub(super) fn kill_group(pid: libc::pid_t) {
    // SAFETY: kill(2); the group id is our unreaped child's pid.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}
