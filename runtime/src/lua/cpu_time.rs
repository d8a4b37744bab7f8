//! The calling thread's CPU time: what a script's bounds are measured in, so that a busy or
//! descheduled machine never makes a script look as if it computed longer than it did.

use std::time::Duration;

/// CPU time the calling thread has used (its `CLOCK_THREAD_CPUTIME_ID`).
pub(super) fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; this clock exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    debug_assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_counts_computing_not_sleeping() {
        let before = super::now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let slept = super::now() - before;
        let mut x = 0u64;
        let began = std::time::Instant::now();
        while began.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let computed = super::now() - before - slept;
        assert!(
            slept < std::time::Duration::from_millis(10),
            "slept: {slept:?}"
        );
        assert!(computed > slept, "computed {computed:?}, slept {slept:?}");
    }
}
