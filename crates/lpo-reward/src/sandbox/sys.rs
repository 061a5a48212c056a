//! Raw system calls for the child, all async-signal-safe (no allocation,
//! no locks): they run between fork and exec.

use std::ffi::CString;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const AT_RECURSIVE: libc::c_uint = 0x8000;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const ZERO: libc::c_ulong = 0;

// Which resource `set_rlimit` sets (the `libc::RLIMIT_*` constants differ
// in type between libcs).
pub(super) const R_CPU: u8 = 0;
pub(super) const R_AS: u8 = 1;
pub(super) const R_NPROC: u8 = 2;
pub(super) const R_FSIZE: u8 = 3;
pub(super) const R_NOFILE: u8 = 4;
pub(super) const R_CORE: u8 = 5;

/// setrlimit, lowering the wish to the hard limit a non-root caller cannot
/// raise. Async-signal-safe.
pub(super) unsafe fn set_rlimit(which: u8, soft: u64, hard: u64) -> bool {
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
pub(super) unsafe fn unshare(flags: libc::c_int) -> bool {
    libc::syscall(libc::SYS_unshare, flags as libc::c_ulong) == 0
}

/// prctl(2) with all four arguments as `unsigned long` (the unused ones
/// zero, as `PR_SET_NO_NEW_PRIVS` requires).
pub(super) unsafe fn prctl(option: libc::c_int, arg: libc::c_ulong) -> bool {
    libc::prctl(option, arg, ZERO, ZERO, ZERO) == 0
}

/// Async-signal-safe write of a whole small file.
pub(super) unsafe fn write_file(path: &CString, data: &[u8]) -> bool {
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
pub(super) unsafe fn mark_cloexec(first: libc::c_int, last: libc::c_int) {
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

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) (Linux ≥ 5.12): makes the mount at `path` (and the
/// mounts below it, with `AT_RECURSIVE`) read-only, or writable.
pub(super) unsafe fn mount_read_only(path: &CString, flags: libc::c_uint, read_only: bool) -> bool {
    let (set, clear) = match read_only {
        true => (MOUNT_ATTR_RDONLY, 0),
        false => (0, MOUNT_ATTR_RDONLY),
    };
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path.as_ptr(),
        flags,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    ) == 0
}
