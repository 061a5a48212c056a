//! The process's CPU time: the measure of a step's cost that a busy shared
//! machine disturbs least (wall-clock time also counts waiting for a core).

/// CPU seconds this process has used so far, over all its threads
/// (`CLOCK_PROCESS_CPUTIME_ID`); 0 if the clock cannot be read.
pub fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_and_never_goes_back() {
        let before = process_cpu_seconds();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds();
        assert!(before > 0.0 && after > before, "{before} -> {after}");
    }
}
