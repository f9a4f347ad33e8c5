//! Re-arming without loops: after every end the alarm is reset so the next outage opens the
//! circuit again, and this bound keeps a consumer that fails again right after each close from
//! opening circuits back to back: at most `MAX_CIRCUITS_PER_HOUR` circuits open per mapping in
//! any hour; past that the breaker stands aside until the oldest of them leaves the hour.

/// The window the bound counts openings in.
pub const WINDOW_MS: u64 = 3_600_000;

/// The openings still inside the window that ends at `now_ms`, oldest first.
pub fn recent_opens(opens: &[u64], now_ms: u64) -> Vec<u64> {
    let mut kept: Vec<u64> = opens
        .iter()
        .copied()
        .filter(|&t| t <= now_ms && now_ms - t < WINDOW_MS)
        .collect();
    kept.sort_unstable();
    kept
}

/// `None` when a circuit may open now; else how many seconds until it may (the oldest
/// opening in the window leaves it). `max` of `None` means no bound.
pub fn cooldown_seconds(opens: &[u64], now_ms: u64, max: Option<u32>) -> Option<u32> {
    let max = max? as usize;
    let recent = recent_opens(opens, now_ms);
    if recent.len() < max {
        return None;
    }
    // The (len - max + 1)-th oldest must leave before the count drops below max.
    let leaves_at = recent[recent.len() - max] + WINDOW_MS;
    Some((leaves_at - now_ms).div_ceil(1000).max(1) as u32)
}

/// A circuit that opens this soon after the last one closed is a re-trip.
pub const RETRIP_WINDOW_MS: u64 = 15 * 60_000;

/// Did a circuit opened at `opened_ms` follow the close at `closed_ms` (0: none) within
/// [`RETRIP_WINDOW_MS`]?
pub fn is_retrip(closed_ms: u64, opened_ms: u64) -> bool {
    closed_ms > 0 && opened_ms >= closed_ms && opened_ms - closed_ms < RETRIP_WINDOW_MS
}

/// An alarm that does not clear with the consumer (a dead-letter queue's depth, say): the
/// circuit re-tripped right after a close, its first probe found the consumer healthy, and
/// the alarm is still in ALARM. Re-arming it would only open the next circuit at once (and
/// the next, up to `MaxCircuitsPerHour`), so the close leaves the alarm as it is: the next
/// circuit opens when it next goes from OK to ALARM by itself.
pub fn alarm_not_clearing(retrip: bool, probes: u32, alarm_state: &str) -> bool {
    retrip && probes <= 1 && alarm_state == "ALARM"
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 10 * WINDOW_MS;

    #[test]
    fn below_the_bound_a_circuit_opens() {
        assert_eq!(cooldown_seconds(&[], NOW, Some(3)), None);
        assert_eq!(cooldown_seconds(&[NOW - 1, NOW - 2], NOW, Some(3)), None);
    }

    #[test]
    fn no_bound_never_waits() {
        let many: Vec<u64> = (0..100).map(|i| NOW - i).collect();
        assert_eq!(cooldown_seconds(&many, NOW, None), None);
    }

    #[test]
    fn at_the_bound_it_waits_until_the_oldest_leaves_the_hour() {
        let opens = [NOW - 600_000, NOW - 300_000, NOW - 60_000];
        assert_eq!(cooldown_seconds(&opens, NOW, Some(3)), Some(3_000));
    }

    #[test]
    fn openings_older_than_an_hour_do_not_count() {
        let opens = [NOW - WINDOW_MS, NOW - WINDOW_MS - 1, NOW - 5];
        assert_eq!(recent_opens(&opens, NOW), vec![NOW - 5]);
        assert_eq!(cooldown_seconds(&opens, NOW, Some(2)), None);
    }

    proptest! {
        /// After waiting the cooldown, a circuit may open; one second less (when more than
        /// a second) it may not.
        #[test]
        fn the_cooldown_is_exact(offsets in proptest::collection::vec(0u64..WINDOW_MS, 0..12), max in 1u32..6) {
            let opens: Vec<u64> = offsets.iter().map(|o| NOW - o).collect();
            match cooldown_seconds(&opens, NOW, Some(max)) {
                None => prop_assert!(recent_opens(&opens, NOW).len() < max as usize),
                Some(wait) => {
                    let later = NOW + u64::from(wait) * 1000;
                    prop_assert_eq!(cooldown_seconds(&opens, later, Some(max)), None);
                    if wait > 1 {
                        let sooner = NOW + u64::from(wait - 1) * 1000 - 999;
                        prop_assert!(cooldown_seconds(&opens, sooner, Some(max)).is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn a_healthy_first_probe_after_a_retrip_with_the_alarm_still_up_is_a_stuck_alarm() {
        let closed = NOW - 120_000;
        assert!(is_retrip(closed, NOW));
        assert!(!is_retrip(0, NOW));
        assert!(!is_retrip(NOW - RETRIP_WINDOW_MS, NOW));
        assert!(alarm_not_clearing(true, 1, "ALARM"));
        // Probes failed first: the consumer did fail again.
        assert!(!alarm_not_clearing(true, 3, "ALARM"));
        assert!(!alarm_not_clearing(true, 1, "OK"));
        assert!(!alarm_not_clearing(false, 1, "ALARM"));
    }
}
