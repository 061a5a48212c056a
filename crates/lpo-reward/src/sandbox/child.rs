//! The child: everything between fork and exec, in two processes.
//!
//! The first (the *waiter*) makes a new session, enters the namespaces, sets
//! up the mounts and the resource limits, and forks; the second (the
//! namespace's init) mounts `/proc`, drops to the sandbox uid and execs
//! python, while the waiter closes every descriptor, waits for it and exits
//! the same way (same status or same signal), so lpo's child dies exactly as
//! python does. Without a PID namespace the waiter is also a child
//! subreaper: the program's orphans, sessions it escaped to included, are
//! re-parented to it, and it kills and reaps them all before it exits.
//!
//! Both report on the control channel: `W`/`E` records for a layer skipped
//! or a step failed (see [`STEPS`]), then `L` and `C` with the masks of the
//! layers each set up (the `L_*` bits).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::sys::{
    mark_cloexec, mount_read_only, prctl, set_rlimit, unshare, write_file, AT_RECURSIVE, R_AS,
    R_CORE, R_CPU, R_FSIZE, R_NOFILE, R_NPROC,
};
use super::Limits;

/// The layers a run sets up. `best_effort` (the probe) skips what fails and
/// reports it; otherwise (every run after the probe) a failing layer is an
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Plan {
    pub(super) user_ns: bool,
    pub(super) net_ns: bool,
    pub(super) pid_ns: bool,
    pub(super) mount_ns: bool,
    pub(super) private_proc: bool,
    pub(super) drop_uid: bool,
    pub(super) best_effort: bool,
}

/// Bits of the layer masks the two processes report.
pub(super) const L_USER: u8 = 1;
pub(super) const L_NET: u8 = 2;
pub(super) const L_PID: u8 = 4;
pub(super) const L_MNT: u8 = 8;
pub(super) const L_PROC: u8 = 16;
pub(super) const L_DROP: u8 = 32;
pub(super) const L_NNP: u8 = 64;

impl Plan {
    /// The plan of the layers a mask says were set up.
    pub(super) fn from_mask(mask: u8) -> Plan {
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
pub(super) const S_USER: u8 = 5;
pub(super) const S_NET: u8 = 6;
pub(super) const S_PID: u8 = 7;
pub(super) const S_MNT: u8 = 8;
const S_RLIMIT: u8 = 9;
pub(super) const S_FORK: u8 = 10;
pub(super) const S_PROC: u8 = 11;
pub(super) const S_DROP: u8 = 12;
const S_NNP: u8 = 13;
const S_DIR: u8 = 14;

pub(super) fn step_name(step: u8) -> &'static str {
    STEPS.get(step as usize).copied().unwrap_or("?")
}

/// `step: error` for a step record.
pub(super) fn describe_step((step, errno): (u8, i32)) -> String {
    let error = io::Error::from_raw_os_error(errno);
    format!("{}: {error}", step_name(step))
}

/// Everything the child needs, prepared before the fork: between fork and
/// exec only async-signal-safe calls are allowed (no allocation, no locks).
pub(super) struct ChildSetup {
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
    pub(super) fn new(
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
        let cpu = limits.cpu_seconds.max(1);
        let files = limits.open_files.max(16);
        Ok(ChildSetup {
            plan,
            parent: std::process::id() as libc::pid_t,
            ctl: ctl.as_raw_fd(),
            uid,
            gid: if plan.drop_uid { uid } else { own_gid },
            rlimits: [
                (R_CPU, cpu, cpu + 1),
                (R_AS, limits.memory_bytes, limits.memory_bytes),
                (R_NPROC, nproc, nproc),
                (R_FSIZE, limits.file_bytes, limits.file_bytes),
                (R_NOFILE, files, files),
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
    pub(super) fn run(&self) -> io::Result<()> {
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

    /// Records `tag step errno` with the current errno.
    fn record_errno(&self, tag: u8, step: u8) -> io::Error {
        let err = io::Error::last_os_error();
        let code = err.raw_os_error().unwrap_or(0).to_le_bytes();
        self.record(&[tag, step, code[0], code[1], code[2], code[3]]);
        err
    }

    /// Reports a failed step (with errno) and returns it as the error.
    fn fail(&self, step: u8) -> io::Error {
        self.record_errno(b'E', step)
    }

    /// Whether a layer's outcome allows going on: on failure, the probe goes
    /// on without it, a real run stops.
    fn layer(&self, ok: bool, step: u8) -> io::Result<bool> {
        if ok {
            Ok(true)
        } else if self.plan.best_effort {
            self.record_errno(b'W', step);
            Ok(false)
        } else {
            Err(self.fail(step))
        }
    }

    /// The first process: session, namespaces, mounts, limits, then the
    /// fork into the init, which returns to exec python.
    unsafe fn waiter(&self) -> io::Result<()> {
        self.detach()?;
        let mask = self.enter_namespaces()?;
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

    /// A session of its own, no blocked signals, death with lpo, and the
    /// control channel kept open across exec.
    unsafe fn detach(&self) -> io::Result<()> {
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
        Ok(())
    }

    /// The namespaces of the plan (and the mounts in the mount namespace):
    /// the mask of those set up.
    unsafe fn enter_namespaces(&self) -> io::Result<u8> {
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
        Ok(mask)
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
        let private = libc::MS_REC | libc::MS_PRIVATE;
        libc::mount(null, self.slash.as_ptr(), null, private, std::ptr::null()) == 0
            && libc::mount(
                self.dir.as_ptr(),
                self.dir.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ) == 0
            && mount_read_only(&self.slash, AT_RECURSIVE, true)
            && mount_read_only(&self.dir, 0, false)
    }

    /// The second process: init of the PID namespace, then python.
    unsafe fn init(&self, waiter_mask: u8) -> io::Result<()> {
        // A group of its own: lpo kills the program's group and leaves the
        // waiter alive to reap it and clean up.
        libc::setpgid(0, 0);
        let mut mask = 0u8;
        let namespaces = waiter_mask & L_PID != 0 && waiter_mask & L_MNT != 0;
        if self.plan.private_proc && namespaces && self.layer(self.mount_proc(), S_PROC)? {
            mask |= L_PROC;
        }
        if self.plan.drop_uid && self.layer(self.drop_to_uid(), S_DROP)? {
            mask |= L_DROP;
        }
        if self.layer(prctl(libc::PR_SET_NO_NEW_PRIVS, 1), S_NNP)? {
            mask |= L_NNP;
        }
        // After the uid change (which clears it): die with the waiter.
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        // No descriptor of lpo's but stdio and the control channel reaches
        // python (libraries may have opened some without CLOEXEC).
        mark_cloexec(3, self.ctl - 1);
        mark_cloexec(self.ctl + 1, libc::c_int::MAX);
        self.record(&[b'C', mask]);
        Ok(())
    }

    /// A `/proc` of the new PID namespace, read-only.
    unsafe fn mount_proc(&self) -> bool {
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
        libc::mount(
            self.proc_type.as_ptr(),
            self.proc_path.as_ptr(),
            self.proc_type.as_ptr(),
            flags,
            std::ptr::null(),
        ) == 0
    }

    /// No supplementary groups, the sandbox gid and uid.
    unsafe fn drop_to_uid(&self) -> bool {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(self.gid) == 0
            && libc::setuid(self.uid) == 0
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
            if !kill_listed(&buf[..n.max(0) as usize]) {
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

/// SIGKILL to every pid of a `children` list (decimal, space separated),
/// parsed without allocating; whether there was any.
unsafe fn kill_listed(list: &[u8]) -> bool {
    let mut any = false;
    let mut pid: libc::pid_t = 0;
    for &b in list {
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
    any
}
