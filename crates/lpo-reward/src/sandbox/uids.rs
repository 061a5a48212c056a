//! The dedicated uids root runs programs as, and their processes.
//!
//! 4096 uids above `0x7F00_0000` (below 2^31, above the ranges distributions
//! and container runtimes hand out). Each run *leases* one for as long as it
//! runs: an exclusive `flock` on `<lock dir>/<uid>.lock`. Another run that
//! wants the same uid, in this process or in another lpo process on the
//! machine (`lpo sweep --jobs 2`), finds the lock held and takes the next
//! uid, so no two runs share a uid: the process limit counts one run's
//! processes, and killing a uid's processes kills one run's program.
//!
//! The lock belongs to the open file description: it goes when the lease is
//! dropped or when the process dies, however it dies (a crash leaves an
//! empty file, not a taken uid). The lock directory is `/run/lpo-sandbox`,
//! else `/tmp/lpo-sandbox-uids`: the first that is, or can be made, a
//! directory of the caller's that nobody else can write (created 0700), so
//! that nobody else can hold a lock or plant a link.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::runner::nonce;

pub(super) const UID_BASE: u32 = 0x7F00_0000;
pub(super) const UID_SLOTS: u32 = 4096;

/// Where the locks live: the first of these that is usable.
const LOCK_DIRS: [&str; 2] = ["/run/lpo-sandbox", "/tmp/lpo-sandbox-uids"];

/// The uid a run's program gets.
#[derive(Debug)]
pub(super) enum RunAs {
    /// As root: a dedicated uid, leased for the run.
    Dedicated(UidLease),
    /// Otherwise: the caller's own.
    Caller(u32),
}

impl RunAs {
    /// A leased dedicated uid when `dedicated`, else the caller's uid.
    pub(super) fn new(dedicated: bool) -> Result<RunAs> {
        if dedicated {
            Ok(RunAs::Dedicated(lease()?))
        } else {
            Ok(RunAs::Caller(unsafe { libc::getuid() }))
        }
    }

    pub(super) fn uid(&self) -> u32 {
        match self {
            RunAs::Dedicated(lease) => lease.uid,
            RunAs::Caller(uid) => *uid,
        }
    }

    /// The dedicated uid, if there is one.
    pub(super) fn dedicated(&self) -> Option<u32> {
        match self {
            RunAs::Dedicated(lease) => Some(lease.uid),
            RunAs::Caller(_) => None,
        }
    }
}

/// A dedicated uid, this process's until dropped.
#[derive(Debug)]
pub(super) struct UidLease {
    uid: u32,
    /// Holds the lock.
    _lock: File,
}

/// Leases the first free uid from where this process looks next.
fn lease() -> Result<UidLease> {
    let dir = lock_dir()?;
    lease_in(&dir, next_start())
}

/// The first uid whose lock in `dir` is free, from slot `start` on
/// (wrapping around).
fn lease_in(dir: &Path, start: u32) -> Result<UidLease> {
    for i in 0..UID_SLOTS {
        let uid = UID_BASE + start.wrapping_add(i) % UID_SLOTS;
        if let Some(lock) = try_lock(&lock_path(dir, uid))? {
            return Ok(UidLease { uid, _lock: lock });
        }
    }
    bail!(
        "all {UID_SLOTS} sandbox uids are in use (locks in {})",
        dir.display()
    )
}

fn lock_path(dir: &Path, uid: u32) -> PathBuf {
    dir.join(format!("{uid}.lock"))
}

/// An exclusive lock on the file at `path` (created if missing, never
/// through a symlink), or `None` when another open file description holds
/// one.
fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening the uid lock {}", path.display()))?;
    loop {
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(file));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(error).with_context(|| format!("locking {}", path.display())),
        }
    }
}

/// The slot this process's next lease starts from: a random one per
/// process (concurrent processes mostly look in different places), then one
/// further for each lease (a uid just given back rests while others serve).
fn next_start() -> u32 {
    static FIRST: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let first = *FIRST.get_or_init(|| u32::from_str_radix(&nonce()[..8], 16).unwrap_or(0));
    first.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % UID_SLOTS
}

/// The first usable directory of [`LOCK_DIRS`].
fn lock_dir() -> Result<PathBuf> {
    let mut why = Vec::new();
    for dir in LOCK_DIRS.map(Path::new) {
        match private_dir(dir) {
            Ok(()) => return Ok(dir.to_path_buf()),
            Err(e) => why.push(format!("{e:#}")),
        }
    }
    bail!("no directory for the sandbox uid locks: {}", why.join("; "))
}

/// Makes `dir` (mode 0700), or checks that the one there is a directory
/// (not a link) of the caller's that nobody else can write into.
fn private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dir.display()));
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let euid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        bail!(
            "{} is not a directory of uid {euid} that only it can write",
            dir.display()
        );
    }
    Ok(())
}

/// Kills every process of a dedicated sandbox uid (without a PID namespace,
/// processes that left the group with `setsid` are found this way).
pub(super) fn kill_uid(uid: u32) {
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
pub(super) fn count_tasks_of(uid: u32) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Barrier, Mutex};

    /// Where [`hold_a_lease_for_another_test`] leases, when it is set.
    const HOLDER_DIR: &str = "LPO_TEST_UID_HOLDER_DIR";

    /// A private lock directory of one test, removed afterwards.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(tag: &str) -> TestDir {
            let path = std::env::temp_dir().join(format!(
                "lpo-uid-test-{tag}-{}-{}",
                std::process::id(),
                nonce()
            ));
            private_dir(&path).unwrap();
            TestDir(path)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_held_uid_is_skipped_and_free_again_once_let_go() {
        let dir = TestDir::new("held");
        // Another open file description: flock locks conflict between two
        // of them in one process as between processes.
        let held = try_lock(&lock_path(&dir.0, UID_BASE + 7)).unwrap().unwrap();
        let first = lease_in(&dir.0, 7).unwrap();
        assert_eq!(first.uid, UID_BASE + 8);
        let second = lease_in(&dir.0, 7).unwrap();
        assert_eq!(second.uid, UID_BASE + 9);
        drop(held);
        assert_eq!(lease_in(&dir.0, 7).unwrap().uid, UID_BASE + 7);
        // The search wraps around the last slot.
        let _last = lease_in(&dir.0, UID_SLOTS - 1).unwrap();
        assert_eq!(lease_in(&dir.0, UID_SLOTS - 1).unwrap().uid, UID_BASE);
    }

    #[test]
    fn concurrent_leases_are_distinct() {
        let dir = TestDir::new("threads");
        let threads = 8;
        let barrier = Barrier::new(threads);
        let uids = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let lease = lease_in(&dir.0, 0).unwrap();
                    uids.lock().unwrap().push(lease.uid);
                    // Everyone holds a lease at once.
                    barrier.wait();
                });
            }
        });
        let mut uids = uids.into_inner().unwrap();
        uids.sort();
        let expected: Vec<u32> = (0..threads as u32).map(|i| UID_BASE + i).collect();
        assert_eq!(uids, expected);
    }

    /// Two processes: a uid the other one holds is skipped, and once that
    /// process is killed (no cleanup of any kind) the uid is free again.
    #[test]
    fn a_uid_held_by_another_process_is_skipped() {
        let dir = TestDir::new("process");
        let holder = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sandbox::uids::tests::hold_a_lease_for_another_test",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(HOLDER_DIR, &dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut holder = Holder(holder);
        let stdout = BufReader::new(holder.0.stdout.take().unwrap());
        let held = stdout
            .lines()
            // libtest writes the test's name on the same line, before.
            .find_map(|l| l.ok()?.split_once("leased ")?.1.trim().parse::<u32>().ok());
        assert_eq!(held, Some(UID_BASE + 5), "the other process's lease");
        let ours = lease_in(&dir.0, 5).unwrap();
        assert_eq!(ours.uid, UID_BASE + 6);
        // SIGKILL: the lock goes with the process, nothing to clean up.
        holder.0.kill().unwrap();
        holder.0.wait().unwrap();
        assert_eq!(lease_in(&dir.0, 5).unwrap().uid, UID_BASE + 5);
    }

    /// The other process, killed when the test ends, passed or failed.
    struct Holder(Child);

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The other process of the test above (does nothing unless it set
    /// [`HOLDER_DIR`]): leases slot 5 and holds it until killed (or for a
    /// minute, so that nothing waits forever).
    #[test]
    fn hold_a_lease_for_another_test() {
        let Some(dir) = std::env::var_os(HOLDER_DIR) else {
            return;
        };
        let lease = lease_in(Path::new(&dir), 5).unwrap();
        println!("leased {}", lease.uid);
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn a_lock_directory_others_can_write_is_refused() {
        let dir = TestDir::new("loose");
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
        let error = private_dir(&dir.0).unwrap_err();
        assert!(format!("{error}").contains("only it can write"), "{error}");
        let link = dir.0.with_extension("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        assert!(private_dir(&link).is_err());
        fs::remove_file(&link).unwrap();
    }

    /// The real thing, as root: dedicated uids of concurrent runs differ,
    /// and each is locked in the lock directory while the run holds it.
    #[test]
    fn dedicated_uids_are_leased_in_the_lock_directory() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: dedicated uids are for root");
            return;
        }
        let a = RunAs::new(true).unwrap();
        let b = RunAs::new(true).unwrap();
        assert_ne!(a.uid(), b.uid());
        let dir = lock_dir().unwrap();
        assert!(try_lock(&lock_path(&dir, a.uid())).unwrap().is_none());
        let uid = a.uid();
        drop(a);
        assert!(try_lock(&lock_path(&dir, uid)).unwrap().is_some());
        assert_eq!(RunAs::new(false).unwrap().dedicated(), None);
    }
}
