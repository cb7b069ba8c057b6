//! Waiting on a condition with a deadline, never on a guess of how long something takes: a test
//! goes on as soon as what it needs holds, and fails, saying what it waited for and what it saw
//! last, when it does not hold in time.
//!
//! ```no_run
//! # fn counted() -> anyhow::Result<u64> { Ok(6) }
//! use std::time::Duration;
//! // Waits until six frames are counted; fails after 3 s with the last count seen.
//! let n = gridnet_tests::wait::until(Duration::from_secs(3), "six counted frames", counted, |n| *n >= 6)?;
//! # anyhow::Ok(())
//! ```

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// How long [`until`] sleeps between two looks. Short next to the deadlines tests give (seconds),
/// so a test goes on soon after its condition holds; long enough that a look which starts a
/// process (`gridnet status`, `gridnet bpf-stats`) does not keep a two-core machine busy.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Looks with `observe` until `ready` accepts what it saw, for at most `timeout`; returns that
/// observation.
///
/// It looks at least once, and once more at the deadline. On timeout it fails with `what` and
/// the last observation (its `Debug` form). An error from `observe` ends the wait at once, as a
/// failure: an observation that can fail for a while before it succeeds (a server not up yet)
/// should return that failure as a value, e.g. `Ok(probe().map_err(|e| e.to_string()))`, so
/// that it is waited out and shown.
pub fn until<T: Debug>(
    timeout: Duration,
    what: &str,
    mut observe: impl FnMut() -> anyhow::Result<T>,
    mut ready: impl FnMut(&T) -> bool,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = observe().with_context(|| format!("while waiting for {what}"))?;
        if ready(&seen) {
            return Ok(seen);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("gave up waiting for {what} after {timeout:?}; last observed: {seen:?}");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_observation_that_is_ready() -> anyhow::Result<()> {
        let mut looks = 0;
        let seen = until(
            Duration::from_secs(5),
            "three looks",
            || {
                looks += 1;
                Ok(looks)
            },
            |&n| n >= 3,
        )?;
        assert_eq!(seen, 3);
        Ok(())
    }

    #[test]
    fn gives_up_at_the_deadline_naming_what_and_the_last_observation() {
        let start = Instant::now();
        let err = until(
            Duration::from_millis(250),
            "the impossible",
            || Ok(7),
            |_| false,
        )
        .expect_err("nothing was ever ready");
        let message = format!("{err:#}");
        assert!(
            message.contains("the impossible") && message.contains("last observed: 7"),
            "{message}"
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "waited {waited:?}"
        );
    }

    #[test]
    fn an_error_ends_the_wait_at_once() {
        let mut looks = 0;
        let err = until(
            Duration::from_secs(10),
            "a broken probe",
            || -> anyhow::Result<u32> {
                looks += 1;
                bail!("no such file")
            },
            |_| true,
        )
        .expect_err("the probe failed");
        assert_eq!(looks, 1);
        assert_eq!(
            format!("{err:#}"),
            "while waiting for a broken probe: no such file"
        );
    }
}
