//! The retention guard: the circuit must never hold messages until SQS's
//! retention period silently deletes them.
//!
//! While the event source mapping is disabled nothing consumes the queue, so
//! the oldest message keeps ageing. Well before it would expire the breaker
//! gives up (per the give-up policy) instead of letting data vanish.

/// Epoch milliseconds at which the breaker must give up: the oldest message's
/// send time plus the queue's retention minus a safety margin.
///
/// Saturating: a margin at least as long as the retention period means
/// `oldest_sent_ms`, i.e. give up immediately.
pub fn retention_deadline_ms(
    oldest_sent_ms: u64,
    retention_seconds: u32,
    margin_seconds: u32,
) -> u64 {
    let headroom_seconds = u64::from(retention_seconds.saturating_sub(margin_seconds));
    oldest_sent_ms.saturating_add(headroom_seconds * 1000)
}

/// Whether the deadline has been reached.
pub fn must_give_up(now_ms: u64, deadline_ms: u64) -> bool {
    now_ms >= deadline_ms
}

/// Best estimate of when the oldest message still in the queue was sent: the
/// earliest of the open time minus the `ApproximateAgeOfOldestMessage`
/// observed when the circuit opened, and the `SentTimestamp` of every probe
/// message received since.
///
/// Probes matter because a probe that fails goes back to the queue keeping
/// its original send time, which can predate what the age metric showed.
/// Without an observed age the open time itself is the starting point.
pub fn oldest_sent_ms(
    opened_at_ms: u64,
    age_of_oldest_at_open_seconds: Option<u32>,
    probe_sent_ms: impl IntoIterator<Item = u64>,
) -> u64 {
    let age_ms = u64::from(age_of_oldest_at_open_seconds.unwrap_or(0)) * 1000;
    let at_open = opened_at_ms.saturating_sub(age_ms);
    probe_sent_ms.into_iter().fold(at_open, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FOUR_DAYS: u32 = 4 * 24 * 3600;

    #[test]
    fn deadline_is_retention_minus_margin() {
        assert_eq!(
            retention_deadline_ms(1_000, FOUR_DAYS, 3600),
            1_000 + 342_000_000
        );
        assert_eq!(retention_deadline_ms(0, 60, 0), 60_000);
    }

    #[test]
    fn margin_at_or_over_retention_is_due_immediately() {
        assert_eq!(retention_deadline_ms(5_000, 60, 60), 5_000);
        assert_eq!(retention_deadline_ms(5_000, 60, 3600), 5_000);
        assert!(must_give_up(5_000, retention_deadline_ms(5_000, 60, 3600)));
    }

    #[test]
    fn deadline_saturates() {
        assert_eq!(retention_deadline_ms(u64::MAX - 1, u32::MAX, 0), u64::MAX);
    }

    #[test]
    fn give_up_at_and_after_deadline() {
        assert!(!must_give_up(999, 1_000));
        assert!(must_give_up(1_000, 1_000));
        assert!(must_give_up(1_001, 1_000));
    }

    #[test]
    fn oldest_uses_age_at_open() {
        assert_eq!(oldest_sent_ms(100_000, Some(30), []), 70_000);
        assert_eq!(oldest_sent_ms(100_000, None, []), 100_000);
        assert_eq!(oldest_sent_ms(10_000, Some(u32::MAX), []), 0);
    }

    #[test]
    fn oldest_takes_earlier_probe() {
        assert_eq!(
            oldest_sent_ms(100_000, Some(30), [80_000, 60_000, 90_000]),
            60_000
        );
        assert_eq!(oldest_sent_ms(100_000, Some(30), [80_000, 75_000]), 70_000);
        assert_eq!(oldest_sent_ms(100_000, None, vec![99_000]), 99_000);
    }

    proptest! {
        #[test]
        fn deadline_never_after_retention(oldest in any::<u64>(), retention in any::<u32>(), margin in any::<u32>()) {
            let deadline = retention_deadline_ms(oldest, retention, margin);
            prop_assert!(deadline <= oldest.saturating_add(u64::from(retention) * 1000));
            prop_assert!(deadline >= oldest);
        }

        #[test]
        fn deadline_monotone_in_margin(oldest in 0u64..=u64::MAX / 2, retention in any::<u32>(), m1 in any::<u32>(), m2 in any::<u32>()) {
            let (small, large) = if m1 <= m2 { (m1, m2) } else { (m2, m1) };
            prop_assert!(
                retention_deadline_ms(oldest, retention, large)
                    <= retention_deadline_ms(oldest, retention, small)
            );
        }

        #[test]
        fn oldest_is_a_lower_bound(opened in any::<u64>(), age in proptest::option::of(any::<u32>()), probes in proptest::collection::vec(any::<u64>(), 0..8)) {
            let oldest = oldest_sent_ms(opened, age, probes.iter().copied());
            prop_assert!(oldest <= opened);
            for p in &probes {
                prop_assert!(oldest <= *p);
            }
        }
    }
}
