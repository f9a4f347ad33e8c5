//! A hanging consumer is a failed probe.
//!
//! The probe invokes the consumer synchronously from inside the controller, whose own
//! timeout is Lambda's longest (900 s). A consumer whose dependency hangs answers only when
//! its own timeout (up to 900 s) ends it; the probe stops waiting a little after that, and
//! always before its own invocation would be cut off, and judges the silence as a failure.

use std::time::Duration;

/// Seconds added to the consumer's timeout for the probe message's visibility, so the
/// message cannot reappear while the consumer still works on it.
pub const PROBE_VISIBILITY_MARGIN_SECONDS: u32 = 30;

/// Seconds the probe waits beyond the consumer's own timeout (Lambda answers a timed-out
/// invocation itself, with a function error, a moment after it).
pub const GRACE_SECONDS: u64 = 10;

/// Seconds kept back before the controller's own deadline, to judge, give the message back
/// and answer the workflow.
pub const RESERVE_SECONDS: u64 = 20;

/// How long the probe waits for the consumer: its timeout and the grace, but never past the
/// controller's deadline less the reserve (at least one second). `remaining_ms` is `None`
/// when the controller's deadline is unknown.
pub fn probe_invoke_timeout(consumer_timeout_seconds: u32, remaining_ms: Option<u64>) -> Duration {
    let wanted = Duration::from_secs(u64::from(consumer_timeout_seconds) + GRACE_SECONDS);
    match remaining_ms {
        None => wanted,
        Some(remaining) => wanted
            .min(Duration::from_millis(
                remaining.saturating_sub(RESERVE_SECONDS * 1000),
            ))
            .max(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn waits_for_the_consumer_and_a_grace_period() {
        assert_eq!(
            probe_invoke_timeout(300, Some(899_000)),
            Duration::from_secs(310)
        );
        assert_eq!(probe_invoke_timeout(3, None), Duration::from_secs(13));
    }

    #[test]
    fn stops_before_the_controller_is_cut_off() {
        // A 900 s consumer inside a 900 s controller: judged 20 s before the deadline.
        assert_eq!(
            probe_invoke_timeout(900, Some(899_500)),
            Duration::from_millis(879_500)
        );
        assert_eq!(
            probe_invoke_timeout(900, Some(5_000)),
            Duration::from_secs(1)
        );
    }

    proptest! {
        #[test]
        fn never_past_the_reserve_and_never_zero(consumer in 1u32..=900, remaining in 0u64..=900_000) {
            let t = probe_invoke_timeout(consumer, Some(remaining));
            prop_assert!(t >= Duration::from_secs(1));
            prop_assert!(t <= Duration::from_secs(u64::from(consumer) + GRACE_SECONDS));
            if remaining > (RESERVE_SECONDS + 1) * 1000 {
                prop_assert!(t.as_millis() as u64 <= remaining - RESERVE_SECONDS * 1000);
            }
        }
    }
}
