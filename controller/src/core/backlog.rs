//! When the rejitter has spread the backlog: the queue's visible count is approximate, so it
//! must read zero twice in a row; and the phase never runs past its time limit (anything not
//! yet spread stays in the queue for the consumer, so stopping early loses nothing).

use super::Next;

/// Consecutive empty readings that count as "spread".
pub const EMPTY_READINGS_NEEDED: u32 = 2;

/// The next step after reading `visible` messages; returns the updated empty-reading streak.
pub fn after_backlog_check(
    empty_readings: u32,
    visible: u64,
    started_at_ms: u64,
    now_ms: u64,
    max_seconds: u32,
) -> (u32, Next) {
    let streak = if visible == 0 { empty_readings + 1 } else { 0 };
    let timed_out = now_ms.saturating_sub(started_at_ms) >= u64::from(max_seconds) * 1000;
    if streak >= EMPTY_READINGS_NEEDED || timed_out {
        (streak, Next::Close)
    } else {
        (streak, Next::WaitForBacklog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_empty_readings_in_a_row_end_the_phase() {
        assert_eq!(
            after_backlog_check(0, 0, 0, 1_000, 900),
            (1, Next::WaitForBacklog)
        );
        assert_eq!(after_backlog_check(1, 0, 0, 2_000, 900), (2, Next::Close));
    }

    #[test]
    fn a_non_empty_reading_resets_the_streak() {
        assert_eq!(
            after_backlog_check(1, 3, 0, 2_000, 900),
            (0, Next::WaitForBacklog)
        );
    }

    #[test]
    fn the_time_limit_ends_the_phase_even_with_a_backlog() {
        assert_eq!(
            after_backlog_check(0, 500, 0, 900_000, 900),
            (0, Next::Close)
        );
        assert_eq!(
            after_backlog_check(0, 500, 0, 899_999, 900),
            (0, Next::WaitForBacklog)
        );
    }

    proptest! {
        #[test]
        fn never_closes_on_a_single_empty_reading_within_time(visible in 0u64..10, elapsed in 0u64..899_000) {
            let (streak, next) = after_backlog_check(0, visible, 1_000, 1_000 + elapsed, 900);
            prop_assert!(streak <= 1);
            prop_assert_eq!(next, Next::WaitForBacklog);
        }
    }
}
