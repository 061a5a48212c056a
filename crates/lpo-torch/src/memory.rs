//! How much memory this machine has for a run, and how much a run used.

use std::path::Path;

/// glibc's allocator settings [`keep_freed_memory`] applies, each unless its
/// `MALLOC_*_` variable is set (then glibc has applied the user's).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ALLOCATOR: [(libc::c_int, libc::c_int, &str); 3] = [
    // Free memory at the heap's top is kept up to 1 GiB, not returned to
    // the system (and faulted in again, zeroed) after every step.
    (libc::M_TRIM_THRESHOLD, 1 << 30, "MALLOC_TRIM_THRESHOLD_"),
    // Each heap extension asks for 64 MiB more than needed.
    (libc::M_TOP_PAD, 64 << 20, "MALLOC_TOP_PAD_"),
    // Blocks below 32 MiB (glibc's largest threshold) come from the heap,
    // not from a fresh mmap that is unmapped again on free.
    (libc::M_MMAP_THRESHOLD, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),
];

/// Tunes glibc's allocator for a training loop, which frees and allocates
/// the same tensors every step: freed memory stays in the process instead
/// of going back to the system, so a step no longer spends its time in page
/// faults zeroing fresh pages (a tenth of the tiny model's arithmetic step
/// on this project's CPU, docs/performance.md). The resident set stays near
/// the peak, which the memory estimate budgets anyway. Called once at
/// start; a user's `MALLOC_*_` variables win.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, value, env) in ALLOCATOR {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only sets allocator parameters; it is called
            // at start, before other threads allocate.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// Memory a process here may use: the smaller of `MemTotal` and the cgroup
/// limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`), in bytes.
pub fn host_limit() -> Option<u64> {
    let total = read(Path::new("/proc/meminfo"))
        .and_then(|t| kib_field(&t, "MemTotal:"))
        .map(|kib| kib * 1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| read(Path::new(p)).and_then(|t| t.trim().parse::<u64>().ok()));
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// This process's peak resident memory (`VmHWM`), in bytes.
pub fn host_peak() -> Option<u64> {
    read(Path::new("/proc/self/status"))
        .and_then(|t| kib_field(&t, "VmHWM:"))
        .map(|kib| kib * 1024)
}

/// Bytes in use on the current CUDA device (the driver's count, the
/// caching allocator's reserve included); `None` without CUDA.
pub fn cuda_in_use() -> Option<u64> {
    crate::cuda_driver::memory_in_use()
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The number of a `Name:   123 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_this_process_has_a_peak_below_the_limit() {
        assert_eq!(
            kib_field("VmPeak:\t  10 kB\nVmHWM:\t  2048 kB\n", "VmHWM:"),
            Some(2048)
        );
        assert_eq!(kib_field("VmPeak:\t  10 kB\n", "VmHWM:"), None);
        let (peak, limit) = (host_peak().unwrap(), host_limit().unwrap());
        // A test process holds at least a megabyte and less than the machine.
        assert!(peak > 1 << 20 && peak < limit, "{peak} {limit}");
    }
}
