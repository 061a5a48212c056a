//! How much memory this machine has for a run, and how much a run used.

use std::path::Path;

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
