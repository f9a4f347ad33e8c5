//! How long to hide a record the rejitter already rejittered, so that its own mapping receives
//! it at most once more.
//!
//! Such a record ([`crate::marker`]) is left on the queue for the consumer: the handler lists it
//! in `batchItemFailures`. Left at that, it becomes visible again after the queue's visibility
//! timeout and, while the rejitter phase lasts, the rejitter's mapping receives it again, every
//! visibility timeout, each receive counting towards the queue's `maxReceiveCount` (with a 30 s
//! timeout and a 15-minute phase, up to 30 receives: enough to send a healthy message to the
//! dead-letter queue). So before listing it the handler hides it with
//! `ChangeMessageVisibility` until the phase must be over; the next receive is then the
//! consumer's.
//!
//! **When the phase must be over.** The controller ends it at most `RejitterMaxSeconds` after
//! its start (`REJITTER_MAX_SECONDS`, checked every 5 s), then switches the mapping off and
//! waits until it reads `Disabled`. The marker was written during the phase, so after its start,
//! but by another Lambda host's clock, and the mapping may deliver a little before the
//! controller records the start (it waits for `Enabled` first). Hence the phase is over by
//! `marker + REJITTER_MAX_SECONDS + `[`PHASE_END_SLACK_SECONDS`], which covers the clock skew
//! ([`crate::marker::MAX_CLOCK_SKEW_SECONDS`]), the wait for `Enabled`, the 5 s between checks
//! and the wait for `Disabled` (one minute each by default).
//!
//! **Never past retention.** The marked message is a copy the rejitter sent at its marker time,
//! so SQS deletes it `MessageRetentionPeriod` later. A hidden message cannot be received, so
//! it must be visible again [`RETENTION_MARGIN_SECONDS`] before that (and before the clock skew)
//! for the consumer to get it: on a queue with a short retention, the hide is shorter or none.
//! Without the queue's retention there is no hide at all.
//!
//! **SQS's limit.** A message stays hidden at most 12 hours from its receive, and a longer
//! `ChangeMessageVisibility` is refused, so the hide is at most [`MAX_HIDE_SECONDS`], which
//! leaves 5 minutes for the time between the mapping's receive and the call. With
//! `RejitterMaxSeconds` above about 11.9 hours, a message may thus come back once per 12 hours
//! of phase left, and is hidden again each time.
//!
//! A hide of 0 means no call: the message comes back after the queue's visibility timeout, as
//! it would without this. A hide shorter than that timeout shortens it, which is right: the
//! phase is over by then and the consumer gets the message sooner.

use crate::marker::MAX_CLOCK_SKEW_SECONDS;

/// Added to `marker + REJITTER_MAX_SECONDS` to be sure the phase is over and its mapping off.
pub const PHASE_END_SLACK_SECONDS: u64 = 300;

/// How long before its retention ends a hidden message is visible again, so the consumer can
/// still receive it.
pub const RETENTION_MARGIN_SECONDS: u64 = 900;

/// SQS's longest visibility timeout, 12 hours, counted from the receive.
pub const SQS_MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// The longest hide: [`SQS_MAX_VISIBILITY_SECONDS`] less 5 minutes for the time already spent
/// since the mapping received the message.
pub const MAX_HIDE_SECONDS: u32 = SQS_MAX_VISIBILITY_SECONDS - 300;

/// The seconds to hide, from `now_s`, a record whose marker is `marker_s` (epoch seconds, see
/// [`crate::marker::marker_seconds`]); 0 means do not hide it.
///
/// The record is visible again at the earliest of: the phase being over
/// (`marker_s + rejitter_max_s + `[`PHASE_END_SLACK_SECONDS`]), and
/// [`RETENTION_MARGIN_SECONDS`] before the copy's retention ends
/// (`marker_s - `[`MAX_CLOCK_SKEW_SECONDS`]` + retention_s`); never hidden for more than
/// [`MAX_HIDE_SECONDS`], nor for less than 0. `retention_s` is the queue's
/// `MessageRetentionPeriod`; `None` (unknown) hides nothing.
pub fn hide_seconds(
    marker_s: u64,
    now_s: u64,
    rejitter_max_s: u32,
    retention_s: Option<u32>,
) -> u32 {
    let Some(retention_s) = retention_s else {
        return 0;
    };
    let phase_over = marker_s
        .saturating_add(u64::from(rejitter_max_s))
        .saturating_add(PHASE_END_SLACK_SECONDS);
    let last_chance = marker_s
        .saturating_sub(MAX_CLOCK_SKEW_SECONDS)
        .saturating_add(u64::from(retention_s))
        .saturating_sub(RETENTION_MARGIN_SECONDS);
    let hide = phase_over.min(last_chance).saturating_sub(now_s);
    u32::try_from(hide.min(u64::from(MAX_HIDE_SECONDS))).unwrap_or(MAX_HIDE_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000;
    /// SQS's default retention, 4 days.
    const FOUR_DAYS: Option<u32> = Some(345_600);

    #[test]
    fn hides_until_the_phase_is_over() {
        // Re-sent 100 s ago, 15-minute phase: visible again 900 + 300 s after the marker.
        assert_eq!(hide_seconds(NOW - 100, NOW, 900, FOUR_DAYS), 1_100);
        assert_eq!(hide_seconds(NOW, NOW, 30, FOUR_DAYS), 330);
        // A marker a little in the future (clock skew) hides that much longer.
        assert_eq!(hide_seconds(NOW + 60, NOW, 900, FOUR_DAYS), 1_260);
    }

    #[test]
    fn never_longer_than_sqs_allows() {
        assert_eq!(hide_seconds(NOW, NOW, 86_400, FOUR_DAYS), MAX_HIDE_SECONDS);
        assert_eq!(MAX_HIDE_SECONDS, 42_900);
        assert_eq!(
            hide_seconds(NOW - 43_000, NOW, 86_400, FOUR_DAYS),
            MAX_HIDE_SECONDS
        );
        // 86,400 + 300 - 43,801 s left: just under the cap.
        assert_eq!(hide_seconds(NOW - 43_801, NOW, 86_400, FOUR_DAYS), 42_899);
    }

    #[test]
    fn never_less_than_zero() {
        // The phase must be over already (an earlier recovery, a long phase's end).
        assert_eq!(hide_seconds(NOW - 1_200, NOW, 900, FOUR_DAYS), 0);
        assert_eq!(hide_seconds(NOW - 100_000, NOW, 900, FOUR_DAYS), 0);
        assert_eq!(hide_seconds(0, u64::MAX, 86_400, FOUR_DAYS), 0);
    }

    #[test]
    fn visible_again_before_the_retention_ends() {
        // One hour of retention: the phase bound (1,200 s) comes first.
        assert_eq!(hide_seconds(NOW, NOW, 900, Some(3_600)), 1_200);
        // Twenty minutes: visible 15 minutes before it expires, skew included.
        assert_eq!(hide_seconds(NOW, NOW, 900, Some(1_200)), 1_200 - 60 - 900);
        assert_eq!(hide_seconds(NOW - 100, NOW, 900, Some(1_200)), 140);
        // Too short to hide at all.
        assert_eq!(hide_seconds(NOW, NOW, 900, Some(960)), 0);
        assert_eq!(hide_seconds(NOW, NOW, 900, Some(60)), 0);
        // A long phase on a 2-hour queue.
        assert_eq!(
            hide_seconds(NOW, NOW, 86_400, Some(7_200)),
            7_200 - 60 - 900
        );
    }

    #[test]
    fn an_unknown_retention_hides_nothing() {
        assert_eq!(hide_seconds(NOW, NOW, 900, None), 0);
    }

    proptest! {
        /// The hide is within [0, MAX_HIDE_SECONDS], ends no later than the phase bound and the
        /// retention bound, and is exactly the earliest of them when not capped.
        #[test]
        fn the_hide_is_the_earliest_bound_within_sqs_limits(
            marker in 0u64..=u64::MAX / 2,
            now in any::<u64>(),
            rejitter_max in 30u32..=86_400,
            retention in 60u32..=1_209_600,
        ) {
            let hide = hide_seconds(marker, now, rejitter_max, Some(retention));
            prop_assert!(hide <= MAX_HIDE_SECONDS);
            let visible_at = u128::from(now) + u128::from(hide);
            let phase_over = u128::from(marker) + u128::from(rejitter_max)
                + u128::from(PHASE_END_SLACK_SECONDS);
            let last_chance = (u128::from(marker.saturating_sub(MAX_CLOCK_SKEW_SECONDS))
                + u128::from(retention))
                .saturating_sub(u128::from(RETENTION_MARGIN_SECONDS));
            let until = phase_over.min(last_chance);
            if hide > 0 {
                prop_assert!(visible_at <= until);
            }
            if hide < MAX_HIDE_SECONDS {
                prop_assert_eq!(visible_at.max(until), visible_at, "hidden for less than it could be");
            }
        }

        /// On a queue that keeps messages longer than the phase, a message of this phase hidden
        /// once is next received after the phase: at most one extra receive, unless the phase
        /// is longer than SQS lets a message hide.
        #[test]
        fn one_hide_outlasts_the_phase(
            age in 0u64..=1_800,
            rejitter_max in 30u32..=86_400,
        ) {
            let marker = NOW - age;
            let hide = hide_seconds(marker, NOW, rejitter_max, FOUR_DAYS);
            let phase_over = marker + u64::from(rejitter_max) + PHASE_END_SLACK_SECONDS;
            if hide < MAX_HIDE_SECONDS {
                prop_assert!(NOW + u64::from(hide) >= phase_over);
            } else {
                prop_assert!(phase_over - NOW > u64::from(MAX_HIDE_SECONDS));
            }
        }

        /// Later means no longer; a longer phase means no shorter.
        #[test]
        fn monotone(
            marker in 0u64..=u64::MAX / 2,
            now in 0u64..=u64::MAX / 2,
            later in 0u64..=100_000,
            rejitter_max in 30u32..=86_400,
            longer in 0u32..=1_000,
            retention in proptest::option::of(60u32..=1_209_600),
        ) {
            let hide = hide_seconds(marker, now, rejitter_max, retention);
            prop_assert!(hide_seconds(marker, now + later, rejitter_max, retention) <= hide);
            prop_assert!(hide_seconds(marker, now, rejitter_max + longer, retention) >= hide);
        }
    }
}
